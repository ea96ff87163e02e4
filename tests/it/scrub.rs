//! `sheep --scrub-interval`: copies damaged or removed behind the sheep's back (a flipped
//! byte on disk, a file deleted, even on the replica that scrubs the object) are found by
//! the background scrub and made identical again, without a client reading them.

use std::os::unix::fs::FileExt;

use sd_testkit::{Cluster, SETTLE_TIMEOUT, assert_same_bytes, pattern, random_seed, req};

use crate::common::{OBJ_LEN, OBJ_SIZE, create_vdi, vdi_with_one_object};

#[test]
fn scrub_repairs_a_flipped_copy_and_a_missing_one() {
    let mut c = Cluster::start_with(3, &["--scrub-interval", "1"]).unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "scrub", 2 * OBJ_SIZE);
    let seed = random_seed();
    let (a, b) = (vid.data_oid(0), vid.data_oid(1));
    let image_a = pattern(seed, 0, OBJ_SIZE as usize);
    let image_b = pattern(seed, OBJ_SIZE, OBJ_SIZE as usize);
    let mut client = c.connect(0).unwrap();
    client
        .call_ok(&req::create_and_write_obj(a, 0, OBJ_LEN), &image_a)
        .unwrap();
    client
        .call_ok(&req::create_and_write_obj(b, 0, OBJ_LEN), &image_b)
        .unwrap();
    c.check_replicas_identical().unwrap();

    // The copy of `a` on its last replica gets different bytes; the first replica of `b`
    // (the node that would scrub it) loses its copy.
    let flip = *c.placement(a, &[0, 1, 2], 3).last().unwrap();
    let lose = c.placement(b, &[0, 1, 2], 3)[0];
    let flipped: Vec<u8> = image_a[100_000..104_096].iter().map(|x| !x).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.object_path(flip, a))
        .unwrap()
        .write_all_at(&flipped, 100_000)
        .unwrap();
    std::fs::remove_file(c.object_path(lose, b)).unwrap();
    assert_ne!(c.read_object(flip, a).unwrap(), image_a);

    let t = std::time::Instant::now();
    c.poll_until(SETTLE_TIMEOUT, "the scrub to repair both copies", |c| {
        let a_ok = c.read_object(flip, a).is_ok_and(|d| d == image_a);
        let b_ok = c.read_object(lose, b).is_ok_and(|d| d == image_b);
        Ok((a_ok && b_ok).then_some(()))
    })
    .unwrap();
    eprintln!("scrub repaired two copies in {:.2?}", t.elapsed());
    c.check_replicas_identical().unwrap();
    for i in 0..3 {
        let mut client = c.connect(i).unwrap();
        for (oid, image) in [(a, &image_a), (b, &image_b)] {
            let rsp = client
                .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
                .unwrap();
            assert_same_bytes(&rsp.payload, image, &format!("{oid} through node {i}"));
        }
    }
}

/// REPAIR_REPLICA carrying the hash the asker saw: a copy written since is not replaced
/// (AGAIN), one still as seen is, and GET_HASH reflects each step.
#[test]
fn a_repair_is_refused_when_the_copy_changed_since_it_was_seen() {
    use sd_proto::node::NodeId;
    use sd_proto::{Flags, ForwArgs, ObjArgs, Opcode, RequestHeader, SdResult};

    let mut c = Cluster::start(3).unwrap();
    c.format(3).unwrap();
    let (oid, image) = vdi_with_one_object(&c, "seen");
    let get_hash = |c: &Cluster, i: usize| {
        let h = RequestHeader::new(Opcode::GetHash).with_obj(ObjArgs {
            oid,
            ..ObjArgs::default()
        });
        c.connect(i)
            .unwrap()
            .call_ok(&h, &[])
            .unwrap()
            .header
            .hash()
    };
    let good = get_hash(&c, 0);
    // Node 2's copy drifts; then it is written again after being "seen".
    let path = c.object_path(2, oid);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xAA; 512], 0).unwrap();
    let seen = get_hash(&c, 2);
    assert_ne!(seen, good);
    file.write_all_at(&[0xBB; 512], 0).unwrap();

    let from = NodeId::from_socket(c.sheep(0).addr());
    let repair = |seen: [u8; 20]| {
        let mut h = RequestHeader::new(Opcode::RepairReplica).with_forw(ForwArgs { oid, from });
        h.flags = Flags::WRITE;
        h.data_length = 20;
        c.connect(2).unwrap().call(&h, &seen).unwrap().result()
    };
    assert_eq!(
        repair(seen),
        SdResult::Again,
        "the copy changed since it was seen"
    );
    assert_eq!(&c.read_object(2, oid).unwrap()[..512], &[0xBB; 512][..]);
    let now = get_hash(&c, 2);
    assert_eq!(repair(now), SdResult::Success);
    assert_eq!(get_hash(&c, 2), good);
    assert_same_bytes(&c.read_object(2, oid).unwrap(), &image, "repaired copy");
    c.check_replicas_identical().unwrap();
}
