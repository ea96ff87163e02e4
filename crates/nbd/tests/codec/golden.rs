//! Golden bytes: each message encodes to the exact layout of NBD `doc/proto.md`, and the
//! same bytes decode back to the message.

use bytes::{Bytes, BytesMut};
use sd_nbd::codec::{
    ChunkBody, ClientFlags, CmdFlags, CmdType, Cookie, Errno, ExportNameReply, Greeting,
    HandshakeFlags, Info, InfoRequest, InfoType, NbdOption, OptionCode, OptionReply,
    OptionReplyBody, RawOption, RepError, Reply, ReplyDecoder, RequestDecoder, RequestFrame,
    RequestHeader, StructuredChunk, TransmissionFlags, decode_client_flags, encode_client_flags,
    encode_request,
};

use super::hex;

/// HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES | CAN_MULTI_CONN.
const RW_FLAGS: u16 = 0x016d;

fn encoded(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    f(&mut b);
    b.to_vec()
}

#[test]
fn greeting() {
    let g = Greeting {
        flags: HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES,
    };
    let want = hex("4e42444d41474943 | 49484156454f5054 | 0003");
    assert_eq!(want, b"NBDMAGICIHAVEOPT\x00\x03");
    assert_eq!(encoded(|b| g.encode(b)), want);
    let mut buf = BytesMut::from(&want[..]);
    assert_eq!(Greeting::decode(&mut buf), Ok(Some(g)));
    assert!(buf.is_empty());
}

#[test]
fn client_flags() {
    let f = ClientFlags::FIXED_NEWSTYLE | ClientFlags::NO_ZEROES;
    let want = hex("00000003");
    assert_eq!(encoded(|b| encode_client_flags(f, b)), want);
    let mut buf = BytesMut::from(&want[..]);
    assert_eq!(decode_client_flags(&mut buf), Ok(Some(f)));
}

#[test]
fn option_go_request() {
    let opt = NbdOption::Go(InfoRequest {
        name: "disk".into(),
        items: vec![InfoType::BlockSize, InfoType::Name],
    });
    // magic | NBD_OPT_GO | length 14 | name length 4 | "disk" | 2 items | 3 | 1
    let want =
        hex("49484156454f5054 | 00000007 | 0000000e | 00000004 | 6469736b | 0002 | 0003 | 0001");
    assert_eq!(encoded(|b| opt.to_raw().encode(b)), want);
    let mut buf = BytesMut::from(&want[..]);
    let raw = RawOption::decode(&mut buf)
        .expect("valid")
        .expect("complete");
    assert_eq!(raw.code, OptionCode::Go);
    assert_eq!(NbdOption::parse(&raw), Ok(opt));
}

#[test]
fn option_export_name_and_simple_options() {
    let cases = [
        (
            NbdOption::ExportName("vdi@snap".into()),
            "49484156454f5054 00000001 00000008 76646940736e6170",
        ),
        (NbdOption::Abort, "49484156454f5054 00000002 00000000"),
        (NbdOption::List, "49484156454f5054 00000003 00000000"),
        (
            NbdOption::StructuredReply,
            "49484156454f5054 00000008 00000000",
        ),
        (
            NbdOption::Unsupported(OptionCode::StartTls),
            "49484156454f5054 00000005 00000000",
        ),
    ];
    for (opt, bytes) in cases {
        let want = hex(bytes);
        assert_eq!(encoded(|b| opt.to_raw().encode(b)), want, "{opt:?}");
        let mut buf = BytesMut::from(&want[..]);
        let raw = RawOption::decode(&mut buf)
            .expect("valid")
            .expect("complete");
        assert_eq!(NbdOption::parse(&raw), Ok(opt));
    }
}

fn reply_case(reply: OptionReply, bytes: &str) {
    let want = hex(bytes);
    assert_eq!(encoded(|b| reply.encode(b)), want, "{reply:?}");
    let mut buf = BytesMut::from(&want[..]);
    assert_eq!(OptionReply::decode(&mut buf), Ok(Some(reply)));
    assert!(buf.is_empty());
}

