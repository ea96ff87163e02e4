//! Recovery of this node's strip of an erasure-coded object after an epoch change: the
//! strip its place in the new placement names (strip `i` on the `i`-th holder), checked
//! against that strip's holders in earlier epochs, fetched from the newest of them, or
//! rebuilt from D other strips when no live node has it.
//!
//! A strip's version is the epoch of its last write; every write touches every strip of
//! the object, so strips of the newest version are consistent with each other, and an
//! older one missed writes.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use sd_cluster::placement::Ring;
use sd_cluster::recovery::strip_sources;
use sd_ec::Geometry;
use sd_proto::node::NodeId;
use sd_proto::{Epoch, Oid, SdResult};
use sd_store::StripId;

use super::peer::{self, Op};
use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;

/// Earlier epochs whose placements are searched for a strip.
const EARLIER_EPOCHS: usize = 8;

/// The rings of the epochs before `epoch`, newest first (at most [`EARLIER_EPOCHS`]),
/// cached per epoch.
fn earlier_rings(sheep: &Sheep, epoch: Epoch) -> Arc<Vec<Ring>> {
    let mut cache = sheep.ec.rings.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((e, rings)) = cache.as_ref()
        && *e == epoch
    {
        return rings.clone();
    }
    let rings: Vec<Ring> = sheep
        .sys()
        .epochs
        .iter()
        .rev()
        .filter(|h| h.epoch < epoch)
        .take(EARLIER_EPOCHS)
        .map(|h| Ring::new(&h.members))
        .collect();
    let rings = Arc::new(rings);
    *cache = Some((epoch, rings.clone()));
    rings
}

/// The version of strip `index` on each of `nodes` (`None`: it has none), or AGAIN if one
/// cannot answer now (it may hold the newest).
async fn versions(
    sheep: &Sheep,
    epoch: Epoch,
    oid: Oid,
    g: Geometry,
    index: u8,
    nodes: &[NodeId],
) -> SheepResult<Vec<(NodeId, Option<u32>)>> {
    let answers = join_all(
        nodes
            .iter()
            .map(|n| peer::log(sheep, *n, epoch, oid, g, index)),
    )
    .await;
    let mut out = Vec::with_capacity(nodes.len());
    for (n, a) in nodes.iter().zip(answers) {
        match a {
            Ok(log) => out.push((*n, Some(log.version))),
            Err(e) if e.result() == SdResult::NoObj => out.push((*n, None)),
            Err(e) => {
                tracing::debug!(%oid, node = %n, error = %e, "strip version unavailable");
                return Err(SheepError::RecoverLater);
            }
        }
    }
    Ok(out)
}

/// The newest copy of one strip among `answers`: its version and holder.
fn newest(answers: &[(NodeId, Option<u32>)]) -> Option<(u32, NodeId)> {
    answers
        .iter()
        .filter_map(|(n, v)| v.map(|v| (v, *n)))
        .max_by_key(|(v, _)| *v)
}

/// Reads strip `index` of `oid` whole from `nid`, as it is.
async fn fetch(
    sheep: &Sheep,
    epoch: Epoch,
    oid: Oid,
    g: Geometry,
    index: u8,
    nid: NodeId,
) -> SheepResult<Vec<u8>> {
    let op = peer::whole_strip(g)?;
    Ok(peer::call(sheep, nid, epoch, oid, g, index, &op)
        .await?
        .to_vec())
}

