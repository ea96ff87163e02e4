//! Client writes to objects this node must recover but does not hold yet.
//!
//! Recovering such an object before the write (fetching all of it and writing it durably)
//! costs a 4 MiB transfer and sync per first write: most of a client's latency while a
//! node's data is re-replicated. Instead the write goes to a *partial copy*
//! (`sd_store::Store::write_partial`: durable, holding only the bytes written) and the
//! object moves to the front of the epoch's recovery, which fetches the newest full copy
//! and lays the partial copy's bytes over it before storing it ([`merge`]).
//!
//! Overlaying is right when the partial copy's bytes are the newest: this node received
//! every write to the object since the partial copy began, i.e. it has held the object in
//! every epoch since and not left the cluster (`Recovery::partial_is_fresh`). A partial
//! copy of an object no longer placed here stops being fresh ([`unplaced`]) and is
//! removed once the epoch is stable, like a leftover copy; one that is not fresh takes no
//! new writes (they would mix ages). One kept across a restart is overlaid only over a copy last written in an
//! earlier epoch than it was (that copy never saw its writes); a copy written since, in
//! the partial copy's epoch or later, received those writes too (they went to every holder
//! of that epoch), or superseded them, and is taken as it is.
//!
//! A partial copy may hold the only surviving bytes of acknowledged writes: when the nodes
//! with whole copies die before it is merged, the remaining whole copies can be older.
//! So other nodes' recovery sees partial copies too: FETCH_PEER answers for one with its
//! version marked `peer_copy::PARTIAL` and, when asked for the bytes, its ranges; a
//! recovery lays every partial copy newer than the copy it takes over that copy, oldest
//! first ([`newer_than`]; `object::fetch_newer`), and waits (AGAIN) for one it cannot
//! fetch.

use bytes::Bytes;
use sd_cluster::placement::Ring;
use sd_proto::node::NodeId;
use sd_proto::{Epoch, Oid};

use crate::disk::blocking;
use crate::error::SheepResult;
use crate::node::Sheep;

/// Writes `data` at `offset` of `oid` into its partial copy if this node must recover the
/// object and does not hold it; false (nothing written) if the caller must recover it
/// first: the node holds a copy (to be verified), the write is not aligned, or the store
/// cannot keep partial copies.
pub async fn write(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    data: &Bytes,
    epoch: Epoch,
) -> SheepResult<bool> {
    let align = sd_store::PARTIAL_ALIGN;
    if !offset.is_multiple_of(align) || !(data.len() as u64).is_multiple_of(align) {
        return Ok(false);
    }
    let lock = sheep.recovery.lock_for(oid);
    let _g = lock.lock().await;
    // A partial copy that is not fresh (kept from before this node rejoined) may lack
    // writes made meanwhile: adding newer ones to it would mix ages; recovery settles it.
    if !sheep.recovery.needs(oid)
        || (sheep.store.has_partial(oid) && !sheep.recovery.partial_is_fresh(oid))
    {
        return Ok(false);
    }
    let (store, size, data) = (sheep.store.clone(), sheep.object_size(oid), data.clone());
    let wrote = blocking(move || store.write_partial(oid, size, offset, &data, epoch.0)).await?;
    if wrote {
        sheep.recovery.wrote_partial(oid);
    }
    Ok(wrote)
}

/// The copy to store for `oid`, given the fetched `data` at `version`: with the partial
/// copy's bytes laid over it when they are newer (`fresh`: `Recovery::partial_is_fresh`;
/// see the module documentation), and its version then the later of the two. Blocks.
pub(super) fn merge(
    store: &sd_store::Store,
    oid: Oid,
    fresh: bool,
    data: Bytes,
    version: u32,
) -> Result<(Bytes, u32), sd_store::StoreError> {
    let Some(partial) = store.partial_version(oid) else {
        return Ok((data, version));
    };
    if !fresh && (version == 0 || version >= partial) {
        tracing::info!(%oid, version, partial, "partial copy older than the fetched copy: dropped");
        return Ok((data, version));
    }
    let mut buf = data.to_vec();
    let Some(partial) = store.overlay_partial(oid, &mut buf)? else {
        return Ok((data, version));
    };
    tracing::debug!(%oid, version, partial, fresh, "partial copy merged");
    Ok((Bytes::from(buf), version.max(partial)))
}

