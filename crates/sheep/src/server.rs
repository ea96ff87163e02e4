//! The listener and per-connection tasks: decode frames, run requests concurrently (bounded
//! per connection), write responses in completion order with the request id echoed,
//! coalescing the answers that are ready into one socket write.
//!
//! What a client can make the daemon hold is bounded (`config::Limits`):
//! - connections: at most `max_connections`; more are closed as soon as they are accepted;
//! - requests: at most `max_inflight` per connection, each holding its slot until its
//!   answer is written (so a client that never reads its answers stops being read);
//! - bytes: before a request's payload is read, its cost (payload or reply buffer, at most
//!   [`MAX_REPLY_COST`], plus [`REQUEST_OVERHEAD`]) is reserved from the pool of its
//!   [`Class`] (`max_buffered` bytes each) and, for client requests, from the connection's
//!   share ([`CONN_SHARE_PAYLOADS`] maximal payloads: one client cannot take a whole pool;
//!   a peer connection carries all the clients of the gateway at its other end). Waiting for room stops reading that connection: TCP
//!   pushes back on the client;
//! - time: a frame begun must be complete within `io_timeout`, and every socket write of
//!   answers must finish within it, or the connection is closed. Idle connections (no
//!   frame begun) are kept: QEMU holds its connections between requests.
//!
//! A payload above `max_payload` is answered INVALID_PARMS and skipped as it arrives,
//! without being buffered.
//!
//! **Invariant**: a request of one [`Class`] only ever waits on requests of a lower class
//! (a gateway request on peer requests, a peer request on recovery reads, a recovery read
//! on nothing but the local disk), and each class has its own pool, so no pool can fill up
//! with requests waiting on requests that need room in that same pool. Leaf requests are
//! sent over their own connections (`Sheep::leaf_peers`) so that the per-connection limits
//! cannot tie them to peer requests either.

use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sd_proto::node::{NodeId, SdNode};
use sd_proto::{
    Flags, Opcode, RequestDecoder, RequestFrame, RequestHeader, ResponseHeader, SD_REQ_SIZE,
    SdResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Limits;
use crate::node::Sheep;
use crate::ops::{self, After};
use crate::shards::Shards;

/// Read buffer a connection starts with, and returns to once it is empty: room for a few
/// 4 KiB writes, so that one arrives with one read (a frame read in two parts costs a
/// second read and arms the frame's deadline).
const INITIAL_BUF: usize = 16 << 10;
/// Room kept free in the read buffer before each read: a 4 KiB write and its header.
const MIN_SPARE: usize = (4 << 10) + SD_REQ_SIZE;
/// Bytes charged per request on top of its payload or reply (task, headers, bookkeeping).
pub const REQUEST_OVERHEAD: usize = 4 << 10;
/// The most a request is charged for its reply buffer: the largest reply is an inode read
/// (12.5 MiB); replies are sized by what is read, never by the `data_length` asked for.
pub const MAX_REPLY_COST: usize = 16 << 20;
/// A connection's share of its pool, in maximal payloads.
pub const CONN_SHARE_PAYLOADS: usize = 4;
/// The writer keeps coalescing ready responses into one socket write up to this size.
const BATCH: usize = 256 << 10;
/// Payloads up to this size are copied into the batch; larger ones are written directly.
const INLINE_PAYLOAD: usize = 64 << 10;

/// How long the listener pauses after a failed accept (out of file descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Which byte pool a request draws on, by what it may wait for while it holds its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Everything a client sends: may wait on peer and leaf requests to other sheep.
    Client,
    /// Replica I/O from a gateway (`*_PEER`) and REPAIR_REPLICA: may wait on leaf requests
    /// (recovery of the object before it is served, the fetch of the good copy).
    Peer,
    /// Served from this node's disk alone: recovery reads (READ_PEER with RECOVERY,
    /// FETCH_PEER), object lists, peer flushes, GET_HASH, OIDS_EXIST.
    Leaf,
}

