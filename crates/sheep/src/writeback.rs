//! Writeback (`sheep -W`): the gateway's record of which nodes it wrote for each VDI since
//! that VDI's last flush, FLUSH_VDI → FLUSH_PEER to exactly those nodes in parallel, the
//! peer side of FLUSH_PEER, the background flush of old dirty data, and the bound on dirty
//! bytes.
//!
//! **Invariant (the promise of a flush):** when FLUSH_VDI answers SUCCESS, every write to
//! that VDI this gateway acknowledged before the flush arrived is on stable storage on every
//! live replica it was written to. A node stays in the VDI's set until a flush it took part
//! in succeeded; a failed fdatasync loses that copy (moved aside by the store) and the copy is
//! re-replicated from a healthy one.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use sd_proto::node::NodeId;
use sd_proto::stat::WritebackStat;
use sd_proto::{ObjArgs, Opcode, RequestHeader, SdResult, Vid};
use sd_store::{StoreError, SyncMode};

use crate::config::FlushMode;
use crate::error::{SheepError, SheepResult};
use crate::sys::Sheep;

/// How long FLUSH_VDI waits for the membership to drop a flush target it cannot reach.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(5);
/// How often the background flusher looks for old dirty data.
const FLUSHER_TICK: Duration = Duration::from_millis(50);

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
    /// Signalled when dirty bytes drop.
    drained: tokio::sync::Notify,
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
    fn count_flush(&self, vid: Vid) {
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
    fn take(&self, vid: Vid) -> HashSet<NodeId> {
        self.lock().remove(&vid).unwrap_or_default()
    }

    /// This node's counters for STAT_WRITEBACK.
    pub fn stat(&self, sheep: &Sheep, vid: Vid) -> WritebackStat {
        WritebackStat {
            dirty_objects: sheep.store.dirty_objects(vid.get()) as u64,
            dirty_bytes: sheep.store.dirty_bytes(),
            peer_flushes: self.peer_flushes.load(Ordering::Relaxed),
            peer_flushes_vdi: self
                .peer_flushes_by_vid
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&vid)
                .copied()
                .unwrap_or(0),
            lost_objects: sheep.store.lost_objects(vid.get()) as u64,
        }
    }
}

/// Re-replicates copies a failed sync lost.
fn repair_lost(sheep: &Sheep, oids: Vec<sd_proto::Oid>) {
    let Some(sheep) = sheep.self_ref() else {
        return;
    };
    tokio::spawn(async move {
        for oid in oids {
            match sheep.recovery.recover_missing(&sheep, oid).await {
                Ok(()) => tracing::info!(%oid, "lost copy re-replicated"),
                Err(e) => tracing::error!(%oid, error = %e, "re-replicating a lost copy failed"),
            }
        }
    });
}

