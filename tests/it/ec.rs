//! Erasure-coded VDIs (`-c D:P`) on real clusters: strips land on the nodes placement names
//! (strip `i` on the `i`-th), decode to the bytes written and carry the right parity (checked
//! from the files on disk), reads go on with P nodes SIGKILLed, writes made meanwhile
//! survive, and recovery puts every strip back on its node; bad policies are refused as
//! the C dog refuses them.

use std::collections::BTreeSet;
use std::time::Duration;

use sd_ec::{Ec, Geometry};
use sd_proto::Oid;
use sd_proto::hash::sd_hash_vdi;
use sd_testkit::{Cluster, DogOutput, assert_same_bytes, pattern};

const OBJ: usize = 4 << 20;
const SETTLE: Duration = Duration::from_secs(90);

fn ok(out: DogOutput, what: &str) -> DogOutput {
    out.check_success(what).unwrap();
    out
}

/// The data objects `0..n` of VDI `name`.
fn data_oids(name: &str, n: u32) -> Vec<Oid> {
    let vid = sd_hash_vdi(name.as_bytes());
    (0..n).map(|i| vid.data_oid(i)).collect()
}

/// Writes `data` at `offset` of VDI `name` through node `via` and into `expect`.
fn write(c: &Cluster, via: usize, name: &str, expect: &mut [u8], offset: usize, data: &[u8]) {
    let (off, len) = (offset.to_string(), data.len().to_string());
    ok(
        c.dog(via, &["vdi", "write", name, &off, &len], Some(data))
            .unwrap(),
        "vdi write",
    );
    expect[offset..offset + data.len()].copy_from_slice(data);
}

/// Reads the VDI back through every node of `via` and compares.
fn read_back(c: &Cluster, via: &[usize], name: &str, expect: &[u8]) {
    for &i in via {
        let len = expect.len().to_string();
        let out = ok(
            c.dog(i, &["vdi", "read", name, "0", &len], None).unwrap(),
            "vdi read",
        );
        assert_same_bytes(
            &out.stdout,
            expect,
            &format!("{name} read through node {i}"),
        );
    }
}

/// Unaligned overwrites of every kind (inside one block, across blocks and objects).
fn overwrites(seed: u64, len: usize) -> Vec<(usize, Vec<u8>)> {
    let spots = [
        (1usize, 1usize),
        (511, 2),
        (4096 * 3 + 100, 7000),
        (OBJ - 300, 900),
        (OBJ + 65_536, 131_072),
        (2 * OBJ - 1, 1),
    ];
    spots
        .iter()
        .filter(|(o, l)| o + l <= len)
        .enumerate()
        .map(|(k, (o, l))| (*o, pattern(seed + k as u64, *o as u64, *l)))
        .collect()
}

/// Where each strip of `oids` is on the disks of `nodes`, against where placement puts it
/// among those members; a description of the differences (empty: all in place).
fn misplaced_strips(c: &Cluster, nodes: &[usize], oids: &[Oid], total: usize) -> String {
    let mut diff = Vec::new();
    let mut on_disk: Vec<(usize, BTreeSet<(Oid, u8)>)> = Vec::new();
    for &i in nodes {
        on_disk.push((i, c.strips_on_disk(i).unwrap()));
    }
    for oid in oids {
        let want = c.placement(*oid, nodes, total);
        for (i, strips) in &on_disk {
            let have: Vec<u8> = strips
                .iter()
                .filter(|(o, _)| o == oid)
                .map(|(_, j)| *j)
                .collect();
            let should: Vec<u8> = want
                .iter()
                .position(|n| n == i)
                .map(|j| vec![u8::try_from(j).unwrap()])
                .unwrap_or_default();
            if have != should {
                diff.push(format!(
                    "{oid}: node {i} has strips {have:?}, should have {should:?}"
                ));
            }
        }
    }
    diff.join("\n")
}

