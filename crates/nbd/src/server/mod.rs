//! The NBD server: accepts TCP connections, negotiates an export (fixed newstyle), then
//! serves many requests per connection concurrently with replies in completion order.
//!
//! # Connection lifecycle
//!
//! 1. Handshake (`handshake.rs`): greeting, client flags, options until `NBD_OPT_GO` or
//!    `NBD_OPT_EXPORT_NAME` picks an export, or the client aborts or disconnects.
//! 2. Transmission (`transmission.rs`): the connection task only decodes requests and
//!    spawns one task per request (bounded by [`Config::max_in_flight`] requests and
//!    [`Config::max_in_flight_bytes`] of READ/WRITE data); a writer sends the replies
//!    as the requests complete.
//! 3. End: on `NBD_CMD_DISC`, end of stream, a malformed frame or server shutdown the
//!    connection stops reading, lets in-flight requests finish and reply, then closes.
//!    A malformed frame closes only its own connection.
//!
//! # Ordering guarantees
//!
//! Requests are processed concurrently and may complete and be answered in any order.
//! A request has *completed* once the server has sent its reply: replies are sent only
//! after the device call returned. `NBD_CMD_FLUSH` calls [`BlockDev::flush`] when it is
//! received, so every write the client has seen a reply for before sending the FLUSH is
//! covered (the NBD rule); writes still in flight when the FLUSH arrives are not.
//!
//! `NBD_FLAG_CAN_MULTI_CONN` is advertised because that coverage does not depend on the
//! connection: the server keeps no per-connection cache (a WRITE reply is sent only after
//! the device accepted the data), and the device's flush is per export, covering writes
//! completed on any connection (the [`BlockDev`] invariant). So a FLUSH on one connection
//! covers writes answered on all of them, as the flag promises.
//!
//! FUA on WRITE is passed to [`BlockDev::write`]; FUA on TRIM and WRITE_ZEROES is
//! honoured by a [`BlockDev::flush`] after the operation, before the reply.

mod check;
mod handshake;
mod transmission;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::codec::{DecodeError, OptionError};
use crate::dev::{BlockDev, ExportError, Exports};

/// Server tuning. Every field bounds a resource.
#[derive(Debug, Clone)]
pub struct Config {
    /// Requests in flight per connection (decoded and not yet answered).
    pub max_in_flight: usize,
    /// READ and WRITE bytes in flight per connection, counted from decode until the reply
    /// has been written. Must be at least [`crate::codec::MAX_BLOCK`] (smaller values
    /// are raised to it) so that one maximal request always fits.
    pub max_in_flight_bytes: usize,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long a client may take to finish the handshake.
    pub handshake_timeout: Duration,
    /// After shutdown is requested, how long connections get to answer the requests
    /// they already read before they are dropped.
    pub shutdown_grace: Duration,
    /// Runtimes to serve connections on, dealt in turn (each connection wholly on one);
    /// empty: the runtime `serve_with` runs on.
    pub runtimes: Vec<tokio::runtime::Handle>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_in_flight: 64,
            max_in_flight_bytes: 64 << 20,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            runtimes: Vec::new(),
        }
    }
}

