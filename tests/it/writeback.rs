//! Writeback (`sheep -W`) and targeted flush (DESIGN §1): FLUSH_VDI reaches exactly the
//! nodes its gateway wrote the VDI to, leaves no dirty object of the VDI behind, survives
//! SIGKILLs of all but one copy, turns a failed fdatasync into EIO plus a rebuilt copy, the
//! background flusher bounds the dirty window, `--flush=syncfs` reaches every node, and
//! writethrough flushes are trivially done. Observed through STAT_WRITEBACK (0xF0) and the
//! object files on disk.
//!
//! The sync-failure test sends INJECT_SYNC_FAILURE (0xF1), which sheep only understands
//! when built with `--features sheep/failpoints`.

use std::time::{Duration, Instant};

use sd_proto::stat::WritebackStat as WbStat;
use sd_proto::{Oid, SdResult, Vid};
use sd_testkit::{
    Cluster, QUARANTINE_DIR, assert_same_bytes, dir_names, pattern, random_seed, req,
};

use crate::common::{OBJ_LEN, OBJ_SIZE, create_vdi};

const MIB: usize = 1 << 20;
/// One block, as a guest would write it.
const BLOCK: usize = 4096;
/// Writeback with the background flusher out of the way (10 minutes), so that the dirty
/// and FLUSH_PEER counters only move when a test flushes.
const WB_NO_AUTO_FLUSH: &[&str] = &["-W", "--writeback-max-age", "600000"];
/// How long the background flusher (`--writeback-max-age 200`) may take to drain a node.
const AUTO_FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// How long re-replicating one lost copy may take.
const REPAIR_DEADLINE: Duration = Duration::from_secs(30);

/// STAT_WRITEBACK of `vid` on node `i`.
fn stat(c: &Cluster, i: usize, vid: Vid) -> WbStat {
    let rsp = c
        .connect(i)
        .unwrap()
        .call_ok(&req::stat_writeback(vid), &[])
        .unwrap_or_else(|e| panic!("STAT_WRITEBACK on node {i}: {e:#}"));
    assert_eq!(
        rsp.payload.len(),
        req::STAT_WRITEBACK_LEN as usize,
        "STAT_WRITEBACK reply of node {i}: {:02x?}",
        rsp.payload
    );
    WbStat::decode(&rsp.payload).unwrap()
}

/// STAT_WRITEBACK of `vid` on every node of `c`.
fn stats(c: &Cluster, vid: Vid) -> Vec<WbStat> {
    (0..c.len()).map(|i| stat(c, i, vid)).collect()
}

/// FLUSH_VDI of `vid` through node `i`: the result it answered.
fn flush(c: &Cluster, i: usize, vid: Vid) -> SdResult {
    let t = Instant::now();
    let rsp = c
        .connect(i)
        .unwrap()
        .call(&req::flush_vdi(vid), &[])
        .unwrap_or_else(|e| panic!("FLUSH_VDI through node {i}: {e:#}"));
    eprintln!(
        "FLUSH_VDI {vid} through node {i}: {} in {:.2?}",
        rsp.result(),
        t.elapsed()
    );
    rsp.result()
}

/// Through node `gw`: CREATE_AND_WRITE of one block at `offset` of `oid` (a durable
/// create, clean in both modes), then a WRITE_OBJ of another block over it (dirty on every
/// replica in writeback mode). Returns what the whole object must now hold.
fn create_then_dirty(c: &Cluster, gw: usize, oid: Oid, offset: u64, seed: u64) -> Vec<u8> {
    let mut cl = c.connect(gw).unwrap();
    let first = pattern(seed, offset, BLOCK);
    cl.call_ok(
        &req::create_and_write_obj(oid, offset, BLOCK as u32),
        &first,
    )
    .unwrap();
    let second = pattern(seed ^ 1, offset, BLOCK);
    cl.call_ok(&req::write_obj(oid, offset, BLOCK as u32), &second)
        .unwrap();
    let mut image = vec![0u8; OBJ_SIZE as usize];
    let at = usize::try_from(offset).unwrap();
    image[at..at + BLOCK].copy_from_slice(&second);
    image
}

/// READ_OBJ of the whole `oid` through every live node returns `image`.
fn assert_reads_back(c: &Cluster, oid: Oid, image: &[u8]) {
    for i in c.live() {
        let rsp = c
            .connect(i)
            .unwrap()
            .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
            .unwrap_or_else(|e| panic!("READ_OBJ {oid} through node {i}: {e:#}"));
        assert_same_bytes(&rsp.payload, image, &format!("{oid} read through node {i}"));
    }
}

