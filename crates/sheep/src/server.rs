//! The listener and per-connection tasks: decode frames, run requests concurrently (bounded
//! per connection), write responses in completion order with the request id echoed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sd_proto::{MAX_REQUEST_PAYLOAD, RequestDecoder, RequestFrame, ResponseHeader, SdResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

async fn connection(stream: TcpStream, sheep: Arc<Sheep>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let (mut rd, mut wr) = stream.into_split();
    let inflight = sheep.cfg.max_inflight_per_conn.max(1);
    let (tx, mut rx) = mpsc::channel::<Outgoing>(inflight);
    let stop = sheep.cancel.clone();
    let writer = tokio::spawn(async move {
        while let Some((rsp, payload, after)) = rx.recv().await {
            let head = rsp.encode();
            let ok = wr.write_all(&head).await.is_ok() && wr.write_all(&payload).await.is_ok();
            if after == After::Stop {
                let _ = wr.flush().await;
                stop.cancel();
            }
            if !ok {
                break;
            }
        }
    });

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
