//! The verifying client of the thrasher: writes random ranges of one VDI and reads them back
//! through the Sheepdog protocol, as QEMU's driver does (CREATE_AND_WRITE_OBJ plus the
//! 4-byte inode index write for a new object, WRITE_OBJ otherwise, FLUSH_VDI in writeback
//! mode), reconnecting to another sheep when its gateway dies and resending what was not
//! acknowledged. Everything it learns goes into a [`Model`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sd_proto::inode::data_index_offset;
use sd_proto::{RequestHeader, SdResult, Vid};

use super::model::{Checked, Gen, Model};
use crate::{RawClient, Response, req};

/// How long one operation may keep retrying (through reconnections and transient results)
/// before the run fails: the cluster must serve within this while at most copies-1 nodes
/// are down. The gateway itself retries for up to 60 s while the membership moves.
const OP_DEADLINE: Duration = Duration::from_secs(150);

/// Read/write timeout of the client's sockets: longer than the gateway's own retrying.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(90);

/// The pause before resending after a transient result or a failed connection attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Counters of one client run.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientStats {
    /// Writes acknowledged (one per object touched).
    pub writes: u64,
    /// Bytes in acknowledged writes.
    pub bytes_written: u64,
    /// Objects allocated (create + index entry).
    pub allocations: u64,
    /// Reads checked against the model.
    pub reads: u64,
    /// FLUSH_VDI acknowledged.
    pub flushes: u64,
    /// What the reads proved.
    pub checked: Checked,
    /// Connections opened after the first (the gateway died under a request).
    pub reconnects: u64,
    /// Requests resent because the connection broke before the answer.
    pub resent: u64,
    /// Answers with a transient result (halt, wait for join, network error, ...), resent.
    pub transient: u64,
    /// Acknowledged writeback writes whose gateway died before a flush covered them.
    pub orphaned: u64,
}

/// A client of one VDI on a cluster whose members listen on `addrs`.
#[derive(Debug)]
pub struct VerifyingClient {
    addrs: Vec<SocketAddr>,
    rng: StdRng,
    conn: Option<RawClient>,
    /// The member index of the current gateway (`usize::MAX` while not connected), shared
    /// with the fault injector so that it can aim at it.
    gateway: Arc<AtomicUsize>,
    /// Incremented at every new connection: writeback promises are per gateway.
    serial: u64,
    vid: Vid,
    obj_size: u64,
    writeback: bool,
    model: Model,
    allocated: BTreeSet<u64>,
    /// Writeback: writes acknowledged on the current connection and not yet flushed.
    pending: Vec<Gen>,
    stats: ClientStats,
}

/// Results a gateway may give while the cluster changes under it; the request is resent.
fn transient(r: SdResult, flush: bool) -> bool {
    matches!(
        r,
        SdResult::Halt
            | SdResult::WaitForJoin
            | SdResult::NetworkError
            | SdResult::Again
            | SdResult::OldNodeVer
            | SdResult::NewNodeVer
            | SdResult::NodeInRecovery
    ) || (flush && r == SdResult::Eio)
}

