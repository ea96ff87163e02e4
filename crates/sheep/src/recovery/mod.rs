//! Object recovery after an epoch change: each node works out which objects it must hold
//! in the new epoch and fetches those it lacks from nodes that held them in earlier epochs.
//!
//! Local copies are not trusted after this node (re)joins: they may have missed writes while
//! it was away. Such copies are *unverified* and are refetched before they are served.
//! After an unclean stop they are also *suspect* (`state`): their versions may overstate
//! what they hold, so a tie with a trusted copy no longer keeps them.
//! Objects the node no longer needs are removed only once every member has recovered the
//! epoch (`Outcome::Stable`). Client I/O to an object still pending recovers it first.
//! A VDI's copy change recovers the epoch again, as another pass of it (`copies`).

pub mod copies;
pub mod object;
pub mod partial;
pub mod state;
pub mod yielding;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sd_cluster::ClusterDriver;
use sd_cluster::log::LogEntry;
use sd_proto::oid_list::OidList;
use sd_proto::{Epoch, Oid, Opcode, RequestHeader, SdResult};
use tokio::sync::Semaphore;

use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;
use object::{SOURCE_ATTEMPTS, SOURCE_BACKOFF, Unanswered, leaf_request};
/// Passes over the objects that could not be recovered yet, before giving up on the epoch.
const PASSES: u32 = 240;
/// Pause between passes.
const PASS_BACKOFF: Duration = Duration::from_millis(250);

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
    sheep
        .recovery
        .forget(&dead.iter().copied().collect::<Vec<_>>());
    tracing::info!(
        skipped = dead.len(),
        "not recovering copies of deleted VDIs"
    );
    todo.into_iter().filter(|o| !dead.contains(o)).collect()
}