impl Class {
    /// The class of request `h`.
    pub fn of(h: &RequestHeader) -> Class {
        match h.opcode {
            Opcode::ReadPeer if h.flags.contains(Flags::RECOVERY) => Class::Leaf,
            Opcode::GetObjList
            | Opcode::FlushPeer
            | Opcode::FetchPeer
            | Opcode::GetHash
            | Opcode::OidsExist
            | Opcode::PeerHello => Class::Leaf,
            Opcode::CreateAndWritePeer
            | Opcode::ReadPeer
            | Opcode::WritePeer
            | Opcode::RemovePeer
            | Opcode::RepairReplica => Class::Peer,
            _ => Class::Client,
        }
    }
}

/// The byte pools of all connections, one per [`Class`].
#[derive(Debug)]
struct Pools {
    client: Arc<Semaphore>,
    peer: Arc<Semaphore>,
    leaf: Arc<Semaphore>,
    size: usize,
}

impl Pools {
    fn new(size: usize) -> Pools {
        let size = size.clamp(1, Semaphore::MAX_PERMITS);
        Pools {
            client: Arc::new(Semaphore::new(size)),
            peer: Arc::new(Semaphore::new(size)),
            leaf: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    fn of(&self, class: Class) -> &Arc<Semaphore> {
        match class {
            Class::Client => &self.client,
            Class::Peer => &self.peer,
            Class::Leaf => &self.leaf,
        }
    }
}

/// Accepts connections until `cancel` fires, dealing them to `shards`.
pub async fn serve(
    listener: TcpListener,
    sheep: Arc<Sheep>,
    shards: &Shards,
    cancel: CancellationToken,
) {
    let limits = sheep.cfg.limits;
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let pools = Arc::new(Pools::new(limits.max_buffered));
    let mut refused = 0u64;
    let mut accept_errors = 0u64;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        refused += 1;
                        // Rate-limited: an attack must not fill the log too.
                        if refused.is_power_of_two() {
                            tracing::warn!(%peer, refused, max = limits.max_connections,
                                "connection limit reached; closing new connections");
                        }
                        drop(stream);
                        continue;
                    };
                    let sheep = sheep.clone();
                    let cancel = cancel.clone();
                    let pools = pools.clone();
                    // Registered with the shard's reactor there, not here.
                    let stream = match stream.into_std() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "cannot hand the connection over");
                            continue;
                        }
                    };
                    tracker.spawn_on(async move {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => tokio::select! {
                                () = cancel.cancelled() => {}
                                () = connection(stream, sheep, pools) => {}
                            },
                            Err(e) => tracing::debug!(%peer, error = %e, "cannot adopt the connection"),
                        }
                        drop(slot);
                        tracing::debug!(%peer, "connection closed");
                    }, &shards.next());
                }
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have, and give
                    // them a moment to close some before trying again (no busy loop, no
                    // log flood).
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, accept_errors, "accept failed");
                    }
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    tracker.close();
}

/// What a request holds until its answer is written: its in-flight slot and its bytes.
#[derive(Debug)]
struct Held {
    _slot: OwnedSemaphorePermit,
    _conn_bytes: Option<OwnedSemaphorePermit>,
    _pool_bytes: OwnedSemaphorePermit,
}

type Outgoing = (ResponseHeader, Bytes, After, Option<Held>);

/// The bytes a request is charged: its payload or its reply buffer, whichever it has.
fn cost(h: &RequestHeader, limits: &Limits) -> usize {
    let len = usize::try_from(h.data_length).unwrap_or(usize::MAX);
    let cap = if h.has_payload() {
        limits.max_payload
    } else {
        MAX_REPLY_COST
    };
    len.min(cap).saturating_add(REQUEST_OVERHEAD)
}

