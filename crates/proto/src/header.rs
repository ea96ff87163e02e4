//! The 48-byte request and response headers (spec §2–§4) and the typed views of their
//! 32-byte argument unions.

use crate::node::NodeId;
use crate::wire::{Reader, Writer};
use crate::{DecodeError, Epoch, Oid, Opcode, SdResult, Vid};

/// Size of a request header.
pub const SD_REQ_SIZE: usize = 48;
/// Size of a response header.
pub const SD_RSP_SIZE: usize = 48;

/// Header flag bits (spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// A payload of `data_length` bytes follows the header.
    pub const WRITE: Flags = Flags(0x0001);
    /// CREATE_AND_WRITE is a copy-on-write of `cow_oid`.
    pub const COW: Flags = Flags(0x0002);
    /// Writeback hint.
    pub const CACHE: Flags = Flags(0x0004);
    /// Bypass caches.
    pub const DIRECT: Flags = Flags(0x0008);
    /// Carries a payload and expects one back.
    pub const PIGGYBACK: Flags = Flags(0x0010);
    /// Request from tgt.
    pub const TGT: Flags = Flags(0x0020);
    /// Internally forwarded (master only).
    pub const FWD: Flags = Flags(0x0040);
    /// Recovery read.
    pub const RECOVERY: Flags = Flags(0x0080);
    /// Wildcard read / attribute create (same bit, op-specific).
    pub const WILDCARD: Flags = Flags(0x0100);
    /// GET_VDI_ATTR: create if missing.
    pub const CREAT: Flags = Flags(0x0100);
    /// GET_VDI_ATTR: fail if it exists.
    pub const EXCL: Flags = Flags(0x0200);
    /// GET_VDI_ATTR: delete.
    pub const DEL: Flags = Flags(0x0400);

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// A decoded request header. The 32-byte argument union is kept raw; use the typed views
/// ([`RequestHeader::obj`], [`RequestHeader::vdi`], ...) the opcode calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Protocol version byte.
    pub proto_ver: u8,
    /// Operation.
    pub opcode: Opcode,
    /// Flag bits.
    pub flags: Flags,
    /// Sender's epoch.
    pub epoch: Epoch,
    /// Request id, echoed in the response.
    pub id: u32,
    /// Payload length (WRITE) or reply buffer size.
    pub data_length: u32,
    /// Bytes 16..48.
    pub args: [u8; 32],
}

impl RequestHeader {
    /// A header for `opcode` with the protocol version a client sends for it.
    pub fn new(opcode: Opcode) -> Self {
        RequestHeader {
            proto_ver: opcode.proto_ver(),
            opcode,
            flags: Flags::default(),
            epoch: Epoch(0),
            id: 0,
            data_length: 0,
            args: [0; 32],
        }
    }

    /// True if a payload of `data_length` bytes follows on the wire.
    pub fn has_payload(&self) -> bool {
        self.flags.contains(Flags::WRITE)
    }

