//! The FETCH_PEER answer (0xF2, a sheepdog-rs peer opcode): the version of the answering
//! node's copy of an object (the epoch of its last write, 0 = unknown) as a little-endian
//! u32, then the copy's bytes when the request's `data_length` has room for them (else
//! nothing). Bit 31 of the version ([`SUSPECT`]) marks a copy of a node that restarted
//! after an unclean stop and has not compared it with the others yet: its version says
//! when it was last written, but writeback data acknowledged before the stop may be
//! missing from it.
//!
//! Bit 30 ([`PARTIAL`]) marks a *partial copy*: the node does not hold the object, only
//! the writes it received for it since recovery placed it there (the epoch of the last one
//! is the version). Its data is then a [`Partial`]: the ranges written and their bytes.

use bytes::Bytes;

use crate::DecodeError;

/// Bytes of the version in front of the data.
pub const VERSION_SIZE: usize = 4;

/// The version bit that marks a suspect copy (epochs never reach it).
pub const SUSPECT: u32 = 1 << 31;

/// The version bit that marks a partial copy (epochs never reach it).
pub const PARTIAL: u32 = 1 << 30;

/// A FETCH_PEER answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCopy {
    /// The copy's version (the epoch of its last write; 0 = unknown).
    pub version: u32,
    /// The copy's bytes; empty when the request had no room for them.
    pub data: Bytes,
}

impl PeerCopy {
    /// The epoch of the copy's last write (the version without [`SUSPECT`] and
    /// [`PARTIAL`]).
    pub fn epoch(&self) -> u32 {
        self.version & !(SUSPECT | PARTIAL)
    }

    /// Whether this is a partial copy (see the module docs).
    pub fn partial(&self) -> bool {
        self.version & PARTIAL != 0
    }

    /// Whether the copy is suspect (see the module docs).
    pub fn suspect(&self) -> bool {
        self.version & SUSPECT != 0
    }

    /// Encoded size of an answer with `data_len` bytes of data (saturating: a caller
    /// compares it with a cap).
    pub fn size(data_len: usize) -> usize {
        data_len.saturating_add(VERSION_SIZE)
    }

    /// Whether an answer carrying `data_len` bytes of data fits in `room`, the request's
    /// `data_length`.
    pub fn fits(room: u32, data_len: u64) -> bool {
        u64::from(room) >= data_len.saturating_add(VERSION_SIZE as u64)
    }

    /// Encodes the version, then the data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::size(self.data.len()));
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Encodes an answer of `version` with `len` bytes of data that `fill` writes in place
    /// (the sheep reads the object straight into the answer); `fill`'s error is returned.
    pub fn encode_with<E>(
        version: u32,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let mut out = vec![0; Self::size(len)];
        let (head, data) = out.split_at_mut(VERSION_SIZE);
        head.copy_from_slice(&version.to_le_bytes());
        fill(data)?;
        Ok(out)
    }

    /// Decodes a whole answer without copying the data (`data` shares `buf`); fewer than
    /// 4 bytes is `Truncated`.
    pub fn decode(buf: Bytes) -> Result<Self, DecodeError> {
        let head = buf
            .get(..VERSION_SIZE)
            .and_then(|b| <[u8; VERSION_SIZE]>::try_from(b).ok())
            .ok_or(DecodeError::Truncated)?;
        Ok(PeerCopy {
            version: u32::from_le_bytes(head),
            data: buf.slice(VERSION_SIZE..),
        })
    }
}

/// The data of a partial copy's FETCH_PEER answer: a little-endian u32 count, then per
/// range its offset and length (u32 each), then the ranges' bytes in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Partial {
    /// The ranges written: offset in the object, and the bytes found there.
    pub ranges: Vec<(u32, Bytes)>,
}

/// Bytes per range in the range table.
const RANGE_ENTRY: usize = 8;

impl Partial {
    /// The room a FETCH_PEER request needs for the partial copy of an object of
    /// `object_size` bytes whose writes are aligned to `align`: the version, the count,
    /// a table entry per range (at most one per two aligned blocks), and the bytes.
    pub fn room(object_size: u64, align: u64) -> u64 {
        let ranges = object_size / align.max(1) / 2 + 1;
        object_size + (VERSION_SIZE as u64) + 4 + ranges * RANGE_ENTRY as u64
    }

