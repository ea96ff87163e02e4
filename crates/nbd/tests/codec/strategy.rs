//! Proptest strategies for every message the codec encodes, and a helper that feeds
//! encoded bytes to a decoder in arbitrary pieces; shared by the round-trip and the
//! untrusted-input tests.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sd_nbd::codec::{
    ChunkBody, CmdFlags, CmdType, Cookie, Errno, Info, InfoRequest, InfoType, NbdOption,
    OptionCode, OptionReply, OptionReplyBody, RepError, Reply, RequestHeader, StructuredChunk,
    TransmissionFlags,
};

pub(crate) fn bytes_up_to(n: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
}

pub(crate) fn nonempty_bytes(n: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..n).prop_map(Bytes::from)
}

pub(crate) fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

pub(crate) fn info_type() -> impl Strategy<Value = InfoType> {
    any::<u16>().prop_map(InfoType::from_u16)
}

pub(crate) fn info_request() -> impl Strategy<Value = InfoRequest> {
    (text(), proptest::collection::vec(info_type(), 0..8))
        .prop_map(|(name, items)| InfoRequest { name, items })
}

/// Codes that `NbdOption::parse` maps to `Unsupported`.
pub(crate) fn unsupported_code() -> impl Strategy<Value = OptionCode> {
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

pub(crate) fn nbd_option() -> impl Strategy<Value = NbdOption> {
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

pub(crate) fn info() -> impl Strategy<Value = Info> {
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

pub(crate) fn option_reply() -> impl Strategy<Value = OptionReply> {
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

pub(crate) fn request() -> impl Strategy<Value = (RequestHeader, Bytes)> {
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

pub(crate) fn chunk_body() -> impl Strategy<Value = ChunkBody> {
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

pub(crate) fn reply() -> impl Strategy<Value = Reply> {
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
pub(crate) fn feed<T>(
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
