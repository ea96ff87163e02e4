//! Proptest round trips: every message decodes to what was encoded, also when the bytes
//! arrive split at arbitrary points.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sd_nbd::codec::{
    ChunkBody, ClientFlags, CmdFlags, CmdType, Cookie, Errno, ExportNameReply, Greeting,
    HandshakeFlags, Info, InfoRequest, InfoType, NbdOption, OptionCode, OptionReply,
    OptionReplyBody, RawOption, RepError, Reply, ReplyDecoder, RequestDecoder, RequestFrame,
    RequestHeader, StructuredChunk, TransmissionFlags, decode_client_flags, encode_client_flags,
    encode_request,
};

fn bytes_up_to(n: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
}

fn nonempty_bytes(n: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..n).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn info_type() -> impl Strategy<Value = InfoType> {
    any::<u16>().prop_map(InfoType::from_u16)
}

fn info_request() -> impl Strategy<Value = InfoRequest> {
    (text(), proptest::collection::vec(info_type(), 0..8))
        .prop_map(|(name, items)| InfoRequest { name, items })
}

/// Codes that `NbdOption::parse` maps to `Unsupported`.
fn unsupported_code() -> impl Strategy<Value = OptionCode> {
    any::<u32>()
        .prop_map(OptionCode::from_u32)
        .prop_filter("parsed option", |c| {
            !matches!(
                c,
                OptionCode::ExportName
                    | OptionCode::Abort
                    | OptionCode::List
                    | OptionCode::Info
                    | OptionCode::Go
                    | OptionCode::StructuredReply
            )
        })
}

fn nbd_option() -> impl Strategy<Value = NbdOption> {
    prop_oneof![
        text().prop_map(NbdOption::ExportName),
        Just(NbdOption::Abort),
        Just(NbdOption::List),
        info_request().prop_map(NbdOption::Info),
        info_request().prop_map(NbdOption::Go),
        Just(NbdOption::StructuredReply),
        unsupported_code().prop_map(NbdOption::Unsupported),
    ]
}

fn info() -> impl Strategy<Value = Info> {
    prop_oneof![
        (any::<u64>(), any::<u16>()).prop_map(|(size, f)| Info::Export {
            size,
            flags: TransmissionFlags(f)
        }),
        text().prop_map(Info::Name),
        text().prop_map(Info::Description),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(min, preferred, max)| {
            Info::BlockSize {
                min,
                preferred,
                max,
            }
        }),
        (4u16.., bytes_up_to(64)).prop_map(|(ty, data)| Info::Other { ty, data }),
    ]
}

fn option_reply() -> impl Strategy<Value = OptionReply> {
    let body = prop_oneof![
        Just(OptionReplyBody::Ack),
        (text(), text()).prop_map(|(name, details)| OptionReplyBody::Server { name, details }),
        info().prop_map(OptionReplyBody::Info),
        (any::<u32>(), text()).prop_map(|(n, message)| OptionReplyBody::Error {
            kind: RepError::from_u32(n | (1 << 31)),
            message,
        }),
        (4u32..(1 << 31), bytes_up_to(64))
            .prop_map(|(ty, data)| OptionReplyBody::Other { ty, data }),
    ];
    (any::<u32>(), body).prop_map(|(code, body)| OptionReply {
        option: OptionCode::from_u32(code),
        body,
    })
}

fn request() -> impl Strategy<Value = (RequestHeader, Bytes)> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        bytes_up_to(300),
    )
        .prop_map(|(flags, ty, cookie, offset, length, data)| {
            let ty = CmdType::from_u16(ty);
            let (length, data) = if ty == CmdType::Write {
                (u32::try_from(data.len()).expect("small"), data)
            } else {
                (length, Bytes::new())
            };
            let header = RequestHeader {
                flags: CmdFlags(flags),
                ty,
                cookie: Cookie(cookie),
                offset,
                length,
            };
            (header, data)
        })
}