/// Reserves what request `h` may hold: an in-flight slot, its cost from the connection's
/// share (client requests only) and from the pool of its class (each clamped to the whole, so that one request
/// can always proceed once the others are done).
async fn reserve(
    h: &RequestHeader,
    limits: &Limits,
    slots: &Arc<Semaphore>,
    share: &Arc<Semaphore>,
    share_size: usize,
    pools: &Pools,
) -> Option<Held> {
    let slot = slots.clone().acquire_owned().await.ok()?;
    let c = cost(h, limits);
    let class = Class::of(h);
    // A peer connection carries the requests of all the clients of the gateway at its
    // other end: only the pool bounds it, not a single client's share.
    let conn_bytes = if class == Class::Client {
        let n = u32::try_from(c.min(share_size)).unwrap_or(u32::MAX);
        Some(share.clone().acquire_many_owned(n).await.ok()?)
    } else {
        None
    };
    let n = u32::try_from(c.min(pools.size)).unwrap_or(u32::MAX);
    let pool_bytes = pools.of(class).clone().acquire_many_owned(n).await.ok()?;
    Some(Held {
        _slot: slot,
        _conn_bytes: conn_bytes,
        _pool_bytes: pool_bytes,
    })
}

/// Sends responses as they complete, coalescing those already waiting into one write, and
/// releases what each request held once its answer is written. A write that does not
/// finish within `io_timeout` (the client does not read) ends the connection; so does
/// any write error. After a response marked [`After::Stop`] is sent, the daemon is told
/// to stop. `closed` is cancelled when this returns, which stops the reader.
async fn write_responses(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    stop: CancellationToken,
    io_timeout: std::time::Duration,
    closed: CancellationToken,
) {
    let _closed = closed.drop_guard();
    // Grown to a batch only while answers are ready; an idle connection keeps none.
    let mut buf = BytesMut::new();
    // What the answers in `buf` (or being written) hold, released once they are written.
    let mut done: Vec<Held> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut stopping = false;
        while let Some((rsp, payload, after, held)) = next.take() {
            done.extend(held);
            buf.extend_from_slice(&rsp.encode());
            if payload.len() <= INLINE_PAYLOAD {
                buf.extend_from_slice(&payload);
            } else {
                let mut parts = [IoSlice::new(&buf), IoSlice::new(&payload)];
                if timed(io_timeout, write_all_vectored(&mut wr, &mut parts))
                    .await
                    .is_err()
                {
                    return;
                }
                buf.clear();
                done.clear();
            }
            stopping |= after == After::Stop;
            if buf.len() < BATCH && !stopping {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            let ok = timed(io_timeout, wr.write_all(&buf)).await.is_ok();
            buf.clear();
            if !ok && !stopping {
                return;
            }
        }
        done.clear();
        if stopping {
            let _ = wr.flush().await;
            stop.cancel();
        }
        if buf.capacity() > INLINE_PAYLOAD && rx.is_empty() {
            buf = BytesMut::new();
        }
    }
}

/// `write`, failed with `TimedOut` if it does not finish within `limit`.
async fn timed(
    limit: std::time::Duration,
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r,
        Err(_) => {
            tracing::debug!("answer not taken within the I/O timeout; closing");
            Err(std::io::ErrorKind::TimedOut.into())
        }
    }
}