    /// Encodes the ranges.
    pub fn encode(&self) -> Vec<u8> {
        let bytes: usize = self.ranges.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(4 + self.ranges.len() * RANGE_ENTRY + bytes);
        let count = u32::try_from(self.ranges.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for (offset, b) in &self.ranges {
            out.extend_from_slice(&offset.to_le_bytes());
            let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
        }
        for (_, b) in &self.ranges {
            out.extend_from_slice(b);
        }
        out
    }

    /// Decodes the ranges (sharing `buf`), checking that the table fits the data, that
    /// the bytes are exactly the ranges' and that every range ends within `object_size`.
    pub fn decode(buf: &Bytes, object_size: u64) -> Result<Self, DecodeError> {
        let word = |at: usize| -> Result<u32, DecodeError> {
            buf.get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .ok_or(DecodeError::Truncated)
        };
        let count = word(0)? as usize;
        let table_end = count
            .checked_mul(RANGE_ENTRY)
            .and_then(|t| t.checked_add(4))
            .filter(|end| *end <= buf.len())
            .ok_or(DecodeError::BadLength {
                what: "partial range count",
                len: count,
            })?;
        let mut ranges = Vec::with_capacity(count);
        let mut at = table_end;
        for i in 0..count {
            let offset = word(4 + i * RANGE_ENTRY)?;
            let len = word(8 + i * RANGE_ENTRY)? as usize;
            if u64::from(offset) + len as u64 > object_size {
                return Err(DecodeError::BadLength {
                    what: "partial range end",
                    len: offset as usize + len,
                });
            }
            let end = at
                .checked_add(len)
                .filter(|e| *e <= buf.len())
                .ok_or(DecodeError::Truncated)?;
            ranges.push((offset, buf.slice(at..end)));
            at = end;
        }
        if at != buf.len() {
            return Err(DecodeError::BadLength {
                what: "partial copy bytes",
                len: buf.len(),
            });
        }
        Ok(Partial { ranges })
    }

    /// Lays the ranges over `object` (the whole object's bytes); ranges past its end are
    /// cut off (a decoded `Partial` has none).
    pub fn overlay(&self, object: &mut [u8]) {
        for (offset, b) in &self.ranges {
            let start = *offset as usize;
            let end = start.saturating_add(b.len()).min(object.len());
            if let (Some(dst), Some(src)) = (
                object.get_mut(start..end),
                b.get(..end.saturating_sub(start)),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }
}

#[cfg(test)]
mod partial_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_flags_are_not_epochs() {
        let c = PeerCopy {
            version: 7 | PARTIAL | SUSPECT,
            data: Bytes::new(),
        };
        assert_eq!(c.epoch(), 7);
        assert!(c.partial() && c.suspect());
    }

    #[test]
    fn ranges_round_trip_and_overlay() {
        let p = Partial {
            ranges: vec![
                (0, Bytes::from(vec![1u8; 8])),
                (16, Bytes::from(vec![2u8; 4])),
            ],
        };
        let enc = Bytes::from(p.encode());
        assert_eq!(Partial::decode(&enc, 32).unwrap(), p);
        assert!(
            Partial::decode(&enc, 19).is_err(),
            "a range past the object"
        );
        let mut obj = vec![9u8; 32];
        p.overlay(&mut obj);
        assert_eq!(&obj[..8], &[1u8; 8]);
        assert_eq!(&obj[8..16], &[9u8; 8]);
        assert_eq!(&obj[16..20], &[2u8; 4]);
        assert_eq!(&obj[20..], &[9u8; 12]);
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(data in proptest::collection::vec(any::<u8>(), 0..256), size in 0usize..1024) {
            let buf = Bytes::from(data);
            if let Ok(p) = Partial::decode(&buf, size as u64) {
                prop_assert_eq!(Partial::decode(&Bytes::from(p.encode()), size as u64), Ok(p.clone()));
                let mut obj = vec![0u8; size];
                p.overlay(&mut obj);
            }
        }
    }
}
