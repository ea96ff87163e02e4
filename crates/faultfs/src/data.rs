//! [`FileData`]: the bytes of one file as a sparse map of copy-on-write pages, so that the
//! durable copy of a file and its live copy share every page neither changed.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Bytes per page.
pub const PAGE: usize = 4096;
/// [`PAGE`] as a file offset.
pub const PAGE_U64: u64 = 4096;
/// The largest file size accepted (1 TiB): offsets past it are `EFBIG`.
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// One page of file data; shared between copies until one of them writes to it.
pub type Page = Arc<[u8; PAGE]>;

/// The page of zeros every allocated-but-unwritten page starts as (shared, never written).
fn zero_page() -> Page {
    static ZERO: OnceLock<Page> = OnceLock::new();
    ZERO.get_or_init(|| Arc::new([0u8; PAGE])).clone()
}

/// A file's size and data. A missing page is a hole and reads as zeros.
///
/// **Invariant:** no page lies wholly past `size`, and the bytes of the last page past
/// `size` are zero, so growing a file exposes zeros.
#[derive(Debug, Clone, Default)]
pub struct FileData {
    size: u64,
    pages: BTreeMap<u64, Page>,
}

/// Page index of a byte offset.
fn page_of(offset: u64) -> u64 {
    offset / PAGE_U64
}

/// Offset within its page (always `< PAGE`, so the cast cannot truncate).
fn in_page(offset: u64) -> usize {
    usize::try_from(offset % PAGE_U64).unwrap_or(0)
}

/// A byte count as `u64` (a `usize` always fits on the 64-bit hosts FUSE runs on).
pub fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

impl FileData {
    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Pages that hold data (allocated), each [`PAGE`] bytes.
    pub fn allocated_pages(&self) -> u64 {
        len_u64(self.pages.len())
    }

    /// The pages, by index (for the image file).
    pub(crate) fn pages(&self) -> impl Iterator<Item = (u64, &[u8; PAGE])> {
        self.pages.iter().map(|(i, p)| (*i, &**p))
    }

    /// Builds a file from its size and pages (for the image file); pages past `size` are
    /// dropped and the tail of the last one is zeroed, restoring the invariant.
    pub(crate) fn from_parts(size: u64, pages: BTreeMap<u64, Page>) -> FileData {
        let mut f = FileData { size, pages };
        f.trim(size);
        f
    }

    /// Up to `len` bytes at `offset`, fewer at the end of the file.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len_u64(len)).min(self.size);
        if offset >= end {
            return Vec::new();
        }
        let n = usize::try_from(end - offset).unwrap_or(0);
        let mut out = vec![0u8; n];
        let mut at = offset;
        while at < end {
            let idx = page_of(at);
            let from = in_page(at);
            let take = (PAGE - from).min(usize::try_from(end - at).unwrap_or(PAGE));
            let dst = usize::try_from(at - offset).unwrap_or(0);
            if let (Some(page), Some(out)) = (self.pages.get(&idx), out.get_mut(dst..dst + take)) {
                out.copy_from_slice(page.get(from..from + take).unwrap_or_default());
            }
            at += len_u64(take);
        }
        out
    }

    /// Pages a write or allocation of `len` bytes at `offset` would newly allocate.
    pub fn new_pages(&self, offset: u64, len: u64) -> u64 {
        if len == 0 {
            return 0;
        }
        let (first, last) = (page_of(offset), page_of(offset.saturating_add(len - 1)));
        let present = len_u64(self.pages.range(first..=last).count());
        (last - first + 1).saturating_sub(present)
    }

    /// Writes `data` at `offset`, growing the file if it ends past the end. The caller
    /// checked `offset + data.len() <= MAX_FILE_SIZE`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + len_u64(done);
            let from = in_page(at);
            let take = (PAGE - from).min(data.len() - done);
            let page = self.pages.entry(page_of(at)).or_insert_with(zero_page);
            let page = Arc::make_mut(page);
            if let (Some(dst), Some(src)) =
                (page.get_mut(from..from + take), data.get(done..done + take))
            {
                dst.copy_from_slice(src);
            }
            done += take;
        }
        self.size = self.size.max(offset + len_u64(data.len()));
    }

    /// Allocates zeroed pages over `offset..offset + len` where there are holes and grows
    /// the file to cover the range (`fallocate` mode 0).
    pub fn allocate(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = offset + len;
        for idx in page_of(offset)..=page_of(end - 1) {
            self.pages.entry(idx).or_insert_with(zero_page);
        }
        self.size = self.size.max(end);
    }

    /// Truncates or extends (with a hole) to `len` bytes.
    pub fn set_len(&mut self, len: u64) {
        if len < self.size {
            self.trim(len);
        }
        self.size = len;
    }

    /// Drops the pages wholly past `len` and zeroes the tail of the last one.
    fn trim(&mut self, len: u64) {
        drop(self.pages.split_off(&len.div_ceil(PAGE_U64)));
        let tail = in_page(len);
        if tail == 0 {
            return;
        }
        if let Some(page) = self.pages.get_mut(&page_of(len))
            && page.get(tail..).is_some_and(|t| t.iter().any(|b| *b != 0))
            && let Some(t) = Arc::make_mut(page).get_mut(tail..)
        {
            t.fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_holes_and_truncate() {
        let mut f = FileData::default();
        f.write(5000, b"hello");
        assert_eq!(f.size(), 5005);
        assert_eq!(f.allocated_pages(), 1);
        assert_eq!(f.read(4998, 10), b"\0\0hello".to_vec());
        assert_eq!(f.read(0, 3), vec![0, 0, 0]);
        f.set_len(5002);
        assert_eq!(f.read(4998, 10), b"\0\0he".to_vec());
        f.set_len(9000);
        assert_eq!(f.read(5000, 10), b"he\0\0\0\0\0\0\0\0".to_vec());
        f.set_len(100);
        assert_eq!(f.allocated_pages(), 0);
        assert_eq!(f.read(0, 200), vec![0u8; 100]);
    }

    #[test]
    fn copies_share_pages_until_written() {
        let mut a = FileData::default();
        a.allocate(0, 3 * PAGE_U64);
        assert_eq!(a.allocated_pages(), 3);
        assert_eq!(a.size(), 3 * PAGE_U64);
        assert_eq!(a.new_pages(0, 5 * PAGE_U64), 2);
        let b = a.clone();
        a.write(10, b"x");
        assert_eq!(a.read(10, 1), b"x".to_vec());
        assert_eq!(b.read(10, 1), vec![0]);
        assert_eq!(zero_page().iter().filter(|b| **b != 0).count(), 0);
    }
}
