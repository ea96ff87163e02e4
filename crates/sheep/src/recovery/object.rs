//! Recovery of one object: bring the local copy up to the newest copy a live member
//! holds (asked for by client I/O that reached an object before the epoch's pass did, by
//! that pass, or to replace a copy that could not be read or that a failed sync lost).

use std::collections::HashSet;

use bytes::Bytes;
use sd_cluster::check::Answer;
use sd_cluster::recovery::{
    Fallback, KeepReason, Probe, SourceChoice, SourceFailure, Suspect, choose_source_with,
    placement_fallback, placement_sources, stale_loses_ties, suspect_order,
};
use sd_proto::node::NodeId;
use sd_proto::peer_copy::{Partial, PeerCopy};
use sd_proto::{Epoch, Flags, ObjArgs, Oid, Opcode, RequestHeader, SdResult};
use sd_store::CreateSpec;

use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;

/// Attempts per source that is still catching up with the epoch.
pub(super) const SOURCE_ATTEMPTS: u32 = 50;
/// Pause between those attempts.
pub(super) const SOURCE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(20);

/// `oid` is missing here although this node is asked for it: it may be an object the
/// new epoch placed here that recovery has not reached yet. Fetch it from its earlier
/// holders; NO_OBJ if no live node has it.
pub async fn recover_missing(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    let lock = sheep.recovery.lock_for(oid);
    let _g = lock.lock().await;
    if sheep.store.exists(oid) {
        return Ok(());
    }
    let epoch = sheep.sys().epoch;
    recover_one(sheep, oid, epoch).await?;
    sheep.recovery.mark_recovered(oid);
    Ok(())
}

/// The local copy of `oid` could not be read (EIO): move it aside and fetch a good one
/// from the other holders, as for a copy a failed writeback sync lost. Runs in the
/// background; a repair of `oid` already under way covers later failures.
pub fn repair_unreadable(sheep: &Sheep, oid: Oid) {
    let Some(sheep) = sheep.self_ref() else {
        return;
    };
    if !sheep.recovery.begin_repair(oid) {
        return;
    }
    tokio::spawn(async move {
        let r = repair(&sheep, oid).await;
        sheep.recovery.end_repair(oid);
        match r {
            Ok(()) => tracing::info!(%oid, "unreadable copy replaced"),
            Err(e) => tracing::error!(%oid, error = %e, "replacing an unreadable copy failed"),
        }
    });
}

async fn repair(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    let lock = sheep.recovery.lock_for(oid);
    let _g = lock.lock().await;
    let store = sheep.store.clone();
    match blocking(move || store.quarantine(oid)).await {
        Ok(()) => tracing::warn!(%oid, "unreadable copy moved aside"),
        // Already gone (removed, or replaced by a create that moved it).
        Err(SheepError::Store(sd_store::StoreError::NoObject(_))) => {}
        Err(e) => return Err(e),
    }
    let epoch = sheep.sys().epoch;
    recover_one(sheep, oid, epoch).await?;
    sheep.recovery.mark_recovered(oid);
    Ok(())
}

/// Recovers `oid` now (client I/O reached it before the background task did).
pub async fn recover_now(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    recover_if(sheep, oid, |s| s.recovery.needs(oid))
        .await
        .map(drop)
}

/// Recovers `oid` for the epoch's pass: also a copy still suspect because it was the only
/// one reachable before (it is compared again). Whether there was anything to do (client
/// I/O may have recovered it first).
pub(super) async fn recover_in_pass(sheep: &Sheep, oid: Oid) -> SheepResult<bool> {
    recover_if(sheep, oid, |s| {
        s.recovery.needs(oid) || s.recovery.is_suspect(oid)
    })
    .await
}

/// Recovers `oid` if `needed` still says so once its lock is held; whether it did.
async fn recover_if(sheep: &Sheep, oid: Oid, needed: impl Fn(&Sheep) -> bool) -> SheepResult<bool> {
    let lock = sheep.recovery.lock_for(oid);
    let _g = lock.lock().await;
    if !needed(sheep) {
        return Ok(false);
    }
    let epoch = sheep.recovery.epoch();
    recover_one(sheep, oid, epoch).await?;
    sheep.recovery.mark_recovered(oid);
    Ok(true)
}

