//! Decoders fed untrusted bytes: never a panic, a clean outcome (wait without consuming,
//! a message that re-encodes to itself, or a documented error), truncated messages wait,
//! and length fields above the caps are refused before anything is allocated for them.

use bytes::BytesMut;
use proptest::prelude::*;
use sd_nbd::codec::{
    DecodeError, ExportNameReply, Greeting, InfoRequest, InfoType, MAX_BLOCK, MAX_OPTION_PAYLOAD,
    NbdOption, OptionCode, OptionError, OptionReply, RawOption, ReplyDecoder, RequestDecoder,
    RequestFrame, decode_client_flags,
};

use super::hex;
use super::message::{check_outcome, decoder, message};

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

/// Option data shaped like an `NBD_OPT_GO`/`INFO` request whose fields may disagree: a
/// name length, name bytes, an item count, items and trailing bytes.
#[derive(Debug, Clone)]
struct InfoLike {
    name_len: u32,
    name: Vec<u8>,
    count: u16,
    items: Vec<u16>,
    trailing: Vec<u8>,
}

impl InfoLike {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.name_len.to_be_bytes().to_vec();
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.count.to_be_bytes());
        for item in &self.items {
            out.extend_from_slice(&item.to_be_bytes());
        }
        out.extend_from_slice(&self.trailing);
        out
    }

    /// What the parser must make of it, when that follows from the fields alone: with a
    /// name length that agrees, a non-UTF-8 name is `NotUtf8`, else the request if the
    /// count describes the bytes after it, else `BadLength`; a name length beyond
    /// the data is `BadLength`. (A shorter name length makes the parser read the count
    /// out of the name: then only the clean-outcome properties apply.)
    fn expected(&self) -> Option<Result<InfoRequest, OptionError>> {
        let after_len = self.name.len() + 2 + 2 * self.items.len() + self.trailing.len();
        if self.name_len as usize > after_len {
            return Some(Err(OptionError::BadLength));
        }
        if self.name_len as usize != self.name.len() {
            return None;
        }
        let Ok(name) = String::from_utf8(self.name.clone()) else {
            return Some(Err(OptionError::NotUtf8));
        };
        // The count must describe exactly the bytes after it (trailing bytes may happen to
        // complete more items).
        let rest: Vec<u8> = self
            .items
            .iter()
            .flat_map(|i| i.to_be_bytes())
            .chain(self.trailing.iter().copied())
            .collect();
        if 2 * usize::from(self.count) != rest.len() {
            return Some(Err(OptionError::BadLength));
        }
        let items = rest
            .chunks(2)
            .map(|p| InfoType::from_u16(u16::from_be_bytes([p[0], p[1]])))
            .collect();
        Some(Ok(InfoRequest { name, items }))
    }
}

