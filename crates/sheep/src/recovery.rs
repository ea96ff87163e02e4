//! Object recovery after an epoch change: each node works out which objects it must hold
//! in the new epoch and fetches those it lacks from nodes that held them in earlier epochs.
//!
//! Local copies are not trusted after this node (re)joins: they may have missed writes while
//! it was away. Such copies are *unverified* and are refetched before they are served.
//! Objects the node no longer needs are removed only once every member has recovered the
//! epoch (`Outcome::Stable`). Client I/O to an object still pending recovers it first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sd_cluster::ClusterDriver;
use sd_cluster::log::LogEntry;
use sd_cluster::placement::Ring;
use sd_proto::node::NodeId;
use sd_proto::oid_list::OidList;
use sd_proto::peer_copy::PeerCopy;
use sd_proto::{Epoch, Flags, ObjArgs, Oid, Opcode, RequestHeader, SdResult};
use sd_store::CreateSpec;
use tokio::sync::Semaphore;

use crate::error::{SheepError, SheepResult};
use crate::sys::Sheep;

/// Attempts per source that is still catching up with the epoch.
const SOURCE_ATTEMPTS: u32 = 50;
/// Pause between those attempts.
const SOURCE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(20);
/// Passes over the objects that could not be recovered yet, before giving up on the epoch.
const PASSES: u32 = 240;
/// Pause between passes.
const PASS_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct State {
    /// Epoch being recovered.
    epoch: Epoch,
    /// Bumped whenever recovery restarts; running work notices and stops.
    generation: u64,
    /// Objects this node must fetch before serving them.
    pending: HashSet<Oid>,
    /// Local copies not validated since this node (re)joined.
    unverified: HashSet<Oid>,
    /// Objects recovered / to recover in this epoch.
    done: u64,
    total: u64,
    active: bool,
    locks: HashMap<Oid, Arc<tokio::sync::Mutex<()>>>,
    /// Unreadable local copies being replaced.
    repairing: HashSet<Oid>,
}

/// Recovery state shared by the background task and the I/O path.
#[derive(Debug, Default)]
pub struct Recovery {
    state: Mutex<State>,
    kick: tokio::sync::Notify,
}

/// Progress for STAT_RECOVERY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Recovery is running.
    pub active: bool,
    /// Objects done.
    pub done: u64,
    /// Objects to do.
    pub total: u64,
}

