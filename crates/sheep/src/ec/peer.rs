//! One strip operation on one holder: this node's store directly, another node's through
//! its peer ops (CREATE_AND_WRITE_PEER, READ_PEER and REMOVE_PEER with the object's copy
//! policy and `ec_index`; the sheepdog-rs strip opcodes for the rest).

use bytes::Bytes;
use sd_ec::Geometry;
use sd_proto::node::NodeId;
use sd_proto::strip_log::{STRIP_LOG_HEADER, StripLog};
use sd_proto::{Epoch, Flags, ObjArgs, Oid, Opcode, RequestHeader, SdResult, StripArgs};

use crate::error::{SheepError, SheepResult};
use crate::gateway::peer_call;
use crate::node::Sheep;
use crate::strip;

/// The most complete writes a log answer lists (a log checkpoints itself at 64).
const LOG_WIDS: usize = 128;
/// The buffer a log answer gets (a small constant: the cast cannot truncate).
#[allow(clippy::cast_possible_truncation)]
const LOG_ANSWER: u32 = (STRIP_LOG_HEADER + LOG_WIDS * 8) as u32;

/// What to do to one strip.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Create it whole, `data` at `offset`, with `version` (0: the request's epoch).
    Create {
        offset: u64,
        data: Bytes,
        version: u32,
    },
    /// Prepare write `wid`.
    Prepare { wid: u64, offset: u64, data: Bytes },
    /// Complete write `wid`.
    Complete { wid: u64 },
    /// Drop pending write `wid`.
    Discard { wid: u64 },
    /// Read `len` bytes at `offset`; for another node's recovery (`recovery`): served as
    /// the strip is, without recovering it first.
    Read {
        offset: u64,
        len: u32,
        recovery: bool,
    },
    /// Remove it.
    Remove,
}

/// A read of a whole strip as its holder has it (for recovery and checks).
pub(crate) fn whole_strip(g: Geometry) -> SheepResult<Op> {
    let len =
        u32::try_from(g.strip_size()).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    Ok(Op::Read {
        offset: 0,
        len,
        recovery: true,
    })
}

/// Applies `op` to strip `index` of `oid` on `nid`, in `epoch`; the answer's payload
/// (read data) or empty.
pub(crate) async fn call(
    sheep: &Sheep,
    nid: NodeId,
    epoch: Epoch,
    oid: Oid,
    g: Geometry,
    index: u8,
    op: &Op,
) -> SheepResult<Bytes> {
    if nid == sheep.me.nid {
        return local(sheep, epoch, oid, index, op).await;
    }
    let policy = g.ec().policy();
    let obj = |offset| ObjArgs {
        oid,
        copy_policy: policy,
        ec_index: index,
        offset,
        ..ObjArgs::default()
    };
    let strip = |wid, offset| StripArgs {
        oid,
        wid,
        copy_policy: policy,
        ec_index: index,
        offset,
    };
    let (mut h, payload) = match op {
        Op::Create {
            offset,
            data,
            version,
        } => (
            RequestHeader::new(Opcode::CreateAndWritePeer).with_obj(ObjArgs {
                tgt_epoch: Epoch(*version),
                ..obj(*offset)
            }),
            Some(data.clone()),
        ),
        Op::Prepare { wid, offset, data } => (
            RequestHeader::new(Opcode::PrepareStripPeer).with_strip(strip(*wid, *offset)),
            Some(data.clone()),
        ),
        Op::Complete { wid } => (
            RequestHeader::new(Opcode::CompleteStripPeer).with_strip(strip(*wid, 0)),
            None,
        ),
        Op::Discard { wid } => (
            RequestHeader::new(Opcode::DiscardStripPeer).with_strip(strip(*wid, 0)),
            None,
        ),
        Op::Read {
            offset,
            len,
            recovery,
        } => {
            let mut h = RequestHeader::new(Opcode::ReadPeer).with_obj(obj(*offset));
            h.data_length = *len;
            if *recovery {
                h.flags = Flags::RECOVERY;
            }
            (h, None)
        }
        Op::Remove => (
            RequestHeader::new(Opcode::RemovePeer).with_obj(obj(0)),
            None,
        ),
    };
    h.epoch = epoch;
    let payload = match payload {
        Some(d) => {
            h.flags = Flags::WRITE;
            h.data_length =
                u32::try_from(d.len()).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
            d
        }
        None => Bytes::new(),
    };
    let data = peer_call(sheep, nid, h, payload).await?;
    if let Op::Read { len, .. } = op
        && data.len() != *len as usize
    {
        return Err(SheepError::BadAnswer {
            node: nid,
            got: data.len(),
            want: u64::from(*len),
        });
    }
    Ok(data)
}

