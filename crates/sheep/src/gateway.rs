//! The gateway: object I/O fanned out to the replicas the vnode ring of the current epoch
//! names. A write is acknowledged only when every replica acknowledged it; a read is served
//! by one replica, falling back to the others. When the membership moves under a request
//! (a replica died, or answers with another epoch) the request waits for the epoch to
//! settle and is retried against the new replicas, so clients do not see epoch errors.
//! A request does not wait for replicas of an epoch the cluster has left (a replica cut off
//! by a partition would otherwise hold it for the whole peer timeout).
//!
//! Erasure-coded objects take their own path (`crate::ec`) from [`mutate`] and [`read`].
//!
//! **Copy changes**: a VDI's copy count may change under a request (`ClusterMsg::
//! AlterVdiCopy`, no new epoch). Each round takes the count from the VDI table; a mutation
//! all replicas applied is sent again to the replicas of the new count before it is
//! acknowledged if the count changed meanwhile, so no new holder misses a write another
//! gateway began by the old count (`crate::recovery::copies`).
//!
//! **The fence**: a fenced node (`Sheep::fenced`: cut off from the membership service long
//! enough that the others may soon count it dead) fails every request with
//! `SheepError::Fenced` (CLUSTER_ERROR): new ones at once, those waiting for replicas as the
//! fence falls, and one whose replicas all answered is checked once more before it is
//! acknowledged. A fenced peer refuses mutations with the same code, which gateways treat
//! like an epoch change: wait for the membership to move, then retry.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use sd_proto::cluster::NodeStatus;
use sd_proto::node::NodeId;
use sd_proto::{Epoch, Flags, ObjArgs, Oid, Opcode, RequestHeader, SdResult};
use tokio::time::Instant;

use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;
use crate::replica;

/// How long a request keeps retrying while the cluster changes under it.
pub(crate) const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// How long one wait for a new epoch lasts before the request is simply retried.
const EPOCH_WAIT: Duration = Duration::from_millis(500);
/// The pause before retrying a replica that has not applied our epoch yet.
const BEHIND_WAIT: Duration = Duration::from_millis(5);

/// A replicated mutation.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Create (replacing) with `data` at `offset`.
    Create {
        /// Offset.
        offset: u64,
        /// Data.
        data: Bytes,
    },
    /// Overwrite part of an existing object.
    Write {
        /// Offset.
        offset: u64,
        /// Data.
        data: Bytes,
    },
    /// Remove the object.
    Remove,
}

/// What one replica answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Done(Bytes),
    /// The cluster is moving: try again in a newer epoch.
    Retry,
    /// A replica has not applied our epoch yet: try again in a moment.
    Behind,
    Failed(SdResult),
}

pub(crate) fn classify(r: SheepResult<Bytes>) -> Answer {
    match r {
        Ok(b) => Answer::Done(b),
        // Unreachable (it died, or a partition), or fenced: the membership is about to move.
        Err(SheepError::Peer(_) | SheepError::Fenced) => Answer::Retry,
        // A wire answer: from a peer, or our own replica's.
        Err(e) => match e.result() {
            SdResult::NewNodeVer | SdResult::Again => Answer::Behind,
            // CLUSTER_ERROR: the replica is fenced; the membership is about to move.
            SdResult::OldNodeVer
            | SdResult::NetworkError
            | SdResult::WaitForJoin
            | SdResult::ClusterError => Answer::Retry,
            other => Answer::Failed(other),
        },
    }
}

/// What to wait for before the next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The cluster is moving: wait for a newer epoch (or `EPOCH_WAIT`).
    Epoch,
    /// Only replicas lag behind our epoch: a short pause (`BEHIND_WAIT`) is enough.
    Behind,
}

/// The decision after one round of replica answers.
#[derive(Debug, PartialEq, Eq)]
enum Next<T> {
    /// The request succeeded (still subject to the fence check before acknowledging).
    Done(T),
    /// The request fails with this code.
    Fail(SdResult),
    /// Retry in a new round after waiting.
    Again(Wait),
}

