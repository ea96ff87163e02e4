//! Feeding a stream to a decoder in chunks. Every streaming-decoder target runs its input
//! twice, once whole and once cut into pieces chosen by one fuzz byte, and asserts that
//! both runs produce the same frames and the same error.

use std::fmt::Debug;

use bytes::BytesMut;

/// A streaming decoder under test, with the invariants the driver checks.
pub trait StreamDecoder {
    /// What one successful decode yields.
    type Frame: Debug + PartialEq;
    /// The decode error.
    type Error: Debug + PartialEq;

    /// Takes one frame off the front of `buf`, `Ok(None)` if more bytes are needed.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, Self::Error>;

    /// Checks one decoded frame (default: nothing).
    fn check_frame(&self, _frame: &Self::Frame) {}

    /// Checks an `Ok(None)`: `before` and `after` are the buffer around the call. By
    /// default a decoder waiting for more bytes must not consume any.
    fn check_wait(&self, before: &[u8], after: &[u8]) {
        assert_eq!(before, after, "Ok(None) consumed bytes");
    }

    /// Checks an error the same way (default: nothing; the stream ends after an error).
    fn check_error(&self, _error: &Self::Error, _before: &[u8], _after: &[u8]) {}

    /// Checks the buffer once a chunk has been drained to `Ok(None)` (default: nothing).
    fn check_drained(&self, _buf: &BytesMut) {}
}

/// Frames and the error (always last, if any) a run produced.
pub type Outcome<D> = Vec<Result<<D as StreamDecoder>::Frame, <D as StreamDecoder>::Error>>;

/// Chunk sizes picked by one fuzz byte: cycling through a small size, single bytes, a
/// medium size and `unit` (normally the header size of the format).
pub fn chunk_sizes(seed: u8, unit: usize) -> [usize; 4] {
    [
        1 + usize::from(seed & 0x0f),
        1,
        1 + usize::from(seed >> 4) * 17,
        unit.max(1),
    ]
}

/// Feeds `stream` to `dec` in chunks cycling through `sizes`, decoding as many frames as
/// possible after each chunk; stops at the first error.
pub fn feed<D: StreamDecoder>(dec: &mut D, stream: &[u8], sizes: &[usize]) -> Outcome<D> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = stream;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*size).clamp(1, rest.len()));
        rest = tail;
        buf.extend_from_slice(head);
        loop {
            let before = buf.clone();
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    dec.check_frame(&frame);
                    out.push(Ok(frame));
                }
                Ok(None) => {
                    dec.check_wait(&before, &buf);
                    break;
                }
                Err(e) => {
                    dec.check_error(&e, &before, &buf);
                    out.push(Err(e));
                    return out;
                }
            }
        }
        dec.check_drained(&buf);
    }
    out
}

/// Runs `stream` through a fresh decoder from `new` once in one piece and once in chunks
/// chosen by `seed`, asserts that both give the same outcome, and returns it.
pub fn same_however_chunked<D: StreamDecoder>(
    new: impl Fn() -> D,
    stream: &[u8],
    seed: u8,
    unit: usize,
) -> Outcome<D> {
    let whole = feed(&mut new(), stream, &[stream.len().max(1)]);
    let chunked = feed(&mut new(), stream, &chunk_sizes(seed, unit));
    assert_eq!(whole, chunked, "framing depends on chunking");
    whole
}
