//! Objects moving because a VDI's copy count changed (ALTER_VDI_COPY, applied in log order
//! as `ClusterMsg::AlterVdiCopy`): no new epoch, so none of the epoch's protections apply
//! by themselves. What takes their place:
//!
//! - every member recovers the epoch again, as a new *pass* of it
//!   (`sd_cluster::Outcome::NewPass`); copies no longer placed are removed only once every
//!   member reported that pass done (`Outcome::Stable`, [`super::cleanup`]);
//! - before a node fetches anything for such a pass, every other member has applied the
//!   log up to the pass's start ([`catch_up`]), so none still writes by the old counts: a
//!   write a gateway began by them and finishes later is sent again to the new holders
//!   (`gateway::mutate`), and one finished before reached the old holders, which the new
//!   ones fetch from. Client I/O that must recover an object waits for it too
//!   ([`wait_caught_up`]);
//! - a node asked for an object (of a VDI it knows) that it lacks or distrusts and that
//!   its own view does not place on it answers NEW_NODE_VER: the gateway applied a change
//!   this node has not yet, and retries in a moment ([`placed_here`], used by `replica`);
//! - leftover copies whose placement on this node a change flips (a reduction followed by
//!   an increase before the cleanup) missed the writes made in between although their
//!   version may equal the newest: they are *stale* ([`before_change`]), re-verified
//!   before they are served, lose version ties, and are reported as suspect to the other
//!   members' version probes.

use std::time::Duration;

use bytes::Bytes;
use sd_proto::{Epoch, Oid, Opcode, RequestHeader, SdResult, Vid};

use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;

/// How long client I/O waits for the members to catch up before it is answered AGAIN
/// (the gateway retries).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);
/// Attempts per member at the catch-up request before the pass is retried later.
const CATCH_UP_ATTEMPTS: u32 = 20;
/// Pause between those attempts.
const CATCH_UP_BACKOFF: Duration = Duration::from_millis(50);

/// Whether this node's view (its ring and its VDI table now) places `oid` on it. True for
/// an object of a VDI this node does not know: it cannot tell (the gateway may know the
/// VDI's count, and a table rebuilt from local inodes may miss VDIs for good).
pub fn placed_here(sheep: &Sheep, oid: Oid) -> bool {
    // The count before the ring: the VDI table's lock is not held with the sys lock.
    let Some(copies) = sheep.vdi_copies(oid) else {
        return true;
    };
    let ring = sheep.sys().ring.clone();
    ring.replicas(oid, copies)
        .iter()
        .any(|n| n.nid == sheep.me.nid)
}

/// Before the follower applies a change of `vid`'s copies to `copies` (so that no read
/// reaches a copy the change places here before it is distrusted): marks stale the local
/// copies of `vid`'s objects the change places here or stops placing here.
pub async fn before_change(sheep: &Sheep, vid: Vid, copies: u8) -> SheepResult<()> {
    let old = {
        let t = sheep.vdis();
        let accepted = sd_cluster::vdi_fold::valid_copies(copies)
            && t.is_standalone(vid)
            && t.get(vid).is_some_and(|e| e.copy_policy == 0);
        match t.get(vid) {
            Some(e) if accepted && e.nr_copies != copies => usize::from(e.nr_copies.max(1)),
            // The fold refuses it, or nothing moves.
            _ => return Ok(()),
        }
    };
    let new = usize::from(copies);
    let store = sheep.store.clone();
    let local = blocking(move || store.list()).await?;
    let ring = sheep.sys().ring.clone();
    let me = sheep.me.nid;
    let here = |oid: Oid, n: usize| ring.replicas(oid, n).iter().any(|h| h.nid == me);
    let flipped: Vec<Oid> = local
        .into_iter()
        .filter(|oid| oid.vid() == vid && here(*oid, old) != here(*oid, new))
        .collect();
    tracing::info!(
        %vid,
        old,
        new,
        flipped = flipped.len(),
        "VDI copies change: copies placed here, or no longer, distrusted"
    );
    if !flipped.is_empty() {
        sheep.recovery.distrust_stale(flipped);
    }
    Ok(())
}

/// After the follower applied a change of copies: partial copies of objects no longer
/// placed here stop being fresh (as after an epoch change).
pub fn after_change(sheep: &Sheep) {
    let ring = sheep.sys().ring.clone();
    super::partial::unplaced(sheep, &ring);
}

/// Waits until the recovery pass of `epoch` is caught up ([`catch_up`]); AGAIN (the
/// gateway retries) if that takes longer than [`CATCH_UP_WAIT`].
pub(super) async fn wait_caught_up(sheep: &Sheep, epoch: Epoch) -> SheepResult<()> {
    tokio::time::timeout(CATCH_UP_WAIT, sheep.recovery.wait_caught_up(epoch))
        .await
        .map_err(|_| SheepError::RecoverLater)
}

/// Returns once every other member has applied the log at least up to now: each is sent
/// GET_VDI_COPIES, which a sheep answers only after a barrier of its own in the log (any
/// answer, BUFFER_SMALL for the empty buffer included, comes after it). AGAIN (the pass is
/// retried) if a member does not answer, or the cluster leaves `epoch` first.
pub(super) async fn catch_up(sheep: &Sheep, epoch: Epoch) -> SheepResult<()> {
    let others = sheep.other_members();
    let asks = others.iter().map(|nid| async move {
        for _ in 0..CATCH_UP_ATTEMPTS {
            let h = RequestHeader::new(Opcode::GetVdiCopies);
            let mut moved = sheep.watch_epoch();
            let answer = tokio::select! {
                biased;
                r = sheep.peers.call(*nid, h, Bytes::new()) => r,
                Ok(_) = moved.wait_for(|e| *e != epoch) => return Err(SheepError::RecoverLater),
            };
            match answer {
                Ok((rsp, _)) if matches!(rsp.result, SdResult::Success | SdResult::BufferSmall) => {
                    return Ok(());
                }
                Ok((rsp, _)) => {
                    tracing::debug!(node = %nid, result = %rsp.result, "catch-up refused")
                }
                Err(e) => tracing::debug!(node = %nid, error = %e, "catch-up unanswered"),
            }
            tokio::time::sleep(CATCH_UP_BACKOFF).await;
        }
        tracing::warn!(node = %nid, %epoch, "member did not catch up with a copies change");
        Err(SheepError::RecoverLater)
    });
    for r in futures::future::join_all(asks).await {
        r?;
    }
    Ok(())
}
