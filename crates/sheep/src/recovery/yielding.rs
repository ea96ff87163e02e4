//! Background recovery yields to client I/O. Every client read or write that reaches this
//! node's store marks the moment ([`ClientActivity::touch`]); while clients were active
//! within [`QUIET`], the epoch's pass recovers one object at a time and rests after each.
//! The rest is the object's own time scaled by a factor that follows the clients' durable
//! write latency on this node ([`Pace`]): it grows while more than one of their writes
//! in twenty takes over [`SLOW`] times as long as when this node did not recover, and
//! shrinks otherwise. Nodes sharing a disk all see the same latency, so they all back off; a node with a
//! disk of its own backs off only as far as its own clients need. Once the clients are
//! quiet, recovery runs at its full `-R` parallelism. An object a client reads is not
//! queued at all: the read recovers it first (`recover_now`); a write to one this node
//! lacks goes to a partial copy (`partial`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Clients idle this long: recovery runs at full speed.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest rest after one object while clients are active.
pub const MAX_REST: Duration = Duration::from_millis(250);
/// A client write slower than this multiple of its idle latency is slow ...
pub const SLOW: u64 = 3;
/// ... and more than one slow write in this many makes recovery back off.
const SLOW_SHARE: u32 = 20;

/// When client I/O last reached this node's store.
#[derive(Debug)]
pub struct ClientActivity {
    origin: Instant,
    /// Nanoseconds after `origin`, plus one; 0: never.
    last: AtomicU64,
}

impl Default for ClientActivity {
    fn default() -> Self {
        ClientActivity {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl ClientActivity {
    /// A client request reached the store now.
    pub fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(now.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a client request reached the store within `within`.
    pub fn recent(&self, within: Duration) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let within = u64::try_from(within.as_nanos()).unwrap_or(u64::MAX);
                now.saturating_add(1).saturating_sub(last) <= within
            }
        }
    }
}

/// The rest factor, in sixteenths of an object's time: its bounds and its start.
const FACTOR_MAX: u32 = 64 * 16;
const FACTOR_START: u32 = 16;

/// Client write latency on this node, idle and during recovery, and the rest factor
/// recovery paces itself by.
#[derive(Debug)]
pub struct Pace {
    /// Moving average of client durable-write latency while this node did not recover,
    /// in ns (0: none seen yet).
    idle_ns: AtomicU64,
    /// Client durable writes during recovery since the last rest was taken, and how many
    /// of them were slow.
    writes: AtomicU32,
    slow: AtomicU32,
    /// Rest per object, in sixteenths of the object's time.
    factor: AtomicU32,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            idle_ns: AtomicU64::new(0),
            writes: AtomicU32::new(0),
            slow: AtomicU32::new(0),
            factor: AtomicU32::new(FACTOR_START),
        }
    }
}

impl Pace {
    /// The idle latency, before clients have written, from the disk's own latency for a
    /// 4 KiB durable write (doubled: a client's write also passes the blocking pool and
    /// the store's bookkeeping).
    pub fn seed_idle(&self, disk: Duration) {
        let ns = u64::try_from(disk.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_mul(2);
        let _ = self
            .idle_ns
            .compare_exchange(0, ns.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A client's durable write to this node's store took `took`; `recovering`: while this
    /// node's recovery runs.
    pub fn client_write(&self, took: Duration, recovering: bool) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let idle = self.idle_ns.load(Ordering::Relaxed);
        if !recovering {
            let new = if idle == 0 {
                ns
            } else {
                idle - idle / 32 + ns / 32
            };
            self.idle_ns.store(new.max(1), Ordering::Relaxed);
            return;
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        if idle != 0 && ns > idle.saturating_mul(SLOW) {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The rest after an object that took `took`: the factor grows by half if more than
    /// one client write in [`SLOW_SHARE`] was slow since the last rest, and shrinks by an
    /// eighth otherwise.
    pub fn rest_after(&self, took: Duration) -> Duration {
        let writes = self.writes.swap(0, Ordering::Relaxed);
        let slow = self.slow.swap(0, Ordering::Relaxed);
        let mut f = self.factor.load(Ordering::Relaxed);
        if writes > 0 {
            f = if slow * SLOW_SHARE > writes {
                (f + f / 2 + 1).min(FACTOR_MAX)
            } else {
                f - f.div_ceil(8)
            };
            self.factor.store(f, Ordering::Relaxed);
        }
        (took * f / 16).min(MAX_REST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_recent_until_quiet() {
        let a = ClientActivity::default();
        assert!(!a.recent(QUIET), "never touched");
        a.touch();
        assert!(a.recent(QUIET));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!a.recent(Duration::from_millis(10)));
        assert!(a.recent(Duration::from_secs(10)));
    }

    #[test]
    fn recovery_backs_off_while_clients_are_slow_and_returns_when_they_are_not() {
        let p = Pace::default();
        let object = Duration::from_millis(4);
        assert_eq!(
            p.rest_after(object),
            object,
            "no writes seen: the object's own time"
        );
        for _ in 0..64 {
            p.client_write(Duration::from_millis(1), false);
        }
        let mut rest = Duration::ZERO;
        for _ in 0..20 {
            p.client_write(Duration::from_millis(1), true);
            p.client_write(Duration::from_millis(10), true);
            rest = p.rest_after(object);
        }
        assert_eq!(rest, MAX_REST, "slow clients: the rest grows to its bound");
        for _ in 0..100 {
            p.client_write(Duration::from_millis(2), true);
            rest = p.rest_after(object);
        }
        assert_eq!(rest, Duration::ZERO, "clients within bounds: no rest");
        for _ in 0..100 {
            rest = p.rest_after(object);
        }
        assert_eq!(rest, Duration::ZERO, "no client writes: the factor stays");
    }
}
