//! [`Store`] and its configuration: opening the object directory and opening object files.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};

use nix::fcntl::OFlag;
use sd_proto::Oid;

use crate::error::StoreError;
use crate::names::{self, OBJ_DIR};

/// When an acknowledged object write is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Object files are opened with `O_DSYNC`: acknowledged means on disk.
    Writethrough,
    /// No `O_DSYNC`; durability comes later from [`Store::sync_object`] and
    /// [`Store::sync_dir`]. Creation is crash safe in this mode too.
    Writeback,
}

/// How to open a [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The sheep's base directory; objects live in `dir/obj`.
    pub dir: PathBuf,
    /// Durability of object writes.
    pub sync: SyncMode,
}

/// Shape of a new object for [`Store::create_and_write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateSpec {
    /// The full object size in bytes.
    pub size: u64,
    /// `true`: sized with `ftruncate`, leaving holes (inode and attribute objects).
    /// `false`: preallocated with `fallocate(0, size)`, or `ftruncate` where unsupported.
    pub sparse: bool,
}

/// Space accounting of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSpace {
    /// Bytes allocated to object files (`st_blocks * 512`, summed).
    pub used: u64,
    /// Bytes available to us on the file system (`statvfs` `f_bavail * f_frsize`).
    pub free: u64,
    /// Object files counted.
    pub objects: u64,
}

/// The object store of one sheep. `Send + Sync`; every method blocks.
#[derive(Debug)]
pub struct Store {
    pub(crate) dir: PathBuf,
    pub(crate) obj_dir: PathBuf,
    /// `DIR/obj`, kept open so it can be fsynced.
    pub(crate) obj_dir_handle: File,
    pub(crate) sync: SyncMode,
    /// Distinguishes temporary files of concurrent creates (with the pid).
    pub(crate) tmp_seq: AtomicU64,
    /// An unlink in writeback mode has not been made durable by [`Store::sync_dir`] yet.
    pub(crate) dir_dirty: AtomicBool,
    /// Writeback dirty sets, per VDI.
    pub(crate) dirty: crate::writeback::Dirty,
    /// Bytes written in writeback mode and not yet synced.
    pub(crate) dirty_bytes: AtomicU64,
    /// Open object files.
    pub(crate) fds: crate::fdcache::FdCache,
    /// Versions this process set (see `version`).
    pub(crate) versions: crate::version::Versions,
    /// Partial copies (see `partial`).
    pub(crate) partials: crate::partial::Partials,
    /// Whole new objects written `O_DIRECT` (see `direct`).
    pub(crate) direct: crate::direct::Direct,
    /// Erasure-coded strips open (see `strip`).
    pub(crate) strips: crate::strip::Strips,
    /// Held while a strip is loaded.
    pub(crate) strip_loading: std::sync::Mutex<()>,
}

