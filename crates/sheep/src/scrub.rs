//! The background scrub (`--scrub-interval`): copies that drifted apart (a fan-out cut
//! short, a power cut before a flush, a bit flipped on disk) are found and made identical
//! again without anyone asking.
//!
//! Each pass walks this node's objects and takes the ones whose first replica holding a
//! copy is this node (usually: the ones it places first), so every object is scrubbed by
//! one node, including one whose first replica lost its copy. For each: GET_HASH of every replica's
//! copy (its own hashed here), [`sd_cluster::check::decide`] decides (as for `dog vdi check`), and a copy that is
//! missing or differs from the majority is replaced by REPAIR_REPLICA (or fetched here when
//! the odd copy is this node's). A mismatch is only acted on if a second look, a moment
//! later, sees the same hashes: copies caught between the replicas' parts of a client
//! write read different for an instant and are left alone. Nothing runs while recovery is
//! active or once the epoch moved; reads are paced to `--scrub-rate`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sd_cluster::check::{Answer, Decision, decide};
use sd_proto::node::NodeId;
use sd_proto::oid_list::OidList;
use sd_proto::{Epoch, Flags, ForwArgs, ObjArgs, ObjectKind, Oid, Opcode, RequestHeader, SdResult};

use crate::disk::blocking;
use crate::error::SheepResult;
use crate::node::Sheep;

/// How long a mismatch must persist before it is repaired.
const SECOND_LOOK: Duration = Duration::from_millis(500);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Objects compared across their replicas.
    pub scrubbed: usize,
    /// Objects with a copy missing or different.
    pub mismatches: usize,
    /// Copies replaced.
    pub repaired: usize,
    /// Objects left as they were: no majority, a replica that did not answer, or a repair
    /// that failed.
    pub unresolved: usize,
}

/// Runs scrub passes until the node stops (a no-op when `--scrub-interval` is 0).
pub async fn run(sheep: Arc<Sheep>) {
    let cfg = sheep.cfg.scrub;
    if cfg.interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = sheep.cancel.cancelled() => return,
            () = tokio::time::sleep(cfg.interval) => {}
        }
        match pass(&sheep).await {
            Ok(Some(s)) => tracing::info!(
                scrubbed = s.scrubbed,
                mismatches = s.mismatches,
                repaired = s.repaired,
                unresolved = s.unresolved,
                "scrub pass finished"
            ),
            Ok(None) => tracing::debug!("scrub pass skipped or cut short"),
            Err(e) => tracing::warn!(error = %e, "scrub pass failed"),
        }
    }
}

/// One pass over the objects this node places first. `None`: not run, or abandoned
/// because recovery started or the epoch moved.
pub async fn pass(sheep: &Sheep) -> SheepResult<Option<PassStats>> {
    let epoch = sheep.sys().epoch;
    if sheep.recovery.progress().active {
        return Ok(None);
    }
    let store = sheep.store.clone();
    let local = blocking(move || store.list()).await?;
    let mut stats = PassStats::default();
    for (oid, replicas) in scrubbed_here(sheep, epoch, local).await {
        if sheep.cancel.is_cancelled()
            || sheep.sys().epoch != epoch
            || sheep.recovery.progress().active
        {
            return Ok(None);
        }
        let started = tokio::time::Instant::now();
        let outcome = check_object(sheep, epoch, oid, &replicas, decide).await;
        stats.scrubbed += 1;
        let (mismatch, repaired) = match outcome {
            Outcome::Agree => (false, 0),
            Outcome::Repaired(n) => (true, n),
            Outcome::Unresolved { mismatch } => {
                stats.unresolved += 1;
                (mismatch, 0)
            }
        };
        stats.mismatches += usize::from(mismatch);
        stats.repaired += repaired;
        crate::metrics::scrubbed(mismatch, repaired);
        pace(sheep, oid, started).await;
    }
    Ok(Some(stats))
}