/// From the files on disk: every strip of `oids` is where placement puts it, the data
/// strips join back to `expect`'s bytes of that object, and the parity strips are the
/// code's parity of them.
fn check_strips(c: &Cluster, nodes: &[usize], oids: &[Oid], ec: Ec, expect: &[u8]) {
    let total = usize::from(ec.total());
    let d = usize::from(ec.data());
    let misplaced = misplaced_strips(c, nodes, oids, total);
    assert!(misplaced.is_empty(), "strips misplaced:\n{misplaced}");
    let g = Geometry::new(ec, OBJ as u64).unwrap();
    for (k, oid) in oids.iter().enumerate() {
        let want = c.placement(*oid, nodes, total);
        let strips: Vec<Vec<u8>> = want
            .iter()
            .enumerate()
            .map(|(j, n)| c.read_strip(*n, *oid, u8::try_from(j).unwrap()).unwrap())
            .collect();
        for s in &strips {
            assert_eq!(s.len() as u64, g.strip_size(), "{oid}: strip size");
        }
        let data = g.join(g.whole(), &strips[..d]).unwrap();
        assert_same_bytes(
            &data,
            &expect[k * OBJ..(k + 1) * OBJ],
            &format!("{oid} on disk"),
        );
        let parity = g.encode(&strips[..d]).unwrap();
        for (p, want) in parity.iter().zip(&strips[d..]) {
            assert!(
                p == want,
                "{oid}: a parity strip on disk is not the parity of its data"
            );
        }
    }
}

/// Polls until the strips of `oids` sit exactly where placement among `nodes` puts them.
fn wait_strips_placed(c: &mut Cluster, nodes: &[usize], oids: &[Oid], total: usize) {
    let nodes = nodes.to_vec();
    let oids = oids.to_vec();
    c.poll_until(SETTLE, "strips in place", |c| {
        Ok(misplaced_strips(c, &nodes, &oids, total)
            .is_empty()
            .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", misplaced_strips(c, &nodes, &oids, total)));
}

#[test]
fn ec_2_1_strips_decode_and_survive_a_lost_node() {
    let mut c = Cluster::start(4).unwrap();
    c.format(2).unwrap();
    let ec = Ec::new(2, 1).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "-c", "2:1", "ecv", "16M"], None)
            .unwrap(),
        "vdi create",
    );
    let list = ok(c.dog(1, &["vdi", "list", "-r"], None).unwrap(), "list").stdout_str();
    assert!(list.contains(" 2:1 "), "vdi list shows the policy: {list}");
    let len = 12 << 20;
    let mut expect = vec![0u8; 16 << 20];
    write(&c, 0, "ecv", &mut expect, 0, &pattern(1, 0, len));
    for (o, d) in overwrites(10, len) {
        write(&c, 1, "ecv", &mut expect, o, &d);
    }
    let oids = data_oids("ecv", 3);
    let all = [0, 1, 2, 3];
    check_strips(&c, &all, &oids, ec, &expect);
    // No whole copies of data objects anywhere: 1.5x the data, not 3x.
    for i in all {
        let objects = c.objects_on_disk(i).unwrap();
        assert!(
            oids.iter().all(|o| !objects.contains(o)),
            "node {i} holds a whole copy"
        );
    }
    read_back(&c, &all, "ecv", &expect);

    // Lose the holder of object 0's first data strip: reads decode meanwhile.
    let victim = c.placement(oids[0], &all, 3)[0];
    c.kill9(victim).unwrap();
    let live: Vec<usize> = all.iter().copied().filter(|i| *i != victim).collect();
    read_back(&c, &live[..1], "ecv", &expect);
    for (o, d) in overwrites(20, len) {
        write(&c, live[1], "ecv", &mut expect, o, &d);
    }
    c.wait_members(3).unwrap();
    wait_strips_placed(&mut c, &live, &oids, 3);
    check_strips(&c, &live, &oids, ec, &expect);
    read_back(&c, &live, "ecv", &expect);
    // Idle strip logs are emptied (checkpointed): their second copy of the writes goes.
    let logs = live.clone();
    c.poll_until(SETTLE, "strip logs emptied", |c| {
        let mut big = Vec::new();
        for &i in &logs {
            for name in sd_testkit::dir_names(&c.dir(i).join("obj"))? {
                if name.ends_with(".log") {
                    let len = std::fs::metadata(c.dir(i).join("obj").join(&name))?.len();
                    if len > 32 {
                        big.push((i, name, len));
                    }
                }
            }
        }
        Ok(big.is_empty().then_some(()))
    })
    .unwrap();
}

