//! Erasure-coded objects at the gateway (docs/erasure-coding.md): reads gather D strips
//! (decoding when some are missing), writes encode whole blocks and update every holder of
//! the stripe in two phases (prepare, complete), a write some holders lack is resolved
//! from every holder's log, and a holder that lacks its strip gets it rebuilt from D
//! others.
//!
//! The gateway takes an object's lock for each of these ([`EcState::lock`]): one write at a
//! time per object (so every holder's log lists the same writes in the same order), and
//! reads never see a write half-completed by this gateway.

mod check;
mod io;
mod peer;
mod recover;
mod resolve;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sd_proto::Oid;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

pub use check::check;
pub use io::{create, read, remove, write};
pub(crate) use peer::serve;
pub use recover::recover;

/// The gateway's erasure-coding state: object locks and write ids.
#[derive(Debug)]
pub struct EcState {
    locks: Mutex<HashMap<Oid, Arc<RwLock<()>>>>,
    next_wid: AtomicU64,
    /// The rings of the epochs before this one (`recover`), built once per epoch.
    rings: Mutex<Option<(sd_proto::Epoch, Arc<Vec<sd_cluster::placement::Ring>>)>>,
}

impl Default for EcState {
    fn default() -> Self {
        EcState {
            locks: Mutex::default(),
            // Write ids need only be unique per object among the writes its holders may
            // still have in their logs: a random start per process keeps two gateways (or
            // two lives of one) apart.
            next_wid: AtomicU64::new(random_start()),
            rings: Mutex::default(),
        }
    }
}

/// How often strip logs are looked at for checkpoints.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// A strip log not written for this long is checkpointed (its strip fdatasynced, the log
/// emptied): logs hold a copy of every write since, so they must not linger.
const CHECKPOINT_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Checkpoints the strip logs of this node that have gone idle, until the node stops.
pub async fn run_checkpointer(sheep: Arc<crate::node::Sheep>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        tokio::select! {
            () = sheep.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let store = sheep.store.clone();
        match crate::disk::blocking(move || store.checkpoint_idle_strips(CHECKPOINT_IDLE)).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(strips = n, "strip logs checkpointed"),
            Err(e) => tracing::warn!(error = %e, "strip log checkpoint failed"),
        }
    }
}

/// A random write id to start from (std's hasher keys are random per process).
fn random_start() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now)) | 1
}

/// A held object lock; the entry goes when no one holds or waits for it.
pub(crate) struct ObjectGuard<'a, G> {
    state: &'a EcState,
    oid: Oid,
    guard: Option<G>,
}

impl<G> Drop for ObjectGuard<'_, G> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.state.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks
            .get(&self.oid)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.oid);
        }
    }
}

impl EcState {
    fn entry(&self, oid: Oid) -> Arc<RwLock<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(oid)
            .or_default()
            .clone()
    }

    /// Exclusive use of `oid` (writes, resolution, rebuilds).
    pub(crate) async fn lock(&self, oid: Oid) -> ObjectGuard<'_, OwnedRwLockWriteGuard<()>> {
        let guard = self.entry(oid).write_owned().await;
        ObjectGuard {
            state: self,
            oid,
            guard: Some(guard),
        }
    }

    /// Shared use of `oid` (reads).
    pub(crate) async fn read_lock(&self, oid: Oid) -> ObjectGuard<'_, OwnedRwLockReadGuard<()>> {
        let guard = self.entry(oid).read_owned().await;
        ObjectGuard {
            state: self,
            oid,
            guard: Some(guard),
        }
    }

    /// A new write id (never 0).
    pub(crate) fn next_wid(&self) -> u64 {
        loop {
            let w = self.next_wid.fetch_add(1, Ordering::Relaxed);
            if w != 0 {
                return w;
            }
        }
    }
}
