//! The thrasher: a bounded run that SIGKILLs and restarts random sheep of a cluster (never
//! more than `copies - 1` down at once) while a [`VerifyingClient`] writes and reads back
//! one VDI through the Sheepdog protocol; at the end every sheep runs again, the cluster
//! settles, the replicas are identical and every guaranteed byte of the VDI is verified.
//!
//! A run is reproducible from its seed (`THRASH_SEED`, printed at the start) as far as the
//! random choices go; timing still differs between runs. `THRASH_SECS` sets the duration.

mod client;
mod model;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sd_proto::Vid;

pub use client::{ClientStats, VerifyingClient};
pub use model::{Checked, Gen, Model};

use crate::{Cluster, SETTLE_TIMEOUT, req};

/// Environment variable overriding [`ThrashConfig::duration`] (seconds).
pub const THRASH_SECS_ENV: &str = "THRASH_SECS";
/// Environment variable fixing the seed of a run (decimal or 0x-hex).
pub const THRASH_SEED_ENV: &str = "THRASH_SEED";

/// What to run.
#[derive(Debug, Clone)]
pub struct ThrashConfig {
    /// Cluster size.
    pub nodes: usize,
    /// Replicas per object.
    pub copies: u8,
    /// Run sheep with `-W` (writeback): only flushed writes are guaranteed.
    pub writeback: bool,
    /// How long faults are injected.
    pub duration: Duration,
    /// Of the kills, the share aimed at the client's current gateway (the others pick a
    /// random running node).
    pub aim_at_gateway: f64,
    /// Pause between two faults: uniformly random in this range.
    pub fault_gap: (Duration, Duration),
    /// VDI size (a multiple of 4 MiB).
    pub vdi_size: u64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl ThrashConfig {
    /// A 5-sheep, copies=3 run of `default_secs` (or `THRASH_SECS`) with a random seed (or
    /// `THRASH_SEED`).
    pub fn from_env(writeback: bool, default_secs: u64) -> anyhow::Result<ThrashConfig> {
        let secs = match std::env::var(THRASH_SECS_ENV) {
            Ok(s) => s
                .parse()
                .with_context(|| format!("{THRASH_SECS_ENV}={s:?} is not a number"))?,
            Err(_) => default_secs,
        };
        let seed = match std::env::var(THRASH_SEED_ENV) {
            Ok(s) => parse_seed(&s).with_context(|| format!("{THRASH_SEED_ENV}={s:?}"))?,
            Err(_) => rand::random(),
        };
        Ok(ThrashConfig {
            nodes: 5,
            copies: 3,
            writeback,
            duration: Duration::from_secs(secs),
            aim_at_gateway: 0.3,
            fault_gap: (Duration::from_millis(300), Duration::from_millis(2500)),
            vdi_size: 512 << 20,
            seed,
        })
    }
}

fn parse_seed(s: &str) -> anyhow::Result<u64> {
    Ok(match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16)?,
        None => s.parse()?,
    })
}

/// The figures of a finished run.
#[derive(Debug, Clone, Copy)]
pub struct ThrashReport {
    /// SIGKILLs sent.
    pub kills: u64,
    /// Restarts (including the final ones).
    pub restarts: u64,
    /// Client operations completed during the faults.
    pub steps: u64,
    /// The client's counters.
    pub client: ClientStats,
    /// What the final read of the whole VDI proved.
    pub final_check: Checked,
    /// Writes still not guaranteed at the end (their bytes may read old or new).
    pub maybe_writes: usize,
}

/// Object size of the VDIs the thrasher creates (the cluster default).
const OBJ_SIZE: u64 = 4 << 20;

