//! The gateway's writeback bookkeeping: per VDI, the nodes written since its last flush
//! (the targets of the next FLUSH_PEER) and the client's flush pattern; per node, the
//! FLUSH_PEER requests served. Pure bookkeeping; the flushes are in `writeback`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sd_proto::Vid;
use sd_proto::node::NodeId;
use sd_proto::stat::WritebackStat;
use sd_store::Store;

/// Flushes in a row that covered at most one write before a VDI's writes turn durable.
const SYNC_AFTER_SMALL_FLUSHES: u32 = 2;
/// Writes between two flushes that turn a VDI's writes back to writeback.
const WRITEBACK_AFTER_WRITES: u64 = 4;

/// How a VDI's client uses flushes, as this gateway sees it.
#[derive(Debug, Default)]
struct Pattern {
    /// Overwrites since the last flush.
    writes: u64,
    /// Consecutive flushes that covered at most one write.
    small_flushes: u32,
    /// Overwrites are sent durable (the client flushes after every write).
    durable: bool,
}

/// Writeback bookkeeping of one sheep.
///
/// A client that flushes after every write (QEMU with a writethrough guest cache) gains
/// nothing from writeback and would pay an fdatasync per replica per write, dearer than an
/// O_DSYNC write. So the gateway watches each VDI's pattern: after
/// `SYNC_AFTER_SMALL_FLUSHES` flushes in a row that each covered at most one write, its
/// overwrites are sent durable (`RWF_DSYNC` on the replicas, nothing left dirty, and the
/// flush needs no FLUSH_PEER); once `WRITEBACK_AFTER_WRITES` writes come between flushes,
/// it returns to writeback. Either way the flush promise holds.
#[derive(Debug, Default)]
pub struct Writeback {
    /// Per VDI: nodes this gateway wrote since the VDI's last successful flush.
    written: Mutex<HashMap<Vid, HashSet<NodeId>>>,
    /// Per VDI: the flush pattern.
    patterns: Mutex<HashMap<Vid, Pattern>>,
    /// FLUSH_PEER requests served by this node, in total and per VDI.
    peer_flushes: AtomicU64,
    peer_flushes_by_vid: Mutex<HashMap<Vid, u64>>,
}

impl Writeback {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vid, HashSet<NodeId>>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `nodes` are about to receive a write of `vid` (recorded before sending, so a write
    /// that is not acknowledged still leaves them to flush).
    pub fn record(&self, vid: Vid, nodes: &[NodeId]) {
        let mut w = self.lock();
        let set = w.entry(vid).or_default();
        for n in nodes {
            set.insert(*n);
        }
    }

    fn patterns(&self) -> std::sync::MutexGuard<'_, HashMap<Vid, Pattern>> {
        self.patterns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether overwrites of `vid` are sent durable now.
    pub fn durable_writes(&self, vid: Vid) -> bool {
        self.patterns().get(&vid).is_some_and(|p| p.durable)
    }

    /// An overwrite of `vid` completed.
    pub fn count_write(&self, vid: Vid) {
        let mut pats = self.patterns();
        let p = pats.entry(vid).or_default();
        p.writes += 1;
        if p.durable && p.writes >= WRITEBACK_AFTER_WRITES {
            p.durable = false;
            p.small_flushes = 0;
        }
    }

    /// A flush of `vid` arrived: update its pattern.
    pub fn count_flush(&self, vid: Vid) {
        let mut pats = self.patterns();
        let p = pats.entry(vid).or_default();
        if p.writes <= 1 {
            p.small_flushes = p.small_flushes.saturating_add(1);
            if p.small_flushes >= SYNC_AFTER_SMALL_FLUSHES {
                p.durable = true;
            }
        } else {
            p.small_flushes = 0;
        }
        p.writes = 0;
    }

    /// The VDIs this gateway wrote since their last flush.
    pub fn written_vids(&self) -> Vec<Vid> {
        self.lock().keys().copied().collect()
    }

    /// The nodes written for `vid` (cleared; callers put back the ones that failed).
    pub fn take(&self, vid: Vid) -> HashSet<NodeId> {
        self.lock().remove(&vid).unwrap_or_default()
    }

    /// This node's counters for STAT_WRITEBACK.
    pub fn stat(&self, store: &Store, vid: Vid) -> WritebackStat {
        WritebackStat {
            dirty_objects: store.dirty_objects(vid.get()) as u64,
            dirty_bytes: store.dirty_bytes(),
            peer_flushes: self.peer_flushes.load(Ordering::Relaxed),
            peer_flushes_vdi: self
                .peer_flushes_by_vid
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&vid)
                .copied()
                .unwrap_or(0),
            lost_objects: store.lost_objects(vid.get()) as u64,
        }
    }

    /// A FLUSH_PEER of `vid` was served here.
    pub fn count_peer_flush(&self, vid: Vid) {
        self.peer_flushes.fetch_add(1, Ordering::Relaxed);
        *self
            .peer_flushes_by_vid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(vid)
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_per_write_turns_writes_durable_and_bursts_turn_them_back() {
        let w = Writeback::default();
        let v = Vid::new(7).expect("vid");
        assert!(!w.durable_writes(v));
        // One write per flush, twice: the client flushes after every write.
        for _ in 0..SYNC_AFTER_SMALL_FLUSHES {
            w.count_write(v);
            w.count_flush(v);
        }
        assert!(w.durable_writes(v));
        // A burst of writes without a flush: back to writeback.
        for _ in 0..WRITEBACK_AFTER_WRITES {
            w.count_write(v);
        }
        assert!(!w.durable_writes(v));
        w.count_flush(v);
        assert!(
            !w.durable_writes(v),
            "a flush after a burst does not count as small"
        );
        // Other VDIs are unaffected.
        assert!(!w.durable_writes(Vid::new(8).expect("vid")));
    }
}
