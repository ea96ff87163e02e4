//! Background recovery yields to client I/O. Every client read or write that reaches this
//! node's store marks the moment ([`ClientActivity::touch`]); while clients were active
//! within [`QUIET`], the epoch's pass recovers one object at a time and rests after each.
//! The rest is the object's own time scaled by a factor that follows the clients' durable
//! write latency on this node ([`Pace`]), judged every [`JUDGE_AFTER`] or more writes: it
//! grows while more than one of their writes in a hundred takes over [`SLOW`] times the
//! 99th percentile of their latency when this node did not recover, or while their mean
//! latency is over [`MEAN_SLOW`] tenths of the idle mean, and shrinks otherwise. Those
//! marks are the targets themselves (a client's p99 within 3x idle's, its rate, which a
//! client waiting on each write loses as the mean grows, within half): the rule settles
//! where about a quarter of the judged stretches cross one, so the clients stay near the
//! targets whatever the disk's own spread, and recovery takes what is left. The factor's
//! bound ([`MAX_REST`]) keeps recovery moving however slow the clients are.
//! A node that has not seen enough client writes outside recovery (one that just joined)
//! starts from its disk's latency measured at start, and learns from the client writes
//! that arrive while it rests between objects. Nodes sharing a disk all see the same
//! latency, so they all back off; a node with a disk of its own backs off only as far as
//! its own clients need. Once the clients are quiet, recovery runs at its full `-R`
//! parallelism. An object a client reads is not queued at all: the read recovers it first
//! (`recover_now`); a write to one this node lacks goes to a partial copy (`partial`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Clients idle this long: recovery runs at full speed.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest rest after one object while clients are active.
pub const MAX_REST: Duration = Duration::from_millis(250);
/// A client write slower than this multiple of the idle p99 is slow ...
pub const SLOW: u64 = 3;
/// ... and more than one slow write in this many makes recovery back off; so does a mean
/// latency over [`MEAN_SLOW`] tenths of the idle mean.
const SLOW_SHARE: u32 = 100;
const MEAN_SLOW: u64 = 20;
/// Client writes seen during recovery before the rest factor moves.
const JUDGE_AFTER: u32 = 50;
/// How far the idle p99 lies above the disk's median 4 KiB durable write, until clients
/// have written: the blocking-pool hop and the store's bookkeeping (x2), the tail (x3).
const SEED_TAIL: u32 = 6;

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

/// Latency buckets: eight per doubling from [`BUCKET_BASE_NS`] up, about a second in all.
const BUCKETS: usize = 8 * 21;
const BUCKET_BASE_NS: u64 = 1024;
/// The idle histogram halves its counts at this total, so it follows the disk as it is
/// now (the last few thousand writes).
const IDLE_WINDOW: u32 = 4096;
/// Fewer idle writes than this and the writes during recovery's rests count as idle too.
const IDLE_ENOUGH: u32 = 256;

/// Client write latency on this node while it does not recover: a histogram that forgets
/// slowly, for its 99th percentile.
#[derive(Debug)]
struct Idle {
    counts: [u32; BUCKETS],
    total: u32,
    /// The sum of the latencies counted, in ns.
    sum_ns: u64,
}

impl Idle {
    fn add(&mut self, ns: u64) {
        if let Some(c) = self.counts.get_mut(bucket(ns)) {
            *c += 1;
        }
        self.total += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        if self.total >= IDLE_WINDOW {
            self.counts.iter_mut().for_each(|c| *c /= 2);
            self.total = self.counts.iter().sum();
            self.sum_ns /= 2;
        }
    }

    fn mean_ns(&self) -> u64 {
        self.sum_ns / u64::from(self.total.max(1))
    }

    /// The upper bound of the bucket holding the 99th percentile (0: no writes yet).
    fn p99_ns(&self) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let mut above = 0;
        for (i, c) in self.counts.iter().enumerate().rev() {
            above += c;
            if above * 100 > self.total {
                return bucket_top(i);
            }
        }
        bucket_top(0)
    }
}

/// The bucket of a latency of `ns`.
fn bucket(ns: u64) -> usize {
    let x = ns.max(BUCKET_BASE_NS) / (BUCKET_BASE_NS / 8);
    // x >= 8: its top bit gives the doubling, the next three bits the eighth within it.
    let top = 63 - u64::from(x.leading_zeros());
    let eighth = (x >> (top - 3)) & 7;
    usize::try_from((top - 3) * 8 + eighth)
        .unwrap_or(usize::MAX)
        .min(BUCKETS - 1)
}

