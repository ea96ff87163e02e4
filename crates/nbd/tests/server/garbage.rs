//! Property tests of the live server against arbitrary client input: random option
//! streams during the handshake and random request streams during transmission. Every
//! byte the server sends must be a well-formed answer to something the client sent, the
//! connection must end by itself, and the server must go on serving other clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use sd_nbd::codec::{
    ClientFlags, CmdFlags, CmdType, Cookie, Errno, Greeting, InfoRequest, MAX_BLOCK, NbdOption,
    OptionCode, OptionReply, OptionReplyBody, RawOption, Reply, ReplyDecoder, RequestHeader,
    encode_client_flags, encode_request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::mem::{MemDev, MemExports};
use super::strategy::{bytes_up_to, nbd_option};
use super::{DEADLINE, Server};

const SIZE: usize = 64 << 10;
const CASES: u32 = 48;

/// The byte at `i` of the test export.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A multi-threaded runtime, so the server keeps running between the cases, and a server
/// exporting one read-only disk, `disk`, filled with [`pattern`].
fn setup() -> (tokio::runtime::Runtime, Server, Arc<MemDev>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dev = MemDev::read_only((0..SIZE).map(pattern).collect());
    let exports = MemExports::default().with("disk", Arc::clone(&dev));
    let server = rt.block_on(Server::start(exports));
    (rt, server, dev)
}

/// Writes `bytes` (the server may close early: write errors are ignored), half-closes,
/// and returns everything the server sends until it closes.
async fn exchange(s: &mut TcpStream, bytes: &[u8]) -> BytesMut {
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut got = BytesMut::new();
    loop {
        match tokio::time::timeout(DEADLINE, s.read_buf(&mut got))
            .await
            .expect("the server closes the connection by itself")
        {
            Ok(0) => return got,
            Ok(_) => {}
            // A reset (the server closed with input unread) also ends the connection.
            Err(_) => return got,
        }
    }
}

/// Connects and takes the greeting.
async fn connect(addr: SocketAddr) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = BytesMut::new();
    loop {
        if let Some(_g) = Greeting::decode(&mut buf).expect("greeting") {
            return (s, buf);
        }
        let n = tokio::time::timeout(DEADLINE, s.read_buf(&mut buf))
            .await
            .expect("deadline")
            .expect("read");
        assert!(n > 0, "EOF before the greeting");
    }
}

/// A well-behaved client: GO `disk`, then READ 512 bytes at 1000 and check them.
async fn still_serves(addr: SocketAddr) {
    let (mut s, mut buf) = connect(addr).await;
    let mut out = BytesMut::new();
    encode_client_flags(
        ClientFlags::FIXED_NEWSTYLE | ClientFlags::NO_ZEROES,
        &mut out,
    );
    NbdOption::Go(InfoRequest {
        name: "disk".into(),
        items: vec![],
    })
    .to_raw()
    .encode(&mut out);
    encode_request(
        &RequestHeader {
            flags: CmdFlags::NONE,
            ty: CmdType::Read,
            cookie: Cookie(77),
            offset: 1000,
            length: 512,
        },
        &[],
        &mut out,
    );
    buf.extend_from_slice(&exchange(&mut s, &out).await);
    let info = OptionReply::decode(&mut buf).expect("valid").expect("info");
    assert!(matches!(info.body, OptionReplyBody::Info(_)), "{info:?}");
    let ack = OptionReply::decode(&mut buf).expect("valid").expect("ack");
    assert_eq!(ack.body, OptionReplyBody::Ack);
    let reply = ReplyDecoder::new(MAX_BLOCK)
        .decode(&mut buf, |_| 512)
        .expect("valid")
        .expect("reply");
    let want: Vec<u8> = (1000..1512).map(pattern).collect();
    assert_eq!(reply.bulk(), &want[..]);
    assert!(buf.is_empty());
}

/// One piece of a handshake stream.
#[derive(Debug, Clone)]
enum Piece {
    /// A well-formed option request (its data may still be invalid for the option).
    Option(RawOption),
    /// Bytes that are not an option request (they do not start with `IHAVEOPT`).
    Garbage(Vec<u8>),
}

fn handshake_piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => nbd_option().prop_map(|o| Piece::Option(o.to_raw())),
        2 => (0u32..16, bytes_up_to(40)).prop_map(|(code, data)| Piece::Option(RawOption {
            code: OptionCode::from_u32(code),
            data
        })),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(|mut g| {
            g[0] = g[0].wrapping_add(u8::from(g[0] == b'I'));
            Piece::Garbage(g)
        }),
    ]
}

