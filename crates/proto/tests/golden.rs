//! Golden bytes written by hand from the layouts in spec/sheepdog-protocol.md (not produced
//! by our encoder): the encoder must reproduce them and the decoder must read them back.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use bytes::BytesMut;
use sd_proto::cluster::{
    CLUSTER_INFO_SIZE, ClusterInfo, EPOCH_LOG_SIZE, EpochLogRecord, EpochMembers, SD_CONFIG_SIZE,
    SD_FORMAT_VERSION, SD_VDI_BITMAP_SIZE, SheepdogConfig, flags,
};
use sd_proto::codec::encode_request;
use sd_proto::header::VdiStateArgs;
use sd_proto::inode::{
    GenRef, Inode, InodeHeader, SD_ATTR_OBJ_SIZE, SD_INODE_DATA_INDEX_SIZE, SD_INODE_GREF_OFFSET,
    SD_INODE_HEADER_SIZE, SD_INODE_SIZE, data_index_offset,
};
use sd_proto::node::{NodeId, SD_MAX_NODES, SD_NODE_SIZE, SdNode};
use sd_proto::oid_list::OidList;
use sd_proto::peer_copy::{PeerCopy, VERSION_SIZE};
use sd_proto::stat::{
    LOGLEVEL_SIZE, LogLevel, RECOVERY_STATE_SIZE, RecoveryPhase, RecoveryState,
    WRITEBACK_STAT_SIZE, WritebackStat,
};
use sd_proto::store_list::StoreList;
use sd_proto::{
    ClusterArgs, Epoch, Flags, ForwArgs, NodeRsp, ObjArgs, Oid, Opcode, RequestDecoder,
    RequestFrame, RequestHeader, ResponseHeader, SD_REQ_SIZE, SD_RSP_SIZE, SdResult, VdiArgs,
    VdiRsp,
};

/// Writes `v` into `buf` at `off` (the hand-made layouts below are built with this).
fn put(buf: &mut [u8], off: usize, v: &[u8]) {
    buf[off..off + v.len()].copy_from_slice(v);
}

/// The 80-byte `sd_node` for 127.0.0.1:7000, 128 vnodes, default zone, 1 GiB, by hand.
fn node_127_0_0_1_7000() -> [u8; SD_NODE_SIZE] {
    let mut b = [0u8; SD_NODE_SIZE];
    // 0..24 rb_node: zero; 24..36 zero (IPv4-compatible prefix)
    put(&mut b, 36, &[127, 0, 0, 1]);
    put(&mut b, 40, &[0x58, 0x1b]); // port 7000
    put(&mut b, 64, &[0x80, 0x00]); // nr_vnodes 128
    put(&mut b, 68, &[0x7f, 0x00, 0x00, 0x01]); // zone 16 777 343
    put(&mut b, 72, &[0, 0, 0, 0x40, 0, 0, 0, 0]); // space 1 GiB
    b
}

fn node_127_0_0_1_7000_typed() -> SdNode {
    let nid = NodeId::from_socket("127.0.0.1:7000".parse().unwrap());
    SdNode {
        nid,
        io_addr: [0; 16],
        io_port: 0,
        nr_vnodes: 128,
        zone: nid.default_zone(),
        space: 1 << 30,
    }
}

#[test]
fn sizes_are_pinned() {
    assert_eq!(SD_REQ_SIZE, 48);
    assert_eq!(SD_RSP_SIZE, 48);
    assert_eq!(SD_NODE_SIZE, 80);
    assert_eq!(SD_MAX_NODES, 6144);
    assert_eq!(SD_INODE_SIZE, 12_587_576);
    assert_eq!(SD_INODE_HEADER_SIZE, 4664);
    assert_eq!(SD_INODE_DATA_INDEX_SIZE, 4_194_304);
    assert_eq!(SD_INODE_GREF_OFFSET, 4_198_968);
    assert_eq!(SD_ATTR_OBJ_SIZE, 66_320);
    assert_eq!(SD_CONFIG_SIZE, 40);
    assert_eq!(EPOCH_LOG_SIZE, 48);
    assert_eq!(CLUSTER_INFO_SIZE, 491_568);
    assert_eq!(SD_VDI_BITMAP_SIZE, 2_097_152);
    assert_eq!(SD_FORMAT_VERSION, 0x0006);
    assert_eq!(EpochLogRecord::size(3), 48 + 240);
    assert_eq!(data_index_offset(0), 4664);
    assert_eq!(data_index_offset(5), 4684);
    assert_eq!(sd_proto::SD_PROTO_VER, 0x02);
    assert_eq!(sd_proto::SD_SHEEP_PROTO_VER, 0x0a);
    assert_eq!(sd_proto::SD_LISTEN_PORT, 7000);
}

// ---------------------------------------------------------------------------------------
// Request and response headers
// ---------------------------------------------------------------------------------------

