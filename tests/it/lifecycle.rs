//! VDI lifecycle on a 3-sheep cluster (copies=3) through the real `dog`, in both store
//! modes: snapshots and copy-on-write, clones, rollback, chains of snapshots deleted in the
//! middle with their space freed on every node, and sheep killed at exact steps of a
//! snapshot, a delete and a copy-on-write write (the `failpoints` crash points), after
//! which the cluster finishes the work and every VDI reads back consistently.

use std::time::Duration;

use sd_proto::{Oid, Vid};
use sd_testkit::{Cluster, assert_same_bytes, pattern, poll_until, random_seed};

use crate::common::OBJ_SIZE;

const MIB: u64 = 1 << 20;
/// Size of the test VDIs: 8 objects.
const VDI_SIZE: u64 = 32 * MIB;
/// How long the cluster may take to settle after a kill or restart.
const SETTLE: Duration = Duration::from_secs(60);
const WRITEBACK: &[&str] = &["-W"];

/// A formatted 3-node cluster (copies=3) holding VDI `name` of [`VDI_SIZE`].
fn cluster(extra: &[&str], name: &str) -> Cluster {
    let mut c = Cluster::start_with(3, extra).unwrap();
    c.format(3).unwrap();
    dog_ok(&c, 0, &["vdi", "create", name, &VDI_SIZE.to_string()]);
    c
}

#[track_caller]
fn dog_ok(c: &Cluster, i: usize, args: &[&str]) -> String {
    let out = c.dog(i, args, None).unwrap();
    out.check_success(&format!("dog {}", args.join(" ")))
        .unwrap();
    out.stdout_str()
}

/// `dog vdi write NAME OFFSET LEN` of `data` through node `i`, and the same bytes laid
/// into `image`.
#[track_caller]
fn write(c: &Cluster, i: usize, name: &str, offset: u64, data: &[u8], image: &mut [u8]) {
    let (off, len) = (offset.to_string(), data.len().to_string());
    c.dog(i, &["vdi", "write", name, &off, &len], Some(data))
        .unwrap()
        .check_success(&format!("dog vdi write {name} {off} {len}"))
        .unwrap();
    let at = usize::try_from(offset).unwrap();
    image[at..at + data.len()].copy_from_slice(data);
}

/// `dog vdi read [-s SNAP] NAME` of the whole VDI through node `i` equals `image`.
#[track_caller]
fn assert_reads(c: &Cluster, i: usize, name: &str, snap: Option<&str>, image: &[u8]) {
    let mut args = vec!["vdi", "read"];
    if let Some(s) = snap {
        args.extend(["-s", s]);
    }
    args.push(name);
    let what = format!("dog {} through node {i}", args.join(" "));
    let out = c.dog(i, &args, None).unwrap();
    out.check_success(&what).unwrap();
    assert_same_bytes(&out.stdout, image, &what);
}

/// The rows of `dog vdi list -r`, as (type char, name, snapshot id, vid).
fn list(c: &Cluster, i: usize) -> Vec<(char, String, u32, u32)> {
    dog_ok(c, i, &["vdi", "list", "-r"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].chars().next().unwrap(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                u32::from_str_radix(f[7], 16).unwrap(),
            )
        })
        .collect()
}

/// The vid of the row of `name` with snapshot id `snapid` (0: the working VDI).
fn vid_in(rows: &[(char, String, u32, u32)], name: &str, snapid: u32) -> Vid {
    let r = rows
        .iter()
        .find(|r| r.1 == name && r.2 == snapid)
        .unwrap_or_else(|| panic!("no row {name} {snapid} in {rows:?}"));
    Vid::new(r.3).unwrap()
}

/// Data objects of `vid` stored on node `i`.
fn data_objects_of(c: &Cluster, i: usize, vid: Vid) -> Vec<u32> {
    c.objects_on_disk(i)
        .unwrap()
        .into_iter()
        .filter(|o: &Oid| o.is_data() && o.vid() == vid)
        .map(Oid::index)
        .collect()
}