/// REPAIR_REPLICA: replaces the local copy of `oid` with the one `from` holds (its bytes
/// and its version), as `dog vdi check` and the scrub ask of a replica whose copy differs
/// from the others or is missing. A copy of the wrong size is refused (EIO). Local reads
/// and writes of `oid` wait meanwhile, so a write that arrives during the repair lands on
/// the new copy, not on the one being replaced.
///
/// `seen`: what the asker found here (`Answer::Hash` of the copy, or `Answer::Missing`).
/// If the local copy no longer matches it, a write reached it since, and replacing it could
/// lose that write: the repair is refused with AGAIN and the asker looks again later.
pub async fn repair_from(
    sheep: &Sheep,
    oid: Oid,
    from: NodeId,
    seen: Option<Answer>,
) -> SheepResult<()> {
    if from == sheep.me.nid {
        return Err(SdResult::InvalidParms.into());
    }
    let lock = sheep.recovery.lock_for(oid);
    let _g = lock.lock().await;
    sheep.recovery.hold(oid);
    let r = async {
        if let Some(seen) = seen {
            let now = match crate::disk::hash(&sheep.store, oid).await {
                Ok(h) => Answer::Hash(h),
                Err(e) if e.result() == SdResult::NoObj => Answer::Missing,
                Err(e) => return Err(e),
            };
            if now != seen {
                tracing::info!(%oid, "copy changed since it was checked; not repaired");
                return Err(SdResult::Again.into());
            }
        }
        fetch_and_store(sheep, oid, from).await
    }
    .await;
    sheep.recovery.release(oid);
    r
}

async fn fetch_and_store(sheep: &Sheep, oid: Oid, from: NodeId) -> SheepResult<()> {
    let (epoch, size) = (sheep.sys().epoch, sheep.object_size(oid));
    let room = u32::try_from(size + 4).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let copy = fetch_peer(sheep, from, oid, epoch, room).await?;
    if copy.partial() {
        tracing::warn!(%oid, %from, "repair source holds only a partial copy");
        return Err(SdResult::NoObj.into());
    }
    let PeerCopy { version, data } = copy;
    if data.len() as u64 != size {
        tracing::warn!(%oid, %from, got = data.len(), want = size, "repair copy of the wrong size refused");
        return Err(SdResult::Eio.into());
    }
    store_copy(sheep, oid, data, version, Vec::new()).await?;
    tracing::info!(%oid, %from, version, "replica repaired");
    Ok(())
}

/// FETCH_PEER of `oid` on `nid`: the version, and the bytes when `room` allows.
async fn fetch_peer(
    sheep: &Sheep,
    nid: NodeId,
    oid: Oid,
    epoch: Epoch,
    room: u32,
) -> Result<PeerCopy, SdResult> {
    let mut h = RequestHeader::new(Opcode::FetchPeer).with_obj(ObjArgs {
        oid,
        tgt_epoch: epoch,
        ..ObjArgs::default()
    });
    h.epoch = epoch;
    h.data_length = room;
    match leaf_call(sheep, epoch, nid, h).await {
        // An answer too short to hold the version is an I/O error.
        Ok((rsp, data)) if rsp.result == SdResult::Success => {
            PeerCopy::decode(data).map_err(|_| SdResult::Eio)
        }
        Ok((rsp, _)) => Err(rsp.result),
        Err(e) => {
            tracing::debug!(%oid, node = %nid, error = %e, "FETCH_PEER failed");
            Err(SdResult::NetworkError)
        }
    }
}

/// Why a recovery request to a peer got no answer to act on.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unanswered {
    /// The peer could not be reached or did not answer in time.
    #[error(transparent)]
    Peer(#[from] crate::peer::PeerError),
    /// The cluster left the epoch being recovered before the peer answered.
    #[error("the cluster left epoch {0}")]
    EpochMoved(Epoch),
}

/// One request to `nid` for the recovery of `epoch`, over the leaf connections (never
/// queued behind replica writes that wait on this recovery). Abandoned as soon as the
/// cluster leaves `epoch`: the answer no longer matters, and a member cut off by a
/// partition (its connection silent: packets dropped, no reset) would otherwise hold the
/// recovery, and the object lock of a replica write waiting on it, for the whole peer
/// timeout, long after the membership dropped that member.
pub(super) async fn leaf_request(
    sheep: &Sheep,
    epoch: Epoch,
    nid: NodeId,
    h: RequestHeader,
) -> Result<(sd_proto::ResponseHeader, Bytes), Unanswered> {
    let mut rx = sheep.watch_epoch();
    tokio::select! {
        biased;
        r = sheep.leaf_peers.call(nid, h, Bytes::new()) => Ok(r?),
        Ok(_) = rx.wait_for(|e| *e != epoch) => Err(Unanswered::EpochMoved(epoch)),
    }
}

