//! Where the async daemon meets the disk: store calls block their thread (file I/O,
//! fdatasync), so every store call of a running node runs through here, on tokio's blocking
//! pool, off the threads that serve sockets (start-up's loading, and the local cluster
//! driver's own files, block before any socket is served or in the driver).

use crate::error::SheepResult;

/// Runs the blocking store call `f` off the async threads.
pub async fn blocking<T, F>(f: F) -> SheepResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, sd_store::StoreError> + Send + 'static,
{
    Ok(tokio::task::spawn_blocking(f).await??)
}
