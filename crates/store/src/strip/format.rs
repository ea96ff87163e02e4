//! The on-disk format of a strip's log `DIR/obj/<oid>_<i>.log` (pure: bytes in, bytes out).
//!
//! A 32-byte header, then records appended one after the other:
//!
//! ```text
//! header  0 magic "SDSL" · 4 u16 format (1) · 6 u16 0 · 8 u32 generation · 12 u32 0
//!         16 u64 last applied wid · 24 u32 crc32 of bytes 0..24 · 28 u32 0
//! record  0 magic "SDSR" · 4 u8 kind (1: a prepared write) · 5 3×0 · 8 u32 generation
//!         12 u32 epoch · 16 u64 wid · 24 u64 strip offset · 32 u32 data length
//!         36 u32 crc32 of bytes 0..36 and the data · 40 data
//! ```
//!
//! All integers little-endian. A record of another generation than the header's is left
//! over from before the last checkpoint and ends the log, as does a torn or corrupt one.

/// Header length.
pub(crate) const HEADER_BYTES: usize = 32;
/// Header length, as a file offset.
pub(crate) const HEADER_LEN: u64 = HEADER_BYTES as u64;
/// Record header length (the data follows).
pub(crate) const RECORD_LEN: usize = 40;

const HEADER_MAGIC: &[u8; 4] = b"SDSL";
const RECORD_MAGIC: &[u8; 4] = b"SDSR";
const FORMAT: u16 = 1;
/// The one kind of record: a prepared write.
const KIND_WRITE: u8 = 1;

/// The log's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bumped by every checkpoint; records carry it.
    pub(crate) generation: u32,
    /// The wid of the last write applied to the strip file and checkpointed (0: none).
    pub(crate) last_wid: u64,
}

/// A record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) generation: u32,
    pub(crate) epoch: u32,
    pub(crate) wid: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl Header {
    /// The header's bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        };
        put(0, HEADER_MAGIC);
        put(4, &FORMAT.to_le_bytes());
        put(8, &self.generation.to_le_bytes());
        put(16, &self.last_wid.to_le_bytes());
        let crc = crc32fast::hash(b.get(..24).unwrap_or_default());
        if let Some(dst) = b.get_mut(24..28) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Parses a header; `None` if it is not one (wrong magic or format, bad checksum).
    pub(crate) fn decode(b: &[u8]) -> Option<Header> {
        if b.get(..4)? != HEADER_MAGIC || le_u16(b, 4)? != FORMAT {
            return None;
        }
        if le_u32(b, 24)? != crc32fast::hash(b.get(..24)?) {
            return None;
        }
        Some(Header {
            generation: le_u32(b, 8)?,
            last_wid: le_u64(b, 16)?,
        })
    }
}

impl RecordHeader {
    /// The record header's bytes for `data`.
    pub(crate) fn encode(&self, data: &[u8]) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        };
        put(0, RECORD_MAGIC);
        put(4, &[KIND_WRITE]);
        put(8, &self.generation.to_le_bytes());
        put(12, &self.epoch.to_le_bytes());
        put(16, &self.wid.to_le_bytes());
        put(24, &self.offset.to_le_bytes());
        put(32, &self.len.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(b.get(..36).unwrap_or_default());
        h.update(data);
        let crc = h.finalize().to_le_bytes();
        if let Some(dst) = b.get_mut(36..40) {
            dst.copy_from_slice(&crc);
        }
        b
    }

    /// Parses a record header (its checksum is checked with the data, by [`check`]);
    /// `None` if it is not one.
    ///
    /// [`check`]: RecordHeader::check
    pub(crate) fn decode(b: &[u8]) -> Option<RecordHeader> {
        if b.get(..4)? != RECORD_MAGIC {
            return None;
        }
        if *b.get(4)? != KIND_WRITE {
            return None;
        }
        Some(RecordHeader {
            generation: le_u32(b, 8)?,
            epoch: le_u32(b, 12)?,
            wid: le_u64(b, 16)?,
            offset: le_u64(b, 24)?,
            len: le_u32(b, 32)?,
        })
    }

    /// Whether `header` (the record's 40 bytes) and `data` carry a matching checksum.
    pub(crate) fn check(header: &[u8], data: &[u8]) -> bool {
        let (Some(head), Some(crc)) = (header.get(..36), le_u32(header, 36)) else {
            return false;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(head);
        h.update(data);
        h.finalize() == crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = Header {
            generation: 7,
            last_wid: 0xdead_beef_0102_0304,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Some(h));
        assert_eq!(&b[..4], b"SDSL");
        for i in 0..28 {
            let mut bad = b;
            bad[i] ^= 0x40;
            assert_eq!(Header::decode(&bad), None, "byte {i}");
        }
        assert_eq!(Header::decode(&b[..20]), None);
    }

    #[test]
    fn record_round_trips_and_checks_its_data() {
        let r = RecordHeader {
            generation: 3,
            epoch: 9,
            wid: 42,
            offset: 4096,
            len: 5,
        };
        let data = b"hello";
        let b = r.encode(data);
        assert_eq!(RecordHeader::decode(&b), Some(r));
        assert!(RecordHeader::check(&b, data));
        assert!(!RecordHeader::check(&b, b"hellO"));
        let mut bad = b;
        bad[20] ^= 1;
        assert!(!RecordHeader::check(&bad, data));
        let mut kind = b;
        kind[4] = 9;
        assert_eq!(RecordHeader::decode(&kind), None);
    }
}