/// The decision for one round of a mutation fanned out to every replica of one epoch:
/// the first failure is the answer; otherwise a moving replica set makes it retry (after
/// a short pause when replicas are only behind); a remove that found no copy anywhere is
/// NO_OBJ; else it succeeded.
fn decide_mutation(answers: &[Answer], remove: bool) -> Next<()> {
    let (mut retry, mut behind) = (false, false);
    let mut failed = None;
    let mut missing = 0usize;
    for a in answers {
        match a {
            Answer::Done(_) => {}
            Answer::Retry => retry = true,
            Answer::Behind => behind = true,
            Answer::Failed(SdResult::NoObj) if remove => missing += 1,
            Answer::Failed(r) => failed = failed.or(Some(*r)),
        }
    }
    if let Some(r) = failed {
        return Next::Fail(r);
    }
    if retry {
        return Next::Again(Wait::Epoch);
    }
    if behind {
        return Next::Again(Wait::Behind);
    }
    if missing == answers.len() {
        return Next::Fail(SdResult::NoObj);
    }
    Next::Done(())
}

/// One round of a read: replicas are asked one at a time, in order, until one serves it.
#[derive(Debug)]
struct ReadRound {
    retry: bool,
    behind: bool,
    /// The last failure, the answer if no replica serves the read and none asks to retry.
    last: SdResult,
}

impl ReadRound {
    fn new() -> Self {
        ReadRound {
            retry: false,
            behind: false,
            last: SdResult::NoObj,
        }
    }

    /// Takes the next replica's answer; `Some` ends the round without asking the rest.
    fn answer(&mut self, a: Answer) -> Option<Next<Bytes>> {
        match a {
            Answer::Done(b) => return Some(Next::Done(b)),
            Answer::Retry => self.retry = true,
            Answer::Behind => self.behind = true,
            // Bad parameters are the same on every replica.
            Answer::Failed(SdResult::InvalidParms) => {
                return Some(Next::Fail(SdResult::InvalidParms));
            }
            Answer::Failed(r) => self.last = r,
        }
        None
    }

    /// Every replica answered without serving the read.
    fn end(self) -> Next<Bytes> {
        if self.retry {
            Next::Again(Wait::Epoch)
        } else if self.behind {
            Next::Again(Wait::Behind)
        } else {
            Next::Fail(self.last)
        }
    }
}

/// The current epoch and the replicas of `oid` in it.
pub(crate) fn targets(sheep: &Sheep, oid: Oid, copies: usize) -> SheepResult<(Epoch, Vec<NodeId>)> {
    if sheep.fenced() {
        return Err(SheepError::Fenced);
    }
    let sys = sheep.sys();
    match sys.status {
        NodeStatus::Ok => {}
        NodeStatus::Wait => return Err(SdResult::WaitForJoin.into()),
        NodeStatus::Shutdown => return Err(SdResult::Shutdown.into()),
        NodeStatus::Killed => return Err(SdResult::Killed.into()),
    }
    let t = sys.replica_nids(oid, copies);
    if t.is_empty() {
        return Err(SdResult::Halt.into());
    }
    Ok((sys.epoch, t))
}

/// How long to wait for `wait` with `left` until the request's deadline; `None` once the
/// deadline has passed (the request fails).
fn pause(wait: Wait, left: Duration) -> Option<Duration> {
    if left.is_zero() {
        return None;
    }
    let limit = match wait {
        Wait::Behind => BEHIND_WAIT,
        Wait::Epoch => EPOCH_WAIT,
    };
    Some(limit.min(left))
}

/// Waits until the epoch moves past `epoch` (or for as long as `wait` says), within
/// `deadline`.
pub(crate) async fn settle(
    sheep: &Sheep,
    epoch: Epoch,
    wait: Wait,
    deadline: Instant,
) -> SheepResult<()> {
    let Some(limit) = pause(wait, deadline.saturating_duration_since(Instant::now())) else {
        tracing::warn!(%epoch, "cluster did not settle in time");
        return Err(SheepError::Unsettled(epoch));
    };
    let mut rx = sheep.watch_epoch();
    let _ = tokio::time::timeout(limit, rx.wait_for(|e| *e != epoch)).await;
    Ok(())
}

