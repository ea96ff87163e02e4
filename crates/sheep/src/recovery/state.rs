//! Recovery's shared state: which objects this node must fetch or re-verify before
//! serving them, the progress of the current epoch's recovery (and which pass of it: a
//! VDI's copy change recovers the epoch again, `recovery::copies`), and the per-object
//! locks that keep a recovery and a whole-object replace of the same object apart. Pure
//! bookkeeping: the work itself is in `recovery::object` (one object) and `recovery`
//! (an epoch's pass).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sd_proto::{Epoch, Oid};

use crate::error::SheepResult;

#[derive(Debug, Default)]
struct State {
    /// Epoch being recovered.
    epoch: Epoch,
    /// Its recovery pass (`sd_cluster::Membership::pass`): 0, or the number of VDI copy
    /// changes in the epoch so far.
    pass: u32,
    /// Every member is known to have applied the log up to this pass's start, so none
    /// still writes by the copy counts before it (`recovery::copies`). Always so for
    /// pass 0: replicas refuse requests of another epoch.
    caught_up: bool,
    /// Bumped whenever recovery restarts; running work notices and stops.
    generation: u64,
    /// Objects this node must fetch before serving them.
    pending: HashSet<Oid>,
    /// Local copies not validated since this node (re)joined.
    unverified: HashSet<Oid>,
    /// Local copies of an unclean stop not yet compared with the others (a subset of
    /// `unverified`): their versions may not mean they hold every acknowledged write.
    suspect: HashSet<Oid>,
    /// Suspect copies kept only because no other copy was reachable: still suspect once
    /// recovered, and checked again in the next epoch's pass.
    lone: HashSet<Oid>,
    /// This process started after an unclean stop: the copies its join distrusts are
    /// suspect too.
    unclean_start: bool,
    /// Objects recovered / to recover in this epoch.
    done: u64,
    total: u64,
    active: bool,
    locks: HashMap<Oid, Arc<tokio::sync::Mutex<()>>>,
    /// Unreadable local copies being replaced.
    repairing: HashSet<Oid>,
    /// Copies being replaced by REPAIR_REPLICA: reads and writes of them wait (they call
    /// `recover_now`, which waits for the object's lock the repair holds).
    held: HashSet<Oid>,
    /// Objects with a partial copy (`sd_store` `write_partial`) written since this node
    /// joined, while it held them in every epoch since: it received every write made to
    /// them meanwhile, so the partial copy's bytes are the newest.
    fresh_partials: HashSet<Oid>,
    /// Objects with a fresh partial copy that the pass has not recovered yet: first in line.
    urgent: Vec<Oid>,
    /// Leftover copies a VDI's copy change placed here again (a subset of `unverified`):
    /// they missed writes made meanwhile although their version may be the newest, so a
    /// version tie does not keep them (`sd_cluster::recovery::stale_loses_ties`).
    stale: HashSet<Oid>,
}

/// Recovery state shared by the background task and the I/O path.
#[derive(Debug, Default)]
pub struct Recovery {
    state: Mutex<State>,
    kick: tokio::sync::Notify,
    /// Woken when the current pass is caught up, or superseded.
    caught: tokio::sync::Notify,
    /// When client I/O last reached this node's store (recovery yields to it).
    activity: super::yielding::ClientActivity,
    /// Client write latency and how long recovery rests for it.
    pace: super::yielding::Pace,
}

