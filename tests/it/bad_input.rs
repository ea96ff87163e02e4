//! One test per bad input sent on a raw socket. Each asserts the exact result code (or, for
//! broken frames, that the connection closes), that a following valid request still gets a
//! correct answer, and finally [`Fixture::assert_healthy`]: the daemon runs, the fixture
//! object is intact and nothing was created outside the expected store files.

use sd_proto::inode::SD_MAX_VDI_LEN;
use sd_proto::{MAX_REQUEST_PAYLOAD, Opcode, RequestHeader, SD_SHEEP_PROTO_VER, SdResult, Vid};
use sd_testkit::req;

use crate::common::{Fixture, OBJ_LEN, OBJ_SIZE, VDI_NAME, create_vdi};

/// Bytes that must never reach the fixture object (it holds a pseudo-random pattern).
const POISON: [u8; 16] = [0xEE; 16];

/// A WRITE_OBJ of [`POISON`] over the start of the fixture object: what a server would apply
/// if it mistook payload or a half-sent frame for a request.
fn poison_frame(fx: &Fixture) -> Vec<u8> {
    let mut h = req::write_obj(fx.data_oid(), 0, POISON.len() as u32);
    h.id = 0xbad0_0000;
    let mut f = h.encode().to_vec();
    f.extend_from_slice(&POISON);
    f
}

#[test]
fn proto_ver_above_2_on_a_client_opcode_is_ver_mismatch() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    for ver in [3u8, SD_SHEEP_PROTO_VER, 0xff] {
        let mut r = req::read_obj(fx.data_oid(), 0, 4096);
        r.proto_ver = ver;
        let rsp = c.call(&r, &[]).unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::VerMismatch,
            "READ_OBJ proto_ver {ver:#x}"
        );
        assert!(rsp.payload.is_empty(), "error replies carry no payload");

        // With the WRITE flag the payload is consumed but never applied.
        let mut w = req::write_obj(fx.data_oid(), 0, POISON.len() as u32);
        w.proto_ver = ver;
        let rsp = c.call(&w, &POISON).unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::VerMismatch,
            "WRITE_OBJ proto_ver {ver:#x}"
        );
    }
    // The same connection is still in step.
    fx.assert_reads_back(&mut c, 0, 4096);
    fx.assert_healthy();
}

#[test]
fn proto_ver_other_than_0x0a_on_an_internal_opcode_is_ver_mismatch() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    for ver in [0u8, 1, 2, 9, 0x0b] {
        let mut r = req::get_node_list();
        r.proto_ver = ver;
        let rsp = c.call(&r, &[]).unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::VerMismatch,
            "GET_NODE_LIST proto_ver {ver:#x}"
        );
        assert!(rsp.payload.is_empty());
    }
    let rsp = c.call(&req::get_node_list(), &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::Success);
    assert_eq!(rsp.header.node().nr_nodes, 1);
    fx.assert_healthy();
}

#[test]
fn client_proto_versions_0_1_and_2_are_accepted() {
    // QEMU's driver sends 0x01; dog sends 0x02 (spec §5).
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    for ver in [0u8, 1, 2] {
        let mut r = req::read_obj(fx.data_oid(), 8192, 4096);
        r.proto_ver = ver;
        let rsp = c.call(&r, &[]).unwrap();
        assert_eq!(rsp.result(), SdResult::Success, "READ_OBJ proto_ver {ver}");
        sd_testkit::assert_same_bytes(
            &rsp.payload,
            &sd_testkit::pattern(crate::common::SEED, 8192, 4096),
            "READ_OBJ payload",
        );
    }
    fx.assert_healthy();
}

