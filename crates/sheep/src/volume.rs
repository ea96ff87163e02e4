//! A VDI as its users see it, over the cluster: the inode written at create, the index
//! updated with reclaim of what it no longer names, copy-on-write of a clone's or
//! snapshot's objects, and the VDI lock. The Sheepdog-protocol handlers (`ops`), the NBD
//! export (`nbd`) and the repair of interrupted VDI work (`reconcile`) are adapters over
//! this layer; below it are the gateway and the cluster log.

use bytes::{Bytes, BytesMut};
use sd_cluster::{ClusterMsg, VdiEntry};
use sd_proto::inode::{InodeHeader, SD_INODE_DATA_INDEX_SIZE, SD_INODE_HEADER_SIZE, decode_index};
use sd_proto::{Oid, SdResult, Vid};

use crate::error::{SheepError, SheepResult};
use crate::gateway::{self, Mutation};
use crate::inode;
use crate::node::Sheep;

/// Writer `holder` of this node takes the lock of `vid` (VDI_LOCKED if another holds it).
pub async fn lock(sheep: &Sheep, vid: Vid, holder: u64) -> SheepResult<()> {
    sheep
        .submit(|token| ClusterMsg::Lock { token, vid, holder })
        .await
        .map(|_| ())
}

/// Releases `vid`'s lock held by writer `holder` of this node (0: whoever holds it).
pub async fn unlock(sheep: &Sheep, vid: Vid, holder: u64) -> SheepResult<()> {
    sheep
        .submit(|token| ClusterMsg::Unlock { token, vid, holder })
        .await
        .map(|_| ())
}

/// Writes the inode of `vid` as the log's record of it says: a fresh one, or a copy of
/// its parent's index (the parent is a snapshot by now, so its index no longer changes).
pub async fn write_new_inode(sheep: &Sheep, vid: Vid, e: &VdiEntry) -> SheepResult<()> {
    let header = InodeHeader {
        name: e.name.clone(),
        create_time: e.create_time,
        vdi_size: e.vdi_size,
        nr_copies: e.nr_copies,
        copy_policy: e.copy_policy,
        block_size_shift: e.block_size_shift,
        snap_id: e.snap_id,
        vdi_id: vid.get(),
        parent_vdi_id: e.parent.map_or(0, Vid::get),
        ..InodeHeader::default()
    };
    let index = match e.parent {
        Some(p) => {
            let n = header.data_objects();
            let mut index = inode::read_index(sheep, p, n).await?;
            index.resize(
                usize::try_from(n).map_err(|_| SheepError::Result(SdResult::InvalidParms))?,
                0,
            );
            index
        }
        None => Vec::new(),
    };
    let data = inode::inode_bytes(&header, &index);
    gateway::mutate(
        sheep,
        vid.inode_oid(),
        usize::from(e.nr_copies),
        Mutation::Create { offset: 0, data },
    )
    .await
}

/// Sets `snap_ctime` in the header of `vid`, now a snapshot.
pub async fn mark_snapshot_header(sheep: &Sheep, vid: Vid, when: u64) -> SheepResult<()> {
    let oid = vid.inode_oid();
    let data = Bytes::copy_from_slice(&when.max(1).to_le_bytes());
    let m = Mutation::Write {
        offset: SNAP_CTIME_OFFSET,
        data,
    };
    gateway::mutate(sheep, oid, sheep.copies_of(oid, 0), m).await
}

/// Offset of `snap_ctime` in the inode (spec §9.1).
const SNAP_CTIME_OFFSET: u64 = 520;

/// The whole new object of a copy-on-write create: the source object with `data` laid
/// over it at `offset`.
pub async fn copy_on_write(
    sheep: &Sheep,
    oid: Oid,
    src: Oid,
    offset: u64,
    data: Bytes,
) -> SheepResult<Bytes> {
    let shift = sheep.vdi_shift(oid.vid()).ok_or(SdResult::NoVdi)?;
    let size = oid.object_size(shift);
    let len = u32::try_from(size)
        .map_err(|_| crate::error::SheepError::Result(SdResult::InvalidParms))?;
    if offset == 0 && data.len() as u64 == size {
        return Ok(data);
    }
    let base = gateway::read(sheep, src, 0, len, sheep.copies_of(src, 0)).await?;
    let mut buf = BytesMut::from(base.as_ref());
    let start = usize::try_from(offset).ok();
    let dst = start.and_then(|s| buf.get_mut(s..s.checked_add(data.len())?));
    let Some(dst) = dst else {
        return Err(SdResult::InvalidParms.into());
    };
    dst.copy_from_slice(&data);
    Ok(buf.freeze())
}

const INDEX_START: u64 = SD_INODE_HEADER_SIZE as u64;
const INDEX_END: u64 = INDEX_START + SD_INODE_DATA_INDEX_SIZE as u64;

pub fn touches_index(offset: u64, len: usize) -> bool {
    let end = offset.saturating_add(len as u64);
    offset < INDEX_END && end > INDEX_START
}

/// A write into an inode's `data_vdi_id[]`: objects its old entries named are freed once
/// no live VDI references them (see [`crate::reclaim`]). This is what Sheepdog's `dog vdi
/// delete` and QEMU's discard rely on.
pub async fn write_inode_index(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    data: Bytes,
    copies: usize,
) -> SheepResult<()> {
    let _serial = sheep.index_update().await;
    let end = offset.saturating_add(data.len() as u64);
    // Whole entries overlapped by the write.
    let first = (offset.max(INDEX_START) - INDEX_START) / 4;
    let last = (end.min(INDEX_END) - INDEX_START).div_ceil(4);
    let span = u32::try_from((last - first) * 4)
        .map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let at = INDEX_START + first * 4;
    let before = gateway::read(sheep, oid, at, span, copies).await?;
    crate::failpoint::crash_point("index:before_write");
    gateway::mutate(sheep, oid, copies, Mutation::Write { offset, data }).await?;
    let after = gateway::read(sheep, oid, at, span, copies).await?;
    let candidates: Vec<(u32, u32)> = decode_index(&before)
        .into_iter()
        .zip(decode_index(&after))
        .enumerate()
        .filter(|(_, (old, new))| *old != 0 && old != new)
        .filter_map(|(i, (old, _))| Some((old, u32::try_from(first + i as u64).ok()?)))
        .collect();
    if !candidates.is_empty() {
        let freed = crate::reclaim::free_unreferenced(sheep, &candidates).await?;
        tracing::debug!(vid = %oid.vid(), dropped = candidates.len(), freed, "index entries dropped");
    }
    Ok(())
}
