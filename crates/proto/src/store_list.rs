//! The GET_STORE_LIST answer (0x90, spec §6.2): the node's store driver names as ASCII text,
//! each followed by a space, then a NUL (`"plain \0"`; the C sheep also lists `tree`).

use crate::wire::c_str;

/// A GET_STORE_LIST answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreList {
    /// The driver names, in wire order; none is empty or holds a space or a NUL.
    pub names: Vec<Vec<u8>>,
}

impl StoreList {
    /// Encodes each name followed by a space, then the NUL.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.names.iter().map(|n| n.len() + 1).sum::<usize>() + 1;
        let mut out = Vec::with_capacity(len);
        for n in &self.names {
            out.extend_from_slice(n);
            out.push(b' ');
        }
        out.push(0);
        out
    }

    /// Decodes the text up to its first NUL (all of it without one) into the names between
    /// spaces; repeated spaces delimit no empty name. Any bytes decode: the text is only
    /// shown to the operator.
    pub fn decode(buf: &[u8]) -> Self {
        StoreList {
            names: c_str(buf)
                .split(|&b| b == b' ')
                .filter(|n| !n.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
        }
    }
}