/// The files of `oid` on `nodes` hold exactly `image`.
fn assert_files(c: &Cluster, oid: Oid, nodes: &[usize], image: &[u8]) {
    for &i in nodes {
        let got = c.read_object(i, oid).unwrap();
        assert_same_bytes(&got, image, &format!("node {i}'s file of {oid}"));
    }
}

#[test]
fn flush_reaches_exactly_the_written_nodes() {
    let t0 = Instant::now();
    let mut c = Cluster::start_with(4, WB_NO_AUTO_FLUSH).unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "targeted", 64 << 20);

    // Creating the VDI wrote its inode (durably) through some gateway; a first flush
    // through node 0 clears whatever node 0 recorded for it, so that what follows counts
    // only the data write.
    assert_eq!(flush(&c, 0, vid), SdResult::Success, "flush after NEW_VDI");
    let base = stats(&c, vid);
    eprintln!("after NEW_VDI and a first flush: {base:?}");
    for (i, s) in base.iter().enumerate() {
        assert_eq!(s.dirty_objects, 0, "node {i} after the first flush: {s:?}");
    }

    let oid = vid.data_oid(0);
    let all: Vec<usize> = (0..4).collect();
    let replicas = c.placement(oid, &all, 3);
    assert_eq!(replicas.len(), 3, "replicas of {oid}: {replicas:?}");
    let other = *all.iter().find(|i| !replicas.contains(i)).unwrap();
    eprintln!("{oid} is placed on nodes {replicas:?}; node {other} holds nothing of it");
    let image = create_then_dirty(&c, 0, oid, 0, random_seed());

    // Before the flush: the block is dirty on exactly the three replicas.
    let before = stats(&c, vid);
    for &i in &replicas {
        let s = before[i];
        assert_eq!(s.dirty_objects, 1, "replica {i} before the flush: {s:?}");
        assert!(
            s.dirty_bytes >= BLOCK as u64,
            "replica {i} before the flush: {s:?}"
        );
    }
    assert_eq!(
        (before[other].dirty_objects, before[other].dirty_bytes),
        (0, 0),
        "node {other} (no replica) before the flush: {:?}",
        before[other]
    );

    assert_eq!(flush(&c, 0, vid), SdResult::Success, "FLUSH_VDI");
    let after = stats(&c, vid);
    eprintln!("after the flush: {after:?}");
    for (i, s) in after.iter().enumerate() {
        assert_eq!(
            (s.dirty_objects, s.dirty_bytes),
            (0, 0),
            "node {i} after the flush: {s:?}"
        );
        // Node 0 syncs itself directly; every other replica got exactly one FLUSH_PEER;
        // the node holding nothing got none.
        let want = u64::from(i != 0 && replicas.contains(&i));
        assert_eq!(
            s.peer_flushes_vdi - base[i].peer_flushes_vdi,
            want,
            "FLUSH_PEER for {vid} served by node {i} (replicas {replicas:?}): {s:?}, before {:?}",
            base[i]
        );
        assert_eq!(
            s.peer_flushes - base[i].peer_flushes,
            want,
            "FLUSH_PEER served in total by node {i} (replicas {replicas:?}): {s:?}, before {:?}",
            base[i]
        );
    }
    assert_files(&c, oid, &replicas, &image);
    assert!(
        !c.object_path(other, oid).exists(),
        "node {other} holds {oid}, placed on {replicas:?}"
    );

    // Nothing written since: the next flush sends nothing and succeeds.
    assert_eq!(flush(&c, 0, vid), SdResult::Success, "second FLUSH_VDI");
    assert_eq!(
        stats(&c, vid),
        after,
        "counters after a flush with nothing to do"
    );
    assert_reads_back(&c, oid, &image);
    eprintln!(
        "flush_reaches_exactly_the_written_nodes: {:.2?}",
        t0.elapsed()
    );
}

