//! Whole-object operations: remove, exists, size, list, purge, space, directory sync.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;

use sd_proto::Oid;

use crate::error::StoreError;
use crate::names;
use crate::store::{Store, StoreSpace, SyncMode, for_each_file, remove_if_present};

/// `st_blocks` is counted in 512-byte units.
const BLOCK_UNIT: u64 = 512;

impl Store {
    /// Unlinks object `oid`; [`StoreError::NoObject`] if absent. In writethrough mode the
    /// removal is durable when this returns; in writeback mode after [`Store::sync_dir`].
    pub fn remove(&self, oid: Oid) -> Result<(), StoreError> {
        let path = self.object_path(oid);
        self.fds.forget(oid);
        self.versions.forget(oid);
        self.discard_partial(oid)?;
        if !remove_if_present(&path)? {
            return Err(StoreError::NoObject(oid));
        }
        // Unsynced writes to a removed object no longer need syncing.
        self.mark_clean(oid);
        tracing::debug!(%oid, "removed object");
        self.dir_changed()
    }

    /// True if object `oid` exists as a regular file.
    pub fn exists(&self, oid: Oid) -> bool {
        fs::symlink_metadata(self.object_path(oid)).is_ok_and(|m| m.is_file())
    }

    /// The length of object `oid`'s file; [`StoreError::NoObject`] if absent.
    pub fn object_size(&self, oid: Oid) -> Result<u64, StoreError> {
        Ok(self.cached_object(oid)?.len)
    }

    /// Every object, sorted by oid. Files whose names are not exactly 16 lowercase hex
    /// digits (temporary files, junk) are ignored.
    pub fn list(&self) -> Result<Vec<Oid>, StoreError> {
        let mut oids = Vec::new();
        for_each_file(&self.obj_dir, |name, _| {
            oids.extend(names::parse_object_name(name));
            Ok(())
        })?;
        oids.sort_unstable();
        Ok(oids)
    }

    /// Removes every object and temporary file (cluster format); durable on return.
    pub fn purge(&self) -> Result<(), StoreError> {
        self.fds.clear();
        self.partials.clear();
        self.strips.clear();
        for_each_file(&self.obj_dir, |name, path| {
            if names::parse_object_name(name).is_some()
                || names::is_tmp_name(name)
                || names::parse_partial_name(name).is_some()
                || names::parse_strip_name(name).is_some()
                || names::parse_strip_log_name(name).is_some()
            {
                remove_if_present(path)?;
            }
            Ok(())
        })?;
        self.sync_dir()
    }

    /// Space used by objects (and erasure-coded strips) and free on the file system.
    pub fn space(&self) -> Result<StoreSpace, StoreError> {
        let mut used = 0_u64;
        let mut objects = 0_u64;
        for_each_file(&self.obj_dir, |name, path| {
            if names::parse_object_name(name).is_none() && names::parse_strip_name(name).is_none() {
                return Ok(());
            }
            match fs::symlink_metadata(path) {
                Ok(m) => {
                    used = used.saturating_add(m.blocks().saturating_mul(BLOCK_UNIT));
                    objects += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("stat", path, e)),
            }
            Ok(())
        })?;
        let vfs = rustix::fs::statvfs(&self.obj_dir)
            .map_err(|e| StoreError::io("statvfs", &self.obj_dir, e.into()))?;
        Ok(StoreSpace {
            used,
            free: vfs.f_bavail.saturating_mul(vfs.f_frsize),
            objects,
        })
    }

    /// fsyncs `DIR/obj`, making creations and removals durable (for writeback mode).
    pub fn sync_dir(&self) -> Result<(), StoreError> {
        self.dir_dirty.store(false, Ordering::SeqCst);
        self.fsync_obj_dir().inspect_err(|_| {
            self.dir_dirty.store(true, Ordering::SeqCst);
        })
    }

    /// True when a writeback-mode removal is not yet durable (see [`Store::sync_dir`]).
    pub fn dir_needs_sync(&self) -> bool {
        self.dir_dirty.load(Ordering::SeqCst)
    }

    /// After an unlink: fsync the directory now (writethrough) or remember to (writeback).
    fn dir_changed(&self) -> Result<(), StoreError> {
        match self.sync {
            SyncMode::Writethrough => self.fsync_obj_dir(),
            SyncMode::Writeback => {
                self.dir_dirty.store(true, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}
