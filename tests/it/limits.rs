//! The daemon's client limits (`--max-connections`, `--max-inflight`, `--max-payload`,
//! `--io-timeout`): each one is enforced, and what stays within it keeps working.

use std::time::{Duration, Instant};

use sd_proto::{MAX_REQUEST_PAYLOAD, SdResult};
use sd_testkit::{RawClient, Sheep, assert_same_bytes, bin_path, pattern, poll_until, req};

use crate::common::{Fixture, OBJ_LEN, VDI_NAME, create_vdi};

#[test]
fn connections_over_the_cap_are_closed_and_the_others_keep_working() {
    let mut fx = Fixture::with_args(&["--max-connections", "4"]);
    // The fixture's own connections may still hold slots for a moment after closing.
    let served_one = || {
        poll_until(Duration::from_secs(10), "a free connection slot", || {
            let Ok(mut c) = fx.sheep.connect() else {
                return Ok(None);
            };
            Ok(c.call(&req::get_node_list(), &[]).ok().map(|_| c))
        })
        .unwrap()
    };
    let mut served: Vec<RawClient> = (0..4).map(|_| served_one()).collect();
    // The fifth is accepted by the kernel and closed by the daemon at once, unanswered.
    let mut extra = fx.connect();
    let _ = extra.send(&req::get_node_list(), &[]);
    extra.expect_closed().unwrap();
    for c in &mut served {
        fx.assert_reads_back(c, 4096, 4096);
    }
    // Closing one frees its slot.
    drop(served.pop());
    served.push(served_one());
    // A slot is released once the daemon sees the close: the health check waits for one.
    drop(served);
    let mut c = served_one();
    fx.assert_healthy_on(&mut c);
}

#[test]
fn payload_over_max_payload_is_invalid_parms_before_it_is_sent() {
    let mut sheep = Sheep::start_temp(&["--max-payload", "64K"]).unwrap();
    sheep.format().unwrap();
    let mut c = sheep.connect().unwrap();
    let vid = create_vdi(&mut c, VDI_NAME, 64 << 20);
    let oid = vid.data_oid(0);
    // At the limit, a write is served.
    let data = pattern(3, 0, 64 << 10);
    c.call_ok(&req::create_and_write_obj(oid, 0, 64 << 10), &data)
        .unwrap();
    let mut r = req::write_obj(oid, 0, (64 << 10) + 1);
    r.id = 99;
    // Only the header: the refusal must not wait for the announced bytes.
    c.send(&r, &[]).unwrap();
    let rsp = c.recv().unwrap();
    assert_eq!((rsp.header.id, rsp.result()), (99, SdResult::InvalidParms));
    // The announced bytes follow and are skipped; the connection stays in step and the
    // object is untouched.
    c.send_bytes(&vec![0xee; (64 << 10) + 1]).unwrap();
    let rsp = c.call_ok(&req::read_obj(oid, 0, 64 << 10), &[]).unwrap();
    assert_same_bytes(&rsp.payload, &data, "object after the refused write");
    // Reads are not payloads: a whole object is still read.
    let rsp = c.call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[]).unwrap();
    assert_eq!(rsp.payload.len(), OBJ_LEN as usize);
    sheep.check_alive().unwrap();
}

#[test]
fn max_payload_above_the_protocol_maximum_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let too_big = (MAX_REQUEST_PAYLOAD + 1).to_string();
    for bad in [too_big.as_str(), "0", "8M"] {
        let out = std::process::Command::new(bin_path("sheep").unwrap())
            .args(["-f", "--max-payload", bad])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "sheep --max-payload {bad} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("protocol maximum"),
            "--max-payload {bad}: {err}"
        );
    }
}

#[test]
fn pipelined_requests_beyond_max_inflight_are_all_answered() {
    let mut fx = Fixture::with_args(&["--max-inflight", "1"]);
    let mut c = fx.connect();
    // Twenty requests in one burst: the daemon reads the next one only after answering
    // the previous, and answers every one.
    let mut burst = Vec::new();
    for i in 0..20u32 {
        let mut r = if i % 2 == 0 {
            req::write_obj(fx.data_oid(), u64::from(i) * 4096, 4096)
        } else {
            req::read_obj(fx.data_oid(), 0, 4096)
        };
        r.id = 1000 + i;
        burst.extend_from_slice(&r.encode());
        if i % 2 == 0 {
            burst.extend_from_slice(&pattern(5, u64::from(i) * 4096, 4096));
        }
    }
    c.send_bytes(&burst).unwrap();
    let mut ids: Vec<u32> = (0..20)
        .map(|_| {
            let rsp = c.recv().unwrap();
            assert_eq!(rsp.result(), SdResult::Success, "request {}", rsp.header.id);
            rsp.header.id
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1000..1020).collect::<Vec<_>>());
    for i in (0..20u64).step_by(2) {
        let at = usize::try_from(i * 4096).unwrap();
        fx.contents[at..at + 4096].copy_from_slice(&pattern(5, i * 4096, 4096));
    }
    fx.assert_reads_back(&mut c, 0, OBJ_LEN);
    fx.assert_healthy();
}

#[test]
fn a_frame_left_unfinished_is_cut_off_after_io_timeout_and_idle_connections_stay() {
    let mut fx = Fixture::with_args(&["--io-timeout", "1"]);
    let mut idle = fx.connect();
    let mut half = fx.connect();
    let started = Instant::now();
    half.send_bytes(&req::get_node_list().encode()[..30])
        .unwrap();
    half.expect_closed().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "half a header was cut off after {took:?}"
    );
    // The idle connection, older than that, is still served.
    idle.call_ok(&req::get_node_list(), &[]).unwrap();
    fx.assert_healthy();
}
