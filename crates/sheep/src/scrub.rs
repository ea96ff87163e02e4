//! The background scrub (`--scrub-interval`): copies that drifted apart (a fan-out cut
//! short, a power cut before a flush, a bit flipped on disk) are found and made identical
//! again without anyone asking.
//!
//! Each pass walks this node's objects and takes the ones it places first among their
//! replicas, so every object is scrubbed by one node. For each: GET_HASH of every replica's
//! copy (its own hashed here), [`sd_cluster::check::decide`] decides (as for `dog vdi check`), and a copy that is
//! missing or differs from the majority is replaced by REPAIR_REPLICA (or fetched here when
//! the odd copy is this node's). A mismatch is only acted on if a second look, a moment
//! later, sees the same hashes: copies caught between the replicas' parts of a client
//! write read different for an instant and are left alone. Nothing runs while recovery is
//! active or once the epoch moved; reads are paced to `--scrub-rate`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sd_cluster::check::{Answer, Decision, decide};
use sd_proto::node::NodeId;
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
    for oid in local {
        if sheep.cancel.is_cancelled()
            || sheep.sys().epoch != epoch
            || sheep.recovery.progress().active
        {
            return Ok(None);
        }
        let Some(replicas) = scrubbed_here(sheep, oid) else {
            continue;
        };
        let started = tokio::time::Instant::now();
        let outcome = scrub_object(sheep, epoch, oid, &replicas).await;
        stats.scrubbed += 1;
        match outcome {
            Outcome::Agree => {}
            Outcome::Repaired(n) => {
                stats.mismatches += 1;
                stats.repaired += n;
            }
            Outcome::Unresolved { mismatch } => {
                stats.mismatches += usize::from(mismatch);
                stats.unresolved += 1;
            }
        }
        let (mismatch, repaired) = match outcome {
            Outcome::Agree => (false, 0),
            Outcome::Repaired(n) => (true, n),
            Outcome::Unresolved { mismatch } => (mismatch, 0),
        };
        crate::metrics::scrubbed(mismatch, repaired);
        pace(sheep, oid, started).await;
    }
    Ok(Some(stats))
}

/// The replicas of `oid` when this node scrubs it: a data or inode object of a live VDI
/// that this node places first.
fn scrubbed_here(sheep: &Sheep, oid: Oid) -> Option<Vec<NodeId>> {
    if !matches!(oid.kind(), ObjectKind::Data | ObjectKind::Inode) {
        return None;
    }
    if !sheep.vdis().is_live(oid.vid()) {
        return None;
    }
    let copies = sheep.copies_of(oid, 0);
    let replicas: Vec<NodeId> = sheep
        .sys()
        .ring
        .replicas(oid, copies)
        .iter()
        .map(|n| n.nid)
        .collect();
    (replicas.first() == Some(&sheep.me.nid)).then_some(replicas)
}

/// Sleeps so that this node hashes at most `--scrub-rate` bytes per second.
async fn pace(sheep: &Sheep, oid: Oid, started: tokio::time::Instant) {
    let shift = sheep
        .vdi_shift(oid.vid())
        .unwrap_or(sheep.sys().config.block_size_shift);
    let size = oid.object_size(shift);
    let budget = Duration::from_secs_f64(size as f64 / sheep.cfg.scrub.rate as f64);
    tokio::select! {
        () = sheep.cancel.cancelled() => {}
        () = tokio::time::sleep_until(started + budget) => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Agree,
    /// This many copies were replaced.
    Repaired(usize),
    /// Left as it was; `mismatch`: the copies were seen to differ.
    Unresolved {
        mismatch: bool,
    },
}

async fn scrub_object(sheep: &Sheep, epoch: Epoch, oid: Oid, replicas: &[NodeId]) -> Outcome {
    let first = answers(sheep, epoch, oid, replicas).await;
    match decide(&first) {
        Decision::Good { repairs, .. } if repairs.is_empty() => return Outcome::Agree,
        Decision::Good { .. } => {}
        Decision::Undecided => return Outcome::Unresolved { mismatch: false },
        Decision::NoMajority | Decision::Lost => {
            tracing::warn!(%oid, ?first, "scrub: copies differ and no majority agrees");
            return Outcome::Unresolved { mismatch: true };
        }
    }
    tokio::time::sleep(SECOND_LOOK).await;
    let second = answers(sheep, epoch, oid, replicas).await;
    if second != first || sheep.sys().epoch != epoch {
        // Written (or recovered) meanwhile: the next pass looks again.
        return Outcome::Unresolved { mismatch: true };
    }
    let Decision::Good { source, repairs } = decide(&second) else {
        return Outcome::Unresolved { mismatch: true };
    };
    let Some(source) = replicas.get(source).copied() else {
        return Outcome::Unresolved { mismatch: true };
    };
    tracing::warn!(%oid, %source, ?repairs, "scrub: repairing copies");
    let mut repaired = 0;
    for (i, _) in &repairs {
        let (Some(target), Some(seen)) = (replicas.get(*i).copied(), second.get(*i).copied())
        else {
            continue;
        };
        match repair(sheep, epoch, oid, target, source, seen).await {
            Ok(()) => repaired += 1,
            Err(e) => tracing::warn!(%oid, node = %target, error = %e, "scrub: repair failed"),
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
    match sheep
        .leaf_peers
        .call(target, h, Bytes::copy_from_slice(&seen))
        .await
    {
        Ok((rsp, _)) if rsp.result == SdResult::Success => Ok(()),
        Ok((rsp, _)) => Err(rsp.result.into()),
        Err(_) => Err(SdResult::NetworkError.into()),
    }
}
