//! The sheepdog-rs integration suite: real `sheep` daemons on loopback ports, driven by the
//! real `dog` and by raw protocol sockets. Build the binaries first:
//! `cargo build --workspace --bins && cargo nextest run -p it`.

// This whole crate is test code: a panic is how a test fails, and the lengths it casts are
// its own small constants. The workspace denies these lints for non-test code (STYLE habit 3);
// clippy.toml's `allow-*-in-tests` does not reach helper functions outside `#[test]`.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod admission;
mod alter_copy;
mod bad_input;
mod cluster;
mod common;
mod concurrency;
mod docs;
mod dog_attr;
mod dog_cli;
mod dog_json;
mod dog_track_resize;
mod dog_ux;
mod ec;
mod fanout;
mod format;
mod full_stop;
mod harness;
mod hostile;
mod lifecycle;
mod limits;
mod locks;
mod metrics;
mod nbd;
mod operations;
mod partial;
mod partition;
mod powerloss;
mod restart;
mod scrub;
mod thrash;
mod tidy;
mod unclean;
mod vdi_check;
mod writeback;
