//! Property tests: every message and record type of `sd_proto` survives encode → decode.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use proptest::prelude::*;
use sd_proto::cluster::{ClusterInfo, EpochLogRecord, EpochMembers, STORE_LEN, SheepdogConfig};
use sd_proto::header::VdiStateArgs;
use sd_proto::inode::{
    GenRef, Inode, InodeHeader, SD_INODE_DATA_INDEX, SD_INODE_HEADER_SIZE, SD_MAX_VDI_LEN,
};
use sd_proto::node::{NodeId, SD_MAX_NODES, SD_NODE_SIZE, SdNode};
use sd_proto::oid_list::{OID_SIZE, OidList};
use sd_proto::peer_copy::{PeerCopy, VERSION_SIZE};
use sd_proto::stat::{
    LOGLEVEL_SIZE, LogLevel, RECOVERY_STATE_SIZE, RecoveryPhase, RecoveryState,
    WRITEBACK_STAT_SIZE, WritebackStat,
};
use sd_proto::store_list::StoreList;
use sd_proto::{
    ClusterArgs, Epoch, Flags, NodeRsp, ObjArgs, Oid, Opcode, RequestHeader, ResponseHeader,
    SD_REQ_SIZE, SD_RSP_SIZE, SdResult, VdiArgs, VdiRsp,
};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn request_header() -> impl Strategy<Value = RequestHeader> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(proto_ver, op, flags, epoch, id, data_length, args)| RequestHeader {
                proto_ver,
                opcode: Opcode::from_u8(op),
                flags: Flags(flags),
                epoch: Epoch(epoch),
                id,
                data_length,
                args,
            },
        )
}

fn response_header() -> impl Strategy<Value = ResponseHeader> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 28]>(),
    )
        .prop_map(
            |(proto_ver, op, flags, epoch, id, data_length, result, args)| ResponseHeader {
                proto_ver,
                opcode: Opcode::from_u8(op),
                flags: Flags(flags),
                epoch: Epoch(epoch),
                id,
                data_length,
                result: SdResult::from_u32(result),
                args,
            },
        )
}

fn obj_args() -> impl Strategy<Value = ObjArgs> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(oid, cow, copies, copy_policy, ec_index, tgt, offset)| ObjArgs {
                oid: Oid::new(oid),
                cow_oid: Oid::new(cow),
                copies,
                copy_policy,
                ec_index,
                tgt_epoch: Epoch(tgt),
                offset,
            },
        )
}

fn vdi_args() -> impl Strategy<Value = VdiArgs> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<[u8; 4]>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(vdi_size, base_vdi_id, [c, p, s, b], snapid, lock_type)| VdiArgs {
                vdi_size,
                base_vdi_id,
                copies: c,
                copy_policy: p,
                store_policy: s,
                block_size_shift: b,
                snapid,
                lock_type,
            },
        )
}

fn cluster_args() -> impl Strategy<Value = ClusterArgs> {
    (
        any::<u64>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u8>(),
    )
        .prop_map(
            |(ctime, copies, copy_policy, flags, nodes_nr, block_size_shift)| ClusterArgs {
                ctime,
                copies,
                copy_policy,
                flags,
                nodes_nr,
                block_size_shift,
            },
        )
}

fn sd_node() -> impl Strategy<Value = SdNode> {
    (
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(addr, port, io_addr, io_port, nr_vnodes, zone, space)| SdNode {
                nid: NodeId { addr, port },
                io_addr,
                io_port,
                nr_vnodes,
                zone,
                space,
            },
        )
}

/// Bytes of a NUL-padded C string field: any non-NUL bytes, at most `max` of them.
fn c_string(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..=max)
}

fn inode_header() -> impl Strategy<Value = InodeHeader> {
    (
        c_string(SD_MAX_VDI_LEN - 1),
        c_string(SD_MAX_VDI_LEN - 1),
        any::<[u64; 5]>(),
        any::<[u8; 4]>(),
        any::<[u32; 4]>(),
    )
        .prop_map(|(name, tag, t, b, v)| InodeHeader {
            name,
            tag,
            create_time: t[0],
            snap_ctime: t[1],
            vm_clock_nsec: t[2],
            vdi_size: t[3],
            vm_state_size: t[4],
            copy_policy: b[0],
            store_policy: b[1],
            nr_copies: b[2],
            block_size_shift: b[3],
            snap_id: v[0],
            vdi_id: v[1],
            parent_vdi_id: v[2],
            btree_counter: v[3],
        })
}