#[test]
fn unknown_opcode_is_invalid_parms() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    // Never defined, defined without a handler in 1.0, and obsolete.
    for op in [0x00u8, 0x07, 0x10, 0x7f, 0x80, 0x91, 0xad, 0xb6, 0xff] {
        let mut r = RequestHeader::new(Opcode::from_u8(op));
        r.data_length = 64;
        let rsp = c.call(&r, &[]).unwrap();
        assert_eq!(rsp.result(), SdResult::InvalidParms, "opcode {op:#04x}");
        assert!(rsp.payload.is_empty());
    }
    // With a payload: consumed according to the WRITE flag, so the stream stays in step
    // even though the opcode means nothing.
    let mut r = RequestHeader::new(Opcode::from_u8(0x07));
    r.flags = sd_proto::Flags::WRITE;
    r.data_length = 48 + POISON.len() as u32;
    let rsp = c.call(&r, &poison_frame(&fx)).unwrap();
    assert_eq!(rsp.result(), SdResult::InvalidParms);
    // The version is checked before the opcode (spec §5 admission order).
    let mut r = RequestHeader::new(Opcode::from_u8(0xff));
    r.proto_ver = 2;
    assert_eq!(c.call(&r, &[]).unwrap().result(), SdResult::VerMismatch);

    fx.assert_reads_back(&mut c, 0, 4096);
    fx.assert_healthy();
}

#[test]
fn oversized_payload_is_refused_before_it_is_sent() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    let mut r = req::write_obj(fx.data_oid(), 0, u32::MAX);
    r.id = 77;
    // Only the header and a few bytes: the answer must not wait for the other 4 GiB.
    c.send(&r, &POISON).unwrap();
    let rsp = c.recv().expect("the refusal arrives without the payload");
    assert_eq!(rsp.header.id, 77);
    assert_eq!(rsp.header.opcode, Opcode::WriteObj);
    assert_eq!(rsp.result(), SdResult::InvalidParms);
    assert!(rsp.payload.is_empty());
    // Other connections are served while this one still owes 4 GiB.
    let mut other = fx.connect();
    fx.assert_reads_back(&mut other, 0, 4096);
    drop(c);
    fx.assert_healthy();
}

#[test]
fn oversized_payload_is_discarded_on_the_same_connection() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    let len = MAX_REQUEST_PAYLOAD + 1;
    let mut r = req::write_obj(fx.data_oid(), 0, u32::try_from(len).unwrap());
    r.id = 78;
    c.send(&r, &[]).unwrap();
    let rsp = c.recv().expect("the refusal arrives before the payload");
    assert_eq!(rsp.header.id, 78);
    assert_eq!(rsp.result(), SdResult::InvalidParms);
    assert!(rsp.payload.is_empty());

    // The announced bytes follow. They look like WRITE_OBJ requests over the fixture object;
    // the server must skip them, not parse them.
    let frame = poison_frame(&fx);
    let payload: Vec<u8> = frame.iter().copied().cycle().take(len).collect();
    c.send_bytes(&payload).unwrap();

    // The next answer on this connection is for the next request (call() checks the id).
    fx.assert_reads_back(&mut c, 0, OBJ_LEN);
    fx.assert_healthy();
}

#[test]
fn offset_or_length_past_the_object_end_is_invalid_parms() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    let oid = fx.data_oid();
    let ranges: [(u64, u32); 7] = [
        (OBJ_SIZE - 10, 20),
        (OBJ_SIZE, 1),
        (OBJ_SIZE + 4096, 16),
        (0, OBJ_LEN + 1),
        (1 << 40, 16),
        (u64::MAX - 5, 16),
        (u64::MAX, 1),
    ];
    for (offset, len) in ranges {
        let rsp = c.call(&req::read_obj(oid, offset, len), &[]).unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::InvalidParms,
            "READ_OBJ {offset}+{len}"
        );
        assert!(
            rsp.payload.is_empty(),
            "READ_OBJ {offset}+{len} returned data"
        );
    }
    for (offset, len) in ranges.into_iter().filter(|(_, l)| *l <= 20) {
        let data = vec![0xEE; len as usize];
        let rsp = c.call(&req::write_obj(oid, offset, len), &data).unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::InvalidParms,
            "WRITE_OBJ {offset}+{len}"
        );
        // A new object must not be created when its first write does not fit.
        let new = fx.vid.data_oid(1);
        let rsp = c
            .call(&req::create_and_write_obj(new, offset, len), &data)
            .unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::InvalidParms,
            "CREATE_AND_WRITE_OBJ {offset}+{len}"
        );
    }
    fx.assert_reads_back(&mut c, OBJ_SIZE - 4096, 4096);
    // assert_healthy also checks that data object 1 does not exist and object 0 is intact.
    fx.assert_healthy();
}

