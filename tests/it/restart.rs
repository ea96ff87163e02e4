//! Power cuts over the raw protocol: what a sheep acknowledged before SIGKILL is there, byte
//! for byte, after it restarts on the same directory and port.

use std::os::unix::process::ExitStatusExt;

use sd_proto::{Epoch, SdResult};
use sd_testkit::{assert_same_bytes, pattern, req};

use crate::common::{Fixture, OBJ_LEN, SEED, VDI_NAME};

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    // A second generation over an unaligned part of the object, and a second object.
    let gen2 = SEED ^ 2;
    let (off, len) = (1_000_003u64, 300_001usize);
    fx.write(&mut c, off, &pattern(gen2, off, len));
    let second = fx.vid.data_oid(9);
    c.call_ok(
        &req::create_and_write_obj(second, 4096, 8192),
        &pattern(gen2, 4096, 8192),
    )
    .unwrap();
    fx.objects.insert(second);
    drop(c);

    let status = fx.sheep.kill9().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "sheep ended by {status}, not SIGKILL"
    );
    fx.sheep.restart().unwrap();

    let mut c = fx.connect();
    fx.assert_reads_back(&mut c, 0, OBJ_LEN);

    // The created object: zeros around the written range, which survives too.
    let rsp = c
        .call_ok(&req::read_obj(second, 0, 4096 + 8192 + 4096), &[])
        .unwrap();
    let mut expected = vec![0u8; 4096];
    expected.extend(pattern(gen2, 4096, 8192));
    expected.extend([0u8; 4096]);
    assert_same_bytes(&rsp.payload, &expected, "object 9 after restart");

    // The VDI and the cluster state came back with it.
    let rsp = c
        .call_ok(&req::get_vdi_info(), &req::name_field(VDI_NAME))
        .unwrap();
    assert_eq!(rsp.header.vdi().vid(), Some(fx.vid));
    let rsp = c.call(&req::stat_cluster(0, 4), &[]).unwrap();
    assert_eq!(
        rsp.result(),
        SdResult::Success,
        "formatted cluster after restart"
    );
    assert_eq!(
        rsp.header.epoch,
        Epoch(2),
        "a restarted node rejoins in a new epoch (it must recover what it missed)"
    );
    fx.assert_healthy();
}