/// The largest latency in bucket `i`, in ns.
fn bucket_top(i: usize) -> u64 {
    let (doubling, eighth) = (i as u64 / 8, i as u64 % 8);
    ((8 + eighth + 1) << doubling) * (BUCKET_BASE_NS / 8)
}

/// Client write latency on this node, idle and during recovery, and the rest factor
/// recovery paces itself by.
#[derive(Debug)]
pub struct Pace {
    idle: Mutex<Idle>,
    /// A client write slower than this, in ns, is slow ([`SLOW`] x the idle p99; 0: no
    /// idle latency known, nothing is slow).
    slow_ns: AtomicU64,
    /// The idle mean latency, in ns (0: not known).
    mean_ns: AtomicU64,
    /// Client durable writes during recovery since the last rest was taken, how many of
    /// them were slow, and their summed latency in ns.
    writes: AtomicU32,
    slow: AtomicU32,
    spent_ns: AtomicU64,
    /// Rest per object, in sixteenths of the object's time.
    factor: AtomicU32,
    /// Objects recovery works on right now (not resting).
    busy: AtomicU32,
}

/// An object recovery works on: [`Pace::working`] until dropped.
#[derive(Debug)]
pub struct Working<'a>(&'a Pace);

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            idle: Mutex::new(Idle {
                counts: [0; BUCKETS],
                total: 0,
                sum_ns: 0,
            }),
            slow_ns: AtomicU64::new(0),
            mean_ns: AtomicU64::new(0),
            writes: AtomicU32::new(0),
            slow: AtomicU32::new(0),
            spent_ns: AtomicU64::new(0),
            factor: AtomicU32::new(FACTOR_START),
            busy: AtomicU32::new(0),
        }
    }
}

