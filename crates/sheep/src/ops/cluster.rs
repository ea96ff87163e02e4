//! Cluster and node operations: format, shutdown, node list, status and epoch history.

use bytes::Bytes;
use sd_proto::cluster::{
    ClusterInfo, EpochLogRecord, EpochMembers, NodeStatus, SD_DEFAULT_COPIES, SD_FORMAT_VERSION,
    SD_MAX_COPIES, SheepdogConfig, flags,
};
use sd_proto::inode::SD_DEFAULT_BLOCK_SIZE_SHIFT;
use sd_proto::node::SdNode;
use sd_proto::stat::{LogLevel, RecoveryPhase, RecoveryState};
use sd_proto::store_list::StoreList;
use sd_proto::{Epoch, NodeRsp, Opcode, RequestHeader, SD_SHEEP_PROTO_VER, SdResult, c_str};

use super::vdi::{MAX_SHIFT, MIN_SHIFT};
use std::time::Duration;

use sd_cluster::ClusterDriver;
use sd_cluster::log::LogEntry;

use super::{After, Reply, expect_payload};
use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;
use crate::sys::write_config;

/// How long MAKE_FS waits for its record to be applied.
const FORMAT_WAIT: Duration = Duration::from_secs(30);

/// The only store driver: one file per object.
pub(crate) const STORE_NAME: &[u8] = b"plain";

pub(super) async fn handle(
    sheep: &Sheep,
    req: &RequestHeader,
    payload: Bytes,
) -> SheepResult<Reply> {
    match req.opcode {
        Opcode::MakeFs => make_fs(sheep, req, payload).await,
        Opcode::Shutdown => shutdown(sheep).await,
        Opcode::GetNodeList => {
            let nodes = sheep.sys().nodes.clone();
            let bytes = SdNode::encode_list(&nodes);
            if bytes.len() > usize::try_from(req.data_length).unwrap_or(0) {
                return Err(SdResult::BufferSmall.into());
            }
            Ok(Reply {
                node: Some(NodeRsp {
                    nr_nodes: u32::try_from(nodes.len()).unwrap_or(0),
                    ..NodeRsp::default()
                }),
                payload: bytes.into(),
                ..Reply::default()
            })
        }
        Opcode::StatSheep => {
            let store = sheep.store.clone();
            let space = blocking(move || store.space()).await?;
            Ok(Reply {
                node: Some(NodeRsp {
                    nr_nodes: 0,
                    writeback: sheep.store.sync_mode() == sd_store::SyncMode::Writeback,
                    store_size: space.used.saturating_add(space.free),
                    store_free: space.free,
                }),
                ..Reply::default()
            })
        }
        Opcode::StatCluster => Ok(stat_cluster(sheep, req)),
        Opcode::ClusterInfo => {
            let sys = sheep.sys();
            let info = ClusterInfo {
                proto_ver: SD_SHEEP_PROTO_VER,
                disable_recovery: 0,
                epoch: sys.epoch,
                ctime: sys.config.ctime,
                flags: sys.config.flags,
                nr_copies: sys.config.copies,
                copy_policy: sys.config.copy_policy,
                status: sys.status.as_u8(),
                block_size_shift: sys.config.block_size_shift,
                default_store: sys.config.store.clone(),
                nodes: sys.nodes.clone(),
            };
            Ok(Reply::data(info.encode()))
        }
        Opcode::GetClusterDefault => Ok(Reply {
            cluster_default: Some(sheep.sys().defaults()),
            ..Reply::default()
        }),
        Opcode::GetStoreList => Ok(Reply::data(
            StoreList {
                names: vec![STORE_NAME.to_vec()],
            }
            .encode(),
        )),
        Opcode::Exist => {
            let store = sheep.store.clone();
            let oid = req.obj().oid;
            if blocking(move || Ok(store.exists(oid))).await? {
                Ok(Reply::ok())
            } else {
                Err(SdResult::NoObj.into())
            }
        }
        Opcode::GetEpoch => {
            let want = req.obj().tgt_epoch;
            let sys = sheep.sys();
            let e = sys
                .epochs
                .iter()
                .find(|e| e.epoch == want)
                .ok_or(SdResult::NoTag)?;
            let buf = EpochMembers {
                nodes: e.members.clone(),
                time: e.time,
            }
            .encode();
            if buf.len() > usize::try_from(req.data_length).unwrap_or(0) {
                return Err(SdResult::BufferSmall.into());
            }
            Ok(Reply::data(buf))
        }
        Opcode::StatRecovery => {
            let p = sheep.recovery.progress();
            let state = RecoveryState {
                in_recovery: p.active,
                // sheepdog-rs has no separate list and notify phases.
                phase: RecoveryPhase::RecoverObj,
                nr_finished: p.done,
                nr_total: p.total,
            };
            let mut out = state.encode();
            out.truncate(usize::try_from(req.data_length).unwrap_or(0));
            Ok(Reply::data(out))
        }
        Opcode::GetVnodes => Ok(Reply::data(
            i32::from(sheep.me.nr_vnodes).to_le_bytes().to_vec(),
        )),
        Opcode::GetLoglevel => Ok(Reply::data(LogLevel(crate::logging::level()).encode())),
        Opcode::SetLoglevel => {
            let LogLevel(level) = LogLevel::decode(&payload).map_err(|_| SdResult::InvalidParms)?;
            if !crate::logging::set_level(level) {
                return Err(SdResult::InvalidParms.into());
            }
            Ok(Reply::ok())
        }
        Opcode::KillNode => {
            sheep.sys_mut().status = NodeStatus::Killed;
            Ok(Reply {
                after: After::Stop,
                ..Reply::default()
            })
        }
        _ => Err(SdResult::InvalidParms.into()),
    }
}

