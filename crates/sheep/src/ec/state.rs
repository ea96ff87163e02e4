//! The gateway's erasure-coding state ([`EcState`]): per-object locks, write ids and the
//! rings of recent epochs; held by `node::Sheep`, used by the rest of `ec`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sd_proto::Oid;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The gateway's erasure-coding state: object locks and write ids.
#[derive(Debug)]
pub struct EcState {
    locks: Mutex<HashMap<Oid, Arc<RwLock<()>>>>,
    next_wid: AtomicU64,
    /// The rings of the epochs before this one (`recover`), built once per epoch.
    pub(super) rings: Mutex<Option<(sd_proto::Epoch, Arc<Vec<sd_cluster::placement::Ring>>)>>,
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