/// Runs the thrasher (see the module documentation) and prints its figures.
pub fn run(cfg: &ThrashConfig) -> anyhow::Result<ThrashReport> {
    let mode = if cfg.writeback {
        "writeback"
    } else {
        "writethrough"
    };
    eprintln!(
        "thrash: {mode}, {} sheep, copies={}, {:?}; replay with {THRASH_SEED_ENV}={:#018x}",
        cfg.nodes, cfg.copies, cfg.duration, cfg.seed
    );
    ensure!(cfg.copies >= 2, "thrashing needs copies >= 2");
    ensure!(
        cfg.vdi_size.is_multiple_of(OBJ_SIZE) && cfg.vdi_size > 0,
        "bad VDI size"
    );
    // The scrub runs too, every second: it must never undo a client's write, and it must
    // leave the copies identical.
    let extra: &[&str] = if cfg.writeback {
        &["-W", "--scrub-interval", "1"]
    } else {
        &["--scrub-interval", "1"]
    };
    let mut cluster = Cluster::start_with(cfg.nodes, extra)?;
    cluster.format(cfg.copies)?;
    let vid = create_vdi(&cluster, cfg.vdi_size)?;
    let addrs: Vec<_> = (0..cluster.len())
        .map(|i| cluster.sheep(i).addr())
        .collect();
    let mut client = VerifyingClient::new(
        addrs,
        cfg.seed ^ 0xc11e_47c1_1e47,
        vid,
        cfg.vdi_size,
        OBJ_SIZE,
        cfg.writeback,
    );

    let gateway = client.gateway();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (faults, client_result) = std::thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = s.spawn(|| {
            let _done = done_tx;
            let mut steps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client
                    .step()
                    .with_context(|| format!("client step {steps}"))?;
                steps += 1;
            }
            anyhow::Ok(steps)
        });
        let faults = inject_faults(&mut cluster, cfg, &gateway, &done_rx);
        stop.store(true, Ordering::Relaxed);
        let steps = worker
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")));
        (faults, steps)
    });
    let steps = client_result.context("the verifying client failed")?;
    let (kills, restarts) = faults.context("injecting faults")?;
    let elapsed = started.elapsed();

    ensure!(
        cluster.live().len() == cluster.len(),
        "not every sheep runs again"
    );
    cluster
        .wait_settled(usize::from(cfg.copies), SETTLE_TIMEOUT * 2)
        .context("settling after the faults")?;
    cluster
        .check_replicas_identical()
        .context("replicas after the faults")?;
    let during = client.stats();
    let final_check = final_check(&mut client, cfg.vdi_size)?;
    let report = ThrashReport {
        kills,
        restarts,
        steps,
        client: during,
        final_check,
        maybe_writes: client.model().maybe_count(),
    };
    let c = report.client;
    eprintln!(
        "{}thrash {mode}: {:.1?}, seed {:#018x}: {} faults ({kills} SIGKILL, {restarts} restarts); \
         {steps} client steps: {} writes ({} MiB, {} objects allocated), {} reads, {} flushes, \
         {} reconnects, {} resent, {} transient answers, {} orphaned unflushed writes; \
         bytes verified during the run: {} guaranteed + {} uncertain; final read of the VDI: \
         {} guaranteed + {} uncertain bytes ({} writes never guaranteed)",
        crate::FIGURE_PREFIX,
        elapsed,
        cfg.seed,
        kills + restarts,
        c.writes,
        c.bytes_written >> 20,
        c.allocations,
        c.reads,
        c.flushes,
        c.reconnects,
        c.resent,
        c.transient,
        c.orphaned,
        c.checked.guaranteed,
        c.checked.uncertain,
        final_check.guaranteed,
        final_check.uncertain,
        report.maybe_writes,
    );
    Ok(report)
}

/// NEW_VDI "thrash" of `size` bytes through node 0.
fn create_vdi(cluster: &Cluster, size: u64) -> anyhow::Result<Vid> {
    let mut c = cluster.connect(0)?;
    let rsp = c.call_ok(&req::new_vdi(size), &req::name_field("thrash"))?;
    rsp.header.vdi().vid().context("NEW_VDI answered no vid")
}

/// SIGKILLs and restarts random nodes until `cfg.duration` has passed (or the client
/// stopped, which `done` reports), then restarts every node still down. Returns the
/// numbers of kills and restarts.
fn inject_faults(
    cluster: &mut Cluster,
    cfg: &ThrashConfig,
    gateway: &AtomicUsize,
    done: &mpsc::Receiver<()>,
) -> anyhow::Result<(u64, u64)> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let max_down = usize::from(cfg.copies) - 1;
    let n = cluster.len();
    let mut down: Vec<usize> = Vec::new();
    let (mut kills, mut restarts) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < cfg.duration {
        let gap = rng.random_range(cfg.fault_gap.0..=cfg.fault_gap.1);
        // The pause between faults; returns early if the client stopped (it failed).
        match done.recv_timeout(gap) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let kill = down.is_empty() || (down.len() < max_down && rng.random_bool(0.5));
        if kill {
            let up: Vec<usize> = (0..n).filter(|i| !down.contains(i)).collect();
            let gw = gateway.load(Ordering::Relaxed);
            let victim = if up.contains(&gw) && rng.random_bool(cfg.aim_at_gateway) {
                gw
            } else {
                *up.get(rng.random_range(0..up.len()))
                    .context("no live node to kill")?
            };
            eprintln!(
                "thrash +{:.1?}: SIGKILL node {victim} (down: {down:?})",
                started.elapsed()
            );
            cluster.kill9(victim)?;
            down.push(victim);
            kills += 1;
        } else {
            let k = rng.random_range(0..down.len());
            let node = down.swap_remove(k);
            eprintln!(
                "thrash +{:.1?}: restart node {node} (still down: {down:?})",
                started.elapsed()
            );
            cluster.restart(node)?;
            restarts += 1;
        }
        for i in cluster.live() {
            if !cluster.sheep_mut(i).is_alive() {
                bail!("node {i} died without being killed");
            }
        }
    }
    for node in down {
        eprintln!("thrash: final restart of node {node}");
        cluster.restart(node)?;
        restarts += 1;
    }
    Ok((kills, restarts))
}

/// Reads the whole VDI back (index entries, then every allocated object) and checks it.
fn final_check(client: &mut VerifyingClient, size: u64) -> anyhow::Result<Checked> {
    let objects = u32::try_from(size / OBJ_SIZE)?;
    let index = client.read_index(objects)?;
    let vid = client.vid().get();
    for (idx, entry) in index.iter().enumerate() {
        let allocated = client.allocated().contains(&(idx as u64));
        let want = if allocated { vid } else { 0 };
        ensure!(
            *entry == want,
            "index entry {idx} is {entry:#x}, but the object is {}allocated (vid {vid:#x})",
            if allocated { "" } else { "not " }
        );
    }
    client.read_check(0, size)
}