/// What the log of strip `index` of `oid` on `nid` holds.
pub(crate) async fn log(
    sheep: &Sheep,
    nid: NodeId,
    epoch: Epoch,
    oid: Oid,
    g: Geometry,
    index: u8,
) -> SheepResult<StripLog> {
    if nid == sheep.me.nid {
        return strip::log(sheep, oid, index).await;
    }
    let mut h = RequestHeader::new(Opcode::StripLogPeer).with_strip(StripArgs {
        oid,
        copy_policy: g.ec().policy(),
        ec_index: index,
        ..StripArgs::default()
    });
    h.epoch = epoch;
    h.data_length = LOG_ANSWER;
    let data = peer_call(sheep, nid, h, Bytes::new()).await?;
    StripLog::decode(&data).map_err(|_| SheepError::BadAnswer {
        node: nid,
        got: data.len(),
        want: u64::from(h.data_length),
    })
}

/// Serves `op` on this node's strip.
async fn local(sheep: &Sheep, epoch: Epoch, oid: Oid, index: u8, op: &Op) -> SheepResult<Bytes> {
    match op {
        Op::Create {
            offset,
            data,
            version,
        } => {
            let version = if *version == 0 {
                epoch
            } else {
                Epoch(*version)
            };
            strip::create(sheep, oid, index, *offset, data.clone(), version).await?;
        }
        Op::Prepare { wid, offset, data } => {
            strip::prepare(sheep, oid, index, *wid, *offset, data.clone(), epoch).await?;
        }
        Op::Complete { wid } => strip::complete(sheep, oid, index, *wid).await?,
        Op::Discard { wid } => strip::discard(sheep, oid, index, *wid).await?,
        Op::Read {
            offset,
            len,
            recovery,
        } => return strip::read(sheep, oid, index, *offset, *len, *recovery).await,
        Op::Remove => strip::remove(sheep, oid, index).await?,
    }
    Ok(Bytes::new())
}

/// The peer side: serves a strip request another gateway sent (the strip opcodes, and
/// CREATE_AND_WRITE/READ/REMOVE_PEER with a copy policy).
pub(crate) async fn serve(
    sheep: &Sheep,
    req: &RequestHeader,
    payload: Bytes,
) -> SheepResult<Bytes> {
    let a = req.strip();
    let (oid, index) = (a.oid, a.ec_index);
    let op = match req.opcode {
        Opcode::CreateAndWritePeer => Op::Create {
            offset: a.offset,
            data: payload,
            version: req.obj().tgt_epoch.0,
        },
        Opcode::PrepareStripPeer => Op::Prepare {
            wid: a.wid,
            offset: a.offset,
            data: payload,
        },
        Opcode::CompleteStripPeer => Op::Complete { wid: a.wid },
        Opcode::DiscardStripPeer => Op::Discard { wid: a.wid },
        Opcode::ReadPeer => Op::Read {
            offset: a.offset,
            len: req.data_length,
            recovery: req.flags.contains(Flags::RECOVERY),
        },
        Opcode::RemovePeer => Op::Remove,
        Opcode::StripLogPeer => {
            let mut log = strip::log(sheep, oid, index).await?;
            let keep = (req.data_length as usize).saturating_sub(STRIP_LOG_HEADER) / 8;
            let extra = log.complete.len().saturating_sub(keep);
            log.complete.drain(..extra);
            return Ok(Bytes::from(log.encode()));
        }
        _ => return Err(SdResult::InvalidParms.into()),
    };
    local(sheep, req.epoch, oid, index, &op).await
}
