//! Resolving a write some holders of a stripe lack, and rebuilding a holder's missing
//! strip from D others. The caller holds the object's lock exclusively.
//!
//! A pending write is **kept** if some holder completed it (every holder had prepared it
//! then) or at least D holders have it (it decodes, and an acknowledged write is on every
//! live holder); else it is **dropped** (it was never acknowledged). Kept: the holders
//! that have it pending complete it, and those without it get their strip rebuilt from
//! the others. Dropped: the holders that have it pending discard it.

use std::collections::BTreeSet;

use futures::future::join_all;
use sd_ec::Geometry;
use sd_proto::node::NodeId;
use sd_proto::strip_log::StripLog;
use sd_proto::{Epoch, Oid, SdResult};
use tokio::time::Instant;

use super::gather::{gather, holders};
use super::peer::{self, Op};
use crate::error::{SheepError, SheepResult};
use crate::gateway::{Answer, SETTLE_DEADLINE, Wait, classify, settle};
use crate::node::Sheep;

/// Whether pending write `wid` stays, from every holder's log (`None`: no strip).
fn keep(logs: &[Option<StripLog>], wid: u64, data_strips: usize) -> bool {
    let logs = || logs.iter().flatten();
    logs().any(|l| l.has_complete(wid)) || logs().filter(|l| l.has(wid)).count() >= data_strips
}

/// Resolves every pending write on `oid`'s strips (see the module docs).
pub(super) async fn resolve(sheep: &Sheep, oid: Oid, g: Geometry) -> SheepResult<()> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let d = usize::from(g.ec().data());
    loop {
        let (epoch, nodes) = holders(sheep, oid, g)?;
        let calls = nodes.iter().enumerate().filter_map(|(i, nid)| {
            let index = u8::try_from(i).ok()?;
            Some(peer::log(sheep, *nid, epoch, oid, g, index))
        });
        let mut logs = Vec::with_capacity(nodes.len());
        let mut wait = None;
        for r in join_all(calls).await {
            match r {
                Ok(l) => logs.push(Some(l)),
                Err(e) => match classify(Err(e)) {
                    Answer::Failed(SdResult::NoObj) => logs.push(None),
                    Answer::Retry => wait = Some(Wait::Epoch),
                    Answer::Behind => {
                        wait.get_or_insert(Wait::Behind);
                    }
                    Answer::Failed(r) => return Err(r.into()),
                    Answer::Done(_) => logs.push(None),
                },
            }
        }
        if let Some(wait) = wait {
            // A holder that cannot answer may be the one that completed it: wait for it
            // or for the membership to drop it.
            settle(sheep, epoch, wait, deadline).await?;
            continue;
        }
        let pending: BTreeSet<u64> = logs
            .iter()
            .flatten()
            .filter_map(|l| l.pending.map(|p| p.wid))
            .collect();
        for wid in pending {
            let kept = keep(&logs, wid, d);
            tracing::info!(%oid, wid, kept, "resolving a strip write in doubt");
            let at = logs.iter().enumerate().filter(|(_, l)| {
                l.as_ref()
                    .is_some_and(|l| l.pending.is_some_and(|p| p.wid == wid))
            });
            let calls = at.filter_map(|(i, _)| {
                let nid = *nodes.get(i)?;
                let index = u8::try_from(i).ok()?;
                let op = if kept {
                    Op::Complete { wid }
                } else {
                    Op::Discard { wid }
                };
                Some(async move { peer::call(sheep, nid, epoch, oid, g, index, &op).await })
            });
            for r in join_all(calls).await {
                r?;
            }
            if kept {
                let lacking: Vec<usize> = (0..logs.len())
                    .filter(|i| {
                        !logs
                            .get(*i)
                            .and_then(Option::as_ref)
                            .is_some_and(|l| l.has(wid))
                    })
                    .collect();
                // The rebuilt strips carry the write's version, as its other strips do.
                let version = logs
                    .iter()
                    .flatten()
                    .find_map(|l| l.pending.filter(|p| p.wid == wid).map(|p| p.epoch))
                    .unwrap_or(epoch.0);
                if !lacking.is_empty() {
                    rebuild(sheep, oid, g, epoch, &nodes, &lacking, version).await?;
                }
            }
        }
        return Ok(());
    }
}

/// Rebuilds the whole strips of the holders at `targets` (indexes into `nodes`) from D
/// other holders' strips; they get `version`.
async fn rebuild(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    epoch: Epoch,
    nodes: &[NodeId],
    targets: &[usize],
    version: u32,
) -> SheepResult<()> {
    let whole = g.whole().strip_range();
    let mut got = gather(sheep, oid, g, epoch, nodes, whole, targets).await?;
    if got.present() < usize::from(g.ec().data()) {
        if got.in_doubt {
            return Err(SdResult::InDoubt.into());
        }
        if got.wait.is_some() {
            return Err(SdResult::Again.into());
        }
        tracing::warn!(%oid, present = got.present(), "too few strips to rebuild from");
        return Err(got.failed.unwrap_or(SdResult::NoObj).into());
    }
    g.reconstruct(&mut got.strips)
        .map_err(|_| SheepError::Result(SdResult::Eio))?;
    let calls = targets.iter().filter_map(|&i| {
        let nid = *nodes.get(i)?;
        let index = u8::try_from(i).ok()?;
        let data = got.strips.get(i)?.clone()?;
        let op = Op::Create {
            offset: 0,
            data: data.into(),
            version,
        };
        Some(async move { peer::call(sheep, nid, epoch, oid, g, index, &op).await })
    });
    for r in join_all(calls).await {
        r?;
    }
    tracing::info!(%oid, strips = ?targets, "rebuilt strips");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sd_proto::strip_log::Pending;

    fn pending(wid: u64) -> Option<StripLog> {
        Some(StripLog {
            pending: Some(Pending {
                wid,
                ..Pending::default()
            }),
            ..StripLog::default()
        })
    }

    fn complete(wid: u64) -> Option<StripLog> {
        Some(StripLog {
            complete: vec![wid],
            ..StripLog::default()
        })
    }

    #[test]
    fn kept_when_complete_somewhere_or_on_d_holders() {
        let none = Some(StripLog::default());
        // 4:2, write 9 on 3 holders only, nowhere complete: neither old nor new decodes
        // from a mix, but old does (the other 3 plus the strips' old bytes): dropped.
        let three = [
            pending(9),
            pending(9),
            pending(9),
            none.clone(),
            none.clone(),
            None,
        ];
        assert!(!keep(&three, 9, 4));
        // On 4 holders: it decodes; kept.
        let four = [
            pending(9),
            pending(9),
            pending(9),
            pending(9),
            none.clone(),
            None,
        ];
        assert!(keep(&four, 9, 4));
        // Complete on one: every holder had it; kept even if the others lost it.
        let one = [
            complete(9),
            pending(9),
            none.clone(),
            none.clone(),
            None,
            None,
        ];
        assert!(keep(&one, 9, 4));
        // A checkpointed last write counts as complete.
        let checkpointed = Some(StripLog {
            last_wid: 9,
            ..StripLog::default()
        });
        assert!(keep(&[checkpointed, pending(9), None], 9, 2));
        assert!(!keep(&[pending(9), none, None], 9, 2));
    }
}
