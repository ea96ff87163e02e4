//! Where an erasure-coded object's strips are now (`holders`) and reading one strip range
//! from enough of them to decode (`gather`): shared by reads, writes, resolution and checks.

use futures::future::join_all;
use sd_ec::{Geometry, StripRange};
use sd_proto::node::NodeId;
use sd_proto::{Epoch, Oid, SdResult};

use super::peer::{self, Op};
use crate::error::{SheepError, SheepResult};
use crate::gateway::{Answer, Cut, Wait, classify, guarded, targets};
use crate::node::Sheep;

/// The current epoch and the holders of `oid`'s strips (strip `i` on the `i`-th), at
/// least D of them (else HALT: too few zones to decode).
pub(super) fn holders(sheep: &Sheep, oid: Oid, g: Geometry) -> SheepResult<(Epoch, Vec<NodeId>)> {
    let (epoch, mut nodes) = targets(sheep, oid, usize::from(g.ec().total()))?;
    nodes.truncate(usize::from(g.ec().total()));
    if nodes.len() < usize::from(g.ec().data()) {
        return Err(SdResult::Halt.into());
    }
    Ok((epoch, nodes))
}

/// Applies `op(i)` to strip `i` on each holder of `nodes` at once, in `epoch` (`None` from
/// `op`: nothing for that holder, answered `Done`). The answers, or `None` if the cluster
/// left `epoch` first (the caller settles and retries); fenced is an error.
pub(super) async fn each_holder(
    sheep: &Sheep,
    epoch: Epoch,
    oid: Oid,
    g: Geometry,
    nodes: &[NodeId],
    op: impl Fn(usize) -> Option<Op>,
) -> SheepResult<Option<Vec<Answer>>> {
    let calls = nodes.iter().enumerate().map(|(i, nid)| {
        let op = op(i);
        async move {
            let (Some(op), Ok(index)) = (op, u8::try_from(i)) else {
                return Ok(bytes::Bytes::new());
            };
            peer::call(sheep, *nid, epoch, oid, g, index, &op).await
        }
    });
    match guarded(sheep, epoch, join_all(calls)).await {
        Ok(a) => Ok(Some(a.into_iter().map(classify).collect())),
        Err(Cut::Fenced) => Err(SheepError::Fenced),
        Err(Cut::EpochMoved) => Ok(None),
    }
}

/// Strips gathered from their holders for one strip range.
pub(super) struct Gathered {
    /// Per strip index: its bytes, if a holder gave them.
    pub(super) strips: Vec<Option<Vec<u8>>>,
    /// Some holder has a write in doubt on its strip.
    pub(super) in_doubt: bool,
    /// Holders that answered NO_OBJ (they lack their strip), by index.
    pub(super) missing: Vec<usize>,
    /// What to wait for before asking again, if a holder could not answer now.
    pub(super) wait: Option<Wait>,
    /// Another failure a holder answered.
    pub(super) failed: Option<SdResult>,
}

impl Gathered {
    pub(super) fn present(&self) -> usize {
        self.strips.iter().filter(|s| s.is_some()).count()
    }
}

/// Reads strip range `sr` from enough holders for D strips (data strips first, then the
/// others as some fail), never from those in `exclude`.
pub(super) async fn gather(
    sheep: &Sheep,
    oid: Oid,
    g: Geometry,
    epoch: Epoch,
    nodes: &[NodeId],
    sr: StripRange,
    exclude: &[usize],
) -> SheepResult<Gathered> {
    let d = usize::from(g.ec().data());
    let len = u32::try_from(sr.len).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let mut got = Gathered {
        strips: vec![None; usize::from(g.ec().total())],
        in_doubt: false,
        missing: Vec::new(),
        wait: None,
        failed: None,
    };
    let mut order = (0..nodes.len()).filter(|i| !exclude.contains(i));
    loop {
        let want = d.saturating_sub(got.present());
        let batch: Vec<usize> = order.by_ref().take(want).collect();
        if want == 0 || batch.is_empty() {
            return Ok(got);
        }
        let op = Op::Read {
            offset: sr.offset,
            len,
            recovery: false,
        };
        let calls = batch.iter().filter_map(|&i| {
            let nid = *nodes.get(i)?;
            let index = u8::try_from(i).ok()?;
            Some(peer::call(sheep, nid, epoch, oid, g, index, &op))
        });
        let answers = match guarded(sheep, epoch, join_all(calls)).await {
            Ok(a) => a,
            Err(Cut::Fenced) => return Err(SheepError::Fenced),
            Err(Cut::EpochMoved) => {
                got.wait = Some(Wait::Epoch);
                return Ok(got);
            }
        };
        for (&i, r) in batch.iter().zip(answers) {
            match classify(r) {
                Answer::Done(b) => {
                    if let Some(slot) = got.strips.get_mut(i) {
                        *slot = Some(b.to_vec());
                    }
                }
                Answer::Retry => got.wait = Some(Wait::Epoch),
                Answer::Behind => {
                    got.wait.get_or_insert(Wait::Behind);
                }
                Answer::Failed(SdResult::InDoubt) => got.in_doubt = true,
                Answer::Failed(SdResult::NoObj) => got.missing.push(i),
                Answer::Failed(r) => {
                    tracing::warn!(%oid, strip = i, result = %r, "strip unreadable; decoding from others");
                    got.failed.get_or_insert(r);
                }
            }
        }
    }
}