/// The pass being recovered, as the task starts it ([`Recovery::current_pass`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// The epoch.
    pub epoch: Epoch,
    /// Bumped by every restart of recovery.
    pub generation: u64,
    /// The pass of the epoch (0: the epoch's first).
    pub pass: u32,
    /// Every member applied the log up to the pass's start.
    pub caught_up: bool,
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
        st.pass = 0;
        st.caught_up = true;
        st.generation += 1;
        st.active = true;
        drop(st);
        self.caught.notify_waiters();
        self.kick.notify_one();
    }

    /// A VDI's copies changed in `epoch`: recover it again as its pass `pass`, once every
    /// member has caught up (see [`Recovery::caught_up`]). False (nothing started) if this
    /// node is not recovering `epoch`.
    pub fn start_pass(&self, epoch: Epoch, pass: u32) -> bool {
        let mut st = self.st();
        if st.epoch != epoch {
            return false;
        }
        st.pass = pass;
        st.caught_up = false;
        st.generation += 1;
        st.active = true;
        drop(st);
        self.caught.notify_waiters();
        self.kick.notify_one();
        true
    }

    /// The pass to run now.
    pub fn current_pass(&self) -> Pass {
        let st = self.st();
        Pass {
            epoch: st.epoch,
            generation: st.generation,
            pass: st.pass,
            caught_up: st.caught_up,
        }
    }

    /// Every member has applied the log up to the start of the pass of `generation`: its
    /// objects may be fetched from now on.
    pub fn caught_up(&self, generation: u64) {
        let mut st = self.st();
        if st.generation == generation {
            st.caught_up = true;
        }
        drop(st);
        self.caught.notify_waiters();
    }

    /// Waits until the pass being recovered is caught up, or `epoch` is no longer the one
    /// recovered.
    pub async fn wait_caught_up(&self, epoch: Epoch) {
        loop {
            let woken = self.caught.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            {
                let st = self.st();
                if st.caught_up || st.epoch != epoch {
                    return;
                }
            }
            woken.await;
        }
    }

    /// `oids` are leftover copies a copy change placed here again: not served, nor kept on
    /// a version tie, before they are compared with the other copies.
    pub fn distrust_stale(&self, oids: Vec<Oid>) {
        let mut st = self.st();
        st.stale.extend(oids.iter().copied());
        st.unverified.extend(oids);
    }

    /// Whether the local copy of `oid` is a stale leftover ([`Recovery::distrust_stale`]).
    pub fn is_stale(&self, oid: Oid) -> bool {
        self.st().stale.contains(&oid)
    }

    /// The cluster was formatted: nothing is pending any more.
    pub fn reset(&self) {
        let mut st = self.st();
        st.generation += 1;
        st.pending.clear();
        st.unverified.clear();
        st.suspect.clear();
        st.lone.clear();
        st.fresh_partials.clear();
        st.urgent.clear();
        st.stale.clear();
        st.active = false;
        st.done = 0;
        st.total = 0;
    }

    /// Whether `oid`'s local copy must be recovered before it is served.
    pub fn needs(&self, oid: Oid) -> bool {
        let st = self.st();
        st.pending.contains(&oid) || st.unverified.contains(&oid) || st.held.contains(&oid)
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

    /// The lock that keeps one recovery (or whole-copy replace) of `oid` at a time.
    pub(super) fn lock_for(&self, oid: Oid) -> Arc<tokio::sync::Mutex<()>> {
        self.st().locks.entry(oid).or_default().clone()
    }

    /// `oid`'s local copy is now trustworthy: counted done, nothing pending for it.
    pub(super) fn mark_recovered(&self, oid: Oid) {
        let mut st = self.st();
        let was = st.pending.remove(&oid) | st.unverified.remove(&oid) | st.suspect.contains(&oid);
        if !st.lone.remove(&oid) {
            st.suspect.remove(&oid);
        }
        st.stale.remove(&oid);
        if was {
            st.done += 1;
            crate::metrics::recovered();
        }
        st.fresh_partials.remove(&oid);
        st.locks.remove(&oid);
    }

    /// A client write to `oid` went to its partial copy: recover it before the others.
    pub(super) fn wrote_partial(&self, oid: Oid) {
        let mut st = self.st();
        if st.fresh_partials.insert(oid) {
            st.urgent.push(oid);
        }
    }

    /// Whether the partial copy of `oid` holds the newest bytes of what it holds (see
    /// `State::fresh_partials`).
    pub(super) fn partial_is_fresh(&self, oid: Oid) -> bool {
        self.st().fresh_partials.contains(&oid)
    }

    /// The next object a client wrote to a partial copy of, for the pass to recover first.
    pub(super) fn next_urgent(&self) -> Option<Oid> {
        self.st().urgent.pop()
    }

    /// This node (re)joined the cluster: it may have missed writes to the objects of the
    /// partial copies it kept, which are no longer fresh.
    pub fn rejoined(&self) {
        let mut st = self.st();
        st.fresh_partials.clear();
        st.urgent.clear();
    }

    /// The partial copies of `oids` are no longer fresh (dropped, or no longer placed here).
    pub fn partials_dropped(&self, oids: &[Oid]) {
        let mut st = self.st();
        for oid in oids {
            st.fresh_partials.remove(oid);
        }
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
        self.mark_recovered(oid);
        Ok(())
    }

    /// This node just (re)joined: none of `local` may be served before it is checked
    /// against the other copies.
    pub fn distrust(&self, local: Vec<Oid>) {
        let mut st = self.st();
        if std::mem::take(&mut st.unclean_start) {
            st.suspect.extend(local.iter().copied());
        }
        st.unverified.extend(local);
    }

    /// This process started after an unclean stop (a crash, a power cut): the copies its
    /// join distrusts are also suspect (see `sd_cluster::recovery::Suspect`).
    pub fn unclean_start(&self) {
        self.st().unclean_start = true;
    }

    /// The suspect copy of `oid` is kept because no other copy could be compared with it:
    /// it stays suspect (see [`Self::must_recover`]).
    pub(super) fn keep_lone_suspect(&self, oid: Oid) {
        let mut st = self.st();
        if st.suspect.contains(&oid) {
            st.lone.insert(oid);
        }
    }

    /// Whether the local copy of `oid` is suspect.
    pub fn is_suspect(&self, oid: Oid) -> bool {
        self.st().suspect.contains(&oid)
    }

    /// Local copies still suspect.
    pub fn suspects(&self) -> usize {
        self.st().suspect.len()
    }

    /// The epoch being recovered.
    pub fn epoch(&self) -> Epoch {
        self.st().epoch
    }

    /// Whether recovery restarted since `generation`.
    pub fn superseded(&self, generation: u64) -> bool {
        self.st().generation != generation
    }

    /// Waits until recovery is (re)started.
    pub async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// `oid` is placed on this node in the epoch being recovered, and the store has a copy
    /// (`have`) or not: whether it must be recovered (missing, or not trusted yet).
    pub fn must_recover(&self, oid: Oid, have: bool) -> bool {
        let mut st = self.st();
        if !have {
            st.pending.insert(oid);
        }
        st.pending.contains(&oid) || st.unverified.contains(&oid) || st.suspect.contains(&oid)
    }

    /// A pass of `generation` starts with `total` objects to recover; false if recovery
    /// restarted meanwhile (the pass is superseded).
    pub fn begin_pass(&self, generation: u64, total: usize) -> bool {
        let mut st = self.st();
        if st.generation != generation {
            return false;
        }
        st.done = 0;
        st.total = total as u64;
        true
    }

    /// The recovery of `generation` finished; false if it was superseded.
    pub fn finish(&self, generation: u64) -> bool {
        let mut st = self.st();
        let current = st.generation == generation;
        if current {
            st.active = false;
        }
        current
    }

    /// `oids` need no recovery any more (dead data, or no longer placed here).
    pub fn forget(&self, oids: &[Oid]) {
        let mut st = self.st();
        for oid in oids {
            st.unverified.remove(oid);
            st.pending.remove(oid);
            st.suspect.remove(oid);
            st.lone.remove(oid);
            st.stale.remove(oid);
        }
    }

    /// Marks a repair of `oid`'s unreadable copy under way; false if one already is.
    pub fn begin_repair(&self, oid: Oid) -> bool {
        self.st().repairing.insert(oid)
    }

    /// The repair of `oid` ended.
    pub fn end_repair(&self, oid: Oid) {
        self.st().repairing.remove(&oid);
    }

    /// A client read or write reached this node's store.
    pub fn client_io(&self) {
        self.activity.touch();
    }

    /// A durable 4 KiB write to this node's disk took `took` with nothing else running
    /// (measured at start): the client latency recovery compares with until clients
    /// have written while this node did not recover.
    pub fn disk_write_latency(&self, took: std::time::Duration) {
        self.pace.seed_idle(took);
    }

    /// A client's durable write to this node's store took `took`.
    pub fn client_write_took(&self, took: std::time::Duration) {
        let recovering = self.st().active;
        self.pace.client_write(took, recovering);
    }

    /// How long recovery rests for clients.
    pub(super) fn pace(&self) -> &super::yielding::Pace {
        &self.pace
    }

    /// Whether clients used this node's store within `yielding::QUIET`.
    pub fn clients_active(&self) -> bool {
        self.activity.recent(super::yielding::QUIET)
    }

    /// Local I/O of `oid` waits from now until [`Self::release`] (call with its lock held).
    pub(super) fn hold(&self, oid: Oid) {
        self.st().held.insert(oid);
    }

    /// Ends [`Self::hold`].
    pub(super) fn release(&self, oid: Oid) {
        self.st().held.remove(&oid);
    }
}
