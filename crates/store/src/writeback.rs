//! Writeback dirty tracking and targeted flush.
//!
//! In writeback mode an object write lands in the page cache and the object is recorded as
//! dirty under its VDI (the vid bits of its oid). [`Store::flush_vid`] makes exactly that
//! VDI's dirty objects durable: `fdatasync` of each (in parallel, bounded), and an fsync of
//! `DIR/obj` if entries changed. Concurrent flushes of one VDI share work: each records the
//! write generation it must reach and waits for a flush already covering it.
//!
//! **Invariant:** a flush that returns `Ok` covers every write recorded before it began.
//! A failed `fdatasync` poisons the copy (Linux may have dropped the dirty pages): the file
//! is moved aside, and every flush of that VDI fails until the object is created again
//! (re-replicated from a healthy copy).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sd_proto::Oid;

use crate::error::StoreError;
use crate::names;
use crate::store::Store;

/// Most object files synced at once by one flush.
const SYNC_PARALLEL: usize = 8;
/// Where poisoned copies are moved, inside `DIR/obj`.
pub(crate) const QUARANTINE_DIR: &str = ".quarantine";

#[derive(Debug, Default)]
struct VdiDirty {
    /// Dirty objects and the bytes written to each since its last sync.
    objects: HashMap<Oid, u64>,
    /// When the oldest unsynced write was recorded.
    since: Option<Instant>,
    /// Writes recorded so far.
    generation: u64,
    /// Every write up to this generation is durable.
    synced: u64,
    /// A flush is running.
    flushing: bool,
    /// Copies lost to a failed sync, not yet created again.
    lost: HashSet<Oid>,
}

/// Dirty state of the whole store.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    vdis: Mutex<HashMap<u32, VdiDirty>>,
    done: Condvar,
    /// Injected sync failures (tests): the next sync of these objects fails with EIO.
    #[cfg(feature = "failpoints")]
    fail_next_sync: Mutex<HashSet<Oid>>,
}

/// What a flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushOutcome {
    /// Object files this call synced itself (0 when another flush covered it).
    pub synced: usize,
}

fn vid_key(oid: Oid) -> u32 {
    oid.vid().get()
}