/// The objects among `local` this node scrubs, with their replicas: data and inode objects
/// of live VDIs whose first replica holding a copy is this node. Usually that is the first
/// replica; when it (or every replica before this node) lacks the object, this node takes
/// over, so a copy missing on the first replica is found too. Whether the earlier replicas
/// hold one is asked with one OIDS_EXIST per node; a node that does not answer is taken
/// to hold it (it scrubs the object itself once it can).
async fn scrubbed_here(sheep: &Sheep, epoch: Epoch, local: Vec<Oid>) -> Vec<(Oid, Vec<NodeId>)> {
    let me = sheep.me.nid;
    let ring = sheep.sys().ring.clone();
    let mut first = Vec::new();
    let mut later = Vec::new();
    let mut ask: HashMap<NodeId, Vec<Oid>> = HashMap::new();
    for oid in local {
        if !matches!(oid.kind(), ObjectKind::Data | ObjectKind::Inode)
            || !sheep.vdis().is_live(oid.vid())
        {
            continue;
        }
        let replicas: Vec<NodeId> = ring
            .replicas(oid, sheep.copies_of(oid, 0))
            .iter()
            .map(|n| n.nid)
            .collect();
        match replicas.iter().position(|n| *n == me) {
            Some(0) => first.push((oid, replicas)),
            Some(pos) => {
                for n in replicas.iter().take(pos) {
                    ask.entry(*n).or_default().push(oid);
                }
                later.push((oid, pos, replicas));
            }
            None => {}
        }
    }
    let mut lacking: HashSet<(NodeId, Oid)> = HashSet::new();
    for (nid, oids) in ask {
        for chunk in oids.chunks(EXIST_BATCH) {
            for oid in missing_on(sheep, epoch, nid, chunk).await {
                lacking.insert((nid, oid));
            }
        }
    }
    first.extend(later.into_iter().filter_map(|(oid, pos, replicas)| {
        let earlier_lack = replicas
            .iter()
            .take(pos)
            .all(|n| lacking.contains(&(*n, oid)));
        earlier_lack.then_some((oid, replicas))
    }));
    first
}

/// Object ids per OIDS_EXIST request.
const EXIST_BATCH: usize = 1 << 14;

/// Which of `oids` node `nid` lacks (OIDS_EXIST); none if it cannot be asked.
async fn missing_on(sheep: &Sheep, epoch: Epoch, nid: NodeId, oids: &[Oid]) -> Vec<Oid> {
    let payload = Bytes::from(
        OidList {
            oids: oids.to_vec(),
        }
        .encode(),
    );
    let mut h = RequestHeader::new(Opcode::OidsExist);
    h.epoch = epoch;
    h.flags = Flags::WRITE | Flags::PIGGYBACK;
    h.data_length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    match sheep.leaf_peers.call(nid, h, payload).await {
        Ok((rsp, data)) if matches!(rsp.result, SdResult::Success | SdResult::NoObj) => {
            OidList::decode(&data).map(|l| l.oids).unwrap_or_default()
        }
        Ok(_) | Err(_) => Vec::new(),
    }
}

/// Sleeps so that this node hashes at most `--scrub-rate` bytes per second.
async fn pace(sheep: &Sheep, oid: Oid, started: tokio::time::Instant) {
    let size = sheep.object_size(oid);
    let budget = Duration::from_secs_f64(size as f64 / sheep.cfg.scrub.rate as f64);
    tokio::select! {
        () = sheep.cancel.cancelled() => {}
        () = tokio::time::sleep_until(started + budget) => {}
    }
}

/// What checking one object's copies came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every copy is the same.
    Agree,
    /// This many copies were replaced.
    Repaired(usize),
    /// Left as it was; `mismatch`: the copies were seen to differ.
    Unresolved { mismatch: bool },
}