#[test]
fn option_replies() {
    let go = |body| OptionReply {
        option: OptionCode::Go,
        body,
    };
    reply_case(
        go(OptionReplyBody::Ack),
        "0003e889045565a9 | 00000007 | 00000001 | 00000000",
    );
    reply_case(
        go(OptionReplyBody::Info(Info::Export {
            size: 1 << 20,
            flags: TransmissionFlags(RW_FLAGS),
        })),
        "0003e889045565a9 | 00000007 | 00000003 | 0000000c | 0000 | 0000000000100000 | 016d",
    );
    reply_case(
        go(OptionReplyBody::Info(Info::BlockSize {
            min: 1,
            preferred: 4096,
            max: 32 << 20,
        })),
        "0003e889045565a9 | 00000007 | 00000003 | 0000000e | 0003 | 00000001 | 00001000 | 02000000",
    );
    reply_case(
        go(OptionReplyBody::Info(Info::Name("disk".into()))),
        "0003e889045565a9 | 00000007 | 00000003 | 00000006 | 0001 | 6469736b",
    );
    reply_case(
        go(OptionReplyBody::Info(Info::Description("d".into()))),
        "0003e889045565a9 | 00000007 | 00000003 | 00000003 | 0002 | 64",
    );
    reply_case(
        go(OptionReplyBody::Error {
            kind: RepError::Unknown,
            message: "no".into(),
        }),
        "0003e889045565a9 | 00000007 | 80000006 | 00000002 | 6e6f",
    );
    reply_case(
        OptionReply {
            option: OptionCode::List,
            body: OptionReplyBody::Server {
                name: "a".into(),
                details: String::new(),
            },
        },
        "0003e889045565a9 | 00000003 | 00000002 | 00000005 | 00000001 | 61",
    );
    reply_case(
        OptionReply {
            option: OptionCode::Unknown(42),
            body: OptionReplyBody::Error {
                kind: RepError::Unsup,
                message: String::new(),
            },
        },
        "0003e889045565a9 | 0000002a | 80000001 | 00000000",
    );
}

#[test]
fn rep_error_numbers() {
    let table = [
        (RepError::Unsup, 0x8000_0001),
        (RepError::Policy, 0x8000_0002),
        (RepError::Invalid, 0x8000_0003),
        (RepError::Platform, 0x8000_0004),
        (RepError::TlsReqd, 0x8000_0005),
        (RepError::Unknown, 0x8000_0006),
        (RepError::Shutdown, 0x8000_0007),
        (RepError::BlockSizeReqd, 0x8000_0008),
        (RepError::TooBig, 0x8000_0009),
    ];
    for (e, n) in table {
        assert_eq!(e.to_u32(), n);
        assert_eq!(RepError::from_u32(n), e);
    }
}

#[test]
fn transmission_flag_bits() {
    let table = [
        (TransmissionFlags::HAS_FLAGS, 1 << 0),
        (TransmissionFlags::READ_ONLY, 1 << 1),
        (TransmissionFlags::SEND_FLUSH, 1 << 2),
        (TransmissionFlags::SEND_FUA, 1 << 3),
        (TransmissionFlags::ROTATIONAL, 1 << 4),
        (TransmissionFlags::SEND_TRIM, 1 << 5),
        (TransmissionFlags::SEND_WRITE_ZEROES, 1 << 6),
        (TransmissionFlags::SEND_DF, 1 << 7),
        (TransmissionFlags::CAN_MULTI_CONN, 1 << 8),
    ];
    for (flag, bit) in table {
        assert_eq!(flag.0, bit);
    }
    let cmd = [
        (CmdFlags::FUA, 1),
        (CmdFlags::NO_HOLE, 2),
        (CmdFlags::DF, 4),
    ];
    for (flag, bit) in cmd {
        assert_eq!(flag.0, bit);
    }
    let types = [
        (CmdType::Read, 0),
        (CmdType::Write, 1),
        (CmdType::Disc, 2),
        (CmdType::Flush, 3),
        (CmdType::Trim, 4),
        (CmdType::WriteZeroes, 6),
    ];
    for (ty, n) in types {
        assert_eq!(ty.to_u16(), n);
        assert_eq!(CmdType::from_u16(n), ty);
    }
    assert_eq!(CmdType::from_u16(5), CmdType::Unknown(5));
}

#[test]
fn export_name_reply() {
    let r = ExportNameReply {
        size: 1 << 30,
        flags: TransmissionFlags(RW_FLAGS),
        no_zeroes: true,
    };
    let short = hex("0000000040000000 016d");
    assert_eq!(encoded(|b| r.encode(b)), short);
    let mut buf = BytesMut::from(&short[..]);
    assert_eq!(ExportNameReply::decode(&mut buf, true), Ok(Some(r)));

    let padded = ExportNameReply {
        no_zeroes: false,
        ..r
    };
    let mut long = short.clone();
    long.extend_from_slice(&[0; 124]);
    assert_eq!(encoded(|b| padded.encode(b)), long);
    let mut buf = BytesMut::from(&long[..]);
    assert_eq!(ExportNameReply::decode(&mut buf, false), Ok(Some(padded)));
}

