//! Finishing VDI work a gateway left half done.
//!
//! A create, snapshot, clone or delete is decided by one cluster-log record (which every
//! member applies to its VDI table), then carried out on inode objects by the gateway
//! that submitted it, which confirms with a `Settled` record. If that gateway dies or
//! restarts first, every member marks the VDI orphaned in log order, and once the cluster
//! is stable again its lowest member finishes the work from what the record says: writes
//! the missing inode, marks the old working VDI's header as a snapshot, or completes the
//! reclaim of a deleted VDI. Every step is idempotent, so finishing twice is harmless.

use std::sync::Arc;
use std::time::Duration;

use sd_cluster::ClusterMsg;
use sd_proto::{SdResult, Vid};

use crate::error::SheepResult;
use crate::inode::read_header;
use crate::node::Sheep;
use crate::reclaim::finish_delete;
use crate::volume::{mark_snapshot_header, write_new_inode};

/// How long a gateway waits between attempts to finish its own failed work.
const RETRY: Duration = Duration::from_secs(1);

/// Brings `vid`'s inode objects in line with the VDI table.
pub async fn repair(sheep: &Sheep, vid: Vid) -> SheepResult<()> {
    let (entry, live) = {
        let t = sheep.vdis();
        (t.get(vid).cloned(), t.is_live(vid))
    };
    let Some(entry) = entry else {
        return Ok(());
    };
    if !live {
        let freed = finish_delete(sheep, vid).await?;
        tracing::info!(%vid, freed, "finished an interrupted delete");
        return Ok(());
    }
    match read_header(sheep, vid).await {
        Ok(_) => {}
        Err(e) if e.result() == SdResult::NoObj => {
            write_new_inode(sheep, vid, &entry).await?;
            tracing::info!(%vid, "wrote the inode of an interrupted create");
        }
        Err(e) => return Err(e),
    }
    if let Some(w) = entry.snapshot_of
        && !read_header(sheep, w).await?.is_snapshot()
    {
        mark_snapshot_header(sheep, w, entry.create_time).await?;
        tracing::info!(vid = %w, "marked the snapshot of an interrupted snapshot");
    }
    Ok(())
}

/// Appends the `Settled` record of `vid`.
async fn confirm(sheep: &Sheep, vid: Vid) {
    if let Err(e) = sheep
        .submit(|token| ClusterMsg::Settled { token, vid })
        .await
    {
        tracing::warn!(%vid, error = %e, "recording finished VDI work failed");
    }
}

/// The gateway finished (`done`) or failed its work on `vid`: confirm it, or keep
/// retrying the repair until it succeeds, in the background.
pub fn conclude(sheep: &Sheep, vid: Vid, done: bool) {
    let Some(sheep) = sheep.self_ref() else {
        return;
    };
    tokio::spawn(async move {
        if !done {
            while let Err(e) = repair(&sheep, vid).await {
                tracing::warn!(%vid, error = %e, "finishing VDI work failed; retrying");
                tokio::select! {
                    () = sheep.cancel.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
        confirm(&sheep, vid).await;
    });
}

/// The cluster is stable: every member sweeps dead copies of deleted VDIs, and the lowest
/// member finishes the work of gateways that died.
pub async fn at_stable(sheep: &Arc<Sheep>) {
    // Every node drops the dead copies it holds of deleted VDIs.
    match crate::reclaim::sweep_local(sheep).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed copies of deleted VDIs"),
        Err(e) => tracing::warn!(error = %e, "sweeping copies of deleted VDIs failed"),
    }
    let lowest = sheep.sys().nodes.iter().map(|n| n.nid).min();
    if lowest != Some(sheep.me.nid) {
        return;
    }
    let orphaned = sheep.vdis().orphaned();
    for vid in orphaned {
        match repair(sheep, vid).await {
            Ok(()) => confirm(sheep, vid).await,
            Err(e) => tracing::warn!(%vid, error = %e, "finishing interrupted VDI work failed"),
        }
    }
}
