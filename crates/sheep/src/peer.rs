//! Connections to other sheep: a small pool per peer, reused across requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use sd_client::{ClientError, Connection};
use sd_proto::node::NodeId;
use sd_proto::{RequestHeader, ResponseHeader};

/// Idle connections kept per peer.
const MAX_IDLE_PER_PEER: usize = 8;
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one peer request may take before the peer is treated as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Could not reach the peer, or the connection broke.
    #[error("peer {0} unreachable")]
    Unreachable(NodeId, #[source] ClientError),
    /// The peer did not answer in time.
    #[error("peer {0} timed out")]
    Timeout(NodeId),
}

/// Pooled connections to the other members.
#[derive(Debug, Default)]
pub struct PeerPool {
    idle: Mutex<HashMap<NodeId, Vec<Connection>>>,
}

impl PeerPool {
    fn take(&self, nid: &NodeId) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(nid)
            .and_then(Vec::pop)
    }

    fn give_back(&self, nid: NodeId, c: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let v = idle.entry(nid).or_default();
        if v.len() < MAX_IDLE_PER_PEER {
            v.push(c);
        }
    }

    /// Drops every idle connection to `nid` (it left the cluster).
    pub fn forget(&self, nid: &NodeId) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(nid);
    }

    /// Sends one request to `nid` and returns its answer (any result code).
    ///
    /// A pooled connection that turns out dead (the peer restarted) is replaced by a fresh
    /// one once; peer operations are idempotent, so resending is safe.
    pub async fn call(
        &self,
        nid: NodeId,
        header: RequestHeader,
        payload: &[u8],
    ) -> Result<(ResponseHeader, Bytes), PeerError> {
        if let Some(conn) = self.take(&nid) {
            match self.call_on(nid, conn, header, payload).await {
                Err(PeerError::Unreachable(..)) => {}
                other => return other,
            }
        }
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(nid.socket_addr()))
            .await
            .map_err(|_| PeerError::Timeout(nid))?
            .map_err(|e| PeerError::Unreachable(nid, e))?;
        self.call_on(nid, conn, header, payload).await
    }

    async fn call_on(
        &self,
        nid: NodeId,
        mut conn: Connection,
        header: RequestHeader,
        payload: &[u8],
    ) -> Result<(ResponseHeader, Bytes), PeerError> {
        match tokio::time::timeout(CALL_TIMEOUT, conn.call(header, payload)).await {
            Ok(Ok(r)) => {
                self.give_back(nid, conn);
                Ok(r)
            }
            Ok(Err(e)) => Err(PeerError::Unreachable(nid, e)),
            Err(_) => Err(PeerError::Timeout(nid)),
        }
    }
}
