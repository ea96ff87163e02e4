//! The GET_OBJ_LIST answer (0xA1, spec §6.2): the object ids a node stores, one
//! little-endian u64 each, in no particular order.

use crate::wire::{Reader, Writer};
use crate::{DecodeError, Oid};

/// Bytes per object id in the list.
pub const OID_SIZE: usize = 8;

/// A GET_OBJ_LIST answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OidList {
    /// The object ids, in wire order.
    pub oids: Vec<Oid>,
}

impl OidList {
    /// Encoded size of a list of `n` ids (saturating: a caller compares it with a cap).
    pub fn size(n: usize) -> usize {
        n.saturating_mul(OID_SIZE)
    }

    /// Encodes the ids back to back.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::size(self.oids.len()));
        for oid in &self.oids {
            w.u64(oid.get());
        }
        w.buf
    }

    /// Decodes a whole answer; a length that is not a multiple of 8 is `BadLength`. The
    /// list holds at most `buf.len() / 8` ids: nothing is allocated beyond what arrived.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if !buf.len().is_multiple_of(OID_SIZE) {
            return Err(DecodeError::BadLength {
                what: "object list",
                len: buf.len(),
            });
        }
        let n = buf.len() / OID_SIZE;
        let mut r = Reader::new(buf);
        let mut oids = Vec::with_capacity(n);
        for _ in 0..n {
            oids.push(Oid::new(r.u64()?));
        }
        Ok(OidList { oids })
    }
}
