//! The FETCH_PEER answer (0xF2, a sheepdog-rs peer opcode): the version of the answering
//! node's copy of an object (the epoch of its last write, 0 = unknown) as a little-endian
//! u32, then the copy's bytes when the request's `data_length` has room for them (else
//! nothing). Bit 31 of the version ([`SUSPECT`]) marks a copy of a node that restarted
//! after an unclean stop and has not compared it with the others yet: its version says
//! when it was last written, but writeback data acknowledged before the stop may be
//! missing from it.

use bytes::Bytes;

use crate::DecodeError;

/// Bytes of the version in front of the data.
pub const VERSION_SIZE: usize = 4;

/// The version bit that marks a suspect copy (epochs never reach it).
pub const SUSPECT: u32 = 1 << 31;

/// A FETCH_PEER answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCopy {
    /// The copy's version (the epoch of its last write; 0 = unknown).
    pub version: u32,
    /// The copy's bytes; empty when the request had no room for them.
    pub data: Bytes,
}

impl PeerCopy {
    /// The epoch of the copy's last write (the version without [`SUSPECT`]).
    pub fn epoch(&self) -> u32 {
        self.version & !SUSPECT
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
