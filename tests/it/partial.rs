//! Client writes to objects a node must recover but does not hold yet go to a partial copy
//! (`DIR/obj/<oid>.partial`) instead of waiting for the object's fetch; recovery then lays
//! them over the fetched copy. The `recovery:pass` delay point holds each node's pass so
//! the writes certainly arrive first.

use sd_proto::{Oid, Vid};
use sd_testkit::{Cluster, SETTLE_TIMEOUT, assert_same_bytes, pattern, random_seed, req};

use crate::common::{OBJ_LEN, OBJ_SIZE, assert_everywhere, create_vdi, wait_recovered};

const OBJECTS: u32 = 8;
/// Objects of the join test: with copies=1 over 3 nodes, the joining node is placed none
/// of them with probability (2/3)^n; 24 makes that 6e-5.
const JOIN_OBJECTS: u32 = 24;

/// A VDI of `n` objects written through node 0; their bytes.
fn written_vdi(c: &Cluster, name: &str, seed: u64, n: u32) -> (Vid, Vec<Vec<u8>>) {
    let mut gw = c.connect(0).unwrap();
    let vid = create_vdi(&mut gw, name, u64::from(n) * OBJ_SIZE);
    let images = (0..n)
        .map(|i| {
            let image = pattern(seed ^ u64::from(i), 0, OBJ_SIZE as usize);
            gw.call_ok(
                &req::create_and_write_obj(vid.data_oid(i), 0, OBJ_LEN),
                &image,
            )
            .unwrap();
            image
        })
        .collect();
    (vid, images)
}

/// Writes `data` at `offset` of `oid` through node 0 and into `image`.
fn write(c: &Cluster, oid: Oid, offset: usize, data: &[u8], image: &mut [u8]) {
    c.connect(0)
        .unwrap()
        .call_ok(&req::write_obj(oid, offset as u64, data.len() as u32), data)
        .unwrap();
    image[offset..offset + data.len()].copy_from_slice(data);
}

/// Waits until each of `nodes` reports its recovery under way with objects to recover
/// (`dog node recovery -r`: id, host:port, vnodes, zone, done, total), so a write reaching
/// one of its objects finds it awaiting recovery.
fn wait_recovering(c: &mut Cluster, nodes: &[usize]) {
    let addrs: Vec<String> = nodes
        .iter()
        .map(|i| c.sheep(*i).addr().to_string())
        .collect();
    c.poll_until(SETTLE_TIMEOUT, "recovery to start", |c| {
        let out = c.dog(nodes[0], &["node", "recovery", "-r"], None)?;
        out.check_success("dog node recovery")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let started = addrs.iter().all(|a| {
            text.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&a.as_str()) && f.get(5).is_some_and(|t| *t != "0")
            })
        });
        Ok(started.then_some(()))
    })
    .unwrap();
}

