//! This node's erasure-coded strips: the store behind the strip peer ops (and behind the
//! gateway when this node holds one of an object's strips). See docs/erasure-coding.md.
//!
//! A strip is addressed by its object and its index in the stripe; its size follows from
//! the object's VDI (block size and code), so the VDI must be known here: a VDI created
//! through another gateway a moment ago is waited for briefly.

use std::time::Duration;

use bytes::Bytes;
use sd_ec::{Ec, Geometry};
use sd_proto::strip_log::{Pending, StripLog};
use sd_proto::{Epoch, Oid, SdResult};
use sd_store::{PendingWrite, StripId, StripWrite};

use crate::disk::blocking;
use crate::error::SheepResult;
use crate::node::Sheep;

/// A pending write older than this is presumed orphaned: its writer completes or drops it
/// within a round trip, unless it died.
pub const ORPHANED_AFTER: Duration = Duration::from_secs(10);

/// How long a holder waits to learn a VDI another gateway just created.
const VDI_WAIT: Duration = Duration::from_secs(5);

/// The erasure code and geometry of `oid` if it is an erasure-coded data object of a VDI
/// this node knows (inodes, attributes and vmstate stay replicated).
pub fn geometry(sheep: &Sheep, oid: Oid) -> Option<Geometry> {
    if !oid.is_data() {
        return None;
    }
    let (policy, shift) = {
        let vdis = sheep.vdis();
        let e = vdis.get(oid.vid())?;
        (e.copy_policy, e.block_size_shift)
    };
    let ec = Ec::from_policy(policy).ok()??;
    Geometry::new(ec, oid.object_size(shift)).ok()
}