/// Why waiting for replicas stopped early.
pub(crate) enum Cut {
    /// This node is fenced.
    Fenced,
    /// The cluster left the epoch the request was sent in.
    EpochMoved,
}

/// Awaits `fut` (replica answers of `epoch`) unless this node is fenced or the epoch moves
/// on first.
pub(crate) async fn guarded<T>(
    sheep: &Sheep,
    epoch: Epoch,
    fut: impl Future<Output = T>,
) -> Result<T, Cut> {
    let mut rx = sheep.watch_epoch();
    tokio::select! {
        biased;
        t = fut => Ok(t),
        () = sheep.until_fenced() => Err(Cut::Fenced),
        Ok(_) = rx.wait_for(|e| *e != epoch) => Err(Cut::EpochMoved),
    }
}

fn peer_header(op: Opcode, epoch: Epoch, oid: Oid, copies: usize, offset: u64) -> RequestHeader {
    let mut h = RequestHeader::new(op).with_obj(ObjArgs {
        oid,
        copies: u8::try_from(copies).unwrap_or(u8::MAX),
        offset,
        ..ObjArgs::default()
    });
    h.epoch = epoch;
    h
}

pub(crate) async fn peer_call(
    sheep: &Sheep,
    nid: NodeId,
    h: RequestHeader,
    payload: Bytes,
) -> SheepResult<Bytes> {
    match sheep.peers.call(nid, h, payload).await {
        Ok((rsp, data)) if rsp.result == SdResult::Success => Ok(data),
        Ok((rsp, _)) => Err(rsp.result.into()),
        Err(e) => {
            tracing::debug!(error = %e, "peer call failed");
            Err(e.into())
        }
    }
}

async fn mutate_one(
    sheep: &Sheep,
    nid: NodeId,
    epoch: Epoch,
    oid: Oid,
    copies: usize,
    m: &Mutation,
    durable: bool,
) -> SheepResult<Bytes> {
    if nid == sheep.me.nid {
        return match m {
            Mutation::Create { offset, data } => {
                replica::create(sheep, oid, *offset, data.clone(), epoch).await
            }
            Mutation::Write { offset, data } => {
                replica::write(sheep, oid, *offset, data.clone(), durable, epoch).await
            }
            Mutation::Remove => replica::remove(sheep, oid).await,
        }
        .map(|()| Bytes::new());
    }
    let (op, offset, data) = match m {
        Mutation::Create { offset, data } => (Opcode::CreateAndWritePeer, *offset, Some(data)),
        Mutation::Write { offset, data } => (Opcode::WritePeer, *offset, Some(data)),
        Mutation::Remove => (Opcode::RemovePeer, 0, None),
    };
    let mut h = peer_header(op, epoch, oid, copies, offset);
    let payload = match data {
        Some(d) => {
            h.flags = if durable {
                Flags::WRITE | Flags::DIRECT
            } else {
                Flags::WRITE
            };
            h.data_length =
                u32::try_from(d.len()).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
            d.clone()
        }
        None => Bytes::new(),
    };
    peer_call(sheep, nid, h, payload).await
}

/// Applies `m` to every replica of `oid`; succeeds when all of them did. When it fails
/// after replicas were asked, some may have applied it: the object is queued for
/// `crate::fanout` to make its copies identical again.
pub async fn mutate(sheep: &Sheep, oid: Oid, copies: usize, m: Mutation) -> SheepResult<()> {
    if let Some(g) = crate::strip::geometry(sheep, oid) {
        return match m {
            Mutation::Create { offset, data } => {
                crate::ec::create(sheep, oid, g, offset, data).await
            }
            Mutation::Write { offset, data } => crate::ec::write(sheep, oid, g, offset, data).await,
            Mutation::Remove => crate::ec::remove(sheep, oid, g).await,
        };
    }
    let mut sent = false;
    let r = mutate_rounds(sheep, oid, copies, &m, &mut sent).await;
    if r.is_err() && sent {
        sheep.fanout.failed(oid);
    }
    r
}

