//! `dog vdi check` of an erasure-coded object (CHECK_STRIPS): every strip is read from its
//! holder as it is, the strips are checked against each other, and missing or wrong ones
//! are rebuilt from the rest.
//!
//! The strips of a stripe are consistent when any D of them decode to the others. If they
//! are not, a strip is known to be wrong only when leaving it out (and no other) makes the
//! rest consistent with a strip to spare: with P = 1, or several wrong strips, nothing says
//! which is wrong, and nothing is changed (UNDECIDED).

use futures::future::join_all;
use sd_ec::Geometry;
use sd_proto::strip_check::{Outcome, StripCheck, StripStatus};
use sd_proto::{Oid, SdResult};

use super::gather::holders;
use super::peer::{self, Op};
use super::resolve;
use crate::error::{SheepError, SheepResult};
use crate::gateway::{Answer, classify};
use crate::node::Sheep;

/// Whether the strips at `set` (indexes into `strips`, all present) are consistent: the
/// first D decode to every other one. `set` must hold at least D strips.
fn consistent(g: Geometry, strips: &[Option<Vec<u8>>], set: &[usize]) -> bool {
    let d = usize::from(g.ec().data());
    let mut trial: Vec<Option<Vec<u8>>> = vec![None; strips.len()];
    for &i in set.iter().take(d) {
        if let (Some(slot), Some(s)) = (trial.get_mut(i), strips.get(i)) {
            slot.clone_from(s);
        }
    }
    if g.reconstruct(&mut trial).is_err() {
        return false;
    }
    set.iter().skip(d).all(|&i| trial.get(i) == strips.get(i))
}

/// The strips that are wrong among `present`: none if they are consistent, the one whose
/// removal leaves a consistent set with a strip to spare, else `None` (undecided).
fn wrong_strips(g: Geometry, strips: &[Option<Vec<u8>>], present: &[usize]) -> Option<Vec<usize>> {
    let d = usize::from(g.ec().data());
    if consistent(g, strips, present) {
        return Some(Vec::new());
    }
    if present.len() < d + 2 {
        return None;
    }
    let culprits: Vec<usize> = present
        .iter()
        .copied()
        .filter(|k| {
            let rest: Vec<usize> = present.iter().copied().filter(|i| i != k).collect();
            consistent(g, strips, &rest)
        })
        .collect();
    (culprits.len() == 1).then_some(culprits)
}

fn set(status: &mut [StripStatus], i: usize, s: StripStatus) {
    if let Some(slot) = status.get_mut(i) {
        *slot = s;
    }
}

/// Checks (unless `exist_only`, repairs) the strips of `oid`.
pub async fn check(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    exist_only: bool,
) -> SheepResult<StripCheck> {
    let _exclusive = sheep.ec.lock(oid).await;
    if !exist_only {
        // A write in doubt is settled first: its holders differ until then.
        resolve::resolve(sheep, oid, g).await?;
    }
    let (epoch, nodes) = holders(sheep, oid, g)?;
    let d = usize::from(g.ec().data());
    let op = peer::whole_strip(g)?;
    let reads = join_all(nodes.iter().enumerate().filter_map(|(i, nid)| {
        let index = u8::try_from(i).ok()?;
        Some(peer::call(sheep, *nid, epoch, oid, g, index, &op))
    }))
    .await;
    let mut strips: Vec<Option<Vec<u8>>> = vec![None; usize::from(g.ec().total())];
    let mut status = vec![StripStatus::Good; nodes.len()];
    for (i, r) in reads.into_iter().enumerate() {
        match classify(r) {
            Answer::Done(b) => {
                if let Some(slot) = strips.get_mut(i) {
                    *slot = Some(b.to_vec());
                }
            }
            Answer::Failed(SdResult::NoObj) => set(&mut status, i, StripStatus::Missing),
            _ => set(&mut status, i, StripStatus::Unknown),
        }
    }
    let present: Vec<usize> = (0..nodes.len())
        .filter(|i| strips.get(*i).is_some_and(Option::is_some))
        .collect();
    let missing: Vec<usize> = (0..nodes.len())
        .filter(|i| status.get(*i) == Some(&StripStatus::Missing))
        .collect();
    let answer = |outcome, strips| Ok(StripCheck { outcome, strips });
    if present.len() < d {
        let outcome = if status.contains(&StripStatus::Unknown) {
            Outcome::Undecided
        } else {
            Outcome::Lost
        };
        return answer(outcome, status);
    }
    if exist_only {
        let outcome = if missing.is_empty() {
            Outcome::Intact
        } else {
            Outcome::Repaired
        };
        return answer(outcome, status);
    }
    if status.contains(&StripStatus::Unknown) {
        return answer(Outcome::Undecided, status);
    }
    let Some(wrong) = wrong_strips(g, &strips, &present) else {
        tracing::warn!(%oid, "strips disagree and do not say which is wrong");
        return answer(Outcome::Undecided, status);
    };
    for &k in &wrong {
        set(&mut status, k, StripStatus::Wrong);
    }
    let targets: Vec<usize> = missing.iter().chain(&wrong).copied().collect();
    if targets.is_empty() {
        return answer(Outcome::Intact, status);
    }
    // The good strips' version goes to the rebuilt ones, as recovery would give them.
    let good: Vec<usize> = present
        .iter()
        .copied()
        .filter(|i| !wrong.contains(i))
        .collect();
    let logs = join_all(good.iter().filter_map(|&i| {
        let index = u8::try_from(i).ok()?;
        Some(peer::log(sheep, *nodes.get(i)?, epoch, oid, g, index))
    }))
    .await;
    let version = logs
        .into_iter()
        .filter_map(Result::ok)
        .map(|l| l.version)
        .max()
        .unwrap_or(epoch.0);
    for &k in &wrong {
        if let Some(slot) = strips.get_mut(k) {
            *slot = None;
        }
    }
    g.reconstruct(&mut strips)
        .map_err(|_| SheepError::Result(SdResult::Eio))?;
    for &k in &targets {
        let (Some(nid), Some(Some(data)), Ok(index)) =
            (nodes.get(k), strips.get(k), u8::try_from(k))
        else {
            continue;
        };
        let create = Op::Create {
            offset: 0,
            data: data.clone().into(),
            version,
        };
        peer::call(sheep, *nid, epoch, oid, g, index, &create).await?;
        tracing::info!(%oid, strip = k, "strip repaired by check");
    }
    answer(Outcome::Repaired, status)
}
