//! A pipelined connection: many requests in flight on one stream, answered in any order
//! and matched to their callers by request id. Used between sheep, where one gateway
//! sends every replica write of its clients to the same few peers.
//!
//! Two tasks own the stream: a writer that sends every queued request with one vectored
//! write (payloads are never copied), and a reader that decodes responses and hands each
//! to the caller waiting on its id. A caller that gives up (timeout, cancellation) leaves
//! the stream in sync: its response is still read, bounded, and dropped.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::{Bytes, BytesMut};
use sd_proto::{
    Flags, MAX_REQUEST_PAYLOAD, RequestHeader, ResponseDecoder, ResponseHeader, SD_REQ_SIZE,
    SD_RSP_SIZE,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::ClientError;

/// Initial capacity of the receive buffer.
const READ_BUF_INITIAL: usize = 64 << 10;
/// Requests coalesced into one socket write at most.
const MAX_BATCH: usize = 32;

type Answer = Result<(ResponseHeader, Bytes), ClientError>;

/// One request on its way to the writer task.
struct Job {
    head: [u8; SD_REQ_SIZE],
    payload: Bytes,
}

/// A caller waiting for the response with its id.
struct Waiter {
    /// The most payload the response may carry (what the request permits).
    max_reply: usize,
    tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u32, Waiter>,
    next_id: u32,
    /// Why the connection died; no request is sent after that.
    dead: Option<Arc<ClientError>>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Bounds the requests in flight.
    slots: Semaphore,
    reader: OnceLock<AbortHandle>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection dead and fails every waiting caller with `why`.
    fn kill(&self, why: ClientError) {
        let waiters = {
            let mut p = self.lock();
            if p.dead.is_some() {
                return;
            }
            let why = Arc::new(why);
            p.dead = Some(why.clone());
            std::mem::take(&mut p.waiters)
                .into_values()
                .map(|w| (w, why.clone()))
                .collect::<Vec<_>>()
        };
        self.slots.close();
        if let Some(r) = self.reader.get() {
            r.abort();
        }
        for (w, why) in waiters {
            let _ = w.tx.send(Err(ClientError::Lost(why)));
        }
    }
}

/// Removes a caller's waiter when its call ends, however it ends.
struct Forget<'a> {
    shared: &'a Shared,
    id: u32,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiters.remove(&self.id);
    }
}

/// A connection carrying up to `max_in_flight` requests at once.
///
/// **Invariant:** the stream is written only by the writer task, one whole frame after
/// another, and read only by the reader task; any framing or I/O error kills the
/// connection for every caller ([`ClientError::Lost`]) and later calls fail at once with
/// [`ClientError::Broken`]: the owner then opens a new one.
pub struct MuxConnection {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for MuxConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxConnection")
            .field("dead", &self.is_dead())
            .finish_non_exhaustive()
    }
}