    /// Decodes exactly 48 bytes. Never fails on content, only on length.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(RequestHeader {
            proto_ver: r.u8()?,
            opcode: Opcode::from_u8(r.u8()?),
            flags: Flags(r.u16()?),
            epoch: Epoch(r.u32()?),
            id: r.u32()?,
            data_length: r.u32()?,
            args: r.array()?,
        })
    }

    /// Encodes into 48 bytes.
    pub fn encode(&self) -> [u8; SD_REQ_SIZE] {
        let mut w = Writer::with_capacity(SD_REQ_SIZE);
        w.u8(self.proto_ver)
            .u8(self.opcode.as_u8())
            .u16(self.flags.0)
            .u32(self.epoch.0)
            .u32(self.id)
            .u32(self.data_length)
            .bytes(&self.args);
        to_array(&w.buf)
    }

    /// The object-I/O view of the arguments.
    pub fn obj(&self) -> ObjArgs {
        ObjArgs::decode(&self.args)
    }
    /// The VDI view of the arguments.
    pub fn vdi(&self) -> VdiArgs {
        VdiArgs::decode(&self.args)
    }
    /// The cluster view of the arguments.
    pub fn cluster(&self) -> ClusterArgs {
        ClusterArgs::decode(&self.args)
    }
    /// Builder: sets object arguments.
    pub fn with_obj(mut self, a: ObjArgs) -> Self {
        self.args = a.encode();
        self
    }
    /// The erasure-coded strip view of the arguments (the strip opcodes 0xF4..=0xF7).
    pub fn strip(&self) -> StripArgs {
        StripArgs::from_obj(ObjArgs::decode(&self.args))
    }
    /// Builder: sets strip arguments.
    pub fn with_strip(mut self, a: StripArgs) -> Self {
        self.args = a.to_obj().encode();
        self
    }
    /// Builder: sets VDI arguments.
    pub fn with_vdi(mut self, a: VdiArgs) -> Self {
        self.args = a.encode();
        self
    }
    /// Builder: sets cluster arguments.
    pub fn with_cluster(mut self, a: ClusterArgs) -> Self {
        self.args = a.encode();
        self
    }
    /// The forwarding view of the arguments (REPAIR_REPLICA).
    pub fn forw(&self) -> ForwArgs {
        ForwArgs::decode(&self.args)
    }
    /// Builder: sets forwarding arguments.
    pub fn with_forw(mut self, a: ForwArgs) -> Self {
        self.args = a.encode();
        self
    }
    /// The `vdi_state` view of the arguments (NOTIFY_VDI_ADD, ALTER_VDI_COPY).
    pub fn vdi_state(&self) -> VdiStateArgs {
        VdiStateArgs::decode(&self.args)
    }
    /// Builder: sets `vdi_state` arguments.
    pub fn with_vdi_state(mut self, a: VdiStateArgs) -> Self {
        self.args = a.encode();
        self
    }
}

/// Forwarding arguments (REPAIR_REPLICA): the object and the node that holds a good copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwArgs {
    /// The object to repair.
    pub oid: Oid,
    /// Where to fetch it from.
    pub from: NodeId,
}

impl ForwArgs {
    /// Decodes from the argument union; total (never fails).
    pub fn decode(a: &[u8; 32]) -> Self {
        let mut r = Reader::new(a);
        let oid = Oid::new(r.u64().unwrap_or_default());
        let addr = r.array().unwrap_or_default();
        let port = r.u16().unwrap_or_default();
        ForwArgs {
            oid,
            from: NodeId { addr, port },
        }
    }
    /// Encodes into the argument union.
    pub fn encode(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(32);
        w.u64(self.oid.get())
            .bytes(&self.from.addr)
            .u16(self.from.port)
            .zeros(6);
        to_array(&w.buf)
    }
}

fn to_array<const N: usize>(v: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, i) in out.iter_mut().zip(v) {
        *o = *i;
    }
    out
}

/// Object I/O arguments (bytes 16..48 of the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjArgs {
    /// Target object.
    pub oid: Oid,
    /// Copy-on-write source.
    pub cow_oid: Oid,
    /// Redundancy (0 = the VDI's).
    pub copies: u8,
    /// 0 = replication.
    pub copy_policy: u8,
    /// Erasure strip index.
    pub ec_index: u8,
    /// Target epoch (recovery reads etc.).
    pub tgt_epoch: Epoch,
    /// Byte offset inside the object. QEMU encodes a u64 here; the high half must be 0.
    pub offset: u64,
}

impl ObjArgs {
    /// Decodes from the argument union; total (never fails).
    pub fn decode(a: &[u8; 32]) -> Self {
        let mut r = Reader::new(a);
        // The union is exactly 32 bytes, so none of these reads can run short.
        let oid = Oid::new(r.u64().unwrap_or_default());
        let cow_oid = Oid::new(r.u64().unwrap_or_default());
        let copies = r.u8().unwrap_or_default();
        let copy_policy = r.u8().unwrap_or_default();
        let ec_index = r.u8().unwrap_or_default();
        let _reserved = r.u8();
        let tgt_epoch = Epoch(r.u32().unwrap_or_default());
        let offset = r.u64().unwrap_or_default();
        ObjArgs {
            oid,
            cow_oid,
            copies,
            copy_policy,
            ec_index,
            tgt_epoch,
            offset,
        }
    }
    /// Encodes into the argument union.
    pub fn encode(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(32);
        w.u64(self.oid.get())
            .u64(self.cow_oid.get())
            .u8(self.copies)
            .u8(self.copy_policy)
            .u8(self.ec_index)
            .u8(0)
            .u32(self.tgt_epoch.0)
            .u64(self.offset);
        to_array(&w.buf)
    }
}