impl Dirty {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, VdiDirty>> {
        self.vdis.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store {
    /// Records a writeback write of `len` bytes to `oid`.
    pub(crate) fn mark_dirty(&self, oid: Oid, len: u64) {
        let mut vdis = self.dirty.lock();
        let v = vdis.entry(vid_key(oid)).or_default();
        *v.objects.entry(oid).or_default() += len;
        v.generation += 1;
        v.since.get_or_insert_with(Instant::now);
        self.dirty_bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// `oid` was created afresh, durably: it is neither dirty nor lost any more.
    pub(crate) fn mark_clean(&self, oid: Oid) {
        let mut vdis = self.dirty.lock();
        if let Some(v) = vdis.get_mut(&vid_key(oid)) {
            if let Some(bytes) = v.objects.remove(&oid) {
                self.dirty_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
            v.lost.remove(&oid);
        }
    }

    /// Bytes written in writeback mode and not yet synced.
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes.load(Ordering::Relaxed)
    }

    /// Dirty objects of VDI `vid`.
    pub fn dirty_objects(&self, vid: u32) -> usize {
        self.dirty.lock().get(&vid).map_or(0, |v| v.objects.len())
    }

    /// Copies of VDI `vid` lost to a failed sync and not yet created again.
    pub fn lost_objects(&self, vid: u32) -> usize {
        self.dirty.lock().get(&vid).map_or(0, |v| v.lost.len())
    }

    /// VDIs whose oldest unsynced write is older than `age`, oldest first.
    pub fn dirty_vids_older_than(&self, age: Duration) -> Vec<u32> {
        let vdis = self.dirty.lock();
        let mut out: Vec<(Instant, u32)> = vdis
            .iter()
            .filter_map(|(vid, v)| v.since.filter(|s| s.elapsed() >= age).map(|s| (s, *vid)))
            .collect();
        out.sort_unstable();
        out.into_iter().map(|(_, vid)| vid).collect()
    }

    /// Makes one more sync of `oid` fail with EIO (fault injection for tests; only with
    /// the `failpoints` feature, never in a production build).
    #[cfg(feature = "failpoints")]
    pub fn inject_sync_failure(&self, oid: Oid) {
        self.dirty
            .fail_next_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(oid);
    }

    /// Makes every write to VDI `vid` recorded before this call durable (see the module
    /// docs). [`StoreError::SyncFailed`] if a copy could not be synced, or is still lost
    /// from an earlier failure.
    pub fn flush_vid(&self, vid: u32) -> Result<FlushOutcome, StoreError> {
        let mut vdis = self.dirty.lock();
        let target = vdis.get(&vid).map_or(0, |v| v.generation);
        loop {
            let Some(v) = vdis.get_mut(&vid) else {
                return self.sync_dir_if_needed().map(|()| FlushOutcome::default());
            };
            if !v.lost.is_empty() {
                return Err(StoreError::SyncFailed {
                    oids: v.lost.iter().copied().collect(),
                });
            }
            if v.synced >= target {
                drop(vdis);
                return self.sync_dir_if_needed().map(|()| FlushOutcome::default());
            }
            if v.flushing {
                vdis = self
                    .dirty
                    .done
                    .wait(vdis)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            v.flushing = true;
            let batch: Vec<(Oid, u64)> = v.objects.drain().collect();
            let batch_gen = v.generation;
            v.since = None;
            drop(vdis);

            let failed = self.sync_objects(&batch);
            let dir = self.sync_dir_if_needed();
            let bytes: u64 = batch.iter().map(|(_, b)| *b).sum();
            self.dirty_bytes.fetch_sub(bytes, Ordering::Relaxed);

            vdis = self.dirty.lock();
            let v = vdis.entry(vid).or_default();
            v.flushing = false;
            if failed.is_empty() && dir.is_ok() {
                v.synced = batch_gen;
            } else {
                v.lost.extend(failed.iter().copied());
            }
            self.dirty.done.notify_all();
            if !failed.is_empty() {
                return Err(StoreError::SyncFailed { oids: failed });
            }
            dir?;
            if batch_gen >= target {
                return Ok(FlushOutcome {
                    synced: batch.len(),
                });
            }
        }
    }

    /// `syncfs` of the store's file system (the 2012 design, kept for comparison); all
    /// dirty state is then clean.
    pub fn syncfs(&self) -> Result<(), StoreError> {
        let mut vdis = self.dirty.lock();
        let marks: Vec<(u32, u64)> = vdis.iter().map(|(k, v)| (*k, v.generation)).collect();
        for v in vdis.values_mut() {
            v.objects.clear();
            v.since = None;
        }
        self.dirty_bytes.store(0, Ordering::Relaxed);
        drop(vdis);
        rustix::fs::syncfs(&self.obj_dir_handle)
            .map_err(|e| StoreError::io("syncfs", &self.obj_dir, e.into()))?;
        self.dir_dirty.store(false, Ordering::SeqCst);
        let mut vdis = self.dirty.lock();
        for (k, g) in marks {
            if let Some(v) = vdis.get_mut(&k) {
                v.synced = v.synced.max(g);
            }
        }
        Ok(())
    }

    fn sync_dir_if_needed(&self) -> Result<(), StoreError> {
        if self.dir_needs_sync() {
            self.sync_dir()
        } else {
            Ok(())
        }
    }

    /// fdatasyncs `batch` with bounded parallelism; returns the objects whose sync failed
    /// (they are moved aside).
    fn sync_objects(&self, batch: &[(Oid, u64)]) -> Vec<Oid> {
        let mut failed = Vec::new();
        // One dirty object (a client flushing after each write): sync it right here; a
        // thread per flush costs more than the fdatasync of one page.
        if let [(oid, _)] = batch {
            match self.sync_one(*oid) {
                Ok(()) | Err(StoreError::NoObject(_)) => {}
                Err(e) => {
                    tracing::error!(%oid, error = %e, "fdatasync failed: the copy is lost");
                    if let Err(e) = self.quarantine(*oid) {
                        tracing::error!(%oid, error = %e, "moving the lost copy aside failed");
                    }
                    failed.push(*oid);
                }
            }
            return failed;
        }
        for chunk in batch.chunks(SYNC_PARALLEL) {
            let results: Vec<(Oid, Result<(), StoreError>)> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(oid, _)| (*oid, s.spawn(|| self.sync_one(*oid))))
                    .collect();
                handles
                    .into_iter()
                    .map(|(oid, h)| {
                        let r = h
                            .join()
                            .unwrap_or_else(|_| Err(StoreError::SyncFailed { oids: vec![oid] }));
                        (oid, r)
                    })
                    .collect()
            });
            for (oid, r) in results {
                match r {
                    Ok(()) | Err(StoreError::NoObject(_)) => {}
                    Err(e) => {
                        tracing::error!(%oid, error = %e, "fdatasync failed: the copy is lost");
                        if let Err(e) = self.quarantine(oid) {
                            tracing::error!(%oid, error = %e, "moving the lost copy aside failed");
                        }
                        failed.push(oid);
                    }
                }
            }
        }
        failed
    }

    fn sync_one(&self, oid: Oid) -> Result<(), StoreError> {
        #[cfg(feature = "failpoints")]
        let injected = self
            .dirty
            .fail_next_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&oid);
        #[cfg(not(feature = "failpoints"))]
        let injected = false;
        let file = self.cached_object(oid)?.file;
        if injected {
            return Err(StoreError::io(
                "fdatasync",
                &self.object_path(oid),
                std::io::Error::from_raw_os_error(5),
            ));
        }
        file.sync_data()
            .map_err(|e| StoreError::object(oid, "fdatasync", &self.object_path(oid), e))
    }

    /// Moves a copy whose data can no longer be trusted (a failed sync, an unreadable
    /// file) out of the way, so it is neither served nor mistaken for a good copy:
    /// `DIR/obj/.quarantine/<oid>.<n>`. [`StoreError::NoObject`] if there is no copy.
    pub fn quarantine(&self, oid: Oid) -> Result<(), StoreError> {
        let qdir = self.obj_dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&qdir).map_err(|e| StoreError::io("mkdir", &qdir, e))?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let to = qdir.join(format!("{}.{seq}", names::object_name(oid)));
        let from = self.object_path(oid);
        self.fds.forget(oid);
        fs::rename(&from, &to).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NoObject(oid),
            _ => StoreError::io("rename", &from, e),
        })?;
        self.fsync_obj_dir()
    }
}