#[test]
fn read_obj_request() {
    #[rustfmt::skip]
    let golden: [u8; 48] = [
        0x02, 0x02, 0x00, 0x00,                         // proto_ver 2, READ_OBJ, flags 0
        0x00, 0x00, 0x00, 0x00,                         // epoch 0
        0x07, 0x00, 0x00, 0x00,                         // id 7
        0x00, 0x10, 0x00, 0x00,                         // data_length 4096
        0x00, 0x00, 0x00, 0x00, 0x25, 0x2b, 0x7c, 0x80, // oid 0x807c2b2500000000
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // cow_oid 0
        0x00, 0x00, 0x00, 0x00,                         // copies, copy_policy, ec_index, rsvd
        0x00, 0x00, 0x00, 0x00,                         // tgt_epoch 0
        0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 4096 (u64 @40)
    ];
    let mut h = RequestHeader::new(Opcode::ReadObj).with_obj(ObjArgs {
        oid: Oid::new(0x807c_2b25_0000_0000),
        offset: 4096,
        ..ObjArgs::default()
    });
    h.id = 7;
    h.data_length = 4096;
    assert_eq!(h.encode(), golden);

    let d = RequestHeader::decode(&golden).unwrap();
    assert_eq!(d, h);
    assert_eq!(d.opcode, Opcode::ReadObj);
    assert!(!d.has_payload());
    assert_eq!(d.obj().oid.get(), 0x807c_2b25_0000_0000);
    assert_eq!(d.obj().offset, 4096);
}

#[test]
fn peer_write_request_obj_fields() {
    // WRITE_PEER (0xA5), proto 0x0a, WRITE|RECOVERY, epoch 3, with every obj field set.
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0x0a, 0xa5, 0x81, 0x00]);
    put(&mut g, 4, &3u32.to_le_bytes());
    put(&mut g, 8, &0xdead_beefu32.to_le_bytes());
    put(&mut g, 12, &512u32.to_le_bytes());
    put(&mut g, 16, &0x007c_2b25_0000_0005u64.to_le_bytes());
    put(&mut g, 24, &0x0012_3456_0000_0005u64.to_le_bytes());
    put(&mut g, 32, &[3, 0x42, 5, 0]);
    put(&mut g, 36, &2u32.to_le_bytes());
    put(&mut g, 40, &0x0030_0000u32.to_le_bytes()); // u32 offset @40, pad @44 = 0
    let mut h = RequestHeader::new(Opcode::WritePeer).with_obj(ObjArgs {
        oid: Oid::new(0x007c_2b25_0000_0005),
        cow_oid: Oid::new(0x0012_3456_0000_0005),
        copies: 3,
        copy_policy: 0x42,
        ec_index: 5,
        tgt_epoch: Epoch(2),
        offset: 0x0030_0000,
    });
    h.flags = Flags::WRITE | Flags::RECOVERY;
    h.epoch = Epoch(3);
    h.id = 0xdead_beef;
    h.data_length = 512;
    assert_eq!(h.encode(), g);
    assert_eq!(RequestHeader::decode(&g).unwrap(), h);
}

#[test]
fn qemu_create_and_write_cow_request_decodes() {
    // QEMU sends proto_ver 0x01, u64 offset at 40, CACHE|COW|WRITE.
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0x01, 0x01, 0x07, 0x00]);
    put(&mut g, 8, &1u32.to_le_bytes());
    put(&mut g, 12, &(4u32 << 20).to_le_bytes());
    put(&mut g, 16, &0x0000_0002_0000_0009u64.to_le_bytes());
    put(&mut g, 24, &0x0000_0001_0000_0009u64.to_le_bytes());
    put(&mut g, 32, &[2, 0]);
    put(&mut g, 40, &0u64.to_le_bytes());
    let d = RequestHeader::decode(&g).unwrap();
    assert_eq!(d.proto_ver, 1);
    assert_eq!(d.opcode, Opcode::CreateAndWriteObj);
    assert!(d.flags.contains(Flags::WRITE | Flags::COW | Flags::CACHE));
    assert!(d.has_payload());
    assert_eq!(d.data_length, 4 << 20);
    let o = d.obj();
    assert_eq!(o.oid.get(), 0x0000_0002_0000_0009);
    assert_eq!(o.cow_oid.get(), 0x0000_0001_0000_0009);
    assert_eq!(o.copies, 2);
    assert_eq!(d.encode(), g);
}

#[test]
fn new_vdi_request_with_name_payload() {
    // NEW_VDI "test", 10 GiB, copies 3, block_size_shift 22, id 1, WRITE, data_length 256.
    let mut g = vec![0u8; 48 + 256];
    put(&mut g, 0, &[0x02, 0x11, 0x01, 0x00]);
    put(&mut g, 8, &[0x01, 0, 0, 0]);
    put(&mut g, 12, &[0x00, 0x01, 0, 0]); // 256
    put(&mut g, 16, &[0, 0, 0, 0x80, 0x02, 0, 0, 0]); // vdi_size 0x2_8000_0000
    put(&mut g, 24, &[0, 0, 0, 0]); // base_vdi_id 0
    put(&mut g, 28, &[3, 0, 0, 22]); // copies, copy_policy, store_policy, block_size_shift
    put(&mut g, 32, &[0, 0, 0, 0]); // snapid 0
    put(&mut g, 36, &[0, 0, 0, 0]); // type 0
    put(&mut g, 48, b"test");

    let mut h = RequestHeader::new(Opcode::NewVdi).with_vdi(VdiArgs {
        vdi_size: 10 << 30,
        copies: 3,
        block_size_shift: 22,
        ..VdiArgs::default()
    });
    h.flags = Flags::WRITE;
    h.id = 1;
    h.data_length = 256;
    let mut name = [0u8; 256];
    name[..4].copy_from_slice(b"test");
    let mut out = BytesMut::new();
    encode_request(&h, &name, &mut out);
    assert_eq!(&out[..], &g[..]);

    let mut src = BytesMut::from(&g[..]);
    let frame = RequestDecoder::new(sd_proto::MAX_REQUEST_PAYLOAD)
        .decode(&mut src)
        .unwrap()
        .unwrap();
    let RequestFrame::Request { header, payload } = frame else {
        panic!("expected a request, got {frame:?}");
    };
    assert_eq!(header, h);
    assert_eq!(header.vdi().vdi_size, 10 << 30);
    assert_eq!(sd_proto::c_str(&payload), b"test");
    assert!(src.is_empty());
}

