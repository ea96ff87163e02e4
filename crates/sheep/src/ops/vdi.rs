//! VDI operations: create, look up, lock, delete, the VDI bitmaps, and copy-count
//! changes (`alter`).

mod alter;

use super::{Reply, expect_payload};
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;
use crate::{inode, reclaim, volume};
use bytes::Bytes;
use sd_cluster::ClusterMsg;
use sd_proto::cluster::SD_VDI_BITMAP_SIZE;
use sd_proto::inode::SD_MAX_VDI_LEN;
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
        O::GetVdiInfo => {
            let (name, tag) = name_and_tag(req, &payload)?;
            let vid = lookup(sheep, &name, &tag, req.vdi().snapid)?;
            Ok(vdi_reply(sheep, vid))
        }
        O::LockVdi => {
            let (name, tag) = name_and_tag(req, &payload)?;
            let vid = lookup(sheep, &name, &tag, req.vdi().snapid)?;
            // A snapshot is read-only: any number of readers may open it.
            if !sheep.vdis().get(vid).is_some_and(|e| e.snapshot) {
                volume::lock(sheep, vid, sheep.new_lock_holder()).await?;
            }
            Ok(vdi_reply(sheep, vid))
        }
        // QEMU releases with the vid in base_vdi_id; `dog vdi lock unlock` sends the same.
        // Always SUCCESS, as in Sheepdog (QEMU tolerates VDI_NOT_LOCKED anyway).
        O::ReleaseVdi => {
            if let Some(vid) = Vid::nonzero(req.vdi().base_vdi_id) {
                volume::unlock(sheep, vid, 0).await?;
            }
            Ok(Reply::ok())
        }
        O::GetVdiCopies => {
            // Answer with every lock taken before the request, through any gateway.
            // (Recovery relies on it: any answer, BUFFER_SMALL included, comes after this
            // barrier, `recovery::copies::catch_up`.)
            sheep.barrier().await?;
            let cap = usize::try_from(req.data_length).unwrap_or(0);
            let out = vdi_states(sheep);
            if out.len() > cap {
                return Err(SdResult::BufferSmall.into());
            }
            Ok(Reply::data(out))
        }
        O::DelVdi => del_vdi(sheep, req, payload).await,
        O::AlterVdiCopy => alter::vdi_copies(sheep, req).await,
        O::AlterClusterCopy => alter::cluster_copies(sheep, req).await,
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