/// Brings this node's strip of `oid` up to date for `epoch` (nothing to do if this node
/// holds none of its strips).
pub async fn recover(sheep: &Sheep, oid: Oid, g: Geometry, epoch: Epoch) -> SheepResult<()> {
    let total = usize::from(g.ec().total());
    let d = usize::from(g.ec().data());
    let me = sheep.me.nid;
    let (current, alive) = {
        let sys = sheep.sys();
        if sys.epoch != epoch {
            // The ring and the history must be those of the epoch recovered: this node has
            // not caught up (or has moved on); the caller tries again in a moment.
            return Err(SheepError::RecoverLater);
        }
        let alive: HashSet<NodeId> = sys.nodes.iter().map(|n| n.nid).collect();
        (sys.ring.clone(), alive)
    };
    let Some(index) = current
        .replicas(oid, total)
        .iter()
        .position(|n| n.nid == me)
    else {
        return Ok(());
    };
    let earlier = earlier_rings(sheep, epoch);
    let earlier: Vec<&Ring> = earlier.iter().collect();
    let sources = |j: usize| strip_sources(&alive, &current, &earlier, oid, total, j);
    let index8 = u8::try_from(index).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;

    let id = StripId::new(oid, index8).ok_or(SdResult::InvalidParms)?;
    let store = sheep.store.clone();
    let mine = blocking(move || match store.strip_log(id) {
        Ok(l) => Ok(Some(l.version)),
        Err(sd_store::StoreError::NoStrip(_)) => Ok(None),
        Err(e) => Err(e),
    })
    .await?;
    // The newest copy of every strip of the object, wherever its index was held lately.
    // Every write reaches every strip that has a holder, so the object's version is the
    // newest of them all, and a strip of an older version missed writes (a parity strip
    // of an index that had no holder while too few zones were up, say).
    let probes = join_all((0..total).map(|j| {
        // This node's own strip of its index is `mine`; strips of other indexes it still
        // holds (from an earlier place) count like anyone's.
        let nodes: Vec<NodeId> = sources(j)
            .into_iter()
            .filter(|n| *n != me || j != index)
            .collect();
        async move {
            let j8 = u8::try_from(j).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
            Ok::<_, SheepError>(newest(&versions(sheep, epoch, oid, g, j8, &nodes).await?))
        }
    }))
    .await;
    let best: Vec<Option<(u32, NodeId)>> = probes.into_iter().collect::<SheepResult<_>>()?;
    let Some(top) = best.iter().flatten().map(|(v, _)| *v).chain(mine).max() else {
        tracing::warn!(%oid, index, "no strip of this object on any live node");
        return Err(SdResult::NoObj.into());
    };
    if mine == Some(top) {
        tracing::debug!(%oid, index, version = top, "strip is the newest");
        return Ok(());
    }
    if let Some((v, from)) = best
        .get(index)
        .copied()
        .flatten()
        .filter(|(v, _)| *v == top)
    {
        let data = fetch(sheep, epoch, oid, g, index8, from).await?;
        let create = Op::Create {
            offset: 0,
            data: data.into(),
            version: v,
        };
        peer::call(sheep, me, epoch, oid, g, index8, &create).await?;
        tracing::info!(%oid, index, version = v, from = %from, "strip recovered");
        return Ok(());
    }

    // No live node has this strip at the newest version: rebuild it from D others.
    let chosen: Vec<(usize, NodeId)> = best
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != index)
        .filter_map(|(j, b)| b.filter(|(v, _)| *v == top).map(|(_, n)| (j, n)))
        .take(d)
        .collect();
    if chosen.len() < d {
        tracing::error!(%oid, index, found = chosen.len(), needed = d, "too few strips to rebuild from");
        return Err(SdResult::Eio.into());
    }
    let reads = join_all(chosen.iter().map(|(j, n)| async move {
        let j8 = u8::try_from(*j).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
        fetch(sheep, epoch, oid, g, j8, *n).await
    }))
    .await;
    let mut strips: Vec<Option<Vec<u8>>> = vec![None; total];
    for ((j, _), r) in chosen.iter().zip(reads) {
        if let Some(slot) = strips.get_mut(*j) {
            *slot = Some(r?);
        }
    }
    g.reconstruct(&mut strips)
        .map_err(|_| SheepError::Result(SdResult::Eio))?;
    let data = strips
        .get_mut(index)
        .and_then(Option::take)
        .ok_or(SheepError::Result(SdResult::Eio))?;
    let create = Op::Create {
        offset: 0,
        data: data.into(),
        version: top,
    };
    peer::call(sheep, me, epoch, oid, g, index8, &create).await?;
    tracing::info!(%oid, index, version = top, "strip rebuilt from the others");
    Ok(())
}
