//! The VDI records of the ordered log ([`ClusterMsg`]: create, snapshot, clone, delete,
//! `Settled`, locks, barriers, copy-count changes) and their byte encoding, carried as the
//! opaque `msg` of a [`crate::log::LogEntry::Notify`].
//!
//! # Format versions
//!
//! The log outlives the binary that wrote it (a ZooKeeper queue, the local driver's log
//! file), so every layout ever written must decode forever. The leading *kind* byte names
//! the variant **and** its layout version; it is the only version discriminator:
//!
//! | kind | layout (integers little-endian)                                                    |
//! |------|------------------------------------------------------------------------------------|
//! | 1    | `NewVdi` v1 (decode only): token u64, size u64, copies u8, shift u8, name (rest)  |
//! | 2    | `DelVdi`: token u64, vid u32                                                       |
//! | 3    | `Barrier`: token u64                                                               |
//! | 4    | `NewVdi` v2: token u64, size u64, copies u8, shift u8, base u32, snapshot_of u32, name_len u16, name, tag (rest) |
//! | 5    | `Settled`: token u64, vid u32                                                      |
//! | 6    | `Lock`: token u64, vid u32, holder u64                                             |
//! | 7    | `Unlock`: token u64, vid u32, holder u64                                           |
//! | 8    | `NewVdi` v3: as v2 with copy_policy u8 after shift (written only for an erasure-coded VDI, so binaries that know v2 keep reading every replicated create) |
//! | 9    | `AlterClusterCopy`: token u64, copies u8                                           |
//! | 10   | `AlterVdiCopy`: token u64, vid u32, copies u8                                      |
//!
//! A vid field is 24 bits in a u32; in `base` and `snapshot_of`, 0 means none. A decoder
//! ignores bytes after a layout's fields (no encoder writes any). Changing a layout means
//! a new kind byte, encoded from then on, with the old kind kept in the decoder: never a
//! reinterpretation of an existing kind. Every kind has golden bytes in the tests.

use sd_proto::inode::SD_MAX_VDI_LEN;
use sd_proto::{DecodeError, Reader, Vid};

/// Kind bytes: the variant and the version of its layout (see the module docs).
mod kind {
    /// `NewVdi` before snapshots and clones (no base, snapshot_of or tag). Decoded only.
    pub const NEW_VDI_V1: u8 = 1;
    /// `DelVdi`.
    pub const DEL_VDI: u8 = 2;
    /// `Barrier`.
    pub const BARRIER: u8 = 3;
    /// `NewVdi` with base, snapshot_of and tag.
    pub const NEW_VDI_V2: u8 = 4;
    /// `Settled`.
    pub const SETTLED: u8 = 5;
    /// `Lock`.
    pub const LOCK: u8 = 6;
    /// `Unlock`.
    pub const UNLOCK: u8 = 7;
    /// `NewVdi` with a copy policy (erasure coding).
    pub const NEW_VDI_V3: u8 = 8;
    /// `AlterClusterCopy`.
    pub const ALTER_CLUSTER_COPY: u8 = 9;
    /// `AlterVdiCopy`.
    pub const ALTER_VDI_COPY: u8 = 10;
}

/// A VDI operation decided in log order on every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMsg {
    /// Create a VDI: every member allocates the same vid from its identical table.
    NewVdi {
        /// Answer token of the submitter.
        token: u64,
        /// Name (1 to 255 bytes).
        name: Vec<u8>,
        /// Size in bytes.
        size: u64,
        /// Redundancy.
        copies: u8,
        /// log2 of the object size.
        shift: u8,
        /// Copy policy: 0 = replication, else erasure coding (`(D/2)<<4 | P`).
        copy_policy: u8,
        /// The snapshot a clone or rollback starts from, or the VDI a snapshot copies
        /// (`None`: a fresh VDI).
        base: Option<Vid>,
        /// A snapshot: this working VDI of `name` becomes read-only (`None`: not a
        /// snapshot).
        snapshot_of: Option<Vid>,
        /// The tag the snapshot gets (at most 255 bytes).
        tag: Vec<u8>,
    },
    /// Mark a VDI deleted (its objects were freed by the submitter).
    DelVdi {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
    },
    /// The inode work of a create or delete of `vid` is done.
    Settled {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
    },
    /// The submitter's writer `holder` takes the lock of `vid`.
    Lock {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
        /// Which writer on the submitting node.
        holder: u64,
    },
    /// Release the lock of `vid`: `holder`'s on the submitting node, or (`holder` 0)
    /// whoever holds it.
    Unlock {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
        /// Which writer on the submitting node (0: any, a forced unlock).
        holder: u64,
    },
    /// No effect: once applied, the submitter has seen every record appended before it.
    Barrier {
        /// Answer token of the submitter.
        token: u64,
    },
    /// The cluster's default copies become `copies` (ALTER_CLUSTER_COPY): folded into the
    /// cluster config by [`crate::Membership`], which every member then saves.
    AlterClusterCopy {
        /// Answer token of the submitter.
        token: u64,
        /// The new default (1 to `SD_MAX_COPIES`).
        copies: u8,
    },
    /// `vid`'s objects get `copies` replicas from here on (ALTER_VDI_COPY): the VDI table
    /// changes, and [`crate::Membership`] starts another recovery pass of the epoch, which
    /// moves the copies to their new places.
    AlterVdiCopy {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
        /// Its new copies (1 to `SD_MAX_COPIES`).
        copies: u8,
    },
}

