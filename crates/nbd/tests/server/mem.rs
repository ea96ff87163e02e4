//! Test-only devices and catalogue: an in-memory `BlockDev` that records what it was asked
//! to do (flushes, FUA writes, ...) and can hold reads at one offset until released.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use sd_nbd::{BlockDev, BlockError, ExportError, Exports};
use tokio::sync::Semaphore;

/// Operation counters.
#[derive(Debug, Default)]
pub struct Counts {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub fua_writes: AtomicU64,
    pub flushes: AtomicU64,
    pub trims: AtomicU64,
    pub zeroes: AtomicU64,
}

/// An in-memory block device.
pub struct MemDev {
    data: Mutex<Vec<u8>>,
    read_only: bool,
    pub counts: Counts,
    /// Reads at this offset wait for a permit on `gate_permits`.
    gate: Option<u64>,
    pub gate_permits: Semaphore,
}

impl MemDev {
    pub fn new(size: usize) -> Arc<MemDev> {
        Arc::new(Self::build(vec![0; size], false, None))
    }

    pub fn read_only(content: Vec<u8>) -> Arc<MemDev> {
        Arc::new(Self::build(content, true, None))
    }

    /// Reads at `offset` block until `gate_permits` gets a permit.
    pub fn gated(size: usize, offset: u64) -> Arc<MemDev> {
        Arc::new(Self::build(vec![0; size], false, Some(offset)))
    }

    fn build(data: Vec<u8>, read_only: bool, gate: Option<u64>) -> MemDev {
        MemDev {
            data: Mutex::new(data),
            read_only,
            counts: Counts::default(),
            gate,
            gate_permits: Semaphore::new(0),
        }
    }

    /// A copy of `len` bytes at `offset`.
    pub fn snapshot(&self, offset: usize, len: usize) -> Vec<u8> {
        let data = self.data.lock().expect("lock");
        data[offset..offset + len].to_vec()
    }

    /// Fills the device with `pattern(i)` for each byte index `i`.
    pub fn fill(&self, pattern: impl Fn(usize) -> u8) {
        let mut data = self.data.lock().expect("lock");
        for (i, b) in data.iter_mut().enumerate() {
            *b = pattern(i);
        }
    }

    fn range(&self, offset: u64, len: u32) -> std::ops::Range<usize> {
        let start = usize::try_from(offset).expect("offset");
        start..start + usize::try_from(len).expect("len")
    }
}

impl BlockDev for MemDev {
    fn size(&self) -> u64 {
        self.data.lock().expect("lock").len() as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn description(&self) -> Option<String> {
        Some("in-memory test device".into())
    }

    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes, BlockError>> {
        Box::pin(async move {
            if self.gate == Some(offset) {
                self.gate_permits
                    .acquire()
                    .await
                    .map_err(BlockError::io)?
                    .forget();
            }
            self.counts.reads.fetch_add(1, Ordering::Relaxed);
            let data = self.data.lock().expect("lock");
            Ok(Bytes::copy_from_slice(&data[self.range(offset, len)]))
        })
    }

    fn write(&self, offset: u64, buf: Bytes, fua: bool) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(async move {
            self.counts.writes.fetch_add(1, Ordering::Relaxed);
            if fua {
                self.counts.fua_writes.fetch_add(1, Ordering::Relaxed);
            }
            let len = u32::try_from(buf.len()).expect("len");
            let mut data = self.data.lock().expect("lock");
            data[self.range(offset, len)].copy_from_slice(&buf);
            Ok(())
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(async move {
            self.counts.flushes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }

    fn trim(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(async move {
            self.counts.trims.fetch_add(1, Ordering::Relaxed);
            let mut data = self.data.lock().expect("lock");
            data[self.range(offset, len)].fill(0);
            Ok(())
        })
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        _no_hole: bool,
    ) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(async move {
            self.counts.zeroes.fetch_add(1, Ordering::Relaxed);
            let mut data = self.data.lock().expect("lock");
            data[self.range(offset, len)].fill(0);
            Ok(())
        })
    }
}

/// A fixed name → device map.
#[derive(Default)]
pub struct MemExports {
    pub devs: BTreeMap<String, Arc<MemDev>>,
}

impl MemExports {
    pub fn with(mut self, name: &str, dev: Arc<MemDev>) -> Self {
        self.devs.insert(name.to_owned(), dev);
        self
    }
}

impl Exports for MemExports {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn BlockDev>, ExportError>> {
        Box::pin(async move {
            match self.devs.get(name) {
                Some(dev) => Ok(Arc::clone(dev) as Arc<dyn BlockDev>),
                None => Err(ExportError::NotFound),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExportError>> {
        Box::pin(async move { Ok(self.devs.keys().cloned().collect()) })
    }
}
