//! What the in-process tests share: a raw Sheepdog-protocol connection to a node.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sd_proto::{Flags, RequestHeader, ResponseDecoder, ResponseHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on waiting for one answer: far above what any request here takes.
pub const ANSWER_BOUND: Duration = Duration::from_secs(20);

/// A raw connection: requests written as given (ids numbered here), answers decoded.
pub struct Conn {
    s: TcpStream,
    buf: BytesMut,
    next_id: u32,
}

impl Conn {
    pub async fn new(addr: SocketAddr) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    /// Sends `h` with `payload` (flagged WRITE, `data_length` set, when there is one);
    /// the request's id.
    pub async fn send(&mut self, mut h: RequestHeader, payload: &[u8]) -> u32 {
        h.id = self.next_id;
        self.next_id += 1;
        if !payload.is_empty() {
            h.flags = h.flags | Flags::WRITE;
            h.data_length = u32::try_from(payload.len()).unwrap();
        }
        let mut out = BytesMut::new();
        sd_proto::codec::encode_request(&h, payload, &mut out);
        self.s.write_all(&out).await.unwrap();
        h.id
    }

    /// The next answer.
    pub async fn recv(&mut self) -> (ResponseHeader, Bytes) {
        let mut dec = ResponseDecoder::new(64 << 20);
        loop {
            if let Some(r) = dec.decode(&mut self.buf).unwrap() {
                return r;
            }
            assert_ne!(
                self.s.read_buf(&mut self.buf).await.unwrap(),
                0,
                "server closed"
            );
        }
    }

    /// One request and its answer, within [`ANSWER_BOUND`].
    pub async fn call(&mut self, h: RequestHeader, payload: &[u8]) -> (ResponseHeader, Bytes) {
        let id = self.send(h, payload).await;
        let (rsp, data) = tokio::time::timeout(ANSWER_BOUND, self.recv())
            .await
            .unwrap_or_else(|_| panic!("{} not answered in {ANSWER_BOUND:?}", h.opcode.name()));
        assert_eq!(rsp.id, id);
        (rsp, data)
    }
}