/// Why bytes are not a [`ClusterMsg`]. Every member decodes the same bytes the same way,
/// so each ignores the record alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgDecodeError {
    /// Fewer bytes than the kind's layout needs.
    #[error("truncated VDI record")]
    Truncated,
    /// A kind byte this binary does not know (a newer binary wrote it, or garbage).
    #[error("unknown VDI record kind {0}")]
    UnknownKind(u8),
    /// A field out of its range (empty or over-long name or tag, vid over 24 bits).
    #[error("VDI record field {0} out of range")]
    BadField(&'static str),
}

/// The 24-bit vid encoding of an optional vid (0: none).
fn opt_vid(v: Option<Vid>) -> u32 {
    v.map_or(0, Vid::get)
}

impl ClusterMsg {
    /// The answer token of the submitter.
    pub fn token(&self) -> u64 {
        match self {
            ClusterMsg::NewVdi { token, .. }
            | ClusterMsg::DelVdi { token, .. }
            | ClusterMsg::Settled { token, .. }
            | ClusterMsg::Lock { token, .. }
            | ClusterMsg::Unlock { token, .. }
            | ClusterMsg::Barrier { token }
            | ClusterMsg::AlterClusterCopy { token, .. }
            | ClusterMsg::AlterVdiCopy { token, .. } => *token,
        }
    }