/// The "Total" used bytes of `dog node info -r`.
fn total_used(c: &Cluster) -> u64 {
    let out = dog_ok(c, 0, &["node", "info", "-r"]);
    let total = out
        .lines()
        .find(|l| l.starts_with("Total"))
        .unwrap_or_else(|| panic!("no Total line in {out:?}"));
    total
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no used bytes in {total:?}"))
}

fn image_of(seed: u64) -> Vec<u8> {
    pattern(seed, 0, VDI_SIZE as usize)
}

/// Pattern A everywhere, snapshot, pattern B over 6..12 MiB (a partial and a whole
/// object): the snapshot reads A, the VDI the mix; both on every node; the copied
/// objects exist on all three nodes under the new vid, the snapshot's are untouched.
fn snapshot_then_copy_on_write(extra: &[&str]) {
    let c = cluster(extra, "v");
    let mut a = image_of(random_seed());
    let img = a.clone();
    write(&c, 0, "v", 0, &img, &mut a);
    let out = dog_ok(&c, 1, &["vdi", "snapshot", "-v", "-s", "before", "v"]);
    let rows = list(&c, 2);
    let (snap, work) = (vid_in(&rows, "v", 1), vid_in(&rows, "v", 0));
    assert_eq!(
        out,
        format!(
            "new VID of original VDI: {:x}, VDI ID of newly created snapshot: {:x}\n",
            work.get(),
            snap.get()
        )
    );
    assert_eq!(rows[0].0, 's', "snapshot row {rows:?}");
    assert_eq!(rows[1].0, '=', "working row {rows:?}");

    let mut mix = a.clone();
    let b = pattern(random_seed(), 6 * MIB, (6 * MIB) as usize);
    write(&c, 2, "v", 6 * MIB, &b, &mut mix);
    for i in 0..3 {
        assert_reads(&c, i, "v", Some("before"), &a);
        assert_reads(&c, i, "v", Some("1"), &a);
        assert_reads(&c, i, "v", None, &mix);
        assert_eq!(data_objects_of(&c, i, work), [1, 2], "node {i}");
        assert_eq!(
            data_objects_of(&c, i, snap),
            (0..8).collect::<Vec<u32>>(),
            "node {i}"
        );
    }
    let tree = dog_ok(&c, 0, &["vdi", "tree"]);
    assert!(
        tree.starts_with("v---[") && tree.ends_with("]---(you are here)\n"),
        "{tree:?}"
    );
    // The snapshot refuses writes.
    let out = c
        .dog(
            0,
            &["vdi", "write", "-s", "1", "v", "0", "512"],
            Some(&[1; 512]),
        )
        .unwrap();
    assert!(!out.status.success(), "write to a snapshot succeeded");
    assert_reads(&c, 0, "v", Some("1"), &a);
}

#[test]
fn snapshot_then_copy_on_write_writethrough() {
    snapshot_then_copy_on_write(&[]);
}

#[test]
fn snapshot_then_copy_on_write_writeback() {
    snapshot_then_copy_on_write(WRITEBACK);
}

