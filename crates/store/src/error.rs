//! [`StoreError`]: one variant per decision the caller must make.

use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use sd_proto::Oid;

use crate::strip::StripId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (wire: `SD_RES_NO_OBJ`).
    #[error("object {0} does not exist")]
    NoObject(Oid),
    /// The byte range lies (partly) outside the object; nothing was read or written.
    #[error("object {oid}: range at offset {offset} of {len} bytes is outside its {size} bytes")]
    OutOfBounds {
        /// The object addressed.
        oid: Oid,
        /// Start of the requested range.
        offset: u64,
        /// Length of the requested range.
        len: u64,
        /// Size of the object (for a create: the requested size).
        size: u64,
    },
    /// The file system is full or over quota (`ENOSPC`/`EDQUOT`; wire: `SD_RES_NO_SPACE`).
    #[error("no space left for object {oid}")]
    NoSpace {
        /// The object being written or created.
        oid: Oid,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// A metadata file name is not a plain relative path below the base directory.
    #[error("invalid metadata file name {name:?}")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A metadata file is larger than [`meta::MAX_META_FILE`](crate::meta::MAX_META_FILE).
    #[error("metadata file {} has {size} bytes, more than {max}", path.display())]
    MetaTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Writeback data could not be made durable: these copies were lost and moved aside
    /// (wire: `SD_RES_EIO`; the daemon re-replicates them).
    #[error("fdatasync failed for {} object(s)", oids.len())]
    SyncFailed {
        /// The lost copies.
        oids: Vec<Oid>,
    },
    /// Reading an object copy failed with `EIO`: the copy cannot be trusted (wire:
    /// `SD_RES_EIO`; the daemon moves it aside with [`Store::quarantine`] and re-replicates
    /// it, as a copy a failed sync lost).
    ///
    /// [`Store::quarantine`]: crate::Store::quarantine
    #[error("object {oid}: reading {} failed", path.display())]
    Unreadable {
        /// The object whose copy failed.
        oid: Oid,
        /// Its file.
        path: PathBuf,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The strip does not exist (wire: `SD_RES_NO_OBJ`).
    #[error("strip {0} does not exist")]
    NoStrip(StripId),
    /// The byte range lies (partly) outside the strip; nothing was read or written.
    #[error("strip {id}: range at offset {offset} of {len} bytes is outside its {size} bytes")]
    StripOutOfBounds {
        /// The strip addressed.
        id: StripId,
        /// Start of the requested range.
        offset: u64,
        /// Length of the requested range.
        len: u64,
        /// Size of the strip.
        size: u64,
    },
    /// A write cannot be prepared: write `wid` is pending on the strip and must be
    /// resolved (completed or discarded) first.
    #[error("strip {id}: write {wid:#x} is pending")]
    StripInDoubt {
        /// The strip.
        id: StripId,
        /// The pending write.
        wid: u64,
    },
    /// The strip has no write `wid` to complete.
    #[error("strip {id}: no write {wid:#x}")]
    UnknownWrite {
        /// The strip.
        id: StripId,
        /// The write asked for.
        wid: u64,
    },
    /// Write `wid` is complete on the strip and cannot be discarded.
    #[error("strip {id}: write {wid:#x} is complete")]
    WriteComplete {
        /// The strip.
        id: StripId,
        /// The write.
        wid: u64,
    },
    /// The strip's log has no valid header: the strip cannot be trusted.
    #[error("strip {id}: log {} is corrupt", path.display())]
    StripCorrupt {
        /// The strip.
        id: StripId,
        /// Its log.
        path: PathBuf,
    },
    /// Any other I/O failure (wire: `SD_RES_EIO`).
    #[error("{op} {}", path.display())]
    Io {
        /// The operation that failed, e.g. `"pwrite"`.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// An I/O failure not tied to an object.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// An I/O failure on object `oid`: `ENOSPC`/`EDQUOT` become [`StoreError::NoSpace`].
    pub(crate) fn object(oid: Oid, op: &'static str, path: &Path, source: io::Error) -> StoreError {
        if is_no_space(&source) {
            StoreError::NoSpace { oid, source }
        } else {
            StoreError::io(op, path, source)
        }
    }
}

/// A failed read of object `oid`: `EIO` becomes [`StoreError::Unreadable`].
pub(crate) fn read_error(oid: Oid, path: &Path, source: io::Error) -> StoreError {
    if Errno::from_io_error(&source) == Some(Errno::IO) {
        StoreError::Unreadable {
            oid,
            path: path.to_path_buf(),
            source,
        }
    } else {
        StoreError::io("pread", path, source)
    }
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::NOSPC | Errno::DQUOT))
}

/// `Ok(())` when `offset..offset + len` lies inside `0..size`; overflow is out of bounds.
pub(crate) fn check_range(oid: Oid, offset: u64, len: u64, size: u64) -> Result<(), StoreError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(StoreError::OutOfBounds {
            oid,
            offset,
            len,
            size,
        }),
    }
}

/// A buffer length as `u64`; a length that does not fit can never be in bounds.
pub(crate) fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(offset: u64, len: u64, size: u64, ok: bool) {
        let r = check_range(Oid::new(1), offset, len, size);
        assert_eq!(r.is_ok(), ok, "offset {offset} len {len} size {size}");
    }

    #[test]
    fn ranges() {
        check(0, 0, 0, true);
        check(0, 10, 10, true);
        check(10, 0, 10, true);
        check(11, 0, 10, false);
        check(5, 6, 10, false);
        check(u64::MAX, 1, u64::MAX, false);
        check(1, u64::MAX, u64::MAX, false);
        check(u64::MAX, 0, u64::MAX, true);
    }

    #[test]
    fn no_space_is_classified() {
        let p = Path::new("x");
        let e = StoreError::object(Oid::new(1), "w", p, io::Error::from(Errno::NOSPC));
        assert!(matches!(e, StoreError::NoSpace { .. }));
        let e = StoreError::object(Oid::new(1), "w", p, io::Error::from(Errno::DQUOT));
        assert!(matches!(e, StoreError::NoSpace { .. }));
        let e = StoreError::object(Oid::new(1), "w", p, io::Error::from(Errno::IO));
        assert!(matches!(e, StoreError::Io { op: "w", .. }));
        let e = read_error(Oid::new(1), p, io::Error::from(Errno::IO));
        assert!(matches!(e, StoreError::Unreadable { .. }));
        let e = read_error(Oid::new(1), p, io::Error::from(Errno::BADF));
        assert!(matches!(e, StoreError::Io { op: "pread", .. }));
    }
}
