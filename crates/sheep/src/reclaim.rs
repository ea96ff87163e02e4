//! Space reclaim: a data object `(owner, idx)` is freed once no live VDI's index points at
//! it any more.
//!
//! Snapshots and clones start with a copy of their parent's `data_vdi_id[]`, so the only
//! indexes that can name an object `owner` created are those of `owner` and of the VDIs
//! descended from it (the chain of `parent_vdi_id`, deleted links included). Reclaim reads
//! exactly those indexes at the candidate positions: reachability from the live VDIs,
//! instead of Sheepdog's generational reference counts, so an interrupted delete can
//! simply run again (every step is idempotent) and nothing is freed while a reference
//! remains.
//!
//! Order makes it crash-safe: an index entry is cleared (or the VDI marked deleted in the
//! cluster log) before the object it named is removed, so a crash leaves at worst an
//! unreferenced object, never an index entry naming a removed one.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use sd_proto::{Oid, SdResult, Vid};

use crate::disk::blocking;
use crate::error::SheepResult;
use crate::gateway::{self, Mutation};
use crate::inode::{read_header, read_index};
use crate::node::Sheep;

/// Which of `candidates` (owner vid, index) no live VDI references; each is checked
/// against the indexes of the live VDIs descended from its owner.
pub async fn unreferenced(sheep: &Sheep, candidates: &[(u32, u32)]) -> SheepResult<Vec<Oid>> {
    // Candidates grouped by owner; the family of each owner read once.
    let mut by_owner: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (owner, idx) in candidates {
        by_owner.entry(*owner).or_default().push(*idx);
    }
    let mut indexes: HashMap<Vid, Vec<u32>> = HashMap::new();
    let mut free = Vec::new();
    for (owner, idxs) in by_owner {
        let Some(owner_vid) = Vid::nonzero(owner) else {
            continue;
        };
        let family = sheep.vdis().live_descendants(owner_vid);
        let need = idxs.iter().copied().max().map_or(0, |m| u64::from(m) + 1);
        for v in &family {
            let have = indexes.get(v).map_or(0, |i| i.len() as u64);
            if have < need {
                let size = sheep.vdis().get(*v).map_or(0, |e| e.vdi_size);
                let shift = sheep.vdis().get(*v).map_or(22, |e| e.block_size_shift);
                let n = size.div_ceil(1u64 << shift).max(need);
                indexes.insert(*v, read_index(sheep, *v, n).await?);
            }
        }
        for idx in idxs {
            let referenced = family.iter().any(|v| {
                indexes
                    .get(v)
                    .and_then(|i| i.get(usize::try_from(idx).ok()?))
                    .is_some_and(|e| *e == owner)
            });
            if !referenced {
                free.push(owner_vid.data_oid(idx));
            }
        }
    }
    Ok(free)
}

/// Removes `oid` from every replica (already gone is fine).
pub async fn remove_object(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    match gateway::mutate(sheep, oid, sheep.copies_of(oid, 0), Mutation::Remove).await {
        Err(e) if e.result() == SdResult::NoObj => Ok(()),
        other => other,
    }
}

/// Frees the objects among `candidates` that nothing references any more; returns how
/// many it removed.
pub async fn free_unreferenced(sheep: &Sheep, candidates: &[(u32, u32)]) -> SheepResult<usize> {
    let free = unreferenced(sheep, candidates).await?;
    for (i, oid) in free.iter().enumerate() {
        if i == 1 {
            crate::failpoint::crash_point("reclaim:after_first");
        }
        remove_object(sheep, *oid).await?;
    }
    Ok(free.len())
}

/// Finishes the deletion of `vid` (already marked deleted in the cluster log): frees
/// what only it referenced, then wipes its inode (name cleared, index dropped; the header
/// stays so the chain of parents remains walkable). Idempotent.
pub async fn finish_delete(sheep: &Sheep, vid: Vid) -> SheepResult<usize> {
    let _serial = sheep.index_update().await;
    let mut hdr = match read_header(sheep, vid).await {
        Ok(h) => h,
        Err(e) if e.result() == SdResult::NoObj => return Ok(0),
        Err(e) => return Err(e),
    };
    if hdr.name.is_empty() {
        return Ok(0);
    }
    let index = read_index(sheep, vid, hdr.data_objects()).await?;
    let candidates: Vec<(u32, u32)> = index
        .iter()
        .enumerate()
        .filter(|(_, e)| **e != 0)
        .filter_map(|(i, e)| Some((*e, u32::try_from(i).ok()?)))
        .collect();
    let freed = free_unreferenced(sheep, &candidates).await?;
    hdr.name.clear();
    hdr.vdi_size = 0;
    let oid = vid.inode_oid();
    let copies = sheep.copies_of(oid, 0);
    // Recreating the sparse inode drops the index.
    let data = Bytes::from(hdr.encode());
    gateway::mutate(sheep, oid, copies, Mutation::Create { offset: 0, data }).await?;
    Ok(freed)
}

/// Of `oids`, the data objects (as `(owner vid, index)`) of VDIs that are deleted and
/// settled: the copies [`unreferenced`] may find dead.
pub(crate) fn dead_candidates(sheep: &Sheep, oids: &[Oid]) -> Vec<(u32, u32)> {
    let t = sheep.vdis();
    oids.iter()
        .filter(|o| o.is_data())
        .filter(|o| {
            let v = o.vid();
            t.get(v).is_some() && !t.is_live(v) && !t.is_unsettled(v)
        })
        .map(|o| (o.vid().get(), o.index()))
        .collect()
}

/// Copies of deleted VDIs' objects this node still holds although nothing references them
/// (the delete ran while this node was away, or recovery brought them back): removed
/// from this node. Only deletes the log says are finished are considered, so a delete in
/// progress is never raced. Returns how many copies were removed.
pub async fn sweep_local(sheep: &Sheep) -> SheepResult<usize> {
    let store = sheep.store.clone();
    let list = blocking(move || store.list()).await?;
    let candidates = dead_candidates(sheep, &list);
    if candidates.is_empty() {
        return Ok(0);
    }
    let free = unreferenced(sheep, &candidates).await?;
    for oid in &free {
        crate::replica::remove(sheep, *oid).await?;
    }
    Ok(free.len())
}