/// A full-size inode with a handful of index and gref entries set.
fn sparse_inode() -> impl Strategy<Value = Inode> {
    (
        inode_header(),
        prop::collection::vec((0..SD_INODE_DATA_INDEX, any::<u32>()), 0..8),
        prop::collection::vec((0..SD_INODE_DATA_INDEX, any::<i32>(), any::<i32>()), 0..8),
    )
        .prop_map(|(header, idx, grefs)| {
            let mut inode = Inode::new(header);
            for (i, vid) in idx {
                inode.data_vdi_id[i] = vid;
            }
            for (i, generation, count) in grefs {
                inode.gref[i] = GenRef { generation, count };
            }
            inode
        })
}

fn config() -> impl Strategy<Value = SheepdogConfig> {
    (
        any::<u64>(),
        any::<u16>(),
        any::<u8>(),
        c_string(STORE_LEN),
        any::<[u8; 3]>(),
        any::<u16>(),
        any::<u64>(),
    )
        .prop_map(
            |(ctime, flags, copies, store, [shutdown, copy_policy, bss], version, space)| {
                SheepdogConfig {
                    ctime,
                    flags,
                    copies,
                    store,
                    shutdown,
                    copy_policy,
                    block_size_shift: bss,
                    version,
                    space,
                }
            },
        )
}

/// An epoch-log record together with a slot count ≥ its node count.
fn epoch_log() -> impl Strategy<Value = (EpochLogRecord, usize)> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<[u8; 3]>(),
        any::<u16>(),
        c_string(STORE_LEN),
        prop::collection::vec(sd_node(), 0..8),
        0usize..4,
    )
        .prop_map(
            |(ctime, time, epoch, [dr, nc, cp], flags, drv_name, nodes, extra)| {
                let slots = nodes.len() + extra;
                let rec = EpochLogRecord {
                    ctime,
                    time,
                    epoch: Epoch(epoch),
                    disable_recovery: dr,
                    nr_copies: nc,
                    copy_policy: cp,
                    flags,
                    drv_name,
                    nodes,
                };
                (rec, slots)
            },
        )
}

fn cluster_info() -> impl Strategy<Value = ClusterInfo> {
    (
        any::<[u8; 2]>(),
        any::<u32>(),
        any::<u64>(),
        any::<u16>(),
        any::<[u8; 4]>(),
        c_string(STORE_LEN),
        prop::collection::vec(sd_node(), 0..16),
    )
        .prop_map(
            |([proto_ver, dr], epoch, ctime, flags, b, default_store, nodes)| ClusterInfo {
                proto_ver,
                disable_recovery: dr,
                epoch: Epoch(epoch),
                ctime,
                flags,
                nr_copies: b[0],
                copy_policy: b[1],
                status: b[2],
                block_size_shift: b[3],
                default_store,
                nodes,
            },
        )
}

