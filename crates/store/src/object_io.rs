//! Object I/O: read, write, atomic create, and per-object sync.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use sd_proto::Oid;

use crate::error::{StoreError, check_range, len_u64};
use crate::names;
use crate::store::{CreateSpec, Store, SyncMode};

/// How many unique temporary names a create tries before giving up.
const TMP_ATTEMPTS: u32 = 8;

impl Store {
    /// Reads exactly `buf.len()` bytes of object `oid` at `offset`.
    ///
    /// [`StoreError::NoObject`] if absent; [`StoreError::OutOfBounds`] if the range
    /// passes the end of the object file; [`StoreError::Unreadable`] if the copy cannot be
    /// read (`EIO`).
    pub fn read(&self, oid: Oid, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let o = self.cached_object(oid)?;
        check_range(oid, offset, len_u64(buf.len()), o.len)?;
        o.file
            .read_exact_at(buf, offset)
            .map_err(|e| crate::error::read_error(oid, &self.object_path(oid), e))
    }

    /// Reads like [`Store::read`], for a copy on its way to another node (recovery,
    /// repair): straight from the disk in small pieces, not through the page cache (see
    /// `direct`), so it neither fills the cache nor sends the disk one long request that
    /// client I/O waits behind. Buffered, as [`Store::read`], where `O_DIRECT` does not
    /// apply.
    pub fn read_bulk(&self, oid: Oid, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        if !self.direct.reads(offset, buf.len()) {
            return self.read(oid, offset, buf);
        }
        let path = self.object_path(oid);
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(crate::direct::open_flag() | nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NoObject(oid)),
            Err(e) if crate::direct::refuses(&e) => {
                self.direct.refused();
                return self.read(oid, offset, buf);
            }
            Err(e) => return Err(StoreError::io("open", &path, e)),
        };
        let size = file
            .metadata()
            .map_err(|e| StoreError::io("fstat", &path, e))?
            .len();
        check_range(oid, offset, len_u64(buf.len()), size)?;
        match self.direct.read(&file, buf, offset) {
            Ok(()) => Ok(()),
            Err(e) if crate::direct::refuses(&e) => {
                self.direct.refused();
                self.read(oid, offset, buf)
            }
            Err(e) => Err(crate::error::read_error(oid, &path, e)),
        }
    }

    /// Writes `data` into the existing object `oid` at `offset`; never extends the file.
    ///
    /// [`StoreError::NoObject`] if absent; [`StoreError::OutOfBounds`] if the range
    /// passes the end of the object file. In writethrough mode the data is on disk
    /// when this returns.
    pub fn write(&self, oid: Oid, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let o = self.cached_object(oid)?;
        check_range(oid, offset, len_u64(data.len()), o.len)?;
        o.file
            .write_all_at(data, offset)
            .map_err(|e| StoreError::object(oid, "pwrite", &self.object_path(oid), e))?;
        if self.sync == SyncMode::Writeback {
            self.mark_dirty(oid, len_u64(data.len()));
        }
        Ok(())
    }

    /// Writes like [`Store::write`], but durable when it returns in both modes (a
    /// writeback store uses `pwritev2(RWF_DSYNC)` for this one write, and records nothing
    /// dirty).
    pub fn write_durable(&self, oid: Oid, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if self.sync == SyncMode::Writethrough {
            return self.write(oid, offset, data);
        }
        let o = self.cached_object(oid)?;
        check_range(oid, offset, len_u64(data.len()), o.len)?;
        let (mut done, mut at) = (0usize, offset);
        while let Some(rest) = data.get(done..).filter(|r| !r.is_empty()) {
            let n = rustix::io::pwritev2(
                &*o.file,
                &[std::io::IoSlice::new(rest)],
                at,
                rustix::io::ReadWriteFlags::DSYNC,
            )
            .map_err(|e| StoreError::object(oid, "pwritev2", &self.object_path(oid), e.into()))?;
            if n == 0 {
                return Err(StoreError::object(
                    oid,
                    "pwritev2",
                    &self.object_path(oid),
                    std::io::ErrorKind::WriteZero.into(),
                ));
            }
            done += n;
            at += len_u64(n);
        }
        Ok(())
    }

    /// Atomically creates object `oid` of `spec.size` bytes holding `data` at `offset`
    /// (zeros elsewhere), replacing any existing object of that oid.
    ///
    /// Crash safe in both sync modes: the object is built in a temporary file, fsynced,
    /// renamed into place, and the directory is fsynced. [`StoreError::OutOfBounds`] if
    /// the data does not fit in `spec.size`; nothing is created then.
    pub fn create_and_write(
        &self,
        oid: Oid,
        spec: CreateSpec,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.create_versioned(oid, spec, offset, data, 0)
    }

    /// [`Store::create_and_write`], the new copy carrying `version` (see `Store::version`;
    /// set before the rename, so the copy never appears without it).
    pub fn create_versioned(
        &self,
        oid: Oid,
        spec: CreateSpec,
        offset: u64,
        data: &[u8],
        version: u32,
    ) -> Result<(), StoreError> {
        let len = len_u64(data.len());
        check_range(oid, offset, len, spec.size)?;
        let direct = self.direct.applies(offset, data.len());
        let (file, tmp, direct) = self.create_tmp(oid, direct)?;
        // The write does not fill the object: give it its full size first.
        if offset != 0 || len != spec.size {
            size_new_object(oid, &file, &tmp.path, spec)?;
        }
        if direct {
            self.direct.write(&file, data, offset)
        } else {
            file.write_all_at(data, offset)
        }
        .map_err(|e| StoreError::object(oid, "pwrite", &tmp.path, e))?;
        if version != 0 {
            crate::version::write_version(&file, version)
                .map_err(|e| StoreError::object(oid, "fsetxattr", &tmp.path, e))?;
        }
        // A new file needs its size and allocation on disk too: fsync, not fdatasync.
        file.sync_all()
            .map_err(|e| StoreError::object(oid, "fsync", &tmp.path, e))?;
        drop(file);
        let path = self.object_path(oid);
        // The cached descriptor of an object being replaced names the old file.
        self.fds.forget(oid);
        fs::rename(&tmp.path, &path).map_err(|e| StoreError::object(oid, "rename", &path, e))?;
        self.fds.forget(oid);
        tmp.disarm();
        self.fsync_obj_dir()?;
        // Any writes a partial copy held are in the new copy, or superseded by it.
        self.discard_partial(oid)?;
        // Created durably in both modes: any dirty or lost state of an older copy is moot.
        self.mark_clean(oid);
        self.versions.forget(oid);
        if version != 0 {
            self.remember_version(oid, version);
        }
        tracing::debug!(%oid, size = spec.size, sparse = spec.sparse, "created object");
        Ok(())
    }

    /// fdatasyncs object `oid` (for writeback mode).
    pub fn sync_object(&self, oid: Oid) -> Result<(), StoreError> {
        self.cached_object(oid)?
            .file
            .sync_data()
            .map_err(|e| StoreError::object(oid, "fdatasync", &self.object_path(oid), e))
    }

    /// Creates a fresh temporary file for `oid` under a name no one else uses, opened
    /// `O_DIRECT` if `direct` and the file system allows it (the third value says).
    fn create_tmp(&self, oid: Oid, mut direct: bool) -> Result<(File, TmpFile, bool), StoreError> {
        let mut last = None;
        for _ in 0..TMP_ATTEMPTS {
            let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
            let path = self
                .obj_dir
                .join(names::tmp_name(oid, std::process::id(), seq));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            if direct {
                options.custom_flags(crate::direct::open_flag());
            }
            match options.open(&path) {
                Ok(file) => return Ok((file, TmpFile { path, armed: true }, direct)),
                Err(e) if direct && crate::direct::refuses(&e) => {
                    self.direct.refused();
                    direct = false;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(StoreError::object(oid, "create", &path, e)),
            }
        }
        let (path, e) = last.unwrap_or_else(|| (self.obj_dir.clone(), Errno::EXIST.into()));
        Err(StoreError::io("create", &path, e))
    }
}

/// Gives a new object file its full size, sparse or preallocated.
fn size_new_object(oid: Oid, file: &File, path: &Path, spec: CreateSpec) -> Result<(), StoreError> {
    if !spec.sparse && spec.size > 0 {
        match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, spec.size) {
            Ok(()) => return Ok(()),
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => {}
            Err(e) => return Err(StoreError::object(oid, "fallocate", path, e.into())),
        }
    }
    file.set_len(spec.size)
        .map_err(|e| StoreError::object(oid, "ftruncate", path, e))
}

/// A temporary file that is unlinked on drop unless it was renamed into place.
struct TmpFile {
    path: PathBuf,
    armed: bool,
}

impl TmpFile {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(error) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove temporary file");
        }
    }
}
