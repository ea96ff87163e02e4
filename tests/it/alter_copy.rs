//! `dog vdi alter-copy` and `dog cluster alter-copy` on real clusters: a VDI's objects move
//! to exactly the nodes the new count places them on (more copies, then fewer), while
//! writes go on and read back through every node; the cluster default changes, shows in
//! `cluster info`, is taken by new VDIs and kept in every node's config across restarts;
//! and the refusals of Sheepdog 1.0 (erasure codes, counts out of range, VDIs sharing
//! objects) with their messages and exit codes.

use std::collections::BTreeSet;
use std::time::Duration;

use sd_proto::cluster::SheepdogConfig;
use sd_proto::hash::sd_hash_vdi;
use sd_proto::header::VdiStateArgs;
use sd_proto::{ClusterArgs, Oid, Opcode, RequestHeader, SdResult, Vid};
use sd_testkit::{Cluster, DogOutput, assert_same_bytes, pattern, random_seed};

/// How long objects may take to reach their new places.
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes written to the test VDI: three 4 MiB objects of a 16 MiB VDI.
const DATA_LEN: usize = 12 << 20;

fn ok(out: DogOutput, what: &str) -> DogOutput {
    out.check_success(what).unwrap();
    out
}

/// The VDI's objects: its inode and data objects 0..3.
fn objects(vid: Vid) -> Vec<Oid> {
    vec![
        vid.inode_oid(),
        vid.data_oid(0),
        vid.data_oid(1),
        vid.data_oid(2),
    ]
}

/// Waits until every one of `oids` is stored on exactly the nodes the ring of all of
/// `c`'s nodes places it on with `copies` replicas, and those copies are byte-identical.
fn wait_placed(c: &mut Cluster, oids: &[Oid], copies: usize) {
    let nodes: Vec<usize> = (0..c.len()).collect();
    let want: Vec<(Oid, BTreeSet<usize>)> = oids
        .iter()
        .map(|o| (*o, c.placement(*o, &nodes, copies).into_iter().collect()))
        .collect();
    for (oid, holders) in &want {
        assert_eq!(holders.len(), copies, "{oid} placed on {holders:?}");
    }
    c.poll_until(
        MOVE_TIMEOUT,
        &format!("{copies} copies of every object"),
        |c| {
            let have = c.actual_placement(&nodes)?;
            let wrong: Vec<String> = want
                .iter()
                .filter(|(o, w)| have.get(o) != Some(w))
                .map(|(o, w)| format!("{o} on {:?}, placed on {w:?}", have.get(o)))
                .collect();
            if wrong.is_empty() {
                Ok(Some(()))
            } else {
                eprintln!("not yet: {}", wrong.join("; "));
                Ok(None)
            }
        },
    )
    .unwrap();
    c.check_replicas_identical().unwrap();
}

/// Reads the whole written range of `name` through every node.
fn read_everywhere(c: &Cluster, name: &str, expect: &[u8], what: &str) {
    for i in 0..c.len() {
        let out = ok(
            c.dog(i, &["vdi", "read", name, "0", "12M"], None).unwrap(),
            "vdi read",
        );
        assert_same_bytes(
            &out.stdout,
            expect,
            &format!("{what}, read through node {i}"),
        );
    }
}

/// Writes `len` bytes of generation `seed` at `offset` of `name` through node `i`, and
/// lays them over `expect`.
fn write_at(
    c: &Cluster,
    i: usize,
    name: &str,
    offset: usize,
    len: usize,
    seed: u64,
    expect: &mut [u8],
) {
    let data = pattern(seed, offset as u64, len);
    let (o, l) = (offset.to_string(), len.to_string());
    ok(
        c.dog(i, &["vdi", "write", name, &o, &l], Some(&data))
            .unwrap(),
        "vdi write",
    );
    expect[offset..offset + len].copy_from_slice(&data);
}

/// The copies `vdi list -r` prints for `name` (its inode header's count).
fn listed_copies(c: &Cluster, i: usize, name: &str) -> String {
    let out = ok(
        c.dog(i, &["vdi", "list", "-r", name], None).unwrap(),
        "vdi list",
    );
    let row = out.stdout_str();
    let fields: Vec<&str> = row.trim_end().split(' ').collect();
    fields.get(8).map(|s| (*s).to_string()).unwrap_or_default()
}

