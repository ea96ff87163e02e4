//! Transmission-phase replies: simple replies (magic `0x67446698`, error, cookie, then READ
//! data) and structured reply chunks (magic `0x668e33ef`, flags, type, cookie, length,
//! payload).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::option::truncate_str;
use super::{Cookie, DecodeError, Errno, Reader, wire_u16, wire_u32};

/// The simple reply magic.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// The structured reply chunk magic.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// The longest error message put in an error chunk; longer ones are cut at a character
/// boundary.
pub const MAX_ERROR_MESSAGE: usize = 4096;

const SIMPLE_HEADER_LEN: usize = 16;
const CHUNK_HEADER_LEN: usize = 20;
/// `NBD_REPLY_FLAG_DONE`.
const FLAG_DONE: u16 = 1 << 0;
const TYPE_NONE: u16 = 0;
const TYPE_OFFSET_DATA: u16 = 1;
const TYPE_OFFSET_HOLE: u16 = 2;
const TYPE_ERROR: u16 = (1 << 15) + 1;
const TYPE_ERROR_OFFSET: u16 = (1 << 15) + 2;

/// The payload of one structured reply chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkBody {
    /// `NBD_REPLY_TYPE_NONE`: success, nothing more (always with DONE).
    None,
    /// `NBD_REPLY_TYPE_OFFSET_DATA`: `data` (at least one byte) read at `offset`.
    OffsetData {
        /// Absolute export offset of `data`.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// `NBD_REPLY_TYPE_OFFSET_HOLE`: `len` zero bytes at `offset` (client side only).
    OffsetHole {
        /// Absolute export offset.
        offset: u64,
        /// Hole length.
        len: u32,
    },
    /// `NBD_REPLY_TYPE_ERROR`: the whole request failed.
    Error {
        /// The error (non-zero).
        error: Errno,
        /// A message for humans (may be empty).
        message: String,
    },
    /// `NBD_REPLY_TYPE_ERROR_OFFSET`: the request failed at `offset`.
    ErrorOffset {
        /// The error (non-zero).
        error: Errno,
        /// A message for humans (may be empty).
        message: String,
        /// Where it failed.
        offset: u64,
    },
    /// Any other chunk type (client side only).
    Other {
        /// The chunk type.
        ty: u16,
        /// Its payload.
        data: Bytes,
    },
}

/// One structured reply chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredChunk {
    /// The request being answered.
    pub cookie: Cookie,
    /// `NBD_REPLY_FLAG_DONE`: the last chunk of this reply.
    pub done: bool,
    /// The payload.
    pub body: ChunkBody,
}

/// One reply message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A simple reply; `data` is non-empty only for a successful READ.
    Simple {
        /// The request being answered.
        cookie: Cookie,
        /// [`Errno::OK`] or the error.
        error: Errno,
        /// READ data.
        data: Bytes,
    },
    /// A structured reply chunk.
    Structured(StructuredChunk),
}

impl Reply {
    /// The cookie of the request this answers.
    pub fn cookie(&self) -> Cookie {
        match self {
            Reply::Simple { cookie, .. } => *cookie,
            Reply::Structured(chunk) => chunk.cookie,
        }
    }

    /// The bulk data that ends the encoded message (READ data), which a writer may send
    /// straight from its buffer after [`Reply::encode_head`] instead of copying it.
    pub fn bulk(&self) -> &[u8] {
        match self {
            Reply::Simple { data, .. } => data,
            Reply::Structured(StructuredChunk {
                body: ChunkBody::OffsetData { data, .. },
                ..
            }) => data,
            Reply::Structured(_) => &[],
        }
    }

    /// Appends everything but [`Reply::bulk`] to `dst`.
    pub fn encode_head(&self, dst: &mut BytesMut) {
        match self {
            Reply::Simple { cookie, error, .. } => {
                dst.put_u32(SIMPLE_REPLY_MAGIC);
                dst.put_u32(error.0);
                dst.put_u64(cookie.0);
            }
            Reply::Structured(chunk) => encode_chunk_head(chunk, dst),
        }
    }

    /// Appends the whole message to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        self.encode_head(dst);
        dst.put_slice(self.bulk());
    }
}

fn encode_chunk_head(chunk: &StructuredChunk, dst: &mut BytesMut) {
    let flags = if chunk.done { FLAG_DONE } else { 0 };
    let mut put = |ty: u16, len: usize| {
        dst.put_u32(STRUCTURED_REPLY_MAGIC);
        dst.put_u16(flags);
        dst.put_u16(ty);
        dst.put_u64(chunk.cookie.0);
        dst.put_u32(wire_u32(len));
    };
    match &chunk.body {
        ChunkBody::None => put(TYPE_NONE, 0),
        ChunkBody::OffsetData { offset, data } => {
            put(TYPE_OFFSET_DATA, data.len().saturating_add(8));
            dst.put_u64(*offset);
        }
        ChunkBody::OffsetHole { offset, len } => {
            put(TYPE_OFFSET_HOLE, 12);
            dst.put_u64(*offset);
            dst.put_u32(*len);
        }
        ChunkBody::Error { error, message } => {
            let msg = truncate_str(message, MAX_ERROR_MESSAGE);
            put(TYPE_ERROR, msg.len().saturating_add(6));
            dst.put_u32(error.0);
            dst.put_u16(wire_u16(msg.len()));
            dst.put_slice(msg.as_bytes());
        }
        ChunkBody::ErrorOffset {
            error,
            message,
            offset,
        } => {
            let msg = truncate_str(message, MAX_ERROR_MESSAGE);
            put(TYPE_ERROR_OFFSET, msg.len().saturating_add(14));
            dst.put_u32(error.0);
            dst.put_u16(wire_u16(msg.len()));
            dst.put_slice(msg.as_bytes());
            dst.put_u64(*offset);
        }
        ChunkBody::Other { ty, data } => {
            put(*ty, data.len());
            dst.put_slice(data);
        }
    }
}

