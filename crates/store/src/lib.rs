//! The object store of one sheep: each object is a file `DIR/obj/<oid>`, plus atomic metadata files.
//!
//! Bird's-eye view: the daemon calls [`Store`] from blocking threads, except the calls of
//! `cached_io` that never wait for the disk; the store knows nothing of the network, of
//! VDIs or of epochs.
//!
//! **Invariant:** an object's path is derived only from its [`Oid`](sd_proto::Oid)
//! (16 lowercase hex digits under `DIR/obj`), and nothing is ever written outside `DIR`.
//!
//! **Invariant:** an object appears under its real name only complete: creation writes a
//! temporary file, fsyncs it, renames it into place and fsyncs the directory.
//!
//! **Boundary:** the on-disk layout is spec/sheepdog-protocol.md §12.

#![forbid(unsafe_code)]

mod admin;
mod cached_io;
mod direct;
mod error;
mod fdcache;
mod latency;
pub mod meta;
mod names;
mod object_io;
mod partial;
mod store;
mod strip;
mod version;
mod writeback;

pub use error::StoreError;
pub use partial::PARTIAL_ALIGN;
pub use store::{CreateSpec, Store, StoreConfig, StoreSpace, SyncMode};
pub use strip::{MAX_STRIP_INDEX, PendingWrite, StripId, StripLogState, StripWrite};
pub use writeback::FlushOutcome;
