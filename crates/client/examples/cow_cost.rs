//! Benchmark helper (not a test): the cost of copy-on-write and of snapshots, the way QEMU's
//! sheepdog driver and `dog` drive them.
//!
//! 1. A VDI with `OBJECTS` fully written 4 MiB objects is snapshotted (`dog vdi snapshot`'s
//!    requests: the tag write, then NEW_VDI with snapid 1).
//! 2. First writes into objects the snapshot owns (CREATE_AND_WRITE with COW + the 4-byte
//!    index write), then ordinary overwrites of the same objects (WRITE_OBJ), for 4 KiB and
//!    for whole 4 MiB objects; median and p99 latency of each, and the COW/plain ratio.
//! 3. Snapshot creation time of a 100 GiB sparse VDI (its last object written, so the index
//!    copied is the whole 100 GiB range), median of `ROUNDS`, against creating a fresh
//!    100 GiB VDI.
//!
//! Usage: `cow_cost ADDR:PORT [OBJECTS [ROUNDS]]` on a formatted cluster.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sd_client::{Connection, NewVdi, WriteOpts};
use sd_proto::inode::data_index_offset;
use sd_proto::{Flags, Vid};

const OBJ: u64 = 4 << 20;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (p(0.5), p(0.99))
}

fn new_vdi<'a>(name: &'a [u8], size: u64, base: u32, snapid: u32) -> NewVdi<'a> {
    NewVdi {
        name,
        vdi_size: size,
        base_vid: base,
        snapid,
        copies: 0,
        copy_policy: 0,
        store_policy: 0,
        block_size_shift: 0,
    }
}

/// `dog vdi snapshot NAME`: the tag write, then NEW_VDI(snapid 1); the new working vid.
async fn snapshot(c: &mut Connection, name: &[u8], vid: Vid, size: u64) -> anyhow::Result<Vid> {
    c.write_obj(vid.inode_oid(), 256, &[0u8; 256], WriteOpts::default())
        .await?;
    let r = c.new_vdi(&new_vdi(name, size, vid.get(), 1)).await?;
    r.vid().context("snapshot vid")
}

/// First writes of `len` bytes into each of `idxs` (owned by `from`) as copies into `to`,
/// then plain overwrites of the same: (cow latencies, plain latencies).
async fn row(
    c: &mut Connection,
    from: Vid,
    to: Vid,
    idxs: std::ops::Range<u32>,
    len: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let data = vec![0x5au8; len];
    let direct = WriteOpts {
        flags: Flags::DIRECT,
        ..WriteOpts::default()
    };
    let (mut cow, mut plain) = (Vec::new(), Vec::new());
    for idx in idxs.clone() {
        let t = Instant::now();
        c.create_and_write_obj(
            to.data_oid(idx),
            Some(from.data_oid(idx)),
            0,
            &data,
            WriteOpts::default(),
        )
        .await?;
        c.write_obj(
            to.inode_oid(),
            data_index_offset(idx),
            &to.get().to_le_bytes(),
            direct,
        )
        .await?;
        cow.push(t.elapsed());
    }
    for idx in idxs {
        let t = Instant::now();
        c.write_obj(to.data_oid(idx), 0, &data, WriteOpts::default())
            .await?;
        plain.push(t.elapsed());
    }
    Ok((cow, plain))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, rest @ ..] = args.as_slice() else {
        bail!("usage: cow_cost ADDR:PORT [OBJECTS [ROUNDS]]");
    };
    let addr = addr.parse().context("address")?;
    let objects: u32 = rest.first().map_or(Ok(32), |s| s.parse())?;
    let rounds: usize = rest.get(1).map_or(Ok(5), |s| s.parse())?;
    let mut c = Connection::connect(addr).await?;

    // 1. A written VDI and its snapshot.
    let name = b"cow-bench";
    let size = u64::from(objects) * OBJ;
    let base = c
        .new_vdi(&new_vdi(name, size, 0, 0))
        .await?
        .vid()
        .context("vid")?;
    let full = vec![0xa5u8; OBJ as usize];
    let direct = WriteOpts {
        flags: Flags::DIRECT,
        ..WriteOpts::default()
    };
    for idx in 0..objects {
        c.create_and_write_obj(base.data_oid(idx), None, 0, &full, WriteOpts::default())
            .await?;
        c.write_obj(
            base.inode_oid(),
            data_index_offset(idx),
            &base.get().to_le_bytes(),
            direct,
        )
        .await?;
    }
    c.flush_vdi(base).await?;
    let t = Instant::now();
    let work = snapshot(&mut c, name, base, size).await?;
    println!(
        "snapshot of a {} MiB VDI ({objects} objects written): {:.2?}",
        size >> 20,
        t.elapsed()
    );

    // 2. COW against plain writes.
    let half = objects / 2;
    let (cow4k, plain4k) = row(&mut c, base, work, 0..half, 4096).await?;
    let (cow4m, plain4m) = row(&mut c, base, work, half..objects, OBJ as usize).await?;
    for (what, cow, plain) in [("4k", cow4k, plain4k), ("4m", cow4m, plain4m)] {
        let (c50, c99) = stats(cow);
        let (p50, p99) = stats(plain);
        println!(
            "row={what} cow_p50_us={} cow_p99_us={} plain_p50_us={} plain_p99_us={} cow/plain_p50={:.2}",
            c50.as_micros(),
            c99.as_micros(),
            p50.as_micros(),
            p99.as_micros(),
            c50.as_secs_f64() / p50.as_secs_f64()
        );
    }

    // 3. Snapshots of a 100 GiB sparse VDI against creating one.
    let big = 100u64 << 30;
    let last = (big / OBJ - 1) as u32;
    let mut creates = Vec::new();
    let mut snaps = Vec::new();
    for r in 0..rounds {
        let nm = format!("big{r}");
        let t = Instant::now();
        let v = c
            .new_vdi(&new_vdi(nm.as_bytes(), big, 0, 0))
            .await?
            .vid()
            .context("vid")?;
        creates.push(t.elapsed());
        c.create_and_write_obj(
            v.data_oid(last),
            None,
            0,
            &[1u8; 4096],
            WriteOpts::default(),
        )
        .await?;
        c.write_obj(
            v.inode_oid(),
            data_index_offset(last),
            &v.get().to_le_bytes(),
            direct,
        )
        .await?;
        let t = Instant::now();
        snapshot(&mut c, nm.as_bytes(), v, big).await?;
        snaps.push(t.elapsed());
    }
    let (cr, _) = stats(creates);
    let (sn, _) = stats(snaps);
    println!(
        "100GiB sparse: create_p50_ms={:.2} snapshot_p50_ms={:.2} snapshot/create={:.2}",
        cr.as_secs_f64() * 1e3,
        sn.as_secs_f64() * 1e3,
        sn.as_secs_f64() / cr.as_secs_f64()
    );
    Ok(())
}