/// Erasure-coded strip arguments (sheepdog-rs strip opcodes): the object layout of the
/// union, with the write id where a copy-on-write source goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StripArgs {
    /// The object.
    pub oid: Oid,
    /// The write's id, the same on every holder of the stripe.
    pub wid: u64,
    /// The object's copy policy (non-zero: erasure coded).
    pub copy_policy: u8,
    /// The strip's index.
    pub ec_index: u8,
    /// Byte offset inside the strip.
    pub offset: u64,
}

impl StripArgs {
    fn from_obj(o: ObjArgs) -> Self {
        StripArgs {
            oid: o.oid,
            wid: o.cow_oid.get(),
            copy_policy: o.copy_policy,
            ec_index: o.ec_index,
            offset: o.offset,
        }
    }

    fn to_obj(self) -> ObjArgs {
        ObjArgs {
            oid: self.oid,
            cow_oid: Oid::new(self.wid),
            copy_policy: self.copy_policy,
            ec_index: self.ec_index,
            offset: self.offset,
            ..ObjArgs::default()
        }
    }
}

/// VDI arguments (NEW_VDI, LOCK_VDI, RELEASE_VDI, GET_VDI_INFO, DEL_VDI, GET_VDI_ATTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VdiArgs {
    /// Size in bytes (NEW_VDI).
    pub vdi_size: u64,
    /// Parent vid (NEW_VDI) or vid to unlock (RELEASE_VDI); raw, may be out of range.
    pub base_vdi_id: u32,
    /// Redundancy (0 = cluster default).
    pub copies: u8,
    /// Copy policy.
    pub copy_policy: u8,
    /// 0 normal, 1 hyper volume.
    pub store_policy: u8,
    /// log2 of the object size (0 = cluster default).
    pub block_size_shift: u8,
    /// Snapshot id (lookups) / snapshot request (NEW_VDI).
    pub snapid: u32,
    /// Lock type.
    pub lock_type: u32,
}

impl VdiArgs {
    /// Decodes from the argument union; total.
    pub fn decode(a: &[u8; 32]) -> Self {
        let mut r = Reader::new(a);
        VdiArgs {
            vdi_size: r.u64().unwrap_or_default(),
            base_vdi_id: r.u32().unwrap_or_default(),
            copies: r.u8().unwrap_or_default(),
            copy_policy: r.u8().unwrap_or_default(),
            store_policy: r.u8().unwrap_or_default(),
            block_size_shift: r.u8().unwrap_or_default(),
            snapid: r.u32().unwrap_or_default(),
            lock_type: r.u32().unwrap_or_default(),
        }
    }
    /// Encodes into the argument union.
    pub fn encode(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(32);
        w.u64(self.vdi_size)
            .u32(self.base_vdi_id)
            .u8(self.copies)
            .u8(self.copy_policy)
            .u8(self.store_policy)
            .u8(self.block_size_shift)
            .u32(self.snapid)
            .u32(self.lock_type)
            .zeros(8);
        to_array(&w.buf)
    }
}

/// `vdi_state` arguments (NOTIFY_VDI_ADD, ALTER_VDI_COPY): off 16 u32 old_vid; 20 u32
/// new_vid; 24 u8 copies; 25 u8 set_bitmap; 26 u8 copy_policy; 27 u8 block_size_shift;
/// 28..48 unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VdiStateArgs {
    /// The VDI before (NOTIFY_VDI_ADD).
    pub old_vid: u32,
    /// The VDI (ALTER_VDI_COPY: the one whose copies change).
    pub new_vid: u32,
    /// Copies.
    pub copies: u8,
    /// NOTIFY_VDI_ADD: set the in-use bit (0 = false).
    pub set_bitmap: u8,
    /// Copy policy (0 = replication).
    pub copy_policy: u8,
    /// log2 of the object size.
    pub block_size_shift: u8,
}