#[test]
fn snapshot_and_lock_vdi_fields() {
    // NEW_VDI snapshot: base_vdi_id 0x7c2b25, snapid 1; LOCK_VDI type 1 (shared).
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0x02, 0x12, 0x01, 0x00]);
    put(&mut g, 12, &512u32.to_le_bytes());
    put(&mut g, 16, &(1u64 << 30).to_le_bytes());
    put(&mut g, 24, &[0x25, 0x2b, 0x7c, 0x00]);
    put(&mut g, 28, &[2, 0x21, 1, 23]);
    put(&mut g, 32, &[1, 0, 0, 0]);
    put(&mut g, 36, &[1, 0, 0, 0]);
    let v = RequestHeader::decode(&g).unwrap().vdi();
    assert_eq!(
        v,
        VdiArgs {
            vdi_size: 1 << 30,
            base_vdi_id: 0x7c2b25,
            copies: 2,
            copy_policy: 0x21,
            store_policy: 1,
            block_size_shift: 23,
            snapid: 1,
            lock_type: 1,
        }
    );
    let mut h = RequestHeader::new(Opcode::LockVdi).with_vdi(v);
    h.flags = Flags::WRITE;
    h.data_length = 512;
    assert_eq!(h.encode(), g);
}

#[test]
fn make_fs_and_stat_cluster_args() {
    // MAKE_FS: ctime @24, copies @32, copy_policy @33, flags @34, nodes_nr @40, shift @44.
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0x0a, 0x84, 0x01, 0x00]);
    put(&mut g, 12, &6u32.to_le_bytes());
    put(&mut g, 24, &0x5f00_0000_0000_1000u64.to_le_bytes());
    put(&mut g, 32, &[3, 0]);
    put(
        &mut g,
        34,
        &(flags::AUTO_VNODES | flags::STRICT).to_le_bytes(),
    );
    put(&mut g, 40, &16u32.to_le_bytes());
    put(&mut g, 44, &[22]);
    let a = ClusterArgs {
        ctime: 0x5f00_0000_0000_1000,
        copies: 3,
        copy_policy: 0,
        flags: 0x0005,
        nodes_nr: 16,
        block_size_shift: 22,
    };
    let mut h = RequestHeader::new(Opcode::MakeFs).with_cluster(a);
    h.flags = Flags::WRITE;
    h.data_length = 6;
    assert_eq!(h.encode(), g);
    assert_eq!(RequestHeader::decode(&g).unwrap().cluster(), a);
}

#[test]
fn alter_copy_requests() {
    // ALTER_VDI_COPY (0xC0, internal: proto_ver 0x0a): vdi_state new_vid @20, copies @24,
    // copy_policy @26, block_size_shift @27.
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0x0a, 0xc0, 0x00, 0x00]);
    put(&mut g, 20, &0x7c_2b25u32.to_le_bytes());
    put(&mut g, 24, &[3, 0, 0, 22]);
    let a = VdiStateArgs {
        old_vid: 0,
        new_vid: 0x7c_2b25,
        copies: 3,
        set_bitmap: 0,
        copy_policy: 0,
        block_size_shift: 22,
    };
    assert_eq!(
        RequestHeader::new(Opcode::AlterVdiCopy)
            .with_vdi_state(a)
            .encode(),
        g
    );
    assert_eq!(RequestHeader::decode(&g).unwrap().vdi_state(), a);
    // NOTIFY_VDI_ADD's old_vid @16 and set_bitmap @25 share the layout.
    put(&mut g, 16, &0x0a_0b0cu32.to_le_bytes());
    put(&mut g, 25, &[1]);
    let b = RequestHeader::decode(&g).unwrap().vdi_state();
    assert_eq!((b.old_vid, b.set_bitmap), (0x0a_0b0c, 1));

    // ALTER_CLUSTER_COPY (0xBF): cluster copies @32, copy_policy @33.
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0x0a, 0xbf, 0x00, 0x00]);
    put(&mut g, 32, &[2, 0]);
    let a = ClusterArgs {
        copies: 2,
        ..ClusterArgs::default()
    };
    assert_eq!(
        RequestHeader::new(Opcode::AlterClusterCopy)
            .with_cluster(a)
            .encode(),
        g
    );
    assert_eq!(RequestHeader::decode(&g).unwrap().cluster(), a);
}

#[test]
fn get_vdi_info_response() {
    #[rustfmt::skip]
    let golden: [u8; 48] = [
        0x00, 0x14, 0x00, 0x00, // proto_ver 0, GET_VDI_INFO, flags 0
        0x01, 0x00, 0x00, 0x00, // epoch 1
        0x09, 0x00, 0x00, 0x00, // id 9
        0x00, 0x00, 0x00, 0x00, // data_length 0
        0x00, 0x00, 0x00, 0x00, // result SUCCESS
        0x00, 0x00, 0x00, 0x00, // rsvd
        0x25, 0x2b, 0x7c, 0x00, // vdi_id 0x7c2b25
        0x00, 0x00, 0x00, 0x00, // attr_id 0
        0x03, 0x16, 0x00, 0x00, // copies 3, block_size_shift 22
        0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];
    let mut req = RequestHeader::new(Opcode::GetVdiInfo);
    req.id = 9;
    let h = ResponseHeader::reply_to(&req, Epoch(1), SdResult::Success).with_vdi(VdiRsp {
        vdi_id: 0x7c2b25,
        attr_id: 0,
        copies: 3,
        block_size_shift: 22,
    });
    assert_eq!(h.encode(), golden);
    let d = ResponseHeader::decode(&golden).unwrap();
    assert_eq!(d, h);
    assert_eq!(d.vdi().vid().unwrap().get(), 0x7c2b25);
    assert_eq!(d.result, SdResult::Success);
}

