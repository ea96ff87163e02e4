//! The client's error type: one variant per decision a caller has to make.

use std::io;
use std::net::SocketAddr;

use sd_proto::{DecodeError, SdResult};

/// Why a call did not produce a successful response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be established.
    #[error("failed to connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the stream before a complete response arrived.
    #[error("connection closed by peer")]
    Closed,
    /// The response could not be framed or decoded (e.g. it announced more payload than
    /// the request allows).
    #[error("bad response: {0}")]
    Decode(#[from] DecodeError),
    /// The response carried another request's id.
    #[error("response id {received} does not match request id {sent}")]
    IdMismatch {
        /// Id of the request we sent.
        sent: u32,
        /// Id the response carried.
        received: u32,
    },
    /// Caller bug: a WRITE request whose payload length differs from `data_length`.
    #[error("payload of {payload} bytes does not match data_length {header}")]
    PayloadLength {
        /// `data_length` from the header.
        header: u32,
        /// Actual payload length.
        payload: usize,
    },
    /// A request does not fit the protocol's 32-bit lengths.
    #[error("request too large: {what}")]
    TooLarge {
        /// Which length overflowed.
        what: &'static str,
    },
    /// An earlier call failed or was cancelled mid-frame; the stream is out of sync.
    #[error("connection is broken by an earlier failed call")]
    Broken,
    /// A pipelined connection died while this request was in flight (see
    /// [`crate::MuxConnection`]); the source is why it died.
    #[error("connection lost")]
    Lost(#[source] std::sync::Arc<ClientError>),
    /// The server answered with a non-SUCCESS result.
    #[error("{0}")]
    Result(SdResult),
}

impl ClientError {
    /// The server's result code, if that is what failed.
    pub fn result(&self) -> Option<SdResult> {
        match self {
            ClientError::Result(r) => Some(*r),
            _ => None,
        }
    }

    /// True when the failure is about the transport (no server verdict was received).
    pub fn is_transport(&self) -> bool {
        !matches!(
            self,
            ClientError::Result(_)
                | ClientError::PayloadLength { .. }
                | ClientError::TooLarge { .. }
        )
    }
}
