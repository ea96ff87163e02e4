//! VDI operations: create, look up, lock, delete, and the VDI bitmaps.

use super::{Reply, expect_payload};
use crate::cluster::ClusterMsg;
use crate::error::SheepResult;
use crate::gateway::{self, Mutation};
use crate::sys::Sheep;
use bytes::Bytes;
use sd_proto::cluster::SD_VDI_BITMAP_SIZE;
use sd_proto::inode::{InodeHeader, SD_INODE_HEADER_SIZE, SD_MAX_VDI_LEN};
use sd_proto::{RequestHeader, SdResult, VdiRsp, Vid, c_str};

/// Smallest and largest block size shift this node serves. The upper bound keeps every
/// object write inside one request payload (`MAX_REQUEST_PAYLOAD`).
pub(crate) const MIN_SHIFT: u8 = 20;
/// See [`MIN_SHIFT`].
pub(crate) const MAX_SHIFT: u8 = 22;

pub(super) async fn handle(
    sheep: &Sheep,
    req: &RequestHeader,
    payload: Bytes,
) -> SheepResult<Reply> {
    use sd_proto::Opcode as O;
    match req.opcode {
        O::NewVdi => new_vdi(sheep, req, payload).await,
        O::GetVdiInfo | O::LockVdi => {
            let (name, tag) = name_and_tag(req, &payload)?;
            let vid = lookup(sheep, &name, &tag, req.vdi().snapid)?;
            Ok(vdi_reply(sheep, vid))
        }
        // Locks only exist on clusters formatted with -l (issue 7); without them RELEASE_VDI
        // always succeeds, as in Sheepdog.
        O::ReleaseVdi => Ok(Reply::ok()),
        O::DelVdi => del_vdi(sheep, req, payload).await,
        O::ReadVdis | O::ReadDelVdis => {
            if usize::try_from(req.data_length).ok() != Some(SD_VDI_BITMAP_SIZE) {
                return Err(SdResult::InvalidParms.into());
            }
            let t = sheep.vdis();
            let map = if req.opcode == O::ReadVdis {
                t.inuse()
            } else {
                t.deleted()
            };
            Ok(Reply::data(map.as_bytes().to_vec()))
        }
        _ => Err(SdResult::InvalidParms.into()),
    }
}

/// Parses a NUL-terminated name field: non-empty and shorter than 256 bytes.
fn parse_name(field: &[u8]) -> SheepResult<Vec<u8>> {
    let name = c_str(field);
    if name.is_empty() || name.len() >= SD_MAX_VDI_LEN {
        return Err(SdResult::InvalidParms.into());
    }
    Ok(name.to_vec())
}

/// The name[256] (+ tag[256]) payload of lookups.
fn name_and_tag(req: &RequestHeader, payload: &Bytes) -> SheepResult<(Vec<u8>, Vec<u8>)> {
    expect_payload(req, payload)?;
    let (name, tag) = match payload.len() {
        256 => (payload.as_ref(), &[][..]),
        512 => payload.split_at(SD_MAX_VDI_LEN),
        _ => return Err(SdResult::InvalidParms.into()),
    };
    let tag = c_str(tag);
    if tag.len() >= SD_MAX_VDI_LEN {
        return Err(SdResult::InvalidParms.into());
    }
    Ok((parse_name(name)?, tag.to_vec()))
}

fn lookup(sheep: &Sheep, name: &[u8], tag: &[u8], snapid: u32) -> SheepResult<Vid> {
    sheep
        .vdis()
        .lookup(name, tag, snapid)
        .map(|f| f.vid)
        .map_err(|m| m.result.into())
}

fn vdi_reply(sheep: &Sheep, vid: Vid) -> Reply {
    let t = sheep.vdis();
    let e = t.get(vid);
    Reply {
        vdi: Some(VdiRsp {
            vdi_id: vid.get(),
            attr_id: 0,
            copies: e.map_or(0, |e| e.nr_copies),
            block_size_shift: e.map_or(0, |e| e.block_size_shift),
        }),
        ..Reply::default()
    }
}