#[test]
fn error_response_result_code() {
    // NO_VDI (0x08) to DEL_VDI (0x17), epoch 4, id 0x01020304.
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0, 0x17, 0, 0, 4, 0, 0, 0, 4, 3, 2, 1]);
    put(&mut g, 16, &[0x08, 0, 0, 0]);
    let d = ResponseHeader::decode(&g).unwrap();
    assert_eq!(d.result, SdResult::NoVdi);
    assert_eq!(d.id, 0x0102_0304);
    assert_eq!(d.epoch, Epoch(4));
    // internal code OLD_NODE_VER 0x81
    put(&mut g, 16, &[0x81, 0, 0, 0]);
    assert_eq!(
        ResponseHeader::decode(&g).unwrap().result,
        SdResult::OldNodeVer
    );
}

#[test]
fn node_list_and_stat_sheep_responses() {
    // GET_NODE_LIST: nr_nodes @20; STAT_SHEEP: store_size @32, store_free @40.
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0, 0x86, 0, 0, 2, 0, 0, 0]);
    put(&mut g, 20, &3u32.to_le_bytes());
    put(&mut g, 32, &(100u64 << 30).to_le_bytes());
    put(&mut g, 40, &(40u64 << 30).to_le_bytes());
    let n = NodeRsp {
        nr_nodes: 3,
        writeback: false,
        store_size: 100 << 30,
        store_free: 40 << 30,
    };
    let h = ResponseHeader::reply_to(
        &RequestHeader::new(Opcode::StatSheep),
        Epoch(2),
        SdResult::Success,
    )
    .with_node(n);
    assert_eq!(h.encode(), g);
    assert_eq!(ResponseHeader::decode(&g).unwrap().node(), n);
}

#[test]
fn cluster_default_response() {
    let mut g = [0u8; 48];
    put(&mut g, 0, &[0, 0x18, 0, 0, 1, 0, 0, 0]);
    put(&mut g, 20, &[3, 0, 22]);
    let h = ResponseHeader::reply_to(
        &RequestHeader::new(Opcode::GetClusterDefault),
        Epoch(1),
        SdResult::Success,
    )
    .with_cluster_default(3, 0, 22);
    assert_eq!(h.encode(), g);
    assert_eq!(
        ResponseHeader::decode(&g).unwrap().cluster_default(),
        (3, 0, 22)
    );
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

#[test]
fn sd_node_127_0_0_1_7000() {
    let g = node_127_0_0_1_7000();
    let n = node_127_0_0_1_7000_typed();
    assert_eq!(n.zone, 16_777_343);
    let mut out = Vec::new();
    n.encode_into(&mut out);
    assert_eq!(out, g);
    assert_eq!(SdNode::decode(&g).unwrap(), n);
    assert_eq!(n.nid.to_string(), "127.0.0.1:7000");

    // rb_node garbage on the wire is ignored.
    let mut dirty = g;
    dirty[..24].fill(0xAA);
    assert_eq!(SdNode::decode(&dirty).unwrap(), n);
}

#[test]
fn sd_node_ipv6_with_io_nic() {
    let mut g = [0u8; SD_NODE_SIZE];
    let v6: std::net::Ipv6Addr = "fd00::1:2".parse().unwrap();
    put(&mut g, 24, &v6.octets());
    put(&mut g, 40, &7001u16.to_le_bytes());
    put(
        &mut g,
        42,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 9],
    );
    put(&mut g, 58, &7002u16.to_le_bytes());
    put(&mut g, 68, &42u32.to_le_bytes());
    let n = SdNode::decode(&g).unwrap();
    assert_eq!(n.nid.to_string(), "fd00::1:2:7001");
    assert_eq!(n.io_port, 7002);
    assert_eq!(n.nr_vnodes, 0);
    assert_eq!(n.zone, 42);
    let mut out = Vec::new();
    n.encode_into(&mut out);
    assert_eq!(out, g);
}

#[test]
fn sheepdog_config() {
    let mut g = [0u8; 40];
    put(&mut g, 0, &0x5f5e_1000_0000_0000u64.to_le_bytes()); // ctime
    put(&mut g, 8, &0x0004u16.to_le_bytes()); // flags AUTO_VNODES
    put(&mut g, 10, &[3]); // copies
    put(&mut g, 11, b"plain"); // default_store[16] @11
    put(&mut g, 27, &[1]); // shutdown
    put(&mut g, 28, &[0]); // copy_policy
    put(&mut g, 29, &[22]); // block_size_shift
    put(&mut g, 30, &[0x06, 0x00]); // version
    put(&mut g, 32, &(500u64 << 30).to_le_bytes()); // space
    let c = SheepdogConfig {
        ctime: 0x5f5e_1000_0000_0000,
        flags: flags::AUTO_VNODES,
        copies: 3,
        store: b"plain".to_vec(),
        shutdown: 1,
        copy_policy: 0,
        block_size_shift: 22,
        version: SD_FORMAT_VERSION,
        space: 500 << 30,
    };
    assert_eq!(c.encode(), g);
    assert_eq!(SheepdogConfig::decode(&g).unwrap(), c);
}

