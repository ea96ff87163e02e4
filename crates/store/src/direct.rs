//! Whole new objects written with `O_DIRECT`: the bytes of a created copy (recovery, a
//! client's first whole-object write) go from an aligned buffer to the disk without being
//! copied into, and filling, the page cache. A recovered copy is bulk data no one is about
//! to read; copying it into fresh page-cache pages cost more CPU than anything else in a
//! recovery (measured: 43% of all CPU during one, where memory is faulted in by the
//! hypervisor on first touch), and it competed with clients for both cores.
//!
//! Used only where it applies: the write starts and ends on [`ALIGN`], and the file system
//! accepts `O_DIRECT` (tmpfs before Linux 6.6 and some FUSE file systems do not: the first
//! `EINVAL` turns it off for the store's lifetime, and creates are buffered as before).
//! Durability is unchanged: the create still fsyncs the file before renaming it into place.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Offset, length and buffer alignment `O_DIRECT` needs (the largest logical block size
/// in use).
pub(crate) const ALIGN: usize = 4096;
/// The aligned buffer a direct write goes through, one piece at a time.
const PIECE: usize = 1 << 20;
/// Writes smaller than this stay buffered (a direct write of a few blocks gains nothing).
const MIN_LEN: usize = 64 << 10;
/// Aligned buffers kept for reuse (fresh memory costs page faults on every use).
const POOL: usize = 4;

/// Whether `O_DIRECT` works here, and the aligned buffers direct writes use.
#[derive(Debug, Default)]
pub(crate) struct Direct {
    unsupported: AtomicBool,
    pool: Mutex<Vec<Vec<u8>>>,
}

impl Direct {
    /// Whether a create writing `len` bytes at `offset` should open its file `O_DIRECT`.
    pub(crate) fn applies(&self, offset: u64, len: usize) -> bool {
        !self.unsupported.load(Ordering::Relaxed)
            && len >= MIN_LEN
            && len.is_multiple_of(ALIGN)
            && offset.is_multiple_of(ALIGN as u64)
    }

    /// The file system refused `O_DIRECT`: creates are buffered from now on.
    pub(crate) fn refused(&self) {
        if !self.unsupported.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "the store's file system refuses O_DIRECT: new objects are written through the page cache"
            );
        }
    }

    /// Writes `data` (length a multiple of [`ALIGN`]) at `offset` (aligned) to `file`,
    /// opened `O_DIRECT`, through an aligned buffer. A write the device refuses (an
    /// alignment it does not take) is done buffered, and so are later creates.
    pub(crate) fn write(&self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        match self.write_aligned(file, data, offset) {
            Err(e) if refuses(&e) => {
                self.refused();
                rustix::fs::fcntl_setfl(file, rustix::fs::OFlags::empty())?;
                file.write_all_at(data, offset)
            }
            other => other,
        }
    }

    fn write_aligned(&self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        let mut buf = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| vec![0u8; PIECE + ALIGN]);
        let r = write_through(&mut buf, file, data, offset);
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(buf);
        }
        r
    }
}

fn write_through(buf: &mut [u8], file: &File, data: &[u8], mut offset: u64) -> io::Result<()> {
    let start = buf.as_ptr().align_offset(ALIGN);
    let aligned = buf
        .get_mut(start..start + PIECE)
        .ok_or_else(|| io::Error::other("aligned buffer too small"))?;
    for piece in data.chunks(PIECE) {
        let dst = aligned
            .get_mut(..piece.len())
            .ok_or_else(|| io::Error::other("piece larger than the buffer"))?;
        dst.copy_from_slice(piece);
        file.write_all_at(dst, offset)?;
        offset += piece.len() as u64;
    }
    Ok(())
}

/// Whether `e` is the file system or device refusing `O_DIRECT` (`EINVAL`).
pub(crate) fn refuses(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}

/// The `open(2)` flag, for `OpenOptionsExt::custom_flags`.
pub(crate) fn open_flag() -> i32 {
    i32::try_from(rustix::fs::OFlags::DIRECT.bits()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_aligned_bulk_writes_go_direct() {
        let d = Direct::default();
        assert!(d.applies(0, 4 << 20));
        assert!(d.applies(8192, 64 << 10));
        assert!(!d.applies(0, 4096), "small");
        assert!(!d.applies(0, (4 << 20) + 512), "unaligned length");
        assert!(!d.applies(512, 1 << 20), "unaligned offset");
        d.refused();
        assert!(!d.applies(0, 4 << 20), "refused by the file system");
    }

    #[test]
    fn a_direct_write_lands_whole_and_reuses_its_buffer() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(open_flag())
            .open(&path)
        {
            Ok(f) => f,
            // The test directory's file system has no O_DIRECT: nothing to check here.
            Err(e) if e.raw_os_error() == Some(22) => return,
            Err(e) => panic!("{e}"),
        };
        let data: Vec<u8> = (0..PIECE * 2 + 3 * ALIGN)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let d = Direct::default();
        d.write(&file, &data, ALIGN as u64).unwrap();
        d.write(&file, &data[..ALIGN * 16], 0).unwrap();
        drop(file);
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[..ALIGN * 16], &data[..ALIGN * 16]);
        assert_eq!(&back[ALIGN * 16..ALIGN + data.len()], &data[ALIGN * 15..]);
        assert_eq!(d.pool.lock().unwrap().len(), 1, "one buffer, reused");
    }
}