/// Writes every byte of `bufs` with as few vectored writes as the socket allows.
async fn write_all_vectored(
    wr: &mut OwnedWriteHalf,
    mut bufs: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = wr.write_vectored(bufs).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

async fn connection(stream: TcpStream, sheep: Arc<Sheep>, pools: Arc<Pools>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let limits = sheep.cfg.limits;
    let (mut rd, wr) = stream.into_split();
    let inflight = limits.max_inflight.max(1);
    let (tx, rx) = mpsc::channel::<Outgoing>(inflight);
    // Cancelled when the writer gives up: the reader stops too.
    let closed = CancellationToken::new();
    let writer = tokio::spawn(write_responses(
        wr,
        rx,
        sheep.cancel.clone(),
        limits.io_timeout,
        closed.clone(),
    ));

    let slots = Arc::new(Semaphore::new(inflight));
    let share_size = limits
        .max_payload
        .saturating_add(REQUEST_OVERHEAD)
        .saturating_mul(CONN_SHARE_PAYLOADS)
        .clamp(1, Semaphore::MAX_PERMITS);
    let share = Arc::new(Semaphore::new(share_size));
    let mut decoder = RequestDecoder::new(limits.max_payload);
    let mut buf = BytesMut::with_capacity(INITIAL_BUF);
    // What the frame at the front of `buf` holds, reserved before its payload is read.
    let mut held: Option<Held> = None;
    // When the frame in progress must be complete.
    let mut frame_deadline: Option<Instant> = None;
    // The sheep on the other end, if it named itself (PEER_HELLO): its peer writes are
    // remembered for `crate::fanout`.
    let mut sender: Option<NodeId> = None;
    'read: loop {
        loop {
            decoder.discard(&mut buf);
            if decoder.is_skipping() {
                break;
            }
            if held.is_none() {
                let head = buf
                    .get(..SD_REQ_SIZE)
                    .and_then(|b| RequestHeader::decode(b).ok());
                if let Some(h) = head.filter(|h| !oversized(h, &limits)) {
                    let reserved = tokio::select! {
                        () = closed.cancelled() => break 'read,
                        r = reserve(&h, &limits, &slots, &share, share_size, &pools) => r,
                    };
                    let Some(r) = reserved else { break 'read };
                    held = Some(r);
                    // Waiting for room is not the client's time.
                    frame_deadline = None;
                }
            }
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable frame; closing");
                    break 'read;
                }
            };
            // A frame is complete: the next one gets its own time.
            frame_deadline = None;
            let (header, payload) = match frame {
                RequestFrame::Request { header, payload } => (header, payload),
                RequestFrame::Oversized { header } => {
                    // Debug only: every such frame is the client's doing, and a flood of
                    // them must not flood the log.
                    tracing::debug!(opcode = ?header.opcode, len = header.data_length, "payload over the limit refused");
                    let rsp = ResponseHeader::reply_to(
                        &header,
                        sheep.sys().epoch,
                        SdResult::InvalidParms,
                    );
                    if tx
                        .send((rsp, Bytes::new(), After::Continue, None))
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                    continue;
                }
            };
            let h = held.take();
            match header.opcode {
                Opcode::PeerHello => {
                    // Handled here, in order: every later request on this connection is
                    // known to come from this node.
                    sender = SdNode::decode(&payload).ok().map(|n| n.nid);
                    let rsp =
                        ResponseHeader::reply_to(&header, sheep.sys().epoch, SdResult::Success);
                    if tx
                        .send((rsp, Bytes::new(), After::Continue, h))
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                    continue;
                }
                Opcode::WritePeer | Opcode::CreateAndWritePeer | Opcode::RemovePeer => {
                    if let Some(from) = sender {
                        sheep.fanout.received(from, header.obj().oid);
                    }
                }
                _ => {}
            }
            let sheep = sheep.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let (rsp, payload, after) = ops::handle(&sheep, header, payload).await;
                let _ = tx.send((rsp, payload, after, h)).await;
            });
        }
        // An idle connection keeps no big buffer (a 4 MiB write leaves one behind).
        if buf.is_empty() && buf.capacity() > 4 * INITIAL_BUF {
            buf = BytesMut::with_capacity(INITIAL_BUF);
        }
        // Payloads split off the front leave less room behind them: keep room for a whole
        // 4 KiB write, so it still arrives with one read.
        if buf.capacity() - buf.len() < MIN_SPARE {
            buf.reserve(INITIAL_BUF);
        }
        let in_progress = !buf.is_empty() || decoder.is_skipping();
        if !in_progress {
            frame_deadline = None;
        } else if frame_deadline.is_none() {
            frame_deadline = Some(Instant::now() + limits.io_timeout);
        }
        let timeout = async {
            match frame_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = closed.cancelled() => break,
            () = timeout => {
                tracing::debug!("frame not completed within the I/O timeout; closing");
                break;
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Whether the decoder will refuse `h` as oversized (nothing to reserve for it).
fn oversized(h: &RequestHeader, limits: &Limits) -> bool {
    h.has_payload() && usize::try_from(h.data_length).map_or(true, |l| l > limits.max_payload)
}
