//! Codec tests, one binary: golden bytes from the layouts in NBD `doc/proto.md`,
//! proptest round trips of every message, and decoders fed untrusted bytes.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod golden;
mod message;
mod roundtrip;
mod strategy;
mod untrusted;

/// Bytes from a hex string; whitespace and `|` separators are ignored.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length in {s:?}");
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(text, 16).expect("hex digit")
        })
        .collect()
}