/// [`leaf_request`], resent while `nid` still applies the epoch (NEW_NODE_VER, up to
/// [`SOURCE_ATTEMPTS`] times); the last answer.
async fn leaf_call(
    sheep: &Sheep,
    epoch: Epoch,
    nid: NodeId,
    h: RequestHeader,
) -> Result<(sd_proto::ResponseHeader, Bytes), Unanswered> {
    let mut attempt = 1;
    loop {
        let r = leaf_request(sheep, epoch, nid, h).await;
        match &r {
            Ok((rsp, _)) if rsp.result == SdResult::NewNodeVer && attempt < SOURCE_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(SOURCE_BACKOFF).await;
            }
            _ => return r,
        }
    }
}

/// Brings the local copy of `oid` up to the newest copy a live node holds.
///
/// Every copy carries the epoch of its last write (`sd_store::Store::version`); every write
/// acknowledged in an epoch reached all of that epoch's holders, so the copy with the
/// highest version holds every acknowledged write the others do. Each live member is asked
/// for its version (whether or not it trusts its copy yet: a node that restarted still
/// knows when its copy was last written), ours counts too (kept on a tie, unless it is
/// suspect after an unclean stop: `sd_cluster::recovery::choose_source_with`), and the
/// newest is fetched. A member that cannot answer might hold the newest: then this waits
/// (`AGAIN`). Copies without versions (a file system without user extended attributes),
/// or a member that predates FETCH_PEER, fall back to [`recover_by_placement`].
async fn recover_one(sheep: &Sheep, oid: Oid, epoch: Epoch) -> SheepResult<()> {
    if let Some(g) = crate::strip::geometry(sheep, oid) {
        return crate::ec::recover(sheep, oid, g, epoch).await;
    }
    // After a copy change, no fetch before every member writes by the new counts.
    super::copies::wait_caught_up(sheep, epoch).await?;
    let me = sheep.me.nid;
    let size = sheep.object_size(oid);
    let members = sheep.other_members();
    let room = u32::try_from(size + 4).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let probes: Vec<(NodeId, Result<PeerCopy, SdResult>)> = futures::future::join_all(
        members
            .iter()
            .map(|n| async move { (*n, fetch_peer(sheep, *n, oid, epoch, 4).await) }),
    )
    .await;
    // Partial copies are not copies to fetch the object from, but their writes may be
    // newer than every copy's (`partial`).
    let mut partials: Vec<(NodeId, u32)> = Vec::new();
    let answers: Vec<(NodeId, Probe)> = probes
        .into_iter()
        .map(|(n, answer)| match answer {
            Ok(copy) if copy.partial() => {
                partials.push((n, copy.epoch()));
                (n, Probe::Missing)
            }
            answer => (n, Probe::from_answer(answer.map(|copy| copy.version))),
        })
        .collect();
    let store = sheep.store.clone();
    let mine = blocking(move || match store.version(oid) {
        Ok(v) => Ok(Some(v)),
        Err(sd_store::StoreError::NoObject(_)) => Ok(None),
        Err(e) => Err(e),
    })
    .await?;
    let order = {
        let copies = sheep.copies_of(oid, 0);
        let sys = sheep.sys();
        let placement = sys.replica_nids(oid, copies);
        let members: Vec<NodeId> = sys.nodes.iter().map(|n| n.nid).collect();
        suspect_order(&sys.epochs, &members, &placement)
    };
    let suspect = Suspect {
        me,
        lossy: sheep.store.sync_mode() == sd_store::SyncMode::Writeback,
        order: &order,
    };
    let suspect = sheep.recovery.is_suspect(oid).then_some(&suspect);
    let stale = sheep.recovery.is_stale(oid);
    let keep_local = |newest: u32| {
        let newer = super::partial::newer_than(&partials, newest);
        async move {
            if newer.is_empty() {
                return Ok(());
            }
            // Ours is the newest copy, but partial copies elsewhere hold later writes.
            let (store, len) = (sheep.store.clone(), usize::try_from(size).unwrap_or(0));
            let data = blocking(move || {
                let mut buf = vec![0u8; len];
                store.read(oid, 0, &mut buf)?;
                Ok(Bytes::from(buf))
            })
            .await?;
            let overlays = fetch_newer(sheep, oid, epoch, &newer).await?;
            store_copy(sheep, oid, data, newest, overlays).await
        }
    };
    let mut choice = choose_source_with(&answers, mine, suspect);
    if stale {
        choice = stale_loses_ties(choice, &answers, mine);
    }
    let (version, from) = match choice {
        SourceChoice::ByPlacement => return recover_by_placement(sheep, oid, epoch).await,
        SourceChoice::Again => return Err(SheepError::RecoverLater),
        SourceChoice::Lost => {
            tracing::error!(%oid, partial = partials.len(), "no live copy of the object found");
            return Err(SdResult::NoObj.into());
        }
        SourceChoice::KeepLocal(KeepReason::OnlyLiveCopy) => {
            tracing::warn!(%oid, "no other live copy; keeping the local one");
            // With replicas missing from the cluster (they are down too), served meanwhile
            // but compared again once they are back; with all there, it is the only copy.
            let copies = sheep.copies_of(oid, 0);
            if sheep.sys().nodes.len() < copies {
                sheep.recovery.keep_lone_suspect(oid);
            }
            return keep_local(mine.unwrap_or(0)).await;
        }
        SourceChoice::KeepLocal(KeepReason::Newest { newest }) => {
            tracing::debug!(%oid, version = newest, "the local copy is the newest");
            return keep_local(newest).await;
        }
        SourceChoice::Fetch { version, from } if mine == Some(version) => {
            // Ours is suspect (or stale) and as new: fetched only if it differs (copies
            // that agree, as after most unclean stops, cost two reads instead of a copy).
            if let Some(src) = from.first()
                && same_copy(sheep, oid, *src, epoch).await
            {
                tracing::debug!(%oid, from = %src, version, "suspect copy matches; kept");
                return keep_local(version).await;
            }
            (version, from)
        }
        SourceChoice::Fetch { version, from } => (version, from),
    };
    let newer = super::partial::newer_than(&partials, version);
    let overlays = fetch_newer(sheep, oid, epoch, &newer).await?;
    for nid in from {
        match fetch_peer(sheep, nid, oid, epoch, room).await {
            Ok(copy) if copy.partial() => {
                tracing::debug!(%oid, from = %nid, "only a partial copy there now");
            }
            // A copy of the wrong size is not the object (a broken peer): never store it.
            Ok(PeerCopy { data, .. }) if data.len() as u64 != size => {
                tracing::warn!(%oid, from = %nid, got = data.len(), want = size, "copy of the wrong size refused");
            }
            Ok(copy) => {
                let version = copy.epoch();
                store_copy(sheep, oid, copy.data, version, overlays).await?;
                tracing::debug!(%oid, from = %nid, version, "recovered object");
                return Ok(());
            }
            Err(r) => {
                tracing::debug!(%oid, from = %nid, result = %r, wanted = version, "newest copy not fetched")
            }
        }
    }
    Err(SheepError::RecoverLater)
}