/// STAT_CLUSTER: epoch records newest first, as many as fit; the result is the status.
fn stat_cluster(sheep: &Sheep, req: &RequestHeader) -> Reply {
    let sys = sheep.sys();
    let slots = usize::try_from(req.cluster().nodes_nr).unwrap_or(0);
    let rec = EpochLogRecord::size(slots);
    let max = usize::try_from(req.data_length).unwrap_or(0) / rec;
    let mut out = Vec::new();
    let mut result = match sys.status {
        NodeStatus::Ok => SdResult::Success,
        NodeStatus::Wait if sys.config.ctime == 0 => SdResult::WaitForFormat,
        NodeStatus::Wait => SdResult::WaitForJoin,
        NodeStatus::Shutdown => SdResult::Shutdown,
        NodeStatus::Killed => SdResult::SystemError,
    };
    for (i, e) in sys.epochs.iter().rev().take(max).enumerate() {
        if slots > 0 && e.members.len() > slots {
            out.clear();
            result = SdResult::BufferSmall;
            break;
        }
        let mut r = EpochLogRecord {
            time: e.time,
            epoch: e.epoch,
            nodes: if slots > 0 {
                e.members.clone()
            } else {
                Vec::new()
            },
            ..EpochLogRecord::default()
        };
        if i == 0 {
            r.ctime = sys.config.ctime;
            r.nr_copies = sys.config.copies;
            r.copy_policy = sys.config.copy_policy;
            r.flags = sys.config.flags;
            r.drv_name = sys.config.store.clone();
        }
        out.extend_from_slice(&r.encode(slots));
    }
    Reply {
        result: Some(result),
        payload: out.into(),
        ..Reply::default()
    }
}

async fn make_fs(sheep: &Sheep, req: &RequestHeader, payload: Bytes) -> SheepResult<Reply> {
    expect_payload(req, &payload)?;
    let a = req.cluster();
    if c_str(&payload) != STORE_NAME {
        return Err(SdResult::NoStore.into());
    }
    let copies = if a.copies == 0 {
        SD_DEFAULT_COPIES
    } else {
        a.copies
    };
    let shift = if a.block_size_shift == 0 {
        SD_DEFAULT_BLOCK_SIZE_SHIFT
    } else {
        a.block_size_shift
    };
    if copies > SD_MAX_COPIES || !(MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
        return Err(SdResult::InvalidParms.into());
    }
    // An erasure code's copies are its strips, whatever the request said.
    let copies = match sd_ec::Ec::from_policy(a.copy_policy) {
        Ok(None) => copies,
        Ok(Some(ec)) => ec.total(),
        Err(_) => return Err(SdResult::InvalidParms.into()),
    };
    let config = SheepdogConfig {
        // ctime 0 means "not formatted" everywhere, so a client that sends none gets now.
        ctime: if a.ctime == 0 {
            crate::sys::now_sd_time()
        } else {
            a.ctime
        },
        flags: a.flags
            & (flags::STRICT
                | flags::AUTO_VNODES
                | flags::USE_LOCK
                | flags::RECYCLE_VID
                | flags::AVOID_DISKFULL),
        copies,
        store: STORE_NAME.to_vec(),
        shutdown: 0,
        copy_policy: a.copy_policy,
        block_size_shift: shift,
        version: SD_FORMAT_VERSION,
        space: 0,
    };

    // Every member formats when it applies this record, in log order.
    let ctime = config.ctime;
    let mut rx = sheep.watch_epoch();
    sheep
        .driver
        .append(LogEntry::Format { config })
        .await
        .map_err(|_| SheepError::Result(SdResult::ClusterError))?;
    let formatted = |_: &Epoch| {
        let sys = sheep.sys();
        sys.config.ctime == ctime && sys.status == NodeStatus::Ok
    };
    if tokio::time::timeout(FORMAT_WAIT, rx.wait_for(formatted))
        .await
        .is_err()
    {
        return Err(SdResult::ClusterError.into());
    }
    // Answer once every member serves the new format too (each finished recovering its
    // first epoch), so a request right after the format reaches no member still between
    // "formatted" and "running", through this node or any other. Every applied record
    // wakes `rx`. A member that never gets there (it died) does not fail the format: the
    // cluster moves to a new epoch without it.
    let everywhere = |_: &Epoch| {
        let sys = sheep.sys();
        sys.config.ctime != ctime || sys.stable.get() >= 1
    };
    if tokio::time::timeout(FORMAT_WAIT, rx.wait_for(everywhere))
        .await
        .is_err()
    {
        tracing::warn!("formatted, but not every member reported it serves within {FORMAT_WAIT:?}");
    }
    tracing::info!(copies, shift, "cluster formatted");
    Ok(Reply::ok())
}

async fn shutdown(sheep: &Sheep) -> SheepResult<Reply> {
    // Every other member stops when it applies the record; this one stops after answering.
    sheep.request_shutdown();
    let mut config = sheep.sys().config.clone();
    if config.ctime != 0 {
        config.shutdown = 1;
        let dir = sheep.cfg.dir.clone();
        blocking(move || write_config(&dir, &config)).await?;
    }
    sheep
        .driver
        .append(LogEntry::Shutdown)
        .await
        .map_err(|_| SheepError::Result(SdResult::ClusterError))?;
    sheep.sys_mut().status = NodeStatus::Shutdown;
    tracing::info!("cluster shutdown requested");
    Ok(Reply {
        after: After::Stop,
        ..Reply::default()
    })
}
