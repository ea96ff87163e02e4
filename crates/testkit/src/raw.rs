//! A blocking raw-socket protocol client: writes exactly the bytes a test asks for and reads
//! responses with a timeout, so a misbehaving daemon fails a test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use sd_proto::{RequestHeader, ResponseHeader, SD_RSP_SIZE, SdResult};

/// Read and write timeout of every [`RawClient`] socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response payload [`RawClient::recv`] accepts (the biggest legitimate reply is
/// a 12 MiB inode read); a bigger announcement is a protocol error, not an allocation.
pub const MAX_RESPONSE_PAYLOAD: usize = 16 << 20;

/// One response off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    /// The decoded header.
    pub header: ResponseHeader,
    /// Exactly `header.data_length` bytes.
    pub payload: Vec<u8>,
}

impl Response {
    /// The result code.
    pub fn result(&self) -> SdResult {
        self.header.result
    }
}

/// A connection to a sheep that sends raw frames.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    next_id: u32,
}

impl RawClient {
    /// Connects to `addr` with [`IO_TIMEOUT`] on connect, reads and writes.
    pub fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawClient { stream, next_id: 1 })
    }

    /// The underlying stream (for `try_clone`, `shutdown` or custom timeouts).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Replaces [`IO_TIMEOUT`] for reads and writes on this connection.
    pub fn set_io_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// A second handle on the same connection: one thread writes while another reads.
    pub fn try_clone(&self) -> anyhow::Result<RawClient> {
        Ok(RawClient {
            stream: self.stream.try_clone().context("cloning the stream")?,
            next_id: self.next_id,
        })
    }

    /// A fresh request id (1, 2, ...), unique on this client.
    pub fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Writes `bytes` verbatim.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).context("writing to sheep")
    }

    /// Writes the header and then `payload` verbatim, whatever the flags say (tests send
    /// inconsistent frames on purpose).
    pub fn send(&mut self, req: &RequestHeader, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(48 + payload.len());
        frame.extend_from_slice(&req.encode());
        frame.extend_from_slice(payload);
        self.send_bytes(&frame)
    }

    /// Reads one response: the 48-byte header and `data_length` payload bytes.
    pub fn recv(&mut self) -> anyhow::Result<Response> {
        let mut head = [0u8; SD_RSP_SIZE];
        self.stream
            .read_exact(&mut head)
            .context("reading a response header")?;
        let header = ResponseHeader::decode(&head).context("decoding a response header")?;
        let len = usize::try_from(header.data_length).unwrap_or(usize::MAX);
        if len > MAX_RESPONSE_PAYLOAD {
            bail!("response announces {len} payload bytes: {header:?}");
        }
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .with_context(|| format!("reading {len} payload bytes of {header:?}"))?;
        Ok(Response { header, payload })
    }

    /// Sends `req` (with a fresh id if its id is 0) and reads the response, checking that
    /// it echoes the id and opcode and sends no more than the request's `data_length`.
    pub fn call(&mut self, req: &RequestHeader, payload: &[u8]) -> anyhow::Result<Response> {
        let mut req = *req;
        if req.id == 0 {
            req.id = self.next_id();
        }
        self.send(&req, payload)?;
        let rsp = self.recv()?;
        check_echo(&req, &rsp)?;
        Ok(rsp)
    }

    /// [`RawClient::call`], failing unless the result is SUCCESS.
    pub fn call_ok(&mut self, req: &RequestHeader, payload: &[u8]) -> anyhow::Result<Response> {
        let rsp = self.call(req, payload)?;
        if rsp.result() != SdResult::Success {
            bail!(
                "{:?} failed: {} ({:#x})",
                req.opcode,
                rsp.result(),
                rsp.result().as_u32()
            );
        }
        Ok(rsp)
    }

    /// Waits until the server closes the connection, failing if it sends anything or the
    /// read times out.
    pub fn expect_closed(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 64];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => bail!("expected the connection to close, got {n} bytes"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e).context("waiting for the connection to close"),
        }
    }

    /// Closes the sending half: the server sees end-of-stream after what was written.
    pub fn shutdown_write(&self) -> anyhow::Result<()> {
        self.stream
            .shutdown(Shutdown::Write)
            .context("shutting down the write half")
    }
}

/// Checks the response fields every answer must get right: echoed id and opcode, and a
/// payload no larger than the request's buffer (spec §1).
pub(crate) fn check_echo(req: &RequestHeader, rsp: &Response) -> anyhow::Result<()> {
    if rsp.header.id != req.id {
        bail!(
            "response id {} does not echo request id {}",
            rsp.header.id,
            req.id
        );
    }
    if rsp.header.opcode != req.opcode {
        bail!(
            "response opcode {:?} does not echo request opcode {:?}",
            rsp.header.opcode,
            req.opcode
        );
    }
    if rsp.payload.len() > usize::try_from(req.data_length).unwrap_or(usize::MAX) {
        bail!(
            "response carries {} bytes, more than the request's data_length {}",
            rsp.payload.len(),
            req.data_length
        );
    }
    Ok(())
}