/// The nodes that hold some of `oids` among `after` but not among `before`.
fn gainers(
    c: &Cluster,
    oids: &[Oid],
    before: &[usize],
    after: &[usize],
    copies: usize,
) -> Vec<usize> {
    let mut g: Vec<usize> = oids
        .iter()
        .flat_map(|oid| {
            let was = c.placement(*oid, before, copies);
            c.placement(*oid, after, copies)
                .into_iter()
                .filter(move |n| !was.contains(n))
        })
        .collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// The partial copies in node `i`'s store.
fn partials(c: &Cluster, i: usize) -> usize {
    std::fs::read_dir(c.dir(i).join("obj"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        })
        .count()
}

/// Every object reads back as `images` from each of its `copies` copies and through every
/// gateway, and no partial copy is left.
fn assert_whole(c: &mut Cluster, vid: Vid, images: &[Vec<u8>], copies: usize) {
    wait_recovered(c);
    let live = c.live();
    for (i, image) in images.iter().enumerate() {
        let oid = vid.data_oid(i as u32);
        if copies == live.len() {
            assert_everywhere(c, oid, image);
            continue;
        }
        for holder in c.placement(oid, &live, copies) {
            let copy = c.read_object(holder, oid).unwrap();
            assert_same_bytes(&copy, image, &format!("node {holder}'s copy of object {i}"));
        }
        for gw in &live {
            let rsp = c
                .connect(*gw)
                .unwrap()
                .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
                .unwrap();
            assert_same_bytes(
                &rsp.payload,
                image,
                &format!("object {i} through node {gw}"),
            );
        }
    }
    c.poll_until(SETTLE_TIMEOUT, "partial copies to be gone", |c| {
        Ok(c.live().iter().all(|i| partials(c, *i) == 0).then_some(()))
    })
    .unwrap();
}

/// 4 nodes, copies=3: one dies; before the survivors' recovery reaches the objects it held,
/// a client writes to every object (aligned writes, and one unaligned write that makes its
/// object be recovered first). Every copy then holds every write.
#[test]
fn writes_before_recovery_reaches_an_object_land_in_its_copy() {
    let mut c = Cluster::start(4).unwrap();
    c.format(3).unwrap();
    for i in 0..3 {
        c.kill9(i).unwrap();
        c.set_env(i, "SHEEP_DELAY_AT", Some("recovery:pass:3000"));
        c.restart(i).unwrap();
        c.wait_members(4).unwrap();
    }
    let seed = random_seed();
    let (vid, mut images) = written_vdi(&c, "partial", seed, OBJECTS);
    wait_recovered(&mut c);

    let oids: Vec<Oid> = (0..OBJECTS).map(|i| vid.data_oid(i)).collect();
    let gaining = gainers(&c, &oids, &[0, 1, 2, 3], &[0, 1, 2], 3);
    c.kill9(3).unwrap();
    c.wait_members(3).unwrap();
    wait_recovering(&mut c, &gaining);
    for i in 0..OBJECTS {
        let data = pattern(seed ^ 0xabc ^ u64::from(i), 0, 8192);
        let at = (i as usize) * (64 << 10) + 4096;
        write(&c, vid.data_oid(i), at, &data, &mut images[i as usize]);
    }
    let unaligned = pattern(seed ^ 0xdef, 0, 512);
    write(&c, vid.data_oid(0), 100_000, &unaligned, &mut images[0]);
    let kept: usize = c.live().iter().map(|i| partials(&c, *i)).sum();
    eprintln!("partial copies before recovery: {kept}");
    assert!(kept > 0, "no write went to a partial copy");

    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    assert_whole(&mut c, vid, &images, 3);
}

/// copies=1: a node that joins receives the objects the ring moves to it, and the only
/// replica of each is its partial copy until recovery merges it. SIGKILLed before then,
/// it keeps the partial copies, and after its restart lays them over the older copies
/// the other nodes still hold: no acknowledged write is lost.
#[test]
fn a_partial_copy_kept_across_a_crash_is_merged_over_an_older_copy() {
    let mut c = Cluster::start(3).unwrap();
    c.kill9(2).unwrap();
    c.wait_members(2).unwrap();
    c.format(1).unwrap();
    let seed = random_seed();
    let (vid, mut images) = written_vdi(&c, "joined", seed, JOIN_OBJECTS);
    let oids: Vec<Oid> = (0..JOIN_OBJECTS).map(|i| vid.data_oid(i)).collect();
    assert_eq!(
        gainers(&c, &oids, &[0, 1], &[0, 1, 2], 1),
        vec![2],
        "the joining node must be placed some objects"
    );

    c.set_env(2, "SHEEP_DELAY_AT", Some("recovery:pass:60000"));
    c.restart(2).unwrap();
    c.wait_members(3).unwrap();
    wait_recovering(&mut c, &[2]);
    for i in 0..JOIN_OBJECTS {
        let data = pattern(seed ^ 0x123 ^ u64::from(i), 0, 4096);
        write(&c, vid.data_oid(i), 8192, &data, &mut images[i as usize]);
    }
    let kept = partials(&c, 2);
    eprintln!("partial copies on the joined node: {kept}");
    assert!(kept > 0, "no object moved to the joined node");

    c.kill9(2).unwrap();
    c.set_env(2, "SHEEP_DELAY_AT", None);
    c.restart(2).unwrap();
    c.wait_members(3).unwrap();
    // Settled first: the older copies stay on nodes 0 and 1 until every node recovered.
    c.wait_settled(1, SETTLE_TIMEOUT).unwrap();
    assert_whole(&mut c, vid, &images, 1);
}
