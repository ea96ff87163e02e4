//! Opening a strip: its files, its log read back (torn or stale records end it), the
//! complete writes copied into the strip file again, and the log emptied when it can be.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::fcntl::OFlag;

use super::format::{HEADER_BYTES, HEADER_LEN, Header, RECORD_LEN, RecordHeader};
use super::{Rec, Shared, StripId, StripState};
use crate::error::StoreError;
use crate::names;
use crate::store::{Store, remove_if_present};

/// Opens an existing file read-write, never following a symlink out of the store.
pub(super) fn open_rw(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
}

impl Store {
    /// The open strip `id`, loading it on a miss; [`StoreError::NoStrip`] if absent.
    pub(super) fn strip(&self, id: StripId) -> Result<Shared, StoreError> {
        if let Some(s) = self.strips.get(id) {
            return Ok(s);
        }
        // One loader at a time: a load may rewrite the log, and two loaders would each
        // keep a view of it.
        let _loading = self.strip_loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = self.strips.get(id) {
            return Ok(s);
        }
        let state = self.load_strip(id)?;
        Ok(self.strips.insert(id, Arc::new(Mutex::new(state))))
    }

    fn load_strip(&self, id: StripId) -> Result<StripState, StoreError> {
        let base_path = self.obj_dir.join(names::strip_name(id));
        let log_path = self.obj_dir.join(names::strip_log_name(id));
        let base = match open_rw(&base_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A log without its strip: left by a crash in a create or a remove.
                remove_if_present(&log_path)?;
                return Err(StoreError::NoStrip(id));
            }
            Err(e) => return Err(StoreError::io("open", &base_path, e)),
        };
        let size = base
            .metadata()
            .map_err(|e| StoreError::io("fstat", &base_path, e))?
            .len();
        let log = match open_rw(&log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.write_fresh_log(id)?;
                open_rw(&log_path).map_err(|e| StoreError::io("open", &log_path, e))?
            }
            Err(e) => return Err(StoreError::io("open", &log_path, e)),
        };
        let mut head = [0u8; HEADER_BYTES];
        let Some(header) = log
            .read_exact_at(&mut head, 0)
            .ok()
            .and_then(|()| Header::decode(&head))
        else {
            return Err(StoreError::StripCorrupt { id, path: log_path });
        };
        let (records, end) =
            scan(&log, &header, size).map_err(|e| StoreError::io("pread", &log_path, e))?;
        let version = crate::version::read_version(&base);
        let mut st = StripState {
            base: Arc::new(base),
            log,
            size,
            generation: header.generation,
            last_wid: header.last_wid,
            end,
            records,
            version,
            touched: Instant::now(),
            dead: false,
        };
        self.reapply(id, &st)?;
        if st.pending().is_none() {
            self.checkpoint_strip(id, &mut st)?;
        } else {
            tracing::info!(strip = %id, "strip log holds a pending write");
        }
        Ok(st)
    }

    /// Copies the complete writes of `st`'s log into the strip file, in order (after a
    /// power cut the page cache that held them is gone).
    fn reapply(&self, id: StripId, st: &StripState) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        for r in st.records.iter().filter(|r| r.complete) {
            buf.resize(r.len as usize, 0);
            st.log
                .read_exact_at(&mut buf, r.data_at)
                .map_err(|e| StoreError::io("pread", &self.strip_log_path(id), e))?;
            st.base
                .write_all_at(&buf, r.offset)
                .map_err(|e| StoreError::object(id.oid, "pwrite", &self.strip_path(id), e))?;
        }
        Ok(())
    }

    /// Creates an empty log (generation 1) for `id`, atomically.
    pub(super) fn write_fresh_log(&self, id: StripId) -> Result<(), StoreError> {
        let (file, tmp) = self.strip_tmp(id, true)?;
        let header = Header {
            generation: 1,
            last_wid: 0,
        };
        file.write_all_at(&header.encode(), 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::object(id.oid, "write", &tmp, e))?;
        let path = self.strip_log_path(id);
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::object(id.oid, "rename", &path, e))?;
        self.fsync_obj_dir()
    }

    /// `DIR/obj/<oid>_<index>`.
    pub(super) fn strip_path(&self, id: StripId) -> std::path::PathBuf {
        self.obj_dir.join(names::strip_name(id))
    }

    /// `DIR/obj/<oid>_<index>.log`.
    pub(super) fn strip_log_path(&self, id: StripId) -> std::path::PathBuf {
        self.obj_dir.join(names::strip_log_name(id))
    }

    /// A new temporary file for a create of strip `id` (or of its log).
    pub(super) fn strip_tmp(
        &self,
        id: StripId,
        log: bool,
    ) -> Result<(File, std::path::PathBuf), StoreError> {
        loop {
            let seq = self
                .tmp_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self
                .obj_dir
                .join(names::strip_tmp_name(id, log, std::process::id(), seq));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => return Ok((f, path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::object(id.oid, "create", &path, e)),
            }
        }
    }
}

/// Reads the records of `header`'s generation after the header: the writes in order, and
/// where the next record goes. A data record followed by another one was complete.
fn scan(log: &File, header: &Header, size: u64) -> io::Result<(Vec<Rec>, u64)> {
    let log_len = log.metadata()?.len();
    let mut records: Vec<Rec> = Vec::new();
    let mut pos = HEADER_LEN;
    let mut head = [0u8; RECORD_LEN];
    let mut data = Vec::new();
    loop {
        let data_at = pos.saturating_add(RECORD_LEN as u64);
        if data_at > log_len {
            break;
        }
        log.read_exact_at(&mut head, pos)?;
        let Some(r) = RecordHeader::decode(&head) else {
            break;
        };
        if r.generation != header.generation {
            break;
        }
        let len = u64::from(r.len);
        let in_strip = r.offset.checked_add(len).is_some_and(|e| e <= size);
        if !in_strip || data_at.saturating_add(len) > log_len {
            break;
        }
        data.resize(r.len as usize, 0);
        log.read_exact_at(&mut data, data_at)?;
        if !RecordHeader::check(&head, &data) {
            break;
        }
        records.push(Rec {
            wid: r.wid,
            epoch: r.epoch,
            offset: r.offset,
            len: r.len,
            data_at,
            complete: false,
            since: None,
        });
        pos = data_at.saturating_add(len);
    }
    let n = records.len();
    for r in records.iter_mut().take(n.saturating_sub(1)) {
        r.complete = true;
    }
    Ok((records, pos))
}