#[test]
fn a_vdi_moves_to_three_copies_and_back_to_one_while_written() {
    let seed = random_seed();
    let mut c = Cluster::start(4).unwrap();
    c.format(2).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "t", "16M"], None).unwrap(),
        "create",
    );
    let vid = sd_hash_vdi(b"t");
    let oids = objects(vid);
    let mut expect = vec![0u8; DATA_LEN];
    write_at(&c, 0, "t", 0, DATA_LEN, seed, &mut expect);
    wait_placed(&mut c, &oids, 2);

    // More copies: the caution is asked, then the VDI changes and its objects move.
    let out = ok(
        c.dog(0, &["vdi", "alter-copy", "-c", "3", "t"], Some(b"yes\n"))
            .unwrap(),
        "alter-copy -c 3",
    );
    assert!(
        out.stdout_str()
            .contains("Caution! Changing VDI's redundancy level will affect\n"),
        "{}",
        out.stdout_str()
    );
    assert_eq!(
        out.stderr_str(),
        "t's redundancy level is set to 3, the old one was 2.\n"
    );
    // Reads and writes go on meanwhile, through any node.
    read_everywhere(&c, "t", &expect, "right after -c 3");
    write_at(&c, 1, "t", 2 << 20, 6 << 20, seed ^ 2, &mut expect);
    write_at(&c, 3, "t", 11 << 20, 4096, seed ^ 3, &mut expect);
    wait_placed(&mut c, &oids, 3);
    read_everywhere(&c, "t", &expect, "3 copies");
    assert_eq!(listed_copies(&c, 2, "t"), "3");
    // Each copy holds the bytes written, before and during the move.
    let nodes: Vec<usize> = (0..4).collect();
    for (k, oid) in oids.iter().enumerate().skip(1) {
        let want = &expect[(k - 1) << 22..k << 22];
        for i in c.placement(*oid, &nodes, 3) {
            assert_same_bytes(
                &c.read_object(i, *oid).unwrap(),
                want,
                &format!("{oid} on node {i}"),
            );
        }
    }

    // Fewer copies (-f: no question): the copies no longer placed go, the bytes stay.
    let out = ok(
        c.dog(2, &["vdi", "alter-copy", "-f", "-c", "1", "t"], None)
            .unwrap(),
        "alter-copy -c 1",
    );
    assert_eq!(
        out.stderr_str(),
        "t's redundancy level is set to 1, the old one was 3.\n"
    );
    assert_eq!(out.stdout_str(), "");
    write_at(&c, 3, "t", 0, 1 << 20, seed ^ 4, &mut expect);
    read_everywhere(&c, "t", &expect, "right after -c 1");
    wait_placed(&mut c, &oids, 1);
    read_everywhere(&c, "t", &expect, "1 copy");
    assert_eq!(listed_copies(&c, 0, "t"), "1");
}

/// Node `i`'s saved cluster config.
fn saved_config(c: &Cluster, i: usize) -> SheepdogConfig {
    let bytes = std::fs::read(c.dir(i).join("config")).unwrap();
    SheepdogConfig::decode(&bytes).unwrap()
}

