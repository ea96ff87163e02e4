//! Raw-socket tests: a scripted client writes protocol bytes and asserts the exact bytes
//! (or decoded frames) that come back, including malformed input and ordering.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use sd_nbd::codec::{
    ChunkBody, ClientFlags, CmdFlags, CmdType, Cookie, DecodeError, Errno, ExportNameReply,
    Greeting, HandshakeFlags, Info, InfoRequest, InfoType, MAX_BLOCK, NbdOption, OptionCode,
    OptionReply, OptionReplyBody, RawOption, RepError, Reply, ReplyDecoder, RequestHeader,
    StructuredChunk, TransmissionFlags, encode_client_flags, encode_request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::mem::{MemDev, MemExports};
use super::{DEADLINE, Server};

const SIZE: usize = 1 << 20;
/// HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES | CAN_MULTI_CONN.
const RW_FLAGS: u16 = 0x016d;

/// A scripted client speaking through the crate's own codec.
struct RawClient {
    s: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    async fn connect(addr: SocketAddr) -> RawClient {
        let s = TcpStream::connect(addr).await.expect("connect");
        RawClient {
            s,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("send");
    }

    /// Exactly `n` bytes from the server.
    async fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let got = tokio::time::timeout(DEADLINE, self.s.read_buf(&mut self.buf))
                .await
                .expect("deadline")
                .expect("read");
            assert!(got > 0, "EOF after {:?}", &self.buf[..]);
        }
        self.buf.split_to(n).to_vec()
    }

    /// The next frame from the server.
    async fn next<T>(
        &mut self,
        mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) -> T {
        loop {
            if let Some(frame) = decode(&mut self.buf).expect("valid frame") {
                return frame;
            }
            let got = tokio::time::timeout(DEADLINE, self.s.read_buf(&mut self.buf))
                .await
                .expect("deadline")
                .expect("read");
            assert!(got > 0, "EOF mid-frame");
        }
    }

    /// Asserts the server closes the connection without sending anything more.
    async fn expect_eof(&mut self) {
        let got = tokio::time::timeout(DEADLINE, self.s.read_buf(&mut self.buf))
            .await
            .expect("deadline");
        match got {
            Ok(0) => assert!(self.buf.is_empty(), "unexpected bytes {:?}", &self.buf[..]),
            Ok(n) => panic!("expected EOF, got {n} bytes: {:?}", &self.buf[..]),
            // A reset is also a close.
            Err(_) => {}
        }
    }

    /// Greeting and client flags.
    async fn hello(addr: SocketAddr) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        let g = c.next(Greeting::decode).await;
        assert_eq!(
            g.flags,
            HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES
        );
        let mut out = BytesMut::new();
        encode_client_flags(
            ClientFlags::FIXED_NEWSTYLE | ClientFlags::NO_ZEROES,
            &mut out,
        );
        c.send(&out).await;
        c
    }

    async fn option(&mut self, opt: &NbdOption) {
        let mut out = BytesMut::new();
        opt.to_raw().encode(&mut out);
        self.send(&out).await;
    }

    async fn opt_reply(&mut self) -> OptionReply {
        self.next(OptionReply::decode).await
    }

    /// Handshake through NBD_OPT_GO; returns the size and flags.
    async fn go(
        addr: SocketAddr,
        name: &str,
        structured: bool,
    ) -> (RawClient, u64, TransmissionFlags) {
        let mut c = RawClient::hello(addr).await;
        if structured {
            c.option(&NbdOption::StructuredReply).await;
            assert_eq!(c.opt_reply().await.body, OptionReplyBody::Ack);
        }
        c.option(&NbdOption::Go(InfoRequest {
            name: name.into(),
            items: vec![],
        }))
        .await;
        let OptionReplyBody::Info(Info::Export { size, flags }) = c.opt_reply().await.body else {
            panic!("expected NBD_INFO_EXPORT");
        };
        assert_eq!(c.opt_reply().await.body, OptionReplyBody::Ack);
        (c, size, flags)
    }

    async fn request(
        &mut self,
        ty: CmdType,
        flags: CmdFlags,
        cookie: u64,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) {
        let mut out = BytesMut::new();
        let header = RequestHeader {
            flags,
            ty,
            cookie: Cookie(cookie),
            offset,
            length,
        };
        encode_request(&header, payload, &mut out);
        self.send(&out).await;
    }

    /// The next reply; a simple reply to a cookie in `reads` carries that many bytes.
    async fn reply(&mut self, reads: &[(u64, u32)]) -> Reply {
        let dec = ReplyDecoder::new(MAX_BLOCK + 64);
        self.next(|b| {
            dec.decode(b, |c| {
                reads.iter().find(|(k, _)| *k == c.0).map_or(0, |(_, n)| *n)
            })
        })
        .await
    }
}