#[test]
fn flushed_data_survives_sigkill_of_copies_minus_one() {
    let t0 = Instant::now();
    let mut c = Cluster::start_with(3, WB_NO_AUTO_FLUSH).unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "durable", 64 << 20);

    // `dog vdi write` ends with a FLUSH_VDI.
    let len = 16 * MIB;
    let data = pattern(random_seed(), 0, len);
    let t = Instant::now();
    c.dog(
        0,
        &["vdi", "write", "durable", "0", &len.to_string()],
        Some(&data),
    )
    .unwrap()
    .check_success("dog vdi write")
    .unwrap();
    eprintln!("dog vdi write of 16 MiB (flushed): {:.2?}", t.elapsed());
    // SIGKILL does not lose the page cache, so what shows that the flush happened is that
    // no node holds anything of the VDI dirty any more.
    for (i, s) in stats(&c, vid).iter().enumerate() {
        assert_eq!(s.dirty_objects, 0, "node {i} after dog vdi write: {s:?}");
    }
    c.kill9(1).unwrap();
    c.kill9(2).unwrap();

    let out = c
        .dog(0, &["vdi", "read", "durable", "0", &len.to_string()], None)
        .unwrap();
    out.check_success("dog vdi read through the survivor")
        .unwrap();
    assert_same_bytes(&out.stdout, &data, "durable read through node 0");
    // The object files of every node (the dead ones' too) hold the bytes.
    for (idx, want) in data.chunks(OBJ_SIZE as usize).enumerate() {
        let oid = vid.data_oid(u32::try_from(idx).unwrap());
        assert_files(&c, oid, &[0, 1, 2], want);
    }
    c.sheep_mut(0).check_alive().unwrap();
    eprintln!(
        "flushed_data_survives_sigkill_of_copies_minus_one: {:.2?}",
        t0.elapsed()
    );
}

#[test]
fn sync_failure_is_eio_and_the_copy_is_rebuilt() {
    const VICTIM: usize = 1;
    let t0 = Instant::now();
    let mut c = Cluster::start_with(3, WB_NO_AUTO_FLUSH).unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "failing", 64 << 20);
    assert_eq!(flush(&c, 0, vid), SdResult::Success, "flush after NEW_VDI");
    let base = stats(&c, vid);

    let oid = vid.data_oid(0);
    let image = create_then_dirty(&c, 0, oid, 1 << 20, random_seed());
    assert_eq!(
        stat(&c, VICTIM, vid).dirty_objects,
        1,
        "{oid} dirty on node {VICTIM}"
    );
    let rsp = c
        .connect(VICTIM)
        .unwrap()
        .call(&req::inject_sync_failure(oid), &[])
        .unwrap();
    assert_eq!(
        rsp.result(),
        SdResult::Success,
        "INJECT_SYNC_FAILURE on node {VICTIM} (is sheep built with --features sheep/failpoints?)"
    );

    assert_eq!(
        flush(&c, 0, vid),
        SdResult::Eio,
        "FLUSH_VDI with a failing fdatasync"
    );

    // The lost copy is moved aside and rebuilt from a healthy one.
    let qdir = c.quarantine_dir(VICTIM);
    let t = Instant::now();
    c.poll_until(REPAIR_DEADLINE, "the lost copy to be rebuilt", |c| {
        let Ok(got) = std::fs::read(c.object_path(VICTIM, oid)) else {
            return Ok(None);
        };
        // The file appears at its rename; the copy counts as rebuilt once the directory
        // entry is durable too, and only then does a flush stop reporting it lost.
        Ok((got == image && stat(c, VICTIM, vid).lost_objects == 0).then_some(()))
    })
    .unwrap();
    eprintln!("{oid} rebuilt on node {VICTIM} in {:.2?}", t.elapsed());
    let moved = dir_names(&qdir).unwrap();
    let prefix = format!("{oid}.");
    assert!(
        moved.len() == 1 && moved.iter().all(|n| n.starts_with(&prefix)),
        "node {VICTIM}'s {QUARANTINE_DIR} holds {moved:?}, expected one {prefix}N"
    );
    let q = qdir.join(moved.iter().next().unwrap());
    assert_eq!(
        std::fs::metadata(&q).unwrap().len(),
        OBJ_SIZE,
        "size of the moved-aside copy {}",
        q.display()
    );

    // Node VICTIM stayed a flush target, and its copy is whole again: the flush succeeds.
    assert_eq!(
        flush(&c, 0, vid),
        SdResult::Success,
        "FLUSH_VDI after the rebuild"
    );
    let after = stats(&c, vid);
    eprintln!("after the rebuild and a flush: {after:?}");
    for (i, s) in after.iter().enumerate() {
        assert_eq!(s.dirty_objects, 0, "node {i} after the second flush: {s:?}");
    }
    assert_eq!(
        after[VICTIM].peer_flushes_vdi - base[VICTIM].peer_flushes_vdi,
        2,
        "FLUSH_PEER served by node {VICTIM}, which failed the first: {:?}",
        after[VICTIM]
    );
    assert_eq!(
        after[2].peer_flushes_vdi - base[2].peer_flushes_vdi,
        1,
        "FLUSH_PEER served by node 2, which succeeded the first: {:?}",
        after[2]
    );
    assert_reads_back(&c, oid, &image);
    assert_files(&c, oid, &[0, 1, 2], &image);
    c.check_replicas_identical().unwrap();
    eprintln!(
        "sync_failure_is_eio_and_the_copy_is_rebuilt: {:.2?}",
        t0.elapsed()
    );
}