#[test]
fn missing_object_is_no_obj() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    let missing = fx.vid.data_oid(5);
    let rsp = c.call(&req::read_obj(missing, 0, 4096), &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::NoObj, "READ_OBJ");
    assert!(rsp.payload.is_empty());
    let rsp = c.call(&req::write_obj(missing, 0, 16), &POISON).unwrap();
    assert_eq!(rsp.result(), SdResult::NoObj, "WRITE_OBJ must not create");
    let rsp = c.call(&req::remove_obj(missing), &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::NoObj, "REMOVE_OBJ");
    fx.assert_reads_back(&mut c, 0, 4096);
    fx.assert_healthy();
}

#[test]
fn unknown_vdi_name_is_no_vdi() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    let rsp = c
        .call(&req::get_vdi_info(), &req::name_field("no-such-vdi"))
        .unwrap();
    assert_eq!(rsp.result(), SdResult::NoVdi, "GET_VDI_INFO name[256]");
    // name[256] + tag[256], as dog sends it.
    let mut r = req::get_vdi_info();
    r.data_length = 512;
    let mut payload = req::name_field("no-such-vdi");
    payload.extend(req::name_field(""));
    assert_eq!(
        c.call(&r, &payload).unwrap().result(),
        SdResult::NoVdi,
        "GET_VDI_INFO name+tag"
    );
    let rsp = c
        .call(&req::del_vdi(), &req::name_field("no-such-vdi"))
        .unwrap();
    assert_eq!(rsp.result(), SdResult::NoVdi, "DEL_VDI");

    let rsp = c
        .call_ok(&req::get_vdi_info(), &req::name_field(VDI_NAME))
        .unwrap();
    assert_eq!(rsp.header.vdi().vid(), Some(fx.vid));
    fx.assert_healthy();
}

#[test]
fn creating_a_data_object_of_an_unknown_vdi_is_no_vdi() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    let stranger = Vid::new(0x12_3456).unwrap();
    for oid in [stranger.data_oid(0), stranger.data_oid(7)] {
        let rsp = c
            .call(&req::create_and_write_obj(oid, 0, 16), &POISON)
            .unwrap();
        assert_eq!(rsp.result(), SdResult::NoVdi, "CREATE_AND_WRITE_OBJ {oid}");
    }
    // Preallocation (no payload) is refused the same way.
    let rsp = c
        .call(&req::create_and_write_obj(stranger.data_oid(1), 0, 0), &[])
        .unwrap();
    assert_eq!(
        rsp.result(),
        SdResult::NoVdi,
        "preallocating CREATE_AND_WRITE_OBJ"
    );
    fx.assert_reads_back(&mut c, 0, 4096);
    // No object file appeared for the stranger.
    fx.assert_healthy();
}