/// Test hook (`SHEEP_CRASH_AT=fanout:one_replica`, failpoints builds only): a write
/// reaches the first replica other than this node, then this node dies with the others
/// never asked.
async fn die_after_one_replica(
    sheep: &Sheep,
    epoch: Epoch,
    oid: Oid,
    copies: usize,
    nodes: &[NodeId],
    m: &Mutation,
) {
    const POINT: &str = "fanout:one_replica";
    if !crate::failpoint::armed(POINT) || !matches!(m, Mutation::Write { .. }) {
        return;
    }
    if let Some(n) = nodes.iter().find(|n| **n != sheep.me.nid) {
        let _ = mutate_one(sheep, *n, epoch, oid, copies, m, false).await;
    }
    crate::failpoint::crash_point(POINT);
}

async fn mutate_rounds(
    sheep: &Sheep,
    oid: Oid,
    copies: usize,
    m: &Mutation,
    sent: &mut bool,
) -> SheepResult<()> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut copies = copies;
    loop {
        copies = sheep.vdi_copies(oid).unwrap_or(copies);
        let (epoch, nodes) = targets(sheep, oid, copies)?;
        // Creates are durable on every replica; overwrites are, when the VDI's client
        // flushes after (nearly) every write (see `Writeback::durable_writes`).
        let is_write = matches!(m, Mutation::Write { .. });
        // (Not with --flush=syncfs, which reproduces the 2012 design as it was.)
        let durable = is_write
            && sheep.cfg.writeback.flush == crate::config::FlushMode::Dirty
            && sheep.writeback.durable_writes(oid.vid());
        die_after_one_replica(sheep, epoch, oid, copies, &nodes, m).await;
        *sent = true;
        let fan_out = join_all(
            nodes
                .iter()
                .map(|n| mutate_one(sheep, *n, epoch, oid, copies, m, durable)),
        );
        let answers = match guarded(sheep, epoch, fan_out).await {
            Ok(a) => a,
            Err(Cut::Fenced) => return Err(SheepError::Fenced),
            Err(Cut::EpochMoved) => {
                // Abandoned, not acknowledged: a replica that still applies it later
                // is outside the new epoch's set or refuses the old epoch.
                tracing::debug!(%oid, %epoch, "epoch moved under a write; retrying");
                settle(sheep, epoch, Wait::Epoch, deadline).await?;
                continue;
            }
        };
        if is_write && !durable {
            // After the answers, acknowledged or not, so a flush that arrives after this
            // write was acknowledged always finds these nodes.
            sheep.writeback.record(oid.vid(), &nodes);
        }
        if is_write {
            sheep.writeback.count_write(oid.vid());
        }
        let answers: Vec<Answer> = answers.into_iter().map(classify).collect();
        match decide_mutation(&answers, matches!(m, Mutation::Remove)) {
            Next::Fail(r) => return Err(r.into()),
            Next::Again(wait) => {
                tracing::debug!(%oid, %epoch, "replica set moving; retrying");
                settle(sheep, epoch, wait, deadline).await?;
            }
            // Every replica has it, but the cluster may have moved on without us.
            Next::Done(()) if sheep.fenced() => return Err(SheepError::Fenced),
            Next::Done(()) => match sheep.vdi_copies(oid) {
                Some(now) if now != copies => {
                    tracing::debug!(%oid, copies, now, "VDI copies changed under a write; sending it again");
                }
                _ => return Ok(()),
            },
        }
    }
}

