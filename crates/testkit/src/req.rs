//! Request builders for the operations tests send by hand: a well-formed header for each,
//! which a test may then break field by field.

use sd_proto::cluster::SD_VDI_BITMAP_SIZE;
use sd_proto::inode::SD_MAX_VDI_LEN;
use sd_proto::node::SD_NODE_SIZE;
use sd_proto::{ClusterArgs, Flags, ObjArgs, Oid, Opcode, RequestHeader, VdiArgs, Vid};

/// The store name `dog cluster format` sends by default, NUL included.
pub const STORE_PLAIN: &[u8] = b"plain\0";

/// Reply buffer of GET_NODE_LIST big enough for a small cluster.
pub const NODE_LIST_BUF: u32 = 16 * NODE_SIZE;

// Protocol sizes, all far below u32::MAX, as the u32 the header's data_length takes.
#[allow(clippy::cast_possible_truncation)]
const NAME_LEN: u32 = SD_MAX_VDI_LEN as u32;
#[allow(clippy::cast_possible_truncation)]
const ATTR_LEN: u32 = sd_proto::inode::SD_ATTR_OBJ_SIZE as u32;
#[allow(clippy::cast_possible_truncation)]
const NODE_SIZE: u32 = SD_NODE_SIZE as u32;
#[allow(clippy::cast_possible_truncation)]
const BITMAP_LEN: u32 = SD_VDI_BITMAP_SIZE as u32;
#[allow(clippy::cast_possible_truncation)]
const EPOCH_LOG_LEN: u32 = sd_proto::cluster::EPOCH_LOG_SIZE as u32;
#[allow(clippy::cast_possible_truncation)]
const STORE_PLAIN_LEN: u32 = STORE_PLAIN.len() as u32;

fn obj_req(op: Opcode, oid: Oid, offset: u64, len: u32, flags: Flags) -> RequestHeader {
    let mut h = RequestHeader::new(op).with_obj(ObjArgs {
        oid,
        offset,
        ..ObjArgs::default()
    });
    h.flags = flags;
    h.data_length = len;
    h
}

/// READ_OBJ of `len` bytes at `offset`.
pub fn read_obj(oid: Oid, offset: u64, len: u32) -> RequestHeader {
    obj_req(Opcode::ReadObj, oid, offset, len, Flags::default())
}

/// WRITE_OBJ of a `len`-byte payload at `offset`.
pub fn write_obj(oid: Oid, offset: u64, len: u32) -> RequestHeader {
    obj_req(Opcode::WriteObj, oid, offset, len, Flags::WRITE)
}

/// CREATE_AND_WRITE_OBJ with a `len`-byte payload at `offset`.
pub fn create_and_write_obj(oid: Oid, offset: u64, len: u32) -> RequestHeader {
    obj_req(Opcode::CreateAndWriteObj, oid, offset, len, Flags::WRITE)
}

/// REMOVE_OBJ.
pub fn remove_obj(oid: Oid) -> RequestHeader {
    obj_req(Opcode::RemoveObj, oid, 0, 0, Flags::default())
}

/// A 256-byte, NUL-padded VDI name field. Panics if `name` does not fit (a test bug).
pub fn name_field(name: &str) -> Vec<u8> {
    assert!(
        name.len() < SD_MAX_VDI_LEN,
        "VDI name {name:?} does not fit the 256-byte field"
    );
    let mut f = name.as_bytes().to_vec();
    f.resize(SD_MAX_VDI_LEN, 0);
    f
}

fn vdi_req(op: Opcode, args: VdiArgs, len: u32) -> RequestHeader {
    let mut h = RequestHeader::new(op).with_vdi(args);
    h.flags = Flags::WRITE;
    h.data_length = len;
    h
}

/// NEW_VDI of `size` bytes with cluster-default copies and object size; the payload is a
/// [`name_field`].
pub fn new_vdi(size: u64) -> RequestHeader {
    vdi_req(
        Opcode::NewVdi,
        VdiArgs {
            vdi_size: size,
            ..VdiArgs::default()
        },
        NAME_LEN,
    )
}

/// GET_VDI_INFO of the working VDI; the payload is a [`name_field`].
pub fn get_vdi_info() -> RequestHeader {
    vdi_req(Opcode::GetVdiInfo, VdiArgs::default(), NAME_LEN)
}

