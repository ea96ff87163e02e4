//! The inode object `sd_inode` (spec §9.1): a 4664-byte header, the data index and the
//! generational reference counts.

use crate::wire::{Reader, Writer, c_str};
use crate::{DecodeError, Vid};

/// Length of name, tag and attribute-key fields (NUL included).
pub const SD_MAX_VDI_LEN: usize = 256;
/// Length of a snapshot tag field.
pub const SD_MAX_VDI_TAG_LEN: usize = 256;
/// Offset of `data_vdi_id[]` inside the inode = size of the header.
pub const SD_INODE_HEADER_SIZE: usize = 4664;
/// Number of entries of a normal VDI's data index.
pub const SD_INODE_DATA_INDEX: usize = 1 << 20;
/// Size of the `data_vdi_id[]` array (also the size of a B-tree node or ledger object).
pub const SD_INODE_DATA_INDEX_SIZE: usize = 4 * SD_INODE_DATA_INDEX;
/// Offset of `gref[]`.
pub const SD_INODE_GREF_OFFSET: usize = SD_INODE_HEADER_SIZE + SD_INODE_DATA_INDEX_SIZE;
/// Total inode size.
pub const SD_INODE_SIZE: usize = SD_INODE_GREF_OFFSET + 8 * SD_INODE_DATA_INDEX;
/// Size of a VDI attribute object.
pub const SD_ATTR_OBJ_SIZE: usize = 66_320;
/// Default log2 of the data object size (4 MiB).
pub const SD_DEFAULT_BLOCK_SIZE_SHIFT: u8 = 22;
/// Largest VDI a normal (non-hyper) inode can describe at the default object size: 4 TiB.
pub const SD_OLD_MAX_VDI_SIZE: u64 = (1 << 22) * (SD_INODE_DATA_INDEX as u64);
/// Largest VDI size at all: 16 PiB.
pub const SD_MAX_VDI_SIZE: u64 = (1 << 22) * (1 << 32);
/// Bytes of the header `dog vdi list` reads (header plus the 8-byte B-tree header).
pub const SD_INODE_LIST_READ: usize = SD_INODE_HEADER_SIZE + 8;

/// The inode header: every field before `data_vdi_id[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeHeader {
    /// VDI name bytes (without NUL padding; empty ⇒ deleted).
    pub name: Vec<u8>,
    /// Snapshot tag bytes.
    pub tag: Vec<u8>,
    /// Creation time (`sec << 32 | nsec`).
    pub create_time: u64,
    /// Non-zero for a snapshot.
    pub snap_ctime: u64,
    /// QEMU savevm clock.
    pub vm_clock_nsec: u64,
    /// Size in bytes.
    pub vdi_size: u64,
    /// QEMU savevm state size.
    pub vm_state_size: u64,
    /// 0 = replication.
    pub copy_policy: u8,
    /// 0 normal, 1 hyper.
    pub store_policy: u8,
    /// Redundancy.
    pub nr_copies: u8,
    /// log2 of the object size.
    pub block_size_shift: u8,
    /// Position in the snapshot chain (1 for a fresh VDI).
    pub snap_id: u32,
    /// Own vid (raw).
    pub vdi_id: u32,
    /// Parent vid (0 = none).
    pub parent_vdi_id: u32,
    /// Next B-tree node id.
    pub btree_counter: u32,
}

impl Default for InodeHeader {
    fn default() -> Self {
        InodeHeader {
            name: Vec::new(),
            tag: Vec::new(),
            create_time: 0,
            snap_ctime: 0,
            vm_clock_nsec: 0,
            vdi_size: 0,
            vm_state_size: 0,
            copy_policy: 0,
            store_policy: 0,
            nr_copies: 0,
            block_size_shift: SD_DEFAULT_BLOCK_SIZE_SHIFT,
            snap_id: 1,
            vdi_id: 0,
            parent_vdi_id: 0,
            btree_counter: 0,
        }
    }
}

