//! Benchmark helper (not a test): what the kernel itself charges for the operations a
//! replicated write is made of, the floor under the daemon's CPU per write.
//!
//! 1. `dsync`: 4 KiB `pwrite`s at random 4 KiB-aligned offsets into a preallocated file
//!    opened with `O_DSYNC` (a writethrough replica write).
//! 2. `buffered`: the same without `O_DSYNC` (a writeback replica write: page cache only;
//!    the flusher threads' later writeback is not charged to us).
//! 3. `rtt`: a 64-byte ping-pong over 127.0.0.1 TCP with TCP_NODELAY, one echo thread and
//!    the main thread (one request/response hop between two sheep).
//!
//! CPU is the process's user+system time from `getrusage(RUSAGE_SELF)` (all threads) over
//! the whole loop, divided by the operations; wall time per operation is measured around
//! each one (p50/p99) and over the loop (mean).
//!
//! Usage: `kernel_cost DIR [dsync=N] [buffered=N] [rtt=N] [file_mb=M] [prealloc=zero|fallocate]`
//!
//! * `DIR`: where the test file `kernel_cost.dat` goes (use the stores' file system); it is
//!   removed at the end.
//! * `dsync` (2000), `buffered` (100000), `rtt` (20000): operations per measurement, 0 skips
//!   it. Each measurement first runs a tenth of its count (at most 1000) as a warm-up.
//! * `file_mb` (64): size of the test file.
//! * `prealloc`: `zero` (default) writes the file full of zeros and syncs it, so every
//!   measured write overwrites allocated blocks; `fallocate` reserves unwritten extents the
//!   way the object store preallocates objects (the first write to each block then also
//!   converts its extent).
//!
//! Prints one line per measurement: `NAME ops=N cpu_us=.. wall_us=.. p50_us=.. p99_us=..`
//! (`cpu_us` and `wall_us` per operation).
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{FallocateFlags, OFlag, fallocate};
use nix::sys::resource::{UsageWho, getrusage};
use rand::Rng;

const BS: usize = 4096;
const MSG: usize = 64;

/// User+system CPU of the whole process so far.
fn cpu() -> anyhow::Result<Duration> {
    let u = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec().max(0) as u64)
            + Duration::from_micros(tv.tv_usec().max(0) as u64)
    };
    Ok(t(u.user_time()) + t(u.system_time()))
}

/// The result of one measurement.
struct Cost {
    ops: u64,
    cpu: Duration,
    wall: Duration,
    lat: Vec<Duration>,
}

impl Cost {
    fn print(mut self, name: &str) {
        self.lat.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.lat.len() as f64 * p) as usize).min(self.lat.len().saturating_sub(1));
            self.lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.ops.max(1) as f64;
        println!(
            "{name} ops={} cpu_us={:.2} wall_us={:.2} p50_us={:.1} p99_us={:.1}",
            self.ops,
            per(self.cpu),
            per(self.wall),
            pct(0.50),
            pct(0.99),
        );
    }
}

/// Runs `op` `n` times after a warm-up, measuring process CPU and per-op wall time.
fn measure(n: u64, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Cost> {
    for _ in 0..(n / 10).min(1000) {
        op()?;
    }
    let mut lat = Vec::with_capacity(n as usize);
    let c0 = cpu()?;
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        op()?;
        lat.push(t.elapsed());
    }
    let wall = t0.elapsed();
    let cpu = cpu()? - c0;
    Ok(Cost {
        ops: n,
        cpu,
        wall,
        lat,
    })
}

fn prepare(path: &Path, size: u64, fallocate_only: bool) -> anyhow::Result<()> {
    let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    if fallocate_only {
        fallocate(&f, FallocateFlags::empty(), 0, size as i64).context("fallocate")?;
    } else {
        let zero = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zero.len() as u64);
            (&f).write_all(&zero[..n as usize])?;
            left -= n;
        }
    }
    f.sync_all()?;
    Ok(())
}

fn pwrites(path: &Path, size: u64, n: u64, dsync: bool) -> anyhow::Result<Cost> {
    let mut o = OpenOptions::new();
    o.write(true);
    if dsync {
        o.custom_flags(OFlag::O_DSYNC.bits());
    }
    let f = o
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let blocks = size / BS as u64;
    let buf = vec![0x5au8; BS];
    let mut rng = rand::rng();
    measure(n, || {
        let off = rng.random_range(0..blocks) * BS as u64;
        f.write_all_at(&buf, off).context("pwrite")
    })
}

fn ping_pong(n: u64) -> anyhow::Result<Cost> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; MSG];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut buf = [0x33u8; MSG];
    let cost = measure(n, || {
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        Ok(())
    })?;
    drop(s);
    match echo.join() {
        Ok(r) => r.context("echo thread")?,
        Err(_) => bail!("echo thread panicked"),
    }
    Ok(cost)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, rest @ ..] = args.as_slice() else {
        bail!(
            "usage: kernel_cost DIR [dsync=N] [buffered=N] [rtt=N] [file_mb=M] \
             [prealloc=zero|fallocate]"
        );
    };
    let (mut dsync, mut buffered, mut rtt, mut file_mb) = (2000u64, 100_000u64, 20_000u64, 64u64);
    let mut fallocate_only = false;
    for a in rest {
        match a.split_once('=') {
            Some(("dsync", v)) => dsync = v.parse().context("dsync")?,
            Some(("buffered", v)) => buffered = v.parse().context("buffered")?,
            Some(("rtt", v)) => rtt = v.parse().context("rtt")?,
            Some(("file_mb", v)) => file_mb = v.parse().context("file_mb")?,
            Some(("prealloc", "zero")) => fallocate_only = false,
            Some(("prealloc", "fallocate")) => fallocate_only = true,
            _ => bail!("unknown argument {a:?}"),
        }
    }
    if file_mb == 0 {
        bail!("file_mb must be at least 1");
    }
    let path = Path::new(dir).join("kernel_cost.dat");
    let size = file_mb << 20;
    if dsync > 0 || buffered > 0 {
        prepare(&path, size, fallocate_only)?;
    }
    let run = || -> anyhow::Result<()> {
        if dsync > 0 {
            pwrites(&path, size, dsync, true)?.print("dsync");
        }
        if buffered > 0 {
            pwrites(&path, size, buffered, false)?.print("buffered");
        }
        Ok(())
    };
    let r = run();
    let _ = std::fs::remove_file(&path);
    r?;
    if rtt > 0 {
        ping_pong(rtt)?.print("rtt");
    }
    Ok(())
}