#[test]
fn random_option_streams_get_well_formed_answers() {
    let (rt, server, _dev) = setup();
    let addr = server.addr;
    let strategy = (
        prop_oneof![Just(3u32), Just(1), any::<u32>()],
        proptest::collection::vec(handshake_piece(), 0..8),
    );
    let mut runner = TestRunner::new(RunnerConfig::with_cases(CASES));
    runner
        .run(&strategy, |(flags, pieces)| {
            rt.block_on(async {
                let (mut s, mut buf) = connect(addr).await;
                let mut out = BytesMut::new();
                encode_client_flags(ClientFlags(flags), &mut out);
                // The options the server can have read: those before the first garbage,
                // EXPORT_NAME or ABORT (each ends the handshake).
                let mut sent = Vec::new();
                let mut ended = flags & !0b11 != 0;
                for piece in &pieces {
                    match piece {
                        Piece::Option(raw) => {
                            raw.encode(&mut out);
                            if !ended {
                                sent.push(raw.code);
                            }
                            ended |= matches!(raw.code, OptionCode::ExportName | OptionCode::Abort);
                        }
                        Piece::Garbage(g) => {
                            out.extend_from_slice(g);
                            ended = true;
                        }
                    }
                }
                buf.extend_from_slice(&exchange(&mut s, &out).await);
                // Every byte is part of an option reply to an option that was sent, in
                // order; each option gets exactly one final reply (ACK or error).
                let mut finals = 0;
                while !buf.is_empty() {
                    let reply = OptionReply::decode(&mut buf)
                        .expect("well-formed reply")
                        .expect("complete reply");
                    let Some(code) = sent.get(finals) else {
                        panic!("{reply:?} answers no option sent ({sent:?})");
                    };
                    assert_eq!(reply.option, *code, "replies in order");
                    if matches!(
                        reply.body,
                        OptionReplyBody::Ack | OptionReplyBody::Error { .. }
                    ) {
                        finals += 1;
                    }
                }
                // An unknown export in EXPORT_NAME closes without a reply; everything
                // else the server read was answered.
                let unanswered = sent.len() - finals;
                assert!(
                    unanswered == 0
                        || (unanswered == 1 && sent.last() == Some(&OptionCode::ExportName)),
                    "{finals} final replies to {sent:?}"
                );
            });
            Ok(())
        })
        .expect("property holds");
    rt.block_on(still_serves(addr));
    rt.block_on(server.stop());
}

/// One piece of a transmission stream.
#[derive(Debug, Clone)]
enum Request {
    /// A request: header fields, WRITE payload generated from its length.
    Header {
        flags: u16,
        ty: u16,
        offset: u64,
        length: u32,
    },
    /// Bytes that are not a request (they do not start with the request magic).
    Garbage(Vec<u8>),
}

fn request_piece() -> impl Strategy<Value = Request> {
    let near_end = (SIZE - 4096) as u64..(SIZE + 4096) as u64;
    // Mostly valid READs, so that data is checked, among every other kind of request.
    prop_oneof![
        16 => (
            prop_oneof![6 => Just(0u16), 2 => Just(1), 1 => any::<u16>()],
            prop_oneof![6 => Just(0u16), 4 => 0u16..8, 1 => any::<u16>()],
            prop_oneof![6 => 0u64..(SIZE - 600) as u64, 2 => near_end, 1 => any::<u64>()],
            prop_oneof![8 => 0u32..600, 1 => Just(MAX_BLOCK + 1), 1 => any::<u32>()],
        )
            .prop_map(|(flags, ty, offset, length)| Request::Header {
                flags,
                ty,
                offset,
                length
            }),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(|mut g| {
            g[0] = g[0].wrapping_add(u8::from(g[0] == 0x25));
            Request::Garbage(g)
        }),
    ]
}