/// The members' partial copies (node, version) newer than a copy of `version`, oldest
/// first: their writes are later than any that copy holds (with versions: 0 is unknown,
/// and then none is known to be newer).
pub(super) fn newer_than(partials: &[(NodeId, u32)], version: u32) -> Vec<(NodeId, u32)> {
    if version == 0 {
        return Vec::new();
    }
    let mut newer: Vec<(NodeId, u32)> = partials
        .iter()
        .copied()
        .filter(|(_, v)| *v > version)
        .collect();
    newer.sort_by_key(|(_, v)| *v);
    newer
}

/// The partial copies of objects `ring` does not place on this node stop being fresh:
/// this node will not receive their writes from now on. They stay (as leftover copies
/// do) until every member recovered the epoch ([`super::cleanup`]): until then, one may
/// hold the only bytes of acknowledged writes whose whole copy is on a node that dies.
pub fn unplaced(sheep: &Sheep, ring: &Ring) {
    let unplaced = not_placed_on(sheep, ring);
    if !unplaced.is_empty() {
        tracing::info!(
            partial = unplaced.len(),
            "partial copies of objects no longer placed here kept until the epoch is stable"
        );
        sheep.recovery.partials_dropped(&unplaced);
    }
}

/// The objects of this node's partial copies that `ring` does not place on it.
pub(super) fn not_placed_on(sheep: &Sheep, ring: &Ring) -> Vec<Oid> {
    let me = sheep.me.nid;
    sheep
        .store
        .partials()
        .into_iter()
        .filter(|oid| {
            let copies = sheep.copies_of(*oid, 0);
            ring.replicas(*oid, copies).iter().all(|n| n.nid != me)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use sd_store::{Store, StoreConfig, SyncMode};

    const SIZE: u64 = 16 * sd_store::PARTIAL_ALIGN;

    fn node(port: u16) -> NodeId {
        NodeId::from_socket(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn only_partial_copies_newer_than_the_copy_count_oldest_first() {
        let p = [(node(1), 5), (node(2), 3), (node(3), 7), (node(4), 4)];
        assert_eq!(newer_than(&p, 4), vec![(node(1), 5), (node(3), 7)]);
        assert!(newer_than(&p, 7).is_empty());
        assert!(
            newer_than(&p, 0).is_empty(),
            "versionless: none is known newer"
        );
    }

    /// A store holding a partial copy of `oid` at version 5: 4 KiB of 7s at 4 KiB.
    fn store_with_partial(dir: &std::path::Path, oid: Oid) -> Store {
        let s = Store::open(StoreConfig {
            dir: dir.to_path_buf(),
            sync: SyncMode::Writethrough,
        })
        .unwrap();
        let block = vec![7u8; sd_store::PARTIAL_ALIGN as usize];
        assert!(
            s.write_partial(oid, SIZE, sd_store::PARTIAL_ALIGN, &block, 5)
                .unwrap()
        );
        s
    }

    #[test]
    fn a_fresh_partial_copy_is_laid_over_any_copy() {
        let d = tempfile::tempdir().unwrap();
        let oid = Oid::new(0x42);
        let s = store_with_partial(d.path(), oid);
        let base = Bytes::from(vec![1u8; SIZE as usize]);
        let (merged, version) = merge(&s, oid, true, base, 9).unwrap();
        assert_eq!(version, 9);
        let a = sd_store::PARTIAL_ALIGN as usize;
        assert!(merged[..a].iter().all(|b| *b == 1));
        assert!(merged[a..2 * a].iter().all(|b| *b == 7));
        assert!(merged[2 * a..].iter().all(|b| *b == 1));
    }

    #[test]
    fn a_kept_partial_copy_is_laid_only_over_an_older_copy() {
        let d = tempfile::tempdir().unwrap();
        let oid = Oid::new(0x43);
        let s = store_with_partial(d.path(), oid);
        let base = Bytes::from(vec![1u8; SIZE as usize]);
        for newer_or_same in [5, 6] {
            let (data, version) = merge(&s, oid, false, base.clone(), newer_or_same).unwrap();
            assert_eq!((data.clone(), version), (base.clone(), newer_or_same));
        }
        let (data, version) = merge(&s, oid, false, base.clone(), 0).unwrap();
        assert_eq!((data, version), (base.clone(), 0), "versionless copy");
        let (data, version) = merge(&s, oid, false, base.clone(), 4).unwrap();
        assert_eq!(version, 5);
        assert_ne!(data, base);
    }
}
