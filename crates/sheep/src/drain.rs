//! Client work in flight, counted so a clean stop (`lifecycle::stop`) can refuse new
//! client requests and wait for those under way.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

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

    /// From now on, refuse new client requests.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the node is stopping.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Waits until no client request is in flight, or `limit` passed; how many are left.
    pub async fn wait_idle(&self, limit: Duration) -> usize {
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
