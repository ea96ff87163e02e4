//! The gateway: object I/O fanned out to the replicas the vnode ring of the current epoch
//! names. A write is acknowledged only when every replica acknowledged it; a read is served
//! by one replica, falling back to the others. When the membership moves under a request
//! (a replica died, or answers with another epoch) the request waits for the epoch to
//! settle and is retried against the new replicas, so clients do not see epoch errors.
//! A request does not wait for replicas of an epoch the cluster has left (a replica cut off
//! by a partition would otherwise hold it for the whole peer timeout).
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
use crate::local;
use crate::sys::Sheep;

/// How long a request keeps retrying while the cluster changes under it.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
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
#[derive(Debug)]
enum Answer {
    Done(Bytes),
    /// The cluster is moving: try again in a newer epoch.
    Retry,
    /// A replica has not applied our epoch yet: try again in a moment.
    Behind,
    Failed(SdResult),
}

fn classify(r: SheepResult<Bytes>) -> Answer {
    match r {
        Ok(b) => Answer::Done(b),
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

/// The current epoch and the replicas of `oid` in it.
fn targets(sheep: &Sheep, oid: Oid, copies: usize) -> SheepResult<(Epoch, Vec<NodeId>)> {
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
    let t: Vec<NodeId> = sys
        .ring
        .replicas(oid, copies)
        .iter()
        .map(|n| n.nid)
        .collect();
    if t.is_empty() {
        return Err(SdResult::Halt.into());
    }
    Ok((sys.epoch, t))
}

/// Waits until the epoch moves past `epoch` (or a short while passes), within `deadline`.
/// `behind`: only a replica lags behind our epoch, so a short pause is enough.
async fn settle(sheep: &Sheep, epoch: Epoch, behind: bool, deadline: Instant) -> SheepResult<()> {
    if Instant::now() >= deadline {
        tracing::warn!(%epoch, "cluster did not settle in time");
        return Err(SdResult::NetworkError.into());
    }
    let limit = if behind { BEHIND_WAIT } else { EPOCH_WAIT };
    let mut rx = sheep.epoch_tx.subscribe();
    let wait = limit.min(deadline.saturating_duration_since(Instant::now()));
    let _ = tokio::time::timeout(wait, rx.wait_for(|e| *e != epoch)).await;
    Ok(())
}

/// Why waiting for replicas stopped early.
enum Cut {
    /// This node is fenced.
    Fenced,
    /// The cluster left the epoch the request was sent in.
    EpochMoved,
}

/// Awaits `fut` (replica answers of `epoch`) unless this node is fenced or the epoch moves
/// on first.
async fn guarded<T>(sheep: &Sheep, epoch: Epoch, fut: impl Future<Output = T>) -> Result<T, Cut> {
    let mut rx = sheep.epoch_tx.subscribe();
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

async fn peer_call(
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
            Err(SdResult::NetworkError.into())
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
                local::create(sheep, oid, *offset, data.clone(), epoch).await
            }
            Mutation::Write { offset, data } => {
                local::write(sheep, oid, *offset, data.clone(), durable, epoch).await
            }
            Mutation::Remove => local::remove(sheep, oid).await,
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

/// Applies `m` to every replica of `oid`; succeeds when all of them did.
pub async fn mutate(sheep: &Sheep, oid: Oid, copies: usize, m: Mutation) -> SheepResult<()> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let (epoch, nodes) = targets(sheep, oid, copies)?;
        // Creates are durable on every replica; overwrites are, when the VDI's client
        // flushes after (nearly) every write (see `Writeback::durable_writes`).
        let is_write = matches!(m, Mutation::Write { .. });
        // (Not with --flush=syncfs, which reproduces the 2012 design as it was.)
        let durable = is_write
            && sheep.cfg.writeback.flush == crate::config::FlushMode::Dirty
            && sheep.writeback.durable_writes(oid.vid());
        let fan_out = join_all(
            nodes
                .iter()
                .map(|n| mutate_one(sheep, *n, epoch, oid, copies, &m, durable)),
        );
        let answers = match guarded(sheep, epoch, fan_out).await {
            Ok(a) => a,
            Err(Cut::Fenced) => return Err(SheepError::Fenced),
            Err(Cut::EpochMoved) => {
                // Abandoned, not acknowledged: a replica that still applies it later
                // is outside the new epoch's set or refuses the old epoch.
                tracing::debug!(%oid, %epoch, "epoch moved under a write; retrying");
                settle(sheep, epoch, false, deadline).await?;
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
        let (mut retry, mut behind) = (false, false);
        let mut failed = None;
        let mut missing = 0usize;
        for a in answers.into_iter().map(classify) {
            match a {
                Answer::Done(_) => {}
                Answer::Retry => retry = true,
                Answer::Behind => behind = true,
                Answer::Failed(SdResult::NoObj) if matches!(m, Mutation::Remove) => missing += 1,
                Answer::Failed(r) => failed = failed.or(Some(r)),
            }
        }
        if let Some(r) = failed {
            return Err(r.into());
        }
        if retry || behind {
            tracing::debug!(%oid, %epoch, "replica set moving; retrying");
            settle(sheep, epoch, !retry, deadline).await?;
            continue;
        }
        if missing == nodes.len() {
            return Err(SdResult::NoObj.into());
        }
        if sheep.fenced() {
            // Every replica has it, but the cluster may have moved on without us.
            return Err(SheepError::Fenced);
        }
        return Ok(());
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
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let (epoch, mut nodes) = targets(sheep, oid, copies)?;
        if let Some(i) = nodes.iter().position(|n| *n == sheep.me.nid) {
            nodes.swap(0, i);
        }
        let (mut retry, mut behind) = (false, false);
        let mut last = SdResult::NoObj;
        for nid in nodes {
            let call = async {
                if nid == sheep.me.nid {
                    local::read(sheep, oid, offset, len, false).await
                } else {
                    let mut h = peer_header(Opcode::ReadPeer, epoch, oid, copies, offset);
                    h.data_length = len;
                    peer_call(sheep, nid, h, Bytes::new()).await
                }
            };
            let r = match guarded(sheep, epoch, call).await {
                Ok(r) => r,
                Err(Cut::Fenced) => return Err(SheepError::Fenced),
                Err(Cut::EpochMoved) => Err(SdResult::OldNodeVer.into()),
            };
            match classify(r) {
                Answer::Done(_) if sheep.fenced() => return Err(SheepError::Fenced),
                Answer::Done(b) => return Ok(b),
                Answer::Retry => retry = true,
                Answer::Behind => behind = true,
                // Bad parameters are the same on every replica.
                Answer::Failed(SdResult::InvalidParms) => return Err(SdResult::InvalidParms.into()),
                Answer::Failed(r) => last = r,
            }
        }
        if retry || behind {
            settle(sheep, epoch, !retry, deadline).await?;
            continue;
        }
        return Err(last.into());
    }
}
