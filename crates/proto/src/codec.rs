//! Framing: splits a byte stream into request or response frames with a payload cap checked
//! before any allocation. Pure state machines over `BytesMut`; the caller does the I/O.

use bytes::{Buf, Bytes, BytesMut};

use crate::{DecodeError, RequestHeader, ResponseHeader, SD_REQ_SIZE, SD_RSP_SIZE};

/// The largest request payload a sheep accepts: one 4 MiB object plus a margin for the
/// inode index slices `dog` writes. Anything larger is refused before it is read.
pub const MAX_REQUEST_PAYLOAD: usize = (4 << 20) + (64 << 10);

/// One request taken off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFrame {
    /// A complete request; `payload` is empty unless the WRITE flag was set.
    Request {
        /// The header.
        header: RequestHeader,
        /// The payload.
        payload: Bytes,
    },
    /// The header announced a payload above the cap. The decoder discards the payload
    /// bytes as they arrive without buffering them; the caller answers with an error.
    Oversized {
        /// The header.
        header: RequestHeader,
    },
}

/// Decodes requests from a stream (server side).
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    max_payload: usize,
    skipping: usize,
}

impl RequestDecoder {
    /// A decoder refusing payloads above `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        RequestDecoder {
            max_payload,
            skipping: 0,
        }
    }

    /// True while the decoder is discarding the payload of an oversized request.
    pub fn is_skipping(&self) -> bool {
        self.skipping > 0
    }

    /// Discards what `src` holds of an oversized request's payload; afterwards either the
    /// decoder still skips (and `src` is empty) or `src` starts with the next frame.
    pub fn discard(&mut self, src: &mut BytesMut) {
        let n = self.skipping.min(src.len());
        src.advance(n);
        self.skipping -= n;
    }

    /// Takes one frame off the front of `src`, or returns `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RequestFrame>, DecodeError> {
        if self.skipping > 0 {
            self.discard(src);
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        let Some(head) = src.get(..SD_REQ_SIZE) else {
            return Ok(None);
        };
        let header = RequestHeader::decode(head)?;
        if !header.has_payload() {
            src.advance(SD_REQ_SIZE);
            return Ok(Some(RequestFrame::Request {
                header,
                payload: Bytes::new(),
            }));
        }
        let len = usize::try_from(header.data_length).map_err(|_| DecodeError::Truncated)?;
        if len > self.max_payload {
            src.advance(SD_REQ_SIZE);
            let n = len.min(src.len());
            src.advance(n);
            self.skipping = len - n;
            return Ok(Some(RequestFrame::Oversized { header }));
        }
        let total = SD_REQ_SIZE + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(SD_REQ_SIZE);
        let payload = src.split_to(len).freeze();
        Ok(Some(RequestFrame::Request { header, payload }))
    }
}

/// Decodes responses from a stream (client side). The caller bounds the payload it is
/// prepared to accept: a response announcing more is an error, not an allocation.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    max_payload: usize,
}

impl ResponseDecoder {
    /// A decoder accepting payloads up to `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        ResponseDecoder { max_payload }
    }

    /// Takes one response off the front of `src`, or `Ok(None)` if more bytes are needed.
    pub fn decode(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<(ResponseHeader, Bytes)>, DecodeError> {
        let Some(head) = src.get(..SD_RSP_SIZE) else {
            return Ok(None);
        };
        let header = ResponseHeader::decode(head)?;
        let len = usize::try_from(header.data_length).map_err(|_| DecodeError::Truncated)?;
        if len > self.max_payload {
            return Err(DecodeError::PayloadTooLarge {
                len,
                max: self.max_payload,
            });
        }
        let total = SD_RSP_SIZE + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(SD_RSP_SIZE);
        Ok(Some((header, src.split_to(len).freeze())))
    }
}

/// Encodes a request header and payload into one contiguous buffer.
pub fn encode_request(header: &RequestHeader, payload: &[u8], dst: &mut BytesMut) {
    dst.extend_from_slice(&header.encode());
    if header.has_payload() {
        dst.extend_from_slice(payload);
    }
}

/// Encodes a response header (its `data_length` must equal `payload.len()`) and payload.
pub fn encode_response(header: &ResponseHeader, payload: &[u8], dst: &mut BytesMut) {
    dst.extend_from_slice(&header.encode());
    dst.extend_from_slice(payload);
}