// ---------------------------------------------------------------------------------------
// Headers and argument views
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn request_header_round_trips(h in request_header()) {
        let bytes = h.encode();
        prop_assert_eq!(bytes.len(), SD_REQ_SIZE);
        prop_assert_eq!(RequestHeader::decode(&bytes).unwrap(), h);
    }

    /// The header keeps every byte, so decode → encode is the identity on 48 bytes.
    #[test]
    fn request_header_bytes_round_trip(b in any::<[u8; SD_REQ_SIZE]>()) {
        prop_assert_eq!(RequestHeader::decode(&b).unwrap().encode(), b);
    }

    #[test]
    fn response_header_round_trips(h in response_header()) {
        let bytes = h.encode();
        prop_assert_eq!(bytes.len(), SD_RSP_SIZE);
        prop_assert_eq!(ResponseHeader::decode(&bytes).unwrap(), h);
    }

    #[test]
    fn response_header_bytes_round_trip(b in any::<[u8; SD_RSP_SIZE]>()) {
        prop_assert_eq!(ResponseHeader::decode(&b).unwrap().encode(), b);
    }

    #[test]
    fn obj_args_round_trip(a in obj_args(), h in request_header()) {
        prop_assert_eq!(ObjArgs::decode(&a.encode()), a);
        let h = h.with_obj(a);
        prop_assert_eq!(RequestHeader::decode(&h.encode()).unwrap().obj(), a);
    }

    /// Only the reserved byte (wire byte 35) is dropped; `offset` keeps all 64 bits.
    #[test]
    fn obj_args_bytes_round_trip(b in any::<[u8; 32]>()) {
        let mut want = b;
        want[19] = 0;
        prop_assert_eq!(ObjArgs::decode(&b).encode(), want);
    }

    #[test]
    fn vdi_args_round_trip(a in vdi_args(), h in request_header()) {
        prop_assert_eq!(VdiArgs::decode(&a.encode()), a);
        let h = h.with_vdi(a);
        prop_assert_eq!(RequestHeader::decode(&h.encode()).unwrap().vdi(), a);
    }

    /// The unused wire bytes 40..48 are dropped.
    #[test]
    fn vdi_args_bytes_round_trip(b in any::<[u8; 32]>()) {
        let mut want = b;
        want[24..].fill(0);
        prop_assert_eq!(VdiArgs::decode(&b).encode(), want);
    }

    #[test]
    fn cluster_args_round_trip(a in cluster_args(), h in request_header()) {
        prop_assert_eq!(ClusterArgs::decode(&a.encode()), a);
        let h = h.with_cluster(a);
        prop_assert_eq!(RequestHeader::decode(&h.encode()).unwrap().cluster(), a);
    }

    /// VdiStateArgs keeps bytes 16..28 and drops the unused 28..48.
    #[test]
    fn vdi_state_args_round_trip(b in any::<[u8; 32]>(), h in request_header()) {
        let mut want = b;
        want[12..].fill(0);
        let a = VdiStateArgs::decode(&b);
        prop_assert_eq!(a.encode(), want);
        let h = h.with_vdi_state(a);
        prop_assert_eq!(RequestHeader::decode(&h.encode()).unwrap().vdi_state(), a);
    }

    /// ClusterArgs drops oid (16..24), tag (36..40) and the reserved bytes (45..48).
    #[test]
    fn cluster_args_bytes_keep_the_used_fields(b in any::<[u8; 32]>()) {
        let mut want = b;
        want[0..8].fill(0);
        want[20..24].fill(0);
        want[29..32].fill(0);
        prop_assert_eq!(ClusterArgs::decode(&b).encode(), want);
    }

    #[test]
    fn vdi_rsp_round_trips(
        h in response_header(),
        vdi_id in any::<u32>(),
        attr_id in any::<u32>(),
        copies in any::<u8>(),
        block_size_shift in any::<u8>(),
    ) {
        let v = VdiRsp { vdi_id, attr_id, copies, block_size_shift };
        let h = h.with_vdi(v);
        let back = ResponseHeader::decode(&h.encode()).unwrap();
        prop_assert_eq!(back.vdi(), v);
        prop_assert_eq!(back, h);
    }

    #[test]
    fn node_rsp_round_trips(
        h in response_header(),
        nr_nodes in any::<u32>(),
        store_size in any::<u64>(),
        store_free in any::<u64>(),
        writeback in any::<bool>(),
    ) {
        let n = NodeRsp { nr_nodes, writeback, store_size, store_free };
        let back = ResponseHeader::decode(&h.with_node(n).encode()).unwrap();
        prop_assert_eq!(back.node(), n);
    }

    #[test]
    fn cluster_default_rsp_round_trips(h in response_header(), b in any::<[u8; 3]>()) {
        let back = ResponseHeader::decode(&h.with_cluster_default(b[0], b[1], b[2]).encode()).unwrap();
        prop_assert_eq!(back.cluster_default(), (b[0], b[1], b[2]));
        prop_assert_eq!(back.obj_copies(), b[0]);
    }

    #[test]
    fn reply_to_echoes_opcode_and_id(req in request_header(), epoch in any::<u32>(), res in any::<u32>()) {
        let r = ResponseHeader::reply_to(&req, Epoch(epoch), SdResult::from_u32(res));
        let back = ResponseHeader::decode(&r.encode()).unwrap();
        prop_assert_eq!(back.opcode, req.opcode);
        prop_assert_eq!(back.id, req.id);
        prop_assert_eq!(back.epoch, Epoch(epoch));
        prop_assert_eq!(back.result.as_u32(), res);
        prop_assert_eq!(back.data_length, 0);
    }
}

