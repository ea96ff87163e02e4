//! GET_VDI_ATTR (spec §9.4): VDI attributes, each stored in an attribute object of the
//! name's *hashed* vid (`sd_hash_vdi(name)`, not the VDI's own vid, which changes with every
//! snapshot), found by linear probing from the record's attribute id.
//!
//! The probe reads `vid_to_attr_oid(hashed, id)`, `id + 1`, ... (wrapping through 2^32)
//! through the replicating gateway until it meets either the attribute (same name, tag,
//! snapshot id and key) or a missing object:
//!
//! | found | CREAT | EXCL | DEL | action |
//! |---|---|---|---|---|
//! | missing | yes | | | create the object with the request's record |
//! | missing | no | | | NO_OBJ |
//! | match | | yes | | VDI_EXIST |
//! | match | | no | yes | write one NUL at offset 0 (the slot stays taken) |
//! | match | yes | no | no | overwrite the whole record |
//! | match | no | no | no | SUCCESS (the client then reads the object) |
//!
//! A deleted slot never matches again (its name is empty), so probing walks past it.
//! Attribute operations of one gateway run one at a time (`Sheep::attr_ops`), so two
//! `setattr`s of one key through the same node cannot both create it.

use bytes::Bytes;
use sd_proto::attr::{ATTR_CTIME_OFFSET, SD_ATTR_HEADER_SIZE, VdiAttr, attr_id};
use sd_proto::hash::sd_hash_vdi;
use sd_proto::inode::{SD_ATTR_OBJ_SIZE, SD_MAX_VDI_LEN};
use sd_proto::{Flags, Oid, RequestHeader, SdResult, VdiRsp, Vid};

use super::{Reply, expect_payload};
use crate::error::{SheepError, SheepResult};
use crate::gateway::{self, Mutation};
use crate::node::Sheep;

/// What the request asks for when the attribute exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mode {
    create: bool,
    exclusive: bool,
    delete: bool,
}

impl Mode {
    fn of(flags: Flags) -> Mode {
        Mode {
            create: flags.contains(Flags::CREAT),
            exclusive: flags.contains(Flags::EXCL),
            delete: flags.contains(Flags::DEL),
        }
    }
}

/// What to do with a probed slot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Create the attribute object here.
    Create,
    /// The attribute is here: answer, after applying this mutation if any.
    Found(Option<Found>),
    /// Refuse with this result.
    Refuse(SdResult),
    /// Someone else's attribute (or a deleted one): try the next id.
    Next,
}

/// A change to an existing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Overwrite the whole record.
    Overwrite,
    /// Clear the name (one NUL byte at offset 0).
    Delete,
}

/// The decision for one slot: `stored` is the slot's header, `None` when the object is
/// missing. Pure, so the table in the module docs is tested without a cluster.
fn step(wanted: &VdiAttr, stored: Option<&VdiAttr>, mode: Mode) -> Step {
    match stored {
        None if mode.create => Step::Create,
        None => Step::Refuse(SdResult::NoObj),
        Some(s) if !s.same_key(wanted) => Step::Next,
        Some(_) if mode.exclusive => Step::Refuse(SdResult::VdiExist),
        Some(_) if mode.delete => Step::Found(Some(Found::Delete)),
        Some(_) if mode.create => Step::Found(Some(Found::Overwrite)),
        Some(_) => Step::Found(None),
    }
}

/// Serves GET_VDI_ATTR.
pub(super) async fn handle(
    sheep: &Sheep,
    req: &RequestHeader,
    payload: Bytes,
) -> SheepResult<Reply> {
    expect_payload(req, &payload)?;
    if !(SD_ATTR_HEADER_SIZE..=SD_ATTR_OBJ_SIZE).contains(&payload.len()) {
        return Err(SdResult::InvalidParms.into());
    }
    let wanted = VdiAttr::decode_header(&payload).map_err(|_| invalid())?;
    if wanted.name.is_empty()
        || wanted.name.len() >= SD_MAX_VDI_LEN
        || wanted.tag.len() >= SD_MAX_VDI_LEN
        || wanted.key.len() >= SD_MAX_VDI_LEN
    {
        return Err(invalid());
    }
    let vid = lookup(sheep, &wanted, req.vdi().snapid).await?;
    let ctime = create_time(sheep, vid).await?;

    // The stored record is the request's, with the VDI's creation time filled in.
    let mut record = payload.to_vec();
    if let Some(field) = record.get_mut(ATTR_CTIME_OFFSET..ATTR_CTIME_OFFSET + 8) {
        field.copy_from_slice(&ctime.to_le_bytes());
    }
    let hashed = sd_hash_vdi(&wanted.name);
    let start = attr_id(&record).map_err(|_| invalid())?;
    let copies = sheep.copies_of(hashed.attr_oid(start), 0);

    let _serial = sheep.attr_probe().await;
    let id = probe(
        sheep,
        Probe {
            hashed,
            start,
            copies,
            mode: Mode::of(req.flags),
        },
        &wanted,
        record,
    )
    .await?;
    tracing::debug!(vid = %hashed, attr_id = id, "vdi attribute");
    Ok(Reply {
        vdi: Some(VdiRsp {
            vdi_id: hashed.get(),
            attr_id: id,
            copies: u8::try_from(copies).unwrap_or(u8::MAX),
            block_size_shift: 0,
        }),
        ..Reply::default()
    })
}

