//! `dog vdi check` and `dog cluster check` on real clusters: copies deleted or corrupted
//! in the nodes' store directories are found and repaired (the files end up byte-identical
//! and the VDI reads back what was written), `-e` reports missing copies, and
//! `cluster check` walks snapshots and clones.

use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};

use sd_proto::Oid;
use sd_proto::hash::sd_hash_vdi;
use sd_testkit::{Cluster, DogOutput, assert_same_bytes, pattern};

/// Bytes written to each test VDI: three 4 MiB objects of a 16 MiB VDI.
const DATA_LEN: usize = 12 << 20;

fn ok(out: DogOutput, what: &str) -> DogOutput {
    out.check_success(what).unwrap();
    out
}

/// A formatted 3-node cluster with copies=3 and VDI `name` holding `pattern(seed, ..)`.
fn cluster_with_vdi(name: &str, seed: u64) -> (Cluster, Vec<u8>) {
    let mut c = Cluster::start(3).unwrap();
    c.format(3).unwrap();
    ok(
        c.dog(0, &["vdi", "create", name, "16M"], None).unwrap(),
        "create",
    );
    let data = pattern(seed, 0, DATA_LEN);
    ok(
        c.dog(0, &["vdi", "write", name, "0", "12M"], Some(&data))
            .unwrap(),
        "write",
    );
    (c, data)
}

/// `ip:port` of node `i`, as dog prints it.
fn addr(c: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.sd_node(i).nid.port)
}

/// Overwrites 16 bytes at `offset` of node `i`'s copy of `oid` in place with bytes that
/// differ from what is there.
fn corrupt(c: &Cluster, i: usize, oid: Oid, offset: u64) {
    let p = c.object_path(i, oid);
    let old = c.read_object(i, oid).unwrap();
    let at = usize::try_from(offset).unwrap();
    let bad: Vec<u8> = old[at..at + 16].iter().map(|b| !b).collect();
    let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&bad).unwrap();
    f.sync_all().unwrap();
    assert_ne!(c.read_object(i, oid).unwrap(), old, "{oid} corrupted");
}

/// Every node holds every one of `oids` (copies=3 on 3 nodes), and the copies are
/// byte-identical.
fn assert_whole(c: &Cluster, oids: &[Oid]) {
    for i in 0..3 {
        let on_disk = c.objects_on_disk(i).unwrap();
        for oid in oids {
            assert!(on_disk.contains(oid), "node {i} lacks {oid}");
        }
    }
    c.check_replicas_identical().unwrap();
}

/// The VDI's objects: its inode and data objects 0..3.
fn objects(name: &str) -> Vec<Oid> {
    let vid = sd_hash_vdi(name.as_bytes());
    vec![
        vid.inode_oid(),
        vid.data_oid(0),
        vid.data_oid(1),
        vid.data_oid(2),
    ]
}

fn read_back(c: &Cluster, i: usize, args: &[&str]) -> Vec<u8> {
    ok(c.dog(i, args, None).unwrap(), "vdi read").stdout
}

#[test]
fn a_deleted_copy_is_recreated() {
    let (c, data) = cluster_with_vdi("t", 11);
    let oids = objects("t");
    let victim = oids[2];
    std::fs::remove_file(c.object_path(0, victim)).unwrap();

    let out = ok(c.dog(1, &["vdi", "check", "t"], None).unwrap(), "check");
    assert_eq!(
        out.stdout_str(),
        format!("fixed missing {:x}\nfinish check&repair t\n", victim.get())
    );
    assert_whole(&c, &oids);
    assert_same_bytes(
        &c.read_object(0, victim).unwrap(),
        &data[4 << 20..8 << 20],
        "repaired copy",
    );

    // Nothing left to do; --json says so.
    let out = ok(
        c.dog(2, &["vdi", "check", "t", "--json"], None).unwrap(),
        "check --json",
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["name"], "t");
    assert_eq!(doc["mode"], "repair");
    assert_eq!(doc["objects"], 4);
    assert_eq!(doc["fixed_missing"], serde_json::json!([]));
    assert_eq!(doc["ok"], true);

    // --json records the repair with the copy's node.
    std::fs::remove_file(c.object_path(2, victim)).unwrap();
    let out = ok(
        c.dog(0, &["vdi", "check", "t", "--json"], None).unwrap(),
        "check --json",
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["fixed_missing"],
        serde_json::json!([{"oid": format!("{:016x}", victim.get()), "addr": addr(&c, 2)}])
    );
    assert_eq!(doc["fixed_replicas"], serde_json::json!([]));
    assert_eq!(doc["ok"], true);
    assert_whole(&c, &oids);
}

#[test]
fn a_corrupted_copy_is_replaced() {
    let (c, data) = cluster_with_vdi("t", 12);
    let oids = objects("t");
    let victim = oids[1];
    corrupt(&c, 1, victim, 4096);

    let out = ok(c.dog(0, &["vdi", "check", "t"], None).unwrap(), "check");
    assert_eq!(
        out.stdout_str(),
        format!("fixed replica {:x}\nfinish check&repair t\n", victim.get())
    );
    assert_whole(&c, &oids);
    assert_same_bytes(
        &c.read_object(1, victim).unwrap(),
        &data[..4 << 20],
        "repaired copy",
    );
    for i in 0..3 {
        let back = read_back(&c, i, &["vdi", "read", "t", "0", "12M"]);
        assert_same_bytes(&back, &data, "read back");
    }
}