impl InodeHeader {
    /// Decodes the first 572 bytes of `buf` (the rest of the header is unused).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(InodeHeader {
            name: c_str(r.bytes(SD_MAX_VDI_LEN)?).to_vec(),
            tag: c_str(r.bytes(SD_MAX_VDI_TAG_LEN)?).to_vec(),
            create_time: r.u64()?,
            snap_ctime: r.u64()?,
            vm_clock_nsec: r.u64()?,
            vdi_size: r.u64()?,
            vm_state_size: r.u64()?,
            copy_policy: r.u8()?,
            store_policy: r.u8()?,
            nr_copies: r.u8()?,
            block_size_shift: r.u8()?,
            snap_id: r.u32()?,
            vdi_id: r.u32()?,
            parent_vdi_id: r.u32()?,
            btree_counter: r.u32()?,
        })
    }

    /// Encodes the full 4664-byte header.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SD_INODE_HEADER_SIZE);
        w.fixed_str(&self.name, SD_MAX_VDI_LEN)
            .fixed_str(&self.tag, SD_MAX_VDI_TAG_LEN)
            .u64(self.create_time)
            .u64(self.snap_ctime)
            .u64(self.vm_clock_nsec)
            .u64(self.vdi_size)
            .u64(self.vm_state_size)
            .u8(self.copy_policy)
            .u8(self.store_policy)
            .u8(self.nr_copies)
            .u8(self.block_size_shift)
            .u32(self.snap_id)
            .u32(self.vdi_id)
            .u32(self.parent_vdi_id)
            .u32(self.btree_counter);
        let used = w.buf.len();
        w.zeros(SD_INODE_HEADER_SIZE - used);
        w.buf
    }

    /// True for a snapshot (read-only) inode.
    pub fn is_snapshot(&self) -> bool {
        self.snap_ctime != 0
    }

    /// True when the inode has been deleted (empty name).
    pub fn is_deleted(&self) -> bool {
        self.name.is_empty()
    }

    /// The own vid, if in range.
    pub fn vid(&self) -> Option<Vid> {
        Vid::new(self.vdi_id)
    }

    /// Object size in bytes.
    pub fn object_size(&self) -> u64 {
        1u64 << (self.block_size_shift & 63)
    }

    /// Number of data objects covering `vdi_size`.
    pub fn data_objects(&self) -> u64 {
        self.vdi_size.div_ceil(self.object_size())
    }
}

/// One `gref` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenRef {
    /// Generation.
    pub generation: i32,
    /// Count.
    pub count: i32,
}

/// A whole inode object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// The header.
    pub header: InodeHeader,
    /// `data_vdi_id[]`: owner vid per data index, 0 = unallocated.
    pub data_vdi_id: Vec<u32>,
    /// Generational reference counts.
    pub gref: Vec<GenRef>,
}

impl Inode {
    /// A fresh inode with an empty index.
    pub fn new(header: InodeHeader) -> Self {
        Inode {
            header,
            data_vdi_id: vec![0; SD_INODE_DATA_INDEX],
            gref: vec![GenRef::default(); SD_INODE_DATA_INDEX],
        }
    }

    /// Decodes a full inode. A buffer of exactly the ≤ v0.8 size (header + index, no `gref`)
    /// decodes with zeroed gref; any other length short of the full inode is an error.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let header = InodeHeader::decode(buf)?;
        let index = buf
            .get(SD_INODE_HEADER_SIZE..SD_INODE_GREF_OFFSET)
            .ok_or(DecodeError::Truncated)?;
        let data_vdi_id = decode_index(index);
        let gref = match buf.get(SD_INODE_GREF_OFFSET..SD_INODE_SIZE) {
            None if buf.len() != SD_INODE_GREF_OFFSET => return Err(DecodeError::Truncated),
            Some(g) => g
                .chunks_exact(8)
                .map(|c| {
                    let mut r = Reader::new(c);
                    GenRef {
                        generation: r.i32().unwrap_or_default(),
                        count: r.i32().unwrap_or_default(),
                    }
                })
                .collect(),
            None => vec![GenRef::default(); SD_INODE_DATA_INDEX],
        };
        Ok(Inode {
            header,
            data_vdi_id,
            gref,
        })
    }

    /// Encodes the full 12 587 576-byte object.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SD_INODE_SIZE);
        w.bytes(&self.header.encode());
        for i in 0..SD_INODE_DATA_INDEX {
            w.u32(self.data_vdi_id.get(i).copied().unwrap_or(0));
        }
        for i in 0..SD_INODE_DATA_INDEX {
            let g = self.gref.get(i).copied().unwrap_or_default();
            w.i32(g.generation).i32(g.count);
        }
        w.buf
    }
}

/// Decodes a packed little-endian `u32` index slice (trailing partial entry ignored).
pub fn decode_index(buf: &[u8]) -> Vec<u32> {
    buf.chunks_exact(4)
        .map(|c| {
            let mut a = [0u8; 4];
            a.copy_from_slice(c);
            u32::from_le_bytes(a)
        })
        .collect()
}

/// Byte offset of `data_vdi_id[idx]` inside the inode.
pub const fn data_index_offset(idx: u32) -> u64 {
    SD_INODE_HEADER_SIZE as u64 + 4 * idx as u64
}
