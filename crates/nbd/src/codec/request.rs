//! Transmission-phase requests: the 28-byte header (magic `0x25609513`, command flags,
//! type, cookie, offset, length) and, for `NBD_CMD_WRITE`, the payload; plus the
//! transmission flags the server advertises.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{Cookie, DecodeError, Reader};

/// The request magic.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Size of a request header.
pub const REQUEST_HEADER_LEN: usize = 28;

/// The 16-bit transmission flags sent with the export size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransmissionFlags(pub u16);

impl TransmissionFlags {
    /// `NBD_FLAG_HAS_FLAGS`: always set.
    pub const HAS_FLAGS: TransmissionFlags = TransmissionFlags(1 << 0);
    /// `NBD_FLAG_READ_ONLY`.
    pub const READ_ONLY: TransmissionFlags = TransmissionFlags(1 << 1);
    /// `NBD_FLAG_SEND_FLUSH`: `NBD_CMD_FLUSH` is supported.
    pub const SEND_FLUSH: TransmissionFlags = TransmissionFlags(1 << 2);
    /// `NBD_FLAG_SEND_FUA`: `NBD_CMD_FLAG_FUA` is supported.
    pub const SEND_FUA: TransmissionFlags = TransmissionFlags(1 << 3);
    /// `NBD_FLAG_ROTATIONAL`.
    pub const ROTATIONAL: TransmissionFlags = TransmissionFlags(1 << 4);
    /// `NBD_FLAG_SEND_TRIM`: `NBD_CMD_TRIM` is supported.
    pub const SEND_TRIM: TransmissionFlags = TransmissionFlags(1 << 5);
    /// `NBD_FLAG_SEND_WRITE_ZEROES`: `NBD_CMD_WRITE_ZEROES` is supported.
    pub const SEND_WRITE_ZEROES: TransmissionFlags = TransmissionFlags(1 << 6);
    /// `NBD_FLAG_SEND_DF`: `NBD_CMD_FLAG_DF` is supported (only with structured replies).
    pub const SEND_DF: TransmissionFlags = TransmissionFlags(1 << 7);
    /// `NBD_FLAG_CAN_MULTI_CONN`: FLUSH and FUA on one connection cover writes completed
    /// on every connection to the export.
    pub const CAN_MULTI_CONN: TransmissionFlags = TransmissionFlags(1 << 8);
    /// `NBD_FLAG_SEND_RESIZE`.
    pub const SEND_RESIZE: TransmissionFlags = TransmissionFlags(1 << 9);
    /// `NBD_FLAG_SEND_CACHE`.
    pub const SEND_CACHE: TransmissionFlags = TransmissionFlags(1 << 10);
    /// `NBD_FLAG_SEND_FAST_ZERO`.
    pub const SEND_FAST_ZERO: TransmissionFlags = TransmissionFlags(1 << 11);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: TransmissionFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TransmissionFlags {
    type Output = TransmissionFlags;
    fn bitor(self, rhs: TransmissionFlags) -> TransmissionFlags {
        TransmissionFlags(self.0 | rhs.0)
    }
}

/// The 16-bit command flags of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CmdFlags(pub u16);

impl CmdFlags {
    /// No flags.
    pub const NONE: CmdFlags = CmdFlags(0);
    /// `NBD_CMD_FLAG_FUA`: reply only once the written data is durable.
    pub const FUA: CmdFlags = CmdFlags(1 << 0);
    /// `NBD_CMD_FLAG_NO_HOLE`: WRITE_ZEROES must allocate rather than punch a hole.
    pub const NO_HOLE: CmdFlags = CmdFlags(1 << 1);
    /// `NBD_CMD_FLAG_DF`: send a READ as at most one content chunk.
    pub const DF: CmdFlags = CmdFlags(1 << 2);
    /// `NBD_CMD_FLAG_REQ_ONE` (block status; not supported here).
    pub const REQ_ONE: CmdFlags = CmdFlags(1 << 3);
    /// `NBD_CMD_FLAG_FAST_ZERO` (not supported here).
    pub const FAST_ZERO: CmdFlags = CmdFlags(1 << 4);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: CmdFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits of `self` outside `allowed`.
    pub fn without(self, allowed: CmdFlags) -> CmdFlags {
        CmdFlags(self.0 & !allowed.0)
    }
}

impl std::ops::BitOr for CmdFlags {
    type Output = CmdFlags;
    fn bitor(self, rhs: CmdFlags) -> CmdFlags {
        CmdFlags(self.0 | rhs.0)
    }
}

/// A request type (`NBD_CMD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmdType {
    /// `NBD_CMD_READ` (0).
    Read,
    /// `NBD_CMD_WRITE` (1): the only request with a payload.
    Write,
    /// `NBD_CMD_DISC` (2): soft disconnect, no reply.
    Disc,
    /// `NBD_CMD_FLUSH` (3).
    Flush,
    /// `NBD_CMD_TRIM` (4).
    Trim,
    /// `NBD_CMD_WRITE_ZEROES` (6).
    WriteZeroes,
    /// Any other type (`NBD_CMD_CACHE`, `NBD_CMD_BLOCK_STATUS`, ...), answered with EINVAL.
    Unknown(u16),
}