#[test]
fn ec_4_2_reads_and_writes_with_two_nodes_down_then_heals() {
    let mut c = Cluster::start(6).unwrap();
    c.format(3).unwrap();
    let ec = Ec::new(4, 2).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "-c", "4:2", "ecv", "8M"], None)
            .unwrap(),
        "vdi create",
    );
    let mut expect = vec![0u8; 8 << 20];
    write(&c, 0, "ecv", &mut expect, 0, &pattern(3, 0, 8 << 20));
    let oids = data_oids("ecv", 2);
    let all: Vec<usize> = (0..6).collect();
    check_strips(&c, &all, &oids, ec, &expect);

    // Two data strips of object 0 gone: every read of it decodes.
    let p = c.placement(oids[0], &all, 6);
    let (a, b) = (p[0], p[1]);
    c.kill9(a).unwrap();
    c.kill9(b).unwrap();
    let live: Vec<usize> = all.iter().copied().filter(|i| *i != a && *i != b).collect();
    read_back(&c, &live[..1], "ecv", &expect);
    c.wait_members(4).unwrap();
    for (o, d) in overwrites(30, 8 << 20) {
        write(&c, live[0], "ecv", &mut expect, o, &d);
    }
    read_back(&c, &live, "ecv", &expect);

    // They come back: every strip returns to its node, with the writes they missed.
    c.restart(a).unwrap();
    c.restart(b).unwrap();
    c.wait_members(6).unwrap();
    wait_strips_placed(&mut c, &all, &oids, 6);
    check_strips(&c, &all, &oids, ec, &expect);
    read_back(&c, &[a, b], "ecv", &expect);
}

#[test]
fn bad_policies_are_refused_as_the_c_dog_refuses_them() {
    let mut c = Cluster::start(3).unwrap();
    c.format(3).unwrap();
    for bad in ["3:1", "2:0", "4:16", "0", "32"] {
        let out = c
            .dog(0, &["vdi", "create", "-c", bad, "v", "8M"], None)
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "-c {bad}");
        assert!(
            out.stderr_str()
                .starts_with(&format!("Invalid parameter {bad}\n")),
            "-c {bad}: {}",
            out.stderr_str()
        );
    }
    // 4:2 needs six zones; this cluster has three.
    let out = c
        .dog(0, &["vdi", "create", "-c", "4:2", "v", "8M"], None)
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr_str().trim_end(),
        "Failed to create VDI v: IO has halted as there are not enough living nodes"
    );
    let list = ok(c.dog(0, &["vdi", "list", "-r"], None).unwrap(), "list").stdout_str();
    assert!(list.is_empty(), "nothing created: {list}");
}

