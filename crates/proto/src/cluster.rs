//! Cluster-level records: the `config` file, epoch-log records, the CLUSTER_INFO reply, the
//! GET_EPOCH answer, node status and cluster flags (spec §6.2, §11.4, §12, §13).

use crate::node::{SD_MAX_NODES, SD_NODE_SIZE, SdNode};
use crate::wire::{Reader, Writer, c_str};
use crate::{DecodeError, Epoch};

/// `SD_FORMAT_VERSION` stored in the config file.
pub const SD_FORMAT_VERSION: u16 = 0x0006;
/// Size of the `config` file.
pub const SD_CONFIG_SIZE: usize = 40;
/// Length of a store-driver name field.
pub const STORE_LEN: usize = 16;
/// Default copies when MAKE_FS carries 0.
pub const SD_DEFAULT_COPIES: u8 = 3;
/// Largest copies value.
pub const SD_MAX_COPIES: u8 = 31;
/// Size of an epoch-log record header (before the node slots).
pub const EPOCH_LOG_SIZE: usize = 48;
/// Size of the CLUSTER_INFO reply.
pub const CLUSTER_INFO_SIZE: usize = 48 + SD_MAX_NODES * SD_NODE_SIZE;
/// Size of a VDI bitmap (2^24 bits).
pub const SD_VDI_BITMAP_SIZE: usize = (1 << 24) / 8;

/// `SD_CLUSTER_FLAG_*` bits.
pub mod flags {
    /// Refuse writes when zones < copies.
    pub const STRICT: u16 = 0x0001;
    /// Disk-vnodes mode.
    pub const DISKMODE: u16 = 0x0002;
    /// Vnodes proportional to disk space.
    pub const AUTO_VNODES: u16 = 0x0004;
    /// LOCK_VDI really locks.
    pub const USE_LOCK: u16 = 0x0008;
    /// Recycle VDI ids.
    pub const RECYCLE_VID: u16 = 0x0010;
    /// Avoid full disks.
    pub const AVOID_DISKFULL: u16 = 0x0020;
}

/// Node/cluster status (CLUSTER_INFO byte 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Running.
    Ok,
    /// Waiting for format or for nodes.
    Wait,
    /// Shutting down.
    Shutdown,
    /// Killed.
    Killed,
}

impl NodeStatus {
    /// Wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            NodeStatus::Ok => 1,
            NodeStatus::Wait => 2,
            NodeStatus::Shutdown => 3,
            NodeStatus::Killed => 4,
        }
    }
    /// From the wire value (unknown ⇒ `None`).
    pub const fn from_u8(v: u8) -> Option<NodeStatus> {
        match v {
            1 => Some(NodeStatus::Ok),
            2 => Some(NodeStatus::Wait),
            3 => Some(NodeStatus::Shutdown),
            4 => Some(NodeStatus::Killed),
            _ => None,
        }
    }
}

/// Sheepdog timestamps: seconds in the upper 32 bits, nanoseconds in the lower 32.
pub fn sd_time(secs: u64, nanos: u32) -> u64 {
    (secs << 32) | u64::from(nanos)
}

/// The seconds part of a Sheepdog timestamp.
pub fn sd_time_secs(t: u64) -> u64 {
    t >> 32
}

/// The 40-byte `config` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SheepdogConfig {
    /// Cluster creation time.
    pub ctime: u64,
    /// Cluster flags.
    pub flags: u16,
    /// Default copies.
    pub copies: u8,
    /// Store driver name.
    pub store: Vec<u8>,
    /// Clean-shutdown marker.
    pub shutdown: u8,
    /// Default copy policy.
    pub copy_policy: u8,
    /// Default block size shift.
    pub block_size_shift: u8,
    /// Format version.
    pub version: u16,
    /// Disk space.
    pub space: u64,
}

