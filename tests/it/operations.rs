//! Running a sheep: a clean stop on SIGTERM (writeback data flushed on every replica, the
//! cluster left at once), the log level changed while running (`dog node log level`), the
//! log file rotated by size and reopened on SIGHUP.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_proto::Vid;
use sd_proto::stat::WritebackStat;
use sd_testkit::{Cluster, Sheep, pattern, poll_until, random_seed, req};

use crate::common::{OBJ_LEN, OBJ_SIZE, create_vdi};

/// How long a clean stop may take (in-flight wait, flushes, leave).
const STOP_DEADLINE: Duration = Duration::from_secs(30);

fn signal(s: &Sheep, sig: Signal) {
    let pid = s.pid().expect("sheep runs");
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), sig).unwrap();
}

/// Dirty objects of `vid` and dirty bytes on node `i` (STAT_WRITEBACK).
fn dirty(c: &Cluster, i: usize, vid: Vid) -> (u64, u64) {
    let rsp = c
        .connect(i)
        .unwrap()
        .call_ok(&req::stat_writeback(vid), &[])
        .unwrap();
    let st = WritebackStat::decode(&rsp.payload).unwrap();
    (st.dirty_objects, st.dirty_bytes)
}

#[test]
fn sigterm_flushes_what_its_gateway_wrote_and_leaves_at_once() {
    // No background flush: only the stop can make the overwrites durable.
    let mut c = Cluster::start_with(3, &["-W", "--writeback-max-age", "600000"]).unwrap();
    c.format(3).unwrap();
    let gw = 1;
    let mut raw = c.connect(gw).unwrap();
    let vid = create_vdi(&mut raw, "stop", 2 * OBJ_SIZE);
    let data = pattern(random_seed(), 0, OBJ_SIZE as usize);
    for idx in 0..2 {
        let oid = vid.data_oid(idx);
        raw.call_ok(&req::create_and_write_obj(oid, 0, OBJ_LEN), &data)
            .unwrap();
        // Overwrites are what writeback leaves dirty.
        raw.call_ok(&req::write_obj(oid, 0, OBJ_LEN), &data)
            .unwrap();
    }
    drop(raw);
    for i in 0..3 {
        assert_eq!(dirty(&c, i, vid).0, 2, "node {i} before the stop");
    }
    let (epoch_before, _) = c.members_seen_by(0).unwrap();
    signal(c.sheep(gw), Signal::SIGTERM);
    poll_until(STOP_DEADLINE, "the sheep to stop", || {
        Ok((!c.sheep_mut(gw).is_alive()).then_some(()))
    })
    .unwrap();
    let log = std::fs::read_to_string(c.dir(gw).join("sheep.log")).unwrap();
    assert!(log.contains("writeback data flushed"), "{log}");
    assert!(log.contains("left the cluster"), "{log}");
    // The others saw the leave (one epoch, two members) and hold nothing dirty of the VDI:
    // the stopping gateway sent them FLUSH_PEER.
    for i in [0, 2] {
        let (epoch, members) =
            poll_until(Duration::from_secs(5), "the leave to be applied", || {
                let (epoch, members) = c.members_seen_by(i)?;
                Ok((members.len() == 2).then_some((epoch, members)))
            })
            .unwrap();
        assert_eq!(members.len(), 2, "node {i}");
        assert_eq!(epoch.0, epoch_before.0 + 1, "node {i}");
        assert_eq!(dirty(&c, i, vid), (0, 0), "node {i} after the stop");
    }
    // The stopped node's own copies were synced too: it restarts with them intact.
    c.restart(gw).unwrap();
    c.wait_members(3).unwrap();
    for idx in 0..2 {
        let file = c.read_object(gw, vid.data_oid(idx)).unwrap();
        assert!(file == data, "node {gw}'s copy of object {idx}");
    }
}

#[test]
fn log_level_changes_while_running() {
    let s = Sheep::start_temp(&[]).unwrap();
    s.format().unwrap();
    let get = |s: &Sheep| {
        let out = s.dog(&["node", "log", "level", "get"], None).unwrap();
        out.check_success("dog node log level get").unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get(&s), "info (6)\n");
    let log = s.dir().join("sheep.log");
    let debug_lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .count()
    };
    assert_eq!(debug_lines(), 0);
    let out = s
        .dog(&["node", "log", "level", "set", "debug"], None)
        .unwrap();
    out.check_success("dog node log level set debug").unwrap();
    assert_eq!(get(&s), "debug (7)\n");
    // Debug events (a refused request logs one) now reach the file.
    poll_until(Duration::from_secs(10), "debug lines in sheep.log", || {
        let _ = s.dog(&["vdi", "read", "missing"], None)?;
        Ok((debug_lines() > 0).then_some(()))
    })
    .unwrap();
    let out = s
        .dog(&["node", "log", "level", "set", "loud"], None)
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid loglevel: loud"));
    let out = s.dog(&["node", "log", "level", "list"], None).unwrap();
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        list.starts_with("emerg\t(0)\n") && list.ends_with("debug\t(7)\n"),
        "{list}"
    );
    // Back to warnings only: info lines stop.
    let out = s
        .dog(&["node", "log", "level", "set", "warning"], None)
        .unwrap();
    out.check_success("set warning").unwrap();
    assert_eq!(get(&s), "warning (4)\n");
}

#[test]
fn log_rotates_by_size_and_reopens_on_sighup() {
    let s = Sheep::start_temp(&["-l", "level=debug,max_size=16K,keep=2"]).unwrap();
    s.format().unwrap();
    let dir = s.dir().to_path_buf();
    let exists = |n: &str| dir.join(n).exists();
    poll_until(Duration::from_secs(20), "sheep.log.2", || {
        let _ = s.dog(&["vdi", "list"], None)?;
        Ok(exists("sheep.log.2").then_some(()))
    })
    .unwrap();
    // A few more rotations: still at most two old files, each about the limit.
    for _ in 0..50 {
        let _ = s.dog(&["vdi", "list"], None).unwrap();
    }
    assert!(!exists("sheep.log.3"));
    for n in ["sheep.log", "sheep.log.1", "sheep.log.2"] {
        let len = std::fs::metadata(dir.join(n)).unwrap().len();
        assert!(len <= 16 << 10, "{n}: {len} bytes");
    }
    // An external rotation moves the file away; SIGHUP makes the sheep start a new one.
    std::fs::rename(dir.join("sheep.log"), dir.join("moved.log")).unwrap();
    signal(&s, Signal::SIGHUP);
    poll_until(
        Duration::from_secs(10),
        "a new sheep.log after SIGHUP",
        || {
            let _ = s.dog(&["node", "list"], None)?;
            let text = std::fs::read_to_string(dir.join("sheep.log")).unwrap_or_default();
            Ok(text.contains("log file reopened").then_some(()))
        },
    )
    .unwrap();
}