/// Every object some live member stores (ours included), for the recovery of `epoch`;
/// AGAIN if a member's list is unavailable or the cluster leaves `epoch` first.
async fn cluster_objects(sheep: &Sheep, epoch: Epoch) -> SheepResult<HashSet<Oid>> {
    let store = sheep.store.clone();
    let mut all: HashSet<Oid> = blocking(move || crate::strip::local_oids(&store))
        .await?
        .into_iter()
        .collect();
    let others = sheep.other_members();
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
                Err(Unanswered::EpochMoved(_)) => return Err(SheepError::RecoverLater),
                Err(e) => e.to_string(),
            };
            // Without this member's list we cannot know what to recover: never announce
            // completion on a partial view. A member still applying the epoch catches up
            // in moments; a dead one is about to leave, which starts a new pass anyway.
            attempts += 1;
            if attempts >= SOURCE_ATTEMPTS {
                tracing::warn!(node = %nid, reason = %refused, "object list unavailable");
                return Err(SheepError::RecoverLater);
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
            () = sheep.recovery.kicked() => true,
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
    let state::Pass {
        epoch,
        generation,
        pass: pass_no,
        caught_up,
    } = rec.current_pass();
    if !caught_up {
        match copies::catch_up(sheep, epoch).await {
            Ok(()) => rec.caught_up(generation),
            Err(_) if rec.superseded(generation) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    let all = match cluster_objects(sheep, epoch).await {
        Ok(all) => all,
        // Superseded: the new epoch's recovery was kicked.
        Err(_) if rec.superseded(generation) => return Ok(true),
        Err(e) => return Err(e),
    };
    let ring = sheep.sys().ring.clone();
    let me = sheep.me.nid;
    let mut todo = Vec::new();
    for oid in all {
        if let Some(g) = crate::strip::geometry(sheep, oid) {
            // A strip's place moves with the membership: every holder checks its strip
            // against the earlier holders of that place after every epoch change.
            if crate::strip::index_on(sheep, &ring, oid, g).is_some()
                && rec.must_recover(oid, false)
            {
                todo.push(oid);
            }
            continue;
        }
        let copies = sheep.copies_of(oid, 0);
        if ring.replicas(oid, copies).iter().any(|n| n.nid == me)
            && rec.must_recover(oid, sheep.store.exists(oid))
        {
            todo.push(oid);
        }
    }
    let mut todo = skip_dead(sheep, todo).await;
    if !rec.begin_pass(generation, todo.len()) {
        return Ok(true);
    }
    tracing::info!(%epoch, pass = pass_no, objects = todo.len(), "recovery started");
    if !todo.is_empty() {
        // Tests: objects stay to recover for a while (client I/O reaches them first).
        crate::failpoint::delay_point("recovery:pass").await;
    }
    let mut failed = 0usize;
    for pass in 0..PASSES {
        if pass > 0 {
            tokio::time::sleep(PASS_BACKOFF).await;
        }
        let throttle = sheep.cfg.recovery;
        let sem = Arc::new(Semaphore::new(throttle.max.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut window = (tokio::time::Instant::now(), 0usize);
        let mut settle = |r: Result<(Oid, SheepResult<()>), tokio::task::JoinError>,
                          todo: &mut Vec<Oid>| {
            if let Ok((oid, Err(e))) = r {
                if matches!(e, SheepError::RecoverLater) {
                    todo.push(oid);
                } else {
                    failed += 1;
                    tracing::warn!(%oid, error = %e, "object not recovered");
                }
            }
        };
        let mut queue = std::mem::take(&mut todo).into_iter();
        // Objects clients wrote to partial copies of first, then the rest.
        while let Some(oid) = rec.next_urgent().or_else(|| queue.next()) {
            if rec.superseded(generation) {
                return Ok(true);
            }
            // Client I/O first: while clients use this node, one object at a time.
            while rec.clients_active() {
                let Some(r) = tasks.join_next().await else {
                    break;
                };
                settle(r, &mut todo);
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
                let started = tokio::time::Instant::now();
                let working = sheep.recovery.pace().working();
                let r = object::recover_in_pass(&sheep, oid).await;
                drop(working);
                let took = started.elapsed();
                // ... and a rest paced by the clients' latency, so they get the disk (none
                // after an object client I/O had already recovered).
                if matches!(r, Ok(true) | Err(_)) {
                    let rest = sheep
                        .recovery
                        .clients_active()
                        .then(|| sheep.recovery.pace().rest_after(took));
                    crate::metrics::recovery_pace(took, rest);
                    if let Some(rest) = rest {
                        tokio::time::sleep(rest).await;
                    }
                }
                drop(permit);
                (oid, r.map(drop))
            });
        }
        while let Some(r) = tasks.join_next().await {
            settle(r, &mut todo);
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
    if !rec.finish(generation) {
        return Ok(true);
    }
    tracing::info!(%epoch, pass = pass_no, "recovery finished");
    sheep
        .driver
        .append(LogEntry::RecoveryDone {
            nid: me,
            epoch,
            pass: pass_no,
        })
        .await
        .map_err(|_| SheepError::Result(SdResult::ClusterError))?;
    Ok(true)
}

/// Every member recovered `epoch`'s pass `pass`: drop the copies, and partial copies, of
/// objects this node no longer holds. (Partial copies of objects placed here stay until
/// merged or the object is removed: one recovery did not need may still hold the only
/// bytes of writes whose whole copies are on nodes that are away.)
pub async fn cleanup(sheep: &Sheep, epoch: Epoch, pass: u32) -> SheepResult<()> {
    // A node on its way out keeps its copies: it restarts with them (checked by hash, not
    // copied again), and a removal cut short by its exit would leave some of them gone.
    // A newer pass (a copy change since) places objects its own way, not complete yet.
    let current = sheep.recovery.current_pass();
    if sheep.sys().epoch != epoch
        || (current.epoch, current.pass) != (epoch, pass)
        || sheep.drain.is_draining()
    {
        return Ok(());
    }
    let ring = sheep.sys().ring.clone();
    let store = sheep.store.clone();
    let list = blocking({
        let store = store.clone();
        move || store.list()
    })
    .await?;
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
    remove_unplaced_strips(sheep, &ring, epoch).await?;
    let stale_partials = partial::not_placed_on(sheep, &ring);
    if !stale_partials.is_empty() {
        sheep.recovery.partials_dropped(&stale_partials);
        let store = store.clone();
        let n = stale_partials.len();
        blocking(move || {
            for oid in stale_partials {
                store.discard_partial(oid)?;
            }
            Ok(())
        })
        .await?;
        tracing::info!(%epoch, removed = n, "removed partial copies no longer placed here");
    }
    if stale.is_empty() {
        return Ok(());
    }
    sheep.recovery.forget(&stale);
    let n = stale.len();
    blocking(move || {
        for oid in stale {
            match store.remove(oid) {
                Ok(()) | Err(sd_store::StoreError::NoObject(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await?;
    tracing::info!(%epoch, removed = n, "removed copies no longer placed here");
    Ok(())
}

/// Removes the strips this node holds at a place the ring no longer gives it (strip `i`
/// belongs on the `i`-th holder).
async fn remove_unplaced_strips(
    sheep: &Sheep,
    ring: &sd_cluster::placement::Ring,
    epoch: Epoch,
) -> SheepResult<()> {
    let store = sheep.store.clone();
    let strips = blocking(move || store.list_strips()).await?;
    let stale: Vec<sd_store::StripId> = strips
        .into_iter()
        .filter(|s| {
            crate::strip::geometry(sheep, s.oid).is_none_or(|g| {
                crate::strip::index_on(sheep, ring, s.oid, g) != Some(usize::from(s.index))
            })
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let n = stale.len();
    let store = sheep.store.clone();
    blocking(move || {
        for id in stale {
            match store.remove_strip(id) {
                Ok(()) | Err(sd_store::StoreError::NoStrip(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await?;
    tracing::info!(%epoch, removed = n, "removed strips no longer placed here");
    Ok(())
}

/// Leaves the clean-stop mark, unless copies are still suspect from an earlier unclean
/// stop (the next start must still distrust them).
pub async fn mark_clean_stop(sheep: &Sheep) {
    let suspects = sheep.recovery.suspects();
    if suspects > 0 {
        tracing::warn!(suspects, "copies still suspect: not marking the stop clean");
        return;
    }
    let dir = sheep.cfg.dir.clone();
    match blocking(move || crate::sys::mark_clean(&dir)).await {
        Ok(()) => tracing::debug!("clean stop marked"),
        Err(e) => tracing::warn!(error = %e, "could not mark the stop clean"),
    }
}
