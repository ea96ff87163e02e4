//! Benchmark client (not a test) that speaks the Sheepdog protocol the way QEMU's
//! `block/sheepdog.c` driver did: one connection per VDI, one request in flight,
//! sequential writes of BS bytes, split at object boundaries into WRITE_OBJ requests
//! (CREATE_AND_WRITE_OBJ plus an inode index update for an object not allocated yet, as the
//! driver did; `dog vdi create -P` preallocates them all), optionally a FLUSH_VDI after
//! every write (QEMU's `bdrv_co_flush` with cache=writeback under `oflag=direct,sync`).
//!
//! Usage:
//! `qemu_like ADDR:PORT VDI BS COUNT [flush] [clients=N] [depth=D] [secs=S] [start=BYTES]`
//!
//! * `BS` accepts a `k`/`m` suffix (KiB/MiB); `COUNT` writes per client.
//! * `flush`: FLUSH_VDI after every write.
//! * `clients=N`: N concurrent clients, each with its own connection and its own VDI
//!   named `VDI0` .. `VDI{N-1}` (tokio tasks). Without it the one client uses `VDI`.
//! * `depth=D`: each client keeps D writes in flight on one pipelined connection
//!   ([`sd_client::MuxConnection`]) instead of one at a time: QEMU with a deeper guest queue.
//!   Every write must fall inside one already allocated object (a preallocated VDI and a BS
//!   that divides the object size), and `flush` is not supported with it.
//! * `secs=S`: stop after S seconds even if COUNT writes were not done (then every client
//!   stops at the same moment, so the aggregate rate is exact).
//! * `start=BYTES`: first write offset (writes wrap around at the end of the VDI); an
//!   offset that is not a multiple of BS makes writes straddle object boundaries.
//!
//! Prints one machine-readable line of `key=value` pairs: `mbps` (10^6 bytes/s) and `iops`
//! are aggregate over all clients; `wr_*` is the latency of one write (all its pieces),
//! `fl_*` of one FLUSH_VDI; `cl_iops_*` the per-client rates.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sd_client::{Connection, MuxConnection, WriteOpts};
use sd_proto::inode::{InodeHeader, SD_INODE_HEADER_SIZE, data_index_offset, decode_index};
use sd_proto::{Flags, ObjArgs, Opcode, RequestHeader, SdResult, Vid};

#[derive(Debug, Clone)]
struct Cfg {
    addr: SocketAddr,
    bs: u64,
    count: u64,
    flush: bool,
    depth: usize,
    secs: Option<f64>,
    start: u64,
}

#[derive(Debug, Default)]
struct Stats {
    writes: u64,
    bytes: u64,
    elapsed: Duration,
    wr: Vec<Duration>,
    fl: Vec<Duration>,
}

/// One QEMU-like block device: the VDI's geometry and which objects it owns.
struct Disk {
    conn: Connection,
    vid: Vid,
    size: u64,
    obj: u64,
    copies: u8,
    allocated: Vec<bool>,
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    Ok(num.parse::<u64>().with_context(|| format!("size {s:?}"))? * mul)
}

impl Disk {
    async fn open(addr: SocketAddr, name: &str) -> anyhow::Result<Disk> {
        let mut conn = Connection::connect(addr).await?;
        let vid = conn
            .get_vdi_info(name.as_bytes(), b"", 0)
            .await
            .with_context(|| format!("VDI {name}"))?
            .vid()
            .context("vid")?;
        let head = conn
            .read_obj(vid.inode_oid(), 0, SD_INODE_HEADER_SIZE as u32)
            .await?;
        let h = InodeHeader::decode(&head)?;
        let objects = h.data_objects();
        let index = conn
            .read_obj(
                vid.inode_oid(),
                data_index_offset(0),
                u32::try_from(objects * 4).context("index too large")?,
            )
            .await?;
        let allocated = decode_index(&index)
            .into_iter()
            .map(|v| v == vid.get())
            .collect();
        Ok(Disk {
            conn,
            vid,
            size: h.vdi_size,
            obj: h.object_size(),
            copies: h.nr_copies,
            allocated,
        })
    }

