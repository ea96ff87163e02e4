//! Copies after an unclean stop. A sheep SIGKILLed (or cut from power) leaves no clean-stop
//! mark, so when it starts again its copies are suspect: their versions say when they were
//! last written, but in writeback mode writes it acknowledged may have been in its page
//! cache only. A power cut is emulated here on a real file system: the sheep is SIGKILLed
//! and the bytes its page cache would have lost are put back as they were in its object
//! file (the version attribute stays, as it would on disk).

use std::os::unix::fs::{FileExt, MetadataExt};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use sd_proto::Oid;
use sd_testkit::{Cluster, SETTLE_TIMEOUT, pattern, random_seed, req};

use crate::common::{assert_everywhere, vdi_with_one_object, wait_recovered};

const WRITEBACK: &[&str] = &["-W", "--writeback-max-age", "600000"];

/// Where the unflushed write goes in the object.
const AT: u64 = 4096;
const LEN: usize = 8192;

/// Puts `old`'s bytes back over the unflushed write in node `i`'s copy of `oid`.
fn lose_unflushed_write(c: &Cluster, i: usize, oid: Oid, old: &[u8]) {
    let at = AT as usize;
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.object_path(i, oid))
        .unwrap()
        .write_all_at(&old[at..at + LEN], AT)
        .unwrap();
}

/// A writeback cluster with one object, and an acknowledged but unflushed write to it
/// through node 1: the object, its bytes before and after the write.
fn written_not_flushed(c: &Cluster, name: &str) -> (Oid, Vec<u8>, Vec<u8>) {
    let (oid, old) = vdi_with_one_object(c, name);
    let part = pattern(random_seed(), AT, LEN);
    let mut new = old.clone();
    new[AT as usize..AT as usize + LEN].copy_from_slice(&part);
    c.connect(1)
        .unwrap()
        .call_ok(&req::write_obj(oid, AT, LEN as u32), &part)
        .unwrap();
    (oid, old, new)
}

/// One node loses power with an acknowledged write in its page cache only; a flush then
/// succeeds on the live replicas, so the write must survive. The node comes back with a
/// copy of the same version that lacks it: it is brought up to date, not kept.
#[test]
fn a_node_that_lost_unflushed_writes_catches_up_when_it_returns() {
    let mut c = Cluster::start_with(3, WRITEBACK).unwrap();
    c.format(3).unwrap();
    let (oid, old, new) = written_not_flushed(&c, "lost");
    c.kill9(2).unwrap();
    lose_unflushed_write(&c, 2, oid, &old);
    c.wait_members(2).unwrap();
    c.connect(1)
        .unwrap()
        .call_ok(&req::flush_vdi(oid.vid()), &[])
        .unwrap();
    c.restart(2).unwrap();
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    wait_recovered(&mut c);
    assert_everywhere(&c, oid, &new);
}

/// Every node loses power; the unflushed write had reached the disk on some of them only.
/// Every copy is suspect and of the same version: one of them wins everywhere (the first
/// replica's among the nodes back; the first node back keeps its own until others are).
#[test]
fn copies_a_whole_cluster_crash_left_different_are_made_identical() {
    let mut c = Cluster::start_with(3, WRITEBACK).unwrap();
    c.format(3).unwrap();
    let (oid, old, new) = written_not_flushed(&c, "crash");
    let first = c.placement(oid, &[0, 1, 2], 3)[0];
    for i in 0..3 {
        c.kill9(i).unwrap();
    }
    lose_unflushed_write(&c, first, oid, &old);
    for i in 0..3 {
        c.restart(i).unwrap();
    }
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    wait_recovered(&mut c);
    let want = if c.read_object(0, oid).unwrap() == old {
        &old
    } else {
        &new
    };
    assert_everywhere(&c, oid, want);
}

/// A clean stop leaves the mark, and the restarted node trusts its copies: it fetches
/// nothing (a copy it kept is the same file as before).
#[test]
fn a_clean_stop_is_trusted() {
    let mut c = Cluster::start_with(3, WRITEBACK).unwrap();
    c.format(3).unwrap();
    let (oid, _old, new) = written_not_flushed(&c, "clean");
    let pid = c.sheep(2).pid().expect("sheep runs");
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGTERM).unwrap();
    c.wait_exit(2, SETTLE_TIMEOUT).unwrap();
    assert!(c.dir(2).join("clean").exists(), "no clean-stop mark");
    // The leaving node may already have dropped its copy (the others hold every object
    // once the epoch without it is stable); if it kept it, the copy is kept as it is.
    let ino = std::fs::metadata(c.object_path(2, oid)).ok();
    c.restart(2).unwrap();
    assert!(
        !c.dir(2).join("clean").exists(),
        "the mark outlived the start"
    );
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    wait_recovered(&mut c);
    assert_everywhere(&c, oid, &new);
    if let Some(ino) = ino {
        let after = std::fs::metadata(c.object_path(2, oid)).unwrap();
        assert_eq!(ino.ino(), after.ino(), "the copy was replaced");
    }
}

/// The first replica loses power with the write unflushed; a flush without it makes the
/// write durable on the other two; then they lose power too, and the first replica is the
/// first one back. The nodes that stayed longest win: the flushed write is everywhere.
#[test]
fn a_flushed_write_survives_when_the_node_that_missed_it_comes_back_first() {
    let mut c = Cluster::start_with(3, WRITEBACK).unwrap();
    c.format(3).unwrap();
    let (oid, old, new) = written_not_flushed(&c, "stayed");
    let placement = c.placement(oid, &[0, 1, 2], 3);
    let missed = placement[0];
    let gw = placement[1];
    c.kill9(missed).unwrap();
    lose_unflushed_write(&c, missed, oid, &old);
    c.wait_members(2).unwrap();
    c.connect(gw)
        .unwrap()
        .call_ok(&req::flush_vdi(oid.vid()), &[])
        .unwrap();
    for &i in &placement[1..] {
        c.kill9(i).unwrap();
    }
    for &i in &placement {
        c.restart(i).unwrap();
    }
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    wait_recovered(&mut c);
    assert_everywhere(&c, oid, &new);
}
