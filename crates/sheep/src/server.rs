//! The listener and per-connection tasks: decode frames, run requests concurrently (bounded
//! per connection), write responses in completion order with the request id echoed.

use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sd_proto::{MAX_REQUEST_PAYLOAD, RequestDecoder, RequestFrame, ResponseHeader, SdResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ops::{self, After};
use crate::sys::Sheep;

/// Accepts connections until `cancel` fires.
pub async fn serve(listener: TcpListener, sheep: Arc<Sheep>, cancel: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let sheep = sheep.clone();
                    let cancel = cancel.clone();
                    tracker.spawn(async move {
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            () = connection(stream, sheep) => {}
                        }
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

type Outgoing = (ResponseHeader, Bytes, After);

/// The writer keeps coalescing ready responses into one socket write up to this size.
const BATCH: usize = 256 << 10;
/// Payloads up to this size are copied into the batch; larger ones are written directly.
const INLINE_PAYLOAD: usize = 64 << 10;

/// Sends responses as they complete, coalescing those already waiting into one write.
/// After a response marked [`After::Stop`] is sent, the daemon is told to stop.
async fn write_responses(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    stop: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut stopping = false;
        while let Some((rsp, payload, after)) = next.take() {
            buf.extend_from_slice(&rsp.encode());
            if payload.len() <= INLINE_PAYLOAD {
                buf.extend_from_slice(&payload);
            } else {
                let mut parts = [IoSlice::new(&buf), IoSlice::new(&payload)];
                if write_all_vectored(&mut wr, &mut parts).await.is_err() {
                    return;
                }
                buf.clear();
            }
            stopping |= after == After::Stop;
            if buf.len() < BATCH && !stopping {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            let ok = wr.write_all(&buf).await.is_ok();
            buf.clear();
            if !ok && !stopping {
                return;
            }
        }
        if stopping {
            let _ = wr.flush().await;
            stop.cancel();
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

async fn connection(stream: TcpStream, sheep: Arc<Sheep>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let (mut rd, wr) = stream.into_split();
    let inflight = sheep.cfg.max_inflight_per_conn.max(1);
    let (tx, rx) = mpsc::channel::<Outgoing>(inflight);
    let stop = sheep.cancel.clone();
    let writer = tokio::spawn(write_responses(wr, rx, stop));

    let permits = Arc::new(Semaphore::new(inflight));
    let mut decoder = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
    let mut buf = BytesMut::with_capacity(64 << 10);
    'read: loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable frame; closing");
                    break 'read;
                }
            };
            let (header, payload) = match frame {
                RequestFrame::Request { header, payload } => (header, payload),
                RequestFrame::Oversized { header } => {
                    tracing::warn!(opcode = ?header.opcode, len = header.data_length, "payload over the limit refused");
                    let rsp = ResponseHeader::reply_to(
                        &header,
                        sheep.sys().epoch,
                        SdResult::InvalidParms,
                    );
                    if tx.send((rsp, Bytes::new(), After::Continue)).await.is_err() {
                        break 'read;
                    }
                    continue;
                }
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break 'read;
            };
            let sheep = sheep.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let out = ops::handle(&sheep, header, payload).await;
                let _ = tx.send(out).await;
                drop(permit);
            });
        }
        // Do not let a slow writer or a huge read buffer grow without bound.
        if buf.capacity() > 2 * MAX_REQUEST_PAYLOAD && buf.is_empty() {
            buf = BytesMut::with_capacity(64 << 10);
        }
    }
    drop(tx);
    let _ = writer.await;
}