#[test]
fn vdi_name_of_256_bytes_is_invalid_parms() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    let long = vec![b'n'; SD_MAX_VDI_LEN];
    let rsp = c.call(&req::new_vdi(4 << 20), &long).unwrap();
    assert_eq!(rsp.result(), SdResult::InvalidParms, "NEW_VDI");
    let rsp = c.call(&req::get_vdi_info(), &long).unwrap();
    assert_eq!(rsp.result(), SdResult::InvalidParms, "GET_VDI_INFO");
    let rsp = c.call(&req::del_vdi(), &long).unwrap();
    assert_eq!(rsp.result(), SdResult::InvalidParms, "DEL_VDI");
    // A 256-byte name followed by a tag field.
    let mut r = req::get_vdi_info();
    r.data_length = 512;
    let mut payload = long.clone();
    payload.extend(req::name_field(""));
    assert_eq!(
        c.call(&r, &payload).unwrap().result(),
        SdResult::InvalidParms,
        "name+tag"
    );
    // The empty name is no name either.
    let rsp = c
        .call(&req::new_vdi(4 << 20), &req::name_field(""))
        .unwrap();
    assert_eq!(
        rsp.result(),
        SdResult::InvalidParms,
        "NEW_VDI of an empty name"
    );

    // 255 bytes and the NUL fit.
    let name = "m".repeat(SD_MAX_VDI_LEN - 1);
    let vid = create_vdi(&mut c, &name, 4 << 20);
    let rsp = c
        .call_ok(&req::get_vdi_info(), &req::name_field(&name))
        .unwrap();
    assert_eq!(rsp.header.vdi().vid(), Some(vid));
    fx.objects.insert(vid.inode_oid());
    fx.assert_healthy();
}

#[test]
fn new_vdi_payload_other_than_256_bytes_is_invalid_parms() {
    let mut fx = Fixture::new();
    let mut c = fx.connect();
    for len in [0usize, 1, 255, 257, 512] {
        let mut r = req::new_vdi(4 << 20);
        r.data_length = u32::try_from(len).unwrap();
        let mut payload = b"short".to_vec();
        payload.resize(len, 0);
        let rsp = c.call(&r, &payload).unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::InvalidParms,
            "NEW_VDI data_length {len}"
        );
    }
    // data_length 256 without the WRITE flag: no payload follows.
    let mut r = req::new_vdi(4 << 20);
    r.flags = sd_proto::Flags::default();
    assert_eq!(
        c.call(&r, &[]).unwrap().result(),
        SdResult::InvalidParms,
        "without WRITE"
    );

    let rsp = c
        .call(&req::get_vdi_info(), &req::name_field("short"))
        .unwrap();
    assert_eq!(rsp.result(), SdResult::NoVdi, "nothing was created");
    fx.assert_healthy();
}

#[test]
fn truncated_frame_then_close() {
    let mut fx = Fixture::new();
    let mut bystander = fx.connect();
    let mut c = fx.connect();
    let head = req::read_obj(fx.data_oid(), 0, 4096).encode();
    c.send_bytes(&head[..20]).unwrap();
    c.shutdown_write().unwrap();
    // The server gives up on the half frame and closes without answering.
    c.expect_closed().unwrap();
    fx.assert_reads_back(&mut bystander, 0, 4096);

    // The same with the socket simply dropped.
    let mut c = fx.connect();
    c.send_bytes(&head[..20]).unwrap();
    drop(c);
    fx.assert_reads_back(&mut bystander, 4096, 4096);
    fx.assert_healthy();
}

#[test]
fn client_disconnecting_mid_request() {
    let mut fx = Fixture::new();
    let mut bystander = fx.connect();
    let garbage = [0xEEu8; 100];

    // WRITE_OBJ over the fixture object: 100 of 4096 payload bytes, then gone.
    let mut c = fx.connect();
    c.send(&req::write_obj(fx.data_oid(), 0, 4096), &garbage)
        .unwrap();
    drop(c);
    // CREATE_AND_WRITE_OBJ of a new object: must not leave a (partial) object behind.
    let mut c = fx.connect();
    let new = fx.vid.data_oid(3);
    c.send(&req::create_and_write_obj(new, 0, 4096), &garbage)
        .unwrap();
    c.shutdown_write().unwrap();
    c.expect_closed().unwrap();

    fx.assert_reads_back(&mut bystander, 0, 4096);
    fx.assert_healthy();
}
