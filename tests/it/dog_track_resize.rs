//! `dog vdi track` against the ring placement of every epoch (and the copies actually on
//! disk), and `dog vdi resize`: growth through one gateway seen by another, shrinking and
//! oversizing refused with Sheepdog's messages, reads and writes past the old end.

use sd_proto::hash::sd_hash_vdi;
use sd_proto::inode::SD_INODE_HEADER_SIZE;
use sd_proto::{Epoch, Oid};
use sd_testkit::{Cluster, DogOutput, SETTLE_TIMEOUT, assert_same_bytes, pattern};

const RULE: &str = "---------------------------------------------------";

fn ok(out: DogOutput, what: &str) -> DogOutput {
    out.check_success(what).unwrap();
    out
}

/// One epoch's section of `vdi track`: the placement of `oid` among `members`.
fn section(c: &Cluster, oid: Oid, epoch: u32, members: &[usize], copies: usize) -> String {
    let mut s = format!("\nobj {oid} locations at epoch {epoch}, copies = {copies}\n{RULE}\n");
    for i in c.placement(oid, members, copies) {
        s.push_str(&format!("127.0.0.1:{}\n", c.sd_node(i).nid.port));
    }
    s
}

#[test]
fn track_prints_the_placement_of_every_epoch() {
    let mut c = Cluster::start(3).unwrap();
    c.format(2).unwrap();
    assert_eq!(c.members_seen_by(0).unwrap().0, Epoch(1));
    ok(
        c.dog(0, &["vdi", "create", "t", "64M"], None).unwrap(),
        "create",
    );
    let data = pattern(7, 0, 4 << 20);
    ok(
        c.dog(0, &["vdi", "write", "t", "0", "4M"], Some(&data))
            .unwrap(),
        "write",
    );
    let vid = sd_hash_vdi(b"t");
    let oid = vid.data_oid(0);

    // Epoch 1: the nodes track names are the ones holding the object.
    let placed1 = c.placement(oid, &[0, 1, 2], 2);
    for i in 0..3 {
        let has = c.objects_on_disk(i).unwrap().contains(&oid);
        assert_eq!(has, placed1.contains(&i), "node {i} holds {oid} at epoch 1");
    }

    c.kill9(2).unwrap();
    assert_eq!(c.wait_members(2).unwrap(), Epoch(2));
    c.wait_settled(2, SETTLE_TIMEOUT).unwrap();

    // Newest epoch first, as Sheepdog 1.0 prints them.
    let out = ok(
        c.dog(0, &["vdi", "track", "-i", "0", "t"], None).unwrap(),
        "track",
    );
    let want = format!(
        "Tracking the object {oid} (the inode vid 0x{:x} idx 0) with 2 nodes\n{}{}",
        vid.get(),
        section(&c, oid, 2, &[0, 1], 2),
        section(&c, oid, 1, &[0, 1, 2], 2)
    );
    assert_eq!(out.stdout_str(), want, "vdi track -i 0");
    for i in c.placement(oid, &[0, 1], 2) {
        assert!(
            c.objects_on_disk(i).unwrap().contains(&oid),
            "node {i} holds {oid} at epoch 2"
        );
    }

    // Without -i: the inode; with -o: any object.
    let inode = vid.inode_oid();
    let out = ok(
        c.dog(1, &["vdi", "track", "t"], None).unwrap(),
        "track inode",
    );
    let want = format!(
        "Tracking the inode object 0x{:x} with 2 nodes\n{}{}",
        vid.get(),
        section(&c, inode, 2, &[0, 1], 2),
        section(&c, inode, 1, &[0, 1, 2], 2)
    );
    assert_eq!(out.stdout_str(), want, "vdi track");
    let other = vid.data_oid(9);
    let hex = format!("{:x}", other.get());
    let out = ok(
        c.dog(0, &["vdi", "track", "-o", &hex, "t"], None).unwrap(),
        "track -o",
    );
    let first = out
        .stdout_str()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        first,
        format!(
            "Tracking the object {other} (the inode vid 0x{:x}) with 2 nodes",
            vid.get()
        )
    );

    // Refusals.
    let out = c
        .dog(0, &["vdi", "track", "-i", "4294967296", "t"], None)
        .unwrap();
    assert_eq!(
        (out.code(), out.stdout_str()),
        (Some(1), "The offset is too large!\n".to_string())
    );
    let out = c.dog(0, &["vdi", "track", "nosuch"], None).unwrap();
    assert_eq!(
        (out.code(), out.stderr_str()),
        (
            Some(1),
            "Failed to open VDI nosuch (snapshot id: 0 snapshot tag: ): No VDI found\nFATAL: no inode objects\n"
                .to_string()
        )
    );
}