/// A clone of a snapshot shares its objects until written; the source and the snapshot
/// never change; rollback returns the VDI to the snapshot.
fn clone_and_rollback(extra: &[&str]) {
    let c = cluster(extra, "base");
    let mut a = vec![0u8; VDI_SIZE as usize];
    let data = pattern(random_seed(), 0, (10 * MIB) as usize);
    write(&c, 0, "base", 0, &data, &mut a);
    dog_ok(&c, 0, &["vdi", "snapshot", "-s", "gold", "base"]);
    dog_ok(&c, 1, &["vdi", "clone", "-s", "gold", "base", "vm1"]);
    let rows = list(&c, 0);
    let clone = vid_in(&rows, "vm1", 0);
    assert!(
        rows.iter().any(|r| r.0 == 'c' && r.1 == "vm1"),
        "clone row: {rows:?}"
    );
    let mut vm1 = a.clone();
    let d = pattern(random_seed(), MIB, MIB as usize);
    write(&c, 2, "vm1", MIB, &d, &mut vm1);
    let mut base = a.clone();
    let e = pattern(random_seed(), 9 * MIB, (3 * MIB) as usize);
    write(&c, 1, "base", 9 * MIB, &e, &mut base);
    for i in 0..3 {
        assert_reads(&c, i, "vm1", None, &vm1);
        assert_reads(&c, i, "base", Some("gold"), &a);
        assert_reads(&c, i, "base", None, &base);
        assert_eq!(
            data_objects_of(&c, i, clone),
            [0],
            "clone's own objects on {i}"
        );
    }
    // Rollback: the working VDI reads the snapshot again.
    dog_ok(&c, 0, &["vdi", "rollback", "-f", "-s", "gold", "base"]);
    for i in 0..3 {
        assert_reads(&c, i, "base", None, &a);
        assert_reads(&c, i, "vm1", None, &vm1);
    }
    let rows = list(&c, 0);
    let names: Vec<(char, &str, u32)> = rows.iter().map(|r| (r.0, r.1.as_str(), r.2)).collect();
    assert_eq!(
        names,
        [('s', "base", 1), ('=', "base", 0), ('c', "vm1", 0)],
        "{rows:?}"
    );
}

#[test]
fn clone_and_rollback_writethrough() {
    clone_and_rollback(&[]);
}

#[test]
fn clone_and_rollback_writeback() {
    clone_and_rollback(WRITEBACK);
}

/// Five snapshots with writes between; deleting the 3rd keeps every other member
/// readable and frees exactly what only it referenced; deleting everything leaves no data
/// object on any node.
#[test]
fn snapshot_chain_delete_frees_what_nothing_references() {
    let c = cluster(&[], "chain");
    let mut image = vec![0u8; VDI_SIZE as usize];
    let mut snaps: Vec<Vec<u8>> = Vec::new();
    for k in 0..5u64 {
        // Object k is rewritten (owned by this generation); object 7 every time.
        let d = pattern(random_seed(), k * OBJ_SIZE, OBJ_SIZE as usize);
        write(&c, (k % 3) as usize, "chain", k * OBJ_SIZE, &d, &mut image);
        let d = pattern(random_seed(), 7 * OBJ_SIZE, MIB as usize);
        write(&c, 0, "chain", 7 * OBJ_SIZE, &d, &mut image);
        dog_ok(&c, 0, &["vdi", "snapshot", "chain"]);
        snaps.push(image.clone());
    }
    let rows = list(&c, 0);
    let vids: Vec<Vid> = (1..=5).map(|s| vid_in(&rows, "chain", s)).collect();
    let third = vids[2];
    // Snapshot 3 owns objects 2 and 7; later generations rewrote object 7 but not 2.
    assert_eq!(data_objects_of(&c, 0, third), [2, 7]);
    dog_ok(&c, 1, &["vdi", "delete", "-s", "3", "chain"]);
    for i in 0..3 {
        assert_eq!(
            data_objects_of(&c, i, third),
            [2],
            "node {i}: object 7 of snapshot 3 is referenced by nobody, object 2 by 4 and 5"
        );
    }
    for (s, want) in snaps.iter().enumerate() {
        if s == 2 {
            continue;
        }
        assert_reads(&c, 2, "chain", Some(&(s + 1).to_string()), want);
    }
    assert_reads(&c, 1, "chain", None, &image);
    dog_ok(&c, 2, &["vdi", "delete", "chain"]);
    for (s, want) in snaps.iter().enumerate() {
        if s != 2 {
            assert_reads(&c, 0, "chain", Some(&(s + 1).to_string()), want);
        }
    }
    let used_before = total_used(&c);
    for s in [1, 2, 4, 5] {
        dog_ok(&c, 0, &["vdi", "delete", "-s", &s.to_string(), "chain"]);
    }
    let used_after = total_used(&c);
    // Every node held 9 objects of 4 MiB (1 x 5 generations + object 7 x 4 survivors);
    // `dog node info` shows the space freed.
    assert!(
        used_before - used_after >= 3 * 8 * OBJ_SIZE,
        "dog node info used {used_before} -> {used_after}"
    );
    assert_eq!(list(&c, 0), [], "vdi list after deleting everything");
    for i in 0..3 {
        let left: Vec<Oid> = c
            .objects_on_disk(i)
            .unwrap()
            .into_iter()
            .filter(|o| o.is_data())
            .collect();
        assert!(left.is_empty(), "data objects left on node {i}: {left:?}");
    }
}

