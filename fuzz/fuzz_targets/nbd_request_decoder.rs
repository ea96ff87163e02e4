//! Fuzz target: the NBD transmission-phase `RequestDecoder` over arbitrary bytes, fed in
//! chunks. Checks that it never panics, never buffers an oversized WRITE payload, frames
//! the stream the same way however it is chunked, and that every frame re-encodes to
//! bytes that decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sd_fuzz::chunked::{StreamDecoder, same_however_chunked};
use sd_nbd::codec::{
    CmdType, DecodeError, MAX_BLOCK, REQUEST_HEADER_LEN, RequestDecoder, RequestFrame,
    encode_request,
};

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the WRITE payload cap (small, so oversized skips are reachable; 255 =
    // the server's cap), byte 1 the chunk sizes; the rest is the stream.
    let Some((&[cap, seed], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = if cap == 255 {
        MAX_BLOCK
    } else {
        u32::from(cap) * 4
    };
    same_however_chunked(|| Requests::new(max), stream, seed, REQUEST_HEADER_LEN);
});

/// The decoder and its cap.
struct Requests {
    dec: RequestDecoder,
    max: u32,
    /// Whether the decoder was skipping an oversized payload when the last call began
    /// (then it may consume bytes while returning `Ok(None)` or an error).
    was_skipping: bool,
}

impl Requests {
    fn new(max: u32) -> Self {
        Requests {
            dec: RequestDecoder::new(max),
            max,
            was_skipping: false,
        }
    }

    /// The largest buffer that may be left after draining: less than one frame.
    fn max_left(&self) -> usize {
        REQUEST_HEADER_LEN + usize::try_from(self.max).unwrap_or(usize::MAX).max(1)
    }
}

impl StreamDecoder for Requests {
    type Frame = RequestFrame;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RequestFrame>, DecodeError> {
        self.was_skipping = self.dec.is_skipping();
        self.dec.decode(buf)
    }

    fn check_frame(&self, f: &RequestFrame) {
        let mut wire = BytesMut::new();
        match f {
            RequestFrame::Request { header, payload } => {
                if header.ty == CmdType::Write {
                    assert_eq!(payload.len() as u64, u64::from(header.length));
                    assert!(header.length <= self.max);
                } else {
                    assert!(payload.is_empty());
                }
                encode_request(header, payload, &mut wire);
            }
            RequestFrame::Oversized { header } => {
                assert_eq!(header.ty, CmdType::Write);
                assert!(header.length > self.max);
                header.encode(&mut wire);
            }
        }
        let again = RequestDecoder::new(self.max).decode(&mut wire);
        assert_eq!(again.as_ref(), Ok(&Some(f.clone())), "re-encoded frame");
        assert!(wire.is_empty());
    }

    fn check_wait(&self, before: &[u8], after: &[u8]) {
        if !self.was_skipping {
            assert_eq!(before, after, "Ok(None) consumed bytes");
        }
    }

    fn check_error(&self, e: &DecodeError, before: &[u8], after: &[u8]) {
        assert!(matches!(e, DecodeError::BadMagic { .. }), "{e:?}");
        if !self.was_skipping {
            assert_eq!(before, after, "an error consumed bytes");
        }
    }

    fn check_drained(&self, buf: &BytesMut) {
        if self.dec.is_skipping() {
            assert!(buf.is_empty(), "oversized payload was buffered");
        }
        assert!(buf.len() < self.max_left(), "a complete frame was left");
    }
}