#[test]
fn write_request() {
    let header = RequestHeader {
        flags: CmdFlags::FUA,
        ty: CmdType::Write,
        cookie: Cookie(0x0102_0304_0506_0708),
        offset: 4096,
        length: 4,
    };
    let want =
        hex("25609513 | 0001 | 0001 | 0102030405060708 | 0000000000001000 | 00000004 | deadbeef");
    let payload = hex("deadbeef");
    assert_eq!(encoded(|b| encode_request(&header, &payload, b)), want);
    let mut buf = BytesMut::from(&want[..]);
    let frame = RequestDecoder::new(1 << 20).decode(&mut buf);
    assert_eq!(
        frame,
        Ok(Some(RequestFrame::Request {
            header,
            payload: Bytes::from(payload),
        }))
    );
}

#[test]
fn read_and_disc_requests() {
    let read = RequestHeader {
        flags: CmdFlags::DF,
        ty: CmdType::Read,
        cookie: Cookie(9),
        offset: 1 << 40,
        length: 1 << 16,
    };
    let want = hex("25609513 0004 0000 0000000000000009 0000010000000000 00010000");
    assert_eq!(encoded(|b| encode_request(&read, b"ignored", b)), want);
    let disc = RequestHeader {
        flags: CmdFlags::NONE,
        ty: CmdType::Disc,
        cookie: Cookie(10),
        offset: 0,
        length: 0,
    };
    let want_disc = hex("25609513 0000 0002 000000000000000a 0000000000000000 00000000");
    assert_eq!(encoded(|b| encode_request(&disc, &[], b)), want_disc);
}

fn reply_roundtrip(reply: Reply, bytes: &str, read_len: u32) {
    let want = hex(bytes);
    assert_eq!(encoded(|b| reply.encode(b)), want, "{reply:?}");
    let mut buf = BytesMut::from(&want[..]);
    let got = ReplyDecoder::new(1 << 20).decode(&mut buf, |_| read_len);
    assert_eq!(got, Ok(Some(reply)));
    assert!(buf.is_empty());
}

#[test]
fn simple_replies() {
    reply_roundtrip(
        Reply::Simple {
            cookie: Cookie(0x0102_0304_0506_0708),
            error: Errno::OK,
            data: Bytes::from_static(b"\xab\xcd"),
        },
        "67446698 | 00000000 | 0102030405060708 | abcd",
        2,
    );
    // An error reply carries no data even for a READ.
    reply_roundtrip(
        Reply::Simple {
            cookie: Cookie(1),
            error: Errno::ENOSPC,
            data: Bytes::new(),
        },
        "67446698 | 0000001c | 0000000000000001",
        512,
    );
}

#[test]
fn structured_chunks() {
    let chunk = |done, body| {
        Reply::Structured(StructuredChunk {
            cookie: Cookie(5),
            done,
            body,
        })
    };
    reply_roundtrip(
        chunk(
            true,
            ChunkBody::OffsetData {
                offset: 512,
                data: Bytes::from_static(b"\x01\x02\x03\x04"),
            },
        ),
        "668e33ef | 0001 | 0001 | 0000000000000005 | 0000000c | 0000000000000200 | 01020304",
        0,
    );
    reply_roundtrip(
        chunk(true, ChunkBody::None),
        "668e33ef | 0001 | 0000 | 0000000000000005 | 00000000",
        0,
    );
    reply_roundtrip(
        chunk(
            true,
            ChunkBody::Error {
                error: Errno::EINVAL,
                message: "hi".into(),
            },
        ),
        "668e33ef | 0001 | 8001 | 0000000000000005 | 00000008 | 00000016 | 0002 | 6869",
        0,
    );
    reply_roundtrip(
        chunk(
            false,
            ChunkBody::ErrorOffset {
                error: Errno::EIO,
                message: String::new(),
                offset: 7,
            },
        ),
        "668e33ef | 0000 | 8002 | 0000000000000005 | 0000000e | 00000005 | 0000 | 0000000000000007",
        0,
    );
    reply_roundtrip(
        chunk(
            false,
            ChunkBody::OffsetHole {
                offset: 0,
                len: 4096,
            },
        ),
        "668e33ef | 0000 | 0002 | 0000000000000005 | 0000000c | 0000000000000000 | 00001000",
        0,
    );
}

#[test]
fn errno_values() {
    let table = [
        (Errno::EPERM, 1),
        (Errno::EIO, 5),
        (Errno::ENOMEM, 12),
        (Errno::EINVAL, 22),
        (Errno::ENOSPC, 28),
        (Errno::EOVERFLOW, 75),
        (Errno::ENOTSUP, 95),
        (Errno::ESHUTDOWN, 108),
    ];
    for (e, n) in table {
        assert_eq!(e.0, n);
    }
}
