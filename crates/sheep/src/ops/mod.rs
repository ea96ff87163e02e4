//! Request dispatch: admission rules (spec §5), then one handler per operation family.

mod attr;
mod cluster;
pub(crate) mod obj;
pub(crate) mod vdi;

use bytes::Bytes;
use sd_proto::cluster::NodeStatus;
use sd_proto::{Epoch, NodeRsp, Opcode, RequestHeader, ResponseHeader, SdResult, VdiRsp};

use crate::error::{SheepError, SheepResult};
use crate::metrics::Protocol;
use crate::node::Sheep;

/// How an operation is served (spec §6 "Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Object I/O forwarded to the replicas.
    Gateway,
    /// Answered by the receiving node.
    Local,
    /// Decided cluster-wide.
    Cluster,
    /// Sheep-to-sheep store access, epoch-checked.
    Peer,
}

/// Handler table: the kind and whether the op is served before the cluster runs.
/// `None` means no handler (INVALID_PARMS).
pub fn op_info(op: Opcode) -> Option<(OpKind, bool)> {
    use OpKind::*;
    use Opcode as O;
    Some(match op {
        O::CreateAndWriteObj | O::ReadObj | O::WriteObj | O::RemoveObj => (Gateway, false),
        O::DiscardObj | O::FlushVdi => (Local, false),
        O::NewVdi | O::LockVdi | O::ReleaseVdi | O::GetVdiInfo | O::DelVdi => (Cluster, false),
        O::GetVdiAttr => (Cluster, false),
        // Decided in the log (`ops::vdi::alter`): served by VDI handlers as cluster ops.
        O::AlterClusterCopy | O::AlterVdiCopy => (Cluster, false),
        O::ReadVdis | O::ReadDelVdis | O::GetClusterDefault | O::GetNodeList => (Local, true),
        O::GetVdiCopies => (Local, true),
        O::StatCluster | O::ClusterInfo | O::GetStoreList | O::Exist | O::GetEpoch => (Local, true),
        O::GetLoglevel | O::SetLoglevel | O::KillNode | O::StatWriteback => (Local, true),
        // Not epoch-checked: it only syncs what this node holds dirty.
        O::FlushPeer => (Local, false),
        #[cfg(feature = "failpoints")]
        O::InjectSyncFailure => (Local, true),
        O::MakeFs | O::Shutdown => (Cluster, true),
        O::StatSheep | O::StatRecovery | O::GetVnodes | O::GetObjList => (Local, false),
        O::CreateAndWritePeer | O::ReadPeer | O::WritePeer | O::RemovePeer => (Peer, false),
        O::FetchPeer => (Peer, false),
        O::PrepareStripPeer | O::CompleteStripPeer | O::DiscardStripPeer | O::StripLogPeer => {
            (Peer, false)
        }
        // `dog vdi check`: answered from (or repairing) this node's own copies.
        O::GetHash | O::RepairReplica | O::OidsExist => (Local, false),
        // ... and for erasure-coded objects, through this node as their gateway.
        O::CheckStrips => (Local, false),
        _ => return None,
    })
}

/// What to do once the reply has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum After {
    /// Nothing.
    #[default]
    Continue,
    /// Stop the daemon (SHUTDOWN, KILL_NODE).
    Stop,
}

/// A handler's answer: result, typed response fields and payload.
#[derive(Debug, Default)]
pub struct Reply {
    /// Result code (handlers that fail return `Err` instead; this is for answers such as
    /// STAT_CLUSTER that carry a payload together with a non-success status).
    pub result: Option<SdResult>,
    /// VDI response fields.
    pub vdi: Option<VdiRsp>,
    /// Node response fields.
    pub node: Option<NodeRsp>,
    /// Cluster default fields.
    pub cluster_default: Option<(u8, u8, u8)>,
    /// SHA-1 digest (GET_HASH).
    pub hash: Option<[u8; 20]>,
    /// Payload.
    pub payload: Bytes,
    /// Follow-up action.
    pub after: After,
}

