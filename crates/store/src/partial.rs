//! Partial copies: writes a replica received for an object it does not hold yet (the
//! object's recovery to this node has not fetched it), kept until recovery merges them
//! over the fetched copy.
//!
//! A partial copy is a sparse file `DIR/obj/<oid>.partial` of the object's size: the
//! blocks written are allocated, the rest are holes. Its allocated ranges
//! (`SEEK_DATA`/`SEEK_HOLE`) are therefore exactly the bytes written, and stay so across a
//! crash: every write is made durable (`fdatasync`) before it returns, and the file
//! system never shows a block allocated without its data (ext4's ordered mode, XFS's
//! unwritten extents). Writes must be aligned to [`PARTIAL_ALIGN`], which every block
//! size up to it divides. Whether the file system reports holes precisely is probed when
//! the store opens; where it does not, [`Store::write_partial`] declines and the caller
//! recovers the object first, as without partial copies.
//!
//! A partial copy is not an object: [`Store::list`], [`Store::exists`], reads and
//! versions ignore it. Creating or removing the object removes it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;

use rustix::fs::SeekFrom;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use bytes::Bytes;
use sd_proto::Oid;
use sd_proto::peer_copy::Partial;

use crate::error::{StoreError, check_range, len_u64};
use crate::names;
use crate::store::{Store, for_each_file, remove_if_present};

/// Offsets and lengths of partial writes are multiples of this.
pub const PARTIAL_ALIGN: u64 = 4096;
/// [`PARTIAL_ALIGN`] as a length.
const ALIGN_LEN: usize = 4096;

/// The partial copies in the store, and whether the file system can keep them.
#[derive(Debug, Default)]
pub(crate) struct Partials {
    supported: bool,
    oids: Mutex<HashSet<Oid>>,
}

impl Partials {
    pub(crate) fn clear(&self) {
        self.oids().clear();
    }