// ---------------------------------------------------------------------------------------
// Opcodes and results
// ---------------------------------------------------------------------------------------

#[test]
fn every_opcode_byte_round_trips() {
    for b in 0..=255u8 {
        let op = Opcode::from_u8(b);
        assert_eq!(op.as_u8(), b);
        let mut h = RequestHeader::new(op);
        h.id = u32::from(b);
        let back = RequestHeader::decode(&h.encode()).unwrap();
        assert_eq!(back.opcode, op);
        assert_eq!(back.proto_ver, if b >= 0x80 { 0x0a } else { 0x02 });
    }
    for op in Opcode::ALL {
        assert!(!matches!(op, Opcode::Unknown(_)));
        assert_eq!(Opcode::from_u8(op.as_u8()), *op);
    }
}

#[test]
fn every_known_result_round_trips() {
    for r in SdResult::ALL {
        assert!(!matches!(r, SdResult::Unknown(_)));
        assert_eq!(SdResult::from_u32(r.as_u32()), *r);
        let h = ResponseHeader::reply_to(&RequestHeader::new(Opcode::ReadObj), Epoch(1), *r);
        assert_eq!(ResponseHeader::decode(&h.encode()).unwrap().result, *r);
    }
}

fn recovery_state() -> impl Strategy<Value = RecoveryState> {
    (any::<bool>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
        |(in_recovery, phase, nr_finished, nr_total)| RecoveryState {
            in_recovery,
            phase: RecoveryPhase::from_u32(phase),
            nr_finished,
            nr_total,
        },
    )
}

fn writeback_stat() -> impl Strategy<Value = WritebackStat> {
    any::<[u64; 5]>().prop_map(|[a, b, c, d, e]| WritebackStat {
        dirty_objects: a,
        dirty_bytes: b,
        peer_flushes: c,
        peer_flushes_vdi: d,
        lost_objects: e,
    })
}

proptest! {
    #[test]
    fn recovery_state_round_trips(st in recovery_state()) {
        let b = st.encode();
        prop_assert_eq!(b.len(), RECOVERY_STATE_SIZE);
        prop_assert_eq!(RecoveryState::decode(&b).unwrap(), st);
    }

    /// The padding (1..4) is not kept and in_recovery becomes 0 or 1.
    #[test]
    fn recovery_state_bytes_round_trip(b in any::<[u8; RECOVERY_STATE_SIZE]>()) {
        let mut want = b.to_vec();
        want[0] = u8::from(b[0] != 0);
        want[1..4].fill(0);
        prop_assert_eq!(RecoveryState::decode(&b).unwrap().encode(), want);
    }

    #[test]
    fn recovery_phase_round_trips(v in any::<u32>()) {
        prop_assert_eq!(RecoveryPhase::from_u32(v).as_u32(), v);
    }

    #[test]
    fn writeback_stat_round_trips(st in writeback_stat()) {
        let b = st.encode();
        prop_assert_eq!(b.len(), WRITEBACK_STAT_SIZE);
        prop_assert_eq!(WritebackStat::decode(&b).unwrap(), st);
    }

    #[test]
    fn loglevel_round_trips(v in any::<i32>()) {
        let b = LogLevel(v).encode();
        prop_assert_eq!(b.len(), LOGLEVEL_SIZE);
        prop_assert_eq!(LogLevel::decode(&b).unwrap(), LogLevel(v));
    }

    #[test]
    fn oid_list_round_trips(oids in prop::collection::vec(any::<u64>(), 0..64)) {
        let list = OidList { oids: oids.into_iter().map(Oid::new).collect() };
        let b = list.encode();
        prop_assert_eq!(b.len(), list.oids.len() * OID_SIZE);
        prop_assert_eq!(OidList::decode(&b).unwrap(), list);
    }

    #[test]
    fn epoch_members_round_trip(
        nodes in prop::collection::vec(sd_node(), 0..8),
        time in any::<u64>(),
    ) {
        let e = EpochMembers { nodes, time };
        let b = e.encode();
        prop_assert_eq!(b.len(), EpochMembers::size(e.nodes.len()));
        prop_assert_eq!(EpochMembers::decode(&b).unwrap(), e);
    }

    #[test]
    fn peer_copy_round_trips(
        version in any::<u32>(),
        data in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let copy = PeerCopy { version, data: data.clone().into() };
        let b = copy.encode();
        prop_assert_eq!(b.len(), PeerCopy::size(data.len()));
        let filled = PeerCopy::encode_with(version, data.len(), |buf| {
            buf.copy_from_slice(&data);
            Ok::<(), ()>(())
        });
        prop_assert_eq!(filled.unwrap(), b.clone());
        prop_assert_eq!(PeerCopy::decode(b.into()).unwrap(), copy);
    }

    #[test]
    fn peer_copy_bytes_round_trip(b in prop::collection::vec(any::<u8>(), VERSION_SIZE..64)) {
        prop_assert_eq!(PeerCopy::decode(b.clone().into()).unwrap().encode(), b);
    }

    #[test]
    fn store_list_round_trips(names in prop::collection::vec("[a-z0-9_]{1,15}", 0..4)) {
        let list = StoreList { names: names.into_iter().map(String::into_bytes).collect() };
        let b = list.encode();
        prop_assert_eq!(b.last(), Some(&0));
        prop_assert_eq!(StoreList::decode(&b), list);
    }

    #[test]
    fn writeback_stat_bytes_round_trip(b in any::<[u8; WRITEBACK_STAT_SIZE]>()) {
        prop_assert_eq!(WritebackStat::decode(&b).unwrap().encode(), b.to_vec());
    }
}

