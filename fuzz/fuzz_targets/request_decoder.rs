//! Fuzz target: `RequestDecoder` over arbitrary bytes, fed in chunks. Checks that it never
//! panics, never buffers an oversized payload, and frames the stream the same way whether
//! it arrives in one piece or in pieces.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sd_fuzz::chunked::{StreamDecoder, same_however_chunked};
use sd_proto::{DecodeError, MAX_REQUEST_PAYLOAD, RequestDecoder, RequestFrame, SD_REQ_SIZE};

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the payload cap (small, so Oversized skips are reachable; 255 = the real
    // cap), byte 1 the chunk sizes; the rest is the stream.
    let Some((&[cap, seed], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = if cap == 255 {
        MAX_REQUEST_PAYLOAD
    } else {
        usize::from(cap) * 4
    };
    same_however_chunked(|| Requests::new(max), stream, seed, SD_REQ_SIZE);
});

/// The decoder and its cap.
struct Requests {
    dec: RequestDecoder,
    max: usize,
    /// Whether the decoder was skipping an oversized payload when the last call began
    /// (then it may consume bytes while returning `Ok(None)`).
    was_skipping: bool,
}

impl Requests {
    fn new(max: usize) -> Self {
        Requests {
            dec: RequestDecoder::new(max),
            max,
            was_skipping: false,
        }
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
        match f {
            RequestFrame::Request { header, payload } => {
                if header.has_payload() {
                    assert_eq!(payload.len() as u64, u64::from(header.data_length));
                    assert!(payload.len() <= self.max);
                } else {
                    assert!(payload.is_empty());
                }
            }
            RequestFrame::Oversized { header } => {
                assert!(header.has_payload());
                assert!(u64::from(header.data_length) > self.max as u64);
            }
        }
    }

    fn check_wait(&self, before: &[u8], after: &[u8]) {
        if !self.was_skipping {
            assert_eq!(before, after, "Ok(None) consumed bytes");
        }
    }

    fn check_drained(&self, buf: &BytesMut) {
        if self.dec.is_skipping() {
            assert!(buf.is_empty(), "oversized payload was buffered");
        }
        // What is left is less than one complete frame.
        assert!(buf.len() < SD_REQ_SIZE + self.max.max(1));
    }
}