/// GET_VDI_COPIES: a `vdi_state` record per live VDI, ascending vid.
fn vdi_states(sheep: &Sheep) -> Vec<u8> {
    use sd_proto::vdi_state::{LockState, VdiState};
    let t = sheep.vdis();
    let mut vids: Vec<Vid> = t.iter().map(|(v, _)| v).filter(|v| t.is_live(*v)).collect();
    vids.sort_unstable();
    let mut out = Vec::new();
    for vid in vids {
        let Some(e) = t.get(vid) else { continue };
        let owner = t.lock_owner(vid);
        VdiState {
            vid,
            nr_copies: e.nr_copies,
            snapshot: e.snapshot,
            deleted: false,
            copy_policy: e.copy_policy,
            block_size_shift: e.block_size_shift,
            parent_vid: e.parent.map_or(0, Vid::get),
            lock_state: if owner.is_some() {
                LockState::Locked
            } else {
                LockState::Unlocked
            },
            lock_owner: owner.map(|o| o.node).unwrap_or_default(),
        }
        .encode_into(&mut out);
    }
    out
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

/// NEW_VDI (spec §10.4): `snapid == 0` creates a VDI, fresh or (with `base_vdi_id`) a
/// clone of a snapshot; `snapid != 0` snapshots the working VDI `name`: it becomes
/// read-only under its vid, and the working VDI continues under a new vid whose index is
/// a copy of the base's (the working VDI itself, or another snapshot for a rebase).
///
/// The cluster log decides first (vid, snap id, which VDI turns read-only), so every
/// member applies the same change in the same order; then the new inode is written on
/// its replicas, then the old inode's header is marked. A gateway that dies in between
/// leaves work [`crate::reconcile`] finishes from the log's record.
async fn new_vdi(sheep: &Sheep, req: &RequestHeader, payload: Bytes) -> SheepResult<Reply> {
    expect_payload(req, &payload)?;
    if payload.len() != SD_MAX_VDI_LEN {
        return Err(SdResult::InvalidParms.into());
    }
    let name = parse_name(&payload)?;
    let a = req.vdi();
    if a.store_policy != 0 {
        // Hyper volumes are not implemented.
        return Err(SdResult::NoSupport.into());
    }
    let base = Vid::nonzero(a.base_vdi_id);
    let snapshot_of = if a.snapid != 0 {
        let working = lookup(sheep, &name, b"", 0)?;
        Some(working)
    } else {
        None
    };
    // What the new inode starts from: the base's header and index.
    let source = base.or(snapshot_of);
    let source_hdr = match source {
        Some(v) => {
            if !sheep.vdis().is_live(v) {
                return Err(SdResult::NoVdi.into());
            }
            let h = inode::read_header(sheep, v)
                .await
                .map_err(|_| SheepError::Result(SdResult::BaseVdiRead))?;
            Some(h)
        }
        None => None,
    };
    if snapshot_of.is_none()
        && base.is_some_and(|b| !sheep.vdis().get(b).is_some_and(|e| e.snapshot))
    {
        // Writes to a working base would show through the clone's shared objects.
        return Err(SdResult::InvalidParms.into());
    }
    let (def_copies, def_policy, def_shift) = sheep.sys().defaults();
    // As Sheepdog: no copies asked means the base's (or the cluster's) copies *and*
    // policy; an erasure code's copies are its data + parity strips.
    let (copies, copy_policy) = match (a.copies, &source_hdr) {
        (0, Some(h)) => (h.nr_copies, h.copy_policy),
        (0, None) => (def_copies, def_policy),
        // The C dog clones with the base's copies and no policy: an erasure-coded base's
        // clone stays erasure coded.
        (c, Some(h)) if a.copy_policy == 0 && c == h.nr_copies => (c, h.copy_policy),
        (c, _) => (c, a.copy_policy),
    };
    let copies = match sd_ec::Ec::from_policy(copy_policy) {
        Ok(None) => copies,
        Ok(Some(ec)) => {
            // Every strip needs a zone of its own.
            if sheep.sys().ring.nr_zones() < usize::from(ec.total()) {
                return Err(SdResult::Halt.into());
            }
            ec.total()
        }
        Err(_) => return Err(SdResult::InvalidParms.into()),
    };
    let shift = match (a.block_size_shift, &source_hdr) {
        (0, Some(h)) => h.block_size_shift,
        (0, None) => def_shift,
        (s, _) => s,
    };
    if copies > sd_proto::cluster::SD_MAX_COPIES || !(MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
        return Err(SdResult::InvalidParms.into());
    }
    if source_hdr
        .as_ref()
        .is_some_and(|h| h.block_size_shift != shift)
    {
        return Err(SdResult::InvalidParms.into());
    }
    let size = match (a.vdi_size, &source_hdr) {
        (0, Some(h)) => h.vdi_size,
        (s, _) => s,
    };
    let max_size = (1u64 << shift) * (sd_proto::inode::SD_INODE_DATA_INDEX as u64);
    if size > max_size {
        return Err(SdResult::InvalidParms.into());
    }
    let tag = match (snapshot_of, &source_hdr) {
        // The tag `dog vdi snapshot -s` (or QEMU's savevm) wrote into the header.
        (Some(w), Some(h)) if source == Some(w) => h.tag.clone(),
        (Some(w), _) => inode::read_header(sheep, w).await?.tag,
        _ => Vec::new(),
    };

    // Every member allocates the vid in log order from identical tables, so two gateways
    // never hand out the same one.
    let applied = sheep
        .submit(|token| ClusterMsg::NewVdi {
            token,
            name: name.clone(),
            size,
            copies,
            shift,
            copy_policy,
            base: source,
            snapshot_of,
            tag,
        })
        .await?;
    let vid = applied.vid;
    crate::failpoint::crash_point("new_vdi:after_log");
    let work = async {
        let entry = sheep.vdis().get(vid).cloned().ok_or(SdResult::NoVdi)?;
        volume::write_new_inode(sheep, vid, &entry).await?;
        crate::failpoint::crash_point("new_vdi:after_inode");
        if let Some(w) = snapshot_of {
            volume::mark_snapshot_header(sheep, w, entry.create_time).await?;
        }
        SheepResult::Ok(())
    };
    let r = work.await;
    crate::reconcile::conclude(sheep, vid, r.is_ok());
    r?;
    tracing::info!(%vid, size, copies, copy_policy, base = ?source, snapshot_of = ?snapshot_of, "created VDI");
    Ok(vdi_reply(sheep, vid))
}

/// DEL_VDI: the cluster log marks the VDI deleted first (it disappears from every
/// lookup at once); then its objects that nothing else references are freed and its inode
/// wiped. A gateway that dies in between leaves the rest to [`crate::reconcile`].
async fn del_vdi(sheep: &Sheep, req: &RequestHeader, payload: Bytes) -> SheepResult<Reply> {
    let (name, tag) = name_and_tag(req, &payload)?;
    let vid = lookup(sheep, &name, &tag, req.vdi().snapid)?;
    sheep
        .submit(|token| ClusterMsg::DelVdi { token, vid })
        .await?;
    crate::failpoint::crash_point("del_vdi:after_log");
    let r = reclaim::finish_delete(sheep, vid).await;
    crate::reconcile::conclude(sheep, vid, r.is_ok());
    let freed = r?;
    tracing::info!(%vid, freed, "deleted VDI");
    Ok(Reply {
        vdi: Some(VdiRsp {
            vdi_id: vid.get(),
            ..VdiRsp::default()
        }),
        ..Reply::default()
    })
}