/// Makes this node's dirty data of `vid` durable (FLUSH_PEER, or the gateway's own part).
pub async fn flush_local(sheep: &Sheep, vid: Vid) -> SheepResult<()> {
    if sheep.store.sync_mode() == SyncMode::Writethrough {
        return Ok(());
    }
    let store = sheep.store.clone();
    let mode = sheep.cfg.writeback.flush;
    let r = tokio::task::spawn_blocking(move || match mode {
        FlushMode::Dirty => store.flush_vid(vid.get()).map(|_| ()),
        FlushMode::Syncfs => store.syncfs(),
    })
    .await?;
    sheep.writeback.drained.notify_waiters();
    match r {
        Ok(()) => Ok(()),
        Err(StoreError::SyncFailed { oids }) => {
            tracing::error!(%vid, lost = oids.len(), "flush failed; re-replicating the lost copies");
            repair_lost(sheep, oids);
            Err(SdResult::Eio.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// FLUSH_PEER served: counts it, then flushes.
pub async fn serve_flush_peer(sheep: &Sheep, vid: Vid) -> SheepResult<()> {
    sheep.writeback.peer_flushes.fetch_add(1, Ordering::Relaxed);
    *sheep
        .writeback
        .peer_flushes_by_vid
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(vid)
        .or_default() += 1;
    let started = std::time::Instant::now();
    let r = flush_local(sheep, vid).await;
    crate::metrics::peer_flush(started);
    r
}

async fn flush_node(sheep: &Sheep, nid: NodeId, vid: Vid) -> SheepResult<()> {
    if nid == sheep.me.nid {
        return flush_local(sheep, vid).await;
    }
    let mut h = RequestHeader::new(Opcode::FlushPeer).with_obj(ObjArgs {
        oid: vid.inode_oid(),
        ..ObjArgs::default()
    });
    h.epoch = sheep.sys().epoch;
    match sheep.leaf_peers.call(nid, h, bytes::Bytes::new()).await {
        Ok((rsp, _)) if rsp.result == SdResult::Success => Ok(()),
        Ok((rsp, _)) => Err(rsp.result.into()),
        Err(e) => {
            // A target that died does not hang the flush: once the membership drops it,
            // the flush answers for the live replicas.
            let mut rx = sheep.epoch_tx.subscribe();
            let gone = |_: &sd_proto::Epoch| !sheep.sys().nodes.iter().any(|n| n.nid == nid);
            if tokio::time::timeout(UNREACHABLE_GRACE, rx.wait_for(gone))
                .await
                .is_ok()
            {
                tracing::warn!(node = %nid, %vid, "flush target left the cluster; flushed the live replicas");
                Ok(())
            } else {
                tracing::warn!(node = %nid, %vid, error = %e, "flush target unreachable");
                Err(SdResult::Eio.into())
            }
        }
    }
}

/// FLUSH_VDI on a gateway: FLUSH_PEER to exactly the nodes written for `vid` since its last
/// flush, in parallel (`--flush=syncfs`: to every node, as Sheepdog did in 2012).
pub async fn flush_vdi(sheep: &Sheep, vid: Vid) -> SheepResult<()> {
    let started = std::time::Instant::now();
    sheep.writeback.count_flush(vid);
    let targets: Vec<NodeId> = match sheep.cfg.writeback.flush {
        FlushMode::Dirty => sheep.writeback.take(vid).into_iter().collect(),
        FlushMode::Syncfs => {
            sheep.writeback.take(vid);
            sheep.sys().nodes.iter().map(|n| n.nid).collect()
        }
    };
    if targets.is_empty() {
        crate::metrics::gateway_flush(0, started);
        return Ok(());
    }
    let results = join_all(targets.iter().map(|n| flush_node(sheep, *n, vid))).await;
    crate::metrics::gateway_flush(targets.len(), started);
    let failed: Vec<NodeId> = targets
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    // Their data is not known durable: the next flush must try them again.
    sheep.writeback.record(vid, &failed);
    let first = results
        .into_iter()
        .find_map(Result::err)
        .unwrap_or(SheepError::Result(SdResult::Eio));
    Err(first)
}

/// Before a writeback write: while the node holds more dirty bytes than allowed, flush the
/// oldest dirty VDIs (new writes wait).
pub async fn throttle(sheep: &Sheep) -> SheepResult<()> {
    let max = sheep.cfg.writeback.max_dirty;
    while sheep.store.sync_mode() == SyncMode::Writeback && sheep.store.dirty_bytes() > max {
        let oldest = sheep.store.dirty_vids_older_than(Duration::ZERO);
        let Some(vid) = oldest.first().and_then(|v| Vid::new(*v)) else {
            break;
        };
        flush_local(sheep, vid).await?;
    }
    Ok(())
}

/// The background flusher: dirty data older than `--writeback-max-age` is made durable.
pub async fn run_flusher(sheep: std::sync::Arc<Sheep>) {
    if sheep.store.sync_mode() != SyncMode::Writeback {
        return;
    }
    let mut tick = tokio::time::interval(FLUSHER_TICK.min(sheep.cfg.writeback.max_age));
    loop {
        tokio::select! {
            () = sheep.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for vid in sheep
            .store
            .dirty_vids_older_than(sheep.cfg.writeback.max_age)
        {
            let Some(vid) = Vid::new(vid) else { continue };
            if let Err(e) = flush_local(&sheep, vid).await {
                tracing::warn!(%vid, error = %e, "background flush failed");
            }
        }
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