/// Decodes replies from a stream (client side). A simple reply does not say how much data
/// follows it, so the caller supplies the READ length of each outstanding cookie.
#[derive(Debug, Clone)]
pub struct ReplyDecoder {
    max_payload: u32,
}

impl ReplyDecoder {
    /// A decoder refusing READ data, and structured chunk payloads, above `max_payload`.
    /// An OFFSET_DATA chunk carries 8 bytes of offset before its data, so a client
    /// accepting reads of up to [`super::MAX_BLOCK`] passes at least `MAX_BLOCK + 8`.
    pub fn new(max_payload: u32) -> Self {
        ReplyDecoder { max_payload }
    }

    /// Takes one reply off the front of `src`, or `Ok(None)` if more bytes are needed.
    /// `read_len(cookie)` is the data length a successful simple reply to that cookie
    /// carries (0 for anything but READ).
    pub fn decode(
        &self,
        src: &mut BytesMut,
        read_len: impl Fn(Cookie) -> u32,
    ) -> Result<Option<Reply>, DecodeError> {
        let Some(magic) = src.get(..4) else {
            return Ok(None);
        };
        let magic = Reader::new(magic, "reply magic").u32()?;
        match magic {
            SIMPLE_REPLY_MAGIC => self.decode_simple(src, read_len),
            STRUCTURED_REPLY_MAGIC => self.decode_chunk(src),
            got => Err(DecodeError::BadMagic {
                what: "reply",
                got: u64::from(got),
            }),
        }
    }

    fn check_len(&self, what: &'static str, len: u32) -> Result<usize, DecodeError> {
        if len > self.max_payload {
            return Err(DecodeError::TooLarge {
                what,
                len: u64::from(len),
                max: u64::from(self.max_payload),
            });
        }
        Ok(usize::try_from(len).unwrap_or(usize::MAX))
    }

    fn decode_simple(
        &self,
        src: &mut BytesMut,
        read_len: impl Fn(Cookie) -> u32,
    ) -> Result<Option<Reply>, DecodeError> {
        let Some(head) = src.get(..SIMPLE_HEADER_LEN) else {
            return Ok(None);
        };
        let mut r = Reader::new(head, "simple reply");
        let _magic = r.u32()?;
        let error = Errno(r.u32()?);
        let cookie = Cookie(r.u64()?);
        let len = if error == Errno::OK {
            self.check_len("READ reply data", read_len(cookie))?
        } else {
            0
        };
        let total = SIMPLE_HEADER_LEN.saturating_add(len);
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(SIMPLE_HEADER_LEN);
        let data = src.split_to(len).freeze();
        Ok(Some(Reply::Simple {
            cookie,
            error,
            data,
        }))
    }

    fn decode_chunk(&self, src: &mut BytesMut) -> Result<Option<Reply>, DecodeError> {
        let Some(head) = src.get(..CHUNK_HEADER_LEN) else {
            return Ok(None);
        };
        let mut r = Reader::new(head, "structured reply");
        let _magic = r.u32()?;
        let flags = r.u16()?;
        let ty = r.u16()?;
        let cookie = Cookie(r.u64()?);
        let len = self.check_len("structured chunk payload", r.u32()?)?;
        let total = CHUNK_HEADER_LEN.saturating_add(len);
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(CHUNK_HEADER_LEN);
        let payload = src.split_to(len).freeze();
        let body = decode_chunk_body(ty, payload)?;
        Ok(Some(Reply::Structured(StructuredChunk {
            cookie,
            done: flags & FLAG_DONE != 0,
            body,
        })))
    }
}

fn decode_chunk_body(ty: u16, payload: Bytes) -> Result<ChunkBody, DecodeError> {
    let bad = |what| DecodeError::BadLength {
        what,
        len: payload.len() as u64,
    };
    let mut r = Reader::new(&payload, "structured chunk");
    let body = match ty {
        TYPE_NONE => {
            if !payload.is_empty() {
                return Err(bad("NBD_REPLY_TYPE_NONE length"));
            }
            ChunkBody::None
        }
        TYPE_OFFSET_DATA => {
            if payload.len() < 9 {
                return Err(bad("NBD_REPLY_TYPE_OFFSET_DATA length"));
            }
            let offset = r.u64()?;
            ChunkBody::OffsetData {
                offset,
                data: payload.slice(8..),
            }
        }
        TYPE_OFFSET_HOLE => {
            if payload.len() != 12 {
                return Err(bad("NBD_REPLY_TYPE_OFFSET_HOLE length"));
            }
            ChunkBody::OffsetHole {
                offset: r.u64()?,
                len: r.u32()?,
            }
        }
        TYPE_ERROR | TYPE_ERROR_OFFSET => {
            let error = Errno(r.u32()?);
            let msg_len = usize::from(r.u16()?);
            let message = String::from_utf8_lossy(r.bytes(msg_len)?).into_owned();
            let body = if ty == TYPE_ERROR {
                ChunkBody::Error { error, message }
            } else {
                ChunkBody::ErrorOffset {
                    error,
                    message,
                    offset: r.u64()?,
                }
            };
            if !r.is_empty() {
                return Err(bad("error chunk length"));
            }
            body
        }
        ty => ChunkBody::Other {
            ty,
            data: payload.clone(),
        },
    };
    Ok(body)
}
