//! The strip operations of [`Store`]: create, prepare, complete, discard, read, remove,
//! list, checkpoint.

use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use rustix::io::ReadWriteFlags;

use super::format::{HEADER_LEN, Header, RECORD_LEN, RecordHeader};
use super::{Rec, StripId, StripState, lock};
use crate::error::{StoreError, read_error};
use crate::names;
use crate::store::{Store, for_each_file, remove_if_present};

/// A write to prepare: `data` at `offset` of the strip, identified by `wid` (the same on
/// every holder of the stripe), written in `epoch`.
#[derive(Debug, Clone, Copy)]
pub struct StripWrite<'a> {
    /// The write's id.
    pub wid: u64,
    /// The epoch it is written in (becomes the strip's version when it completes).
    pub epoch: u32,
    /// Offset in the strip.
    pub offset: u64,
    /// The strip's new bytes there.
    pub data: &'a [u8],
}

/// The write of a strip's log that is not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingWrite {
    /// Its id.
    pub wid: u64,
    /// The epoch it was prepared in.
    pub epoch: u32,
    /// Its range in the strip.
    pub offset: u64,
    /// Its length.
    pub len: u32,
    /// How long ago this process prepared it; `None`: it was in the log at start.
    pub age: Option<Duration>,
}

/// What a strip's log says, for resolving a pending write across the holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripLogState {
    /// The last write checkpointed (0: none).
    pub last_wid: u64,
    /// The complete writes since, oldest first.
    pub complete: Vec<u64>,
    /// The pending write, if any.
    pub pending: Option<PendingWrite>,
    /// The strip's version: the epoch of its last complete write (0: unknown).
    pub version: u32,
}

impl StripLogState {
    /// Whether this strip has write `wid` complete (or checkpointed, when it was the last).
    pub fn has_complete(&self, wid: u64) -> bool {
        self.last_wid == wid || self.complete.contains(&wid)
    }

    /// The last write complete on this strip (0: none known): holders of a stripe that
    /// agree have the same.
    pub fn latest_complete(&self) -> u64 {
        self.complete.last().copied().unwrap_or(self.last_wid)
    }
}

fn pending_of(r: &Rec) -> PendingWrite {
    PendingWrite {
        wid: r.wid,
        epoch: r.epoch,
        offset: r.offset,
        len: r.len,
        age: r.since.map(|t| t.elapsed()),
    }
}

fn check_range(id: StripId, offset: u64, len: usize, size: u64) -> Result<(), StoreError> {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(StoreError::StripOutOfBounds {
            id,
            offset,
            len,
            size,
        }),
    }
}

/// Writes all of `bufs` at `offset`, with `RWF_DSYNC` when `durable`.
fn write_vectored(
    file: &std::fs::File,
    bufs: &[&[u8]],
    offset: u64,
    durable: bool,
) -> std::io::Result<()> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let flags = if durable {
        ReadWriteFlags::DSYNC
    } else {
        ReadWriteFlags::empty()
    };
    let done = rustix::io::pwritev2(file, &slices, offset, flags)?;
    if done < total {
        // A short write (rare on a regular file): the rest, then make it all durable.
        let all: Vec<u8> = bufs.concat();
        let rest = all.get(done..).unwrap_or_default();
        file.write_all_at(rest, offset.saturating_add(done as u64))?;
        if durable {
            file.sync_data()?;
        }
    }
    Ok(())
}

