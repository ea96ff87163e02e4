//! Reads, writes, creates and removes of erasure-coded objects, each under the object's
//! lock, retried across epoch changes as the replicated gateway does.

use bytes::Bytes;
use sd_ec::{DataRange, Geometry, StripRange};
use sd_proto::node::NodeId;
use sd_proto::{Epoch, Oid, SdResult};
use tokio::time::Instant;

use super::gather::{each_holder, gather, holders};
use super::peer::Op;
use super::resolve;
use crate::error::{SheepError, SheepResult};
use crate::gateway::{Answer, SETTLE_DEADLINE, Wait, settle};
use crate::node::Sheep;

/// How many times a read resolves an in-doubt write before giving up.
const RESOLVE_ATTEMPTS: usize = 5;

fn bad_range(_: sd_ec::EcError) -> SheepError {
    SdResult::InvalidParms.into()
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// What one attempt at reading a range found.
enum Attempt {
    Data(Vec<u8>),
    InDoubt,
}

/// Reads aligned `range` of `oid` once the cluster lets it: D strips, decoded if some
/// data strips are missing.
async fn read_range(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    range: DataRange,
) -> SheepResult<Attempt> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let d = usize::from(g.ec().data());
    loop {
        let (epoch, nodes) = holders(sheep, oid, g)?;
        let mut got = gather(sheep, oid, g, epoch, &nodes, range.strip_range(), &[]).await?;
        if got.present() >= d {
            if got.strips.iter().take(d).any(Option::is_none) {
                g.reconstruct(&mut got.strips)
                    .map_err(|_| SheepError::Result(SdResult::Eio))?;
            }
            let data: Vec<Vec<u8>> = got.strips.into_iter().take(d).flatten().collect();
            return Ok(Attempt::Data(g.join(range, &data).map_err(bad_range)?));
        }
        if got.in_doubt {
            return Ok(Attempt::InDoubt);
        }
        if let Some(wait) = got.wait {
            settle(sheep, epoch, wait, deadline).await?;
            continue;
        }
        if got.present() == 0 && got.missing.len() == nodes.len() {
            return Err(SdResult::NoObj.into());
        }
        tracing::error!(%oid, present = got.present(), needed = d, "too few strips to decode");
        return Err(got.failed.unwrap_or(SdResult::Eio).into());
    }
}

/// Reads aligned `range` of `oid` while holding its lock exclusively: a write in doubt is
/// resolved on the spot.
async fn read_range_exclusive(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    range: DataRange,
) -> SheepResult<Vec<u8>> {
    for _ in 0..RESOLVE_ATTEMPTS {
        match read_range(sheep, oid, g, range).await? {
            Attempt::Data(d) => return Ok(d),
            Attempt::InDoubt => resolve::resolve(sheep, oid, g).await?,
        }
    }
    Err(SdResult::InDoubt.into())
}

/// Reads `len` bytes at `offset` of erasure-coded object `oid`.
pub async fn read(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    offset: u64,
    len: u32,
) -> SheepResult<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let range = g.align(offset, u64::from(len)).map_err(bad_range)?;
    let start = usize_of(offset.saturating_sub(range.offset()));
    let cut = |data: Vec<u8>| {
        data.get(start..start.saturating_add(len as usize))
            .map(Bytes::copy_from_slice)
            .ok_or(SheepError::Result(SdResult::Eio))
    };
    for _ in 0..RESOLVE_ATTEMPTS {
        {
            let _shared = sheep.ec.read_lock(oid).await;
            if let Attempt::Data(d) = read_range(sheep, oid, g, range).await? {
                return cut(d);
            }
        }
        let _exclusive = sheep.ec.lock(oid).await;
        resolve::resolve(sheep, oid, g).await?;
    }
    Err(SdResult::InDoubt.into())
}

/// The D+P strips of aligned object data `full` covering `range`.
fn encode(g: Geometry, range: DataRange, full: &[u8]) -> SheepResult<Vec<Bytes>> {
    let mut strips = g.split(range, full).map_err(bad_range)?;
    let parity = g
        .encode(&strips)
        .map_err(|_| SheepError::Result(SdResult::Eio))?;
    strips.extend(parity);
    Ok(strips.into_iter().map(Bytes::from).collect())
}

/// `data` at `offset` inside a block-aligned buffer of `range` filled by `base`.
fn overlay(range: DataRange, mut base: Vec<u8>, offset: u64, data: &[u8]) -> SheepResult<Vec<u8>> {
    let start = usize_of(offset.saturating_sub(range.offset()));
    base.get_mut(start..start.saturating_add(data.len()))
        .ok_or(SheepError::Result(SdResult::InvalidParms))?
        .copy_from_slice(data);
    Ok(base)
}

/// Writes `data` at `offset` of existing erasure-coded object `oid`: the blocks it touches
/// are read first unless it covers them whole, then every holder prepares its strip's new
/// bytes and, once all have, completes them.
pub async fn write(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    offset: u64,
    data: Bytes,
) -> SheepResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    let len = data.len() as u64;
    let _exclusive = sheep.ec.lock(oid).await;
    let range = g.align(offset, len).map_err(bad_range)?;
    let full = if range.offset() == offset && range.len() == len {
        data.to_vec()
    } else {
        let old = read_range_exclusive(sheep, oid, g, range).await?;
        overlay(range, old, offset, &data)?
    };
    let strips = encode(g, range, &full)?;
    update(sheep, oid, g, range.strip_range(), &strips).await
}