impl Reply {
    /// An empty success.
    pub fn ok() -> Self {
        Reply::default()
    }
    /// A success with payload.
    pub fn data(payload: impl Into<Bytes>) -> Self {
        Reply {
            payload: payload.into(),
            ..Reply::default()
        }
    }
}

/// What admission looks at: the request's header fields, its handler table entry and
/// this node's state.
#[derive(Debug, Clone, Copy)]
struct Admission {
    /// The request's opcode.
    opcode: Opcode,
    /// The request's protocol version.
    proto_ver: u8,
    /// The request's epoch (meaningful for peer ops).
    req_epoch: Epoch,
    /// The opcode's handler table entry (`op_info`).
    entry: Option<(OpKind, bool)>,
    /// This node's status.
    status: NodeStatus,
    /// The cluster's format time (0: never formatted).
    ctime: u64,
    /// This node's epoch.
    epoch: Epoch,
    /// Whether this node is fenced (`Sheep::fenced`).
    fenced: bool,
}

/// Admission checks of spec §5, in order. `Err` is the answer.
fn admission(a: &Admission) -> Result<OpKind, SdResult> {
    let op = a.opcode;
    if op.is_internal() {
        if a.proto_ver != sd_proto::SD_SHEEP_PROTO_VER {
            return Err(SdResult::VerMismatch);
        }
    } else if a.proto_ver > sd_proto::SD_PROTO_VER {
        return Err(SdResult::VerMismatch);
    }
    let (kind, force) = a.entry.ok_or(SdResult::InvalidParms)?;
    if kind == OpKind::Peer && a.req_epoch > a.epoch {
        // Another sheep is ahead of us: we have not applied its epoch yet (a member
        // between "formatted" and "running" among others). It retries in a moment; a
        // client must never see our transient state.
        return Err(SdResult::NewNodeVer);
    }
    match a.status {
        NodeStatus::Killed => return Err(SdResult::Killed),
        NodeStatus::Shutdown => return Err(SdResult::Shutdown),
        NodeStatus::Wait if !force => {
            return Err(if a.ctime == 0 {
                SdResult::WaitForFormat
            } else {
                SdResult::WaitForJoin
            });
        }
        _ => {}
    }
    if kind == OpKind::Peer {
        let mutation = matches!(
            op,
            Opcode::CreateAndWritePeer
                | Opcode::WritePeer
                | Opcode::RemovePeer
                | Opcode::PrepareStripPeer
                | Opcode::CompleteStripPeer
                | Opcode::DiscardStripPeer
        );
        if mutation && a.fenced {
            // The writer's gateway retries once the membership has moved on.
            return Err(SdResult::ClusterError);
        }
        if a.req_epoch < a.epoch {
            return Err(SdResult::OldNodeVer);
        }
        if a.req_epoch > a.epoch {
            return Err(SdResult::NewNodeVer);
        }
    }
    Ok(kind)
}

/// [`admission`] of `req` against this node's state now.
fn admit(sheep: &Sheep, req: &RequestHeader) -> Result<OpKind, SdResult> {
    let sys = sheep.sys();
    admission(&Admission {
        opcode: req.opcode,
        proto_ver: req.proto_ver,
        req_epoch: req.epoch,
        entry: op_info(req.opcode),
        status: sys.status,
        ctime: sys.config.ctime,
        epoch: sys.epoch,
        fenced: sheep.fenced(),
    })
}

