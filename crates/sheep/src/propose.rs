//! Cluster operations this node proposes: a VDI record appended to the ordered log, and the
//! wait until this node applies it in log order, as every member does. The membership task
//! (`follower`) completes the wait with the record's outcome.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sd_cluster::log::LogEntry;
use sd_cluster::{Applied, ClusterDriver, ClusterMsg};
use sd_proto::SdResult;
use sd_proto::node::NodeId;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::driver::Driver;
use crate::error::{SheepError, SheepResult};

/// Cluster operations of this node waiting for their record.
#[derive(Debug, Default)]
pub struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Applied, SdResult>>>>,
}

impl Pending {
    fn register(&self) -> (u64, oneshot::Receiver<Result<Applied, SdResult>>) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token, tx);
        (token, rx)
    }

    /// The record carrying `token` was applied here with outcome `r`: wake its proposer.
    pub fn complete(&self, token: u64, r: Result<Applied, SdResult>) {
        let tx = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        if let Some(tx) = tx {
            let _ = tx.send(r);
        }
    }

    /// Appends the VDI operation built by `make(token)` as node `me`, and waits until this
    /// node applies it (we observe it in log order like everyone else). SHUTDOWN once
    /// `cancel` fires: a stopping node no longer follows the log, so nobody would answer.
    pub async fn submit(
        &self,
        driver: &Driver,
        me: NodeId,
        cancel: &CancellationToken,
        make: impl FnOnce(u64) -> ClusterMsg,
    ) -> SheepResult<Applied> {
        let (token, rx) = self.register();
        let msg = make(token);
        driver
            .append(LogEntry::Notify {
                from: me,
                msg: msg.encode(),
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cluster notification failed");
                SheepError::Result(SdResult::ClusterError)
            })?;
        tokio::select! {
            r = rx => match r {
                Ok(r) => r.map_err(SheepError::Result),
                Err(_) => Err(SdResult::ClusterError.into()),
            },
            () = cancel.cancelled() => Err(SdResult::Shutdown.into()),
        }
    }
}
