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

use std::time::Duration;

use futures::future::join_all;
use sd_proto::node::NodeId;
use sd_proto::{ObjArgs, Opcode, RequestHeader, SdResult, Vid};
use sd_store::{StoreError, SyncMode};

use crate::config::FlushMode;
use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;

pub mod state;

/// How long FLUSH_VDI waits for the membership to drop a flush target it cannot reach.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(5);
/// How often the background flusher looks for old dirty data.
const FLUSHER_TICK: Duration = Duration::from_millis(50);

/// Re-replicates copies a failed sync lost.
fn repair_lost(sheep: &Sheep, oids: Vec<sd_proto::Oid>) {
    let Some(sheep) = sheep.self_ref() else {
        return;
    };
    tokio::spawn(async move {
        for oid in oids {
            match crate::recovery::object::recover_missing(&sheep, oid).await {
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
    let r = blocking(move || match mode {
        FlushMode::Dirty => store.flush_vid(vid.get()).map(|_| ()),
        FlushMode::Syncfs => store.syncfs(),
    })
    .await;
    match r {
        Ok(()) => Ok(()),
        Err(SheepError::Store(StoreError::SyncFailed { oids })) => {
            tracing::error!(%vid, lost = oids.len(), "flush failed; re-replicating the lost copies");
            repair_lost(sheep, oids);
            Err(SdResult::Eio.into())
        }
        Err(e) => Err(e),
    }
}

/// FLUSH_PEER served: counts it, then flushes.
pub async fn serve_flush_peer(sheep: &Sheep, vid: Vid) -> SheepResult<()> {
    sheep.writeback.count_peer_flush(vid);
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
            let mut rx = sheep.watch_epoch();
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

/// Makes every dirty object of the local store durable (writeback); whether all were.
pub async fn sync_local(sheep: &Sheep) -> bool {
    let mut ok = true;
    for vid in sheep.store.dirty_vids_older_than(std::time::Duration::ZERO) {
        let Some(vid) = sd_proto::Vid::new(vid) else {
            continue;
        };
        if let Err(e) = flush_local(sheep, vid).await {
            tracing::error!(%vid, error = %e, "local flush at stop failed");
            ok = false;
        }
    }
    ok
}
