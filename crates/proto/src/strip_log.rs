//! The STRIP_LOG_PEER answer (0xF7, a sheepdog-rs extension between sheep): what an
//! erasure-coded strip's log holds, so a gateway can resolve a write some holders of the
//! stripe lack (docs/erasure-coding.md).
//!
//! ```text
//!  0 u32 version · 4 u32 n complete · 8 u64 last checkpointed wid
//! 16 u8 has pending · 17 u8 pending presumed orphaned · 18 u16 0 · 20 u32 pending epoch
//! 24 u64 pending wid · 32 u64 pending offset · 40 u32 pending length · 44 u32 0
//! 48 n × u64 complete wids, oldest first
//! ```

use crate::DecodeError;
use crate::wire::{Reader, Writer};

/// Fixed part of the answer.
pub const STRIP_LOG_HEADER: usize = 48;

/// The write of a strip's log that is not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pending {
    /// Its id.
    pub wid: u64,
    /// The epoch it was prepared in.
    pub epoch: u32,
    /// Its range in the strip.
    pub offset: u64,
    /// Its length.
    pub len: u32,
    /// The holder presumes its writer gone (it restarted since, the epoch moved on, or the
    /// write is old).
    pub orphaned: bool,
}

/// A STRIP_LOG_PEER answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StripLog {
    /// The strip's version: the epoch of its last complete write (0: unknown).
    pub version: u32,
    /// The last write checkpointed (0: none).
    pub last_wid: u64,
    /// The complete writes since, oldest first.
    pub complete: Vec<u64>,
    /// The pending write, if any.
    pub pending: Option<Pending>,
}

impl StripLog {
    /// Whether the strip has write `wid` complete.
    pub fn has_complete(&self, wid: u64) -> bool {
        wid != 0 && (self.last_wid == wid || self.complete.contains(&wid))
    }

    /// Whether the strip holds write `wid`, complete or pending.
    pub fn has(&self, wid: u64) -> bool {
        self.has_complete(wid) || self.pending.is_some_and(|p| p.wid == wid)
    }

    /// The last write complete on the strip (0: none known).
    pub fn latest_complete(&self) -> u64 {
        self.complete.last().copied().unwrap_or(self.last_wid)
    }

    /// Encodes the answer.
    pub fn encode(&self) -> Vec<u8> {
        let n = u32::try_from(self.complete.len()).unwrap_or(u32::MAX);
        let p = self.pending.unwrap_or_default();
        let mut w = Writer::with_capacity(STRIP_LOG_HEADER + self.complete.len() * 8);
        w.u32(self.version)
            .u32(n)
            .u64(self.last_wid)
            .u8(u8::from(self.pending.is_some()))
            .u8(u8::from(p.orphaned))
            .u8(0)
            .u8(0)
            .u32(p.epoch)
            .u64(p.wid)
            .u64(p.offset)
            .u32(p.len)
            .u32(0);
        for wid in self.complete.iter().take(n as usize) {
            w.u64(*wid);
        }
        w.buf
    }

    /// Decodes an answer; the count must match the length exactly (nothing is allocated
    /// beyond what arrived).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u32()?;
        let n = r.u32()?;
        let last_wid = r.u64()?;
        let has_pending = r.u8()? != 0;
        let orphaned = r.u8()? != 0;
        r.skip(2)?;
        let epoch = r.u32()?;
        let wid = r.u64()?;
        let offset = r.u64()?;
        let len = r.u32()?;
        r.skip(4)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if r.remaining() != n.saturating_mul(8) {
            return Err(DecodeError::BadLength {
                what: "strip log",
                len: buf.len(),
            });
        }
        let mut complete = Vec::with_capacity(n);
        for _ in 0..n {
            complete.push(r.u64()?);
        }
        Ok(StripLog {
            version,
            last_wid,
            complete,
            pending: has_pending.then_some(Pending {
                wid,
                epoch,
                offset,
                len,
                orphaned,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_lengths() {
        let log = StripLog {
            version: 7,
            last_wid: 0x11,
            complete: vec![0x12, 0x13],
            pending: Some(Pending {
                wid: 0x14,
                epoch: 7,
                offset: 4096,
                len: 512,
                orphaned: true,
            }),
        };
        let b = log.encode();
        assert_eq!(b.len(), STRIP_LOG_HEADER + 16);
        assert_eq!(StripLog::decode(&b), Ok(log.clone()));
        assert!(StripLog::decode(&b[..b.len() - 1]).is_err());
        let mut longer = b.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(StripLog::decode(&longer).is_err());
        // A count far beyond the bytes that came allocates nothing and fails.
        let mut huge = b;
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(StripLog::decode(&huge).is_err());
        let empty = StripLog::default();
        assert_eq!(StripLog::decode(&empty.encode()), Ok(empty));
        assert!(log.has_complete(0x11) && log.has_complete(0x13) && log.has(0x14));
        assert!(!log.has_complete(0x14) && !log.has_complete(0));
        assert_eq!(log.latest_complete(), 0x13);
    }
}
