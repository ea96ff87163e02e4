//! Fuzz target: `RequestDecoder` over arbitrary bytes, fed in chunks. Checks that it never
//! panics, never buffers an oversized payload, and frames the stream the same way whether
//! it arrives in one piece or in pieces.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
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
    let whole = run(max, stream, &[stream.len().max(1)]);
    let sizes = [
        1 + usize::from(seed & 0x0f),
        1,
        1 + usize::from(seed >> 4) * 17,
        SD_REQ_SIZE,
    ];
    let chunked = run(max, stream, &sizes);
    assert_eq!(whole, chunked, "framing depends on chunking");
});

/// Feeds `stream` in chunks cycling through `sizes`, draining frames after each chunk.
fn run(max: usize, stream: &[u8], sizes: &[usize]) -> Vec<Result<RequestFrame, DecodeError>> {
    let mut dec = RequestDecoder::new(max);
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
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    check(&f, max);
                    out.push(Ok(f));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
        if dec.is_skipping() {
            assert!(buf.is_empty(), "oversized payload was buffered");
        }
        // What is left is less than one complete frame.
        assert!(buf.len() < SD_REQ_SIZE + max.max(1));
    }
    out
}

fn check(f: &RequestFrame, max: usize) {
    match f {
        RequestFrame::Request { header, payload } => {
            if header.has_payload() {
                assert_eq!(payload.len() as u64, u64::from(header.data_length));
                assert!(payload.len() <= max);
            } else {
                assert!(payload.is_empty());
            }
        }
        RequestFrame::Oversized { header } => {
            assert!(header.has_payload());
            assert!(u64::from(header.data_length) > max as u64);
        }
    }
}