#[test]
fn the_cluster_default_changes_everywhere_and_survives_restarts() {
    let mut c = Cluster::start(3).unwrap();
    c.format(3).unwrap();
    // Node 2 misses the change: it learns it when it comes back.
    c.kill9(2).unwrap();
    c.wait_members(2).unwrap();
    let out = ok(
        c.dog(0, &["cluster", "alter-copy", "-c", "2"], Some(b"yes\n"))
            .unwrap(),
        "cluster alter-copy",
    );
    assert!(
        out.stdout_str()
            .contains("Caution! Changing cluster's redundancy level will affect\n"),
        "{}",
        out.stdout_str()
    );
    assert_eq!(
        out.stderr_str(),
        "The cluster's redundancy level is set to 2, the old one was 3.\n"
    );
    c.restart(2).unwrap();
    c.wait_members(3).unwrap();
    let shows_two = |c: &Cluster, i: usize| {
        let out = ok(c.dog(i, &["cluster", "info", "-v"], None).unwrap(), "info");
        assert!(
            out.stdout_str()
                .contains("Cluster store: plain with 2 redundancy policy\n"),
            "node {i}: {}",
            out.stdout_str()
        );
        assert_eq!(saved_config(c, i).copies, 2, "node {i}'s config");
    };
    for i in 0..3 {
        shows_two(&c, i);
    }
    // New VDIs without -c get it.
    ok(
        c.dog(1, &["vdi", "create", "n", "8M"], None).unwrap(),
        "create",
    );
    assert_eq!(listed_copies(&c, 2, "n"), "2");
    let data = pattern(7, 0, 4 << 20);
    ok(
        c.dog(2, &["vdi", "write", "n", "0", "4M"], Some(&data))
            .unwrap(),
        "write",
    );
    let vid = sd_hash_vdi(b"n");
    wait_placed(&mut c, &[vid.inode_oid(), vid.data_oid(0)], 2);

    // A restarted sheep keeps it.
    c.kill9(0).unwrap();
    c.restart(0).unwrap();
    c.wait_members(3).unwrap();
    for i in 0..3 {
        shows_two(&c, i);
    }
    let out = c
        .dog(0, &["cluster", "alter-copy", "-c", "2"], None)
        .unwrap();
    assert_eq!(
        (out.code(), out.stderr_str().as_str()),
        (
            Some(1),
            "The cluster's redundancy level is already set to 2, nothing changed.\n"
        )
    );
}

/// `dog ARGS` through node 0: (exit code, stdout, stderr).
fn run(c: &Cluster, args: &[&str], stdin: Option<&[u8]>) -> (Option<i32>, String, String) {
    let out = c.dog(0, args, stdin).unwrap();
    (out.code(), out.stdout_str(), out.stderr_str())
}