fn golden_inode_header() -> (Vec<u8>, InodeHeader) {
    let mut g = vec![0u8; SD_INODE_HEADER_SIZE];
    put(&mut g, 0, b"test");
    put(&mut g, 256, b"snap1");
    put(&mut g, 512, &0x1111_1111_2222_2222u64.to_le_bytes()); // create_time
    put(&mut g, 520, &0x3333_3333_4444_4444u64.to_le_bytes()); // snap_ctime
    put(&mut g, 528, &0x55u64.to_le_bytes()); // vm_clock_nsec
    put(&mut g, 536, &(10u64 << 30).to_le_bytes()); // vdi_size
    put(&mut g, 544, &0x66u64.to_le_bytes()); // vm_state_size
    put(&mut g, 552, &[0x42]); // copy_policy
    put(&mut g, 553, &[1]); // store_policy
    put(&mut g, 554, &[3]); // nr_copies
    put(&mut g, 555, &[22]); // block_size_shift
    put(&mut g, 556, &2u32.to_le_bytes()); // snap_id
    put(&mut g, 560, &0x7c2b25u32.to_le_bytes()); // vdi_id
    put(&mut g, 564, &0x7c2b24u32.to_le_bytes()); // parent_vdi_id
    put(&mut g, 568, &9u32.to_le_bytes()); // btree_counter
    let h = InodeHeader {
        name: b"test".to_vec(),
        tag: b"snap1".to_vec(),
        create_time: 0x1111_1111_2222_2222,
        snap_ctime: 0x3333_3333_4444_4444,
        vm_clock_nsec: 0x55,
        vdi_size: 10 << 30,
        vm_state_size: 0x66,
        copy_policy: 0x42,
        store_policy: 1,
        nr_copies: 3,
        block_size_shift: 22,
        snap_id: 2,
        vdi_id: 0x7c2b25,
        parent_vdi_id: 0x7c2b24,
        btree_counter: 9,
    };
    (g, h)
}

#[test]
fn inode_header_offsets() {
    let (g, h) = golden_inode_header();
    let enc = h.encode();
    assert_eq!(enc.len(), 4664);
    assert_eq!(enc, g);
    assert_eq!(InodeHeader::decode(&g).unwrap(), h);
    assert!(h.is_snapshot());
    assert_eq!(h.vid().unwrap().get(), 0x7c2b25);
    // `dog vdi list` reads only the first 4672 bytes; the 572-byte prefix is enough to decode.
    assert_eq!(InodeHeader::decode(&g[..572]).unwrap(), h);
}

#[test]
fn inode_index_and_gref_offsets() {
    let (gh, h) = golden_inode_header();
    let mut inode = Inode::new(h);
    inode.data_vdi_id[0] = 0x7c2b25;
    inode.data_vdi_id[1_048_575] = 0x000001;
    inode.gref[2] = GenRef {
        generation: 1,
        count: -1,
    };
    let enc = inode.encode();
    assert_eq!(enc.len(), 12_587_576);

    let mut g = vec![0u8; SD_INODE_SIZE];
    put(&mut g, 0, &gh);
    put(&mut g, 4664, &[0x25, 0x2b, 0x7c, 0x00]);
    put(&mut g, 4664 + 4 * 1_048_575, &[0x01, 0, 0, 0]);
    put(
        &mut g,
        4_198_968 + 8 * 2,
        &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
    );
    assert!(
        enc == g,
        "inode encoding differs from the hand-built layout"
    );
    assert!(Inode::decode(&g).unwrap() == inode);
}

fn golden_epoch_log(slots: usize) -> Vec<u8> {
    let mut g = vec![0u8; 48 + slots * 80];
    put(&mut g, 0, &0x5f00_0000_0000_0001u64.to_le_bytes()); // ctime
    put(&mut g, 8, &1_600_000_000u64.to_le_bytes()); // time
    put(&mut g, 16, &7u32.to_le_bytes()); // epoch
    put(&mut g, 20, &1u32.to_le_bytes()); // nr_nodes
    put(&mut g, 24, &[1, 3, 0]); // disable_recovery, nr_copies, copy_policy
    put(&mut g, 30, &0x0005u16.to_le_bytes()); // flags
    put(&mut g, 32, b"plain"); // drv_name
    put(&mut g, 48, &node_127_0_0_1_7000());
    g
}

#[test]
fn epoch_log_record_offsets() {
    let slots = 3;
    let g = golden_epoch_log(slots);
    let rec = EpochLogRecord {
        ctime: 0x5f00_0000_0000_0001,
        time: 1_600_000_000,
        epoch: Epoch(7),
        disable_recovery: 1,
        nr_copies: 3,
        copy_policy: 0,
        flags: 0x0005,
        drv_name: b"plain".to_vec(),
        nodes: vec![node_127_0_0_1_7000_typed()],
    };
    assert_eq!(rec.encode(slots), g);
    assert_eq!(EpochLogRecord::decode(&g, slots).unwrap(), rec);
}