/// A cluster formatted `-c 2:1` makes erasure-coded VDIs by default; snapshots, clones
/// and rollback of them keep the code, copy-on-write copies old data from strips, and
/// deleting everything leaves no strip behind.
#[test]
fn ec_snapshot_clone_rollback_delete() {
    let c = Cluster::start(3).unwrap();
    ok(
        c.dog(0, &["cluster", "format", "-c", "2:1"], None).unwrap(),
        "format",
    );
    ok(
        c.dog(0, &["vdi", "create", "ecv", "32M"], None).unwrap(),
        "create",
    );
    let mut a = vec![0u8; 12 << 20];
    write(&c, 0, "ecv", &mut a, 0, &pattern(5, 0, 12 << 20));
    ok(
        c.dog(1, &["vdi", "snapshot", "-s", "s1", "ecv"], None)
            .unwrap(),
        "snapshot",
    );
    let mut b = a.clone();
    write(
        &c,
        2,
        "ecv",
        &mut b,
        4_000_000,
        &pattern(6, 4_000_000, 5 << 20),
    );
    let read = |i: usize, args: &[&str]| ok(c.dog(i, args, None).unwrap(), "vdi read").stdout;
    let len = (12 << 20).to_string();
    assert_same_bytes(
        &read(0, &["vdi", "read", "-s", "s1", "ecv", "0", &len]),
        &a,
        "snapshot",
    );
    assert_same_bytes(
        &read(1, &["vdi", "read", "ecv", "0", &len]),
        &b,
        "working VDI",
    );
    ok(
        c.dog(0, &["vdi", "clone", "-s", "s1", "ecv", "cl"], None)
            .unwrap(),
        "clone",
    );
    let mut cl = a.clone();
    write(&c, 1, "cl", &mut cl, 100, &pattern(7, 100, 1000));
    assert_same_bytes(&read(2, &["vdi", "read", "cl", "0", &len]), &cl, "clone");
    assert_same_bytes(
        &read(0, &["vdi", "read", "-s", "s1", "ecv", "0", &len]),
        &a,
        "snapshot",
    );
    let list = ok(c.dog(0, &["vdi", "list", "-r"], None).unwrap(), "list").stdout_str();
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 3, "{list}");
    assert!(
        rows.iter().all(|r| r.contains(" 2:1 ")),
        "every VDI 2:1: {list}"
    );
    ok(
        c.dog(0, &["vdi", "rollback", "-f", "-s", "s1", "ecv"], None)
            .unwrap(),
        "rollback",
    );
    assert_same_bytes(
        &read(1, &["vdi", "read", "ecv", "0", &len]),
        &a,
        "rolled back",
    );
    for args in [
        &["vdi", "delete", "cl"][..],
        &["vdi", "delete", "-s", "s1", "ecv"],
        &["vdi", "delete", "ecv"],
    ] {
        ok(c.dog(0, args, None).unwrap(), "delete");
    }
    for i in 0..3 {
        let left = c.strips_on_disk(i).unwrap();
        assert!(left.is_empty(), "node {i} keeps strips {left:?}");
    }
}

/// What the C `dog vdi create -c 2:1` and QEMU's old driver send, byte for byte through
/// our typed builders: NEW_VDI with copies 3 and policy 0x11, then object I/O naming the
/// VDI's copies and policy. The VDI is erasure coded and reads back.
#[test]
fn c_dog_style_requests_make_an_erasure_coded_vdi() {
    let mut c = Cluster::start(3).unwrap();
    c.format(3).unwrap();
    let mut conn = c.connect(1).unwrap();
    let mut h = sd_testkit::req::new_vdi(16 << 20);
    let mut a = h.vdi();
    a.copies = 3;
    a.copy_policy = 0x11;
    h = h.with_vdi(a);
    let rsp = conn
        .call_ok(&h, &sd_testkit::req::name_field("cvdi"))
        .unwrap();
    let vid = rsp.header.vdi().vid().expect("a vid");
    assert_eq!(rsp.header.vdi().copies, 3, "C dog reads the copies back");
    let list = ok(
        c.dog(0, &["vdi", "list", "-r", "cvdi"], None).unwrap(),
        "list",
    )
    .stdout_str();
    assert!(list.contains(" 2:1 "), "{list}");
    // QEMU's old driver: CREATE_AND_WRITE_OBJ with the VDI's copies and policy.
    let oid = vid.data_oid(0);
    let data = pattern(9, 0, 1 << 20);
    let mut w = sd_testkit::req::create_and_write_obj(oid, 512, u32::try_from(data.len()).unwrap());
    let mut o = w.obj();
    o.copies = 3;
    o.copy_policy = 0x11;
    w = w.with_obj(o);
    conn.call_ok(&w, &data).unwrap();
    let r = conn
        .call_ok(&sd_testkit::req::read_obj(oid, 512, 1 << 20), &[])
        .unwrap();
    assert_same_bytes(&r.payload, &data, "read back");
    let holders: usize = (0..3)
        .filter(|i| c.strips_on_disk(*i).unwrap().iter().any(|(o, _)| *o == oid))
        .count();
    assert_eq!(holders, 3, "one strip per node");
    assert!(
        (0..3).all(|i| !c.object_path(i, oid).exists()),
        "no whole copy"
    );
}