#[test]
fn resize_grows_through_any_gateway_and_refuses_to_shrink() {
    let mut c = Cluster::start(2).unwrap();
    c.format(2).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "r", "8M"], None).unwrap(),
        "create",
    );
    let a = pattern(0xa, 0, 8 << 20);
    let out = ok(
        c.dog(0, &["vdi", "write", "r"], Some(&a)).unwrap(),
        "write 8M",
    );
    assert!(out.stderr.is_empty(), "a piped write draws no progress");
    let vid = sd_hash_vdi(b"r");
    let before = c.read_object(0, vid.inode_oid()).unwrap();

    // Refused: shrinking (with the usage text, exit 64) and more than 4 TiB.
    let out = c.dog(1, &["vdi", "resize", "r", "4M"], None).unwrap();
    assert_eq!(out.code(), Some(64));
    assert_eq!(out.stderr_str(), "Shrinking VDIs is not implemented\n");
    assert!(
        out.stdout_str().starts_with(
            "Usage: dog vdi resize [-a address] [-p port] [-h] [-T] <vdiname> <new size>\n"
        ),
        "{:?}",
        out.stdout_str()
    );
    let out = c.dog(1, &["vdi", "resize", "r", "5T"], None).unwrap();
    assert_eq!(out.code(), Some(64));
    assert_eq!(
        out.stderr_str(),
        "New VDI size is too large. This volume's max size is 4398046511104\n"
    );
    let out = c.dog(1, &["vdi", "resize", "nosuch", "1G"], None).unwrap();
    assert_eq!(out.code(), Some(1));

    // Grown through node 1: only vdi_size changed in the inode header, on both replicas.
    let out = ok(
        c.dog(1, &["vdi", "resize", "r", "20M"], None).unwrap(),
        "resize",
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let mut want = before[..SD_INODE_HEADER_SIZE].to_vec();
    want[536..544].copy_from_slice(&(20u64 << 20).to_le_bytes());
    for i in 0..2 {
        let after = c.read_object(i, vid.inode_oid()).unwrap();
        assert_eq!(&after[..SD_INODE_HEADER_SIZE], &want[..], "node {i} header");
        assert_eq!(
            after[SD_INODE_HEADER_SIZE..],
            before[SD_INODE_HEADER_SIZE..]
        );
    }
    let out = ok(c.dog(0, &["vdi", "list", "-r", "r"], None).unwrap(), "list");
    let fields: Vec<String> = out.stdout_str().split(' ').map(str::to_string).collect();
    assert_eq!(
        (fields[1].as_str(), fields[3].as_str(), fields[4].as_str()),
        ("r", "20971520", "8388608"),
        "vdi list -r: {:?}",
        out.stdout_str()
    );

    // Past the old end: write 4M at 12M through node 0, read everything through node 1.
    let b = pattern(0xb, 12 << 20, 4 << 20);
    let out = ok(
        c.dog(0, &["vdi", "write", "r", "12M", "4M"], Some(&b))
            .unwrap(),
        "write past the old end",
    );
    assert!(out.stderr.is_empty());
    let out = ok(c.dog(1, &["vdi", "read", "r"], None).unwrap(), "read all");
    assert!(out.stderr.is_empty(), "a piped read draws no progress");
    let mut expected = a.clone();
    expected.resize(12 << 20, 0);
    expected.extend_from_slice(&b);
    expected.resize(20 << 20, 0);
    assert_same_bytes(&out.stdout, &expected, "vdi read after resize");
    let out = c.dog(1, &["vdi", "read", "r", "21M"], None).unwrap();
    assert_eq!(
        (out.code(), out.stderr_str()),
        (
            Some(1),
            "Read offset is beyond the end of the VDI\n".to_string()
        )
    );
}
