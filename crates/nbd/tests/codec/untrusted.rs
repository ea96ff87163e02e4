//! Decoders fed untrusted bytes: never a panic, and length fields above the caps are
//! refused before anything is allocated for them.

use bytes::BytesMut;
use proptest::prelude::*;
use sd_nbd::codec::{
    DecodeError, ExportNameReply, Greeting, MAX_BLOCK, MAX_OPTION_PAYLOAD, NbdOption, OptionError,
    OptionReply, RawOption, ReplyDecoder, RequestDecoder, RequestFrame, decode_client_flags,
};

use super::hex;

/// Runs `decode` until it needs more bytes or fails; returns how many frames it produced.
fn drain<T, E>(
    buf: &mut BytesMut,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = decode(buf) {
        n += 1;
        if n > 10_000 {
            break;
        }
    }
    n
}

proptest! {
    #[test]
    fn no_decoder_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let fresh = || BytesMut::from(&bytes[..]);
        drain(&mut fresh(), Greeting::decode);
        drain(&mut fresh(), decode_client_flags);
        drain(&mut fresh(), |b| ExportNameReply::decode(b, true));
        drain(&mut fresh(), |b| ExportNameReply::decode(b, false));
        drain(&mut fresh(), OptionReply::decode);
        let mut dec = RequestDecoder::new(MAX_BLOCK);
        drain(&mut fresh(), |b| dec.decode(b));
        let rd = ReplyDecoder::new(MAX_BLOCK);
        drain(&mut fresh(), |b| rd.decode(b, |c| u32::try_from(c.0 & 0xffff).unwrap_or(0)));
        drain(&mut fresh(), |b| {
            let raw = RawOption::decode(b)?;
            if let Some(raw) = &raw {
                let _ = NbdOption::parse(raw);
            }
            Ok::<_, DecodeError>(raw)
        });
    }

    /// Any option data, behind a valid header, parses or is refused without panicking.
    #[test]
    fn option_data_never_panics(code in 0u32..16, data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let raw = RawOption { code: sd_nbd::codec::OptionCode::from_u32(code), data: data.into() };
        let _ = NbdOption::parse(&raw);
    }
}

#[test]
fn option_payload_cap_is_checked_before_buffering() {
    let over = MAX_OPTION_PAYLOAD + 1;
    let mut buf = BytesMut::from(&hex("49484156454f5054 00000007")[..]);
    buf.extend_from_slice(&over.to_be_bytes());
    let cap_before = buf.capacity();
    assert_eq!(
        RawOption::decode(&mut buf),
        Err(DecodeError::TooLarge {
            what: "option payload",
            len: u64::from(over),
            max: u64::from(MAX_OPTION_PAYLOAD),
        })
    );
    assert_eq!(
        buf.capacity(),
        cap_before,
        "nothing reserved for a refused payload"
    );
}

#[test]
fn bad_magics_are_errors() {
    let mut opt = BytesMut::from(&hex("49484156454f5055 00000007 00000000")[..]);
    assert!(matches!(
        RawOption::decode(&mut opt),
        Err(DecodeError::BadMagic { .. })
    ));
    let mut req =
        BytesMut::from(&hex("25609514 0000 0000 0000000000000001 0000000000000000 00000000")[..]);
    assert!(matches!(
        RequestDecoder::new(MAX_BLOCK).decode(&mut req),
        Err(DecodeError::BadMagic { .. })
    ));
    let mut greeting = BytesMut::from(&hex("4e42444d41474943 0000420281861253 0003")[..]);
    assert!(matches!(
        Greeting::decode(&mut greeting),
        Err(DecodeError::BadMagic { .. })
    ));
    let mut reply = BytesMut::from(&hex("67446699 00000000 0000000000000001")[..]);
    assert!(matches!(
        ReplyDecoder::new(1).decode(&mut reply, |_| 0),
        Err(DecodeError::BadMagic { .. })
    ));
}

