//! Admission before the cluster is formatted (spec §5 rule 4): only "force" operations are
//! served; everything else is answered WAIT_FOR_FORMAT, and formatting lifts the gate.

use std::collections::BTreeSet;

use sd_proto::cluster::{EPOCH_LOG_SIZE, SD_VDI_BITMAP_SIZE};
use sd_proto::node::{SD_NODE_SIZE, SdNode};
use sd_proto::{Epoch, Opcode, RequestHeader, SdResult, Vid};
use sd_testkit::{Sheep, dir_names, req};

use crate::common::{assert_dir_clean, stored_objects};

#[test]
fn requests_before_format_wait_for_format() {
    let mut sheep = Sheep::start_temp(&[]).unwrap();
    let mut c = sheep.connect().unwrap();
    let vid = Vid::new(0x7c2b25).unwrap();

    // Non-force operations.
    let mut stat_sheep = RequestHeader::new(Opcode::StatSheep);
    stat_sheep.data_length = 0;
    let refused: [(&str, RequestHeader, Vec<u8>); 5] = [
        ("READ_OBJ", req::read_obj(vid.data_oid(0), 0, 4096), vec![]),
        (
            "CREATE_AND_WRITE_OBJ",
            req::create_and_write_obj(vid.data_oid(0), 0, 16),
            vec![1; 16],
        ),
        ("NEW_VDI", req::new_vdi(1 << 30), req::name_field("test")),
        ("GET_VDI_INFO", req::get_vdi_info(), req::name_field("test")),
        ("STAT_SHEEP", stat_sheep, vec![]),
    ];
    for (what, r, payload) in &refused {
        let rsp = c.call(r, payload).unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::WaitForFormat,
            "{what} before format"
        );
        assert!(rsp.payload.is_empty(), "{what} returned data");
    }

    // Force operations are served.
    let rsp = c.call(&req::get_node_list(), &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::Success, "GET_NODE_LIST");
    assert_eq!(rsp.header.node().nr_nodes, 1);
    assert_eq!(rsp.payload.len(), SD_NODE_SIZE);
    let me = SdNode::decode(&rsp.payload).unwrap();
    assert_eq!(
        me.nid.socket_addr(),
        sheep.addr(),
        "the node list names this daemon"
    );

    // STAT_CLUSTER answers with the cluster status as its result and no epoch yet.
    let rsp = c.call(&req::stat_cluster(0, 4), &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::WaitForFormat, "STAT_CLUSTER status");
    assert_eq!(rsp.header.epoch, Epoch(0));
    assert!(rsp.payload.is_empty(), "no epoch records before format");

    let rsp = c.call(&req::read_vdis(), &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::Success, "READ_VDIS");
    assert_eq!(rsp.payload.len(), SD_VDI_BITMAP_SIZE);
    assert!(rsp.payload.iter().all(|b| *b == 0), "no VDI before format");

    assert!(
        stored_objects(&sheep).is_empty(),
        "nothing stored before format"
    );
    sheep.check_alive().unwrap();
    assert_dir_clean(&sheep);

    // Formatting opens the gate.
    sheep.format().unwrap();
    let rsp = c.call(&req::stat_cluster(0, 4), &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::Success, "STAT_CLUSTER after format");
    assert_eq!(rsp.header.epoch, Epoch(1));
    assert_eq!(rsp.payload.len(), EPOCH_LOG_SIZE, "one epoch record");
    let rsp = c
        .call(&req::read_obj(vid.data_oid(0), 0, 4096), &[])
        .unwrap();
    assert_eq!(rsp.result(), SdResult::NoObj, "READ_OBJ after format");
    assert_eq!(rsp.header.epoch, Epoch(1));

    sheep.check_alive().unwrap();
    assert_dir_clean(&sheep);
    let names = dir_names(sheep.dir()).unwrap();
    let expected: BTreeSet<String> = ["config", "epoch", "lock", "obj", "sheep.log"]
        .map(String::from)
        .into();
    assert_eq!(names, expected, "DIR after format");
}