async fn new_vdi(sheep: &Sheep, req: &RequestHeader, payload: Bytes) -> SheepResult<Reply> {
    expect_payload(req, &payload)?;
    if payload.len() != SD_MAX_VDI_LEN {
        return Err(SdResult::InvalidParms.into());
    }
    let name = parse_name(&payload)?;
    let a = req.vdi();
    if a.snapid != 0 || a.base_vdi_id != 0 {
        // Snapshots and clones arrive with the VDI lifecycle work (issue 7).
        return Err(SdResult::NoSupport.into());
    }
    if a.store_policy != 0 || a.copy_policy != 0 {
        // Hyper volumes and erasure coding are not implemented.
        return Err(SdResult::NoSupport.into());
    }
    let (def_copies, _, def_shift) = sheep.sys().defaults();
    let copies = if a.copies == 0 { def_copies } else { a.copies };
    let shift = if a.block_size_shift == 0 {
        def_shift
    } else {
        a.block_size_shift
    };
    if copies > sd_proto::cluster::SD_MAX_COPIES || !(MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
        return Err(SdResult::InvalidParms.into());
    }
    let max_size = (1u64 << shift) * (sd_proto::inode::SD_INODE_DATA_INDEX as u64);
    if a.vdi_size > max_size {
        return Err(SdResult::InvalidParms.into());
    }

    // Every member allocates the vid in log order from identical tables, so two gateways
    // never hand out the same one.
    let applied = crate::cluster::submit(sheep, |token| ClusterMsg::NewVdi {
        token,
        name: name.clone(),
        size: a.vdi_size,
        copies,
        shift,
    })
    .await?;
    let vid = applied.vid;
    let snap_id = sheep.vdis().get(vid).map_or(1, |e| e.snap_id);
    let header = InodeHeader {
        name,
        create_time: sd_proto::cluster::sd_time(applied.time, 0),
        vdi_size: a.vdi_size,
        nr_copies: copies,
        block_size_shift: shift,
        snap_id,
        vdi_id: vid.get(),
        ..InodeHeader::default()
    };
    gateway::mutate(
        sheep,
        vid.inode_oid(),
        usize::from(copies),
        Mutation::Create {
            offset: 0,
            data: header.encode().into(),
        },
    )
    .await?;
    tracing::info!(%vid, size = a.vdi_size, copies, "created VDI");
    Ok(vdi_reply(sheep, vid))
}

async fn del_vdi(sheep: &Sheep, req: &RequestHeader, payload: Bytes) -> SheepResult<Reply> {
    let (name, tag) = name_and_tag(req, &payload)?;
    let vid = lookup(sheep, &name, &tag, req.vdi().snapid)?;

    // Sheepdog refuses to wipe an inode whose index is still set but answers SUCCESS anyway,
    // leaving a named inode behind; we free what the VDI owns and then wipe it.
    let freed = super::obj::remove_owned_objects(sheep, vid).await?;
    let copies = sheep.copies_of(vid.inode_oid(), 0);
    let oid = vid.inode_oid();
    let len = u32::try_from(SD_INODE_HEADER_SIZE).unwrap_or(0);
    let head = gateway::read(sheep, oid, 0, len, copies).await?;
    let mut h = InodeHeader::decode(&head).unwrap_or_default();
    h.name.clear();
    h.vdi_size = 0;
    // Recreating the sparse inode clears the index and refcounts.
    gateway::mutate(
        sheep,
        oid,
        copies,
        Mutation::Create {
            offset: 0,
            data: h.encode().into(),
        },
    )
    .await?;
    crate::cluster::submit(sheep, |token| ClusterMsg::DelVdi { token, vid }).await?;
    tracing::info!(%vid, freed, "deleted VDI");
    Ok(Reply {
        vdi: Some(VdiRsp {
            vdi_id: vid.get(),
            ..VdiRsp::default()
        }),
        ..Reply::default()
    })
}
