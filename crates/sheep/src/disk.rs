//! Where the async daemon meets the disk: store calls block their thread (file I/O,
//! fdatasync), so every store call of a running node runs through here, on tokio's blocking
//! pool, off the threads that serve sockets (start-up's loading, and the local cluster
//! driver's own files, block before any socket is served or in the driver).
//!
//! The exception is I/O the page cache serves without waiting ([`read`], [`write`]): a
//! cached read, and a writeback write of whole pages into an open object, run on the
//! calling thread, since handing them to another thread and back costs several times the
//! syscall itself; the rest of those calls goes to the blocking pool as everything else.

use std::sync::Arc;

use bytes::Bytes;
use sd_proto::Oid;
use sd_store::{Store, StoreError};

use crate::error::SheepResult;

/// The most bytes a store call copies on the calling thread: a larger copy would hold up
/// every other connection of the shard for longer than a hand-off to the blocking pool
/// costs.
const INLINE_MAX: usize = 256 << 10;

/// Runs the blocking store call `f` off the async threads.
pub async fn blocking<T, F>(f: F) -> SheepResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, sd_store::StoreError> + Send + 'static,
{
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Reads `len` bytes of the local copy of `oid` at `offset`: from the page cache on this
/// thread when it holds them all, else on the blocking pool. The buffer is bounded by the
/// object, never by what the caller asks for.
pub async fn read(store: &Arc<Store>, oid: Oid, offset: u64, len: u32) -> SheepResult<Bytes> {
    let inline = usize::try_from(len).is_ok_and(|l| l <= INLINE_MAX);
    let len = u64::from(len);
    if inline && let Some(r) = store.read_cached(oid, offset, len) {
        return Ok(Bytes::from(r?));
    }
    let store = store.clone();
    let data = blocking(move || {
        let size = store.object_size(oid)?;
        let out_of_bounds = StoreError::OutOfBounds {
            oid,
            offset,
            len,
            size,
        };
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(out_of_bounds);
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| out_of_bounds)?];
        store.read(oid, offset, &mut buf)?;
        Ok(buf)
    })
    .await?;
    Ok(Bytes::from(data))
}

/// Writes `data` into the local copy of `oid` at `offset` and marks the copy as written in
/// epoch `version`. `durable`: on stable storage before returning, in writeback mode too.
/// A writeback write the page cache takes at once is done on this thread.
pub async fn write(
    store: &Arc<Store>,
    oid: Oid,
    offset: u64,
    data: Bytes,
    durable: bool,
    version: u32,
) -> SheepResult<()> {
    if !durable
        && data.len() <= INLINE_MAX
        && let Some(r) = store.write_cached(oid, offset, &data, version)
    {
        return Ok(r?);
    }
    let store = store.clone();
    blocking(move || {
        if durable {
            store.write_durable(oid, offset, &data)?;
        } else {
            store.write(oid, offset, &data)?;
        }
        store.set_version(oid, version)
    })
    .await
}

/// Bytes read at a time while hashing a copy.
const HASH_CHUNK: usize = 1 << 20;

/// The SHA-1 of the whole local copy of `oid` (every byte of the file, holes read as
/// zeros), read in chunks on the blocking pool; `NoObject` if there is none.
pub async fn hash(store: &Arc<Store>, oid: Oid) -> SheepResult<[u8; 20]> {
    use sha1::{Digest, Sha1};
    let store = store.clone();
    blocking(move || {
        // The file as it is now: an open descriptor outlives a file removed under the store.
        if !store.exists(oid) {
            return Err(StoreError::NoObject(oid));
        }
        let size = store.object_size(oid)?;
        let mut hasher = Sha1::new();
        let mut buf = vec![0u8; HASH_CHUNK.min(usize::try_from(size).unwrap_or(HASH_CHUNK))];
        let mut offset = 0u64;
        while offset < size {
            // Only the last chunk is shorter.
            let left = usize::try_from(size - offset).unwrap_or(usize::MAX);
            buf.truncate(left);
            store.read(oid, offset, &mut buf)?;
            hasher.update(&buf);
            offset += buf.len() as u64;
        }
        Ok::<_, StoreError>(hasher.finalize().into())
    })
    .await
}