    /// One guest write: split at object boundaries, one request at a time.
    async fn write(&mut self, mut off: u64, mut data: &[u8]) -> anyhow::Result<()> {
        let opts = WriteOpts {
            copies: self.copies,
            ..WriteOpts::default()
        };
        while !data.is_empty() {
            let idx = off / self.obj;
            let inner = off % self.obj;
            let n = (self.obj - inner).min(data.len() as u64) as usize;
            let (piece, rest) = data.split_at(n);
            let oid = self.vid.data_oid(idx as u32);
            if self.allocated[idx as usize] {
                self.conn.write_obj(oid, inner, piece, opts).await?;
            } else {
                self.conn
                    .create_and_write_obj(oid, None, inner, piece, opts)
                    .await?;
                self.conn
                    .write_obj(
                        self.vid.inode_oid(),
                        data_index_offset(idx as u32),
                        &self.vid.get().to_le_bytes(),
                        opts,
                    )
                    .await?;
                self.allocated[idx as usize] = true;
            }
            off += n as u64;
            data = rest;
        }
        Ok(())
    }
}

async fn run_client(
    mut disk: Disk,
    cfg: Arc<Cfg>,
    go: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<Stats> {
    if cfg.bs == 0 || cfg.bs > disk.size {
        bail!("BS {} does not fit the VDI ({} bytes)", cfg.bs, disk.size);
    }
    if cfg.depth > 1 {
        return run_pipelined(disk, cfg, go).await;
    }
    let buf = vec![0xa5u8; cfg.bs as usize];
    let mut off = cfg.start % disk.size;
    let mut st = Stats {
        wr: Vec::with_capacity(cfg.count.min(1 << 20) as usize),
        fl: Vec::with_capacity(if cfg.flush {
            cfg.count.min(1 << 20) as usize
        } else {
            0
        }),
        ..Stats::default()
    };
    go.wait().await;
    let t0 = Instant::now();
    let end = cfg.secs.map(|s| t0 + Duration::from_secs_f64(s));
    while st.writes < cfg.count && end.is_none_or(|e| Instant::now() < e) {
        if off + cfg.bs > disk.size {
            off = 0;
        }
        let t = Instant::now();
        disk.write(off, &buf).await?;
        let t1 = Instant::now();
        st.wr.push(t1 - t);
        if cfg.flush {
            disk.conn.flush_vdi(disk.vid).await?;
            st.fl.push(t1.elapsed());
        }
        off += cfg.bs;
        st.writes += 1;
        st.bytes += cfg.bs;
    }
    st.elapsed = t0.elapsed();
    Ok(st)
}

/// One WRITE_OBJ on the pipelined connection; returns its latency.
async fn write_piped(
    mux: Arc<MuxConnection>,
    header: RequestHeader,
    payload: Bytes,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let (rsp, _) = mux.call(header, payload).await?;
    if rsp.result != SdResult::Success {
        bail!("WRITE_OBJ: {:?}", rsp.result);
    }
    Ok(t.elapsed())
}

/// `run_client` with `cfg.depth` writes in flight on one pipelined connection.
async fn run_pipelined(
    disk: Disk,
    cfg: Arc<Cfg>,
    go: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<Stats> {
    if disk.obj.checked_rem(cfg.bs) != Some(0) {
        bail!(
            "depth>1 needs a BS that divides the object size {}",
            disk.obj
        );
    }
    let mux = Arc::new(MuxConnection::connect(cfg.addr, cfg.depth).await?);
    let payload = Bytes::from(vec![0xa5u8; cfg.bs as usize]);
    let mut off = cfg.start % disk.size;
    let mut st = Stats {
        wr: Vec::with_capacity(cfg.count.min(1 << 20) as usize),
        ..Stats::default()
    };
    let mut set = tokio::task::JoinSet::new();
    let mut issued = 0u64;
    go.wait().await;
    let t0 = Instant::now();
    let end = cfg.secs.map(|s| t0 + Duration::from_secs_f64(s));
    loop {
        while set.len() < cfg.depth && issued < cfg.count && end.is_none_or(|e| Instant::now() < e)
        {
            if off + cfg.bs > disk.size || off % disk.obj + cfg.bs > disk.obj {
                off = 0;
            }
            let idx = off / disk.obj;
            if !disk.allocated[idx as usize] {
                bail!("depth>1 needs a preallocated VDI (object {idx} is not allocated)");
            }
            let mut h = RequestHeader::new(Opcode::WriteObj).with_obj(ObjArgs {
                oid: disk.vid.data_oid(idx as u32),
                offset: off % disk.obj,
                copies: disk.copies,
                ..ObjArgs::default()
            });
            h.flags = Flags::WRITE;
            h.data_length = cfg.bs as u32;
            set.spawn(write_piped(mux.clone(), h, payload.clone()));
            issued += 1;
            off += cfg.bs;
        }
        let Some(r) = set.join_next().await else {
            break;
        };
        st.wr.push(r??);
        st.writes += 1;
        st.bytes += cfg.bs;
    }
    st.elapsed = t0.elapsed();
    Ok(st)
}

fn pct(v: &mut [Duration], p: f64) -> u128 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_micros()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, name, bs, count, rest @ ..] = args.as_slice() else {
        bail!(
            "usage: qemu_like ADDR:PORT VDI BS COUNT [flush] [clients=N] [depth=D] [secs=S] \
               [start=BYTES]"
        );
    };
    let mut cfg = Cfg {
        addr: addr.parse().context("address")?,
        bs: parse_size(bs)?,
        count: count.parse().context("count")?,
        flush: false,
        depth: 1,
        secs: None,
        start: 0,
    };
    let mut clients: Option<usize> = None;
    for a in rest {
        match a.split_once('=') {
            None if a == "flush" => cfg.flush = true,
            Some(("clients", v)) => clients = Some(v.parse().context("clients")?),
            Some(("depth", v)) => cfg.depth = v.parse().context("depth")?,
            Some(("secs", v)) => cfg.secs = Some(v.parse().context("secs")?),
            Some(("start", v)) => cfg.start = parse_size(v)?,
            _ => bail!("unknown argument {a:?}"),
        }
    }
    if cfg.depth == 0 || (cfg.depth > 1 && cfg.flush) {
        bail!("depth must be at least 1, and flush needs depth=1");
    }
    let names: Vec<String> = match clients {
        None => vec![name.clone()],
        Some(n) => (0..n).map(|i| format!("{name}{i}")).collect(),
    };
    let mut disks = Vec::new();
    for n in &names {
        disks.push(Disk::open(cfg.addr, n).await?);
    }
    let cfg = Arc::new(cfg);
    let go = Arc::new(tokio::sync::Barrier::new(disks.len() + 1));
    let mut set = tokio::task::JoinSet::new();
    for d in disks {
        set.spawn(run_client(d, cfg.clone(), go.clone()));
    }
    go.wait().await;
    let t0 = Instant::now();
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.push(r??);
    }
    let wall = t0.elapsed().as_secs_f64();
    let writes: u64 = all.iter().map(|s| s.writes).sum();
    let bytes: u64 = all.iter().map(|s| s.bytes).sum();
    let mut wr: Vec<Duration> = all.iter().flat_map(|s| s.wr.iter().copied()).collect();
    let mut fl: Vec<Duration> = all.iter().flat_map(|s| s.fl.iter().copied()).collect();
    let per: Vec<f64> = all
        .iter()
        .map(|s| s.writes as f64 / s.elapsed.as_secs_f64())
        .collect();
    let min = per.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per.iter().copied().fold(0.0, f64::max);
    let mean = per.iter().sum::<f64>() / per.len() as f64;
    let fl_mean = if fl.is_empty() {
        0
    } else {
        fl.iter().sum::<Duration>().as_micros() / fl.len() as u128
    };
    println!(
        "bs={} flush={} clients={} depth={} writes={} secs={:.3} mbps={:.2} iops={:.0} \
         wr_p50_us={} wr_p99_us={} fl_p50_us={} fl_p99_us={} fl_mean_us={} \
         cl_iops_min={:.0} cl_iops_mean={:.0} cl_iops_max={:.0}",
        cfg.bs,
        u8::from(cfg.flush),
        names.len(),
        cfg.depth,
        writes,
        wall,
        bytes as f64 / wall / 1e6,
        writes as f64 / wall,
        pct(&mut wr, 0.50),
        pct(&mut wr, 0.99),
        pct(&mut fl, 0.50),
        pct(&mut fl, 0.99),
        fl_mean,
        min,
        mean,
        max,
    );
    Ok(())
}
