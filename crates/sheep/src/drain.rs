//! A clean stop (SIGTERM): stop taking client work, let what is in flight finish, make
//! writeback data durable, leave the cluster, then stop.
//!
//! 1. Client requests (Sheepdog gateway and VDI operations, NBD commands) that arrive from
//!    now on are refused (SD_RES_SHUTDOWN; NBD: an I/O error). Requests from other sheep are
//!    still served: until our departure is in the log, they may still read and write our
//!    copies.
//! 2. The client requests in flight are waited for, up to [`INFLIGHT_WAIT`].
//! 3. Writeback: every VDI this gateway wrote since its last flush is flushed (FLUSH_PEER to
//!    the nodes it wrote), and everything dirty in the local store is synced, so nothing a
//!    client was told is written depends on this node's page cache.
//! 4. Our `Leave` is appended to the membership log, so the others bump the epoch at once
//!    instead of waiting for failure detection; we wait (up to [`LEAVE_WAIT`]) until it
//!    is applied here.
//! 5. The daemon is cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sd_cluster::ClusterDriver;
use sd_cluster::log::LogEntry;
use sd_store::SyncMode;

use crate::sys::Sheep;

/// How long in-flight client requests are waited for.
pub const INFLIGHT_WAIT: Duration = Duration::from_secs(10);
/// How long our leave may take to be applied.
pub const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// Client work in flight, and whether new work is refused.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    inflight: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held while one client request runs.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Drain);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// Admits one client request; `None` once the node is stopping.
    pub fn enter(&self) -> Option<InFlight<'_>> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        // Checked after counting: `stop` sets the flag before it reads the count, so a
        // request either sees the flag or is waited for.
        (!self.draining.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Whether the node is stopping.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Waits until no client request is in flight, or `limit` passed; how many are left.
    async fn wait_idle(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            let n = self.inflight.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.inflight.load(Ordering::SeqCst);
            }
        }
    }
}

/// Stops `sheep` cleanly (see the module docs), then cancels it.
pub async fn stop(sheep: &Arc<Sheep>) {
    let d = &sheep.drain;
    d.draining.store(true, Ordering::SeqCst);
    tracing::info!("stopping: refusing new client requests");
    let left = d.wait_idle(INFLIGHT_WAIT).await;
    if left > 0 {
        tracing::warn!(left, "stopping with client requests still in flight");
    }
    if sheep.store.sync_mode() == SyncMode::Writeback {
        let vids = sheep.writeback.written_vids();
        for vid in &vids {
            if let Err(e) = crate::writeback::flush_vdi(sheep, *vid).await {
                tracing::error!(%vid, error = %e, "flush at stop failed");
            }
        }
        for vid in sheep.store.dirty_vids_older_than(Duration::ZERO) {
            let Some(vid) = sd_proto::Vid::new(vid) else {
                continue;
            };
            if let Err(e) = crate::writeback::flush_local(sheep, vid).await {
                tracing::error!(%vid, error = %e, "local flush at stop failed");
            }
        }
        tracing::info!(
            vdis = vids.len(),
            dirty = sheep.store.dirty_bytes(),
            "writeback data flushed"
        );
    }
    let me = sheep.me.nid;
    let mut rx = sheep.epoch_tx.subscribe();
    match sheep.driver.append(LogEntry::Leave { nid: me }).await {
        Ok(()) => {
            let gone = |_: &sd_proto::Epoch| !sheep.sys().nodes.iter().any(|n| n.nid == me);
            // A driver that stops once it reads our leave (ZooKeeper) ends the node first.
            let left = async {
                tokio::select! {
                    _ = rx.wait_for(gone) => {}
                    () = sheep.cancel.cancelled() => {}
                }
            };
            if tokio::time::timeout(LEAVE_WAIT, left).await.is_err() {
                tracing::warn!("our leave was not applied in time; stopping anyway");
            } else {
                tracing::info!("left the cluster");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not announce our leave"),
    }
    sheep.cancel.cancel();
}