#[test]
fn cluster_info_offsets() {
    let mut g = vec![0u8; CLUSTER_INFO_SIZE];
    put(&mut g, 0, &[0x0a, 1]); // proto_ver, disable_recovery
    put(&mut g, 2, &2i16.to_le_bytes()); // nr_nodes
    put(&mut g, 4, &5u32.to_le_bytes()); // epoch
    put(&mut g, 8, &0x5f00_0000_0000_0002u64.to_le_bytes()); // ctime
    put(&mut g, 16, &0x0004u16.to_le_bytes()); // flags
    put(&mut g, 18, &[3, 0, 1, 22]); // nr_copies, copy_policy, status OK, block_size_shift
    put(&mut g, 25, b"tree"); // default_store
    put(&mut g, 48, &node_127_0_0_1_7000());
    let mut second = node_127_0_0_1_7000();
    put(&mut second, 36, &[127, 0, 0, 2]);
    put(&mut second, 68, &[0x7f, 0, 0, 2]);
    put(&mut g, 128, &second);

    let mut n2 = node_127_0_0_1_7000_typed();
    n2.nid = NodeId::from_socket("127.0.0.2:7000".parse().unwrap());
    n2.zone = n2.nid.default_zone();
    let ci = ClusterInfo {
        proto_ver: 0x0a,
        disable_recovery: 1,
        epoch: Epoch(5),
        ctime: 0x5f00_0000_0000_0002,
        flags: flags::AUTO_VNODES,
        nr_copies: 3,
        copy_policy: 0,
        status: 1,
        block_size_shift: 22,
        default_store: b"tree".to_vec(),
        nodes: vec![node_127_0_0_1_7000_typed(), n2],
    };
    let enc = ci.encode();
    assert_eq!(enc.len(), 491_568);
    assert!(
        enc == g,
        "cluster_info encoding differs from the hand-built layout"
    );
    assert_eq!(ClusterInfo::decode(&g).unwrap(), ci);
}

#[test]
fn cluster_info_negative_node_count_is_rejected() {
    let mut g = vec![0u8; CLUSTER_INFO_SIZE];
    put(&mut g, 2, &(-1i16).to_le_bytes());
    assert!(matches!(
        ClusterInfo::decode(&g),
        Err(sd_proto::DecodeError::BadLength { .. })
    ));
    put(&mut g, 2, &6145i16.to_le_bytes());
    assert!(matches!(
        ClusterInfo::decode(&g),
        Err(sd_proto::DecodeError::BadLength { .. })
    ));
}

#[test]
fn spec_test_vectors() {
    use sd_proto::hash::{FNV1A_64_INIT, fnv1a_64, sd_hash_oid, sd_hash_vdi};
    assert_eq!(fnv1a_64(b"test", FNV1A_64_INIT), 0xf9e6_e6ef_197c_2b25);
    let vid = sd_hash_vdi(b"test");
    assert_eq!(vid.get(), 0x7c2b25);
    assert_eq!(vid.inode_oid().get(), 0x807c_2b25_0000_0000);
    assert_eq!(sd_hash_vdi(b"alpha").get(), 0xed202b);
    assert_eq!(sd_hash_vdi(b"vm1").get(), 0xc59887);
    assert_eq!(
        sd_hash_oid(Oid::new(0x807c_2b25_0000_0000)),
        0x8b4b_18c2_43be_fa1a
    );
    assert_eq!(
        sd_hash_oid(Oid::new(0x80ab_cdef_0000_0000)),
        0xa4f8_2083_4d77_e8b3
    );
    assert_eq!(
        sd_hash_oid(Oid::new(0x007c_2b25_0000_0005)),
        0x422f_3c8a_f3f8_de1c
    );
    let n = node_127_0_0_1_7000_typed();
    assert_eq!(n.nid.vnode_seed(), 0x9cb3_d6dd_0a4c_0f9f);
    let p1 = sd_proto::hash::sd_hash_next(n.nid.vnode_seed());
    let p2 = sd_proto::hash::sd_hash_next(p1);
    let p3 = sd_proto::hash::sd_hash_next(p2);
    assert_eq!(
        [p1, p2, p3],
        [
            0x3af2_cba6_e538_cdf3,
            0xfd38_432f_d111_924b,
            0x2ad2_bef8_f506_e35d
        ]
    );
    assert_eq!(format!("{}", vid.inode_oid()), "807c2b2500000000");
}

/// STAT_RECOVERY (spec §6.2): `recovery_state`, u8 in_recovery @0, u32 state @4 (1
/// RECOVER_OBJ), u64 nr_finished @8, u64 nr_total @16; what the sheep sent before the
/// layout moved into `sd_proto` (and what C dog reads).
#[test]
fn stat_recovery_answer() {
    let mut g = [0u8; RECOVERY_STATE_SIZE];
    g[0] = 1;
    put(&mut g, 4, &[1, 0, 0, 0]);
    put(&mut g, 8, &[0x05, 0x01, 0, 0, 0, 0, 0, 0]); // 261
    put(&mut g, 16, &[0x09, 0, 0, 0, 0x02, 0, 0, 0]); // 8 589 934 601
    let typed = RecoveryState {
        in_recovery: true,
        phase: RecoveryPhase::RecoverObj,
        nr_finished: 261,
        nr_total: 0x2_0000_0009,
    };
    assert_eq!(RECOVERY_STATE_SIZE, 24);
    assert_eq!(typed.encode(), g);
    assert_eq!(RecoveryState::decode(&g).unwrap(), typed);

    // Idle: byte 0 zero; the other phases and an unknown one; padding is not checked.
    let idle = RecoveryState {
        in_recovery: false,
        phase: RecoveryPhase::RecoverObj,
        nr_finished: 0,
        nr_total: 0,
    };
    let mut g0 = [0u8; RECOVERY_STATE_SIZE];
    g0[4] = 1;
    assert_eq!(idle.encode(), g0);
    g0[1..4].copy_from_slice(&[0xaa, 0xbb, 0xcc]);
    assert_eq!(RecoveryState::decode(&g0).unwrap(), idle);
    for (v, phase) in [
        (0u32, RecoveryPhase::PrepareList),
        (2, RecoveryPhase::NotifyCompletion),
        (7, RecoveryPhase::Unknown(7)),
    ] {
        put(&mut g0, 4, &v.to_le_bytes());
        assert_eq!(RecoveryState::decode(&g0).unwrap().phase, phase);
    }
    // C dog's test byte: any non-zero in_recovery counts.
    g0[0] = 0x80;
    assert!(RecoveryState::decode(&g0).unwrap().in_recovery);
    assert_eq!(
        RecoveryState::decode(&g0[..23]),
        Err(sd_proto::DecodeError::Truncated)
    );
}