#[test]
fn huge_write_is_oversized_not_buffered() {
    // WRITE of 4 GiB - 1 with 3 payload bytes present: framed as oversized, the rest of
    // the payload is skipped as it arrives, nothing is reserved for it.
    let mut buf = BytesMut::from(
        &hex("25609513 0000 0001 0000000000000001 0000000000000000 ffffffff 010203")[..],
    );
    let cap_before = buf.capacity();
    let mut dec = RequestDecoder::new(MAX_BLOCK);
    let frame = dec.decode(&mut buf).expect("valid").expect("complete");
    assert!(matches!(frame, RequestFrame::Oversized { header } if header.length == u32::MAX));
    assert!(dec.is_skipping());
    assert!(buf.is_empty());
    assert!(buf.capacity() <= cap_before);
    assert_eq!(dec.decode(&mut buf), Ok(None));
}

#[test]
fn huge_reply_lengths_are_refused() {
    let mut chunk = BytesMut::from(&hex("668e33ef 0001 0001 0000000000000001 ffffffff")[..]);
    assert!(matches!(
        ReplyDecoder::new(MAX_BLOCK).decode(&mut chunk, |_| 0),
        Err(DecodeError::TooLarge { .. })
    ));
    let mut simple = BytesMut::from(&hex("67446698 00000000 0000000000000001")[..]);
    assert!(matches!(
        ReplyDecoder::new(MAX_BLOCK).decode(&mut simple, |_| u32::MAX),
        Err(DecodeError::TooLarge { .. })
    ));
    let mut opt = BytesMut::from(&hex("0003e889045565a9 00000007 00000001 ffffffff")[..]);
    assert!(matches!(
        OptionReply::decode(&mut opt),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn malformed_option_data_is_an_option_error() {
    use sd_nbd::codec::OptionCode;
    let parse = |code, data: &str| {
        NbdOption::parse(&RawOption {
            code,
            data: hex(data).into(),
        })
    };
    // Name length beyond the data.
    assert_eq!(
        parse(OptionCode::Go, "00000009 6469736b 0000"),
        Err(OptionError::BadLength)
    );
    // Item count beyond the data.
    assert_eq!(
        parse(OptionCode::Go, "00000004 6469736b 0002 0003"),
        Err(OptionError::BadLength)
    );
    // Trailing garbage.
    assert_eq!(
        parse(OptionCode::Info, "00000000 0000 ff"),
        Err(OptionError::BadLength)
    );
    // Too short for the name length.
    assert_eq!(parse(OptionCode::Go, "0000"), Err(OptionError::BadLength));
    assert_eq!(
        parse(OptionCode::List, "00"),
        Err(OptionError::UnexpectedData(1))
    );
    assert_eq!(
        parse(OptionCode::StructuredReply, "0000"),
        Err(OptionError::UnexpectedData(2))
    );
    assert_eq!(
        parse(OptionCode::ExportName, "ff fe"),
        Err(OptionError::NotUtf8)
    );
    let long = "61".repeat(4097);
    assert_eq!(
        parse(OptionCode::ExportName, &long),
        Err(OptionError::NameTooLong(4097))
    );
    // Abort ignores data.
    assert_eq!(parse(OptionCode::Abort, "0102"), Ok(NbdOption::Abort));
}

#[test]
fn malformed_chunks_are_errors() {
    let rd = ReplyDecoder::new(MAX_BLOCK);
    let cases = [
        // NONE with a payload.
        "668e33ef 0001 0000 0000000000000001 00000001 00",
        // OFFSET_DATA without data.
        "668e33ef 0001 0001 0000000000000001 00000008 0000000000000000",
        // OFFSET_HOLE of the wrong size.
        "668e33ef 0001 0002 0000000000000001 00000008 0000000000000000",
        // ERROR whose message length exceeds the chunk.
        "668e33ef 0001 8001 0000000000000001 00000006 00000005 0009",
        // ERROR with trailing bytes.
        "668e33ef 0001 8001 0000000000000001 00000007 00000005 0000 00",
    ];
    for case in cases {
        let mut buf = BytesMut::from(&hex(case)[..]);
        assert!(
            matches!(
                rd.decode(&mut buf, |_| 0),
                Err(DecodeError::BadLength { .. })
            ),
            "{case}"
        );
    }
}