fn info_like() -> impl Strategy<Value = InfoLike> {
    // Lengths that usually agree (so the success path is reached) and sometimes do not.
    (
        proptest::collection::vec(any::<u8>(), 0..24),
        proptest::option::weighted(0.8, Just(())),
        proptest::collection::vec(any::<u16>(), 0..6),
        proptest::option::weighted(0.8, Just(())),
        0u32..40,
        0u16..10,
        proptest::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(
            |(name, name_ok, items, count_ok, name_len, count, trailing)| {
                let name = if name_ok.is_some() && name.iter().any(|b| *b >= 0x80) {
                    // Mostly UTF-8 names; the odd non-ASCII byte string tests NotUtf8.
                    name.iter().map(|b| b & 0x7f).collect()
                } else {
                    name
                };
                InfoLike {
                    name_len: if name_ok.is_some() {
                        name.len() as u32
                    } else {
                        name_len
                    },
                    count: if count_ok.is_some() {
                        items.len() as u16
                    } else {
                        count
                    },
                    name,
                    items,
                    trailing,
                }
            },
        )
}

proptest! {
    /// Every strict prefix of every message is `Ok(None)` and consumes nothing; the whole
    /// message decodes to itself and consumes exactly its own bytes.
    #[test]
    fn every_prefix_of_a_message_waits(msg in message()) {
        let wire = msg.encode();
        let dec = msg.decoder();
        for cut in 0..wire.len() {
            prop_assert_eq!(check_outcome(dec, &wire[..cut]), Ok(None), "cut at {}", cut);
        }
        let mut buf = wire.clone();
        buf.extend_from_slice(b"next");
        prop_assert_eq!(dec.decode(&mut buf), Ok(Some(msg)));
        prop_assert_eq!(&buf[..], b"next");
    }

    /// A valid message with one byte changed, cut anywhere: a clean outcome, and a change
    /// outside any length, magic or type field still decodes.
    #[test]
    fn corrupted_messages_decode_cleanly(
        msg in message(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = msg.encode().to_vec();
        let i = pos.index(wire.len());
        wire[i] = byte;
        let end = cut.index(wire.len() + 1);
        let _ = check_outcome(msg.decoder(), &wire[..end]);
    }

    /// Arbitrary bytes, and arbitrary bytes behind the right magic, into every decoder.
    #[test]
    fn random_bytes_decode_cleanly(
        dec in decoder(),
        simple in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = check_outcome(dec, &bytes);
        let mut behind_magic = dec.magic(simple);
        behind_magic.extend_from_slice(&bytes);
        let _ = check_outcome(dec, &behind_magic);
    }

    /// Info-request data is parsed exactly when its lengths agree with it; whatever
    /// parses re-encodes to the same data.
    #[test]
    fn info_request_data_parses_exactly_when_consistent(like in info_like(), go in any::<bool>()) {
        let code = if go { OptionCode::Go } else { OptionCode::Info };
        let data = like.encode();
        let raw = RawOption { code, data: data.clone().into() };
        let got = NbdOption::parse(&raw);
        if let Some(want) = like.expected() {
            let want = want.map(|req| if go { NbdOption::Go(req) } else { NbdOption::Info(req) });
            prop_assert_eq!(&got, &want);
        }
        if let Ok(opt) = got {
            prop_assert_eq!(&opt.to_raw().data[..], &data[..]);
        }
    }

    /// Every strict prefix and every extension of a valid GO/INFO request is refused as
    /// `BadLength`: the lengths inside must describe the data exactly.
    #[test]
    fn cut_or_extended_info_requests_are_bad_length(
        req in super::strategy::info_request(),
        extra in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let data = NbdOption::Go(req).to_raw().data;
        let parse = |d: &[u8]| NbdOption::parse(&RawOption { code: OptionCode::Go, data: d.to_vec().into() });
        for cut in 0..data.len() {
            prop_assert_eq!(parse(&data[..cut]), Err(OptionError::BadLength), "cut at {}", cut);
        }
        let mut longer = data.to_vec();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(parse(&longer), Err(OptionError::BadLength));
    }

    /// Any data for any option: parsed options re-encode to the same data; errors say
    /// what is wrong with it.
    #[test]
    fn option_data_is_parsed_or_refused_for_a_reason(
        code in 0u32..16,
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let raw = RawOption { code: OptionCode::from_u32(code), data: data.clone().into() };
        match NbdOption::parse(&raw) {
            Ok(opt) => {
                let again = opt.to_raw();
                prop_assert_eq!(again.code, raw.code);
                prop_assert_eq!(NbdOption::parse(&again), Ok(opt.clone()));
                if !matches!(opt, NbdOption::Abort | NbdOption::Unsupported(_)) {
                    prop_assert_eq!(&again.data[..], &data[..]);
                }
            }
            Err(OptionError::UnexpectedData(n)) => {
                prop_assert!(matches!(raw.code, OptionCode::List | OptionCode::StructuredReply));
                prop_assert_eq!(n, data.len());
            }
            Err(OptionError::BadLength) => {
                prop_assert!(matches!(raw.code, OptionCode::Info | OptionCode::Go));
            }
            Err(OptionError::NotUtf8) => {
                prop_assert!(matches!(raw.code, OptionCode::ExportName | OptionCode::Info | OptionCode::Go));
                prop_assert!(std::str::from_utf8(&data).is_err() || raw.code != OptionCode::ExportName);
            }
            Err(OptionError::NameTooLong(n)) => prop_assert!(n > sd_nbd::codec::MAX_NAME_LEN),
        }
    }
}