fn simple(cookie: u64, error: Errno, data: &[u8]) -> Reply {
    Reply::Simple {
        cookie: Cookie(cookie),
        error,
        data: Bytes::copy_from_slice(data),
    }
}

fn chunk(cookie: u64, body: ChunkBody) -> Reply {
    Reply::Structured(StructuredChunk {
        cookie: Cookie(cookie),
        done: true,
        body,
    })
}

fn disk() -> (Arc<MemDev>, MemExports) {
    let dev = MemDev::new(SIZE);
    let exports = MemExports::default().with("disk", Arc::clone(&dev));
    (dev, exports)
}

#[tokio::test]
async fn handshake_bytes_are_exact() {
    let (_dev, exports) = disk();
    let server = Server::start(exports).await;
    let mut c = RawClient::connect(server.addr).await;
    assert_eq!(c.bytes(18).await, b"NBDMAGICIHAVEOPT\x00\x03");
    c.send(&[0, 0, 0, 3]).await;
    // NBD_OPT_GO "disk", asking for block size, name, description and an unknown item.
    c.send(&super::hex(
        "49484156454f5054 00000007 00000012 00000004 6469736b 0004 0003 0001 0002 00ff",
    ))
    .await;
    let mut want = super::hex(
        "0003e889045565a9 00000007 00000003 0000000c 0000 0000000000100000 016d \
         0003e889045565a9 00000007 00000003 0000000e 0003 00000001 00001000 02000000 \
         0003e889045565a9 00000007 00000003 00000006 0001 6469736b",
    );
    let desc = b"in-memory test device";
    want.extend_from_slice(&super::hex("0003e889045565a9 00000007 00000003"));
    want.extend_from_slice(&(2 + desc.len() as u32).to_be_bytes());
    want.extend_from_slice(&[0, 2]);
    want.extend_from_slice(desc);
    want.extend_from_slice(&super::hex("0003e889045565a9 00000007 00000001 00000000"));
    assert_eq!(c.bytes(want.len()).await, want);
    // Transmission: a read of 4 bytes.
    c.send(&super::hex(
        "25609513 0000 0000 00000000000000aa 0000000000000000 00000004",
    ))
    .await;
    assert_eq!(
        c.bytes(20).await,
        super::hex("67446698 00000000 00000000000000aa 00000000")
    );
    server.stop().await;
}