fn invalid() -> SheepError {
    SdResult::InvalidParms.into()
}

/// Looks the VDI up (NO_VDI / NO_TAG on failure). A miss waits for this node to catch up
/// with the cluster log first: the VDI may have been created through another gateway.
async fn lookup(sheep: &Sheep, a: &VdiAttr, snapid: u32) -> SheepResult<Vid> {
    let found = sheep.vdis().lookup(&a.name, &a.tag, snapid);
    match found {
        Ok(f) => Ok(f.vid),
        Err(_) => {
            sheep.barrier().await?;
            let found = sheep.vdis().lookup(&a.name, &a.tag, snapid);
            found.map(|f| f.vid).map_err(|m| m.result.into())
        }
    }
}

/// The VDI's `create_time` (inode offset 512), which the server stores in the record.
async fn create_time(sheep: &Sheep, vid: Vid) -> SheepResult<u64> {
    let oid = vid.inode_oid();
    let b = gateway::read(sheep, oid, 512, 8, sheep.copies_of(oid, 0)).await?;
    let bytes: [u8; 8] = b
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or(SdResult::Eio)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Where a probe runs.
#[derive(Debug, Clone, Copy)]
struct Probe {
    hashed: Vid,
    start: u32,
    copies: usize,
    mode: Mode,
}

/// Probes from `p.start` and applies the request; returns the attribute id it settled on.
async fn probe(sheep: &Sheep, p: Probe, wanted: &VdiAttr, record: Vec<u8>) -> SheepResult<u32> {
    let len = u32::try_from(SD_ATTR_OBJ_SIZE).map_err(|_| invalid())?;
    let end = p.start.wrapping_sub(1);
    let mut id = p.start;
    while id != end {
        let oid = p.hashed.attr_oid(id);
        let stored = match gateway::read(sheep, oid, 0, len, p.copies).await {
            Ok(b) => Some(VdiAttr::decode_header(&b).map_err(|_| SheepError::from(SdResult::Eio))?),
            Err(e) if e.result() == SdResult::NoObj => None,
            Err(e) => return Err(e),
        };
        match step(wanted, stored.as_ref(), p.mode) {
            Step::Next => id = id.wrapping_add(1),
            Step::Refuse(r) => return Err(r.into()),
            Step::Create => {
                let m = Mutation::Create {
                    offset: 0,
                    data: record.into(),
                };
                write(sheep, oid, p.copies, m).await?;
                return Ok(id);
            }
            Step::Found(change) => {
                let data = match change {
                    None => return Ok(id),
                    Some(Found::Delete) => Bytes::from_static(&[0]),
                    Some(Found::Overwrite) => {
                        let mut full = record;
                        full.resize(SD_ATTR_OBJ_SIZE, 0);
                        full.into()
                    }
                };
                write(sheep, oid, p.copies, Mutation::Write { offset: 0, data }).await?;
                return Ok(id);
            }
        }
    }
    tracing::warn!(vid = %p.hashed, "no free attribute id");
    Err(SdResult::FullVdi.into())
}

/// A failed attribute write is EIO, as in Sheepdog.
async fn write(sheep: &Sheep, oid: Oid, copies: usize, m: Mutation) -> SheepResult<()> {
    gateway::mutate(sheep, oid, copies, m).await.map_err(|e| {
        tracing::warn!(%oid, error = %e, "attribute write failed");
        SdResult::Eio.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(key: &[u8]) -> VdiAttr {
        VdiAttr {
            name: b"vm".to_vec(),
            key: key.to_vec(),
            ..VdiAttr::default()
        }
    }

    const GET: Mode = Mode {
        create: false,
        exclusive: false,
        delete: false,
    };
    const SET: Mode = Mode {
        create: true,
        ..GET
    };
    const SET_X: Mode = Mode {
        exclusive: true,
        ..SET
    };
    const DEL: Mode = Mode {
        delete: true,
        ..GET
    };

    #[test]
    fn the_probe_table() {
        let k = attr(b"k");
        let other = attr(b"other");
        let deleted = VdiAttr {
            name: Vec::new(),
            ..k.clone()
        };
        let snap = VdiAttr {
            snap_id: 2,
            ..k.clone()
        };
        let check = |stored: Option<&VdiAttr>, mode, want: Step| {
            assert_eq!(step(&k, stored, mode), want, "{stored:?} {mode:?}");
        };
        check(None, SET, Step::Create);
        check(None, SET_X, Step::Create);
        check(None, GET, Step::Refuse(SdResult::NoObj));
        check(None, DEL, Step::Refuse(SdResult::NoObj));
        check(Some(&other), SET, Step::Next);
        check(Some(&deleted), GET, Step::Next);
        check(Some(&snap), GET, Step::Next);
        check(Some(&k), SET_X, Step::Refuse(SdResult::VdiExist));
        check(Some(&k), DEL, Step::Found(Some(Found::Delete)));
        check(Some(&k), SET, Step::Found(Some(Found::Overwrite)));
        check(Some(&k), GET, Step::Found(None));
    }
}