impl Store {
    /// Locks strip `id` (loading it on a miss).
    fn with_strip<T>(
        &self,
        id: StripId,
        f: impl FnOnce(&mut StripState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        loop {
            let shared = self.strip(id)?;
            let mut st: MutexGuard<'_, StripState> = lock(&shared);
            if !st.dead {
                return f(&mut st);
            }
        }
    }

    /// Atomically creates strip `id` of `size` bytes holding `data` at `offset` (zeros
    /// elsewhere) with version `version`, replacing any strip of that id and its log
    /// (a pending write there is dropped). Durable on return, in both sync modes.
    pub fn create_strip(
        &self,
        id: StripId,
        size: u64,
        offset: u64,
        data: &[u8],
        version: u32,
    ) -> Result<(), StoreError> {
        check_range(id, offset, data.len(), size)?;
        let (file, tmp) = self.strip_tmp(id, false)?;
        let tmp = scopeguard(tmp);
        let fail = |op, e| StoreError::object(id.oid, op, &tmp.0, e);
        if size > 0 {
            match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size) {
                Ok(()) => {}
                Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
                    file.set_len(size).map_err(|e| fail("ftruncate", e))?;
                }
                Err(e) => return Err(fail("fallocate", e.into())),
            }
        }
        file.write_all_at(data, offset)
            .map_err(|e| fail("pwrite", e))?;
        if version != 0 {
            crate::version::write_version(&file, version).map_err(|e| fail("fsetxattr", e))?;
        }
        file.sync_all().map_err(|e| fail("fsync", e))?;
        drop(file);
        // Hold the old strip (if open) while it is replaced, and make its complete writes
        // durable first: a crash between the two renames below leaves the old strip file
        // with a fresh, empty log, so it must not depend on its old log any more.
        let old = self.strips.get(id);
        let mut old = old.as_ref().map(|s| lock(s));
        if let Some(o) = old.as_mut() {
            o.base
                .sync_data()
                .map_err(|e| StoreError::object(id.oid, "fdatasync", &self.strip_path(id), e))?;
        }
        self.write_fresh_log(id)?;
        let path = self.strip_path(id);
        std::fs::rename(&tmp.0, &path)
            .map_err(|e| StoreError::object(id.oid, "rename", &path, e))?;
        tmp.disarm();
        self.fsync_obj_dir()?;
        if let Some(o) = old.as_mut() {
            o.dead = true;
        }
        self.strips.forget(id);
        tracing::debug!(strip = %id, size, "created strip");
        Ok(())
    }

    /// Prepares write `w` on strip `id`: appended to its log, durable on return; the strip
    /// file is unchanged until [`Store::complete_strip`]. The same write again is a no-op;
    /// [`StoreError::StripInDoubt`] while another write is pending.
    pub fn prepare_strip(&self, id: StripId, w: StripWrite<'_>) -> Result<(), StoreError> {
        self.with_strip(id, |st| {
            if let Some(p) = st.pending() {
                if p.wid == w.wid && p.offset == w.offset && p.len as usize == w.data.len() {
                    return Ok(());
                }
                return Err(StoreError::StripInDoubt { id, wid: p.wid });
            }
            check_range(id, w.offset, w.data.len(), st.size)?;
            let len = u32::try_from(w.data.len()).map_err(|_| StoreError::StripOutOfBounds {
                id,
                offset: w.offset,
                len: u64::MAX,
                size: st.size,
            })?;
            let head = RecordHeader {
                generation: st.generation,
                epoch: w.epoch,
                wid: w.wid,
                offset: w.offset,
                len,
            }
            .encode(w.data);
            let at = st.end;
            write_vectored(&st.log, &[&head, w.data], at, true)
                .map_err(|e| StoreError::object(id.oid, "pwritev2", &self.strip_log_path(id), e))?;
            let data_at = at.saturating_add(RECORD_LEN as u64);
            st.end = data_at.saturating_add(u64::from(len));
            st.records.push(Rec {
                wid: w.wid,
                epoch: w.epoch,
                offset: w.offset,
                len,
                data_at,
                complete: false,
                since: Some(Instant::now()),
            });
            st.touched = Instant::now();
            Ok(())
        })
    }

    /// Completes write `wid` on strip `id`: its bytes go into the strip file (page cache;
    /// the log keeps them durable until the next checkpoint). A write already complete is
    /// a no-op; [`StoreError::UnknownWrite`] if the strip has no such write.
    pub fn complete_strip(&self, id: StripId, wid: u64) -> Result<(), StoreError> {
        self.with_strip(id, |st| {
            let Some(p) = st.pending().copied().filter(|p| p.wid == wid) else {
                if st.last_wid == wid || st.records.iter().any(|r| r.complete && r.wid == wid) {
                    return Ok(());
                }
                return Err(StoreError::UnknownWrite { id, wid });
            };
            // No mark goes to the log: a data record with a later one after it was
            // complete, and the last one is resolved with the other holders after a
            // restart (a mark would need a sync of its own to be trusted).
            let mut buf = vec![0u8; p.len as usize];
            st.log
                .read_exact_at(&mut buf, p.data_at)
                .map_err(|e| read_error(id.oid, &self.strip_log_path(id), e))?;
            st.base
                .write_all_at(&buf, p.offset)
                .map_err(|e| StoreError::object(id.oid, "pwrite", &self.strip_path(id), e))?;
            if let Some(last) = st.records.last_mut() {
                last.complete = true;
            }
            if st.version != p.epoch {
                crate::version::write_version(&st.base, p.epoch).map_err(|e| {
                    StoreError::object(id.oid, "fsetxattr", &self.strip_path(id), e)
                })?;
                st.version = p.epoch;
            }
            st.touched = Instant::now();
            if st.wants_checkpoint() {
                self.checkpoint_strip(id, st)?;
            }
            Ok(())
        })
    }

    /// Drops the pending write `wid` of strip `id` (the strip file never had it). No-op if
    /// the strip has no such write; [`StoreError::WriteComplete`] if it is complete.
    pub fn discard_strip_write(&self, id: StripId, wid: u64) -> Result<(), StoreError> {
        self.with_strip(id, |st| {
            if let Some(p) = st.pending().copied().filter(|p| p.wid == wid) {
                let start = p.data_at.saturating_sub(RECORD_LEN as u64);
                st.log
                    .set_len(start)
                    .and_then(|()| st.log.sync_data())
                    .map_err(|e| StoreError::io("ftruncate", &self.strip_log_path(id), e))?;
                st.records.pop();
                st.end = start;
                tracing::debug!(strip = %id, wid, "discarded a pending write");
                return Ok(());
            }
            if st.last_wid == wid || st.records.iter().any(|r| r.wid == wid) {
                return Err(StoreError::WriteComplete { id, wid });
            }
            Ok(())
        })
    }

    /// What strip `id`'s log holds.
    pub fn strip_log(&self, id: StripId) -> Result<StripLogState, StoreError> {
        self.with_strip(id, |st| {
            Ok(StripLogState {
                last_wid: st.last_wid,
                complete: st
                    .records
                    .iter()
                    .filter(|r| r.complete)
                    .map(|r| r.wid)
                    .collect(),
                pending: st.pending().map(pending_of),
                version: st.version,
            })
        })
    }

    /// Reads `buf.len()` bytes at `offset` of strip `id`: its complete writes only. Also
    /// says which write is pending there, if one is.
    pub fn read_strip(
        &self,
        id: StripId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<PendingWrite>, StoreError> {
        let (base, pending) = self.with_strip(id, |st| {
            check_range(id, offset, buf.len(), st.size)?;
            Ok((st.base.clone(), st.pending().map(pending_of)))
        })?;
        base.read_exact_at(buf, offset)
            .map_err(|e| read_error(id.oid, &self.strip_path(id), e))?;
        Ok(pending)
    }

    /// The size of strip `id`.
    pub fn strip_size(&self, id: StripId) -> Result<u64, StoreError> {
        self.with_strip(id, |st| Ok(st.size))
    }

    /// Whether strip `id` exists. A strip whose file went away behind the store's back
    /// (removed by hand) is forgotten, so it reads as missing from then on.
    pub fn strip_exists(&self, id: StripId) -> bool {
        let there = std::fs::symlink_metadata(self.strip_path(id)).is_ok_and(|m| m.is_file());
        if !there {
            self.strips.forget(id);
        }
        there
    }

    /// Removes strip `id` and its log; [`StoreError::NoStrip`] if absent.
    pub fn remove_strip(&self, id: StripId) -> Result<(), StoreError> {
        let old = self.strips.get(id);
        let mut old = old.as_ref().map(|s| lock(s));
        let existed = remove_if_present(&self.strip_path(id))?;
        remove_if_present(&self.strip_log_path(id))?;
        if let Some(o) = old.as_mut() {
            o.dead = true;
        }
        self.strips.forget(id);
        if !existed {
            return Err(StoreError::NoStrip(id));
        }
        tracing::debug!(strip = %id, "removed strip");
        self.fsync_obj_dir()
    }

    /// Every strip, sorted.
    pub fn list_strips(&self) -> Result<Vec<StripId>, StoreError> {
        let mut ids = Vec::new();
        for_each_file(&self.obj_dir, |name, _| {
            ids.extend(names::parse_strip_name(name));
            Ok(())
        })?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Checkpoints the strips whose logs hold only complete writes and were not written
    /// for `idle`: returns how many.
    pub fn checkpoint_idle_strips(&self, idle: Duration) -> Result<usize, StoreError> {
        let mut n = 0;
        for (id, shared) in self.strips.idle_with_log(idle) {
            let mut st = lock(&shared);
            if !st.dead && st.pending().is_none() && !st.records.is_empty() {
                self.checkpoint_strip(id, &mut st)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Makes the strip file durable and empties the log (its writes must all be complete):
    /// a new generation, the last write's id kept in the header.
    pub(super) fn checkpoint_strip(
        &self,
        id: StripId,
        st: &mut StripState,
    ) -> Result<(), StoreError> {
        let Some(last) = st.records.last() else {
            return Ok(());
        };
        debug_assert!(last.complete, "a checkpoint with a pending write");
        let header = Header {
            generation: st.generation.wrapping_add(1),
            last_wid: last.wid,
        };
        st.base
            .sync_data()
            .map_err(|e| StoreError::object(id.oid, "fdatasync", &self.strip_path(id), e))?;
        let log_path = self.strip_log_path(id);
        write_vectored(&st.log, &[&header.encode()], 0, true)
            .map_err(|e| StoreError::object(id.oid, "pwritev2", &log_path, e))?;
        // Not synced: records of the old generation that come back after a crash end the
        // log when it is read.
        st.log
            .set_len(HEADER_LEN)
            .map_err(|e| StoreError::io("ftruncate", &log_path, e))?;
        st.generation = header.generation;
        st.last_wid = header.last_wid;
        st.records.clear();
        st.end = HEADER_LEN;
        Ok(())
    }
}

/// A temporary path removed on drop unless disarmed.
struct TmpPath(std::path::PathBuf, bool);

impl TmpPath {
    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn scopeguard(path: std::path::PathBuf) -> TmpPath {
    TmpPath(path, true)
}
