//! The listener and per-connection tasks: decode frames, run requests concurrently (bounded
//! per connection), write responses in completion order with the request id echoed.
//!
//! What a client can make the daemon hold is bounded (`config::Limits`):
//! - connections: at most `max_connections`; more are closed as soon as they are accepted;
//! - requests: at most `max_inflight` per connection, each holding its slot until its
//!   answer is written (so a client that never reads its answers stops being read);
//! - bytes: before a request's payload is read, its cost (payload or reply buffer, at most
//!   [`MAX_REPLY_COST`], plus [`REQUEST_OVERHEAD`]) is reserved from the connection's share
//!   ([`CONN_SHARE_PAYLOADS`] payloads) and from a pool of `max_buffered` bytes shared by all
//!   client connections (sheep-to-sheep opcodes draw on a second pool of the same size, so
//!   that gateways waiting on peers can never starve the peers they wait on). Waiting for
//!   it stops reading that connection: TCP pushes back;
//! - time: a frame begun must be complete within `io_timeout`, and an answer must be
//!   written within it, or the connection is closed. Idle connections (no frame begun)
//!   are kept: QEMU holds its connections between requests.
//!
//! A payload above `max_payload` is answered INVALID_PARMS and skipped as it arrives,
//! without being buffered.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sd_proto::{
    RequestDecoder, RequestFrame, RequestHeader, ResponseHeader, SD_REQ_SIZE, SdResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Limits;
use crate::ops::{self, After};
use crate::sys::Sheep;

/// Read buffer a connection starts with, and returns to once it is empty.
const INITIAL_BUF: usize = 4 << 10;
/// Bytes charged per request on top of its payload or reply (task, headers, bookkeeping).
pub const REQUEST_OVERHEAD: usize = 4 << 10;
/// The most a request is charged for its reply buffer: the largest reply is an inode read
/// (12.5 MiB); a bigger `data_length` is never filled.
pub const MAX_REPLY_COST: usize = 16 << 20;
/// A connection's share of the byte pool, in maximal payloads.
pub const CONN_SHARE_PAYLOADS: usize = 4;

/// The byte pools of all connections.
#[derive(Debug)]
struct Pools {
    client: Arc<Semaphore>,
    peer: Arc<Semaphore>,
    size: usize,
}

/// Accepts connections until `cancel` fires.
pub async fn serve(listener: TcpListener, sheep: Arc<Sheep>, cancel: CancellationToken) {
    let limits = sheep.cfg.limits;
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let size = limits.max_buffered.clamp(1, Semaphore::MAX_PERMITS);
    let pools = Arc::new(Pools {
        client: Arc::new(Semaphore::new(size)),
        peer: Arc::new(Semaphore::new(size)),
        size,
    });
    let mut refused = 0u64;
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
                    tracker.spawn(async move {
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            () = connection(stream, sheep, pools) => {}
                        }
                        drop(slot);
                        tracing::debug!(%peer, "connection closed");
                    });
                }
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::task::yield_now().await;
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
    _conn_bytes: OwnedSemaphorePermit,
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
/// share and from the pool its opcode draws on (each clamped to the whole, so that one
/// request can always proceed once the others are done).
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
    let n = u32::try_from(c.min(share_size)).unwrap_or(u32::MAX);
    let conn_bytes = share.clone().acquire_many_owned(n).await.ok()?;
    let pool = if h.opcode.is_internal() {
        &pools.peer
    } else {
        &pools.client
    };
    let n = u32::try_from(c.min(pools.size)).unwrap_or(u32::MAX);
    let pool_bytes = pool.clone().acquire_many_owned(n).await.ok()?;
    Some(Held {
        _slot: slot,
        _conn_bytes: conn_bytes,
        _pool_bytes: pool_bytes,
    })
}

async fn connection(stream: TcpStream, sheep: Arc<Sheep>, pools: Arc<Pools>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let limits = sheep.cfg.limits;
    let (mut rd, mut wr) = stream.into_split();
    let inflight = limits.max_inflight.max(1);
    let (tx, mut rx) = mpsc::channel::<Outgoing>(inflight);
    // Cancelled when the writer gives up: the reader stops too.
    let closed = CancellationToken::new();
    let stop = sheep.cancel.clone();
    let writer_closed = closed.clone();
    let io_timeout = limits.io_timeout;
    let writer = tokio::spawn(async move {
        while let Some((rsp, payload, after, held)) = rx.recv().await {
            let head = rsp.encode();
            let write = async {
                wr.write_all(&head).await?;
                wr.write_all(&payload).await
            };
            let ok = match tokio::time::timeout(io_timeout, write).await {
                Ok(r) => r.is_ok(),
                Err(_) => {
                    tracing::debug!("answer not taken within the I/O timeout; closing");
                    false
                }
            };
            drop(held);
            if after == After::Stop {
                let _ = wr.flush().await;
                stop.cancel();
            }
            if !ok {
                break;
            }
        }
        writer_closed.cancel();
    });

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
