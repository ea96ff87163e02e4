//! NBD (Network Block Device) front end for sheepdog-rs: a pure fixed-newstyle codec
//! ([`codec`]) and a tokio server ([`server`]) generic over a [`BlockDev`] trait.
//!
//! The daemon supplies an [`Exports`] catalogue that resolves export names (VDI names,
//! `NAME@TAG`, ...) to [`BlockDev`]s; this crate owns the protocol: the handshake
//! (`NBD_OPT_GO`/`INFO`/`LIST`/`EXPORT_NAME`/`STRUCTURED_REPLY`), request validation,
//! concurrency limits, reply ordering and the mapping of [`BlockError`] to NBD errors.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn demo(exports: Arc<impl sd_nbd::Exports>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:10809").await?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! sd_nbd::serve(listener, exports, cancel).await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod codec;
mod dev;
pub mod server;

pub use dev::{BlockDev, BlockError, BoxError, ExportError, Exports};
pub use server::{Config, ConnError, serve, serve_connection, serve_with};
