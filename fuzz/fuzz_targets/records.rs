//! Fuzz target: every fixed-layout record decoder (headers, `sd_node` and node lists, inode
//! header and inode, VDI attribute, config, epoch-log record, cluster info, STAT_RECOVERY,
//! STAT_WRITEBACK, GET_LOGLEVEL, GET_EPOCH, GET_OBJ_LIST, FETCH_PEER (with a partial
//! copy's ranges) and GET_STORE_LIST answers) on arbitrary bytes. Checks that none panics and that whatever decodes survives
//! encode → decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sd_proto::attr::VdiAttr;
use sd_proto::cluster::{ClusterInfo, EpochLogRecord, EpochMembers, SheepdogConfig};
use sd_proto::inode::{Inode, InodeHeader};
use sd_proto::node::SdNode;
use sd_proto::oid_list::OidList;
use sd_proto::peer_copy::{Partial, PeerCopy};
use sd_proto::stat::{LogLevel, RecoveryState, WritebackStat};
use sd_proto::store_list::StoreList;
use sd_proto::{RequestHeader, ResponseHeader};

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the node count / slot count the caller would pass; the rest is the record.
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let n = usize::from(sel & 0x0f);
    let slots = match sel >> 4 {
        15 => usize::MAX,
        14 => usize::MAX / 80 + 1,
        k => n + usize::from(k),
    };

    if let Ok(h) = RequestHeader::decode(bytes) {
        assert_eq!(RequestHeader::decode(&h.encode()), Ok(h));
        let _ = (h.obj(), h.vdi(), h.cluster());
    }
    if let Ok(h) = ResponseHeader::decode(bytes) {
        assert_eq!(ResponseHeader::decode(&h.encode()), Ok(h));
        let _ = (h.vdi(), h.node(), h.cluster_default(), h.obj_copies());
    }
    if let Ok(node) = SdNode::decode(bytes) {
        let mut b = Vec::new();
        node.encode_into(&mut b);
        assert_eq!(SdNode::decode(&b), Ok(node));
        let _ = (node.nid.to_string(), node.nid.vnode_seed());
    }
    if let Ok(list) = SdNode::decode_list(bytes, n) {
        assert_eq!(list.len(), n);
        assert_eq!(
            SdNode::decode_list(&SdNode::encode_list(&list), n),
            Ok(list)
        );
    }
    if let Ok(a) = VdiAttr::decode(bytes) {
        assert_eq!(VdiAttr::decode(&a.encode()), Ok(a.clone()));
        let _ = a.attr_id();
    }
    if let Ok(h) = InodeHeader::decode(bytes) {
        assert_eq!(InodeHeader::decode(&h.encode()), Ok(h.clone()));
        let _ = (h.vid(), h.data_objects());
    }
    if let Ok(inode) = Inode::decode(bytes) {
        assert!(Inode::decode(&inode.encode()) == Ok(inode));
    }
    if let Ok(c) = SheepdogConfig::decode(bytes) {
        assert_eq!(SheepdogConfig::decode(&c.encode()), Ok(c));
    }
    if let Ok(r) = EpochLogRecord::decode(bytes, slots) {
        assert!(r.nodes.len() <= slots);
        assert_eq!(EpochLogRecord::decode(&r.encode(slots), slots), Ok(r));
    }
    if let Ok(ci) = ClusterInfo::decode(bytes) {
        assert_eq!(ClusterInfo::decode(&ci.encode()), Ok(ci));
    }
    if let Ok(st) = RecoveryState::decode(bytes) {
        assert_eq!(RecoveryState::decode(&st.encode()), Ok(st));
    }
    if let Ok(st) = WritebackStat::decode(bytes) {
        assert_eq!(WritebackStat::decode(&st.encode()), Ok(st));
    }
    if let Ok(l) = LogLevel::decode(bytes) {
        assert_eq!(LogLevel::decode(&l.encode()), Ok(l));
    }
    if let Ok(l) = OidList::decode(bytes) {
        assert_eq!(OidList::decode(&l.encode()), Ok(l));
    }
    if let Ok(e) = EpochMembers::decode(bytes) {
        assert_eq!(EpochMembers::decode(&e.encode()), Ok(e));
    }
    if let Ok(c) = PeerCopy::decode(bytes::Bytes::copy_from_slice(bytes)) {
        assert_eq!(c.encode(), bytes);
        assert_eq!(PeerCopy::decode(c.encode().into()), Ok(c));
    }
    // A partial copy's ranges, within an object of up to 64 KiB picked by the selector.
    let size = u64::from(sel) << 8;
    if let Ok(p) = Partial::decode(&bytes::Bytes::copy_from_slice(bytes), size) {
        assert_eq!(p.encode(), bytes);
        let mut object = vec![0u8; usize::try_from(size).unwrap_or(0)];
        p.overlay(&mut object);
    }
    let s = StoreList::decode(bytes);
    assert!(
        s.names
            .iter()
            .all(|n| !n.is_empty() && !n.contains(&b' ') && !n.contains(&0))
    );
    assert_eq!(StoreList::decode(&s.encode()), s);
});