#[test]
fn what_cannot_change_is_refused_as_sheepdog_does() {
    let mut c = Cluster::start(3).unwrap();
    c.format(2).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "t", "8M"], None).unwrap(),
        "create",
    );
    ok(
        c.dog(0, &["vdi", "create", "e", "8M", "-c", "2:1"], None)
            .unwrap(),
        "create EC",
    );

    // An erasure code as the new count: refused before anything is asked, with usage.
    for args in [
        &["vdi", "alter-copy", "-c", "2:1", "t"][..],
        &["cluster", "alter-copy", "-c", "4:2"][..],
    ] {
        let (code, out, err) = run(&c, args, None);
        assert_eq!(code, Some(64), "{args:?}");
        assert_eq!(
            err,
            "Changing redundancy level of erasure coded vdi is not supported yet.\n"
        );
        assert!(
            out.starts_with(&format!("Usage: dog {} alter-copy", args[0])),
            "{out}"
        );
    }
    // An erasure-coded VDI.
    let (code, _, err) = run(&c, &["vdi", "alter-copy", "-c", "2", "e"], None);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "e's copy policy is erasure code, changing it is not supported yet.\n"
    );
    // 0 or more than 31 copies.
    for bad in ["0", "32", "x"] {
        let (code, _, err) = run(&c, &["vdi", "alter-copy", "-c", bad, "t"], None);
        assert_eq!(code, Some(1), "-c {bad}");
        assert!(
            err.starts_with(&format!("Invalid parameter {bad}\n")),
            "{err}"
        );
        let (code, _, _) = run(&c, &["cluster", "alter-copy", "-c", bad], None);
        assert_eq!(code, Some(1), "cluster -c {bad}");
    }
    // Unchanged.
    let (code, _, err) = run(&c, &["vdi", "alter-copy", "-c", "2", "t"], None);
    assert_eq!(
        (code, err.as_str()),
        (
            Some(1),
            "t's redundancy level is already set to 2, nothing changed.\n"
        )
    );
    // No answer, or "no": nothing changes, exit 0 (the C `confirm`). More copies than
    // nodes asks first.
    let (code, out, _) = run(&c, &["vdi", "alter-copy", "-c", "3", "t"], Some(b"no\n"));
    assert_eq!(code, Some(0));
    assert!(
        out.ends_with("Are you sure you want to continue? [yes/no]: "),
        "{out}"
    );
    let (code, out, _) = run(&c, &["vdi", "alter-copy", "-c", "4", "t"], None);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "Number of copies (4) is larger than number of nodes (3).\n\
         Are you sure you want to continue? [yes/no]: "
    );
    assert_eq!(listed_copies(&c, 1, "t"), "2");

    // A VDI sharing objects: its snapshot, the working VDI after it, a clone.
    ok(
        c.dog(0, &["vdi", "snapshot", "-s", "s1", "t"], None)
            .unwrap(),
        "snapshot",
    );
    ok(
        c.dog(0, &["vdi", "clone", "-s", "s1", "t", "k"], None)
            .unwrap(),
        "clone",
    );
    for name in ["t", "k"] {
        let (code, _, err) = run(&c, &["vdi", "alter-copy", "-f", "-c", "3", name], None);
        assert_eq!(code, Some(1), "{name}");
        assert_eq!(
            err,
            format!(
                "Only standalone vdi supports changing redundancy level.\n\
                 Please clone {name} with -n (--no-share) option first.\n"
            )
        );
    }
    // ... unless cloned with -n.
    ok(
        c.dog(0, &["vdi", "clone", "-n", "-s", "s1", "t", "free"], None)
            .unwrap(),
        "clone -n",
    );
    ok(
        c.dog(0, &["vdi", "alter-copy", "-f", "-c", "3", "free"], None)
            .unwrap(),
        "alter-copy of a clone -n",
    );
    assert_eq!(listed_copies(&c, 2, "free"), "3");

    // The sheep refuses the same on its own (another client than dog).
    let mut raw = c.connect(1).unwrap();
    let alter = |vid: Vid, copies: u8, policy: u8| {
        RequestHeader::new(Opcode::AlterVdiCopy).with_vdi_state(VdiStateArgs {
            new_vid: vid.get(),
            copies,
            copy_policy: policy,
            block_size_shift: 22,
            ..VdiStateArgs::default()
        })
    };
    let snapshot = sd_hash_vdi(b"t");
    let working = c
        .connect(0)
        .unwrap()
        .call_ok(
            &sd_testkit::req::get_vdi_info(),
            &sd_testkit::req::name_field("t"),
        )
        .map(|r| Vid::new(r.header.vdi().vdi_id).unwrap())
        .unwrap();
    let free = sd_hash_vdi(b"free");
    for (h, want, what) in [
        (
            alter(free, 2, 0x12),
            SdResult::InvalidParms,
            "a copy policy",
        ),
        (alter(free, 0, 0), SdResult::InvalidParms, "0 copies"),
        (alter(free, 32, 0), SdResult::InvalidParms, "32 copies"),
        (alter(snapshot, 3, 0), SdResult::InvalidParms, "a snapshot"),
        (
            alter(working, 3, 0),
            SdResult::InvalidParms,
            "a snapshotted VDI",
        ),
        (
            alter(sd_hash_vdi(b"e"), 3, 0),
            SdResult::InvalidParms,
            "an erasure code",
        ),
        (
            alter(sd_hash_vdi(b"none"), 3, 0),
            SdResult::NoVdi,
            "no such VDI",
        ),
    ] {
        assert_eq!(raw.call(&h, &[]).unwrap().result(), want, "{what}");
    }
    let cluster = |copies, copy_policy| {
        RequestHeader::new(Opcode::AlterClusterCopy).with_cluster(ClusterArgs {
            copies,
            copy_policy,
            ..ClusterArgs::default()
        })
    };
    for (h, what) in [
        (cluster(2, 0x12), "a copy policy"),
        (cluster(0, 0), "0 copies"),
        (cluster(32, 0), "32 copies"),
    ] {
        assert_eq!(
            raw.call(&h, &[]).unwrap().result(),
            SdResult::InvalidParms,
            "{what}"
        );
    }
    assert_eq!(saved_config(&c, 1).copies, 2);
}