/// Serves one request and builds the response header and payload.
// A debug span: at the default level it is never built, so the hot path formats nothing.
#[tracing::instrument(
    level = "debug",
    skip_all,
    fields(id = req.id, opcode = req.opcode.name(), oid = %req.obj().oid, epoch = req.epoch.0)
)]
pub async fn handle(
    sheep: &Sheep,
    req: RequestHeader,
    payload: Bytes,
) -> (ResponseHeader, Bytes, After) {
    let started = std::time::Instant::now();
    let written = payload.len();
    let outcome = match admit(sheep, &req) {
        Ok(kind @ (OpKind::Gateway | OpKind::Cluster)) => match sheep.drain.enter() {
            Some(_inflight) => dispatch(sheep, kind, &req, payload).await,
            None => Err(SheepError::Result(SdResult::Shutdown)),
        },
        Ok(kind) => dispatch(sheep, kind, &req, payload).await,
        Err(r) => Err(SheepError::Result(r)),
    };
    let ok = matches!(&outcome, Ok(r) if r.result.is_none_or(|r| r == SdResult::Success));
    crate::metrics::request(Protocol::Sheepdog, req.opcode.name(), started, ok);
    tracing::debug!(ok, elapsed = ?started.elapsed(), "request served");
    // Data bytes of VDIs (not inode or attribute objects).
    if ok && req.obj().oid.is_data() {
        match req.opcode {
            Opcode::ReadObj => {
                if let Ok(r) = &outcome {
                    crate::metrics::read_bytes(Protocol::Sheepdog, r.payload.len());
                }
            }
            Opcode::WriteObj | Opcode::CreateAndWriteObj => {
                crate::metrics::written_bytes(Protocol::Sheepdog, written);
            }
            _ => {}
        }
    }
    let epoch = sheep.sys().epoch;
    match outcome {
        Ok(reply) => {
            let mut payload = reply.payload;
            // Never send more than the client's buffer (spec §1, dog's read rule).
            let cap = usize::try_from(req.data_length).unwrap_or(usize::MAX);
            if payload.len() > cap {
                tracing::error!(
                    len = payload.len(),
                    cap,
                    "reply larger than the request buffer; truncated"
                );
                payload.truncate(cap);
            }
            let mut rsp =
                ResponseHeader::reply_to(&req, epoch, reply.result.unwrap_or(SdResult::Success));
            if let Some(v) = reply.vdi {
                rsp = rsp.with_vdi(v);
            }
            if let Some(n) = reply.node {
                rsp = rsp.with_node(n);
            }
            if let Some((c, p, s)) = reply.cluster_default {
                rsp = rsp.with_cluster_default(c, p, s);
            }
            if let Some(digest) = reply.hash {
                rsp = rsp.with_hash(digest);
            }
            rsp.data_length = u32::try_from(payload.len()).unwrap_or(0);
            (rsp, payload, reply.after)
        }
        Err(e) => {
            let result = e.result();
            match result {
                SdResult::Eio | SdResult::SystemError | SdResult::NoSpace => {
                    tracing::warn!(error = %e, %result, "request failed");
                }
                _ => tracing::debug!(error = %e, %result, "request refused"),
            }
            (
                ResponseHeader::reply_to(&req, epoch, result),
                Bytes::new(),
                After::Continue,
            )
        }
    }
}

async fn dispatch(
    sheep: &Sheep,
    kind: OpKind,
    req: &RequestHeader,
    payload: Bytes,
) -> SheepResult<Reply> {
    match kind {
        OpKind::Gateway | OpKind::Peer => obj::handle(sheep, kind, req, payload).await,
        OpKind::Cluster if matches!(req.opcode, Opcode::MakeFs | Opcode::Shutdown) => {
            cluster::handle(sheep, req, payload).await
        }
        OpKind::Cluster if req.opcode == Opcode::GetVdiAttr => {
            attr::handle(sheep, req, payload).await
        }
        OpKind::Cluster => vdi::handle(sheep, req, payload).await,
        OpKind::Local => match req.opcode {
            Opcode::DiscardObj
            | Opcode::FlushVdi
            | Opcode::FlushPeer
            | Opcode::StatWriteback
            | Opcode::InjectSyncFailure
            | Opcode::GetObjList
            | Opcode::GetHash
            | Opcode::RepairReplica
            | Opcode::OidsExist
            | Opcode::CheckStrips => obj::handle(sheep, kind, req, payload).await,
            Opcode::ReadVdis | Opcode::ReadDelVdis | Opcode::GetVdiCopies => {
                vdi::handle(sheep, req, payload).await
            }
            _ => cluster::handle(sheep, req, payload).await,
        },
    }
}

