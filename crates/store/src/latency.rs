//! The store's durable small-write latency, measured on a scratch file: what a client's
//! 4 KiB write costs on this disk when nothing else uses it. Background work (recovery)
//! compares the latency clients see against it to know when it is in their way.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::store::Store;

/// Writes timed; the median is the answer.
const SAMPLES: usize = 15;
const BLOCK: usize = 4096;

impl Store {
    /// The median time of a durable (`O_DSYNC`) 4 KiB overwrite in this store's file
    /// system, over a few writes to a preallocated scratch file (`DIR/.latency-probe`,
    /// removed after).
    pub fn durable_write_latency(&self) -> Result<Duration, StoreError> {
        let path = self.dir.join(".latency-probe");
        let io = |op, e| StoreError::io(op, &path, e);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io("create", e))?;
        let block = [0x5au8; BLOCK];
        let span = (SAMPLES * BLOCK) as u64;
        for at in (0..span).step_by(BLOCK) {
            file.write_all_at(&block, at).map_err(|e| io("pwrite", e))?;
        }
        file.sync_all().map_err(|e| io("fsync", e))?;
        drop(file);
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(i32::try_from(rustix::fs::OFlags::DSYNC.bits()).unwrap_or(0))
            .open(&path)
            .map_err(|e| io("open", e))?;
        let mut took = Vec::with_capacity(SAMPLES);
        for at in (0..span).step_by(BLOCK) {
            let started = Instant::now();
            file.write_all_at(&block, at).map_err(|e| io("pwrite", e))?;
            took.push(started.elapsed());
        }
        drop(file);
        fs::remove_file(&path).map_err(|e| io("unlink", e))?;
        took.sort();
        Ok(took.get(SAMPLES / 2).copied().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreConfig, SyncMode};

    #[test]
    fn the_probe_measures_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig {
            dir: dir.path().to_path_buf(),
            sync: SyncMode::Writethrough,
        })
        .unwrap();
        let took = store.durable_write_latency().unwrap();
        assert!(took > std::time::Duration::ZERO);
        assert!(!dir.path().join(".latency-probe").exists());
        assert!(store.list().unwrap().is_empty());
    }
}