impl VdiStateArgs {
    /// Decodes from the argument union; total.
    pub fn decode(a: &[u8; 32]) -> Self {
        let mut r = Reader::new(a);
        VdiStateArgs {
            old_vid: r.u32().unwrap_or_default(),
            new_vid: r.u32().unwrap_or_default(),
            copies: r.u8().unwrap_or_default(),
            set_bitmap: r.u8().unwrap_or_default(),
            copy_policy: r.u8().unwrap_or_default(),
            block_size_shift: r.u8().unwrap_or_default(),
        }
    }
    /// Encodes into the argument union.
    pub fn encode(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(32);
        w.u32(self.old_vid)
            .u32(self.new_vid)
            .u8(self.copies)
            .u8(self.set_bitmap)
            .u8(self.copy_policy)
            .u8(self.block_size_shift)
            .zeros(20);
        to_array(&w.buf)
    }
}

/// Cluster arguments (MAKE_FS, STAT_CLUSTER, ALTER_CLUSTER_COPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterArgs {
    /// Cluster creation time (`sec << 32 | nsec`).
    pub ctime: u64,
    /// Default copies.
    pub copies: u8,
    /// Default copy policy.
    pub copy_policy: u8,
    /// `SD_CLUSTER_FLAG_*`.
    pub flags: u16,
    /// STAT_CLUSTER: node slots per epoch record.
    pub nodes_nr: u32,
    /// Default block size shift.
    pub block_size_shift: u8,
}

impl ClusterArgs {
    /// Decodes from the argument union; total.
    pub fn decode(a: &[u8; 32]) -> Self {
        let mut r = Reader::new(a);
        let _oid = r.u64();
        let ctime = r.u64().unwrap_or_default();
        let copies = r.u8().unwrap_or_default();
        let copy_policy = r.u8().unwrap_or_default();
        let flags = r.u16().unwrap_or_default();
        let _tag = r.u32();
        let nodes_nr = r.u32().unwrap_or_default();
        let block_size_shift = r.u8().unwrap_or_default();
        ClusterArgs {
            ctime,
            copies,
            copy_policy,
            flags,
            nodes_nr,
            block_size_shift,
        }
    }
    /// Encodes into the argument union.
    pub fn encode(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(32);
        w.u64(0)
            .u64(self.ctime)
            .u8(self.copies)
            .u8(self.copy_policy)
            .u16(self.flags)
            .u32(0)
            .u32(self.nodes_nr)
            .u8(self.block_size_shift)
            .zeros(3);
        to_array(&w.buf)
    }
}

/// A decoded response header; bytes 20..48 are kept raw behind typed views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// Protocol version (sheep sends 0).
    pub proto_ver: u8,
    /// Echo of the request opcode.
    pub opcode: Opcode,
    /// Flags (sheep sends 0).
    pub flags: Flags,
    /// The server's current epoch.
    pub epoch: Epoch,
    /// Echo of the request id.
    pub id: u32,
    /// Bytes of payload that follow.
    pub data_length: u32,
    /// Result code.
    pub result: SdResult,
    /// Bytes 20..48.
    pub args: [u8; 28],
}

impl ResponseHeader {
    /// A response to `req` with `result`, no payload and zeroed arguments.
    pub fn reply_to(req: &RequestHeader, epoch: Epoch, result: SdResult) -> Self {
        ResponseHeader {
            proto_ver: 0,
            opcode: req.opcode,
            flags: Flags::default(),
            epoch,
            id: req.id,
            data_length: 0,
            result,
            args: [0; 28],
        }
    }