impl SheepdogConfig {
    /// Decodes 40 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(SheepdogConfig {
            ctime: r.u64()?,
            flags: r.u16()?,
            copies: r.u8()?,
            store: c_str(r.bytes(STORE_LEN)?).to_vec(),
            shutdown: r.u8()?,
            copy_policy: r.u8()?,
            block_size_shift: r.u8()?,
            version: r.u16()?,
            space: r.u64()?,
        })
    }
    /// Encodes 40 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SD_CONFIG_SIZE);
        w.u64(self.ctime)
            .u16(self.flags)
            .u8(self.copies)
            .fixed_str(&self.store, STORE_LEN)
            .u8(self.shutdown)
            .u8(self.copy_policy)
            .u8(self.block_size_shift)
            .u16(self.version)
            .u64(self.space);
        w.buf
    }
}

/// One epoch-log record as STAT_CLUSTER returns it (48 bytes + node slots).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpochLogRecord {
    /// Cluster creation time (first record only).
    pub ctime: u64,
    /// When the epoch began (Unix seconds).
    pub time: u64,
    /// The epoch.
    pub epoch: Epoch,
    /// 1 when auto-recovery is disabled.
    pub disable_recovery: u8,
    /// Default copies.
    pub nr_copies: u8,
    /// Default copy policy.
    pub copy_policy: u8,
    /// Cluster flags.
    pub flags: u16,
    /// Store driver name.
    pub drv_name: Vec<u8>,
    /// Members of this epoch.
    pub nodes: Vec<SdNode>,
}

impl EpochLogRecord {
    /// Encoded size with `slots` node slots.
    pub fn size(slots: usize) -> usize {
        EPOCH_LOG_SIZE + slots * SD_NODE_SIZE
    }

    /// Encodes with exactly `slots` node slots; nodes beyond `slots` are not encoded (the
    /// caller answers BUFFER_SMALL instead of sending a cut list).
    pub fn encode(&self, slots: usize) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::size(slots));
        let nr = u32::try_from(self.nodes.len().min(slots)).unwrap_or(u32::MAX);
        w.u64(self.ctime)
            .u64(self.time)
            .u32(self.epoch.0)
            .u32(nr)
            .u8(self.disable_recovery)
            .u8(self.nr_copies)
            .u8(self.copy_policy)
            .zeros(3)
            .u16(self.flags)
            .fixed_str(&self.drv_name, STORE_LEN);
        for n in self.nodes.iter().take(slots) {
            n.encode_into(&mut w.buf);
        }
        let want = Self::size(slots);
        let have = w.buf.len();
        w.zeros(want.saturating_sub(have));
        w.buf
    }

    /// Decodes one record with `slots` node slots from the front of `buf`.
    pub fn decode(buf: &[u8], slots: usize) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let ctime = r.u64()?;
        let time = r.u64()?;
        let epoch = Epoch(r.u32()?);
        let nr = usize::try_from(r.u32()?).map_err(|_| DecodeError::Truncated)?;
        let disable_recovery = r.u8()?;
        let nr_copies = r.u8()?;
        let copy_policy = r.u8()?;
        r.skip(3)?;
        let flags = r.u16()?;
        let drv_name = c_str(r.bytes(STORE_LEN)?).to_vec();
        if nr > slots {
            return Err(DecodeError::BadLength {
                what: "epoch log nodes",
                len: nr,
            });
        }
        let slot_bytes = slots
            .checked_mul(SD_NODE_SIZE)
            .ok_or(DecodeError::Truncated)?;
        let nodes = SdNode::decode_list(r.bytes(slot_bytes)?, nr)?;
        Ok(EpochLogRecord {
            ctime,
            time,
            epoch,
            disable_recovery,
            nr_copies,
            copy_policy,
            flags,
            drv_name,
            nodes,
        })
    }
}