/// LOCK_VDI of the working VDI (QEMU's open); the payload is a [`name_field`].
pub fn lock_vdi() -> RequestHeader {
    vdi_req(Opcode::LockVdi, VdiArgs::default(), NAME_LEN)
}

/// RELEASE_VDI of `vid` (QEMU's close).
pub fn release_vdi(vid: Vid) -> RequestHeader {
    vdi_req(
        Opcode::ReleaseVdi,
        VdiArgs {
            base_vdi_id: vid.get(),
            ..VdiArgs::default()
        },
        0,
    )
}

/// DEL_VDI of the working VDI; the payload is a [`name_field`].
pub fn del_vdi() -> RequestHeader {
    vdi_req(Opcode::DelVdi, VdiArgs::default(), NAME_LEN)
}

/// GET_VDI_ATTR of the working VDI with `flags` (CREAT, EXCL, DEL); the payload is a full
/// 66 320-byte `sd_proto::attr::VdiAttr` record.
pub fn get_vdi_attr(flags: Flags) -> RequestHeader {
    let mut h = vdi_req(Opcode::GetVdiAttr, VdiArgs::default(), ATTR_LEN);
    h.flags = h.flags | flags;
    h
}

/// READ_VDIS with the 2 MiB buffer it requires.
pub fn read_vdis() -> RequestHeader {
    let mut h = RequestHeader::new(Opcode::ReadVdis);
    h.data_length = BITMAP_LEN;
    h
}

/// MAKE_FS with `copies` (0 = server default), the default object size and `ctime`; the
/// payload is [`STORE_PLAIN`].
pub fn make_fs(ctime: u64, copies: u8) -> RequestHeader {
    let mut h = RequestHeader::new(Opcode::MakeFs).with_cluster(ClusterArgs {
        ctime,
        copies,
        ..ClusterArgs::default()
    });
    h.flags = Flags::WRITE;
    h.data_length = STORE_PLAIN_LEN;
    h
}

/// GET_NODE_LIST with a [`NODE_LIST_BUF`] reply buffer.
pub fn get_node_list() -> RequestHeader {
    let mut h = RequestHeader::new(Opcode::GetNodeList);
    h.data_length = NODE_LIST_BUF;
    h
}

/// STAT_CLUSTER asking for up to `records` epoch records of `nodes_nr` node slots each.
pub fn stat_cluster(nodes_nr: u32, records: u32) -> RequestHeader {
    let mut h = RequestHeader::new(Opcode::StatCluster).with_cluster(ClusterArgs {
        nodes_nr,
        ..ClusterArgs::default()
    });
    let rec = EPOCH_LOG_LEN + nodes_nr * NODE_SIZE;
    h.data_length = records * rec;
    h
}

/// Bytes of a STAT_WRITEBACK reply ([`sd_proto::stat::WritebackStat`]).
pub const STAT_WRITEBACK_LEN: u32 = 40;
const _: () = assert!(STAT_WRITEBACK_LEN as usize == sd_proto::stat::WRITEBACK_STAT_SIZE);

/// FLUSH_VDI of `vid` (obj.oid = its inode oid).
pub fn flush_vdi(vid: Vid) -> RequestHeader {
    obj_req(Opcode::FlushVdi, vid.inode_oid(), 0, 0, Flags::default())
}

/// STAT_WRITEBACK (internal protocol) of `vid`: dirty objects of `vid` on the node, the
/// node's dirty bytes, FLUSH_PEER served in total and for `vid`, copies of `vid` lost to a
/// failed sync and not yet rebuilt.
pub fn stat_writeback(vid: Vid) -> RequestHeader {
    obj_req(
        Opcode::StatWriteback,
        vid.inode_oid(),
        0,
        STAT_WRITEBACK_LEN,
        Flags::default(),
    )
}

/// INJECT_SYNC_FAILURE (internal; only in sheep built with `--features sheep/failpoints`):
/// the next fdatasync of `oid` on the receiving node fails with EIO.
pub fn inject_sync_failure(oid: Oid) -> RequestHeader {
    obj_req(Opcode::InjectSyncFailure, oid, 0, 0, Flags::default())
}
