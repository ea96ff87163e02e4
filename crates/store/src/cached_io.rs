//! Object I/O that never waits for the disk: done on the caller's thread when the page
//! cache can serve it, declined otherwise. The daemon tries these on its async threads
//! first and falls back to the blocking calls ([`Store::read`], [`Store::write`]) on a
//! thread that may wait: a page-cache hit then costs its syscall, not a thread hand-off.
//!
//! **Invariant:** a declined call (`None`) did nothing: no byte moved, nothing was marked
//! dirty, so the caller may simply do the blocking call instead.

use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;

use rustix::io::{Errno, ReadWriteFlags};
use sd_proto::Oid;

use crate::error::{StoreError, check_range, len_u64};
use crate::store::{Store, SyncMode};

/// Page size of the cache: a write covering whole pages never has to read one first.
const PAGE: u64 = 4096;

impl Store {
    /// Reads `len` bytes of object `oid` at `offset` if the object is open and every byte
    /// is in the page cache (`preadv2(RWF_NOWAIT)`); `None` otherwise (not open, not
    /// cached, or the kernel could not promise not to wait).
    ///
    /// An error is the read's own answer ([`StoreError::OutOfBounds`] before anything is
    /// allocated, [`StoreError::Unreadable`] for `EIO`), as from [`Store::read`].
    pub fn read_cached(
        &self,
        oid: Oid,
        offset: u64,
        len: u64,
    ) -> Option<Result<Vec<u8>, StoreError>> {
        let o = self.fds.get(oid)?;
        if let Err(e) = check_range(oid, offset, len, o.len) {
            return Some(Err(e));
        }
        // In bounds of an object file, so the length fits in memory terms of the object.
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset.checked_add(len_u64(done))?;
            let rest = buf.get_mut(done..)?;
            match rustix::io::preadv2(
                &*o.file,
                &mut [IoSliceMut::new(rest)],
                at,
                ReadWriteFlags::NOWAIT,
            ) {
                Ok(0) => return None,
                Ok(n) => done += n,
                Err(Errno::INTR) => {}
                // EAGAIN: some page is not cached; EOPNOTSUPP: no such promise here.
                Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS) => return None,
                Err(e) => {
                    return Some(Err(crate::error::read_error(
                        oid,
                        &self.object_path(oid),
                        e.into(),
                    )));
                }
            }
        }
        Some(Ok(buf))
    }

    /// Writes `data` into object `oid` at `offset` when that cannot wait for the disk: a
    /// writeback store, the object open, its version already `version`, and the range
    /// whole pages (a partial page may have to be read from disk first). `None`: declined,
    /// do [`Store::write`] and [`Store::set_version`] where blocking is allowed.
    ///
    /// The write lands in the page cache and is marked dirty, exactly as [`Store::write`]
    /// in writeback mode; the kernel may still throttle a writer of too much dirty memory,
    /// which the daemon bounds itself (`--writeback-max-dirty`).
    pub fn write_cached(
        &self,
        oid: Oid,
        offset: u64,
        data: &[u8],
        version: u32,
    ) -> Option<Result<(), StoreError>> {
        let len = len_u64(data.len());
        if self.sync != SyncMode::Writeback
            || !offset.is_multiple_of(PAGE)
            || !len.is_multiple_of(PAGE)
            || !self.has_version(oid, version)
        {
            return None;
        }
        let o = self.fds.get(oid)?;
        if let Err(e) = check_range(oid, offset, len, o.len) {
            return Some(Err(e));
        }
        if let Err(e) = o.file.write_all_at(data, offset) {
            return Some(Err(StoreError::object(
                oid,
                "pwrite",
                &self.object_path(oid),
                e,
            )));
        }
        self.mark_dirty(oid, len);
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CreateSpec, StoreConfig};

    const SIZE: u64 = 64 << 10;

    fn store(sync: SyncMode) -> (tempfile::TempDir, Store, Oid) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig {
            dir: tmp.path().to_path_buf(),
            sync,
        })
        .expect("open");
        let oid = Oid::new(0x42);
        let spec = CreateSpec {
            size: SIZE,
            sparse: false,
        };
        store
            .create_versioned(oid, spec, 0, b"x", 7)
            .expect("create");
        (tmp, store, oid)
    }

    fn read_back(store: &Store, oid: Oid, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        store.read(oid, offset, &mut buf).expect("read");
        buf
    }

    #[test]
    fn a_page_write_at_the_known_version_is_done_and_marked_dirty() {
        let (_tmp, store, oid) = store(SyncMode::Writeback);
        // Not open yet: declined, nothing written.
        assert!(store.write_cached(oid, 4096, &[1; 4096], 7).is_none());
        assert_eq!(read_back(&store, oid, 4096, 4096), vec![0; 4096]);
        assert_eq!(store.dirty_bytes(), 0);
        // Open now (the read opened it): done on this thread.
        store
            .write_cached(oid, 4096, &[1; 8192], 7)
            .expect("taken")
            .expect("written");
        assert_eq!(read_back(&store, oid, 4096, 8192), vec![1; 8192]);
        assert_eq!(store.dirty_bytes(), 8192);
    }

    #[test]
    fn declines_what_could_wait_for_the_disk_or_must_change_metadata() {
        let (_tmp, store, oid) = store(SyncMode::Writeback);
        let _ = read_back(&store, oid, 0, 1);
        // A partial page, a new version (an xattr write), another object.
        assert!(store.write_cached(oid, 512, &[1; 4096], 7).is_none());
        assert!(store.write_cached(oid, 0, &[1; 100], 7).is_none());
        assert!(store.write_cached(oid, 0, &[1; 4096], 8).is_none());
        assert!(
            store
                .write_cached(Oid::new(0x43), 0, &[1; 4096], 7)
                .is_none()
        );
        assert_eq!(read_back(&store, oid, 0, 8192)[1..], vec![0; 8191][..]);
        assert_eq!(store.dirty_bytes(), 0);
        // Writethrough: every write waits for the disk.
        let (_tmp, wt, oid) = self::store(SyncMode::Writethrough);
        let _ = read_back(&wt, oid, 0, 1);
        assert!(wt.write_cached(oid, 0, &[1; 4096], 7).is_none());
    }

    #[test]
    fn out_of_bounds_is_refused_before_anything_is_done() {
        let (_tmp, store, oid) = store(SyncMode::Writeback);
        let _ = read_back(&store, oid, 0, 1);
        let past = store
            .write_cached(oid, SIZE, &[1; 4096], 7)
            .expect("answered");
        assert!(matches!(past, Err(StoreError::OutOfBounds { .. })));
        // A length the object cannot hold is refused without allocating it.
        let huge = store.read_cached(oid, 0, u64::MAX).expect("answered");
        assert!(matches!(huge, Err(StoreError::OutOfBounds { .. })));
        let wrap = store.read_cached(oid, u64::MAX, 2).expect("answered");
        assert!(matches!(wrap, Err(StoreError::OutOfBounds { .. })));
        assert_eq!(store.dirty_bytes(), 0);
    }

    #[test]
    fn a_cached_read_returns_the_bytes_written() {
        let (_tmp, store, oid) = store(SyncMode::Writeback);
        assert!(store.read_cached(oid, 0, 1).is_none(), "not open yet");
        store.write(oid, 8192, &[9; 4096]).expect("write");
        // Just written through the page cache, so cached: served here, or declined if the
        // kernel cannot promise (then the caller reads on a blocking thread).
        if let Some(r) = store.read_cached(oid, 8192 - 1, 4098) {
            let got = r.expect("read");
            assert_eq!(got.first(), Some(&0));
            assert_eq!(got.get(1..4097), Some(&[9u8; 4096][..]));
            assert_eq!(got.last(), Some(&0));
        }
    }
}
