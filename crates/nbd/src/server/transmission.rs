//! The transmission phase of one connection: a reader that decodes requests and spawns
//! one bounded task per request, and a writer that sends replies in completion order.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::check::{Limits, Op, check};
use super::{Config, ConnError, FrameReader, Negotiated};
use crate::codec::{
    ChunkBody, CmdType, Errno, MAX_BLOCK, Reply, RequestDecoder, RequestFrame, RequestHeader,
    StructuredChunk,
};
use crate::dev::{BlockDev, BlockError};

/// The writer keeps coalescing ready replies into one socket write up to this size.
const BATCH: usize = 256 << 10;
/// READ data up to this size is copied into the batch; larger data is written directly.
const INLINE_BULK: usize = 64 << 10;

/// What every request task of a connection shares.
struct Session {
    dev: Arc<dyn BlockDev>,
    limits: Limits,
}

/// A reply on its way to the writer, holding the in-flight permits of its request until
/// it has been written.
struct Outgoing {
    reply: Reply,
    _permits: Permits,
}

struct Permits {
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// A device result that could not have been produced by a correct device.
#[derive(Debug, thiserror::Error)]
#[error("device returned {got} bytes for a read of {want}")]
struct ShortRead {
    want: u32,
    got: usize,
}

/// Runs the transmission phase until DISC, end of stream, a malformed frame, a socket
/// error or `cancel`; in every case requests already read are answered before return.
pub(crate) async fn run(
    mut rd: FrameReader,
    wr: OwnedWriteHalf,
    negotiated: Negotiated,
    config: &Config,
    cancel: CancellationToken,
) -> Result<(), ConnError> {
    let session = Arc::new(Session {
        dev: negotiated.dev,
        limits: Limits {
            size: negotiated.size,
            read_only: negotiated.read_only,
            structured: negotiated.structured,
        },
    });
    let max_in_flight = config.max_in_flight.max(1);
    // Each queued reply holds a slot permit, so sends into this channel never wait long.
    let (tx, rx) = mpsc::channel(max_in_flight);
    let stop = cancel.child_token();
    let writer = async {
        let r = write_replies(wr, rx).await;
        // A dead socket also ends reading.
        stop.cancel();
        r
    };
    let reader = read_requests(&mut rd, session, tx, config, &stop);
    let (read, write) = tokio::join!(reader, writer);
    read?;
    write
}

async fn read_requests(
    rd: &mut FrameReader,
    session: Arc<Session>,
    tx: mpsc::Sender<Outgoing>,
    config: &Config,
    stop: &CancellationToken,
) -> Result<(), ConnError> {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let budget_bytes = config
        .max_in_flight_bytes
        .max(usize::try_from(MAX_BLOCK).unwrap_or(usize::MAX))
        .min(Semaphore::MAX_PERMITS);
    let budget = Arc::new(Semaphore::new(budget_bytes));
    let mut decoder = RequestDecoder::new(MAX_BLOCK);
    let result = loop {
        let frame = tokio::select! {
            biased;
            () = stop.cancelled() => break Ok(()),
            f = rd.next(|buf| decoder.decode(buf)) => f,
        };
        let (header, payload) = match frame {
            Ok(Some(RequestFrame::Request { header, payload })) => (header, Some(payload)),
            Ok(Some(RequestFrame::Oversized { header })) => (header, None),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if header.ty == CmdType::Disc {
            tracing::debug!("NBD_CMD_DISC");
            break Ok(());
        }
        let cost = match header.ty {
            CmdType::Read | CmdType::Write if header.length <= MAX_BLOCK => header.length,
            _ => 0,
        };
        let permits = tokio::select! {
            () = stop.cancelled() => break Ok(()),
            p = acquire(&slots, &budget, cost) => p,
        };
        let Some(permits) = permits else {
            break Ok(());
        };
        tracker.spawn(handle(
            Arc::clone(&session),
            header,
            payload,
            tx.clone(),
            permits,
        ));
    };
    tracker.close();
    tracker.wait().await;
    result
}

/// One in-flight slot and `cost` bytes of budget; `None` only if a semaphore was closed,
/// which this module never does.
async fn acquire(slots: &Arc<Semaphore>, budget: &Arc<Semaphore>, cost: u32) -> Option<Permits> {
    let slot = Arc::clone(slots).acquire_owned().await.ok()?;
    let bytes = Arc::clone(budget).acquire_many_owned(cost).await.ok()?;
    Some(Permits {
        _slot: slot,
        _bytes: bytes,
    })
}

#[tracing::instrument(level = "debug", skip_all, fields(
    op = ?header.ty, cookie = header.cookie.0, offset = header.offset, len = header.length,
))]
async fn handle(
    session: Arc<Session>,
    header: RequestHeader,
    payload: Option<Bytes>,
    tx: mpsc::Sender<Outgoing>,
    permits: Permits,
) {
    let result = match check(&header, payload, session.limits) {
        Ok(op) => execute(session.dev.as_ref(), op).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        match e {
            BlockError::Io(_) => {
                tracing::warn!(error = e as &dyn std::error::Error, "request failed");
            }
            _ => tracing::debug!(error = %e, "request refused"),
        }
    }
    let reply = build_reply(&header, result, session.limits.structured);
    // Fails only if the writer is gone (socket dead); nobody is left to answer then.
    let _ = tx
        .send(Outgoing {
            reply,
            _permits: permits,
        })
        .await;
}