impl Pace {
    /// The idle latency before clients have written, from the disk's own median latency
    /// for a 4 KiB durable write (times [`SEED_TAIL`] for the p99, times 2 for the mean:
    /// a client's write also passes the blocking pool and the store's bookkeeping).
    pub fn seed_idle(&self, disk: Duration) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        let p99 = ns(disk * SEED_TAIL);
        let (r, o) = (Ordering::Relaxed, Ordering::Relaxed);
        let _ = self
            .slow_ns
            .compare_exchange(0, p99.saturating_mul(SLOW), r, o);
        let _ = self.mean_ns.compare_exchange(0, ns(disk * 2), r, o);
    }

    /// A client's durable write to this node's store took `took`; `recovering`: while this
    /// node's recovery runs.
    pub fn client_write(&self, took: Duration, recovering: bool) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // While recovery rests, a node without enough idle history learns it from these.
        let resting = self.busy.load(Ordering::Relaxed) == 0;
        if !recovering || resting {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if !recovering || idle.total < IDLE_ENOUGH {
                idle.add(ns);
                // Until a few dozen writes were seen, the seed (if any) says more.
                if idle.total >= 32 || self.slow_ns.load(Ordering::Relaxed) == 0 {
                    let slow = idle.p99_ns().saturating_mul(SLOW);
                    self.slow_ns.store(slow, Ordering::Relaxed);
                    self.mean_ns.store(idle.mean_ns().max(1), Ordering::Relaxed);
                }
                return;
            }
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.spent_ns.fetch_add(ns, Ordering::Relaxed);
        let slow = self.slow_ns.load(Ordering::Relaxed);
        if slow != 0 && ns > slow {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Recovery works on an object until the guard drops.
    pub fn working(&self) -> Working<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Working(self)
    }

    /// The rest after an object that took `took`: the factor grows by half if more than
    /// one client write in [`SLOW_SHARE`] was slow since the last rest or their mean was
    /// over [`MEAN_SLOW`] tenths of idle's, and shrinks by an eighth otherwise.
    pub fn rest_after(&self, took: Duration) -> Duration {
        let mut f = self.factor.load(Ordering::Relaxed);
        // Too few writes to judge by yet (a mean of one or two is noise): they add up
        // over the next objects.
        if self.writes.load(Ordering::Relaxed) >= JUDGE_AFTER {
            let writes = self.writes.swap(0, Ordering::Relaxed);
            let slow = self.slow.swap(0, Ordering::Relaxed);
            let spent = self.spent_ns.swap(0, Ordering::Relaxed);
            let mean = self.mean_ns.load(Ordering::Relaxed);
            // A client write waits for all its replicas, so its tail is about the sum of
            // theirs: each node keeps its own share of slow writes under one in a hundred.
            let tail = slow * SLOW_SHARE > writes;
            let rate = mean != 0
                && spent.saturating_mul(10)
                    > mean
                        .saturating_mul(MEAN_SLOW)
                        .saturating_mul(u64::from(writes));
            f = if tail || rate {
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
        let _working = p.working();
        let round = |us: u64, slow_us: u64| {
            (0..45).for_each(|_| p.client_write(Duration::from_micros(us), true));
            (0..5).for_each(|_| p.client_write(Duration::from_micros(slow_us), true));
            p.rest_after(object)
        };
        for _ in 0..20 {
            rest = round(1000, 5000);
        }
        assert_eq!(rest, MAX_REST, "slow clients: the rest grows to its bound");
        for _ in 0..100 {
            rest = round(1400, 1400);
        }
        assert_eq!(rest, Duration::ZERO, "clients within bounds: no rest");
        p.client_write(Duration::from_millis(50), true);
        assert_eq!(
            p.rest_after(object),
            Duration::ZERO,
            "one write is too few to judge by"
        );
        for _ in 0..20 {
            rest = round(2500, 2500);
        }
        assert_eq!(
            rest, MAX_REST,
            "no write past the tail mark, but the mean (their rate) suffers: back off"
        );
        for _ in 0..100 {
            rest = round(1400, 1400);
        }
        for _ in 0..100 {
            rest = p.rest_after(object);
        }
        assert_eq!(rest, Duration::ZERO, "no client writes: the factor stays");
    }

    #[test]
    fn the_slow_mark_follows_the_idle_tail() {
        for ns in [
            0,
            1,
            1023,
            1024,
            1025,
            1151,
            1152,
            2047,
            2048,
            150_000,
            999_999_999,
            u64::MAX,
        ] {
            let b = bucket(ns);
            assert!(b < BUCKETS, "{ns}");
            if (BUCKET_BASE_NS..1 << 30).contains(&ns) {
                assert!(bucket_top(b) > ns, "{ns} below the top of its bucket");
                assert!(
                    b == 0 || bucket_top(b - 1) <= ns,
                    "{ns} above the bucket before"
                );
            }
        }
        let p = Pace::default();
        p.seed_idle(Duration::from_micros(100));
        assert_eq!(
            p.slow_ns.load(Ordering::Relaxed),
            1_800_000,
            "seeded: x6 for the tail, x3 for slow"
        );
        // A spread-out disk: 97% of writes at 0.2 ms, 3% at 4 ms. Its p99 is 4 ms, so
        // a write is slow only past 12 ms (a mean-based mark would call the 3% slow).
        for i in 0..1000_u32 {
            let us = if i.is_multiple_of(33) { 4000 } else { 200 };
            p.client_write(Duration::from_micros(us), false);
        }
        let slow = p.slow_ns.load(Ordering::Relaxed);
        assert!((12_000_000..13_000_000).contains(&slow), "{slow}");
        for _ in 0..30 {
            let _working = p.working();
            for i in 0..100_u32 {
                let us = if i.is_multiple_of(33) { 4000 } else { 200 };
                p.client_write(Duration::from_micros(us), true);
            }
            p.rest_after(Duration::from_millis(4));
        }
        assert_eq!(
            p.rest_after(Duration::from_millis(4)),
            Duration::ZERO,
            "latency as when idle: no rest"
        );
    }

    #[test]
    fn a_node_without_idle_history_learns_it_while_resting() {
        let p = Pace::default();
        p.seed_idle(Duration::from_micros(100));
        // The disk is slower than the probe said: writes take 1-3 ms, idle or not.
        let slow_disk =
            |i: u32| Duration::from_micros(if i.is_multiple_of(20) { 3000 } else { 1000 });
        for _ in 0..3 {
            let _working = p.working();
            (0..100).for_each(|i| p.client_write(slow_disk(i), true));
        }
        assert_eq!(
            p.idle.lock().unwrap().total,
            0,
            "writes while working are not idle"
        );
        assert!(p.rest_after(Duration::from_millis(10)) > Duration::from_millis(10));
        // While resting, the writes teach the idle tail (up to IDLE_ENOUGH of them) ...
        (0..400).for_each(|i| p.client_write(slow_disk(i), true));
        assert_eq!(p.idle.lock().unwrap().total, IDLE_ENOUGH);
        // ... and the same latency while working is no longer slow.
        for _ in 0..40 {
            let _working = p.working();
            (0..100).for_each(|i| p.client_write(slow_disk(i), true));
            p.rest_after(Duration::from_millis(10));
        }
        assert_eq!(p.rest_after(Duration::from_millis(10)), Duration::ZERO);
    }
}