    /// Encodes the message in the newest layout of its kind. A name or tag over 255 bytes
    /// is cut to 255.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ClusterMsg::NewVdi {
                token,
                name,
                size,
                copies,
                shift,
                copy_policy,
                base,
                snapshot_of,
                tag,
            } => {
                let clip = |b: &[u8]| {
                    b.get(..b.len().min(SD_MAX_VDI_LEN - 1))
                        .unwrap_or_default()
                        .to_vec()
                };
                let (name, tag) = (clip(name), clip(tag));
                out.push(if *copy_policy == 0 {
                    kind::NEW_VDI_V2
                } else {
                    kind::NEW_VDI_V3
                });
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.push(*copies);
                out.push(*shift);
                if *copy_policy != 0 {
                    out.push(*copy_policy);
                }
                out.extend_from_slice(&opt_vid(*base).to_le_bytes());
                out.extend_from_slice(&opt_vid(*snapshot_of).to_le_bytes());
                out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&name);
                out.extend_from_slice(&tag);
            }
            ClusterMsg::DelVdi { token, vid } => {
                out.push(kind::DEL_VDI);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&vid.get().to_le_bytes());
            }
            ClusterMsg::Barrier { token } => {
                out.push(kind::BARRIER);
                out.extend_from_slice(&token.to_le_bytes());
            }
            ClusterMsg::Settled { token, vid } => {
                out.push(kind::SETTLED);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&vid.get().to_le_bytes());
            }
            ClusterMsg::Lock { token, vid, holder } | ClusterMsg::Unlock { token, vid, holder } => {
                out.push(if matches!(self, ClusterMsg::Lock { .. }) {
                    kind::LOCK
                } else {
                    kind::UNLOCK
                });
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&vid.get().to_le_bytes());
                out.extend_from_slice(&holder.to_le_bytes());
            }
            ClusterMsg::AlterClusterCopy { token, copies } => {
                out.push(kind::ALTER_CLUSTER_COPY);
                out.extend_from_slice(&token.to_le_bytes());
                out.push(*copies);
            }
            ClusterMsg::AlterVdiCopy { token, vid, copies } => {
                out.push(kind::ALTER_VDI_COPY);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&vid.get().to_le_bytes());
                out.push(*copies);
            }
        }
        out
    }

    /// Decodes a message of any kind ever written (untrusted bytes: never panics).
    pub fn decode(b: &[u8]) -> Result<ClusterMsg, MsgDecodeError> {
        let mut r = Reader::new(b);
        let kind = r.u8()?;
        if !(kind::NEW_VDI_V1..=kind::ALTER_VDI_COPY).contains(&kind) {
            return Err(MsgDecodeError::UnknownKind(kind));
        }
        let token = r.u64()?;
        let msg = match kind {
            kind::NEW_VDI_V1 => {
                let size = r.u64()?;
                let copies = r.u8()?;
                let shift = r.u8()?;
                ClusterMsg::NewVdi {
                    token,
                    name: name(r.rest())?,
                    size,
                    copies,
                    shift,
                    copy_policy: 0,
                    base: None,
                    snapshot_of: None,
                    tag: Vec::new(),
                }
            }
            kind::NEW_VDI_V2 | kind::NEW_VDI_V3 => {
                let size = r.u64()?;
                let copies = r.u8()?;
                let shift = r.u8()?;
                let copy_policy = if kind == kind::NEW_VDI_V3 { r.u8()? } else { 0 };
                let base = opt_vid_field(&mut r, "base")?;
                let snapshot_of = opt_vid_field(&mut r, "snapshot_of")?;
                let name_len = usize::from(r.u16()?);
                let name = name(r.bytes(name_len)?)?;
                let tag = r.rest();
                if tag.len() >= SD_MAX_VDI_LEN {
                    return Err(MsgDecodeError::BadField("tag"));
                }
                ClusterMsg::NewVdi {
                    token,
                    name,
                    size,
                    copies,
                    shift,
                    copy_policy,
                    base,
                    snapshot_of,
                    tag: tag.to_vec(),
                }
            }
            kind::DEL_VDI => ClusterMsg::DelVdi {
                token,
                vid: vid(&mut r)?,
            },
            kind::BARRIER => ClusterMsg::Barrier { token },
            kind::SETTLED => ClusterMsg::Settled {
                token,
                vid: vid(&mut r)?,
            },
            kind::LOCK | kind::UNLOCK => {
                let vid = vid(&mut r)?;
                let holder = r.u64()?;
                if kind == kind::LOCK {
                    ClusterMsg::Lock { token, vid, holder }
                } else {
                    ClusterMsg::Unlock { token, vid, holder }
                }
            }
            kind::ALTER_CLUSTER_COPY => ClusterMsg::AlterClusterCopy {
                token,
                copies: r.u8()?,
            },
            kind::ALTER_VDI_COPY => ClusterMsg::AlterVdiCopy {
                token,
                vid: vid(&mut r)?,
                copies: r.u8()?,
            },
            other => return Err(MsgDecodeError::UnknownKind(other)),
        };
        Ok(msg)
    }
}

/// A VDI name: 1 to 255 bytes.
fn name(b: &[u8]) -> Result<Vec<u8>, MsgDecodeError> {
    if b.is_empty() || b.len() >= SD_MAX_VDI_LEN {
        return Err(MsgDecodeError::BadField("name"));
    }
    Ok(b.to_vec())
}

/// The shared reader fails only on missing bytes.
impl From<DecodeError> for MsgDecodeError {
    fn from(_: DecodeError) -> MsgDecodeError {
        MsgDecodeError::Truncated
    }
}

/// A vid field: any 24-bit value, 0 included (as decoders always accepted; the fold knows
/// no VDI 0).
fn vid(r: &mut Reader<'_>) -> Result<Vid, MsgDecodeError> {
    Vid::new(r.u32()?).ok_or(MsgDecodeError::BadField("vid"))
}

/// An optional vid field: 0 is none.
fn opt_vid_field(r: &mut Reader<'_>, what: &'static str) -> Result<Option<Vid>, MsgDecodeError> {
    match r.u32()? {
        0 => Ok(None),
        v => Vid::nonzero(v)
            .map(Some)
            .ok_or(MsgDecodeError::BadField(what)),
    }
}
