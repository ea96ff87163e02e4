//! Object ids, VDI ids and epochs (spec §8): newtypes with the Sheepdog bit layout.

use std::fmt;

/// Bit marking an inode (VDI) object.
pub const VDI_BIT: u64 = 1 << 63;
/// Bit marking a VM-state (savevm) object.
pub const VMSTATE_BIT: u64 = 1 << 62;
/// Bit marking a VDI attribute object.
pub const VDI_ATTR_BIT: u64 = 1 << 61;
/// Bit marking a B-tree index node of a hyper volume.
pub const VDI_BTREE_BIT: u64 = 1 << 60;
/// Bit marking a refcount ledger object.
pub const LEDGER_BIT: u64 = 1 << 59;
/// Mask of the VDI id inside an oid.
pub const VID_MASK: u64 = 0x00FF_FFFF_0000_0000;
/// Number of VDI ids (2^24); vid 0 is never used.
pub const SD_NR_VDIS: u32 = 1 << 24;

/// A 24-bit VDI id. Constructed only through [`Vid::new`], which checks the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Vid(u32);

impl Vid {
    /// Returns `Some` if `v` fits in 24 bits.
    pub const fn new(v: u32) -> Option<Vid> {
        if v < SD_NR_VDIS { Some(Vid(v)) } else { None }
    }
    /// Returns `Some` if `v` is a vid a VDI can have: in range and not 0 (the "none" of
    /// fields such as `parent_vdi_id` and `base_vdi_id`).
    pub const fn nonzero(v: u32) -> Option<Vid> {
        if v != 0 && v < SD_NR_VDIS {
            Some(Vid(v))
        } else {
            None
        }
    }
    /// Keeps the low 24 bits of `v` (for values that are masked by definition).
    pub const fn from_masked(v: u32) -> Vid {
        Vid(v & (SD_NR_VDIS - 1))
    }
    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }
    /// Index into the 2^24-bit VDI bitmaps.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The inode object of this VDI.
    pub const fn inode_oid(self) -> Oid {
        Oid(VDI_BIT | ((self.0 as u64) << 32))
    }
    /// Data object `idx` owned by this VDI.
    pub const fn data_oid(self, idx: u32) -> Oid {
        Oid(((self.0 as u64) << 32) | idx as u64)
    }
    /// Attribute object `attr` of this VDI.
    pub const fn attr_oid(self, attr: u32) -> Oid {
        Oid(VDI_ATTR_BIT | ((self.0 as u64) << 32) | attr as u64)
    }
    /// VM-state object `idx` of this VDI.
    pub const fn vmstate_oid(self, idx: u32) -> Oid {
        Oid(VMSTATE_BIT | ((self.0 as u64) << 32) | idx as u64)
    }
}

impl fmt::Display for Vid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A 64-bit object id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(u64);

/// What kind of object an oid names (spec §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A VDI's data object.
    Data,
    /// A VDI inode.
    Inode,
    /// A VDI attribute.
    Attr,
    /// A savevm state chunk.
    VmState,
    /// A hyper-volume B-tree node.
    Btree,
    /// A refcount ledger.
    Ledger,
}

impl Oid {
    /// Wraps a raw oid (every u64 is a syntactically valid oid).
    pub const fn new(raw: u64) -> Oid {
        Oid(raw)
    }
    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The VDI id in bits 32..56.
    pub const fn vid(self) -> Vid {
        Vid(((self.0 & VID_MASK) >> 32) as u32)
    }
    /// The data index (low 32 bits).
    pub const fn index(self) -> u32 {
        (self.0 & 0xFFFF_FFFF) as u32
    }
    /// True for an inode object.
    pub const fn is_inode(self) -> bool {
        self.0 & VDI_BIT != 0
    }
    /// True for a data object (none of bits 59..64 set).
    pub const fn is_data(self) -> bool {
        self.0 & (VDI_BIT | VMSTATE_BIT | VDI_ATTR_BIT | VDI_BTREE_BIT | LEDGER_BIT) == 0
    }
    /// The kind of object.
    pub const fn kind(self) -> ObjectKind {
        if self.0 & VDI_BIT != 0 {
            ObjectKind::Inode
        } else if self.0 & VMSTATE_BIT != 0 {
            ObjectKind::VmState
        } else if self.0 & VDI_ATTR_BIT != 0 {
            ObjectKind::Attr
        } else if self.0 & VDI_BTREE_BIT != 0 {
            ObjectKind::Btree
        } else if self.0 & LEDGER_BIT != 0 {
            ObjectKind::Ledger
        } else {
            ObjectKind::Data
        }
    }
    /// Size of the object in bytes given the owning VDI's block size shift (spec §8).
    pub const fn object_size(self, block_size_shift: u8) -> u64 {
        match self.kind() {
            ObjectKind::Inode => crate::inode::SD_INODE_SIZE as u64,
            ObjectKind::Attr => crate::inode::SD_ATTR_OBJ_SIZE as u64,
            ObjectKind::Btree | ObjectKind::Ledger => crate::inode::SD_INODE_DATA_INDEX_SIZE as u64,
            ObjectKind::Data | ObjectKind::VmState => 1u64 << (block_size_shift & 63),
        }
    }
    /// Whether the store creates this object sparse (inode, ledger, attr) rather than preallocated.
    pub const fn is_sparse(self) -> bool {
        !matches!(self.kind(), ObjectKind::Data | ObjectKind::VmState)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A cluster membership version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u32);

impl Epoch {
    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }
    /// The next epoch.
    pub const fn next(self) -> Epoch {
        Epoch(self.0.wrapping_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_helpers_match_spec() {
        let v = Vid::new(0x7c2b25).unwrap();
        assert_eq!(v.inode_oid().get(), 0x807c_2b25_0000_0000);
        assert_eq!(v.data_oid(5).get(), 0x007c_2b25_0000_0005);
        assert_eq!(Oid::new(0x807c_2b25_0000_0000).vid(), v);
        assert_eq!(v.data_oid(5).index(), 5);
        assert!(v.inode_oid().is_inode());
        assert!(v.data_oid(1).is_data());
        assert!(!v.attr_oid(1).is_data());
        assert_eq!(v.attr_oid(3).kind(), ObjectKind::Attr);
        assert_eq!(v.vmstate_oid(3).kind(), ObjectKind::VmState);
        assert_eq!(Vid::new(1 << 24), None);
        assert_eq!(format!("{}", v.inode_oid()), "807c2b2500000000");
        assert_eq!(v.data_oid(0).object_size(22), 4 << 20);
        assert_eq!(v.inode_oid().object_size(22), 12_587_576);
    }
}