/// Why a connection ended abnormally. Returned by [`serve_connection`]; [`serve`] logs it.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Reading or writing the socket failed.
    #[error("socket error")]
    Io(#[from] io::Error),
    /// The client sent bytes that break the protocol.
    #[error("malformed frame from client")]
    Decode(#[from] DecodeError),
    /// The stream ended in the middle of a frame.
    #[error("connection closed mid-frame")]
    Truncated,
    /// The client flags have bits this server does not know.
    #[error("unknown client flags {0:#x}")]
    UnknownClientFlags(u32),
    /// `NBD_OPT_EXPORT_NAME` carried an invalid name; that option cannot be refused
    /// gracefully, so the connection is closed.
    #[error("invalid NBD_OPT_EXPORT_NAME")]
    BadExportName(#[source] OptionError),
    /// `NBD_OPT_EXPORT_NAME` named an export that could not be opened; closed likewise.
    #[error("NBD_OPT_EXPORT_NAME refused")]
    ExportRefused(#[source] ExportError),
    /// The client did not finish the handshake within [`Config::handshake_timeout`].
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// In-flight requests did not finish within [`Config::shutdown_grace`].
    #[error("dropped at shutdown with requests in flight")]
    ShutdownTimeout,
}

/// Serves NBD on `listener` with [`Config::default`] until `cancel` fires, then waits for
/// the connections to wind down (see [`serve_with`]).
pub async fn serve<E: Exports>(listener: TcpListener, exports: Arc<E>, cancel: CancellationToken) {
    serve_with(listener, exports, Config::default(), cancel).await;
}

/// Serves NBD on `listener` until `cancel` fires. Then it stops accepting, lets every
/// connection answer the requests it has read (up to [`Config::shutdown_grace`]) and
/// returns when all connections are closed.
pub async fn serve_with<E: Exports>(
    listener: TcpListener,
    exports: Arc<E>,
    config: Config,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut dealt = 0usize;
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                // The socket moves to the reactor of the runtime that serves it.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = &e as &dyn std::error::Error, "cannot hand the connection over");
                        continue;
                    }
                };
                let runtime = match config.runtimes.len() {
                    0 => tokio::runtime::Handle::current(),
                    n => config
                        .runtimes
                        .get(dealt % n)
                        .cloned()
                        .unwrap_or_else(tokio::runtime::Handle::current),
                };
                dealt = dealt.wrapping_add(1);
                let served = serve_accepted(
                    stream,
                    Arc::clone(&exports),
                    config.clone(),
                    cancel.child_token(),
                    permit,
                );
                tracker.spawn_on(
                    served.instrument(tracing::debug_span!("nbd_conn", %peer)),
                    &runtime,
                );
            }
            Err(e) => {
                // Usually transient (EMFILE, ECONNABORTED): back off a little.
                tracing::warn!(error = &e as &dyn std::error::Error, "accept failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Serves a connection [`serve_with`] accepted, on the runtime this runs on, and logs how
/// it ended; `_permit` is its connection slot.
async fn serve_accepted<E: Exports>(
    stream: std::net::TcpStream,
    exports: Arc<E>,
    config: Config,
    cancel: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let r = match TcpStream::from_std(stream) {
        Ok(stream) => serve_connection(stream, exports, &config, cancel).await,
        Err(e) => Err(ConnError::Io(e)),
    };
    match r {
        Ok(()) => tracing::debug!("connection closed"),
        Err(e) => tracing::info!(error = &e as &dyn std::error::Error, "connection closed"),
    }
}

/// Serves one accepted connection: handshake, then transmission until the client
/// disconnects or `cancel` fires (then requests already read are answered first, within
/// [`Config::shutdown_grace`]).
pub async fn serve_connection<E: Exports>(
    stream: TcpStream,
    exports: Arc<E>,
    config: &Config,
    cancel: CancellationToken,
) -> Result<(), ConnError> {
    // Small replies must not wait for Nagle; batching is done by the reply writer.
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let mut rd = FrameReader::new(rd);
    let negotiated = tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        r = tokio::time::timeout(
            config.handshake_timeout,
            handshake::negotiate(&mut rd, &mut wr, exports.as_ref()),
        ) => r.map_err(|_| ConnError::HandshakeTimeout)??,
    };
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    tracing::debug!(export = %negotiated.name, structured = negotiated.structured, "transmission");
    let grace = async {
        cancel.cancelled().await;
        tokio::time::sleep(config.shutdown_grace).await;
    };
    tokio::select! {
        r = transmission::run(rd, wr, negotiated, config, cancel.clone()) => r,
        () = grace => Err(ConnError::ShutdownTimeout),
    }
}

/// The export a handshake settled on.
pub(crate) struct Negotiated {
    /// The device.
    pub dev: Arc<dyn BlockDev>,
    /// The name the client asked for.
    pub name: String,
    /// Its size, read once at negotiation.
    pub size: u64,
    /// Its read-only flag, read once at negotiation.
    pub read_only: bool,
    /// `NBD_OPT_STRUCTURED_REPLY` was acknowledged.
    pub structured: bool,
}

/// Reads whole frames off a socket through a pure decoder.
pub(crate) struct FrameReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

/// Read-buffer headroom kept before each socket read.
const READ_CHUNK: usize = 64 << 10;

impl FrameReader {
    fn new(rd: OwnedReadHalf) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// The next frame; `Ok(None)` on a clean end of stream between frames.
    pub(crate) async fn next<T>(
        &mut self,
        mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) -> Result<Option<T>, ConnError> {
        loop {
            if let Some(frame) = decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnError::Truncated)
                };
            }
        }
    }
}