fn chunk_body() -> impl Strategy<Value = ChunkBody> {
    prop_oneof![
        Just(ChunkBody::None),
        (any::<u64>(), nonempty_bytes(300))
            .prop_map(|(offset, data)| ChunkBody::OffsetData { offset, data }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(offset, len)| ChunkBody::OffsetHole { offset, len }),
        (1u32.., text()).prop_map(|(e, message)| ChunkBody::Error {
            error: Errno(e),
            message
        }),
        (1u32.., text(), any::<u64>()).prop_map(|(e, message, offset)| ChunkBody::ErrorOffset {
            error: Errno(e),
            message,
            offset
        }),
        (3u16..0x8001, bytes_up_to(64)).prop_map(|(ty, data)| ChunkBody::Other { ty, data }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (any::<u64>(), any::<u32>(), bytes_up_to(300)).prop_map(|(cookie, e, data)| {
            Reply::Simple {
                cookie: Cookie(cookie),
                error: Errno(e),
                data: if e == 0 { data } else { Bytes::new() },
            }
        }),
        (any::<u64>(), any::<bool>(), chunk_body()).prop_map(|(cookie, done, body)| {
            Reply::Structured(StructuredChunk {
                cookie: Cookie(cookie),
                done,
                body,
            })
        }),
    ]
}

/// Feeds `wire` to `decode` in pieces of the given sizes (cycled), collecting frames.
fn feed<T>(
    wire: &[u8],
    cuts: &[usize],
    mut decode: impl FnMut(&mut BytesMut) -> Option<T>,
) -> Vec<T> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts
            .get(i % cuts.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        i += 1;
        buf.extend_from_slice(piece);
        while let Some(frame) = decode(&mut buf) {
            out.push(frame);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

proptest! {
    #[test]
    fn greeting_and_client_flags(flags in any::<u16>(), client in any::<u32>()) {
        let g = Greeting { flags: HandshakeFlags(flags) };
        let mut buf = BytesMut::new();
        g.encode(&mut buf);
        encode_client_flags(ClientFlags(client), &mut buf);
        prop_assert_eq!(Greeting::decode(&mut buf), Ok(Some(g)));
        prop_assert_eq!(decode_client_flags(&mut buf), Ok(Some(ClientFlags(client))));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn raw_option(code in any::<u32>(), data in bytes_up_to(2000), cuts in proptest::collection::vec(1usize..40, 1..5)) {
        let raw = RawOption { code: OptionCode::from_u32(code), data };
        let mut wire = BytesMut::new();
        raw.encode(&mut wire);
        raw.encode(&mut wire);
        let got = feed(&wire, &cuts, |b| RawOption::decode(b).expect("valid"));
        prop_assert_eq!(got, vec![raw.clone(), raw]);
    }

    #[test]
    fn option(opt in nbd_option()) {
        let mut wire = BytesMut::new();
        opt.to_raw().encode(&mut wire);
        let raw = RawOption::decode(&mut wire).expect("valid").expect("complete");
        prop_assert_eq!(NbdOption::parse(&raw), Ok(opt));
    }

    #[test]
    fn option_reply_roundtrip(replies in proptest::collection::vec(option_reply(), 1..4), cuts in proptest::collection::vec(1usize..40, 1..5)) {
        let mut wire = BytesMut::new();
        for r in &replies {
            r.encode(&mut wire);
        }
        let got = feed(&wire, &cuts, |b| OptionReply::decode(b).expect("valid"));
        prop_assert_eq!(got, replies);
    }

    #[test]
    fn export_name_reply(size in any::<u64>(), flags in any::<u16>(), no_zeroes in any::<bool>()) {
        let r = ExportNameReply { size, flags: TransmissionFlags(flags), no_zeroes };
        let mut wire = BytesMut::new();
        r.encode(&mut wire);
        prop_assert_eq!(wire.len(), if no_zeroes { 10 } else { 134 });
        prop_assert_eq!(ExportNameReply::decode(&mut wire, no_zeroes), Ok(Some(r)));
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn requests(reqs in proptest::collection::vec(request(), 1..6), cuts in proptest::collection::vec(1usize..64, 1..5)) {
        let mut wire = BytesMut::new();
        for (h, data) in &reqs {
            encode_request(h, data, &mut wire);
        }
        let mut dec = RequestDecoder::new(1 << 20);
        let got = feed(&wire, &cuts, |b| dec.decode(b).expect("valid"));
        let want: Vec<RequestFrame> = reqs
            .into_iter()
            .map(|(header, payload)| RequestFrame::Request { header, payload })
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn replies(replies in proptest::collection::vec(reply(), 1..6), cuts in proptest::collection::vec(1usize..64, 1..5)) {
        let mut wire = BytesMut::new();
        for r in &replies {
            r.encode(&mut wire);
        }
        // The client knows how much data each simple reply carries: look it up by cookie
        // (the first matching reply; cookies from `any::<u64>()` do not collide in practice).
        let lens: Vec<(Cookie, u32)> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Simple { cookie, data, .. } => Some((*cookie, u32::try_from(data.len()).expect("small"))),
                Reply::Structured(_) => None,
            })
            .collect();
        let dec = ReplyDecoder::new(1 << 20);
        let got = feed(&wire, &cuts, |b| {
            dec.decode(b, |c| lens.iter().find(|(k, _)| *k == c).map_or(0, |(_, n)| *n)).expect("valid")
        });
        prop_assert_eq!(got, replies);
    }

    #[test]
    fn oversized_write_is_skipped(extra in 1u32..5000, cuts in proptest::collection::vec(1usize..2000, 1..5)) {
        let max = 1000;
        let big = RequestHeader { flags: CmdFlags::NONE, ty: CmdType::Write, cookie: Cookie(1), offset: 0, length: max + extra };
        let small = RequestHeader { flags: CmdFlags::NONE, ty: CmdType::Read, cookie: Cookie(2), offset: 0, length: 1 };
        let mut wire = BytesMut::new();
        encode_request(&big, &vec![0x5a; usize::try_from(max + extra).expect("small")], &mut wire);
        encode_request(&small, &[], &mut wire);
        let mut dec = RequestDecoder::new(max);
        let got = feed(&wire, &cuts, |b| dec.decode(b).expect("valid"));
        prop_assert_eq!(got, vec![
            RequestFrame::Oversized { header: big },
            RequestFrame::Request { header: small, payload: Bytes::new() },
        ]);
    }
}
