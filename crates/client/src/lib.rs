//! Async (tokio) client for the Sheepdog 1.0 wire protocol.
//!
//! [`Connection`] owns one stream and runs one request at a time: it assigns a fresh
//! request id, writes the header and payload with a single vectored write, and reads the
//! response through [`sd_proto::ResponseDecoder`] bounded by what the request allows the
//! server to send back. The typed helpers in [`ops`] (one `impl` block, one method per
//! operation) turn a non-SUCCESS result into [`ClientError::Result`], distinct from I/O
//! and framing errors.
//!
//! [`MuxConnection`] pipelines many requests on one stream (answers matched by id); sheep
//! use it to talk to each other.
//!
//! Used by `dog`, the sheep peers and the test harness.

#![forbid(unsafe_code)]

mod bitmap;
mod connection;
mod error;
mod mux;
pub mod ops;

pub use bitmap::VdiBitmap;
pub use connection::Connection;
pub use error::ClientError;
pub use mux::MuxConnection;
pub use ops::{ClusterStat, MakeFs, NewVdi, WriteOpts};