/// The CLUSTER_INFO reply (491 568 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterInfo {
    /// Internal protocol version (0x0a).
    pub proto_ver: u8,
    /// 1 when auto-recovery is disabled.
    pub disable_recovery: u8,
    /// Current epoch.
    pub epoch: Epoch,
    /// Cluster creation time (0 = not formatted).
    pub ctime: u64,
    /// Cluster flags.
    pub flags: u16,
    /// Default copies.
    pub nr_copies: u8,
    /// Default copy policy.
    pub copy_policy: u8,
    /// Status (1 OK, 2 WAIT, 3 SHUTDOWN, 4 KILLED).
    pub status: u8,
    /// Default block size shift.
    pub block_size_shift: u8,
    /// Default store name.
    pub default_store: Vec<u8>,
    /// Current members.
    pub nodes: Vec<SdNode>,
}

impl ClusterInfo {
    /// Encodes the full fixed-size record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CLUSTER_INFO_SIZE);
        let nr = i16::try_from(self.nodes.len().min(SD_MAX_NODES)).unwrap_or(i16::MAX);
        w.u8(self.proto_ver)
            .u8(self.disable_recovery)
            .bytes(&nr.to_le_bytes())
            .u32(self.epoch.0)
            .u64(self.ctime)
            .u16(self.flags)
            .u8(self.nr_copies)
            .u8(self.copy_policy)
            .u8(self.status)
            .u8(self.block_size_shift)
            .zeros(3)
            .fixed_str(&self.default_store, STORE_LEN)
            .zeros(7);
        for n in self.nodes.iter().take(SD_MAX_NODES) {
            n.encode_into(&mut w.buf);
        }
        let have = w.buf.len();
        w.zeros(CLUSTER_INFO_SIZE.saturating_sub(have));
        w.buf
    }

    /// Decodes the record.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let proto_ver = r.u8()?;
        let disable_recovery = r.u8()?;
        let nr = i16::from_le_bytes(r.array()?);
        let epoch = Epoch(r.u32()?);
        let ctime = r.u64()?;
        let flags = r.u16()?;
        let nr_copies = r.u8()?;
        let copy_policy = r.u8()?;
        let status = r.u8()?;
        let block_size_shift = r.u8()?;
        r.skip(3)?;
        let default_store = c_str(r.bytes(STORE_LEN)?).to_vec();
        r.skip(7)?;
        let nr = usize::try_from(nr).map_err(|_| DecodeError::BadLength {
            what: "cluster info nodes",
            len: 0,
        })?;
        if nr > SD_MAX_NODES {
            return Err(DecodeError::BadLength {
                what: "cluster info nodes",
                len: nr,
            });
        }
        let nodes = SdNode::decode_list(r.bytes(nr * SD_NODE_SIZE)?, nr)?;
        Ok(ClusterInfo {
            proto_ver,
            disable_recovery,
            epoch,
            ctime,
            flags,
            nr_copies,
            copy_policy,
            status,
            block_size_shift,
            default_store,
            nodes,
        })
    }
}

/// The members of one epoch and when it began: the GET_EPOCH answer (spec §6.2), which has
/// the layout of the `epoch/%08u` file: `sd_node` × n, then the u64 start time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpochMembers {
    /// The epoch's members.
    pub nodes: Vec<SdNode>,
    /// When the epoch began (Unix seconds).
    pub time: u64,
}

impl EpochMembers {
    /// Encoded size with `n` members.
    pub fn size(n: usize) -> usize {
        n.saturating_mul(SD_NODE_SIZE).saturating_add(8)
    }

    /// Encodes the nodes, then the time.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::size(self.nodes.len()));
        for n in &self.nodes {
            n.encode_into(&mut w.buf);
        }
        w.u64(self.time);
        w.buf
    }

    /// Decodes a whole answer: the node count is what the length implies (the last 8 bytes
    /// are the time); a body that is not whole nodes is `BadLength`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let body = buf.len().checked_sub(8).ok_or(DecodeError::Truncated)?;
        if !body.is_multiple_of(SD_NODE_SIZE) {
            return Err(DecodeError::BadLength {
                what: "epoch members",
                len: buf.len(),
            });
        }
        let mut r = Reader::new(buf);
        let nodes = SdNode::decode_list(r.bytes(body)?, body / SD_NODE_SIZE)?;
        Ok(EpochMembers {
            nodes,
            time: r.u64()?,
        })
    }
}