/// STAT_WRITEBACK (0xF0, a sheepdog-rs extension; not in the spec): dirty_objects @0,
/// dirty_bytes @8, peer_flushes @16, peer_flushes_vdi @24, lost_objects @32, u64 each;
/// the bytes the sheep sent before the layout moved into `sd_proto`.
#[test]
fn stat_writeback_answer() {
    let mut g = [0u8; WRITEBACK_STAT_SIZE];
    put(&mut g, 0, &[3, 0, 0, 0, 0, 0, 0, 0]);
    put(&mut g, 8, &[0, 0, 0x30, 0, 0, 0, 0, 0]); // 3 MiB
    put(&mut g, 16, &[0x11, 0x22, 0, 0, 0, 0, 0, 0]);
    put(&mut g, 24, &[0x44, 0, 0, 0, 0, 0, 0, 0x01]);
    put(&mut g, 32, &[2, 0, 0, 0, 0, 0, 0, 0]);
    let typed = WritebackStat {
        dirty_objects: 3,
        dirty_bytes: 3 << 20,
        peer_flushes: 0x2211,
        peer_flushes_vdi: 0x0100_0000_0000_0044,
        lost_objects: 2,
    };
    assert_eq!(WRITEBACK_STAT_SIZE, 40);
    assert_eq!(typed.encode(), g);
    assert_eq!(WritebackStat::decode(&g).unwrap(), typed);
    assert_eq!(
        WritebackStat::decode(&g[..39]),
        Err(sd_proto::DecodeError::Truncated)
    );
}

/// GET_LOGLEVEL answer and SET_LOGLEVEL payload (spec §6.2): i32 level, little-endian.
#[test]
fn loglevel_answer() {
    assert_eq!(LOGLEVEL_SIZE, 4);
    assert_eq!(LogLevel(6).encode(), [6, 0, 0, 0]);
    assert_eq!(LogLevel(-1).encode(), [0xff; 4]);
    assert_eq!(LogLevel::decode(&[7, 0, 0, 0]).unwrap(), LogLevel(7));
    // dog sends exactly 4 bytes; a longer payload is read from its first 4.
    assert_eq!(LogLevel::decode(&[3, 0, 0, 0, 9, 9]).unwrap(), LogLevel(3));
    assert_eq!(
        LogLevel::decode(&[7, 0, 0]),
        Err(sd_proto::DecodeError::Truncated)
    );
}

/// GET_OBJ_LIST answer (spec §6.2): u64 oids back to back, little-endian.
#[test]
fn obj_list_answer() {
    let mut g = [0u8; 24];
    put(&mut g, 0, &[0, 0, 0, 0, 0x25, 0x2b, 0x7c, 0x80]); // inode of vid 0x7c2b25
    put(&mut g, 8, &[5, 0, 0, 0, 0x25, 0x2b, 0x7c, 0x00]); // its data object 5
    put(&mut g, 16, &[0x01, 0, 0, 0, 0, 0, 0, 0]);
    let typed = OidList {
        oids: vec![
            Oid::new(0x807c_2b25_0000_0000),
            Oid::new(0x007c_2b25_0000_0005),
            Oid::new(1),
        ],
    };
    assert_eq!(OidList::size(3), 24);
    assert_eq!(typed.encode(), g);
    assert_eq!(OidList::decode(&g).unwrap(), typed);
    assert_eq!(OidList::decode(&[]).unwrap(), OidList::default());
    assert_eq!(
        OidList::decode(&g[..23]),
        Err(sd_proto::DecodeError::BadLength {
            what: "object list",
            len: 23
        })
    );
}

/// GET_EPOCH answer (spec §6.2): `sd_node` × n, then the 8-byte time; the same bytes are the
/// `epoch/%08u` file (spec §11.4), written and loaded by the sheep through `EpochMembers`.
#[test]
fn get_epoch_answer() {
    let mut g = node_127_0_0_1_7000().to_vec();
    g.extend_from_slice(&[0x00, 0x5e, 0xd0, 0xb2, 0, 0, 0, 0]); // 3 000 000 000
    let typed = EpochMembers {
        nodes: vec![node_127_0_0_1_7000_typed()],
        time: 3_000_000_000,
    };
    assert_eq!(EpochMembers::size(1), 88);
    assert_eq!(typed.encode(), g);
    assert_eq!(EpochMembers::decode(&g).unwrap(), typed);
    let empty = EpochMembers {
        nodes: Vec::new(),
        time: 7,
    };
    assert_eq!(empty.encode(), 7u64.to_le_bytes());
    assert_eq!(EpochMembers::decode(&g[80..]).unwrap().time, 3_000_000_000);
    assert_eq!(
        EpochMembers::decode(&g[..7]),
        Err(sd_proto::DecodeError::Truncated)
    );
    assert_eq!(
        EpochMembers::decode(&g[..87]),
        Err(sd_proto::DecodeError::BadLength {
            what: "epoch members",
            len: 87
        })
    );
}

