//! Fuzz target: `ResponseDecoder` over arbitrary bytes, fed in chunks. Checks that it never
//! panics, respects its payload cap, consumes nothing on error, and frames the stream the
//! same way however it is chunked.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sd_fuzz::chunked::{StreamDecoder, same_however_chunked};
use sd_proto::{DecodeError, ResponseDecoder, ResponseHeader, SD_RSP_SIZE};

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the payload cap, byte 1 the chunk sizes; the rest is the stream.
    let Some((&[cap, seed], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = usize::from(cap) * 4;
    same_however_chunked(
        || Responses {
            dec: ResponseDecoder::new(max),
            max,
        },
        stream,
        seed,
        SD_RSP_SIZE,
    );
});

/// The decoder and its cap.
struct Responses {
    dec: ResponseDecoder,
    max: usize,
}

impl StreamDecoder for Responses {
    type Frame = (ResponseHeader, Bytes);
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, DecodeError> {
        self.dec.decode(buf)
    }

    fn check_frame(&self, (h, p): &Self::Frame) {
        assert_eq!(p.len() as u64, u64::from(h.data_length));
        assert!(p.len() <= self.max);
    }

    fn check_error(&self, e: &DecodeError, before: &[u8], after: &[u8]) {
        assert!(matches!(e, DecodeError::PayloadTooLarge { .. }));
        assert_eq!(before, after, "an error consumed bytes");
    }

    fn check_drained(&self, buf: &BytesMut) {
        assert!(buf.len() < SD_RSP_SIZE + self.max.max(1));
    }
}
