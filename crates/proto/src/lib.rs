//! The Sheepdog 1.0 wire protocol and on-disk record formats, byte-compatible with the C
//! implementation (see `shared/spec/sheepdog-protocol.md`).
//!
//! Pure: no I/O, no async runtime. Every decoder takes untrusted bytes and returns a
//! [`DecodeError`] instead of panicking; frame decoders check lengths before allocating.

pub mod attr;
pub mod cluster;
pub mod codec;
pub mod hash;
pub mod header;
pub mod ids;
pub mod inode;
pub mod node;
pub mod oid_list;
pub mod opcode;
pub mod peer_copy;
pub mod result;
pub mod stat;
pub mod store_list;
pub mod strip_check;
pub mod strip_log;
pub mod vdi_state;
mod wire;

pub use codec::{MAX_REQUEST_PAYLOAD, RequestDecoder, RequestFrame, ResponseDecoder};
pub use header::{
    ClusterArgs, Flags, ForwArgs, NodeRsp, ObjArgs, RequestHeader, ResponseHeader, SD_REQ_SIZE,
    SD_RSP_SIZE, StripArgs, VdiArgs, VdiRsp,
};
pub use ids::{Epoch, ObjectKind, Oid, Vid};
pub use opcode::Opcode;
pub use result::SdResult;
pub use wire::{Reader, c_str};

/// Client protocol version (opcodes < 0x80).
pub const SD_PROTO_VER: u8 = 0x02;
/// Internal protocol version (opcodes ≥ 0x80).
pub const SD_SHEEP_PROTO_VER: u8 = 0x0a;
/// Default sheep port.
pub const SD_LISTEN_PORT: u16 = 7000;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated input")]
    Truncated,
    /// A length field exceeds what the receiver accepts.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Announced length.
        len: usize,
        /// Accepted maximum.
        max: usize,
    },
    /// A count or length field is inconsistent with the structure.
    #[error("bad {what}: {len}")]
    BadLength {
        /// Which field.
        what: &'static str,
        /// Its value.
        len: usize,
    },
}
