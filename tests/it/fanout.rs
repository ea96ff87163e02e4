//! A gateway SIGKILLed in the middle of a write's fan-out (the `fanout:one_replica` crash
//! point: the write reaches one replica, then the gateway dies) leaves copies that differ;
//! once the cluster is quiet they are identical again, holding the old bytes or the new
//! ones as a whole, and every gateway reads the same.

use sd_proto::{SdResult, VdiArgs};
use sd_testkit::{Cluster, SETTLE_TIMEOUT, assert_same_bytes, pattern, random_seed, req};

use crate::common::{OBJ_LEN, OBJ_SIZE};

/// Writes one object through a gateway that is not among its `copies` replicas (of 4
/// nodes) and dies after the first replica applied the write. Every copy must end up
/// with the majority's bytes (old) with 3 copies, the first replica's (new) with 2.
fn gateway_dies_mid_fan_out(copies: usize) {
    let mut c = Cluster::start(4).unwrap();
    c.format(3).unwrap();
    let mut h = req::new_vdi(8 << 20);
    h = h.with_vdi(VdiArgs {
        vdi_size: 8 << 20,
        copies: u8::try_from(copies).unwrap(),
        ..VdiArgs::default()
    });
    let vid = c
        .connect(0)
        .unwrap()
        .call_ok(&h, &req::name_field(&format!("fanout{copies}")))
        .unwrap()
        .header
        .vdi()
        .vid()
        .unwrap();
    let oid = vid.data_oid(1);
    let seed = random_seed();
    let old = pattern(seed, 0, OBJ_SIZE as usize);
    c.connect(0)
        .unwrap()
        .call_ok(&req::create_and_write_obj(oid, 0, OBJ_LEN), &old)
        .unwrap();

    let all = [0, 1, 2, 3];
    let replicas = c.placement(oid, &all, copies);
    let gw = *all.iter().find(|i| !replicas.contains(i)).unwrap();
    c.kill9(gw).unwrap();
    c.set_env(gw, "SHEEP_CRASH_AT", Some("fanout:one_replica"));
    c.restart(gw).unwrap();
    c.wait_settled(copies, SETTLE_TIMEOUT).unwrap();

    // 64 KiB of new bytes at 1 MiB: the first replica applies them, then the gateway dies.
    let new_part = pattern(seed ^ 0x5a5a, 1 << 20, 64 << 10);
    let mut new = old.clone();
    new[1 << 20..(1 << 20) + (64 << 10)].copy_from_slice(&new_part);
    let answer = c
        .connect(gw)
        .unwrap()
        .call(&req::write_obj(oid, 1 << 20, 64 << 10), &new_part);
    assert!(
        !answer
            .as_ref()
            .is_ok_and(|r| r.result() == SdResult::Success),
        "the write succeeded through a gateway that should have died: {:?}",
        answer.map(|r| r.result())
    );
    c.wait_exit(gw, SETTLE_TIMEOUT).unwrap();
    let seen: Vec<bool> = replicas
        .iter()
        .map(|i| c.read_object(*i, oid).unwrap() == new)
        .collect();
    eprintln!(
        "copies {copies}: replicas {replicas:?} hold the new bytes: {seen:?} (gateway {gw} died)"
    );

    let want = if copies >= 3 { &old } else { &new };
    let t = std::time::Instant::now();
    c.poll_until(SETTLE_TIMEOUT, "the copies to be made identical", |c| {
        let same = replicas
            .iter()
            .all(|i| c.read_object(*i, oid).is_ok_and(|d| d == *want));
        Ok(same.then_some(()))
    })
    .unwrap();
    eprintln!(
        "copies identical {:.2?} after the gateway's death",
        t.elapsed()
    );
    // A replica that received writes from the gateway noticed it leave and settled the
    // object (the one that applied the write, or another the gateway had written before).
    let log = |i: usize| std::fs::read_to_string(c.dir(i).join("sheep.log")).unwrap_or_default();
    sd_testkit::poll_until(SETTLE_TIMEOUT, "the repair to be logged", || {
        Ok(replicas
            .iter()
            .any(|i| log(*i).contains("copies left different by a failed write made identical"))
            .then_some(()))
    })
    .unwrap();
    c.check_replicas_identical().unwrap();
    for i in c.live() {
        let rsp = c
            .connect(i)
            .unwrap()
            .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
            .unwrap();
        assert_same_bytes(&rsp.payload, want, &format!("{oid} through node {i}"));
    }
}

#[test]
fn a_gateway_dying_mid_fan_out_leaves_the_majority_copy_everywhere() {
    gateway_dies_mid_fan_out(3);
}

#[test]
fn a_gateway_dying_mid_fan_out_leaves_one_copy_everywhere_without_a_majority() {
    gateway_dies_mid_fan_out(2);
}
