//! Fuzz target: the NBD client's `ReplyDecoder` (simple replies and structured reply
//! chunks) over arbitrary bytes, fed in chunks. Checks that it never panics, respects its
//! payload cap, frames the stream the same way however it is chunked, and that every
//! reply re-encodes to bytes that decode to the same reply.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sd_fuzz::chunked::{StreamDecoder, same_however_chunked};
use sd_nbd::codec::{
    ChunkBody, Cookie, DecodeError, Errno, MAX_BLOCK, MAX_ERROR_MESSAGE, Reply, ReplyDecoder,
    StructuredChunk,
};

/// Structured chunk header: magic, flags, type, cookie, length.
const CHUNK_HEADER_LEN: usize = 20;

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the payload cap (255 = what a client reading MAX_BLOCK passes), byte 1
    // the chunk sizes; the rest is the stream.
    let Some((&[cap, seed], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = if cap == 255 {
        MAX_BLOCK + 8
    } else {
        u32::from(cap) * 64
    };
    same_however_chunked(
        || Replies {
            dec: ReplyDecoder::new(max),
            max,
        },
        stream,
        seed,
        CHUNK_HEADER_LEN,
    );
});

/// The READ length the client expects for a cookie: its low 16 bits, so that lengths
/// both under and over the cap occur.
fn read_len(cookie: Cookie) -> u32 {
    u32::from(cookie.0.to_le_bytes()[0]) | (u32::from(cookie.0.to_le_bytes()[1]) << 8)
}

struct Replies {
    dec: ReplyDecoder,
    max: u32,
}

impl StreamDecoder for Replies {
    type Frame = Reply;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, DecodeError> {
        self.dec.decode(buf, read_len)
    }

    fn check_frame(&self, r: &Reply) {
        match r {
            Reply::Simple {
                cookie,
                error,
                data,
            } => {
                if *error == Errno::OK {
                    assert_eq!(data.len() as u64, u64::from(read_len(*cookie)));
                    assert!(data.len() as u64 <= u64::from(self.max));
                } else {
                    assert!(data.is_empty());
                }
            }
            Reply::Structured(StructuredChunk { body, .. }) => match body {
                ChunkBody::OffsetData { data, .. } => {
                    assert!(!data.is_empty());
                    assert!(data.len() as u64 + 8 <= u64::from(self.max));
                }
                ChunkBody::Other { data, .. } => {
                    assert!(data.len() as u64 <= u64::from(self.max));
                }
                _ => {}
            },
        }
        let mut wire = BytesMut::new();
        r.encode(&mut wire);
        let again = self
            .dec
            .decode(&mut wire, read_len)
            .expect("a re-encoded reply decodes")
            .expect("a re-encoded reply is complete");
        assert!(wire.is_empty());
        if truncated_by_encode(r) {
            // An over-long error message is cut when encoded; after that it is stable.
            let mut wire2 = BytesMut::new();
            again.encode(&mut wire2);
            assert_eq!(self.dec.decode(&mut wire2, read_len), Ok(Some(again)));
        } else {
            assert_eq!(&again, r);
        }
    }

    fn check_drained(&self, buf: &BytesMut) {
        // Less than one complete reply is left.
        assert!((buf.len() as u64) < CHUNK_HEADER_LEN as u64 + u64::from(self.max.max(1)));
    }
}

/// Whether encoding `r` cuts its error message to [`MAX_ERROR_MESSAGE`] bytes.
fn truncated_by_encode(r: &Reply) -> bool {
    match r {
        Reply::Structured(StructuredChunk {
            body: ChunkBody::Error { message, .. } | ChunkBody::ErrorOffset { message, .. },
            ..
        }) => message.len() > MAX_ERROR_MESSAGE,
        _ => false,
    }
}