#[test]
fn a_node_without_any_copy_of_the_vdi_gets_them_all_back() {
    let (c, data) = cluster_with_vdi("t", 13);
    let oids = objects("t");
    for oid in &oids {
        std::fs::remove_file(c.object_path(2, *oid)).unwrap();
    }
    let on_disk = c.objects_on_disk(2).unwrap();
    assert!(
        oids.iter().all(|o| !on_disk.contains(o)),
        "node 2 still holds the VDI"
    );

    let out = ok(c.dog(0, &["vdi", "check", "t"], None).unwrap(), "check");
    let text = out.stdout_str();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.pop(), Some("finish check&repair t"));
    let got: BTreeSet<String> = lines.iter().map(|l| l.to_string()).collect();
    let want: BTreeSet<String> = oids
        .iter()
        .map(|o| format!("fixed missing {:x}", o.get()))
        .collect();
    assert_eq!((got, lines.len()), (want, oids.len()), "{text}");
    assert_whole(&c, &oids);
    let back = read_back(&c, 2, &["vdi", "read", "t", "0", "12M"]);
    assert_same_bytes(&back, &data, "read back");
}

#[test]
fn exist_only_reports_missing_copies_until_repaired() {
    let (c, _) = cluster_with_vdi("t", 14);
    let oids = objects("t");
    std::fs::remove_file(c.object_path(1, oids[1])).unwrap();
    std::fs::remove_file(c.object_path(1, oids[3])).unwrap();

    let out = c.dog(0, &["vdi", "check", "-e", "t"], None).unwrap();
    assert_eq!(out.code(), Some(1), "{out:?}");
    let a = addr(&c, 1);
    assert_eq!(
        out.stdout_str(),
        format!(
            "[{a}] oid {:016x} is missing.\n[{a}] oid {:016x} is missing.\nt lost 2 object(s).\n",
            oids[1].get(),
            oids[3].get()
        )
    );
    // -e repairs nothing.
    assert!(!c.object_path(1, oids[1]).exists());
    let out = c
        .dog(2, &["vdi", "check", "-e", "t", "--json"], None)
        .unwrap();
    assert_eq!(out.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["mode"], "exist");
    assert_eq!(doc["missing"].as_array().unwrap().len(), 2);
    assert_eq!(doc["ok"], false);

    ok(c.dog(0, &["vdi", "check", "t"], None).unwrap(), "check");
    let out = ok(
        c.dog(0, &["vdi", "check", "-e", "t"], None).unwrap(),
        "check -e",
    );
    assert_eq!(out.stdout_str(), "t is fine, no object is missing.\n");
    assert_whole(&c, &oids);
}

#[test]
fn cluster_check_repairs_a_snapshot_and_walks_clones() {
    let (c, data) = cluster_with_vdi("base", 15);
    let snap = sd_hash_vdi(b"base");
    ok(
        c.dog(0, &["vdi", "snapshot", "-s", "snap1", "base"], None)
            .unwrap(),
        "snapshot",
    );
    // The working VDI and the clone get their own object 0; the snapshot's stays its own.
    let fresh = pattern(16, 0, 4 << 20);
    ok(
        c.dog(0, &["vdi", "write", "base", "0", "4M"], Some(&fresh))
            .unwrap(),
        "write base",
    );
    ok(
        c.dog(1, &["vdi", "clone", "-s", "snap1", "base", "cl"], None)
            .unwrap(),
        "clone",
    );
    ok(
        c.dog(1, &["vdi", "write", "cl", "0", "4M"], Some(&fresh))
            .unwrap(),
        "write clone",
    );
    let victim = snap.data_oid(0);
    corrupt(&c, 2, victim, 0);

    let out = ok(
        c.dog(0, &["cluster", "check"], None).unwrap(),
        "cluster check",
    );
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    let fixed = format!("fixed replica {:x}", victim.get());
    let at = lines
        .iter()
        .position(|l| *l == "fix snapshot base (id: 1, tag: \"snap1\")")
        .unwrap_or_else(|| panic!("no snapshot line:\n{text}"));
    assert_eq!(
        lines.get(at + 1..at + 3),
        Some(&[fixed.as_str(), "finish check&repair base"][..]),
        "{text}"
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("fixed ")).count(), 1);
    for l in ["fix vdi base", "fix vdi cl"] {
        assert_eq!(lines.iter().filter(|x| *x == &l).count(), 1, "{l}:\n{text}");
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("finish check&repair "))
            .count(),
        3,
        "{text}"
    );
    c.check_replicas_identical().unwrap();
    let back = read_back(&c, 2, &["vdi", "read", "-s", "snap1", "base", "0", "12M"]);
    assert_same_bytes(&back, &data, "read back");
    let back = read_back(&c, 0, &["vdi", "read", "cl", "0", "12M"]);
    assert_same_bytes(&back[..4 << 20], &fresh, "clone object 0");
    assert_same_bytes(&back[4 << 20..], &data[4 << 20..], "clone shared objects");

    // Clean now: nothing fixed, and --json lists all three.
    let out = ok(
        c.dog(1, &["cluster", "check", "--json"], None).unwrap(),
        "cluster check --json",
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vdis = doc["vdis"].as_array().unwrap();
    let mut kinds: Vec<String> = vdis
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["kind"].as_str().unwrap(),
                v["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["clone cl", "snapshot base", "working base"]);
    for v in vdis {
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["fixed_replicas"], serde_json::json!([]), "{v}");
    }
}