impl MuxConnection {
    /// Connects to `addr` with TCP_NODELAY set and starts the connection's tasks (on the
    /// current tokio runtime).
    pub async fn connect(addr: SocketAddr, max_in_flight: usize) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        Ok(Self::start(rd, wr, max_in_flight))
    }

    /// Starts the reader and writer tasks over an established stream's two halves.
    pub fn start<R, W>(rd: R, wr: W, max_in_flight: usize) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                next_id: 1,
                ..Pending::default()
            }),
            slots: Semaphore::new(max_in_flight),
            reader: OnceLock::new(),
        });
        let (jobs, rx) = mpsc::channel(max_in_flight);
        let s = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = write_loop(wr, rx).await {
                s.kill(e);
            }
        });
        let s = shared.clone();
        let reader = tokio::spawn(async move {
            let e = read_loop(rd, &s).await;
            s.kill(e);
        });
        let _ = shared.reader.set(reader.abort_handle());
        MuxConnection { shared, jobs }
    }

    /// True once the connection failed; every call fails from then on.
    pub fn is_dead(&self) -> bool {
        self.shared.lock().dead.is_some()
    }

    /// Sends `header` (with a fresh `id`) and, when it has the WRITE flag, `payload`
    /// (exactly `data_length` bytes); returns the response header and payload. The reply
    /// payload is bounded as in [`crate::Connection::call`]; the result code is not
    /// checked. Cancel-safe: dropping the future abandons only this request.
    pub async fn call(&self, mut header: RequestHeader, payload: Bytes) -> Answer {
        let has_payload = header.has_payload();
        let data_len = usize::try_from(header.data_length).map_err(|_| ClientError::TooLarge {
            what: "data_length",
        })?;
        if has_payload && payload.len() != data_len {
            return Err(ClientError::PayloadLength {
                header: header.data_length,
                payload: payload.len(),
            });
        }
        let max_reply = if has_payload && !header.flags.contains(Flags::PIGGYBACK) {
            0
        } else {
            data_len
        };
        let _slot = self
            .shared
            .slots
            .acquire()
            .await
            .map_err(|_| ClientError::Broken)?;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut p = self.shared.lock();
            if p.dead.is_some() {
                return Err(ClientError::Broken);
            }
            let mut id = p.next_id;
            while p.waiters.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            p.next_id = id.wrapping_add(1);
            p.waiters.insert(id, Waiter { max_reply, tx });
            id
        };
        let _forget = Forget {
            shared: &self.shared,
            id,
        };
        header.id = id;
        let job = Job {
            head: header.encode(),
            payload: if has_payload { payload } else { Bytes::new() },
        };
        self.jobs.send(job).await.map_err(|_| ClientError::Broken)?;
        rx.await.map_err(|_| ClientError::Broken)?
    }
}

impl Drop for MuxConnection {
    fn drop(&mut self) {
        // The writer ends (and half-closes the stream) when `jobs` is dropped; the reader
        // would wait for the peer to close: stop it now.
        if let Some(r) = self.shared.reader.get() {
            r.abort();
        }
    }
}

/// Sends queued requests, coalescing those already waiting into one vectored write.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Job>,
) -> Result<(), ClientError> {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * batch.len());
            for j in &batch {
                slices.push(IoSlice::new(&j.head));
                if !j.payload.is_empty() {
                    slices.push(IoSlice::new(&j.payload));
                }
            }
            crate::connection::write_all_vectored(&mut wr, &mut slices).await?;
        }
        wr.flush().await?;
        batch.clear();
    }
    let _ = wr.shutdown().await;
    Ok(())
}