/// Compares the copies of `oid` on `replicas` (GET_HASH), and replaces the ones `rule`
/// says are wrong, if a second look a moment later sees the same copies: the scrub's
/// step (`decide`), and the fan-out reconciliation's (`settle`, in `crate::fanout`).
pub(crate) async fn check_object(
    sheep: &Sheep,
    epoch: Epoch,
    oid: Oid,
    replicas: &[NodeId],
    rule: fn(&[Answer]) -> Decision,
) -> Outcome {
    let first = answers(sheep, epoch, oid, replicas).await;
    match rule(&first) {
        Decision::Good { repairs, .. } if repairs.is_empty() => return Outcome::Agree,
        Decision::Good { .. } => {}
        Decision::Undecided => return Outcome::Unresolved { mismatch: false },
        Decision::NoMajority | Decision::Lost => {
            tracing::warn!(%oid, ?first, "copies differ and no majority agrees");
            return Outcome::Unresolved { mismatch: true };
        }
    }
    tokio::time::sleep(SECOND_LOOK).await;
    let second = answers(sheep, epoch, oid, replicas).await;
    if second != first || sheep.sys().epoch != epoch {
        // Written (or recovered) meanwhile: the next pass looks again.
        return Outcome::Unresolved { mismatch: true };
    }
    let Decision::Good { source, repairs } = rule(&second) else {
        return Outcome::Unresolved { mismatch: true };
    };
    let Some(source) = replicas.get(source).copied() else {
        return Outcome::Unresolved { mismatch: true };
    };
    tracing::warn!(%oid, %source, ?repairs, "copies differ: repairing");
    let mut repaired = 0;
    for (i, _) in &repairs {
        let (Some(target), Some(seen)) = (replicas.get(*i).copied(), second.get(*i).copied())
        else {
            continue;
        };
        match repair(sheep, epoch, oid, target, source, seen).await {
            Ok(()) => repaired += 1,
            Err(e) => tracing::warn!(%oid, node = %target, error = %e, "repair failed"),
        }
    }
    if repaired == repairs.len() && !second.contains(&Answer::Failed) {
        Outcome::Repaired(repaired)
    } else {
        Outcome::Unresolved { mismatch: true }
    }
}

/// GET_HASH of every replica's copy, in `replicas` order.
async fn answers(sheep: &Sheep, epoch: Epoch, oid: Oid, replicas: &[NodeId]) -> Vec<Answer> {
    futures::future::join_all(replicas.iter().map(|n| answer(sheep, epoch, oid, *n))).await
}

async fn answer(sheep: &Sheep, epoch: Epoch, oid: Oid, nid: NodeId) -> Answer {
    let hash = if nid == sheep.me.nid {
        crate::replica::hash(sheep, oid)
            .await
            .map_err(|e| e.result())
    } else {
        let mut h = RequestHeader::new(Opcode::GetHash).with_obj(ObjArgs {
            oid,
            tgt_epoch: epoch,
            ..ObjArgs::default()
        });
        h.epoch = epoch;
        match sheep.leaf_peers.call(nid, h, Bytes::new()).await {
            Ok((rsp, _)) if rsp.result == SdResult::Success => Ok(rsp.hash()),
            Ok((rsp, _)) => Err(rsp.result),
            Err(_) => Err(SdResult::NetworkError),
        }
    };
    match hash {
        Ok(h) => Answer::Hash(h),
        Err(SdResult::NoObj) => Answer::Missing,
        Err(_) => Answer::Failed,
    }
}

/// Makes `target`'s copy of `oid` (seen as `seen`) the one `source` holds; refused if the
/// copy changed since it was seen.
async fn repair(
    sheep: &Sheep,
    epoch: Epoch,
    oid: Oid,
    target: NodeId,
    source: NodeId,
    seen: Answer,
) -> SheepResult<()> {
    if target == sheep.me.nid {
        return crate::recovery::object::repair_from(sheep, oid, source, Some(seen)).await;
    }
    let seen = sd_cluster::check::seen_payload(seen);
    let mut h = RequestHeader::new(Opcode::RepairReplica).with_forw(ForwArgs { oid, from: source });
    h.epoch = epoch;
    h.flags = Flags::WRITE;
    h.data_length = 20;
    // Not a leaf request: the target waits on its fetch from `source`.
    match sheep
        .peers
        .call(target, h, Bytes::copy_from_slice(&seen))
        .await
    {
        Ok((rsp, _)) if rsp.result == SdResult::Success => Ok(()),
        Ok((rsp, _)) => Err(rsp.result.into()),
        Err(_) => Err(SdResult::NetworkError.into()),
    }
}
