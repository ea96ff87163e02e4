//! Object operations: the gateway ops (CREATE_AND_WRITE/READ/WRITE/REMOVE_OBJ) through the
//! replicating gateway, their peer counterparts on this node's store, FLUSH_VDI,
//! DISCARD_OBJ and GET_OBJ_LIST.

use bytes::Bytes;
use sd_cluster::check::Answer;
use sd_proto::oid_list::OidList;
use sd_proto::{Flags, Oid, RequestHeader, SdResult};

use super::{OpKind, Reply};
use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::gateway::{self, Mutation};
use crate::node::Sheep;
use crate::{replica, volume};

pub(super) async fn handle(
    sheep: &Sheep,
    kind: OpKind,
    req: &RequestHeader,
    payload: Bytes,
) -> SheepResult<Reply> {
    use sd_proto::Opcode as O;
    let args = req.obj();
    let oid = args.oid;
    tracing::debug!(%oid, offset = args.offset, len = req.data_length, ?kind, "object op");
    if kind == OpKind::Peer && is_strip_op(req) {
        if matches!(req.opcode, O::CreateAndWritePeer | O::PrepareStripPeer) {
            super::expect_payload(req, &payload)?;
        }
        return Ok(Reply::data(crate::ec::serve(sheep, req, payload).await?));
    }
    let copies = sheep.copies_of(oid, args.copies);
    match req.opcode {
        O::ReadObj => Ok(Reply::data(
            gateway::read(sheep, oid, args.offset, req.data_length, copies).await?,
        )),
        O::WriteObj => {
            super::expect_payload(req, &payload)?;
            check_writable(sheep, oid)?;
            if oid.is_inode() && volume::touches_index(args.offset, payload.len()) {
                check_index_writable(sheep, oid, &payload)?;
                volume::write_inode_index(sheep, oid, args.offset, payload, copies).await?;
            } else {
                let m = Mutation::Write {
                    offset: args.offset,
                    data: payload,
                };
                gateway::mutate(sheep, oid, copies, m).await?;
            }
            Ok(Reply::ok())
        }
        O::CreateAndWriteObj => {
            super::expect_payload(req, &payload)?;
            check_known_vdi(sheep, oid).await?;
            check_writable(sheep, oid)?;
            let cow = req.flags.contains(Flags::COW).then_some(args.cow_oid);
            let (offset, data) = match cow {
                Some(src) => (
                    0,
                    volume::copy_on_write(sheep, oid, src, args.offset, payload).await?,
                ),
                None => (args.offset, payload),
            };
            gateway::mutate(sheep, oid, copies, Mutation::Create { offset, data }).await?;
            Ok(Reply::ok())
        }
        O::RemoveObj => {
            gateway::mutate(sheep, oid, copies, Mutation::Remove).await?;
            Ok(Reply::ok())
        }
        O::ReadPeer => {
            let recovery = req.flags.contains(Flags::RECOVERY);
            Ok(Reply::data(
                replica::read(sheep, oid, args.offset, req.data_length, recovery).await?,
            ))
        }
        O::WritePeer => {
            super::expect_payload(req, &payload)?;
            // DIRECT on a peer write: the gateway wants it durable before the answer.
            let durable = req.flags.contains(Flags::DIRECT);
            replica::write(sheep, oid, args.offset, payload, durable, req.epoch).await?;
            Ok(Reply::ok())
        }
        O::CreateAndWritePeer => {
            super::expect_payload(req, &payload)?;
            replica::create(sheep, oid, args.offset, payload, req.epoch).await?;
            Ok(Reply::ok())
        }
        O::FetchPeer => Ok(Reply::data(
            replica::fetch(sheep, oid, req.data_length).await?,
        )),
        O::RemovePeer => {
            replica::remove(sheep, oid).await?;
            Ok(Reply::ok())
        }
        O::GetObjList => {
            let store = sheep.store.clone();
            let list = blocking(move || crate::strip::local_oids(&store)).await?;
            let cap = usize::try_from(req.data_length).unwrap_or(0);
            if OidList::size(list.len()) > cap {
                return Err(SdResult::BufferSmall.into());
            }
            Ok(Reply::data(OidList { oids: list }.encode()))
        }
        O::GetHash => Ok(Reply {
            hash: Some(replica::hash(sheep, oid).await?),
            ..Reply::ok()
        }),
        O::RepairReplica => {
            let forw = req.forw();
            let seen = repair_seen(req, &payload)?;
            crate::recovery::object::repair_from(sheep, forw.oid, forw.from, seen).await?;
            Ok(Reply::ok())
        }
        O::OidsExist => oids_exist(sheep, req, &payload).await,
        O::CheckStrips => {
            let g = crate::strip::geometry(sheep, oid).ok_or(SdResult::InvalidParms)?;
            let report = crate::ec::check(sheep, oid, g, args.offset == 1).await?;
            Ok(Reply::data(report.encode()))
        }
        O::FlushVdi => {
            crate::writeback::flush_vdi(sheep, oid.vid()).await?;
            Ok(Reply::ok())
        }
        O::FlushPeer => {
            crate::writeback::serve_flush_peer(sheep, oid.vid()).await?;
            Ok(Reply::ok())
        }
        O::StatWriteback => Ok(Reply::data(
            sheep.writeback.stat(&sheep.store, oid.vid()).encode(),
        )),
        #[cfg(feature = "failpoints")]
        O::InjectSyncFailure => {
            tracing::warn!(%oid, "test hook: the next fdatasync of this object fails");
            sheep.store.inject_sync_failure(oid);
            Ok(Reply::ok())
        }
        // Discard is not offered yet; QEMU's driver reads INVALID_PARMS as "disable discard".
        O::DiscardObj => Err(SdResult::InvalidParms.into()),
        _ => Err(SdResult::InvalidParms.into()),
    }
}

