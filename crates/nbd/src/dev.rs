//! What the server serves: the [`BlockDev`] trait one export implements, its
//! [`BlockError`], and the [`Exports`] catalogue that resolves export names.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::codec::{Errno, RepError};

/// A boxed error from a device or catalogue backend, kept as the `#[source]`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a block operation failed. Each variant is one NBD error value, chosen in
/// [`BlockError::errno`] (the only mapping to the wire).
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The backend failed; the client sees `EIO`.
    #[error("I/O error")]
    Io(#[source] BoxError),
    /// The request is invalid (bad flags, unknown command, read past the end, a READ or
    /// WRITE above the maximum block size); `EINVAL`.
    #[error("invalid request")]
    Invalid,
    /// A write past the end of the export, or the backend is out of space; `ENOSPC`.
    #[error("no space left on the export")]
    NoSpace,
    /// A write to a read-only export; `EPERM`.
    #[error("export is read-only")]
    ReadOnly,
    /// The server or its backend is shutting down; `ESHUTDOWN` (the client then
    /// disconnects).
    #[error("server is shutting down")]
    Shutdown,
    /// The backend does not support the operation; `ENOTSUP`.
    #[error("operation not supported")]
    NotSupported,
}

impl BlockError {
    /// Wraps a backend error as [`BlockError::Io`].
    pub fn io(source: impl Into<BoxError>) -> BlockError {
        BlockError::Io(source.into())
    }

    /// The NBD error value sent to the client.
    pub fn errno(&self) -> Errno {
        match self {
            BlockError::Io(_) => Errno::EIO,
            BlockError::Invalid => Errno::EINVAL,
            BlockError::NoSpace => Errno::ENOSPC,
            BlockError::ReadOnly => Errno::EPERM,
            BlockError::Shutdown => Errno::ESHUTDOWN,
            BlockError::NotSupported => Errno::ENOTSUP,
        }
    }
}

/// One exported block device, shared by every connection to the export.
///
/// The server checks every request against [`BlockDev::size`], the maximum block size
/// and [`BlockDev::read_only`] before calling the device, so implementations see only
/// in-range, non-empty requests (`offset + len <= size`, `len > 0`), READ and WRITE at
/// most [`crate::codec::MAX_BLOCK`] bytes. Requests from one or many connections run
/// concurrently; overlapping concurrent requests may complete in any order (as on a disk).
///
/// **Invariant** (what makes `NBD_FLAG_CAN_MULTI_CONN` true): durability is per export, not
/// per connection. [`BlockDev::flush`] makes durable every write, trim and write-zeroes
/// that completed (returned `Ok`) before `flush` was called, whichever connection issued
/// it; a write with `fua` is durable when it returns.
pub trait BlockDev: Send + Sync + 'static {
    /// Size in bytes. Read at connection setup; a change is seen by new connections.
    fn size(&self) -> u64;

    /// True if writes must be refused; the server then advertises `NBD_FLAG_READ_ONLY`
    /// and answers WRITE, TRIM and WRITE_ZEROES with `EPERM` without calling the device.
    fn read_only(&self) -> bool;

    /// A human-readable description for `NBD_INFO_DESCRIPTION`, if any.
    fn description(&self) -> Option<String> {
        None
    }

    /// Reads exactly `len` bytes at `offset`. A result of another length is a device
    /// bug; the server answers it with `EIO`.
    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes, BlockError>>;

    /// Writes `data` at `offset`; with `fua` the data must be durable before returning.
    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, Result<(), BlockError>>;

    /// Makes every write completed before this call durable (see the trait invariant).
    fn flush(&self) -> BoxFuture<'_, Result<(), BlockError>>;

    /// Discards `len` bytes at `offset`: afterwards their content is unspecified until
    /// written again (reading zeroes is a valid outcome, as is keeping the old data).
    fn trim(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<(), BlockError>>;

    /// Makes `len` bytes at `offset` read as zeroes. With `no_hole` the range must stay
    /// allocated (no hole punched); without it the device may deallocate.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        no_hole: bool,
    ) -> BoxFuture<'_, Result<(), BlockError>>;
}

/// Why an export name could not be resolved. Mapped to the option reply in
/// [`ExportError::rep_error`].
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No export has that name; `NBD_REP_ERR_UNKNOWN`.
    #[error("no such export")]
    NotFound,
    /// The export exists but this client may not use it (or listing is disabled);
    /// `NBD_REP_ERR_POLICY`.
    #[error("access to the export is denied")]
    Denied,
    /// The lookup itself failed (for instance the cluster is unreachable);
    /// `NBD_REP_ERR_SHUTDOWN`, which tells the client to disconnect and retry later.
    #[error("export lookup failed")]
    Unavailable(#[source] BoxError),
}

impl ExportError {
    /// The option-reply error sent to the client.
    pub fn rep_error(&self) -> RepError {
        match self {
            ExportError::NotFound => RepError::Unknown,
            ExportError::Denied => RepError::Policy,
            ExportError::Unavailable(_) => RepError::Shutdown,
        }
    }
}

/// The export catalogue the server consults during the handshake. The server never
/// caches a result: each `NBD_OPT_GO` / `NBD_OPT_INFO` / `NBD_OPT_EXPORT_NAME` asks anew.
pub trait Exports: Send + Sync + 'static {
    /// Resolves an export name (empty: the default export, if the catalogue has one).
    fn lookup<'a>(&'a self, name: &'a str)
    -> BoxFuture<'a, Result<Arc<dyn BlockDev>, ExportError>>;

    /// The export names to answer `NBD_OPT_LIST` with.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExportError>>;
}