#[test]
fn writeback_background_flush_bounds_the_dirty_window() {
    const MAX_AGE: Duration = Duration::from_millis(200);
    let t0 = Instant::now();
    let mut c = Cluster::start_with(3, &["-W", "--writeback-max-age", "200"]).unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "aging", 64 << 20);

    let oid = vid.data_oid(0);
    let written = Instant::now();
    let image = create_then_dirty(&c, 0, oid, 0, random_seed());
    // No node may flush data younger than the max age: an answer that arrives within it
    // must still show the block dirty.
    for i in 0..3 {
        let s = stat(&c, i, vid);
        if written.elapsed() < MAX_AGE {
            assert_eq!(s.dirty_objects, 1, "node {i} right after the write: {s:?}");
        } else {
            eprintln!(
                "node {i} asked {:.2?} after the write: {s:?}",
                written.elapsed()
            );
        }
    }

    let drained = c
        .poll_until(AUTO_FLUSH_DEADLINE, "the background flush", |c| {
            let s = stats(c, vid);
            let clean = s.iter().all(|s| s.dirty_objects == 0 && s.dirty_bytes == 0);
            Ok(clean.then(|| written.elapsed()))
        })
        .unwrap();
    eprintln!("every node clean {drained:.2?} after the write, without a flush");
    assert_files(&c, oid, &[0, 1, 2], &image);
    eprintln!(
        "writeback_background_flush_bounds_the_dirty_window: {:.2?}",
        t0.elapsed()
    );
}

#[test]
fn syncfs_mode_flushes_every_node() {
    let t0 = Instant::now();
    let mut c = Cluster::start_with(
        4,
        &["-W", "--writeback-max-age", "600000", "--flush", "syncfs"],
    )
    .unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "everyone", 64 << 20);

    let oid = vid.data_oid(0);
    let all: Vec<usize> = (0..4).collect();
    let replicas = c.placement(oid, &all, 3);
    let image = create_then_dirty(&c, 0, oid, 0, random_seed());
    let before = stats(&c, vid);
    for &i in &replicas {
        assert_eq!(before[i].dirty_objects, 1, "replica {i}: {:?}", before[i]);
    }

    assert_eq!(flush(&c, 0, vid), SdResult::Success, "FLUSH_VDI (syncfs)");
    let after = stats(&c, vid);
    eprintln!("{oid} on {replicas:?}; before {before:?}, after {after:?}");
    for (i, s) in after.iter().enumerate() {
        assert_eq!(
            (s.dirty_objects, s.dirty_bytes),
            (0, 0),
            "node {i} after the flush: {s:?}"
        );
        // Every node but the gateway (it syncs itself), replica or not.
        let want = u64::from(i != 0);
        assert_eq!(
            s.peer_flushes - before[i].peer_flushes,
            want,
            "FLUSH_PEER served by node {i} (replicas {replicas:?}): {s:?}, before {:?}",
            before[i]
        );
    }
    assert_files(&c, oid, &replicas, &image);
    assert_reads_back(&c, oid, &image);
    eprintln!("syncfs_mode_flushes_every_node: {:.2?}", t0.elapsed());
}

#[test]
fn writethrough_flush_is_immediate() {
    let t0 = Instant::now();
    let mut c = Cluster::start(3).unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "direct", 64 << 20);

    let oid = vid.data_oid(0);
    let image = create_then_dirty(&c, 0, oid, 0, random_seed());
    for (i, s) in stats(&c, vid).iter().enumerate() {
        assert_eq!(
            (s.dirty_objects, s.dirty_bytes),
            (0, 0),
            "writethrough node {i} after a write: {s:?}"
        );
    }
    assert_eq!(
        flush(&c, 0, vid),
        SdResult::Success,
        "FLUSH_VDI (writethrough)"
    );
    let after = stats(&c, vid);
    eprintln!("after the flush: {after:?}");
    for (i, s) in after.iter().enumerate() {
        assert_eq!(
            (s.dirty_objects, s.dirty_bytes),
            (0, 0),
            "writethrough node {i} after the flush: {s:?}"
        );
    }
    assert_files(&c, oid, &[0, 1, 2], &image);
    assert_reads_back(&c, oid, &image);
    eprintln!("writethrough_flush_is_immediate: {:.2?}", t0.elapsed());
}