impl Store {
    /// Opens the store in `cfg.dir`, creating `DIR/obj` if missing and removing
    /// temporary files left by a crash during create.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let obj_dir = cfg.dir.join(OBJ_DIR);
        let existed = fs::symlink_metadata(&obj_dir).is_ok();
        fs::create_dir_all(&obj_dir).map_err(|e| StoreError::io("mkdir", &obj_dir, e))?;
        if !existed {
            fsync_dir_path(&cfg.dir)?;
        }
        let obj_dir_handle =
            File::open(&obj_dir).map_err(|e| StoreError::io("open", &obj_dir, e))?;
        let mut store = Store {
            dir: cfg.dir,
            obj_dir,
            obj_dir_handle,
            sync: cfg.sync,
            tmp_seq: AtomicU64::new(0),
            dir_dirty: AtomicBool::new(false),
            dirty: crate::writeback::Dirty::default(),
            dirty_bytes: AtomicU64::new(0),
            fds: crate::fdcache::FdCache::default(),
            versions: crate::version::Versions::default(),
            partials: crate::partial::Partials::default(),
            direct: crate::direct::Direct::default(),
            strips: crate::strip::Strips::default(),
            strip_loading: std::sync::Mutex::new(()),
        };
        store.remove_leftover_tmp()?;
        store.load_partials()?;
        Ok(store)
    }

    /// The base directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durability mode chosen at open.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    /// `DIR/obj/<oid>`: derived from the oid alone.
    pub(crate) fn object_path(&self, oid: Oid) -> PathBuf {
        self.obj_dir.join(names::object_name(oid))
    }

    /// The cached open object, opening it (read-write) on a miss.
    pub(crate) fn cached_object(&self, oid: Oid) -> Result<crate::fdcache::OpenObject, StoreError> {
        if let Some(o) = self.fds.get(oid) {
            return Ok(o);
        }
        let file = self.open_object(oid)?;
        let len = file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| StoreError::io("fstat", &self.object_path(oid), e))?;
        let o = crate::fdcache::OpenObject {
            file: std::sync::Arc::new(file),
            len,
        };
        self.fds.insert(oid, o.clone());
        Ok(o)
    }

    /// Opens an existing object file for reading and writing (`O_DSYNC` in writethrough
    /// mode; never following a symlink out of the store).
    pub(crate) fn open_object(&self, oid: Oid) -> Result<File, StoreError> {
        let path = self.object_path(oid);
        let mut flags = OFlag::O_NOFOLLOW;
        if self.sync == SyncMode::Writethrough {
            flags |= OFlag::O_DSYNC;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags.bits())
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NoObject(oid),
                _ => StoreError::io("open", &path, e),
            })
    }

    /// Makes the entries of `DIR/obj` durable.
    pub(crate) fn fsync_obj_dir(&self) -> Result<(), StoreError> {
        self.obj_dir_handle
            .sync_all()
            .map_err(|e| StoreError::io("fsync", &self.obj_dir, e))
    }

    /// Removes `<oid>.tmp*` files: creates that a crash interrupted before the rename.
    fn remove_leftover_tmp(&self) -> Result<(), StoreError> {
        let mut removed = 0_u64;
        for_each_file(&self.obj_dir, |name, path| {
            if names::is_tmp_name(name) {
                remove_if_present(path)?;
                tracing::warn!(path = %path.display(), "removed temporary file left by a crash");
                removed = removed.saturating_add(1);
            }
            Ok(())
        })?;
        if removed > 0 {
            self.fsync_obj_dir()?;
        }
        Ok(())
    }
}

/// Calls `f(name, path)` for each regular file directly in `dir`; entries that vanish
/// while we look are skipped.
pub(crate) fn for_each_file(
    dir: &Path,
    mut f: impl FnMut(&OsStr, &Path) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("readdir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("readdir", dir, e))?;
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_file() => f(&entry.file_name(), &path)?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("stat", &path, e)),
        }
    }
    Ok(())
}

/// Unlinks `path`; returns whether it existed.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("unlink", path, e)),
    }
}

/// fsyncs a directory by path, making its entries durable.
pub(crate) fn fsync_dir_path(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_send_and_sync() {
        assert_send_sync::<Store>();
    }

    /// Open flags of our fd as the kernel reports them (octal `flags:` line).
    fn fd_flags(file: &File) -> i32 {
        use std::os::fd::AsRawFd;
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd()))
            .expect("procfs is mounted on Linux test hosts");
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .expect("fdinfo has a flags line");
        i32::from_str_radix(line.trim(), 8).expect("flags are octal")
    }

    fn open_flags(sync: SyncMode) -> i32 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig {
            dir: tmp.path().to_path_buf(),
            sync,
        })
        .expect("open");
        let oid = Oid::new(0x42);
        let spec = CreateSpec {
            size: 4096,
            sparse: true,
        };
        store.create_and_write(oid, spec, 0, b"x").expect("create");
        fd_flags(&store.open_object(oid).expect("open"))
    }

    #[test]
    fn writethrough_opens_writes_with_o_dsync_not_o_sync() {
        let dsync = OFlag::O_DSYNC.bits();
        let sync_only = OFlag::O_SYNC.bits() & !dsync;
        let w = open_flags(SyncMode::Writethrough);
        assert_eq!(w & dsync, dsync, "flags {w:o}");
        assert_eq!(w & sync_only, 0, "O_SYNC must not be set: flags {w:o}");
        assert_eq!(w & OFlag::O_NOFOLLOW.bits(), OFlag::O_NOFOLLOW.bits());
    }

    #[test]
    fn writeback_opens_without_o_dsync() {
        let w = open_flags(SyncMode::Writeback);
        assert_eq!(w & OFlag::O_DSYNC.bits(), 0, "flags {w:o}");
    }
}