#[test]
fn random_request_streams_get_well_formed_answers() {
    let (rt, server, _dev) = setup();
    let addr = server.addr;
    let strategy = (
        any::<bool>(),
        proptest::collection::vec(request_piece(), 0..16),
    );
    let mut runner = TestRunner::new(RunnerConfig::with_cases(CASES));
    runner
        .run(&strategy, |(structured, pieces)| {
            rt.block_on(async {
                let (mut s, mut buf) = connect(addr).await;
                let mut out = BytesMut::new();
                encode_client_flags(
                    ClientFlags::FIXED_NEWSTYLE | ClientFlags::NO_ZEROES,
                    &mut out,
                );
                if structured {
                    NbdOption::StructuredReply.to_raw().encode(&mut out);
                }
                NbdOption::Go(InfoRequest {
                    name: "disk".into(),
                    items: vec![],
                })
                .to_raw()
                .encode(&mut out);
                // Requests the server reads: those before the first garbage or DISC. The
                // cookie is the index; each is answered once.
                let mut pending: BTreeMap<u64, RequestHeader> = BTreeMap::new();
                let mut ended = false;
                for (i, piece) in pieces.iter().enumerate() {
                    match piece {
                        Request::Header {
                            flags,
                            ty,
                            offset,
                            length,
                        } => {
                            let header = RequestHeader {
                                flags: CmdFlags(*flags),
                                ty: CmdType::from_u16(*ty),
                                cookie: Cookie(i as u64),
                                offset: *offset,
                                length: *length,
                            };
                            if header.ty == CmdType::Write && *length > 600 {
                                // Its payload is not sent, so it must be the last piece. The
                                // server answers one above the cap at once (and skips the
                                // payload it claims); a smaller one waits for its payload
                                // until the end of the stream, unanswered.
                                if !ended && *length > MAX_BLOCK {
                                    pending.insert(i as u64, header);
                                }
                                header.encode(&mut out);
                                break;
                            }
                            let payload = if header.ty == CmdType::Write {
                                vec![0xee; *length as usize]
                            } else {
                                Vec::new()
                            };
                            encode_request(&header, &payload, &mut out);
                            if !ended && header.ty != CmdType::Disc {
                                pending.insert(i as u64, header);
                            }
                            ended |= header.ty == CmdType::Disc;
                        }
                        Request::Garbage(g) => {
                            out.extend_from_slice(g);
                            ended = true;
                        }
                    }
                }
                buf.extend_from_slice(&exchange(&mut s, &out).await);
                if structured {
                    let ack = OptionReply::decode(&mut buf).expect("valid").expect("ack");
                    assert_eq!(ack.body, OptionReplyBody::Ack);
                }
                let info = OptionReply::decode(&mut buf).expect("valid").expect("info");
                assert!(matches!(info.body, OptionReplyBody::Info(_)), "{info:?}");
                let ack = OptionReply::decode(&mut buf).expect("valid").expect("ack");
                assert_eq!(ack.body, OptionReplyBody::Ack);
                check_replies(&mut buf, &mut pending);
            });
            Ok(())
        })
        .expect("property holds");
    rt.block_on(still_serves(addr));
    rt.block_on(server.stop());
}

/// Decodes the replies in `buf`: one complete reply (simple, or chunks ending with DONE)
/// per pending request, a successful READ carrying the export's bytes, nothing else.
fn check_replies(buf: &mut BytesMut, pending: &mut BTreeMap<u64, RequestHeader>) {
    let lens: BTreeMap<u64, u32> = pending
        .iter()
        .filter(|(_, h)| h.ty == CmdType::Read)
        .map(|(c, h)| (*c, h.length))
        .collect();
    let dec = ReplyDecoder::new(MAX_BLOCK + 8);
    while !buf.is_empty() {
        let reply = dec
            .decode(buf, |c| lens.get(&c.0).copied().unwrap_or(0))
            .expect("well-formed reply")
            .expect("complete reply");
        let cookie = reply.cookie().0;
        let Some(h) = pending.get(&cookie).copied() else {
            panic!("{reply:?} answers no pending request");
        };
        let read_at = |offset: u64, data: &[u8]| {
            let start = offset as usize;
            let want: Vec<u8> = (start..start + data.len()).map(pattern).collect();
            assert_eq!(data, &want[..], "READ data at {offset}");
        };
        match reply {
            Reply::Simple { error, data, .. } => {
                if h.ty == CmdType::Read && error == Errno::OK {
                    read_at(h.offset, &data);
                }
                if h.ty == CmdType::Write {
                    assert_ne!(error, Errno::OK, "a write to a read-only export succeeded");
                }
                pending.remove(&cookie);
            }
            Reply::Structured(chunk) => {
                if let sd_nbd::codec::ChunkBody::OffsetData { offset, data } = &chunk.body {
                    assert_eq!(h.ty, CmdType::Read);
                    assert!(*offset >= h.offset);
                    assert!(offset + data.len() as u64 <= h.offset + u64::from(h.length));
                    read_at(*offset, data);
                }
                if chunk.done {
                    pending.remove(&cookie);
                }
            }
        }
    }
    assert!(pending.is_empty(), "unanswered: {pending:?}");
}
