//! One framed connection to a sheep: request id assignment, vectored send, bounded
//! receive.

use std::io::IoSlice;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use sd_proto::{Flags, RequestHeader, ResponseDecoder, ResponseHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ClientError;

/// Initial capacity of the receive buffer; enough for every header-only reply.
const READ_BUF_INITIAL: usize = 64 << 10;

/// A connection carrying one request at a time.
///
/// **Invariant:** between calls the stream is positioned at a frame boundary. A call
/// that fails (or is cancelled) after it started writing marks the connection broken;
/// later calls return [`ClientError::Broken`] instead of reading garbage.
#[derive(Debug)]
pub struct Connection<S = TcpStream> {
    stream: S,
    rbuf: BytesMut,
    next_id: u32,
    broken: bool,
}

impl Connection<TcpStream> {
    /// Connects to `addr` with TCP_NODELAY set.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        stream.set_nodelay(true)?;
        Ok(Connection::new(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an established stream.
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(READ_BUF_INITIAL),
            next_id: 1,
            broken: false,
        }
    }

    /// Sends `header` (with a fresh `id`) and, when it has the WRITE flag, `payload`
    /// (which must be exactly `data_length` bytes); returns the response header and
    /// payload.
    ///
    /// The reply payload is bounded by what the request permits: `data_length` for reads
    /// and PIGGYBACK requests, nothing for plain writes. A server announcing more is a
    /// [`ClientError::Decode`] error, never an allocation. The result code is *not*
    /// checked here; see [`crate::ops`] for calls that do.
    pub async fn call(
        &mut self,
        mut header: RequestHeader,
        payload: &[u8],
    ) -> Result<(ResponseHeader, Bytes), ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        let has_payload = header.has_payload();
        let data_len = usize::try_from(header.data_length).map_err(|_| ClientError::TooLarge {
            what: "data_length",
        })?;
        if has_payload && payload.len() != data_len {
            return Err(ClientError::PayloadLength {
                header: header.data_length,
                payload: payload.len(),
            });
        }
        header.id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);

        self.broken = true;
        let head = header.encode();
        let body: &[u8] = if has_payload { payload } else { &[] };
        write_all_vectored(
            &mut self.stream,
            &mut [IoSlice::new(&head), IoSlice::new(body)],
        )
        .await?;
        self.stream.flush().await?;

        let max_reply = if has_payload && !header.flags.contains(Flags::PIGGYBACK) {
            0
        } else {
            data_len
        };
        let (rsp, data) = self.read_response(max_reply).await?;
        if rsp.id != header.id {
            return Err(ClientError::IdMismatch {
                sent: header.id,
                received: rsp.id,
            });
        }
        self.broken = false;
        Ok((rsp, data))
    }

    async fn read_response(
        &mut self,
        max_payload: usize,
    ) -> Result<(ResponseHeader, Bytes), ClientError> {
        let mut decoder = ResponseDecoder::new(max_payload);
        loop {
            if let Some(frame) = decoder.decode(&mut self.rbuf)? {
                return Ok(frame);
            }
            if self.rbuf.capacity() == self.rbuf.len() {
                self.rbuf.reserve(READ_BUF_INITIAL);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

/// Writes every byte of `bufs`, issuing as few (vectored) writes as the stream allows.
pub(crate) async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut bufs: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = w.write_vectored(bufs).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sd_proto::{Epoch, ObjArgs, Oid, Opcode, SdResult};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    /// Reads one request (header + payload when WRITE) from the fake server's side.
    pub(crate) async fn recv_request(s: &mut DuplexStream) -> (RequestHeader, Vec<u8>) {
        let mut head = [0u8; 48];
        s.read_exact(&mut head).await.unwrap();
        let h = RequestHeader::decode(&head).unwrap();
        let mut body = vec![
            0u8;
            if h.has_payload() {
                h.data_length as usize
            } else {
                0
            }
        ];
        s.read_exact(&mut body).await.unwrap();
        (h, body)
    }

    pub(crate) async fn send_reply(
        s: &mut DuplexStream,
        req: &RequestHeader,
        result: SdResult,
        payload: &[u8],
    ) {
        let mut rsp = ResponseHeader::reply_to(req, Epoch(7), result);
        rsp.data_length = u32::try_from(payload.len()).unwrap();
        s.write_all(&rsp.encode()).await.unwrap();
        s.write_all(payload).await.unwrap();
    }

    #[tokio::test]
    async fn sends_header_and_payload_and_reads_reply() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, body) = recv_request(&mut server).await;
            assert_eq!(h.opcode, Opcode::WriteObj);
            assert_eq!(h.proto_ver, 0x02);
            assert_eq!(body, b"hello");
            send_reply(&mut server, &h, SdResult::Success, &[]).await;
            let (h2, body2) = recv_request(&mut server).await;
            assert_eq!(h2.id, h.id.wrapping_add(1));
            assert!(body2.is_empty());
            send_reply(&mut server, &h2, SdResult::Success, b"abcd").await;
        });
        let mut c = Connection::new(client);
        let mut h = RequestHeader::new(Opcode::WriteObj).with_obj(ObjArgs {
            oid: Oid::new(1),
            ..ObjArgs::default()
        });
        h.flags = Flags::WRITE;
        h.data_length = 5;
        let (rsp, data) = c.call(h, b"hello").await.unwrap();
        assert_eq!(rsp.result, SdResult::Success);
        assert!(data.is_empty());
        let mut r = RequestHeader::new(Opcode::ReadObj);
        r.data_length = 4;
        let (rsp, data) = c.call(r, &[]).await.unwrap();
        assert_eq!(rsp.epoch, Epoch(7));
        assert_eq!(&data[..], b"abcd");
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn reply_larger_than_request_allows_is_an_error_and_breaks() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, _) = recv_request(&mut server).await;
            send_reply(&mut server, &h, SdResult::Success, &[0u8; 9]).await;
        });
        let mut c = Connection::new(client);
        let mut r = RequestHeader::new(Opcode::ReadObj);
        r.data_length = 8;
        let err = c.call(r, &[]).await.unwrap_err();
        assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
        assert!(matches!(c.call(r, &[]).await, Err(ClientError::Broken)));
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn write_reply_with_payload_is_rejected() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, _) = recv_request(&mut server).await;
            send_reply(&mut server, &h, SdResult::Success, &[1, 2]).await;
        });
        let mut c = Connection::new(client);
        let mut h = RequestHeader::new(Opcode::WriteObj);
        h.flags = Flags::WRITE;
        h.data_length = 2;
        assert!(matches!(
            c.call(h, &[9, 9]).await,
            Err(ClientError::Decode(_))
        ));
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn mismatched_id_and_eof_are_errors() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (mut h, _) = recv_request(&mut server).await;
            h.id = h.id.wrapping_add(100);
            send_reply(&mut server, &h, SdResult::Success, &[]).await;
        });
        let mut c = Connection::new(client);
        let err = c.call(RequestHeader::new(Opcode::Shutdown), &[]).await;
        assert!(
            matches!(err, Err(ClientError::IdMismatch { .. })),
            "{err:?}"
        );
        srv.await.unwrap();

        let (client, server) = duplex(1 << 10);
        drop(server);
        let mut c = Connection::new(client);
        let err = c.call(RequestHeader::new(Opcode::Shutdown), &[]).await;
        assert!(err.unwrap_err().is_transport());
    }

    #[tokio::test]
    async fn payload_length_must_match_header() {
        let (client, _server) = duplex(1 << 10);
        let mut c = Connection::new(client);
        let mut h = RequestHeader::new(Opcode::WriteObj);
        h.flags = Flags::WRITE;
        h.data_length = 3;
        assert!(matches!(
            c.call(h, b"ab").await,
            Err(ClientError::PayloadLength {
                header: 3,
                payload: 2
            })
        ));
    }
}