/// Best effort: drops pending write `wid` where it was prepared (a holder that keeps it
/// presumes it orphaned later, and the next resolution decides).
async fn abandon(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    epoch: Epoch,
    nodes: &[NodeId],
    at: &[usize],
    wid: u64,
) {
    let discard = |i: usize| at.contains(&i).then_some(Op::Discard { wid });
    if let Ok(Some(answers)) = each_holder(sheep, epoch, oid, g, nodes, discard).await
        && answers.iter().any(|a| !matches!(a, Answer::Done(_)))
    {
        tracing::debug!(%oid, wid, "could not drop an abandoned strip write everywhere");
    }
}

/// The two phases of a write of `strips` (one per index) at strip range `sr`.
async fn update(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    sr: StripRange,
    strips: &[Bytes],
) -> SheepResult<()> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let (epoch, nodes) = holders(sheep, oid, g)?;
        let wid = sheep.ec.next_wid();
        let prepare = |i: usize| {
            Some(Op::Prepare {
                wid,
                offset: sr.offset,
                data: strips.get(i)?.clone(),
            })
        };
        let Some(answers) = each_holder(sheep, epoch, oid, g, &nodes, prepare).await? else {
            // Holders that prepared it presume it orphaned in the new epoch.
            settle(sheep, epoch, Wait::Epoch, deadline).await?;
            continue;
        };
        let prepared: Vec<usize> = (0..answers.len())
            .filter(|i| matches!(answers.get(*i), Some(Answer::Done(_))))
            .collect();
        if prepared.len() == nodes.len() {
            // Decided: every holder has it durably. Completion failures are left to the
            // resolution (which keeps a write every holder prepared).
            let complete = |_| Some(Op::Complete { wid });
            match each_holder(sheep, epoch, oid, g, &nodes, complete).await {
                Ok(Some(answers)) if answers.iter().all(|a| matches!(a, Answer::Done(_))) => {}
                other => {
                    tracing::debug!(%oid, wid, ?other, "strip write not completed everywhere; resolution will");
                }
            }
            return Ok(());
        }
        abandon(sheep, oid, g, epoch, &nodes, &prepared, wid).await;
        let wait = answers.iter().find_map(|a| match a {
            Answer::Retry => Some(Wait::Epoch),
            Answer::Behind => Some(Wait::Behind),
            _ => None,
        });
        // (A holder without its strip recovers it before it answers: NO_OBJ means there
        // is no such object.)
        let failed = answers.iter().find_map(|a| match a {
            Answer::Failed(r) if *r != SdResult::InDoubt => Some(*r),
            _ => None,
        });
        if let Some(r) = failed {
            return Err(r.into());
        }
        if let Some(wait) = wait {
            settle(sheep, epoch, wait, deadline).await?;
        } else {
            resolve::resolve(sheep, oid, g).await?;
        }
    }
}

/// What one round of answers to a create or a remove decides.
enum Round {
    Done,
    Again(Wait),
    Fail(SdResult),
}

/// The first failure fails the round; else a holder that could not answer now makes it
/// wait and retry; else it is done.
fn decide(answers: &[Answer]) -> Round {
    if let Some(r) = answers.iter().find_map(|a| match a {
        Answer::Failed(r) => Some(*r),
        _ => None,
    }) {
        return Round::Fail(r);
    }
    if answers.iter().any(|a| matches!(a, Answer::Retry)) {
        return Round::Again(Wait::Epoch);
    }
    if answers.iter().any(|a| matches!(a, Answer::Behind)) {
        return Round::Again(Wait::Behind);
    }
    Round::Done
}

/// Creates erasure-coded object `oid` (replacing it) with `data` at `offset`, zeros
/// elsewhere: every holder creates its strip whole.
pub async fn create(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    offset: u64,
    data: Bytes,
) -> SheepResult<()> {
    let _exclusive = sheep.ec.lock(oid).await;
    let (sr, strips) = if data.is_empty() {
        let zero = StripRange { offset: 0, len: 0 };
        (zero, vec![Bytes::new(); usize::from(g.ec().total())])
    } else {
        let range = g.align(offset, data.len() as u64).map_err(bad_range)?;
        let zeros = vec![0u8; usize_of(range.len())];
        let full = overlay(range, zeros, offset, &data)?;
        (range.strip_range(), encode(g, range, &full)?)
    };
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let (epoch, nodes) = holders(sheep, oid, g)?;
        let create = |i: usize| {
            Some(Op::Create {
                offset: sr.offset,
                data: strips.get(i)?.clone(),
                version: 0,
            })
        };
        let Some(answers) = each_holder(sheep, epoch, oid, g, &nodes, create).await? else {
            settle(sheep, epoch, Wait::Epoch, deadline).await?;
            continue;
        };
        match decide(&answers) {
            Round::Done => return Ok(()),
            Round::Again(wait) => settle(sheep, epoch, wait, deadline).await?,
            Round::Fail(r) => return Err(r.into()),
        }
    }
}

/// Removes every strip of erasure-coded object `oid` its holders have.
pub async fn remove(sheep: &Sheep, oid: Oid, g: Geometry) -> SheepResult<()> {
    let _exclusive = sheep.ec.lock(oid).await;
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let (epoch, nodes) = holders(sheep, oid, g)?;
        let Some(answers) = each_holder(sheep, epoch, oid, g, &nodes, |_| Some(Op::Remove)).await?
        else {
            settle(sheep, epoch, Wait::Epoch, deadline).await?;
            continue;
        };
        if answers
            .iter()
            .all(|a| matches!(a, Answer::Failed(SdResult::NoObj)))
        {
            return Err(SdResult::NoObj.into());
        }
        let kept: Vec<Answer> = answers
            .into_iter()
            .filter(|a| !matches!(a, Answer::Failed(SdResult::NoObj)))
            .collect();
        match decide(&kept) {
            Round::Done => return Ok(()),
            Round::Again(wait) => settle(sheep, epoch, wait, deadline).await?,
            Round::Fail(r) => return Err(r.into()),
        }
    }
}