/// FETCH_PEER answer (0xF2): the u32 version of the copy, little-endian, then its bytes
/// (none when the request had no room for them).
#[test]
fn fetch_peer_answer() {
    let g = [0x07, 0x01, 0, 0, b'a', b'b', b'c'];
    let typed = PeerCopy {
        version: 263,
        data: bytes::Bytes::from_static(b"abc"),
    };
    assert_eq!(VERSION_SIZE, 4);
    assert_eq!(PeerCopy::size(3), 7);
    assert_eq!(typed.encode(), g);
    let filled = PeerCopy::encode_with(263, 3, |buf| {
        buf.copy_from_slice(b"abc");
        Ok::<(), ()>(())
    });
    assert_eq!(filled.unwrap(), g);
    assert_eq!(PeerCopy::encode_with(1, 2, |_| Err("eio")), Err("eio"));
    assert_eq!(
        PeerCopy::decode(bytes::Bytes::copy_from_slice(&g)).unwrap(),
        typed
    );
    // The version alone: the request had no room for the data.
    let version_only = PeerCopy::decode(bytes::Bytes::copy_from_slice(&g[..4])).unwrap();
    assert_eq!((version_only.version, version_only.data.len()), (263, 0));
    assert_eq!(
        PeerCopy::decode(bytes::Bytes::copy_from_slice(&g[..3])),
        Err(sd_proto::DecodeError::Truncated)
    );
    // Room for the data: its size plus the version.
    assert!(PeerCopy::fits(7, 3));
    assert!(!PeerCopy::fits(6, 3));
    assert!(PeerCopy::fits(4, 0));
    assert!(!PeerCopy::fits(u32::MAX, u64::MAX));
}

/// FETCH_PEER decoding shares the answer's buffer: the data is not copied.
#[test]
fn fetch_peer_data_is_not_copied() {
    let answer = bytes::Bytes::from(vec![1, 0, 0, 0, 9, 9, 9, 9]);
    let copy = PeerCopy::decode(answer.clone()).unwrap();
    assert_eq!(copy.data.as_ptr(), answer[4..].as_ptr());
}

/// GET_STORE_LIST answer (spec §6.2): each driver name followed by a space, then a NUL.
#[test]
fn store_list_answer() {
    let ours = StoreList {
        names: vec![b"plain".to_vec()],
    };
    assert_eq!(ours.encode(), b"plain \0");
    assert_eq!(StoreList::decode(b"plain \0"), ours);
    let c_sheep = StoreList {
        names: vec![b"plain".to_vec(), b"tree".to_vec()],
    };
    assert_eq!(c_sheep.encode(), b"plain tree \0");
    assert_eq!(StoreList::decode(b"plain tree \0"), c_sheep);
    // What follows the NUL (the rest of a fixed buffer) is not text; a missing NUL ends
    // the text at the end of the answer.
    assert_eq!(StoreList::decode(b"plain \0junk"), ours);
    assert_eq!(StoreList::decode(b"plain"), ours);
    assert_eq!(StoreList::default().encode(), b"\0");
    assert_eq!(StoreList::decode(b""), StoreList::default());
}

#[test]
fn repair_replica_forw_and_get_hash_digest_layout() {
    // REPAIR_REPLICA (0xC5): forw.oid u64 @16, forw.addr u8[16] @24, forw.port u16 @40.
    let from = sd_proto::node::NodeId::from_socket("127.0.0.1:7001".parse().unwrap());
    let h = RequestHeader::new(Opcode::RepairReplica).with_forw(ForwArgs {
        oid: Oid::new(0x007c_2b25_0000_0003),
        from,
    });
    let b = h.encode();
    assert_eq!(b[1], 0xc5);
    assert_eq!(&b[16..24], &0x007c_2b25_0000_0003u64.to_le_bytes());
    assert_eq!(
        &b[24..40],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 1]
    );
    assert_eq!(&b[40..42], &7001u16.to_le_bytes());
    assert_eq!(&b[42..48], &[0; 6]);
    let d = RequestHeader::decode(&b).unwrap().forw();
    assert_eq!(d.oid.get(), 0x007c_2b25_0000_0003);
    assert_eq!(d.from, from);

    // GET_HASH (0xB4) answer: rsp.hash.digest u8[20] @24.
    let req = RequestHeader::new(Opcode::GetHash);
    let digest: [u8; 20] = *b"0123456789abcdefghij";
    let rsp = ResponseHeader::reply_to(&req, Epoch(4), SdResult::Success).with_hash(digest);
    let b = rsp.encode();
    assert_eq!(&b[20..24], &[0; 4]);
    assert_eq!(&b[24..44], &digest);
    assert_eq!(&b[44..48], &[0; 4]);
    assert_eq!(ResponseHeader::decode(&b).unwrap().hash(), digest);
}