/// [`geometry`], waiting briefly for the VDI; INVALID_PARMS if it is not erasure coded.
async fn geometry_wait(sheep: &Sheep, oid: Oid) -> SheepResult<Geometry> {
    let mut rx = sheep.watch_vdis();
    let known = tokio::time::timeout(VDI_WAIT, async {
        loop {
            if sheep.vdi_shift(oid.vid()).is_some() {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    })
    .await;
    if !matches!(known, Ok(true)) {
        return Err(SdResult::NoVdi.into());
    }
    geometry(sheep, oid).ok_or_else(|| SdResult::InvalidParms.into())
}

/// The strip `index` of `oid`, checked against the object's code.
async fn strip_id(sheep: &Sheep, oid: Oid, index: u8) -> SheepResult<(StripId, Geometry)> {
    let g = geometry_wait(sheep, oid).await?;
    if index >= g.ec().total() {
        return Err(SdResult::InvalidParms.into());
    }
    let id = StripId::new(oid, index).ok_or(SdResult::InvalidParms)?;
    Ok((id, g))
}

/// Every object this node stores: whole copies, and objects it holds strips of.
pub fn local_oids(store: &sd_store::Store) -> Result<Vec<Oid>, sd_store::StoreError> {
    let mut oids = store.list()?;
    oids.extend(store.list_strips()?.into_iter().map(|s| s.oid));
    oids.sort_unstable();
    oids.dedup();
    Ok(oids)
}

/// This node's place in the placement of `oid`'s strips on `ring` (`None`: none).
pub fn index_on(
    sheep: &Sheep,
    ring: &sd_cluster::placement::Ring,
    oid: Oid,
    g: Geometry,
) -> Option<usize> {
    ring.replicas(oid, usize::from(g.ec().total()))
        .iter()
        .position(|n| n.nid == sheep.me.nid)
}

/// Whether a pending write is presumed orphaned (see [`ORPHANED_AFTER`]).
fn orphaned(p: &PendingWrite, now: Epoch) -> bool {
    p.age.is_none_or(|a| a >= ORPHANED_AFTER) || p.epoch < now.0
}

/// Creates strip `index` of `oid` whole (replacing it), `data` at `offset`.
pub async fn create(
    sheep: &Sheep,
    oid: Oid,
    index: u8,
    offset: u64,
    data: Bytes,
    epoch: Epoch,
) -> SheepResult<()> {
    let (id, g) = strip_id(sheep, oid, index).await?;
    let store = sheep.store.clone();
    let size = g.strip_size();
    blocking(move || store.create_strip(id, size, offset, &data, epoch.0)).await
}

/// Prepares write `wid` (`data` at `offset`) on strip `index` of `oid`.
pub async fn prepare(
    sheep: &Sheep,
    oid: Oid,
    index: u8,
    wid: u64,
    offset: u64,
    data: Bytes,
    epoch: Epoch,
) -> SheepResult<()> {
    let (id, _) = strip_id(sheep, oid, index).await?;
    if wid == 0 {
        return Err(SdResult::InvalidParms.into());
    }
    checked(sheep, oid).await?;
    let store = sheep.store.clone();
    blocking(move || {
        store.prepare_strip(
            id,
            StripWrite {
                wid,
                epoch: epoch.0,
                offset,
                data: &data,
            },
        )
    })
    .await
}

/// Completes write `wid` on strip `index` of `oid`.
pub async fn complete(sheep: &Sheep, oid: Oid, index: u8, wid: u64) -> SheepResult<()> {
    let (id, _) = strip_id(sheep, oid, index).await?;
    let store = sheep.store.clone();
    blocking(move || store.complete_strip(id, wid)).await
}

/// Drops the pending write `wid` of strip `index` of `oid`.
pub async fn discard(sheep: &Sheep, oid: Oid, index: u8, wid: u64) -> SheepResult<()> {
    let (id, _) = strip_id(sheep, oid, index).await?;
    let store = sheep.store.clone();
    blocking(move || store.discard_strip_write(id, wid)).await
}

/// What the log of strip `index` of `oid` holds.
pub async fn log(sheep: &Sheep, oid: Oid, index: u8) -> SheepResult<StripLog> {
    let (id, _) = strip_id(sheep, oid, index).await?;
    let store = sheep.store.clone();
    let s = blocking(move || store.strip_log(id)).await?;
    let now = sheep.sys().epoch;
    Ok(StripLog {
        version: s.version,
        last_wid: s.last_wid,
        complete: s.complete,
        pending: s.pending.map(|p| Pending {
            wid: p.wid,
            epoch: p.epoch,
            offset: p.offset,
            len: p.len,
            orphaned: orphaned(&p, now),
        }),
    })
}

/// Client I/O must not see a strip recovery has not checked since the epoch changed: this
/// node's strip of `oid` is brought up to date first.
async fn checked(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    if sheep.recovery.needs(oid) {
        // Boxed: recovering a strip calls strips (its own node's too).
        Box::pin(crate::recovery::object::recover_now(sheep, oid)).await?;
    }
    Ok(())
}

/// Reads `len` bytes at `offset` of strip `index` of `oid` (its complete writes). IN_DOUBT
/// when the strip holds a write presumed orphaned: the stripe must be resolved first. A
/// read for another node's recovery (`for_recovery`) is served as the strip is.
pub async fn read(
    sheep: &Sheep,
    oid: Oid,
    index: u8,
    offset: u64,
    len: u32,
    for_recovery: bool,
) -> SheepResult<Bytes> {
    let (id, g) = strip_id(sheep, oid, index).await?;
    if !for_recovery {
        checked(sheep, oid).await?;
    } else {
        // Recovery and `vdi check` see the directory as it is, not a cached descriptor of
        // a file removed behind our back.
        let store = sheep.store.clone();
        if !blocking(move || Ok(store.strip_exists(id))).await? {
            return Err(SdResult::NoObj.into());
        }
    }
    let len64 = u64::from(len);
    if offset.checked_add(len64).is_none_or(|e| e > g.strip_size()) {
        return Err(SdResult::InvalidParms.into());
    }
    let store = sheep.store.clone();
    let (buf, pending) = blocking(move || {
        let mut buf = vec![0u8; len as usize];
        let p = store.read_strip(id, offset, &mut buf)?;
        Ok((buf, p))
    })
    .await?;
    if !for_recovery && pending.is_some_and(|p| orphaned(&p, sheep.sys().epoch)) {
        return Err(SdResult::InDoubt.into());
    }
    Ok(Bytes::from(buf))
}

/// Removes strip `index` of `oid`.
pub async fn remove(sheep: &Sheep, oid: Oid, index: u8) -> SheepResult<()> {
    let id = StripId::new(oid, index).ok_or(SdResult::InvalidParms)?;
    let store = sheep.store.clone();
    blocking(move || store.remove_strip(id)).await
}
