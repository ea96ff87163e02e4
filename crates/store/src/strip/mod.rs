//! Erasure-coded strips: `DIR/obj/<oid>_<index>`, each with a log `<oid>_<index>.log` of
//! the writes not yet known to be on every holder of the stripe (docs/erasure-coding.md).
//!
//! A strip file is never overwritten by a write that may still be undone: a write is first
//! *prepared* (appended to the log, durable when [`Store::prepare_strip`] returns), and only
//! *completed* (copied into the strip file, through the page cache) when the gateway says
//! every holder has it. A checkpoint fdatasyncs the strip file and empties the log.
//!
//! **Invariant:** a log holds at most one write that is not complete, and it is the last:
//! a prepare is refused while one is pending ([`StoreError::StripInDoubt`]). So reading the
//! strip file gives exactly the complete writes, and a pending write can be undone by
//! forgetting it.
//!
//! After a crash, the complete writes in the log are copied into the strip file again (in
//! order; idempotent). Completion is not logged: a record followed by another one was
//! complete (its holder accepted the next prepare); the last one comes back pending, and
//! is resolved with the other holders of the stripe.
//!
//! [`Store::prepare_strip`]: crate::Store::prepare_strip

mod format;
mod load;
mod ops;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sd_proto::Oid;

pub use ops::{PendingWrite, StripLogState, StripWrite};

/// The highest strip index: 16 data + 15 parity strips.
pub const MAX_STRIP_INDEX: u8 = 30;

/// A checkpoint follows a complete once the log holds this many writes...
const CHECKPOINT_RECORDS: usize = 64;
/// ...or this many bytes (a log holds a second copy of its writes: keep it small beside
/// the strip).
const CHECKPOINT_BYTES: u64 = 1 << 20;
/// Strips kept open at most (those with a log to keep are never dropped).
const CAPACITY: usize = 4096;

/// Strip `index` of object `oid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StripId {
    /// The object.
    pub oid: Oid,
    /// The strip's index in the stripe (`ec_index`): data strips first, then parity.
    pub index: u8,
}

impl StripId {
    /// Strip `index` of `oid`; `None` past [`MAX_STRIP_INDEX`].
    pub fn new(oid: Oid, index: u8) -> Option<StripId> {
        (index <= MAX_STRIP_INDEX).then_some(StripId { oid, index })
    }
}

impl fmt::Display for StripId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.oid, self.index)
    }
}

/// A write in the log since the last checkpoint.
#[derive(Debug, Clone, Copy)]
struct Rec {
    wid: u64,
    epoch: u32,
    offset: u64,
    len: u32,
    /// Where its data starts in the log.
    data_at: u64,
    complete: bool,
    /// When this process prepared it; `None`: found in the log at load.
    since: Option<Instant>,
}

/// An open strip: its files and its log as this process knows it.
#[derive(Debug)]
struct StripState {
    /// The strip file, read-write, never `O_DSYNC` (durability comes from the log).
    base: Arc<File>,
    /// The log, read-write; durable appends use `RWF_DSYNC`.
    log: File,
    /// The strip file's length (strips never change size).
    size: u64,
    generation: u32,
    last_wid: u64,
    /// Where the next record goes.
    end: u64,
    records: Vec<Rec>,
    /// The version (epoch of the last write) this process set, 0: not known.
    version: u32,
    /// When a write last touched it (for checkpoints of idle strips).
    touched: Instant,
    /// Replaced or removed under a holder of the lock: load the strip again.
    dead: bool,
}

impl StripState {
    /// The pending (not complete) write, if any: the last record.
    fn pending(&self) -> Option<&Rec> {
        self.records.last().filter(|r| !r.complete)
    }

    fn wants_checkpoint(&self) -> bool {
        self.records.len() >= CHECKPOINT_RECORDS
            || self.end.saturating_sub(format::HEADER_LEN) >= CHECKPOINT_BYTES
    }
}

type Shared = Arc<Mutex<StripState>>;

/// The strips this process has open.
#[derive(Debug, Default)]
pub(crate) struct Strips {
    map: Mutex<HashMap<StripId, Shared>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Strips {
    fn get(&self, id: StripId) -> Option<Shared> {
        lock(&self.map).get(&id).cloned()
    }

    fn insert(&self, id: StripId, s: Shared) -> Shared {
        let mut map = lock(&self.map);
        if map.len() >= CAPACITY {
            // Only strips with an empty log may go: a log's pending state lives here.
            let idle: Vec<StripId> = map
                .iter()
                .filter(|(_, v)| v.try_lock().is_ok_and(|g| g.records.is_empty()))
                .map(|(k, _)| *k)
                .take(CAPACITY / 4)
                .collect();
            for k in idle {
                map.remove(&k);
            }
        }
        map.entry(id).or_insert(s).clone()
    }

    fn forget(&self, id: StripId) {
        lock(&self.map).remove(&id);
    }

    pub(crate) fn clear(&self) {
        lock(&self.map).clear();
    }

    /// Strips with writes in their log, idle for `idle` or longer.
    fn idle_with_log(&self, idle: Duration) -> Vec<(StripId, Shared)> {
        lock(&self.map)
            .iter()
            .filter(|(_, v)| {
                v.try_lock()
                    .is_ok_and(|g| !g.records.is_empty() && g.touched.elapsed() >= idle)
            })
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
}
