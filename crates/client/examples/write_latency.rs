//! Benchmark helper (not a test): 4 KiB writes at random offsets of the already written
//! part of a VDI, one at a time, for a number of seconds (or until STOP_FILE exists);
//! prints IOPS and latency percentiles. With `LATENCY_TRACE=FILE` it also appends one line
//! per write, `<ms since start> <latency us>`, after a `# run` line: where in time the
//! slow writes fall.
//! Usage: `write_latency ADDR:PORT VDI SECONDS [SPAN_BYTES [STOP_FILE]]`.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use sd_client::{Connection, WriteOpts};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, name, secs, rest @ ..] = args.as_slice() else {
        bail!("usage: write_latency ADDR:PORT VDI SECONDS [SPAN_BYTES [STOP_FILE]]");
    };
    let addr = addr.parse().context("address")?;
    let secs: u64 = secs.parse().context("seconds")?;
    let span: u64 = match rest.first() {
        Some(s) => s.parse().context("span")?,
        None => 64 << 20,
    };
    let stop = rest.get(1).map(std::path::PathBuf::from);
    let mut c = Connection::connect(addr).await?;
    let vid = c
        .get_vdi_info(name.as_bytes(), b"", 0)
        .await?
        .vid()
        .context("vid")?;
    let obj = 4u64 << 20;
    let block = vec![0xa5u8; 4096];
    let mut rng = rand::rng();
    let mut lat = Vec::new();
    let mut trace = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end && !stop.as_ref().is_some_and(|p| p.exists()) {
        let off = rng.random_range(0..span / 4096) * 4096;
        let (idx, inner) = (off / obj, off % obj);
        let t = Instant::now();
        c.write_obj(
            vid.data_oid(idx as u32),
            inner,
            &block,
            WriteOpts::default(),
        )
        .await?;
        lat.push(t.elapsed());
        trace.push((t - start, t.elapsed()));
    }
    if let Some(path) = std::env::var_os("LATENCY_TRACE") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .context("trace file")?;
        let mut out = String::from("# run\n");
        for (at, took) in &trace {
            out.push_str(&format!("{} {}\n", at.as_millis(), took.as_micros()));
        }
        f.write_all(out.as_bytes()).context("trace file")?;
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "writes={} iops={:.0} p50_us={} p99_us={}",
        lat.len(),
        lat.len() as f64 / start.elapsed().as_secs_f64(),
        pct(0.50).as_micros(),
        pct(0.99).as_micros()
    );
    Ok(())
}