impl Recovery {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new epoch began: recover it (a rejoining node has already distrusted its copies,
    /// see [`Recovery::distrust`]).
    pub fn start_epoch(&self, epoch: Epoch) {
        let mut st = self.st();
        st.epoch = epoch;
        st.generation += 1;
        st.active = true;
        drop(st);
        self.kick.notify_one();
    }

    /// The cluster was formatted: nothing is pending any more.
    pub fn reset(&self) {
        let mut st = self.st();
        st.generation += 1;
        st.pending.clear();
        st.unverified.clear();
        st.active = false;
        st.done = 0;
        st.total = 0;
    }

    /// Whether `oid`'s local copy must be recovered before it is served.
    pub fn needs(&self, oid: Oid) -> bool {
        let st = self.st();
        st.pending.contains(&oid) || st.unverified.contains(&oid)
    }

    /// Progress of the current epoch.
    pub fn progress(&self) -> Progress {
        let st = self.st();
        Progress {
            active: st.active,
            done: st.done,
            total: st.total,
        }
    }

    fn lock_for(&self, oid: Oid) -> Arc<tokio::sync::Mutex<()>> {
        self.st().locks.entry(oid).or_default().clone()
    }

    fn settle(&self, oid: Oid) {
        let mut st = self.st();
        let was = st.pending.remove(&oid) | st.unverified.remove(&oid);
        if was {
            st.done += 1;
            crate::metrics::recovered();
        }
        st.locks.remove(&oid);
    }

    /// Runs `op`, which replaces or removes the whole local copy of `oid`, excluding any
    /// recovery of that object; afterwards an older copy no longer matters.
    pub async fn replace<F>(&self, oid: Oid, op: F) -> SheepResult<()>
    where
        F: std::future::Future<Output = SheepResult<()>>,
    {
        if !self.needs(oid) {
            return op.await;
        }
        let lock = self.lock_for(oid);
        let _g = lock.lock().await;
        op.await?;
        self.settle(oid);
        Ok(())
    }

    /// This node just (re)joined: none of `local` may be served before it is checked
    /// against the other copies.
    pub fn distrust(&self, local: Vec<Oid>) {
        let mut st = self.st();
        st.unverified.extend(local);
    }

    /// `oid` is missing here although this node is asked for it: it may be an object the
    /// new epoch placed here that recovery has not reached yet. Fetch it from its earlier
    /// holders; NO_OBJ if no live node has it.
    pub async fn recover_missing(&self, sheep: &Sheep, oid: Oid) -> SheepResult<()> {
        let lock = self.lock_for(oid);
        let _g = lock.lock().await;
        if sheep.store.exists(oid) {
            return Ok(());
        }
        let epoch = sheep.sys().epoch;
        recover_one(sheep, oid, epoch).await?;
        self.settle(oid);
        Ok(())
    }

    /// The local copy of `oid` could not be read (EIO): move it aside and fetch a good one
    /// from the other holders, as for a copy a failed writeback sync lost. Runs in the
    /// background; a repair of `oid` already under way covers later failures.
    pub fn repair_unreadable(&self, sheep: &Sheep, oid: Oid) {
        let Some(sheep) = sheep.self_ref() else {
            return;
        };
        if !self.st().repairing.insert(oid) {
            return;
        }
        tokio::spawn(async move {
            let r = sheep.recovery.repair(&sheep, oid).await;
            sheep.recovery.st().repairing.remove(&oid);
            match r {
                Ok(()) => tracing::info!(%oid, "unreadable copy replaced"),
                Err(e) => tracing::error!(%oid, error = %e, "replacing an unreadable copy failed"),
            }
        });
    }

    async fn repair(&self, sheep: &Sheep, oid: Oid) -> SheepResult<()> {
        let lock = self.lock_for(oid);
        let _g = lock.lock().await;
        let store = sheep.store.clone();
        match tokio::task::spawn_blocking(move || store.quarantine(oid)).await? {
            Ok(()) => tracing::warn!(%oid, "unreadable copy moved aside"),
            // Already gone (removed, or replaced by a create that moved it).
            Err(sd_store::StoreError::NoObject(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let epoch = sheep.sys().epoch;
        recover_one(sheep, oid, epoch).await?;
        self.settle(oid);
        Ok(())
    }

    /// Recovers `oid` now (client I/O reached it before the background task did).
    pub async fn recover_now(&self, sheep: &Sheep, oid: Oid) -> SheepResult<()> {
        let lock = self.lock_for(oid);
        let _g = lock.lock().await;
        if !self.needs(oid) {
            return Ok(());
        }
        let epoch = self.st().epoch;
        recover_one(sheep, oid, epoch).await?;
        self.settle(oid);
        Ok(())
    }
}

/// What a live node said of its copy of an object (FETCH_PEER without room for data).
enum Probe {
    /// It has one, last written in this epoch (0: unknown).
    Version(u32),
    /// It has none.
    Missing,
    /// It could not answer now.
    Busy,
    /// It does not know FETCH_PEER (a sheep of an older version, during a rolling upgrade).
    Unsupported,
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
enum Unanswered {
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
async fn leaf_request(
    sheep: &Sheep,
    epoch: Epoch,
    nid: NodeId,
    h: RequestHeader,
) -> Result<(sd_proto::ResponseHeader, Bytes), Unanswered> {
    let mut rx = sheep.epoch_tx.subscribe();
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
/// knows when its copy was last written), ours counts too (kept on a tie), and the newest
/// is fetched. A member that cannot answer might hold the newest: then this waits
/// (`AGAIN`). Copies without versions (a file system without user extended attributes),
/// or a member that predates FETCH_PEER, fall back to [`recover_by_placement`].
async fn recover_one(sheep: &Sheep, oid: Oid, epoch: Epoch) -> SheepResult<()> {
    let me = sheep.me.nid;
    let (members, size) = {
        let sys = sheep.sys();
        let shift = sheep
            .vdi_shift(oid.vid())
            .unwrap_or(sys.config.block_size_shift);
        let members: Vec<NodeId> = sys
            .nodes
            .iter()
            .map(|n| n.nid)
            .filter(|n| *n != me)
            .collect();
        (members, oid.object_size(shift))
    };
    let room = u32::try_from(size + 4).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let probes = futures::future::join_all(members.iter().map(|n| async move {
        match fetch_peer(sheep, *n, oid, epoch, 4).await {
            Ok(copy) => Probe::Version(copy.version),
            Err(SdResult::NoObj) => Probe::Missing,
            Err(SdResult::InvalidParms) => Probe::Unsupported,
            Err(_) => Probe::Busy,
        }
    }))
    .await;
    let store = sheep.store.clone();
    let mine = tokio::task::spawn_blocking(move || match store.version(oid) {
        Ok(v) => Ok(Some(v)),
        Err(sd_store::StoreError::NoObject(_)) => Ok(None),
        Err(e) => Err(e),
    })
    .await??;
    if probes.iter().any(|p| matches!(p, Probe::Unsupported)) {
        return recover_by_placement(sheep, oid, epoch).await;
    }
    let busy = probes.iter().any(|p| matches!(p, Probe::Busy));
    let best = probes
        .iter()
        .filter_map(|p| match *p {
            Probe::Version(v) => Some(v),
            _ => None,
        })
        .max();
    let Some(best) = best else {
        if busy {
            return Err(SdResult::Again.into());
        }
        if mine.is_some() {
            tracing::warn!(%oid, "no other live copy; keeping the local one");
            return Ok(());
        }
        tracing::error!(%oid, "no live copy of the object found");
        return Err(SdResult::NoObj.into());
    };
    if best == 0 && mine.unwrap_or(0) == 0 {
        return recover_by_placement(sheep, oid, epoch).await;
    }
    if busy {
        // A member that did not answer may hold a newer copy than any we saw.
        return Err(SdResult::Again.into());
    }
    if mine.is_some_and(|v| v >= best) {
        tracing::debug!(%oid, version = best, "the local copy is the newest");
        return Ok(());
    }
    let newest = members
        .iter()
        .zip(&probes)
        .filter(|&(_, p)| matches!(*p, Probe::Version(v) if v == best))
        .map(|(n, _)| *n);
    for nid in newest {
        match fetch_peer(sheep, nid, oid, epoch, room).await {
            Ok(PeerCopy { version, data }) if !data.is_empty() => {
                store_copy(sheep, oid, data, version).await?;
                tracing::debug!(%oid, from = %nid, version, "recovered object");
                return Ok(());
            }
            Ok(_) => {}
            Err(r) => tracing::debug!(%oid, from = %nid, result = %r, "newest copy not fetched"),
        }
    }
    Err(SdResult::Again.into())
}

/// Fetches `oid` from the most recent epoch's holders that are still alive and stores it:
/// the order when copies carry no version (see [`recover_one`]).
async fn recover_by_placement(sheep: &Sheep, oid: Oid, epoch: Epoch) -> SheepResult<()> {
    let copies = sheep.copies_of(oid, 0);
    let (sources, size) = {
        let sys = sheep.sys();
        let alive: HashSet<_> = sys.nodes.iter().map(|n| n.nid).collect();
        let mut sources = Vec::new();
        for h in sys.epochs.iter().rev().filter(|h| h.epoch < epoch) {
            for n in Ring::new(&h.members).replicas(oid, copies) {
                if n.nid != sheep.me.nid && alive.contains(&n.nid) && !sources.contains(&n.nid) {
                    sources.push(n.nid);
                }
            }
        }
        // Last resort: current holders (they may have recovered it already).
        for n in sys.ring.replicas(oid, copies) {
            if n.nid != sheep.me.nid && !sources.contains(&n.nid) {
                sources.push(n.nid);
            }
        }
        let shift = sheep
            .vdi_shift(oid.vid())
            .unwrap_or(sys.config.block_size_shift);
        (sources, oid.object_size(shift))
    };
    let len = u32::try_from(size).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let mut busy = false;
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
            Ok((rsp, data)) if rsp.result == SdResult::Success => {
                store_copy(sheep, oid, data, 0).await?;
                tracing::debug!(%oid, from = %nid, "recovered object");
                return Ok(());
            }
            Ok((rsp, _)) => {
                busy |= matches!(rsp.result, SdResult::NewNodeVer | SdResult::OldNodeVer);
                tracing::debug!(%oid, from = %nid, result = %rsp.result, "source cannot serve");
            }
            Err(e) => {
                busy = true;
                tracing::debug!(%oid, from = %nid, error = %e, "source unreachable");
            }
        }
    }
    if busy {
        // Some source could not answer yet: try again later rather than give up.
        return Err(SdResult::Again.into());
    }
    if sheep.store.exists(oid) {
        tracing::warn!(%oid, "no other live copy; keeping the local one");
        return Ok(());
    }
    tracing::error!(%oid, "no live copy of the object found");
    Err(SdResult::NoObj.into())
}

/// Leaves out copies of deleted VDIs' objects that nothing references any more: a node
/// that was away when they were deleted still lists them, but they are dead data (swept
/// later), and the only copy left may be that node's distrusted one, so trying to
/// recover them would never finish.
async fn skip_dead(sheep: &Sheep, todo: Vec<Oid>) -> Vec<Oid> {
    let candidates = crate::reclaim::dead_candidates(sheep, &todo);
    if candidates.is_empty() {
        return todo;
    }
    let dead: HashSet<Oid> = match crate::reclaim::unreferenced(sheep, &candidates).await {
        Ok(d) => d.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "checking copies of deleted VDIs failed; recovering them");
            return todo;
        }
    };
    let mut st = sheep.recovery.st();
    for oid in &dead {
        st.pending.remove(oid);
    }
    drop(st);
    tracing::info!(
        skipped = dead.len(),
        "not recovering copies of deleted VDIs"
    );
    todo.into_iter().filter(|o| !dead.contains(o)).collect()
}

/// Stores a recovered copy, keeping its source's `version`.
async fn store_copy(sheep: &Sheep, oid: Oid, data: Bytes, version: u32) -> SheepResult<()> {
    let store = sheep.store.clone();
    let spec = CreateSpec {
        size: data.len() as u64,
        sparse: oid.is_sparse(),
    };
    // Atomic and durable in both store modes: the old holder may drop its copy later.
    Ok(
        tokio::task::spawn_blocking(move || store.create_versioned(oid, spec, 0, &data, version))
            .await??,
    )
}

/// Every object some live member stores (ours included), for the recovery of `epoch`;
/// AGAIN if a member's list is unavailable or the cluster leaves `epoch` first.
async fn cluster_objects(sheep: &Sheep, epoch: Epoch) -> SheepResult<HashSet<Oid>> {
    let store = sheep.store.clone();
    let mut all: HashSet<Oid> = tokio::task::spawn_blocking(move || store.list())
        .await??
        .into_iter()
        .collect();
    let others: Vec<_> = sheep
        .sys()
        .nodes
        .iter()
        .map(|n| n.nid)
        .filter(|n| *n != sheep.me.nid)
        .collect();
    for nid in others {
        let mut buf_len: u32 = 1 << 20;
        let mut attempts = 0u32;
        loop {
            let mut h = RequestHeader::new(Opcode::GetObjList);
            h.data_length = buf_len;
            let refused = match leaf_request(sheep, epoch, nid, h).await {
                // A list that is not whole oids is malformed: like a list not had.
                Ok((rsp, data)) if rsp.result == SdResult::Success => {
                    match OidList::decode(&data) {
                        Ok(list) => {
                            all.extend(list.oids);
                            break;
                        }
                        Err(e) => e.to_string(),
                    }
                }
                Ok((rsp, _)) if rsp.result == SdResult::BufferSmall && buf_len < (1 << 30) => {
                    buf_len *= 4;
                    continue;
                }
                Ok((rsp, _)) => rsp.result.to_string(),
                // A newer epoch's recovery takes over.
                Err(Unanswered::EpochMoved(_)) => return Err(SdResult::Again.into()),
                Err(e) => e.to_string(),
            };
            // Without this member's list we cannot know what to recover: never announce
            // completion on a partial view. A member still applying the epoch catches up
            // in moments; a dead one is about to leave, which starts a new pass anyway.
            attempts += 1;
            if attempts >= SOURCE_ATTEMPTS {
                tracing::warn!(node = %nid, reason = %refused, "object list unavailable");
                return Err(SdResult::Again.into());
            }
            tokio::time::sleep(SOURCE_BACKOFF).await;
        }
    }
    Ok(all)
}

/// The first wait before an incomplete recovery is tried again within its epoch.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between such retries.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The background recovery task. An epoch's recovery that could not finish (an object with
/// no live copy yet, a peer not answering) is tried again, with a growing delay, until it
/// finishes or a new epoch starts another: what blocked it may clear without any
/// membership change (e.g. the interrupted delete of the objects it could not find is
/// completed, so they need no recovery).
pub async fn run(sheep: Arc<Sheep>) {
    let mut retry: Option<Duration> = None;
    loop {
        let wait = async {
            match retry {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let kicked = tokio::select! {
            () = sheep.cancel.cancelled() => return,
            () = sheep.recovery.kick.notified() => true,
            () = wait => false,
        };
        let finished = match recover_epoch(&sheep).await {
            Ok(finished) => finished,
            Err(e) => {
                tracing::warn!(error = %e, "recovery pass failed; will retry");
                false
            }
        };
        retry = match (finished, retry) {
            (true, _) => None,
            (false, Some(d)) if !kicked => Some((d * 2).min(RETRY_MAX)),
            (false, _) => Some(RETRY_FIRST),
        };
    }
}

/// One recovery pass over the current epoch; whether nothing is left to retry (finished,
/// or superseded by a newer epoch).
async fn recover_epoch(sheep: &Arc<Sheep>) -> SheepResult<bool> {
    let rec = &sheep.recovery;
    let (epoch, generation) = {
        let st = rec.st();
        (st.epoch, st.generation)
    };
    let all = match cluster_objects(sheep, epoch).await {
        Ok(all) => all,
        // Superseded: the new epoch's recovery was kicked.
        Err(_) if rec.st().generation != generation => return Ok(true),
        Err(e) => return Err(e),
    };
    let ring = sheep.sys().ring.clone();
    let me = sheep.me.nid;
    let mut todo = Vec::new();
    for oid in all {
        let copies = sheep.copies_of(oid, 0);
        if ring.replicas(oid, copies).iter().any(|n| n.nid == me) {
            let have = sheep.store.exists(oid);
            let mut st = rec.st();
            if !have {
                st.pending.insert(oid);
            }
            if st.pending.contains(&oid) || st.unverified.contains(&oid) {
                todo.push(oid);
            }
        }
    }
    let mut todo = skip_dead(sheep, todo).await;
    {
        let mut st = rec.st();
        if st.generation != generation {
            return Ok(true);
        }
        st.done = 0;
        st.total = todo.len() as u64;
    }
    tracing::info!(%epoch, objects = todo.len(), "recovery started");
    let mut failed = 0usize;
    for pass in 0..PASSES {
        if pass > 0 {
            tokio::time::sleep(PASS_BACKOFF).await;
        }
        let throttle = sheep.cfg.recovery;
        let sem = Arc::new(Semaphore::new(throttle.max.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut window = (tokio::time::Instant::now(), 0usize);
        for oid in std::mem::take(&mut todo) {
            if rec.st().generation != generation {
                return Ok(true);
            }
            // Rate limit: at most `max` objects started per `interval`.
            if !throttle.interval.is_zero() {
                if window.1 >= throttle.max {
                    tokio::time::sleep_until(window.0 + throttle.interval).await;
                    window = (tokio::time::Instant::now(), 0);
                }
                window.1 += 1;
            }
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let sheep = sheep.clone();
            tasks.spawn(async move {
                let r = sheep.recovery.recover_now(&sheep, oid).await;
                drop(permit);
                (oid, r)
            });
        }
        while let Some(r) = tasks.join_next().await {
            if let Ok((oid, Err(e))) = r {
                if e.result() == SdResult::Again {
                    todo.push(oid);
                } else {
                    failed += 1;
                    tracing::warn!(%oid, error = %e, "object not recovered");
                }
            }
        }
        if todo.is_empty() {
            break;
        }
    }
    if !todo.is_empty() || failed > 0 {
        // Not announcing completion keeps every other copy in place.
        tracing::warn!(%epoch, failed, waiting = todo.len(), "recovery incomplete; will retry");
        return Ok(false);
    }
    let current = {
        let mut st = rec.st();
        let current = st.generation == generation;
        if current {
            st.active = false;
        }
        current
    };
    if !current {
        return Ok(true);
    }
    tracing::info!(%epoch, "recovery finished");
    sheep
        .driver
        .append(LogEntry::RecoveryDone { nid: me, epoch })
        .await
        .map_err(|_| SheepError::Result(SdResult::ClusterError))?;
    Ok(true)
}

/// Every member recovered `epoch`: drop the copies this node no longer holds.
pub async fn cleanup(sheep: &Sheep, epoch: Epoch) -> SheepResult<()> {
    if sheep.sys().epoch != epoch {
        return Ok(());
    }
    let ring = sheep.sys().ring.clone();
    let store = sheep.store.clone();
    let list = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.list()
    })
    .await??;
    let mut stale = Vec::new();
    for oid in list {
        let copies = sheep.copies_of(oid, 0);
        if !ring
            .replicas(oid, copies)
            .iter()
            .any(|n| n.nid == sheep.me.nid)
        {
            stale.push(oid);
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    {
        let mut st = sheep.recovery.st();
        for oid in &stale {
            st.unverified.remove(oid);
            st.pending.remove(oid);
        }
    }
    let n = stale.len();
    tokio::task::spawn_blocking(move || {
        for oid in stale {
            match store.remove(oid) {
                Ok(()) | Err(sd_store::StoreError::NoObject(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await??;
    tracing::info!(%epoch, removed = n, "removed copies no longer placed here");
    Ok(())
}
