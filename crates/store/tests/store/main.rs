//! Integration tests of `sd_store` (one binary): object I/O, crash recovery, the
//! in-memory model check and metadata files.

// Test code: indices and casts are on sizes the tests themselves chose.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod crash;
mod io;
mod meta;
mod model;
mod strip;
mod writeback;

use std::path::Path;

use sd_proto::Oid;
use sd_store::{CreateSpec, Store, StoreConfig, SyncMode};
use tempfile::TempDir;

/// A fresh store in a new temporary directory (kept alive by the returned `TempDir`).
fn new_store(sync: SyncMode) -> (TempDir, Store) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open_at(tmp.path(), sync);
    (tmp, store)
}

fn open_at(dir: &Path, sync: SyncMode) -> Store {
    Store::open(StoreConfig {
        dir: dir.to_path_buf(),
        sync,
    })
    .expect("open store")
}

/// The bytes written to `oid` at `offset` in generation `generation`: every byte
/// depends on all three, so misplaced or stale data shows up.
fn pattern(oid: Oid, offset: u64, generation: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = oid
                .get()
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(offset.wrapping_add(i).wrapping_mul(0xbf58_476d_1ce4_e5b9))
                .wrapping_add(generation.wrapping_mul(0x94d0_49bb_1331_11eb));
            (x ^ (x >> 29) ^ (x >> 47)) as u8
        })
        .collect()
}

fn sparse(size: u64) -> CreateSpec {
    CreateSpec { size, sparse: true }
}

fn prealloc(size: u64) -> CreateSpec {
    CreateSpec {
        size,
        sparse: false,
    }
}

/// Reads `len` bytes of `oid` at `offset`.
fn read_vec(store: &Store, oid: Oid, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xEE; len];
    store.read(oid, offset, &mut buf).expect("read");
    buf
}

/// The whole object, read back through the store.
fn read_all(store: &Store, oid: Oid) -> Vec<u8> {
    let size = store.object_size(oid).expect("object_size");
    read_vec(store, oid, 0, usize::try_from(size).expect("small object"))
}