/// The payload must be exactly `len` bytes with the WRITE flag (else INVALID_PARMS).
pub(crate) fn expect_payload(req: &RequestHeader, payload: &Bytes) -> SheepResult<()> {
    if !req.has_payload() || payload.len() != usize::try_from(req.data_length).unwrap_or(usize::MAX)
    {
        return Err(SdResult::InvalidParms.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OpKind::*;
    use Opcode as O;
    use SdResult as R;

    /// `op` as a well-formed request of epoch 5 to a running, formatted, unfenced node of
    /// epoch 5.
    fn req(op: Opcode) -> Admission {
        Admission {
            opcode: op,
            proto_ver: op.proto_ver(),
            req_epoch: Epoch(5),
            entry: op_info(op),
            status: NodeStatus::Ok,
            ctime: 1,
            epoch: Epoch(5),
            fenced: false,
        }
    }

    #[track_caller]
    fn check(a: Admission, expect: Result<OpKind, SdResult>) {
        assert_eq!(admission(&a), expect, "{a:?}");
    }

    #[test]
    fn admission_protocol_version() {
        // Client ops: any version up to ours.
        check(req(O::ReadObj), Ok(Gateway));
        check(
            Admission {
                proto_ver: 1,
                ..req(O::ReadObj)
            },
            Ok(Gateway),
        );
        let newer = sd_proto::SD_PROTO_VER + 1;
        check(
            Admission {
                proto_ver: newer,
                ..req(O::ReadObj)
            },
            Err(R::VerMismatch),
        );
        // Internal ops: exactly the sheep protocol.
        check(req(O::ReadPeer), Ok(Peer));
        let client = sd_proto::SD_PROTO_VER;
        check(
            Admission {
                proto_ver: client,
                ..req(O::ReadPeer)
            },
            Err(R::VerMismatch),
        );
        let next = sd_proto::SD_SHEEP_PROTO_VER + 1;
        check(
            Admission {
                proto_ver: next,
                ..req(O::GetEpoch)
            },
            Err(R::VerMismatch),
        );
        // Before anything else: a version mismatch on a killed node, of an unknown op.
        check(
            Admission {
                proto_ver: client,
                status: NodeStatus::Killed,
                ..req(O::ReadPeer)
            },
            Err(R::VerMismatch),
        );
        check(
            Admission {
                proto_ver: newer,
                ..req(O::Unknown(0x7f))
            },
            Err(R::VerMismatch),
        );
    }

    #[test]
    fn admission_unknown_opcode() {
        check(req(O::Unknown(0x7f)), Err(R::InvalidParms));
        check(req(O::Unknown(0xee)), Err(R::InvalidParms));
        // Before the node's status.
        check(
            Admission {
                status: NodeStatus::Shutdown,
                ..req(O::Unknown(0x7f))
            },
            Err(R::InvalidParms),
        );
        // A known opcode without a handler entry.
        check(
            Admission {
                entry: None,
                ..req(O::ReadObj)
            },
            Err(R::InvalidParms),
        );
    }

    #[test]
    fn admission_status() {
        let killed = |op| Admission {
            status: NodeStatus::Killed,
            ..req(op)
        };
        let shutdown = |op| Admission {
            status: NodeStatus::Shutdown,
            ..req(op)
        };
        // Killed and Shutdown refuse even the ops served before the cluster runs.
        check(killed(O::ReadObj), Err(R::Killed));
        check(killed(O::GetNodeList), Err(R::Killed));
        check(shutdown(O::ReadObj), Err(R::Shutdown));
        check(shutdown(O::MakeFs), Err(R::Shutdown));
        check(shutdown(O::ReadPeer), Err(R::Shutdown));
    }

    #[test]
    fn admission_wait() {
        let unformatted = |op| Admission {
            status: NodeStatus::Wait,
            ctime: 0,
            ..req(op)
        };
        let joining = |op| Admission {
            status: NodeStatus::Wait,
            ctime: 7,
            ..req(op)
        };
        check(unformatted(O::ReadObj), Err(R::WaitForFormat));
        check(joining(O::ReadObj), Err(R::WaitForJoin));
        check(unformatted(O::NewVdi), Err(R::WaitForFormat));
        check(joining(O::StatSheep), Err(R::WaitForJoin));
        check(joining(O::ReadPeer), Err(R::WaitForJoin));
        // Ops with `force` are served while waiting.
        check(unformatted(O::MakeFs), Ok(Cluster));
        check(unformatted(O::GetNodeList), Ok(Local));
        check(joining(O::Shutdown), Ok(Cluster));
        check(joining(O::StatCluster), Ok(Local));
    }

    #[test]
    fn admission_peer_epoch() {
        let newer = |op| Admission {
            req_epoch: Epoch(6),
            ..req(op)
        };
        let older = |op| Admission {
            req_epoch: Epoch(4),
            ..req(op)
        };
        check(req(O::ReadPeer), Ok(Peer));
        check(req(O::WritePeer), Ok(Peer));
        check(newer(O::ReadPeer), Err(R::NewNodeVer));
        check(newer(O::CreateAndWritePeer), Err(R::NewNodeVer));
        check(older(O::ReadPeer), Err(R::OldNodeVer));
        check(older(O::FetchPeer), Err(R::OldNodeVer));
        // A sender ahead of us is told so whatever our status: a member between
        // "formatted" and "running" makes the gateway retry, not fail its client.
        let wait = NodeStatus::Wait;
        check(
            Admission {
                status: wait,
                ctime: 0,
                ..newer(O::WritePeer)
            },
            Err(R::NewNodeVer),
        );
        check(
            Admission {
                status: wait,
                ..newer(O::ReadPeer)
            },
            Err(R::NewNodeVer),
        );
        check(
            Admission {
                status: NodeStatus::Killed,
                ..newer(O::ReadPeer)
            },
            Err(R::NewNodeVer),
        );
        check(
            Admission {
                fenced: true,
                ..newer(O::WritePeer)
            },
            Err(R::NewNodeVer),
        );
        // A sender behind us meets our status first.
        check(
            Admission {
                status: wait,
                ..older(O::ReadPeer)
            },
            Err(R::WaitForJoin),
        );
        // Client and local ops carry no epoch to check.
        check(newer(O::ReadObj), Ok(Gateway));
        check(older(O::WriteObj), Ok(Gateway));
        check(older(O::FlushPeer), Ok(Local));
        check(newer(O::GetObjList), Ok(Local));
    }

    #[test]
    fn admission_fenced() {
        let fenced = |op| Admission {
            fenced: true,
            ..req(op)
        };
        // A fenced peer refuses mutations, before their epoch is compared.
        check(fenced(O::CreateAndWritePeer), Err(R::ClusterError));
        check(fenced(O::WritePeer), Err(R::ClusterError));
        check(fenced(O::RemovePeer), Err(R::ClusterError));
        check(
            Admission {
                req_epoch: Epoch(4),
                ..fenced(O::WritePeer)
            },
            Err(R::ClusterError),
        );
        // Reads are served; the gateway (not admission) fences client requests.
        check(fenced(O::ReadPeer), Ok(Peer));
        check(fenced(O::FetchPeer), Ok(Peer));
        check(
            Admission {
                req_epoch: Epoch(4),
                ..fenced(O::ReadPeer)
            },
            Err(R::OldNodeVer),
        );
        check(fenced(O::WriteObj), Ok(Gateway));
        check(fenced(O::NewVdi), Ok(Cluster));
        // Status comes first.
        check(
            Admission {
                status: NodeStatus::Shutdown,
                ..fenced(O::WritePeer)
            },
            Err(R::Shutdown),
        );
    }
}