/// Reads responses until the stream fails; returns why it stopped.
async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, shared: &Shared) -> ClientError {
    let mut buf = BytesMut::with_capacity(READ_BUF_INITIAL);
    loop {
        while let Some(head) = buf.get(..SD_RSP_SIZE) {
            let id = match ResponseHeader::decode(head) {
                Ok(h) => h.id,
                Err(e) => return e.into(),
            };
            // An abandoned request's answer is still read (bounded by the largest
            // payload any request may ask for) to keep the stream in sync.
            let max = shared
                .lock()
                .waiters
                .get(&id)
                .map_or(MAX_REQUEST_PAYLOAD, |w| w.max_reply);
            match ResponseDecoder::new(max).decode(&mut buf) {
                Ok(Some((rsp, data))) => {
                    let waiter = shared.lock().waiters.remove(&rsp.id);
                    if let Some(w) = waiter {
                        let _ = w.tx.send(Ok((rsp, data)));
                    }
                }
                Ok(None) => break,
                Err(e) => return e.into(),
            }
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_BUF_INITIAL);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return ClientError::Closed,
            Ok(_) => {}
            Err(e) => return e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::{recv_request, send_reply};
    use sd_proto::{Opcode, SdResult};
    use tokio::io::{AsyncWriteExt, duplex};

    fn read_req(len: u32) -> RequestHeader {
        let mut h = RequestHeader::new(Opcode::ReadPeer);
        h.data_length = len;
        h
    }

    #[tokio::test]
    async fn answers_out_of_order_reach_their_callers() {
        let (client, mut server) = duplex(1 << 20);
        let (rd, wr) = tokio::io::split(client);
        let c = MuxConnection::start(rd, wr, 8);
        let srv = tokio::spawn(async move {
            let (a, _) = recv_request(&mut server).await;
            let (b, body) = recv_request(&mut server).await;
            assert_eq!(body, b"xyz");
            assert_ne!(a.id, b.id);
            send_reply(&mut server, &b, SdResult::Success, &[]).await;
            send_reply(&mut server, &a, SdResult::Success, b"abcd").await;
            server
        });
        let mut w = RequestHeader::new(Opcode::WritePeer);
        w.flags = Flags::WRITE;
        w.data_length = 3;
        let (ra, rb) = tokio::join!(
            c.call(read_req(4), Bytes::new()),
            c.call(w, Bytes::from_static(b"xyz"))
        );
        let (ha, da) = ra.unwrap();
        assert_eq!(ha.result, SdResult::Success);
        assert_eq!(&da[..], b"abcd");
        assert!(rb.unwrap().1.is_empty());
        drop(srv.await.unwrap());
    }

    #[tokio::test]
    async fn abandoned_request_keeps_the_stream_in_sync() {
        let (client, mut server) = duplex(1 << 20);
        let (rd, wr) = tokio::io::split(client);
        let c = MuxConnection::start(rd, wr, 8);
        let (first_tx, first_rx) = oneshot::channel();
        let srv = tokio::spawn(async move {
            let (a, _) = recv_request(&mut server).await;
            first_tx.send(()).unwrap();
            let (b, _) = recv_request(&mut server).await;
            send_reply(&mut server, &a, SdResult::Success, b"late").await;
            send_reply(&mut server, &b, SdResult::Success, b"ok").await;
            server
        });
        let abandoned = tokio::select! {
            r = c.call(read_req(4), Bytes::new()) => Some(r),
            _ = first_rx => None,
        };
        assert!(abandoned.is_none());
        let (_, d) = c.call(read_req(2), Bytes::new()).await.unwrap();
        assert_eq!(&d[..], b"ok");
        drop(srv.await.unwrap());
    }

    #[tokio::test]
    async fn oversized_reply_kills_every_call_and_later_calls_fail_fast() {
        let (client, mut server) = duplex(1 << 20);
        let (rd, wr) = tokio::io::split(client);
        let c = MuxConnection::start(rd, wr, 8);
        let srv = tokio::spawn(async move {
            let (a, _) = recv_request(&mut server).await;
            let (_b, _) = recv_request(&mut server).await;
            send_reply(&mut server, &a, SdResult::Success, &[0; 9]).await;
            server
        });
        let (ra, rb) = tokio::join!(
            c.call(read_req(8), Bytes::new()),
            c.call(read_req(8), Bytes::new())
        );
        assert!(matches!(ra, Err(ClientError::Lost(_))), "{ra:?}");
        assert!(matches!(rb, Err(ClientError::Lost(_))), "{rb:?}");
        assert!(c.is_dead());
        assert!(matches!(
            c.call(read_req(8), Bytes::new()).await,
            Err(ClientError::Broken)
        ));
        drop(srv.await.unwrap());
    }

    #[tokio::test]
    async fn peer_closing_fails_waiting_calls() {
        let (client, mut server) = duplex(1 << 20);
        let (rd, wr) = tokio::io::split(client);
        let c = MuxConnection::start(rd, wr, 8);
        let srv = tokio::spawn(async move {
            let _ = recv_request(&mut server).await;
            server.shutdown().await.unwrap();
            drop(server);
        });
        let r = c.call(read_req(8), Bytes::new()).await;
        assert!(r.as_ref().unwrap_err().is_transport(), "{r:?}");
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn payload_length_must_match_header() {
        let (client, _server) = duplex(1 << 10);
        let (rd, wr) = tokio::io::split(client);
        let c = MuxConnection::start(rd, wr, 8);
        let mut h = RequestHeader::new(Opcode::WritePeer);
        h.flags = Flags::WRITE;
        h.data_length = 3;
        assert!(matches!(
            c.call(h, Bytes::from_static(b"ab")).await,
            Err(ClientError::PayloadLength { .. })
        ));
    }
}