/// Reads `len` bytes at `offset` of `oid` from one replica (this node first if it is one).
pub async fn read(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    len: u32,
    copies: usize,
) -> SheepResult<Bytes> {
    if let Some(g) = crate::strip::geometry(sheep, oid) {
        return crate::ec::read(sheep, oid, g, offset, len).await;
    }
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let copies = sheep.vdi_copies(oid).unwrap_or(copies);
        let (epoch, mut nodes) = targets(sheep, oid, copies)?;
        if let Some(i) = nodes.iter().position(|n| *n == sheep.me.nid) {
            nodes.swap(0, i);
        }
        let mut round = ReadRound::new();
        let mut ended = None;
        for nid in nodes {
            let call = async {
                if nid == sheep.me.nid {
                    replica::read(sheep, oid, offset, len, false).await
                } else {
                    let mut h = peer_header(Opcode::ReadPeer, epoch, oid, copies, offset);
                    h.data_length = len;
                    let data = peer_call(sheep, nid, h, Bytes::new()).await?;
                    // A successful read is exactly as long as asked (the replica checks the
                    // range against the object): anything else is a broken replica, and a
                    // client told SUCCESS would take the wrong bytes for its data.
                    if data.len() != len as usize {
                        tracing::warn!(%oid, node = %nid, got = data.len(), want = len, "read answer of the wrong length");
                        return Err(SheepError::BadAnswer {
                            node: nid,
                            got: data.len(),
                            want: u64::from(len),
                        });
                    }
                    Ok(data)
                }
            };
            let answer = match guarded(sheep, epoch, call).await {
                Ok(r) => classify(r),
                Err(Cut::Fenced) => return Err(SheepError::Fenced),
                // Like a replica in an older epoch: retry in the new one.
                Err(Cut::EpochMoved) => Answer::Retry,
            };
            ended = round.answer(answer);
            if ended.is_some() {
                break;
            }
        }
        match ended.unwrap_or_else(|| round.end()) {
            Next::Done(_) if sheep.fenced() => return Err(SheepError::Fenced),
            Next::Done(b) => return Ok(b),
            Next::Fail(r) => return Err(r.into()),
            Next::Again(wait) => settle(sheep, epoch, wait, deadline).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Answer::{Behind, Done, Failed, Retry};
    use SdResult as R;

    fn done() -> Answer {
        Done(Bytes::from_static(b"data"))
    }

    #[track_caller]
    fn check_classify(r: SheepResult<Bytes>, expect: Answer) {
        assert_eq!(classify(r), expect);
    }

    #[test]
    fn classify_answers() {
        check_classify(Ok(Bytes::from_static(b"data")), done());
        // A replica that has not applied our epoch yet, or is recovering the object.
        check_classify(Err(R::NewNodeVer.into()), Behind);
        check_classify(Err(R::Again.into()), Behind);
        // The replica set is moving: an older epoch, an unreachable, joining or fenced
        // replica.
        check_classify(Err(R::OldNodeVer.into()), Retry);
        check_classify(Err(R::NetworkError.into()), Retry);
        check_classify(Err(R::WaitForJoin.into()), Retry);
        check_classify(Err(R::ClusterError.into()), Retry);
        check_classify(Err(SheepError::Fenced), Retry);
        let down = crate::peer::PeerError::Timeout(NodeId::default());
        check_classify(Err(down.into()), Retry);
        // Anything else is the replica's answer.
        check_classify(Err(R::NoObj.into()), Failed(R::NoObj));
        check_classify(Err(R::InvalidParms.into()), Failed(R::InvalidParms));
        check_classify(Err(R::WaitForFormat.into()), Failed(R::WaitForFormat));
        check_classify(Err(R::Readonly.into()), Failed(R::Readonly));
        let eio = sd_store::StoreError::InvalidName { name: "x".into() };
        check_classify(Err(eio.into()), Failed(R::Eio));
    }

    #[track_caller]
    fn check_mutation(answers: Vec<Answer>, remove: bool, expect: Next<()>) {
        assert_eq!(decide_mutation(&answers, remove), expect, "{answers:?}");
    }

    #[test]
    fn mutation_rules() {
        let (write, remove) = (false, true);
        check_mutation(vec![done(), done(), done()], write, Next::Done(()));
        // The first failure is the answer, even when others ask to retry.
        check_mutation(
            vec![done(), Failed(R::NoSpace)],
            write,
            Next::Fail(R::NoSpace),
        );
        check_mutation(
            vec![Retry, Failed(R::Eio), Behind, Failed(R::NoSpace)],
            write,
            Next::Fail(R::Eio),
        );
        check_mutation(
            vec![Failed(R::InvalidParms), done()],
            write,
            Next::Fail(R::InvalidParms),
        );
        // A moving replica set: a newer epoch; a replica only behind: a short pause.
        check_mutation(vec![done(), Retry, done()], write, Next::Again(Wait::Epoch));
        check_mutation(vec![Behind, Retry], write, Next::Again(Wait::Epoch));
        check_mutation(vec![done(), Behind], write, Next::Again(Wait::Behind));
        // A write to a missing object fails; a remove that finds no copy on some
        // replicas succeeds, on none answers NO_OBJ.
        check_mutation(vec![done(), Failed(R::NoObj)], write, Next::Fail(R::NoObj));
        check_mutation(vec![done(), Failed(R::NoObj)], remove, Next::Done(()));
        check_mutation(
            vec![Failed(R::NoObj), Failed(R::NoObj)],
            remove,
            Next::Fail(R::NoObj),
        );
        check_mutation(
            vec![Failed(R::NoObj), Retry],
            remove,
            Next::Again(Wait::Epoch),
        );
        check_mutation(
            vec![Failed(R::NoObj), Behind],
            remove,
            Next::Again(Wait::Behind),
        );
        check_mutation(
            vec![Failed(R::NoObj), Failed(R::Eio)],
            remove,
            Next::Fail(R::Eio),
        );
    }

    /// One read round over `answers`: its decision and how many answers it took.
    fn read_round(answers: Vec<Answer>) -> (Next<Bytes>, usize) {
        let mut round = ReadRound::new();
        let n = answers.len();
        for (i, a) in answers.into_iter().enumerate() {
            if let Some(next) = round.answer(a) {
                return (next, i + 1);
            }
        }
        (round.end(), n)
    }

    #[track_caller]
    fn check_read(answers: Vec<Answer>, expect: Next<Bytes>, asked: usize) {
        assert_eq!(read_round(answers), (expect, asked));
    }

    #[test]
    fn read_rules() {
        let data = Next::Done(Bytes::from_static(b"data"));
        // The first replica that serves it answers; the rest are not asked.
        check_read(
            vec![done(), Failed(R::Eio)],
            Next::Done(Bytes::from_static(b"data")),
            1,
        );
        check_read(vec![Failed(R::Eio), Retry, done()], data, 3);
        check_read(
            vec![Behind, done()],
            Next::Done(Bytes::from_static(b"data")),
            2,
        );
        // Bad parameters are the same everywhere: fail at once.
        check_read(
            vec![Failed(R::InvalidParms), done()],
            Next::Fail(R::InvalidParms),
            1,
        );
        check_read(
            vec![Retry, Failed(R::InvalidParms)],
            Next::Fail(R::InvalidParms),
            2,
        );
        // Nobody served it: retry in a newer epoch, or after a pause if only behind.
        check_read(
            vec![Failed(R::Eio), Retry, Behind],
            Next::Again(Wait::Epoch),
            3,
        );
        check_read(vec![Behind, Failed(R::NoObj)], Next::Again(Wait::Behind), 2);
        // Else the last failure is the answer.
        check_read(
            vec![Failed(R::Eio), Failed(R::NoObj)],
            Next::Fail(R::NoObj),
            2,
        );
        check_read(
            vec![Failed(R::NoObj), Failed(R::Eio)],
            Next::Fail(R::Eio),
            2,
        );
        check_read(vec![], Next::Fail(R::NoObj), 0);
    }

    #[test]
    fn settle_pause() {
        let long = Duration::from_secs(60);
        assert_eq!(pause(Wait::Epoch, long), Some(EPOCH_WAIT));
        assert_eq!(pause(Wait::Behind, long), Some(BEHIND_WAIT));
        // Never past the deadline; once it passed the request fails.
        let left = Duration::from_millis(2);
        assert_eq!(pause(Wait::Epoch, left), Some(left));
        assert_eq!(pause(Wait::Behind, left), Some(left));
        assert_eq!(pause(Wait::Epoch, Duration::ZERO), None);
        assert_eq!(pause(Wait::Behind, Duration::ZERO), None);
    }
}