/// Node 0 dies (SIGKILL by the crash point `point`) in the middle of `dog ARGS` (fed
/// `stdin`); it restarts, and the cluster finishes the interrupted work.
fn crash_during(point: &str, prepare: &dyn Fn(&Cluster), args: &[&str], stdin: &[u8]) -> Cluster {
    let mut c = cluster(&[], "v");
    prepare(&c);
    c.kill9(0).unwrap();
    c.set_env(0, "SHEEP_CRASH_AT", Some(point));
    c.restart(0).unwrap();
    c.wait_settled(3, SETTLE).unwrap();
    let out = c.dog(0, args, Some(stdin)).unwrap();
    assert!(
        !out.status.success(),
        "dog {} survived the crash point {point}",
        args.join(" ")
    );
    poll_until(SETTLE, "node 0 to die at the crash point", || {
        Ok((!c.sheep_mut(0).is_alive()).then_some(()))
    })
    .unwrap();
    c.set_env(0, "SHEEP_CRASH_AT", None);
    c.restart(0).unwrap();
    c.wait_settled(3, SETTLE).unwrap();
    c
}

fn written_vdi(c: &Cluster) -> Vec<u8> {
    let mut a = vec![0u8; VDI_SIZE as usize];
    let d = pattern(random_seed(), 0, (12 * MIB) as usize);
    write(c, 1, "v", 0, &d, &mut a);
    a
}

#[test]
fn sigkill_during_snapshot_is_finished() {
    for point in ["new_vdi:after_log", "new_vdi:after_inode"] {
        let image = std::cell::RefCell::new(Vec::new());
        let mut c = crash_during(
            point,
            &|c| *image.borrow_mut() = written_vdi(c),
            &["vdi", "snapshot", "-s", "s1", "v"],
            &[],
        );
        let a = image.borrow().clone();
        // The log decided the snapshot: it exists, with the old bytes; the working VDI
        // continues under a new vid, writable, copy-on-write.
        // (The lowest node finishes the inode work once the cluster is stable again.)
        let rows = poll_until(SETTLE, "the snapshot's inode to be marked", || {
            let rows = list(&c, 0);
            let kinds: Vec<(char, u32)> = rows.iter().map(|r| (r.0, r.2)).collect();
            Ok((kinds == [('s', 1), ('=', 0)]).then_some(rows))
        })
        .unwrap();
        eprintln!("{point}: {rows:?}");
        for i in 0..3 {
            c.poll_until(SETTLE, "the interrupted snapshot to be finished", |c| {
                let out = c.dog(i, &["vdi", "read", "-s", "s1", "v"], None)?;
                Ok((out.status.success() && out.stdout == a).then_some(()))
            })
            .unwrap();
            assert_reads(&c, i, "v", None, &a);
        }
        let mut b = a.clone();
        let d = pattern(random_seed(), 2 * MIB, (4 * MIB) as usize);
        write(&c, 2, "v", 2 * MIB, &d, &mut b);
        assert_reads(&c, 0, "v", Some("s1"), &a);
        assert_reads(&c, 1, "v", None, &b);
        c.check_replicas_identical().unwrap();
    }
}

