//! Fuzz target: `ResponseDecoder` over arbitrary bytes, fed in chunks. Checks that it never
//! panics, respects its payload cap, consumes nothing on error, and frames the stream the
//! same way however it is chunked.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sd_proto::{DecodeError, ResponseDecoder, ResponseHeader, SD_RSP_SIZE};

type Frames = Vec<Result<(ResponseHeader, Bytes), DecodeError>>;

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the payload cap, byte 1 the chunk sizes; the rest is the stream.
    let Some((&[cap, seed], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = usize::from(cap) * 4;
    let whole = run(max, stream, &[stream.len().max(1)]);
    let sizes = [
        1 + usize::from(seed & 0x0f),
        1,
        1 + usize::from(seed >> 4) * 17,
        SD_RSP_SIZE,
    ];
    let chunked = run(max, stream, &sizes);
    assert_eq!(whole, chunked, "framing depends on chunking");
});

/// Feeds `stream` in chunks cycling through `sizes` until the decoder fails.
fn run(max: usize, stream: &[u8], sizes: &[usize]) -> Frames {
    let mut dec = ResponseDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = stream;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*size).min(rest.len()));
        rest = tail;
        buf.extend_from_slice(head);
        loop {
            let before = buf.clone();
            match dec.decode(&mut buf) {
                Ok(Some((h, p))) => {
                    assert_eq!(p.len() as u64, u64::from(h.data_length));
                    assert!(p.len() <= max);
                    out.push(Ok((h, p)));
                }
                Ok(None) => {
                    assert_eq!(buf, before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => {
                    assert!(matches!(e, DecodeError::PayloadTooLarge { .. }));
                    assert_eq!(buf, before, "an error consumed bytes");
                    out.push(Err(e));
                    return out;
                }
            }
        }
        assert!(buf.len() < SD_RSP_SIZE + max.max(1));
    }
    out
}