#[tokio::test]
async fn list_info_and_unsupported_options() {
    let (_dev, exports) = disk();
    let exports = exports.with("other", MemDev::read_only(vec![7; 4096]));
    let server = Server::start(exports).await;
    let mut c = RawClient::hello(server.addr).await;

    c.option(&NbdOption::List).await;
    let mut names = Vec::new();
    loop {
        match c.opt_reply().await.body {
            OptionReplyBody::Server { name, .. } => names.push(name),
            OptionReplyBody::Ack => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(names, ["disk", "other"]);

    // Unknown and unsupported options: NBD_REP_ERR_UNSUP, haggling continues.
    for code in [
        OptionCode::Unknown(99),
        OptionCode::StartTls,
        OptionCode::SetMetaContext,
    ] {
        c.send(&{
            let mut b = BytesMut::new();
            RawOption {
                code,
                data: Bytes::from_static(b"xyz"),
            }
            .encode(&mut b);
            b
        })
        .await;
        let r = c.opt_reply().await;
        assert_eq!(r.option, code);
        assert!(
            matches!(
                r.body,
                OptionReplyBody::Error {
                    kind: RepError::Unsup,
                    ..
                }
            ),
            "{r:?}"
        );
    }

    // Syntactically invalid options: NBD_REP_ERR_INVALID.
    c.send(&super::hex("49484156454f5054 00000003 00000001 00"))
        .await;
    assert!(matches!(
        c.opt_reply().await.body,
        OptionReplyBody::Error {
            kind: RepError::Invalid,
            ..
        }
    ));
    c.send(&super::hex(
        "49484156454f5054 00000007 00000006 00000009 0000",
    ))
    .await;
    assert!(matches!(
        c.opt_reply().await.body,
        OptionReplyBody::Error {
            kind: RepError::Invalid,
            ..
        }
    ));

    // NBD_OPT_INFO on an unknown export, then on a read-only one.
    c.option(&NbdOption::Info(InfoRequest {
        name: "nope".into(),
        items: vec![],
    }))
    .await;
    let r = c.opt_reply().await;
    assert!(
        matches!(
            r.body,
            OptionReplyBody::Error {
                kind: RepError::Unknown,
                ..
            }
        ),
        "{r:?}"
    );
    c.option(&NbdOption::Info(InfoRequest {
        name: "other".into(),
        items: vec![InfoType::Name],
    }))
    .await;
    assert_eq!(
        c.opt_reply().await.body,
        OptionReplyBody::Info(Info::Export {
            size: 4096,
            flags: TransmissionFlags::HAS_FLAGS
                | TransmissionFlags::READ_ONLY
                | TransmissionFlags::SEND_FLUSH
                | TransmissionFlags::CAN_MULTI_CONN,
        })
    );
    assert_eq!(
        c.opt_reply().await.body,
        OptionReplyBody::Info(Info::Name("other".into()))
    );
    assert_eq!(c.opt_reply().await.body, OptionReplyBody::Ack);

    // Still haggling: GO works, and with structured replies DF is advertised.
    c.option(&NbdOption::StructuredReply).await;
    assert_eq!(c.opt_reply().await.body, OptionReplyBody::Ack);
    c.option(&NbdOption::Go(InfoRequest {
        name: "disk".into(),
        items: vec![],
    }))
    .await;
    assert_eq!(
        c.opt_reply().await.body,
        OptionReplyBody::Info(Info::Export {
            size: SIZE as u64,
            flags: TransmissionFlags(RW_FLAGS) | TransmissionFlags::SEND_DF,
        })
    );
    assert_eq!(c.opt_reply().await.body, OptionReplyBody::Ack);
    c.request(CmdType::Disc, CmdFlags::NONE, 1, 0, 0, &[]).await;
    c.expect_eof().await;
    server.stop().await;
}

#[tokio::test]
async fn export_name_abort_and_bad_client_flags() {
    let (_dev, exports) = disk();
    let server = Server::start(exports).await;

    // NBD_OPT_EXPORT_NAME with NO_ZEROES: the short 10-byte reply.
    let mut c = RawClient::hello(server.addr).await;
    c.option(&NbdOption::ExportName("disk".into())).await;
    let r = c.next(|b| ExportNameReply::decode(b, true)).await;
    assert_eq!(
        (r.size, r.flags),
        (SIZE as u64, TransmissionFlags(RW_FLAGS))
    );
    c.request(CmdType::Flush, CmdFlags::NONE, 3, 0, 0, &[])
        .await;
    assert_eq!(c.reply(&[]).await, simple(3, Errno::OK, &[]));

    // Without NO_ZEROES: 124 zero bytes follow.
    let mut c = RawClient::connect(server.addr).await;
    c.bytes(18).await;
    c.send(&[0, 0, 0, 1]).await;
    c.option(&NbdOption::ExportName("disk".into())).await;
    let r = c.next(|b| ExportNameReply::decode(b, false)).await;
    assert_eq!(r.size, SIZE as u64);
    assert!(c.buf.is_empty());

    // NBD_OPT_EXPORT_NAME of an unknown export cannot be refused: the server closes.
    let mut c = RawClient::hello(server.addr).await;
    c.option(&NbdOption::ExportName("nope".into())).await;
    c.expect_eof().await;

    // NBD_OPT_ABORT: ACK, then close.
    let mut c = RawClient::hello(server.addr).await;
    c.option(&NbdOption::Abort).await;
    assert_eq!(c.opt_reply().await.body, OptionReplyBody::Ack);
    c.expect_eof().await;

    // Unknown client flags: closed.
    let mut c = RawClient::connect(server.addr).await;
    c.bytes(18).await;
    c.send(&[0, 0, 0, 0x13]).await;
    c.expect_eof().await;

    // A bad option magic: closed.
    let mut c = RawClient::hello(server.addr).await;
    c.send(&super::hex("0000000000000000 00000007 00000000"))
        .await;
    c.expect_eof().await;

    // An option length above the cap: closed before anything is read.
    let mut c = RawClient::hello(server.addr).await;
    c.send(&super::hex("49484156454f5054 00000007 7fffffff"))
        .await;
    c.expect_eof().await;
    server.stop().await;
}

#[tokio::test]
async fn requests_errors_and_zero_lengths() {
    let (dev, exports) = disk();
    let exports = exports.with("ro", MemDev::read_only(vec![9; 8192]));
    let server = Server::start(exports).await;
    let (mut c, size, _) = RawClient::go(server.addr, "disk", false).await;
    assert_eq!(size, SIZE as u64);
    let end = SIZE as u64;
    let pattern: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();

    c.request(CmdType::Write, CmdFlags::FUA, 1, 4096, 8192, &pattern)
        .await;
    assert_eq!(c.reply(&[]).await, simple(1, Errno::OK, &[]));
    assert_eq!(dev.snapshot(4096, 8192), pattern);
    assert_eq!(dev.counts.fua_writes.load(Ordering::Relaxed), 1);
    c.request(CmdType::Read, CmdFlags::NONE, 2, 4096, 8192, &[])
        .await;
    assert_eq!(c.reply(&[(2, 8192)]).await, simple(2, Errno::OK, &pattern));

    let cases: &[(CmdType, CmdFlags, u64, u32, Errno)] = &[
        (CmdType::Read, CmdFlags::NONE, end - 1, 2, Errno::EINVAL),
        (CmdType::Read, CmdFlags::NONE, u64::MAX, 1, Errno::EINVAL),
        (
            CmdType::Read,
            CmdFlags::NONE,
            0,
            MAX_BLOCK + 1,
            Errno::EINVAL,
        ),
        (CmdType::Read, CmdFlags::DF, 0, 1, Errno::EINVAL),
        (CmdType::Trim, CmdFlags::NONE, end, 1, Errno::EINVAL),
        (
            CmdType::WriteZeroes,
            CmdFlags::NONE,
            end - 512,
            1024,
            Errno::ENOSPC,
        ),
        (CmdType::Unknown(5), CmdFlags::NONE, 0, 512, Errno::EINVAL),
        (CmdType::Unknown(7), CmdFlags::NONE, 0, 512, Errno::EINVAL),
        (CmdType::Read, CmdFlags(0x100), 0, 1, Errno::EINVAL),
        // Zero-length requests within the export succeed without touching the device.
        (CmdType::Read, CmdFlags::NONE, end, 0, Errno::OK),
        (CmdType::Trim, CmdFlags::NONE, 0, 0, Errno::OK),
        (CmdType::WriteZeroes, CmdFlags::NONE, end, 0, Errno::OK),
        (CmdType::Read, CmdFlags::NONE, end + 1, 0, Errno::EINVAL),
    ];
    for (i, (ty, flags, offset, len, errno)) in cases.iter().enumerate() {
        let cookie = 100 + i as u64;
        c.request(*ty, *flags, cookie, *offset, *len, &[]).await;
        assert_eq!(
            c.reply(&[]).await,
            simple(cookie, *errno, &[]),
            "{ty:?} {offset} {len}"
        );
    }
    // Writes past the end: ENOSPC; zero-length write: OK.
    c.request(
        CmdType::Write,
        CmdFlags::NONE,
        200,
        end - 2,
        4,
        &[1, 2, 3, 4],
    )
    .await;
    assert_eq!(c.reply(&[]).await, simple(200, Errno::ENOSPC, &[]));
    c.request(CmdType::Write, CmdFlags::NONE, 201, 0, 0, &[])
        .await;
    assert_eq!(c.reply(&[]).await, simple(201, Errno::OK, &[]));
    // A WRITE above the maximum block size: EINVAL, its payload is skipped and the
    // connection carries on.
    let big = vec![0xee; usize::try_from(MAX_BLOCK).expect("fits") + 1];
    c.request(CmdType::Write, CmdFlags::NONE, 202, 0, MAX_BLOCK + 1, &big)
        .await;
    assert_eq!(c.reply(&[]).await, simple(202, Errno::EINVAL, &[]));
    // TRIM and WRITE_ZEROES (with FUA: a flush afterwards).
    let flushes = dev.counts.flushes.load(Ordering::Relaxed);
    c.request(
        CmdType::WriteZeroes,
        CmdFlags::FUA | CmdFlags::NO_HOLE,
        203,
        4096,
        4096,
        &[],
    )
    .await;
    assert_eq!(c.reply(&[]).await, simple(203, Errno::OK, &[]));
    assert_eq!(dev.snapshot(4096, 8192)[..4096], [0; 4096]);
    assert_eq!(dev.snapshot(8192, 4096), pattern[4096..]);
    c.request(CmdType::Trim, CmdFlags::NONE, 204, 8192, 4096, &[])
        .await;
    assert_eq!(c.reply(&[]).await, simple(204, Errno::OK, &[]));
    assert_eq!(dev.counts.trims.load(Ordering::Relaxed), 1);
    assert_eq!(dev.counts.flushes.load(Ordering::Relaxed), flushes + 1);
    c.request(CmdType::Read, CmdFlags::NONE, 205, 4096, 4, &[])
        .await;
    assert_eq!(c.reply(&[(205, 4)]).await, simple(205, Errno::OK, &[0; 4]));
    c.request(CmdType::Disc, CmdFlags::NONE, 206, 0, 0, &[])
        .await;
    c.expect_eof().await;

    // The read-only export: writes get EPERM, reads work.
    let (mut c, _, flags) = RawClient::go(server.addr, "ro", false).await;
    assert!(flags.contains(TransmissionFlags::READ_ONLY));
    for (i, ty) in [CmdType::Write, CmdType::Trim, CmdType::WriteZeroes]
        .into_iter()
        .enumerate()
    {
        let payload = if ty == CmdType::Write {
            &[1u8; 16][..]
        } else {
            &[]
        };
        c.request(ty, CmdFlags::NONE, i as u64, 0, 16, payload)
            .await;
        assert_eq!(
            c.reply(&[]).await,
            simple(i as u64, Errno::EPERM, &[]),
            "{ty:?}"
        );
    }
    c.request(CmdType::Read, CmdFlags::NONE, 9, 8190, 2, &[])
        .await;
    assert_eq!(c.reply(&[(9, 2)]).await, simple(9, Errno::OK, &[9, 9]));
    server.stop().await;
}

#[tokio::test]
async fn structured_replies() {
    let (dev, exports) = disk();
    dev.fill(|i| (i % 253) as u8);
    let server = Server::start(exports).await;
    let (mut c, _, flags) = RawClient::go(server.addr, "disk", true).await;
    assert!(flags.contains(TransmissionFlags::SEND_DF));

    c.request(CmdType::Read, CmdFlags::DF, 1, 1000, 300, &[])
        .await;
    assert_eq!(
        c.reply(&[]).await,
        chunk(
            1,
            ChunkBody::OffsetData {
                offset: 1000,
                data: Bytes::from(dev.snapshot(1000, 300))
            }
        )
    );
    c.request(CmdType::Read, CmdFlags::NONE, 2, 0, 0, &[]).await;
    assert_eq!(c.reply(&[]).await, chunk(2, ChunkBody::None));
    c.request(CmdType::Read, CmdFlags::NONE, 3, SIZE as u64, 1, &[])
        .await;
    assert_eq!(
        c.reply(&[]).await,
        chunk(
            3,
            ChunkBody::Error {
                error: Errno::EINVAL,
                message: "invalid request".into()
            }
        )
    );
    c.request(CmdType::Write, CmdFlags::NONE, 4, SIZE as u64, 1, &[0])
        .await;
    assert_eq!(
        c.reply(&[]).await,
        chunk(
            4,
            ChunkBody::Error {
                error: Errno::ENOSPC,
                message: "no space left on the export".into()
            }
        )
    );
    // Successful non-READ requests keep simple replies.
    c.request(CmdType::Write, CmdFlags::NONE, 5, 0, 1, &[0])
        .await;
    assert_eq!(c.reply(&[]).await, simple(5, Errno::OK, &[]));
    server.stop().await;
}

#[tokio::test]
async fn malformed_request_closes_only_that_connection() {
    let (dev, exports) = disk();
    dev.fill(|i| (i % 7) as u8);
    let server = Server::start(exports).await;
    let (mut good, _, _) = RawClient::go(server.addr, "disk", false).await;
    let (mut bad, _, _) = RawClient::go(server.addr, "disk", false).await;

    // A bad request magic.
    bad.send(&super::hex(
        "deadbeef 0000 0000 0000000000000001 0000000000000000 00000004",
    ))
    .await;
    bad.expect_eof().await;
    // Garbage in the middle of a stream of valid requests.
    let (mut bad2, _, _) = RawClient::go(server.addr, "disk", false).await;
    bad2.request(CmdType::Read, CmdFlags::NONE, 1, 0, 4, &[])
        .await;
    bad2.send(b"GET / ").await;
    assert_eq!(
        bad2.reply(&[(1, 4)]).await,
        simple(1, Errno::OK, &[0, 1, 2, 3])
    );
    bad2.expect_eof().await;
    // A truncated request followed by EOF.
    let (mut bad3, _, _) = RawClient::go(server.addr, "disk", false).await;
    bad3.send(&super::hex("25609513 0000")).await;
    bad3.s.shutdown().await.expect("shutdown");
    bad3.expect_eof().await;

    good.request(CmdType::Read, CmdFlags::NONE, 7, 7, 3, &[])
        .await;
    assert_eq!(
        good.reply(&[(7, 3)]).await,
        simple(7, Errno::OK, &[0, 1, 2])
    );
    server.stop().await;
}

#[tokio::test]
async fn replies_follow_completion_order_and_disc_drains() {
    let dev = MemDev::gated(SIZE, 0);
    dev.fill(|i| (i % 11) as u8);
    let exports = MemExports::default().with("disk", Arc::clone(&dev));
    let server = Server::start(exports).await;
    let (mut c, _, _) = RawClient::go(server.addr, "disk", false).await;

    // The read at 0 waits on the gate; the read at 4096 overtakes it.
    c.request(CmdType::Read, CmdFlags::NONE, 1, 0, 4, &[]).await;
    c.request(CmdType::Read, CmdFlags::NONE, 2, 4096, 4, &[])
        .await;
    let reads = [(1, 4), (2, 4)];
    assert_eq!(
        c.reply(&reads).await,
        simple(2, Errno::OK, &dev.snapshot(4096, 4))
    );
    dev.gate_permits.add_permits(1);
    assert_eq!(c.reply(&reads).await, simple(1, Errno::OK, &[0, 1, 2, 3]));

    // DISC with a request in flight: the request is answered, then the server closes.
    c.request(CmdType::Read, CmdFlags::NONE, 3, 0, 4, &[]).await;
    c.request(CmdType::Disc, CmdFlags::NONE, 4, 0, 0, &[]).await;
    dev.gate_permits.add_permits(1);
    assert_eq!(
        c.reply(&[(3, 4)]).await,
        simple(3, Errno::OK, &[0, 1, 2, 3])
    );
    c.expect_eof().await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_answers_in_flight_requests() {
    let dev = MemDev::gated(SIZE, 0);
    let exports = MemExports::default().with("disk", Arc::clone(&dev));
    let server = Server::start(exports).await;
    let (mut c, _, _) = RawClient::go(server.addr, "disk", false).await;
    c.request(CmdType::Read, CmdFlags::NONE, 1, 0, 4, &[]).await;
    // Wait until the server has read the request (the flush overtakes the gated read).
    c.request(CmdType::Flush, CmdFlags::NONE, 2, 0, 0, &[])
        .await;
    assert_eq!(c.reply(&[]).await, simple(2, Errno::OK, &[]));

    let Server { cancel, task, .. } = server;
    cancel.cancel();
    dev.gate_permits.add_permits(1);
    assert_eq!(c.reply(&[(1, 4)]).await, simple(1, Errno::OK, &[0; 4]));
    c.expect_eof().await;
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("serve returns")
        .expect("task");
}

#[tokio::test]
async fn pipelined_requests_beyond_the_in_flight_limit() {
    let (dev, exports) = disk();
    let config = sd_nbd::Config {
        max_in_flight: 4,
        ..sd_nbd::Config::default()
    };
    let server = Server::start_with(exports, config).await;
    let (mut c, _, _) = RawClient::go(server.addr, "disk", false).await;
    let n = 256u64;
    let block = |i: u64| vec![(i % 255) as u8 + 1; 4096];
    // Writes and reads sent back to back without waiting for replies.
    let mut out = BytesMut::new();
    for i in 0..n {
        let h = RequestHeader {
            flags: CmdFlags::NONE,
            ty: CmdType::Write,
            cookie: Cookie(i),
            offset: i * 4096,
            length: 4096,
        };
        encode_request(&h, &block(i), &mut out);
    }
    c.send(&out).await;
    let mut seen = vec![false; usize::try_from(n).expect("small")];
    for _ in 0..n {
        let Reply::Simple { cookie, error, .. } = c.reply(&[]).await else {
            panic!("simple")
        };
        assert_eq!(error, Errno::OK);
        seen[usize::try_from(cookie.0).expect("small")] = true;
    }
    assert!(seen.iter().all(|s| *s));
    for i in 0..n {
        assert_eq!(
            dev.snapshot(usize::try_from(i * 4096).expect("small"), 4096),
            block(i),
            "block {i}"
        );
    }
    server.stop().await;
}
