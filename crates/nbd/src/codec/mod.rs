//! Pure NBD codecs (no I/O): the fixed-newstyle handshake and the transmission phase,
//! after `NetworkBlockDevice/nbd` `doc/proto.md`. All integers are big-endian.
//!
//! Every decoder takes untrusted bytes, returns `Ok(None)` while more bytes are needed and a
//! [`DecodeError`] (never a panic) for bytes that break the protocol. Length fields are
//! checked against a cap before anything is allocated: option payloads against
//! [`MAX_OPTION_PAYLOAD`], WRITE payloads against the decoder's limit (normally
//! [`MAX_BLOCK`]).

mod handshake;
mod option;
mod reply;
mod request;

pub use handshake::{
    ClientFlags, ExportNameReply, Greeting, HandshakeFlags, IHAVEOPT, NBDMAGIC,
    decode_client_flags, encode_client_flags,
};
pub use option::{
    Info, InfoRequest, InfoType, MAX_NAME_LEN, MAX_OPTION_PAYLOAD, NbdOption, OPTION_REPLY_MAGIC,
    OptionCode, OptionError, OptionReply, OptionReplyBody, RawOption, RepError,
};
pub use reply::{
    ChunkBody, MAX_ERROR_MESSAGE, Reply, ReplyDecoder, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC,
    StructuredChunk,
};
pub use request::{
    CmdFlags, CmdType, REQUEST_HEADER_LEN, REQUEST_MAGIC, RequestDecoder, RequestFrame,
    RequestHeader, TransmissionFlags, encode_request,
};

/// The largest READ or WRITE this server handles in one request, advertised as the maximum
/// block size (`NBD_INFO_BLOCK_SIZE`); it is also qemu's own NBD buffer limit.
pub const MAX_BLOCK: u32 = 32 << 20;
/// The advertised minimum block size: any byte alignment is accepted.
pub const MIN_BLOCK: u32 = 1;
/// The advertised preferred block size (smaller writes may cost a read-modify-write).
pub const PREFERRED_BLOCK: u32 = 4096;

/// Why bytes could not be decoded. Any of these ends the connection they came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A magic number is wrong: the peer does not speak (this phase of) NBD.
    #[error("bad {what} magic {got:#x}")]
    BadMagic {
        /// Which magic.
        what: &'static str,
        /// The value received.
        got: u64,
    },
    /// A length field exceeds what the receiver accepts.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Announced length.
        len: u64,
        /// Accepted maximum.
        max: u64,
    },
    /// A length field is inconsistent with the structure it describes.
    #[error("bad {what}: {len}")]
    BadLength {
        /// Which field.
        what: &'static str,
        /// Its value.
        len: u64,
    },
    /// A string field is not UTF-8.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        /// Which field.
        what: &'static str,
    },
}

/// The opaque 64-bit request identifier (`handle`, renamed `cookie` in newer protocol
/// text) a client puts in each request and the server echoes in the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cookie(pub u64);

/// An NBD error value as sent in replies. The protocol restricts the values to the
/// constants below (they match Linux errno numbers); anything else is carried unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub u32);

impl Errno {
    /// Success (only meaningful in a simple reply).
    pub const OK: Errno = Errno(0);
    /// Operation not permitted (a write to a read-only export).
    pub const EPERM: Errno = Errno(1);
    /// Input/output error.
    pub const EIO: Errno = Errno(5);
    /// Cannot allocate memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Invalid argument (bad flags, unknown command, read past the end, oversized request).
    pub const EINVAL: Errno = Errno(22);
    /// No space left on device (a write past the end).
    pub const ENOSPC: Errno = Errno(28);
    /// Value too large (a don't-fragment read that cannot be sent in one chunk).
    pub const EOVERFLOW: Errno = Errno(75);
    /// Operation not supported.
    pub const ENOTSUP: Errno = Errno(95);
    /// The server is shutting down.
    pub const ESHUTDOWN: Errno = Errno(108);
}

/// A bounds-checked big-endian reader over a byte slice: every read either succeeds or
/// returns a [`DecodeError`], so decoders never index or panic.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn short(&self) -> DecodeError {
        DecodeError::BadLength {
            what: self.what,
            len: self.buf.len() as u64,
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or_else(|| self.short())?;
        self.buf = rest;
        Ok(*head)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.buf.len() {
            return Err(self.short());
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn string(&mut self, len: usize, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.bytes(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::NotUtf8 { what })
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A length that must fit a 32-bit wire field. Everything this crate encodes is bounded far
/// below 4 GiB (payloads by [`MAX_BLOCK`], strings by the option cap), so saturating is
/// only a guard: an over-long value would then fail to decode on the other side instead
/// of silently wrapping.
fn wire_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Like [`wire_u32`] for 16-bit length fields (error messages, info counts).
fn wire_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}
