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