    fn oids(&self) -> std::sync::MutexGuard<'_, HashSet<Oid>> {
        self.oids.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the data after `from` starts (SEEK_DATA) or ends (SEEK_HOLE); `None` past the
/// last data.
fn seek(file: &File, to: SeekFrom) -> io::Result<Option<u64>> {
    match rustix::fs::seek(file, to) {
        Ok(at) => Ok(Some(at)),
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The allocated ranges of `file` below `len`, as (start, end).
fn data_ranges(file: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < len {
        let Some(start) = seek(file, SeekFrom::Data(at))? else {
            break;
        };
        if start >= len {
            break;
        }
        let end = seek(file, SeekFrom::Hole(start))?.unwrap_or(len).min(len);
        if end <= start {
            break;
        }
        ranges.push((start, end));
        at = end;
    }
    Ok(ranges)
}

/// Whether the file system under `dir` reports exactly the blocks written to a sparse
/// file as data (a file system without real hole reporting calls the whole file data).
fn holes_reported(dir: &std::path::Path) -> bool {
    let path = dir.join(".partial-probe");
    let probe = || -> io::Result<bool> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(16 * PARTIAL_ALIGN)?;
        file.write_all_at(&[1u8; ALIGN_LEN], 8 * PARTIAL_ALIGN)?;
        Ok(data_ranges(&file, 16 * PARTIAL_ALIGN)? == [(8 * PARTIAL_ALIGN, 9 * PARTIAL_ALIGN)])
    };
    let ok = probe().unwrap_or(false);
    let _ = std::fs::remove_file(&path);
    ok
}

impl Store {
    /// Finds the partial copies left in `DIR/obj` (dropping those whose object exists: a
    /// merge that a crash interrupted after the object was in place) and probes whether
    /// the file system can keep new ones.
    pub(crate) fn load_partials(&mut self) -> Result<(), StoreError> {
        let mut found = HashSet::new();
        let mut stale = Vec::new();
        for_each_file(&self.obj_dir, |name, path| {
            if let Some(oid) = names::parse_partial_name(name) {
                if self.exists(oid) {
                    stale.push(path.to_path_buf());
                } else {
                    found.insert(oid);
                }
            }
            Ok(())
        })?;
        for path in &stale {
            remove_if_present(path)?;
        }
        if !found.is_empty() {
            tracing::info!(
                partial = found.len(),
                "partial copies kept from the last run"
            );
        }
        self.partials = Partials {
            supported: holes_reported(&self.obj_dir),
            oids: Mutex::new(found),
        };
        Ok(())
    }

    fn partial_path(&self, oid: Oid) -> std::path::PathBuf {
        self.obj_dir.join(names::partial_name(oid))
    }

    /// Writes `data` at `offset` into the partial copy of `oid` (an object of `size`
    /// bytes this store does not hold), creating it if needed, durably, and raises the
    /// copy's version to `version`. `Ok(false)`, with nothing written, when the write is
    /// not aligned to [`PARTIAL_ALIGN`], the object exists, or the file system cannot
    /// keep partial copies: the caller must recover the object first.
    pub fn write_partial(
        &self,
        oid: Oid,
        size: u64,
        offset: u64,
        data: &[u8],
        version: u32,
    ) -> Result<bool, StoreError> {
        let len = len_u64(data.len());
        if !self.partials.supported
            || len == 0
            || !offset.is_multiple_of(PARTIAL_ALIGN)
            || !len.is_multiple_of(PARTIAL_ALIGN)
            || self.exists(oid)
        {
            return Ok(false);
        }
        check_range(oid, offset, len, size)?;
        let path = self.partial_path(oid);
        let path = &path;
        let io = |op: &'static str| move |e| StoreError::object(oid, op, path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        let file_len = file.metadata().map_err(io("fstat"))?.len();
        let created = file_len == 0;
        if created {
            file.set_len(size).map_err(io("ftruncate"))?;
        } else {
            check_range(oid, offset, len, file_len)?;
        }
        file.write_all_at(data, offset).map_err(io("pwrite"))?;
        let raised = version > crate::version::read_version(&file);
        if raised {
            crate::version::write_version(&file, version).map_err(io("fsetxattr"))?;
        }
        // fdatasync covers the new blocks' allocation; a new size or version needs fsync.
        if created || raised {
            file.sync_all().map_err(io("fsync"))?;
        } else {
            file.sync_data().map_err(io("fdatasync"))?;
        }
        if created {
            self.fsync_obj_dir()?;
        }
        self.partials.oids().insert(oid);
        Ok(true)
    }

    /// Whether a partial copy of `oid` exists.
    pub fn has_partial(&self, oid: Oid) -> bool {
        self.partials.oids().contains(&oid)
    }

    /// The partial copies in the store.
    pub fn partials(&self) -> Vec<Oid> {
        let mut v: Vec<Oid> = self.partials.oids().iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// The version of the partial copy of `oid`, if there is one.
    pub fn partial_version(&self, oid: Oid) -> Option<u32> {
        if !self.has_partial(oid) {
            return None;
        }
        File::open(self.partial_path(oid))
            .ok()
            .map(|f| crate::version::read_version(&f))
    }

    /// The partial copy of `oid`: its version and the ranges written with their bytes;
    /// `None` if there is none.
    pub fn read_partial(&self, oid: Oid) -> Result<Option<(u32, Partial)>, StoreError> {
        if !self.has_partial(oid) {
            return Ok(None);
        }
        let path = self.partial_path(oid);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::object(oid, "open", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::object(oid, "fstat", &path, e))?
            .len();
        let spans =
            data_ranges(&file, len).map_err(|e| StoreError::object(oid, "lseek", &path, e))?;
        let mut ranges = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            let (Ok(offset), Ok(n)) = (u32::try_from(start), usize::try_from(end - start)) else {
                return Err(StoreError::OutOfBounds {
                    oid,
                    offset: start,
                    len: end - start,
                    size: len,
                });
            };
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, start)
                .map_err(|e| crate::error::read_error(oid, &path, e))?;
            ranges.push((offset, Bytes::from(buf)));
        }
        Ok(Some((
            crate::version::read_version(&file),
            Partial { ranges },
        )))
    }

    /// Lays the bytes the partial copy of `oid` holds over `buf` (the whole object), and
    /// returns the partial copy's version; `None` (and `buf` untouched) if there is none.
    pub fn overlay_partial(&self, oid: Oid, buf: &mut [u8]) -> Result<Option<u32>, StoreError> {
        Ok(self.read_partial(oid)?.map(|(version, partial)| {
            partial.overlay(buf);
            version
        }))
    }

    /// Removes the partial copy of `oid`, if any (not durably: one that comes back after
    /// a crash is dropped at the next open if the object exists, and otherwise merged
    /// by the version rule of the caller's recovery).
    pub fn discard_partial(&self, oid: Oid) -> Result<(), StoreError> {
        if !self.partials.oids().remove(&oid) {
            return Ok(());
        }
        remove_if_present(&self.partial_path(oid))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::store::{CreateSpec, StoreConfig, SyncMode};

    const SIZE: u64 = 64 * PARTIAL_ALIGN;

    fn open(dir: &std::path::Path) -> Store {
        Store::open(StoreConfig {
            dir: dir.to_path_buf(),
            sync: SyncMode::Writethrough,
        })
        .unwrap()
    }

    #[test]
    fn writes_land_over_the_fetched_copy_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        let oid = Oid::new(0x1234);
        let a = PARTIAL_ALIGN as usize;
        assert!(s.write_partial(oid, SIZE, 0, &vec![7u8; a], 3).unwrap());
        assert!(
            s.write_partial(oid, SIZE, 10 * PARTIAL_ALIGN, &vec![9u8; 2 * a], 5)
                .unwrap()
        );
        assert!(!s.exists(oid), "a partial copy is not an object");
        assert!(s.list().unwrap().is_empty());
        let mut buf = vec![1u8; SIZE as usize];
        assert_eq!(s.overlay_partial(oid, &mut buf).unwrap(), Some(5));
        assert!(buf[..a].iter().all(|b| *b == 7));
        assert!(
            buf[a..10 * a].iter().all(|b| *b == 1),
            "holes keep the fetched bytes"
        );
        assert!(buf[10 * a..12 * a].iter().all(|b| *b == 9));
        assert!(buf[12 * a..].iter().all(|b| *b == 1));
        // Reopened (a restart): the written ranges are still known.
        drop(s);
        let s = open(d.path());
        assert_eq!(s.partials(), vec![oid]);
        let mut again = vec![1u8; SIZE as usize];
        assert_eq!(s.overlay_partial(oid, &mut again).unwrap(), Some(5));
        assert_eq!(again, buf);
        // Creating the object removes it.
        s.create_versioned(
            oid,
            CreateSpec {
                size: SIZE,
                sparse: false,
            },
            0,
            &buf,
            5,
        )
        .unwrap();
        assert!(!s.has_partial(oid));
        assert!(!d.path().join("obj").join(names::partial_name(oid)).exists());
    }

    #[test]
    fn declines_what_it_cannot_keep_exactly() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        let oid = Oid::new(0x99);
        assert!(
            !s.write_partial(oid, SIZE, 512, &[1u8; 4096], 1).unwrap(),
            "unaligned offset"
        );
        assert!(
            !s.write_partial(oid, SIZE, 0, &[1u8; 512], 1).unwrap(),
            "unaligned length"
        );
        assert!(matches!(
            s.write_partial(oid, SIZE, SIZE, &[1u8; 4096], 1),
            Err(StoreError::OutOfBounds { .. })
        ));
        s.create_and_write(
            oid,
            CreateSpec {
                size: SIZE,
                sparse: true,
            },
            0,
            &[2u8; 8],
        )
        .unwrap();
        assert!(
            !s.write_partial(oid, SIZE, 0, &[1u8; 4096], 1).unwrap(),
            "object exists"
        );
        assert!(!s.has_partial(oid));
    }

    #[test]
    fn a_partial_beside_its_object_is_dropped_at_open() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        let oid = Oid::new(0x77);
        assert!(s.write_partial(oid, SIZE, 0, &[3u8; 4096], 1).unwrap());
        // As if a crash hit a merge between the object's rename and the partial's unlink.
        std::fs::write(
            d.path().join("obj").join(names::object_name(oid)),
            vec![0u8; SIZE as usize],
        )
        .unwrap();
        drop(s);
        let s = open(d.path());
        assert!(s.partials().is_empty());
        assert!(!d.path().join("obj").join(names::partial_name(oid)).exists());
    }
}
