//! Connections to other sheep: one pipelined connection per peer
//! ([`sd_client::MuxConnection`]), shared by every request to that peer.
//!
//! A gateway with many client requests in flight sends them all down the same stream;
//! the peer answers in completion order. (One connection per request in flight cost a
//! TCP connect and accept for most requests once more than a handful were in flight.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sd_client::{ClientError, MuxConnection};
use sd_proto::node::{NodeId, SD_NODE_SIZE, SdNode};
use sd_proto::{Flags, Opcode, RequestHeader, ResponseHeader};

/// Requests in flight on one peer connection at most; the peer serves this many
/// concurrently per connection (`Limits::max_inflight`'s default).
const MAX_IN_FLIGHT_PER_PEER: usize = 32;
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

/// Whose connection: the shard (`crate::shards`) that uses it, and the peer. Each shard
/// has its own, so a request and the peer connection it uses wake the same thread.
type Key = (usize, NodeId);

/// The connections to the other members.
#[derive(Debug, Default)]
pub struct PeerPool {
    conns: Mutex<HashMap<Key, Arc<MuxConnection>>>,
    /// One lock per connection, held while connecting, so concurrent callers share one
    /// connect.
    connecting: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// This node's entry, sent as PEER_HELLO on each new connection (`None`: not sent).
    hello: Option<Bytes>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerPool {
    /// A pool whose connections first name this node (`me`) with PEER_HELLO: the pool
    /// gateways write replicas through (`crate::fanout`).
    pub fn with_hello(me: &SdNode) -> PeerPool {
        let mut entry = Vec::with_capacity(SD_NODE_SIZE);
        me.encode_into(&mut entry);
        PeerPool {
            hello: Some(Bytes::from(entry)),
            ..PeerPool::default()
        }
    }

    fn live(&self, key: &Key) -> Option<Arc<MuxConnection>> {
        lock(&self.conns).get(key).filter(|c| !c.is_dead()).cloned()
    }

    /// The live connection to `nid`, connecting if there is none. `stale`: a connection
    /// the caller saw fail, to be replaced even if it does not know it is dead yet.
    async fn get(
        &self,
        nid: NodeId,
        stale: Option<&Arc<MuxConnection>>,
    ) -> Result<Arc<MuxConnection>, PeerError> {
        let fresh = |c: &Arc<MuxConnection>| stale.is_none_or(|s| !Arc::ptr_eq(s, c));
        let key = (crate::shards::current(), nid);
        if let Some(c) = self.live(&key).filter(fresh) {
            return Ok(c);
        }
        let gate = lock(&self.connecting).entry(key).or_default().clone();
        let _connecting = gate.lock().await;
        if let Some(c) = self.live(&key).filter(fresh) {
            return Ok(c);
        }
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            MuxConnection::connect(nid.socket_addr(), MAX_IN_FLIGHT_PER_PEER),
        )
        .await
        .map_err(|_| PeerError::Timeout(nid))?
        .map_err(|e| PeerError::Unreachable(nid, e))?;
        if let Some(me) = &self.hello {
            // Named first, so the peer knows whose writes this connection carries. A peer
            // that does not know PEER_HELLO (or a slow answer) only loses that knowledge.
            let mut h = RequestHeader::new(Opcode::PeerHello);
            h.flags = Flags::WRITE;
            h.data_length = u32::try_from(me.len()).unwrap_or(0);
            let hello = conn.call(h, me.clone());
            if let Err(_) | Ok(Err(_)) = tokio::time::timeout(CONNECT_TIMEOUT, hello).await {
                tracing::debug!(node = %nid, "PEER_HELLO not answered");
            }
        }
        let conn = Arc::new(conn);
        lock(&self.conns).insert(key, conn.clone());
        Ok(conn)
    }

    /// Drops the connection to `nid` (it left the cluster).
    pub fn forget(&self, nid: &NodeId) {
        lock(&self.conns).retain(|(_, n), _| n != nid);
        lock(&self.connecting).retain(|(_, n), _| n != nid);
    }

    /// Sends one request to `nid` and returns its answer (any result code).
    ///
    /// A connection that turns out dead (the peer restarted) is replaced by a fresh one
    /// once; peer operations are idempotent, so resending is safe.
    pub async fn call(
        &self,
        nid: NodeId,
        header: RequestHeader,
        payload: Bytes,
    ) -> Result<(ResponseHeader, Bytes), PeerError> {
        let conn = self.get(nid, None).await?;
        match self.call_on(nid, &conn, header, payload.clone()).await {
            Err(PeerError::Unreachable(_, e)) if e.is_transport() => {}
            other => return other,
        }
        let conn = self.get(nid, Some(&conn)).await?;
        self.call_on(nid, &conn, header, payload).await
    }

    async fn call_on(
        &self,
        nid: NodeId,
        conn: &MuxConnection,
        header: RequestHeader,
        payload: Bytes,
    ) -> Result<(ResponseHeader, Bytes), PeerError> {
        match tokio::time::timeout(CALL_TIMEOUT, conn.call(header, payload)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(PeerError::Unreachable(nid, e)),
            Err(_) => Err(PeerError::Timeout(nid)),
        }
    }
}