/// Fetches the partial copies `newer` names (oldest first); AGAIN (recover later) if one
/// cannot be had: it may hold the only copy of acknowledged writes.
async fn fetch_newer(
    sheep: &Sheep,
    oid: Oid,
    epoch: Epoch,
    newer: &[(NodeId, u32)],
) -> SheepResult<Vec<(u32, Partial)>> {
    let size = sheep.object_size(oid);
    let room = u32::try_from(Partial::room(size, sd_store::PARTIAL_ALIGN))
        .map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let mut out = Vec::with_capacity(newer.len());
    for (nid, version) in newer {
        let copy = fetch_peer(sheep, *nid, oid, epoch, room).await;
        match copy.map(|c| (c.partial(), c.epoch(), Partial::decode(&c.data, size))) {
            Ok((true, v, Ok(partial))) if v >= *version => out.push((v, partial)),
            other => {
                tracing::info!(%oid, node = %nid, answer = ?other.map(|(p, v, _)| (p, v)), "partial copy not fetched; recovering later");
                return Err(SheepError::RecoverLater);
            }
        }
    }
    Ok(out)
}

/// Whether `nid`'s copy of `oid` is byte for byte ours (GET_HASH of both); false if
/// either cannot be hashed.
async fn same_copy(sheep: &Sheep, oid: Oid, nid: NodeId, epoch: Epoch) -> bool {
    let Ok(mine) = crate::disk::hash(&sheep.store, oid).await else {
        return false;
    };
    let mut h = RequestHeader::new(Opcode::GetHash).with_obj(ObjArgs {
        oid,
        tgt_epoch: epoch,
        ..ObjArgs::default()
    });
    h.epoch = epoch;
    matches!(
        sheep.leaf_peers.call(nid, h, Bytes::new()).await,
        Ok((rsp, _)) if rsp.result == SdResult::Success && rsp.hash() == mine
    )
}

