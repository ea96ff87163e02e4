//! Bulk object I/O with `O_DIRECT`, in [`PIECE`]s: whole new objects written (recovery, a
//! client's first whole-object write) and whole copies read to be sent elsewhere (a
//! FETCH_PEER answer). The bytes go between an aligned buffer and the disk without being
//! copied into, and filling, the page cache. A copy in transit is bulk data no one here is
//! about to read; copying it into fresh page-cache pages cost more CPU than anything else in
//! a recovery (measured: 43% of all CPU during one, where memory is faulted in by the
//! hypervisor on first touch), and it competed with clients for both cores.
//!
//! The pieces are small on purpose: the disk serves one request at a time from the guest's
//! point of view, so a client's 4 KiB write waits behind whatever bulk request is ahead of
//! it. A buffered read of a 4 MiB object goes out as one 4 MiB request (readahead), and a
//! client write behind it waited a 27 ms p99 on this machine kind against 1.7 ms behind
//! 256 KiB reads at a similar rate (writes: 11 ms behind 1 MiB pieces, 3 ms behind 256 KiB).
//!
//! Used only where it applies: the I/O starts on [`ALIGN`] (a write also ends on it), and
//! the file system accepts `O_DIRECT` (tmpfs before Linux 6.6 and some FUSE file systems do
//! not: the first `EINVAL` turns it off for the store's lifetime, and bulk I/O goes through
//! the page cache as before). Durability is unchanged: a create still fsyncs the file
//! before renaming it into place; a direct read of a range the page cache holds dirty has
//! the kernel write that range first, so it reads what was written.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Offset, length and buffer alignment `O_DIRECT` needs (the largest logical block size
/// in use).
pub(crate) const ALIGN: usize = 4096;
/// The aligned buffer direct I/O goes through, one piece (one disk request) at a time.
const PIECE: usize = 256 << 10;
/// I/O smaller than this stays buffered (a direct request of a few blocks gains nothing).
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
        self.reads(offset, len) && len.is_multiple_of(ALIGN)
    }

    /// Whether a bulk read of `len` bytes at `offset` should go direct (the object may end
    /// anywhere: the last piece is read whole and cut).
    pub(crate) fn reads(&self, offset: u64, len: usize) -> bool {
        !self.unsupported.load(Ordering::Relaxed)
            && len >= MIN_LEN
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

    /// Reads `buf.len()` bytes at `offset` (aligned) from `file`, opened `O_DIRECT`, one
    /// [`PIECE`] at a time through an aligned buffer. `EINVAL` (see [`refuses`]) is the
    /// caller's to handle: nothing is turned off here.
    pub(crate) fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with_buffer(|aligned| read_through(aligned, file, buf, offset))
    }

    fn write_aligned(&self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        self.with_buffer(|aligned| write_through(aligned, file, data, offset))
    }

    /// Runs `f` with an aligned [`PIECE`]-sized buffer from the pool.
    fn with_buffer(&self, f: impl FnOnce(&mut [u8]) -> io::Result<()>) -> io::Result<()> {
        let mut buf = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| vec![0u8; PIECE + ALIGN]);
        let start = buf.as_ptr().align_offset(ALIGN);
        let r = match buf.get_mut(start..start + PIECE) {
            Some(aligned) => f(aligned),
            None => Err(io::Error::other("aligned buffer too small")),
        };
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(buf);
        }
        r
    }
}

fn write_through(aligned: &mut [u8], file: &File, data: &[u8], mut offset: u64) -> io::Result<()> {
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

/// Fills `buf` from `file` at `offset`, each piece read whole into `aligned` (rounded up to
/// [`ALIGN`]: the file may end inside the last one) and copied out.
fn read_through(
    aligned: &mut [u8],
    file: &File,
    buf: &mut [u8],
    mut offset: u64,
) -> io::Result<()> {
    for piece in buf.chunks_mut(PIECE) {
        let want = piece.len().next_multiple_of(ALIGN);
        let src = aligned
            .get_mut(..want)
            .ok_or_else(|| io::Error::other("piece larger than the buffer"))?;
        let mut got = 0;
        while got < piece.len() {
            let rest = src.get_mut(got..).unwrap_or_default();
            match file.read_at(rest, offset + got as u64) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        piece.copy_from_slice(src.get(..piece.len()).unwrap_or_default());
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