impl CmdType {
    /// The wire number.
    pub fn to_u16(self) -> u16 {
        match self {
            CmdType::Read => 0,
            CmdType::Write => 1,
            CmdType::Disc => 2,
            CmdType::Flush => 3,
            CmdType::Trim => 4,
            CmdType::WriteZeroes => 6,
            CmdType::Unknown(n) => n,
        }
    }

    /// The type for a wire number.
    pub fn from_u16(n: u16) -> CmdType {
        match n {
            0 => CmdType::Read,
            1 => CmdType::Write,
            2 => CmdType::Disc,
            3 => CmdType::Flush,
            4 => CmdType::Trim,
            6 => CmdType::WriteZeroes,
            n => CmdType::Unknown(n),
        }
    }
}

/// The fixed part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Command flags.
    pub flags: CmdFlags,
    /// Request type.
    pub ty: CmdType,
    /// The client's identifier for this request.
    pub cookie: Cookie,
    /// Byte offset into the export.
    pub offset: u64,
    /// Byte length (for WRITE, the payload length).
    pub length: u32,
}

impl RequestHeader {
    /// Appends the 28-byte header to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u32(REQUEST_MAGIC);
        dst.put_u16(self.flags.0);
        dst.put_u16(self.ty.to_u16());
        dst.put_u64(self.cookie.0);
        dst.put_u64(self.offset);
        dst.put_u32(self.length);
    }

    /// Parses a 28-byte header.
    pub fn decode(head: &[u8]) -> Result<RequestHeader, DecodeError> {
        let mut r = Reader::new(head, "request header");
        let magic = r.u32()?;
        if magic != REQUEST_MAGIC {
            return Err(DecodeError::BadMagic {
                what: "request",
                got: u64::from(magic),
            });
        }
        Ok(RequestHeader {
            flags: CmdFlags(r.u16()?),
            ty: CmdType::from_u16(r.u16()?),
            cookie: Cookie(r.u64()?),
            offset: r.u64()?,
            length: r.u32()?,
        })
    }
}

/// One request taken off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFrame {
    /// A complete request; `payload` is empty unless the type is WRITE, in which case it
    /// holds exactly `header.length` bytes.
    Request {
        /// The header.
        header: RequestHeader,
        /// The WRITE payload.
        payload: Bytes,
    },
    /// A WRITE whose length exceeds the decoder's cap. The decoder discards the payload
    /// as it arrives, without buffering it; the server answers EINVAL and carries on.
    Oversized {
        /// The header.
        header: RequestHeader,
    },
}

/// Decodes requests from a stream (server side).
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    max_payload: u32,
    skipping: usize,
}

impl RequestDecoder {
    /// A decoder refusing WRITE payloads above `max_payload` bytes (normally
    /// [`super::MAX_BLOCK`]).
    pub fn new(max_payload: u32) -> Self {
        RequestDecoder {
            max_payload,
            skipping: 0,
        }
    }

    /// True while the decoder is discarding the payload of an oversized WRITE.
    pub fn is_skipping(&self) -> bool {
        self.skipping > 0
    }

    /// Takes one frame off the front of `src`, or `Ok(None)` if more bytes are needed. A
    /// bad magic is the only error: the stream cannot be resynchronised after it.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RequestFrame>, DecodeError> {
        if self.skipping > 0 {
            let n = self.skipping.min(src.len());
            src.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        // Refuse a bad magic as soon as it arrives, not only once a whole header is in.
        if let Some(magic) = src.get(..4) {
            let magic = Reader::new(magic, "request magic").u32()?;
            if magic != REQUEST_MAGIC {
                return Err(DecodeError::BadMagic {
                    what: "request",
                    got: u64::from(magic),
                });
            }
        }
        let Some(head) = src.get(..REQUEST_HEADER_LEN) else {
            return Ok(None);
        };
        let header = RequestHeader::decode(head)?;
        if header.ty != CmdType::Write {
            src.advance(REQUEST_HEADER_LEN);
            return Ok(Some(RequestFrame::Request {
                header,
                payload: Bytes::new(),
            }));
        }
        // A u32 always fits in usize on the (≥ 32-bit) targets tokio supports.
        let len = usize::try_from(header.length).unwrap_or(usize::MAX);
        if header.length > self.max_payload {
            src.advance(REQUEST_HEADER_LEN);
            let n = len.min(src.len());
            src.advance(n);
            self.skipping = len - n;
            return Ok(Some(RequestFrame::Oversized { header }));
        }
        let total = REQUEST_HEADER_LEN.saturating_add(len);
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(REQUEST_HEADER_LEN);
        let payload = src.split_to(len).freeze();
        Ok(Some(RequestFrame::Request { header, payload }))
    }
}

/// Appends a request to `dst` (client side). For WRITE, `payload` follows the header and
/// `header.length` must equal `payload.len()`; for other types `payload` is ignored.
pub fn encode_request(header: &RequestHeader, payload: &[u8], dst: &mut BytesMut) {
    header.encode(dst);
    if header.ty == CmdType::Write {
        dst.put_slice(payload);
    }
}