/// Fetches `oid` from the most recent epoch's holders that are still alive and stores it:
/// the order when copies carry no version (see [`recover_one`]).
async fn recover_by_placement(sheep: &Sheep, oid: Oid, epoch: Epoch) -> SheepResult<()> {
    let copies = sheep.copies_of(oid, 0);
    let sources = {
        let sys = sheep.sys();
        let alive: HashSet<_> = sys.nodes.iter().map(|n| n.nid).collect();
        placement_sources(
            sheep.me.nid,
            &alive,
            &sys.epochs,
            &sys.ring,
            epoch,
            oid,
            copies,
        )
    };
    let size = sheep.object_size(oid);
    let len = u32::try_from(size).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let mut failures = Vec::new();
    for nid in sources {
        let mut h = RequestHeader::new(Opcode::ReadPeer).with_obj(ObjArgs {
            oid,
            tgt_epoch: epoch,
            ..ObjArgs::default()
        });
        h.flags = Flags::RECOVERY;
        h.epoch = epoch;
        h.data_length = len;
        match leaf_call(sheep, epoch, nid, h).await {
            // A copy of the wrong size is not the object (a broken peer): no answer to act
            // on, so recovery waits rather than keep a stale copy or call it lost.
            Ok((rsp, data)) if rsp.result == SdResult::Success && data.len() as u64 != size => {
                failures.push(SourceFailure::Unreachable);
                tracing::warn!(%oid, from = %nid, got = data.len(), want = size, "copy of the wrong size refused");
            }
            Ok((rsp, data)) if rsp.result == SdResult::Success => {
                store_copy(sheep, oid, data, 0, Vec::new()).await?;
                tracing::debug!(%oid, from = %nid, "recovered object");
                return Ok(());
            }
            Ok((rsp, _)) => {
                failures.push(SourceFailure::Refused(rsp.result));
                tracing::debug!(%oid, from = %nid, result = %rsp.result, "source cannot serve");
            }
            Err(e) => {
                failures.push(SourceFailure::Unreachable);
                tracing::debug!(%oid, from = %nid, error = %e, "source unreachable");
            }
        }
    }
    match placement_fallback(&failures, sheep.store.exists(oid)) {
        // Some source could not answer yet: try again later rather than give up.
        Fallback::Again => Err(SheepError::RecoverLater),
        Fallback::KeepLocal => {
            tracing::warn!(%oid, "no other live copy; keeping the local one");
            Ok(())
        }
        Fallback::Lost => {
            tracing::error!(%oid, "no live copy of the object found");
            Err(SdResult::NoObj.into())
        }
    }
}

/// Stores a recovered copy, keeping its source's `version` (a suspect source's flag is
/// not a version: the stored copy is no longer suspect), with the writes of other nodes'
/// newer partial copies (`overlays`, oldest first) and then this node's own partial copy
/// laid over it when they are newer (`partial::merge`).
async fn store_copy(
    sheep: &Sheep,
    oid: Oid,
    data: Bytes,
    version: u32,
    overlays: Vec<(u32, Partial)>,
) -> SheepResult<()> {
    let mut version = version & !sd_proto::peer_copy::SUSPECT;
    let data = if overlays.is_empty() {
        data
    } else {
        let mut buf = data.to_vec();
        for (v, partial) in &overlays {
            partial.overlay(&mut buf);
            version = version.max(*v);
        }
        tracing::info!(%oid, partial = overlays.len(), version, "writes of partial copies elsewhere merged");
        Bytes::from(buf)
    };
    let store = sheep.store.clone();
    let fresh = sheep.recovery.partial_is_fresh(oid);
    // Atomic and durable in both store modes: the old holder may drop its copy later.
    blocking(move || {
        let (data, version) = super::partial::merge(&store, oid, fresh, data, version)?;
        let spec = CreateSpec {
            size: data.len() as u64,
            sparse: oid.is_sparse(),
        };
        store.create_versioned(oid, spec, 0, &data, version)
    })
    .await
}