/// Overwrites 64 bytes of strip `index` of `oid` on node `i` with different bytes.
fn corrupt_strip(c: &Cluster, i: usize, oid: Oid, index: u8, at: usize) {
    use std::os::unix::fs::FileExt;
    let old = c.read_strip(i, oid, index).unwrap();
    let bad: Vec<u8> = old[at..at + 64].iter().map(|b| !b).collect();
    let path = c.dir(i).join("obj").join(format!("{oid}_{index}"));
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&bad, at as u64).unwrap();
    f.sync_all().unwrap();
}

/// `dog vdi check` on a 4:2 VDI: a strip removed from a node is reported by `-e` and
/// rebuilt, a strip with flipped bytes is found (two parity strips say which) and
/// rewritten; afterwards the strips on disk decode to the data and carry its parity.
/// On 2:1 a wrong strip cannot be told from the others: reported, nothing changed.
#[test]
fn ec_vdi_check_finds_and_repairs_strips() {
    let c = Cluster::start(6).unwrap();
    ok(
        c.dog(0, &["cluster", "format", "-c", "3"], None).unwrap(),
        "format",
    );
    let ec = Ec::new(4, 2).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "-c", "4:2", "v", "16M"], None)
            .unwrap(),
        "create",
    );
    let mut expect = vec![0u8; 12 << 20];
    write(&c, 0, "v", &mut expect, 0, &pattern(11, 0, 12 << 20));
    let oids = data_oids("v", 3);
    let all: Vec<usize> = (0..6).collect();
    let out = ok(
        c.dog(1, &["vdi", "check", "v"], None).unwrap(),
        "clean check",
    );
    assert_eq!(out.stdout_str(), "finish check&repair v\n");

    // Object 0 loses strip 2; object 1 gets strip 4 (parity) and object 2 strip 1 (data)
    // corrupted.
    let holder = |oid: Oid, j: usize| c.placement(oid, &all, 6)[j];
    let gone = holder(oids[0], 2);
    std::fs::remove_file(c.dir(gone).join("obj").join(format!("{}_2", oids[0]))).unwrap();
    corrupt_strip(&c, holder(oids[1], 4), oids[1], 4, 1000);
    corrupt_strip(&c, holder(oids[2], 1), oids[2], 1, 5000);

    let out = c.dog(2, &["vdi", "check", "-e", "v"], None).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str(),
        format!(
            "[127.0.0.1:{}] oid {:016x} is missing.\nv lost 1 object(s).\n",
            c.sd_node(gone).nid.port,
            oids[0].get()
        )
    );
    let out = ok(c.dog(3, &["vdi", "check", "v"], None).unwrap(), "check");
    let text = out.stdout_str();
    assert!(
        text.contains(&format!("fixed missing {:x}\n", oids[0].get())),
        "{text}"
    );
    assert!(
        text.contains(&format!("fixed replica {:x}\n", oids[1].get())),
        "{text}"
    );
    assert!(
        text.contains(&format!("fixed replica {:x}\n", oids[2].get())),
        "{text}"
    );
    assert!(text.ends_with("finish check&repair v\n"), "{text}");
    check_strips(&c, &all, &oids, ec, &expect);
    read_back(&c, &[4], "v", &expect);
    let out = ok(
        c.dog(5, &["vdi", "check", "v"], None).unwrap(),
        "check again",
    );
    assert_eq!(out.stdout_str(), "finish check&repair v\n");

    // 2:1: one parity strip cannot say which of three is wrong.
    ok(
        c.dog(0, &["vdi", "create", "-c", "2:1", "w", "8M"], None)
            .unwrap(),
        "create 2:1",
    );
    let mut w = vec![0u8; 4 << 20];
    write(&c, 0, "w", &mut w, 0, &pattern(12, 0, 4 << 20));
    let woid = data_oids("w", 1)[0];
    let h = c.placement(woid, &all, 3)[0];
    corrupt_strip(&c, h, woid, 0, 0);
    let before = c.read_strip(h, woid, 0).unwrap();
    let out = c.dog(0, &["vdi", "check", "w"], None).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr_str()
            .contains(&format!("no majority of {:x}", woid.get())),
        "{}",
        out.stderr_str()
    );
    assert_eq!(c.read_strip(h, woid, 0).unwrap(), before, "nothing changed");
}