proptest! {
    #[test]
    fn every_result_code_round_trips(v in any::<u32>()) {
        prop_assert_eq!(SdResult::from_u32(v).as_u32(), v);
    }
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn sd_node_round_trips(n in sd_node()) {
        let mut b = Vec::new();
        n.encode_into(&mut b);
        prop_assert_eq!(b.len(), SD_NODE_SIZE);
        prop_assert_eq!(SdNode::decode(&b).unwrap(), n);
    }

    /// rb_node (0..24) and the pads (60..64, 66..68) are not kept.
    #[test]
    fn sd_node_bytes_round_trip(b in any::<[u8; SD_NODE_SIZE]>()) {
        let mut want = b.to_vec();
        want[0..24].fill(0);
        want[60..64].fill(0);
        want[66..68].fill(0);
        let mut out = Vec::new();
        SdNode::decode(&b).unwrap().encode_into(&mut out);
        prop_assert_eq!(out, want);
    }

    #[test]
    fn node_list_round_trips(nodes in prop::collection::vec(sd_node(), 0..32)) {
        let b = SdNode::encode_list(&nodes);
        prop_assert_eq!(b.len(), nodes.len() * SD_NODE_SIZE);
        prop_assert_eq!(SdNode::decode_list(&b, nodes.len()).unwrap(), nodes);
    }

    #[test]
    fn node_id_socket_round_trips(addr in any::<std::net::SocketAddr>()) {
        // IPv4 addresses in 0.0.0.0/8 print as IPv6 (byte 12 == 0), as in Sheepdog.
        let id = NodeId::from_socket(addr);
        let back = NodeId::from_socket(id.socket_addr());
        prop_assert_eq!(back, id);
    }

    #[test]
    fn inode_header_round_trips(h in inode_header()) {
        let b = h.encode();
        prop_assert_eq!(b.len(), SD_INODE_HEADER_SIZE);
        prop_assert_eq!(InodeHeader::decode(&b).unwrap(), h);
    }

    #[test]
    fn config_round_trips(c in config()) {
        let b = c.encode();
        prop_assert_eq!(b.len(), 40);
        prop_assert_eq!(SheepdogConfig::decode(&b).unwrap(), c);
    }

    #[test]
    fn epoch_log_round_trips((rec, slots) in epoch_log()) {
        let b = rec.encode(slots);
        prop_assert_eq!(b.len(), EpochLogRecord::size(slots));
        prop_assert_eq!(EpochLogRecord::decode(&b, slots).unwrap(), rec);
    }

    /// STAT_CLUSTER replies are back-to-back records; each decodes from its own offset.
    #[test]
    fn epoch_log_sequence_round_trips(
        recs in prop::collection::vec(epoch_log(), 1..4),
        extra in 0usize..3,
    ) {
        let slots = recs.iter().map(|(r, _)| r.nodes.len()).max().unwrap_or(0) + extra;
        let mut buf = Vec::new();
        for (r, _) in &recs {
            buf.extend(r.encode(slots));
        }
        for (i, chunk) in buf.chunks(EpochLogRecord::size(slots)).enumerate() {
            prop_assert_eq!(&EpochLogRecord::decode(chunk, slots).unwrap(), &recs[i].0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn cluster_info_round_trips(ci in cluster_info()) {
        let b = ci.encode();
        prop_assert_eq!(b.len(), sd_proto::cluster::CLUSTER_INFO_SIZE);
        prop_assert_eq!(ClusterInfo::decode(&b).unwrap(), ci);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn inode_round_trips(inode in sparse_inode()) {
        let b = inode.encode();
        prop_assert_eq!(b.len(), sd_proto::inode::SD_INODE_SIZE);
        let back = Inode::decode(&b).unwrap();
        prop_assert_eq!(back.data_vdi_id.len(), SD_INODE_DATA_INDEX);
        prop_assert_eq!(back.gref.len(), SD_INODE_DATA_INDEX);
        prop_assert!(back == inode);
    }
}

#[test]
fn full_cluster_info_round_trips() {
    let nodes: Vec<SdNode> = (0..SD_MAX_NODES)
        .map(|i| {
            let i = u32::try_from(i).unwrap();
            let mut addr = [0u8; 16];
            addr[12..].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
            SdNode {
                nid: NodeId { addr, port: 7000 },
                nr_vnodes: 128,
                zone: i,
                space: u64::from(i) << 30,
                ..SdNode::default()
            }
        })
        .collect();
    let ci = ClusterInfo {
        proto_ver: 0x0a,
        status: 1,
        nodes,
        ..ClusterInfo::default()
    };
    let b = ci.encode();
    assert_eq!(b.len(), sd_proto::cluster::CLUSTER_INFO_SIZE);
    assert_eq!(ClusterInfo::decode(&b).unwrap(), ci);
}

#[test]
fn old_layout_inode_decodes_with_zero_gref() {
    // ≤ v0.8 inodes end after data_vdi_id[] (4 198 968 bytes).
    let mut inode = Inode::new(InodeHeader {
        name: b"old".to_vec(),
        vdi_id: 7,
        ..InodeHeader::default()
    });
    inode.data_vdi_id[3] = 7;
    inode.gref[3] = GenRef {
        generation: 1,
        count: 1,
    };
    let mut b = inode.encode();
    b.truncate(sd_proto::inode::SD_INODE_GREF_OFFSET);
    let back = Inode::decode(&b).unwrap();
    assert_eq!(back.header, inode.header);
    assert_eq!(back.data_vdi_id, inode.data_vdi_id);
    assert!(back.gref.iter().all(|g| *g == GenRef::default()));
    assert_eq!(back.gref.len(), SD_INODE_DATA_INDEX);
}

// ---------------------------------------------------------------------------------------
// VDI attributes
// ---------------------------------------------------------------------------------------

fn vdi_attr() -> impl Strategy<Value = sd_proto::attr::VdiAttr> {
    (
        c_string(SD_MAX_VDI_LEN),
        c_string(SD_MAX_VDI_LEN),
        any::<u64>(),
        any::<u32>(),
        c_string(SD_MAX_VDI_LEN),
        prop::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(
            |(name, tag, ctime, snap_id, key, value)| sd_proto::attr::VdiAttr {
                name,
                tag,
                ctime,
                snap_id,
                key,
                value,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn vdi_attr_round_trips(a in vdi_attr()) {
        let b = a.encode();
        prop_assert_eq!(b.len(), sd_proto::inode::SD_ATTR_OBJ_SIZE);
        prop_assert_eq!(sd_proto::attr::VdiAttr::decode(&b).unwrap(), a.clone());
        // The id hashes the encoded fixed fields, so it survives the round trip too.
        prop_assert_eq!(sd_proto::attr::attr_id(&b).unwrap(), a.attr_id());
    }
}