impl VerifyingClient {
    /// A client of `vid` (`size` bytes of `obj_size`-byte objects, none allocated yet).
    pub fn new(
        addrs: Vec<SocketAddr>,
        seed: u64,
        vid: Vid,
        size: u64,
        obj_size: u64,
        writeback: bool,
    ) -> VerifyingClient {
        VerifyingClient {
            addrs,
            rng: StdRng::seed_from_u64(seed),
            conn: None,
            gateway: Arc::new(AtomicUsize::new(usize::MAX)),
            serial: 0,
            vid,
            obj_size,
            writeback,
            model: Model::new(seed, size),
            allocated: BTreeSet::new(),
            pending: Vec::new(),
            stats: ClientStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The model (for the final check).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The member index of the current gateway (`usize::MAX` while not connected).
    pub fn gateway(&self) -> Arc<AtomicUsize> {
        self.gateway.clone()
    }

    /// The VDI.
    pub fn vid(&self) -> Vid {
        self.vid
    }

    /// The objects allocated so far.
    pub fn allocated(&self) -> &BTreeSet<u64> {
        &self.allocated
    }

    /// A connection to a random member that accepts one.
    fn connection(&mut self, deadline: Instant) -> anyhow::Result<&mut RawClient> {
        if self.conn.is_none() {
            let (i, c) = loop {
                let i = self.rng.random_range(0..self.addrs.len().max(1));
                let Some(addr) = self.addrs.get(i).copied() else {
                    bail!("no addresses");
                };
                let why = match RawClient::connect(addr) {
                    Ok(c) => break (i, c),
                    Err(e) => format!("{addr}: {e:#}"),
                };
                if Instant::now() >= deadline {
                    bail!("no member accepted a connection: last {why}");
                }
                std::thread::sleep(RETRY_PAUSE);
            };
            c.set_io_timeout(SOCKET_TIMEOUT)?;
            if self.serial > 0 {
                self.stats.reconnects += 1;
            }
            self.serial += 1;
            self.gateway.store(i, Ordering::Relaxed);
            self.conn = Some(c);
        }
        self.conn.as_mut().context("connection just made")
    }

    /// Forgets the connection: its gateway's promises (unflushed writes) are gone with it.
    fn drop_connection(&mut self) {
        self.conn = None;
        self.gateway.store(usize::MAX, Ordering::Relaxed);
        self.stats.orphaned += self.pending.len() as u64;
        self.pending.clear();
    }

    /// Sends `r` until it succeeds, through reconnections and transient results.
    fn call(&mut self, what: &str, r: &RequestHeader, payload: &[u8]) -> anyhow::Result<Response> {
        let deadline = Instant::now() + OP_DEADLINE;
        let flush = r.opcode == sd_proto::Opcode::FlushVdi;
        loop {
            let c = self.connection(deadline)?;
            let last = match c.call(r, payload) {
                Ok(rsp) if rsp.result() == SdResult::Success => return Ok(rsp),
                Ok(rsp) if transient(rsp.result(), flush) => {
                    self.stats.transient += 1;
                    std::thread::sleep(RETRY_PAUSE);
                    rsp.result().to_string()
                }
                Ok(rsp) => bail!(
                    "{what} failed: {} ({:#x})",
                    rsp.result(),
                    rsp.result().as_u32()
                ),
                Err(e) => {
                    // The gateway died (or the answer was garbled): another gateway gets it.
                    self.stats.resent += 1;
                    self.drop_connection();
                    format!("{e:#}")
                }
            };
            if Instant::now() >= deadline {
                bail!("{what} not acknowledged within {OP_DEADLINE:?}; last: {last}");
            }
        }
    }

    /// The write is acknowledged: guaranteed now (writethrough) or at the next flush on
    /// this connection (writeback).
    fn acked(&mut self, generation: Gen) {
        if self.writeback {
            self.pending.push(generation);
        } else {
            self.model.make_durable(generation);
        }
    }

    /// FLUSH_VDI (writeback): the writes acknowledged on the connection it succeeds on are
    /// guaranteed.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.call("FLUSH_VDI", &req::flush_vdi(self.vid), &[])?;
        for generation in std::mem::take(&mut self.pending) {
            self.model.make_durable(generation);
        }
        self.stats.flushes += 1;
        Ok(())
    }

    /// Splits `[off, off + len)` of the VDI into `(object index, offset in object, vdi
    /// offset, length)`.
    fn split(&self, off: u64, len: u64) -> Vec<(u64, u64, u64, u64)> {
        let mut out = Vec::new();
        let end = off.saturating_add(len).min(self.model.size());
        let mut pos = off;
        while pos < end {
            let idx = pos / self.obj_size;
            let in_obj = pos % self.obj_size;
            let n = (self.obj_size - in_obj).min(end - pos);
            out.push((idx, in_obj, pos, n));
            pos += n;
        }
        out
    }

    /// Writes `[off, off + len)` with fresh data, object by object, each until acknowledged.
    pub fn write(&mut self, off: u64, len: u64) -> anyhow::Result<()> {
        for (idx, in_obj, at, n) in self.split(off, len) {
            let generation = self.model.begin_write(at, n);
            let data = self.model.data(generation, at, usize::try_from(n)?);
            if self.allocated.contains(&idx) {
                let oid = self.vid.data_oid(u32::try_from(idx)?);
                let r = req::write_obj(oid, in_obj, u32::try_from(n)?);
                self.call("WRITE_OBJ", &r, &data)?;
                self.acked(generation);
            } else {
                self.allocate(idx, in_obj, &data, generation)?;
            }
            self.stats.writes += 1;
            self.stats.bytes_written += n;
        }
        Ok(())
    }

    /// Creates object `idx` holding `data` at `in_obj` and points the inode's index entry
    /// at it. In writeback mode also flushes, and starts over unless all three were
    /// acknowledged by one gateway: a half-done allocation whose gateway died is not
    /// promised to survive, and recreating the object is harmless (nothing else wrote it).
    fn allocate(
        &mut self,
        idx: u64,
        in_obj: u64,
        data: &[u8],
        generation: Gen,
    ) -> anyhow::Result<()> {
        let idx32 = u32::try_from(idx)?;
        let oid = self.vid.data_oid(idx32);
        let create = req::create_and_write_obj(oid, in_obj, u32::try_from(data.len())?);
        let index = req::write_obj(self.vid.inode_oid(), data_index_offset(idx32), 4);
        let entry = self.vid.get().to_le_bytes();
        let deadline = Instant::now() + OP_DEADLINE;
        loop {
            let serial = self.serial;
            self.call("CREATE_AND_WRITE_OBJ", &create, data)?;
            self.acked(generation);
            self.call("WRITE_OBJ (inode index)", &index, &entry)?;
            if !self.writeback {
                break;
            }
            self.flush()?;
            if serial == self.serial {
                break;
            }
            if Instant::now() >= deadline {
                bail!("allocating object {idx}: no gateway lasted through create + index + flush");
            }
        }
        self.allocated.insert(idx);
        self.stats.allocations += 1;
        Ok(())
    }

    /// Reads `[off, off + len)` (allocated objects through the gateway, the others are
    /// zeros) and checks it against the model.
    pub fn read_check(&mut self, off: u64, len: u64) -> anyhow::Result<Checked> {
        let mut checked = Checked::default();
        for (idx, in_obj, at, n) in self.split(off, len) {
            let data = if self.allocated.contains(&idx) {
                let oid = self.vid.data_oid(u32::try_from(idx)?);
                let r = req::read_obj(oid, in_obj, u32::try_from(n)?);
                let rsp = self.call("READ_OBJ", &r, &[])?;
                if rsp.payload.len() as u64 != n {
                    bail!(
                        "READ_OBJ {oid} {in_obj}+{n} returned {} bytes",
                        rsp.payload.len()
                    );
                }
                rsp.payload
            } else {
                vec![0; usize::try_from(n)?]
            };
            let c = self
                .model
                .verify(at, &data)
                .map_err(|e| anyhow::anyhow!("object {idx} at {in_obj}: {e}"))?;
            checked += c;
        }
        self.stats.reads += 1;
        self.stats.checked += checked;
        Ok(checked)
    }

    /// The inode's index entries of the first `n` objects (through any gateway).
    pub fn read_index(&mut self, n: u32) -> anyhow::Result<Vec<u32>> {
        let r = req::read_obj(self.vid.inode_oid(), data_index_offset(0), n * 4);
        let rsp = self.call("READ_OBJ (inode index)", &r, &[])?;
        Ok(sd_proto::inode::decode_index(&rsp.payload))
    }

    /// One random operation: mostly writes of 1 B to 1 MiB at random offsets (within
    /// allocated objects but for one write in 40, so that allocations go on all run long), reads of up to 256 KiB checked against the model, and
    /// in writeback mode a flush after about one write in four.
    pub fn step(&mut self) -> anyhow::Result<()> {
        let size = self.model.size();
        let objects = size.div_ceil(self.obj_size).max(1);
        let pick_allocated = !self.allocated.is_empty() && self.rng.random_bool(0.975);
        let idx = if pick_allocated {
            let k = self.rng.random_range(0..self.allocated.len());
            self.allocated.iter().nth(k).copied().unwrap_or(0)
        } else {
            self.rng.random_range(0..objects)
        };
        let off = (idx * self.obj_size + self.rng.random_range(0..self.obj_size)).min(size - 1);
        if self.rng.random_bool(0.35) {
            let len = self.rng.random_range(1..=256 << 10);
            self.read_check(off, len)?;
            return Ok(());
        }
        let len = match self.rng.random_range(0..100) {
            0..50 => self.rng.random_range(1..=4096),
            50..85 => self.rng.random_range(4097..=64 << 10),
            _ => self.rng.random_range((64 << 10) + 1..=1 << 20),
        };
        self.write(off, len)?;
        if self.writeback && self.rng.random_bool(0.25) {
            self.flush()?;
        }
        Ok(())
    }
}