    /// Decodes exactly 48 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(ResponseHeader {
            proto_ver: r.u8()?,
            opcode: Opcode::from_u8(r.u8()?),
            flags: Flags(r.u16()?),
            epoch: Epoch(r.u32()?),
            id: r.u32()?,
            data_length: r.u32()?,
            result: SdResult::from_u32(r.u32()?),
            args: r.array()?,
        })
    }

    /// Encodes into 48 bytes.
    pub fn encode(&self) -> [u8; SD_RSP_SIZE] {
        let mut w = Writer::with_capacity(SD_RSP_SIZE);
        w.u8(self.proto_ver)
            .u8(self.opcode.as_u8())
            .u16(self.flags.0)
            .u32(self.epoch.0)
            .u32(self.id)
            .u32(self.data_length)
            .u32(self.result.as_u32())
            .bytes(&self.args);
        to_array(&w.buf)
    }

    /// VDI view: (vdi_id, attr_id, copies, block_size_shift).
    pub fn vdi(&self) -> VdiRsp {
        let mut r = Reader::new(&self.args);
        let _rsvd = r.u32();
        VdiRsp {
            vdi_id: r.u32().unwrap_or_default(),
            attr_id: r.u32().unwrap_or_default(),
            copies: r.u8().unwrap_or_default(),
            block_size_shift: r.u8().unwrap_or_default(),
        }
    }
    /// Builder: sets the VDI view.
    pub fn with_vdi(mut self, v: VdiRsp) -> Self {
        let mut w = Writer::with_capacity(28);
        w.u32(0)
            .u32(v.vdi_id)
            .u32(v.attr_id)
            .u8(v.copies)
            .u8(v.block_size_shift)
            .zeros(14);
        self.args = to_array(&w.buf);
        self
    }
    /// Node view: (nr_nodes, store_size, store_free).
    pub fn node(&self) -> NodeRsp {
        let mut r = Reader::new(&self.args);
        let nr_nodes = r.u32().unwrap_or_default();
        let writeback = r.u8().unwrap_or_default() != 0;
        let _ = r.skip(7);
        NodeRsp {
            nr_nodes,
            writeback,
            store_size: r.u64().unwrap_or_default(),
            store_free: r.u64().unwrap_or_default(),
        }
    }
    /// Builder: sets the node view.
    pub fn with_node(mut self, n: NodeRsp) -> Self {
        let mut w = Writer::with_capacity(28);
        w.u32(n.nr_nodes)
            .u8(u8::from(n.writeback))
            .zeros(7)
            .u64(n.store_size)
            .u64(n.store_free);
        self.args = to_array(&w.buf);
        self
    }
    /// Cluster-default view: (copies, copy_policy, block_size_shift).
    pub fn cluster_default(&self) -> (u8, u8, u8) {
        let [c, p, s, ..] = self.args;
        (c, p, s)
    }
    /// Builder: sets the cluster-default view.
    pub fn with_cluster_default(mut self, copies: u8, policy: u8, shift: u8) -> Self {
        self.args = [0; 28];
        let [c, p, s, ..] = &mut self.args;
        *c = copies;
        *p = policy;
        *s = shift;
        self
    }
    /// Hash view (GET_HASH): the SHA-1 digest at bytes 24..44.
    pub fn hash(&self) -> [u8; 20] {
        let mut d = [0u8; 20];
        d.copy_from_slice(&self.args[4..24]);
        d
    }
    /// Builder: sets the hash view.
    pub fn with_hash(mut self, digest: [u8; 20]) -> Self {
        self.args = [0; 28];
        self.args[4..24].copy_from_slice(&digest);
        self
    }
    /// Object view: the copies byte.
    pub fn obj_copies(&self) -> u8 {
        let [c, ..] = self.args;
        c
    }
}

/// VDI fields of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VdiRsp {
    /// The VDI id found or created (raw).
    pub vdi_id: u32,
    /// Attribute id (GET_VDI_ATTR).
    pub attr_id: u32,
    /// The VDI's copies.
    pub copies: u8,
    /// The VDI's block size shift.
    pub block_size_shift: u8,
}

impl VdiRsp {
    /// The vid, if in range.
    pub fn vid(&self) -> Option<Vid> {
        Vid::new(self.vdi_id)
    }
}

/// Node fields of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeRsp {
    /// GET_NODE_LIST: number of nodes.
    pub nr_nodes: u32,
    /// STAT_SHEEP, sheepdog-rs: the node runs the writeback store (`sheep -W`). Byte 24,
    /// reserved (zero) in Sheepdog 1.0.
    pub writeback: bool,
    /// STAT_SHEEP: store size.
    pub store_size: u64,
    /// STAT_SHEEP: free bytes.
    pub store_free: u64,
}