/// Runs a validated request; READ returns its data, everything else empty bytes.
async fn execute(dev: &dyn BlockDev, op: Op) -> Result<Bytes, BlockError> {
    match op {
        Op::Read { offset, len } => {
            let data = dev.read(offset, len).await?;
            if u32::try_from(data.len()).ok() != Some(len) {
                return Err(BlockError::io(ShortRead {
                    want: len,
                    got: data.len(),
                }));
            }
            Ok(data)
        }
        Op::Write { offset, data, fua } => {
            dev.write(offset, data, fua).await.map(|()| Bytes::new())
        }
        Op::Flush => dev.flush().await.map(|()| Bytes::new()),
        Op::Trim { offset, len, fua } => {
            dev.trim(offset, len).await?;
            if fua {
                dev.flush().await?;
            }
            Ok(Bytes::new())
        }
        Op::WriteZeroes {
            offset,
            len,
            no_hole,
            fua,
        } => {
            dev.write_zeroes(offset, len, no_hole).await?;
            if fua {
                dev.flush().await?;
            }
            Ok(Bytes::new())
        }
        Op::Nothing => Ok(Bytes::new()),
    }
}

/// The reply for a finished request. With structured replies a READ is answered by one
/// OFFSET_DATA chunk (or NONE when empty) and every error by an ERROR chunk with a
/// message, all flagged DONE; other successes use a simple reply, as the protocol allows.
fn build_reply(
    header: &RequestHeader,
    result: Result<Bytes, BlockError>,
    structured: bool,
) -> Reply {
    let cookie = header.cookie;
    let chunk = |body| {
        Reply::Structured(StructuredChunk {
            cookie,
            done: true,
            body,
        })
    };
    match result {
        Ok(data) if structured && header.ty == CmdType::Read => {
            if data.is_empty() {
                chunk(ChunkBody::None)
            } else {
                chunk(ChunkBody::OffsetData {
                    offset: header.offset,
                    data,
                })
            }
        }
        Ok(data) => Reply::Simple {
            cookie,
            error: Errno::OK,
            data,
        },
        Err(e) if structured => chunk(ChunkBody::Error {
            error: e.errno(),
            message: e.to_string(),
        }),
        Err(e) => Reply::Simple {
            cookie,
            error: e.errno(),
            data: Bytes::new(),
        },
    }
}

/// Sends replies as they arrive, coalescing those already waiting into one write, until
/// every sender is gone; then half-closes the socket.
async fn write_replies(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
) -> Result<(), ConnError> {
    let mut buf = BytesMut::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next {
            out.reply.encode_head(&mut buf);
            let bulk = out.reply.bulk();
            if bulk.len() <= INLINE_BULK {
                buf.extend_from_slice(bulk);
            } else {
                wr.write_all(&buf).await?;
                buf.clear();
                wr.write_all(bulk).await?;
            }
            drop(out);
            next = if buf.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
            buf.clear();
        }
    }
    // The client may already have closed its side after DISC.
    let _ = wr.shutdown().await;
    Ok(())
}
