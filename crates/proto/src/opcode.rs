//! Every Sheepdog 1.0 opcode (spec §6), plus FLUSH_PEER as sheepdog-rs uses it.

macro_rules! opcodes {
    ($($(#[$doc:meta])* $name:ident = $val:expr,)*) => {
        /// A request opcode. Unknown values are kept, never rejected at decode time.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Opcode {
            $($(#[$doc])* $name,)*
            /// An opcode this implementation does not know.
            Unknown(u8),
        }

        impl Opcode {
            /// All known opcodes.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name,)*];

            /// Decodes a raw opcode byte.
            pub const fn from_u8(v: u8) -> Opcode {
                match v {
                    $($val => Opcode::$name,)*
                    other => Opcode::Unknown(other),
                }
            }

            /// The opcode's name as in this enum (`"WriteObj"`), `"Unknown"` for others.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Opcode::$name => stringify!($name),)*
                    Opcode::Unknown(_) => "Unknown",
                }
            }

            /// The raw opcode byte.
            pub const fn as_u8(self) -> u8 {
                match self {
                    $(Opcode::$name => $val,)*
                    Opcode::Unknown(v) => v,
                }
            }
        }
    };
}

opcodes! {
    /// 0x01 create an object and write to it.
    CreateAndWriteObj = 0x01,
    /// 0x02 read an object.
    ReadObj = 0x02,
    /// 0x03 write to an existing object.
    WriteObj = 0x03,
    /// 0x04 remove an object.
    RemoveObj = 0x04,
    /// 0x05 discard a data object.
    DiscardObj = 0x05,
    /// 0x11 create a VDI, snapshot or clone.
    NewVdi = 0x11,
    /// 0x12 look up (and lock) a VDI.
    LockVdi = 0x12,
    /// 0x13 release a VDI lock.
    ReleaseVdi = 0x13,
    /// 0x14 look up a VDI.
    GetVdiInfo = 0x14,
    /// 0x15 read the in-use VDI bitmap.
    ReadVdis = 0x15,
    /// 0x16 flush a VDI's writes to stable storage.
    FlushVdi = 0x16,
    /// 0x17 delete a VDI.
    DelVdi = 0x17,
    /// 0x18 get the cluster defaults.
    GetClusterDefault = 0x18,
    /// 0x82 list the nodes.
    GetNodeList = 0x82,
    /// 0x84 format the cluster.
    MakeFs = 0x84,
    /// 0x85 shut the cluster down.
    Shutdown = 0x85,
    /// 0x86 store size and free space of one node.
    StatSheep = 0x86,
    /// 0x87 cluster status and epoch history.
    StatCluster = 0x87,
    /// 0x89 get/set a VDI attribute.
    GetVdiAttr = 0x89,
    /// 0x8A force recovery.
    ForceRecover = 0x8A,
    /// 0x90 list store drivers.
    GetStoreList = 0x90,
    /// 0x91 (no handler in 1.0).
    Snapshot = 0x91,
    /// 0x92 (no handler in 1.0).
    Restore = 0x92,
    /// 0x93 (no handler in 1.0).
    GetSnapFile = 0x93,
    /// 0x94 purge stale objects.
    Cleanup = 0x94,
    /// 0x95 tracer status.
    TraceStatus = 0x95,
    /// 0x96 tracer buffer.
    TraceReadBuf = 0x96,
    /// 0x97 recovery state of a node.
    StatRecovery = 0x97,
    /// 0x98 no-op.
    FlushDelCache = 0x98,
    /// 0x99 drop a vid from caches.
    NotifyVdiDel = 0x99,
    /// 0x9A kill a node.
    KillNode = 0x9A,
    /// 0x9B tracer on.
    TraceEnable = 0x9B,
    /// 0x9C tracer off.
    TraceDisable = 0x9C,
    /// 0xA1 list a node's objects.
    GetObjList = 0xA1,
    /// 0xA2 read an epoch log entry.
    GetEpoch = 0xA2,
    /// 0xA3 peer: create and write.
    CreateAndWritePeer = 0xA3,
    /// 0xA4 peer: read.
    ReadPeer = 0xA4,
    /// 0xA5 peer: write.
    WritePeer = 0xA5,
    /// 0xA6 peer: remove.
    RemovePeer = 0xA6,
    /// 0xA8 enable recovery.
    EnableRecover = 0xA8,
    /// 0xA9 disable recovery.
    DisableRecover = 0xA9,
    /// 0xAB VDI state records.
    GetVdiCopies = 0xAB,
    /// 0xAC recovery finished on a node.
    CompleteRecovery = 0xAC,
    /// 0xAD reserved (2012 FLUSH_NODES).
    FlushNodes = 0xAD,
    /// 0xAE peer: make a VDI's dirty objects durable (sheepdog-rs writeback).
    FlushPeer = 0xAE,
    /// 0xAF register VDI state everywhere.
    NotifyVdiAdd = 0xAF,
    /// 0xB0 obsolete.
    DeleteCache = 0xB0,
    /// 0xB1 multi-disk info.
    MdInfo = 0xB1,
    /// 0xB2 multi-disk plug.
    MdPlug = 0xB2,
    /// 0xB3 multi-disk unplug.
    MdUnplug = 0xB3,
    /// 0xB4 SHA-1 of an object.
    GetHash = 0xB4,
    /// 0xB5 recompute node weights.
    Reweight = 0xB5,
    /// 0xB6 obsolete.
    GetCacheInfo = 0xB6,
    /// 0xB7 obsolete.
    CachePurge = 0xB7,
    /// 0xB8 request statistics.
    Stat = 0xB8,
    /// 0xB9 get log level.
    GetLoglevel = 0xB9,
    /// 0xBA set log level.
    SetLoglevel = 0xBA,
    /// 0xBB NFS create.
    NfsCreate = 0xBB,
    /// 0xBC NFS delete.
    NfsDelete = 0xBC,
    /// 0xBD does this node store the object.
    Exist = 0xBD,
    /// 0xBE cluster info record.
    ClusterInfo = 0xBE,
    /// 0xBF change default copies.
    AlterClusterCopy = 0xBF,
    /// 0xC0 change a VDI's copies.
    AlterVdiCopy = 0xC0,
    /// 0xC1 decrement a ledger.
    DecrefObj = 0xC1,
    /// 0xC2 peer: decrement a ledger.
    DecrefPeer = 0xC2,
    /// 0xC3 obsolete.
    PreventInodeUpdate = 0xC3,
    /// 0xC4 obsolete.
    AllowInodeUpdate = 0xC4,
    /// 0xC5 repair a replica.
    RepairReplica = 0xC5,
    /// 0xC6 which oids are missing.
    OidsExist = 0xC6,
    /// 0xC7 VDI state checkpoint.
    VdiStateCheckpointCtl = 0xC7,
    /// 0xC8 iSCSI inode coherence.
    InodeCoherence = 0xC8,
    /// 0xC9 read the deleted-VDI bitmap.
    ReadDelVdis = 0xC9,
    /// 0xCA recovery throttling.
    GetRecovery = 0xCA,
    /// 0xCB set recovery throttling.
    SetRecovery = 0xCB,
    /// 0xCC set vnodes.
    SetVnodes = 0xCC,
    /// 0xCD get vnodes.
    GetVnodes = 0xCD,
    /// 0xF0 sheepdog-rs extension: a node's writeback state (dirty objects of one VDI,
    /// dirty bytes, FLUSH_PEER requests received, copies lost to a failed sync).
    StatWriteback = 0xF0,
    /// 0xF1 sheepdog-rs test hook (only in sheep built with the `failpoints` feature): the
    /// next fdatasync of object `obj.oid` on this node fails with EIO.
    InjectSyncFailure = 0xF1,
    /// 0xF2 sheepdog-rs extension, between sheep: the version of the local copy of `obj.oid`
    /// (u32, the epoch of its last write), followed by the copy's bytes when `data_length`
    /// has room; answered whether or not the copy is verified (recovery picks the newest).
    FetchPeer = 0xF2,
    /// 0xF3 sheepdog-rs extension, between sheep: the first request on a peer connection,
    /// naming the sending node (its 80-byte node entry as payload), so the receiver knows
    /// whose writes the connection carries (`sheep::fanout`). Answered SUCCESS, no payload.
    PeerHello = 0xF3,
    /// 0xF4 sheepdog-rs extension, between sheep: prepare a write on erasure-coded strip
    /// `ec_index` of `oid` ([`StripArgs`](crate::StripArgs); payload = the strip's bytes at
    /// `offset`), durable when answered, applied only by [`Opcode::CompleteStripPeer`].
    PrepareStripPeer = 0xF4,
    /// 0xF5 sheepdog-rs extension, between sheep: complete the prepared write `wid` on a strip.
    CompleteStripPeer = 0xF5,
    /// 0xF6 sheepdog-rs extension, between sheep: drop the prepared write `wid` of a strip.
    DiscardStripPeer = 0xF6,
    /// 0xF7 sheepdog-rs extension, between sheep: what a strip's log holds
    /// ([`StripLog`](crate::strip_log::StripLog)), to resolve a write some holders lack.
    StripLogPeer = 0xF7,
    /// 0xF8 sheepdog-rs extension: check (and repair) every strip of erasure-coded object
    /// `obj.oid` through this sheep ([`StripCheck`](crate::strip_check::StripCheck));
    /// `obj.offset` 1: only which strips exist.
    CheckStrips = 0xF8,
}

impl Opcode {
    /// Internal (sheep-to-sheep numbering) opcodes are ≥ 0x80 and use protocol 0x0a.
    pub const fn is_internal(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// The protocol version a client should send with this opcode.
    pub const fn proto_ver(self) -> u8 {
        if self.is_internal() {
            crate::SD_SHEEP_PROTO_VER
        } else {
            crate::SD_PROTO_VER
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(Opcode::from_u8(b).as_u8(), b);
        }
        for op in Opcode::ALL {
            assert!(!matches!(Opcode::from_u8(op.as_u8()), Opcode::Unknown(_)));
        }
        assert_eq!(Opcode::from_u8(0xAE), Opcode::FlushPeer);
        assert_eq!(Opcode::from_u8(0x07), Opcode::Unknown(0x07));
    }
}