#[test]
fn sigkill_during_delete_is_finished() {
    for point in ["del_vdi:after_log", "reclaim:after_first"] {
        let image = std::cell::RefCell::new(Vec::new());
        let mut c = crash_during(
            point,
            &|c| {
                let a = written_vdi(c);
                dog_ok(c, 1, &["vdi", "snapshot", "v"]);
                // The working VDI owns objects 0 and 1 of its own after these writes.
                let mut w = a.clone();
                let d = pattern(random_seed(), 0, (8 * MIB) as usize);
                write(c, 1, "v", 0, &d, &mut w);
                *image.borrow_mut() = a;
            },
            &["vdi", "delete", "v"],
            &[],
        );
        let a = image.borrow().clone();
        let rows = list(&c, 0);
        assert_eq!(
            rows.len(),
            1,
            "{point}: only the snapshot is left: {rows:?}"
        );
        let snap = vid_in(&rows, "v", 1);
        let working = Vid::new(snap.get() + 1).unwrap();
        c.poll_until(SETTLE, "the interrupted delete to be finished", |c| {
            let left: usize = (0..3).map(|i| data_objects_of(c, i, working).len()).sum();
            Ok((left == 0).then_some(()))
        })
        .unwrap();
        for i in 0..3 {
            assert_reads(&c, i, "v", Some("1"), &a);
            assert_eq!(data_objects_of(&c, i, snap), [0, 1, 2], "node {i}");
        }
    }
}

/// Killed between creating a copied object and pointing the index at it: the VDI reads
/// the old bytes there (the write was never acknowledged), and writes again work.
#[test]
fn sigkill_during_copy_on_write_leaves_old_data() {
    let image = std::cell::RefCell::new(Vec::new());
    let c = crash_during(
        "index:before_write",
        &|c| {
            let a = written_vdi(c);
            dog_ok(c, 1, &["vdi", "snapshot", "v"]);
            *image.borrow_mut() = a;
        },
        &["vdi", "write", "v", "4194304", "512"],
        &[0x77; 512],
    );
    let a = image.borrow().clone();
    for i in 0..3 {
        assert_reads(&c, i, "v", None, &a);
        assert_reads(&c, i, "v", Some("1"), &a);
    }
    let mut b = a.clone();
    let d = pattern(random_seed(), 4 * MIB, 512);
    write(&c, 0, "v", 4 * MIB, &d, &mut b);
    assert_reads(&c, 1, "v", None, &b);
    assert_reads(&c, 2, "v", Some("1"), &a);
}

/// A VDI deleted while a node was down: that node's copies are dead data once it returns,
/// and are swept (nothing resurrected, nothing the survivors need removed).
#[test]
fn delete_while_a_node_is_down_leaves_no_dead_copies() {
    let mut c = cluster(&[], "gone");
    dog_ok(&c, 0, &["vdi", "create", "kept", &VDI_SIZE.to_string()]);
    let mut a = vec![0u8; VDI_SIZE as usize];
    let d = pattern(random_seed(), 0, (12 * MIB) as usize);
    write(&c, 0, "gone", 0, &d, &mut a);
    let mut k = vec![0u8; VDI_SIZE as usize];
    let d = pattern(random_seed(), 0, (8 * MIB) as usize);
    write(&c, 1, "kept", 0, &d, &mut k);
    let rows = list(&c, 0);
    let (gone, kept) = (vid_in(&rows, "gone", 0), vid_in(&rows, "kept", 0));
    assert_eq!(data_objects_of(&c, 2, gone), [0, 1, 2]);

    c.kill9(2).unwrap();
    c.wait_settled(3, SETTLE).unwrap();
    dog_ok(&c, 0, &["vdi", "delete", "gone"]);
    c.restart(2).unwrap();
    c.wait_settled(3, SETTLE).unwrap();
    poll_until(
        SETTLE,
        "the returning node's dead copies to be swept",
        || {
            let left: Vec<(usize, Vec<u32>)> = (0..3)
                .map(|i| (i, data_objects_of(&c, i, gone)))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            Ok(left.is_empty().then_some(()))
        },
    )
    .unwrap();
    for i in 0..3 {
        assert_eq!(data_objects_of(&c, i, kept), [0, 1], "node {i}");
        assert_reads(&c, i, "kept", None, &k);
    }
    assert_eq!(list(&c, 1).len(), 1);
}