/// A peer request for an erasure-coded strip: the strip opcodes, and the object peer ops
/// that name a copy policy.
fn is_strip_op(req: &RequestHeader) -> bool {
    use sd_proto::Opcode as O;
    match req.opcode {
        O::PrepareStripPeer | O::CompleteStripPeer | O::DiscardStripPeer | O::StripLogPeer => true,
        O::CreateAndWritePeer | O::ReadPeer | O::RemovePeer => req.obj().copy_policy != 0,
        _ => false,
    }
}

/// The optional payload of REPAIR_REPLICA (`sd_cluster::check::seen_payload`).
fn repair_seen(req: &RequestHeader, payload: &Bytes) -> SheepResult<Option<Answer>> {
    if payload.is_empty() {
        return Ok(None);
    }
    super::expect_payload(req, payload)?;
    sd_cluster::check::parse_seen(payload)
        .map(Some)
        .ok_or(SheepError::Result(SdResult::InvalidParms))
}

/// OIDS_EXIST: which of the listed objects this node lacks. The answer lists them and is
/// NO_OBJ when there is any; the list is bounded by the request's own payload.
async fn oids_exist(sheep: &Sheep, req: &RequestHeader, payload: &Bytes) -> SheepResult<Reply> {
    super::expect_payload(req, payload)?;
    let asked = OidList::decode(payload).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let store = sheep.store.clone();
    let missing: Vec<Oid> = blocking(move || {
        Ok::<_, sd_store::StoreError>(
            asked
                .oids
                .into_iter()
                .filter(|oid| !store.exists(*oid))
                .collect(),
        )
    })
    .await?;
    let result = (!missing.is_empty()).then_some(SdResult::NoObj);
    Ok(Reply {
        result,
        payload: OidList { oids: missing }.encode().into(),
        ..Reply::ok()
    })
}

/// A create names a VDI this gateway must know. Before answering NO_VDI, catch up with
/// the cluster log: the VDI may have been created through another gateway a moment ago.
async fn check_known_vdi(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    if sheep.vdi_shift(oid.vid()).is_some() {
        return Ok(());
    }
    sheep.barrier().await?;
    match sheep.vdi_shift(oid.vid()) {
        Some(_) => Ok(()),
        None => Err(SdResult::NoVdi.into()),
    }
}

/// Writes to data objects of a snapshot are refused (QEMU then re-reads the inode and
/// retries on the new working VDI).
fn check_writable(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    if oid.is_data() && sheep.vdis().get(oid.vid()).is_some_and(|e| e.snapshot) {
        return Err(SdResult::Readonly.into());
    }
    Ok(())
}

/// A snapshot's index is frozen: writes into it are refused, except all-zero ones, which
/// only drop references (Sheepdog's `dog vdi delete -s` zeroes the index before DEL_VDI).
/// Its header stays writable, for tags and QEMU's vmstate fields.
fn check_index_writable(sheep: &Sheep, oid: Oid, payload: &[u8]) -> SheepResult<()> {
    let snapshot = sheep.vdis().get(oid.vid()).is_some_and(|e| e.snapshot);
    if snapshot && payload.iter().any(|b| *b != 0) {
        return Err(SdResult::Readonly.into());
    }
    Ok(())
}
