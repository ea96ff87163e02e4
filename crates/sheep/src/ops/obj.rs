//! Object operations: the gateway ops (CREATE_AND_WRITE/READ/WRITE/REMOVE_OBJ) through the
//! replicating gateway, their peer counterparts on this node's store, FLUSH_VDI,
//! DISCARD_OBJ and GET_OBJ_LIST.

use bytes::{Bytes, BytesMut};
use sd_proto::inode::{SD_INODE_DATA_INDEX_SIZE, SD_INODE_HEADER_SIZE, decode_index};
use sd_proto::oid_list::OidList;
use sd_proto::{Flags, Oid, RequestHeader, SdResult};

use super::{OpKind, Reply};
use crate::disk::blocking;
use crate::error::SheepResult;
use crate::gateway::{self, Mutation};
use crate::local;
use crate::node::Sheep;

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
    let copies = sheep.copies_of(oid, args.copies);
    match req.opcode {
        O::ReadObj => Ok(Reply::data(
            gateway::read(sheep, oid, args.offset, req.data_length, copies).await?,
        )),
        O::WriteObj => {
            super::expect_payload(req, &payload)?;
            check_writable(sheep, oid)?;
            if oid.is_inode() && touches_index(args.offset, payload.len()) {
                check_index_writable(sheep, oid, &payload)?;
                write_inode_index(sheep, oid, args.offset, payload, copies).await?;
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
                    copy_on_write(sheep, oid, src, args.offset, payload).await?,
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
                local::read(sheep, oid, args.offset, req.data_length, recovery).await?,
            ))
        }
        O::WritePeer => {
            super::expect_payload(req, &payload)?;
            // DIRECT on a peer write: the gateway wants it durable before the answer.
            let durable = req.flags.contains(Flags::DIRECT);
            local::write(sheep, oid, args.offset, payload, durable, req.epoch).await?;
            Ok(Reply::ok())
        }
        O::CreateAndWritePeer => {
            super::expect_payload(req, &payload)?;
            local::create(sheep, oid, args.offset, payload, req.epoch).await?;
            Ok(Reply::ok())
        }
        O::FetchPeer => Ok(Reply::data(
            local::fetch(sheep, oid, req.data_length).await?,
        )),
        O::RemovePeer => {
            local::remove(sheep, oid).await?;
            Ok(Reply::ok())
        }
        O::GetObjList => {
            let store = sheep.store.clone();
            let list = blocking(move || store.list()).await?;
            let cap = usize::try_from(req.data_length).unwrap_or(0);
            if OidList::size(list.len()) > cap {
                return Err(SdResult::BufferSmall.into());
            }
            Ok(Reply::data(OidList { oids: list }.encode()))
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

/// The whole new object of a copy-on-write create: the source object with `data` laid
/// over it at `offset`.
pub(crate) async fn copy_on_write(
    sheep: &Sheep,
    oid: Oid,
    src: Oid,
    offset: u64,
    data: Bytes,
) -> SheepResult<Bytes> {
    let shift = sheep.vdi_shift(oid.vid()).ok_or(SdResult::NoVdi)?;
    let size = oid.object_size(shift);
    let len = u32::try_from(size)
        .map_err(|_| crate::error::SheepError::Result(SdResult::InvalidParms))?;
    if offset == 0 && data.len() as u64 == size {
        return Ok(data);
    }
    let base = gateway::read(sheep, src, 0, len, sheep.copies_of(src, 0)).await?;
    let mut buf = BytesMut::from(base.as_ref());
    let start = usize::try_from(offset).ok();
    let dst = start.and_then(|s| buf.get_mut(s..s.checked_add(data.len())?));
    let Some(dst) = dst else {
        return Err(SdResult::InvalidParms.into());
    };
    dst.copy_from_slice(&data);
    Ok(buf.freeze())
}

const INDEX_START: u64 = SD_INODE_HEADER_SIZE as u64;
const INDEX_END: u64 = INDEX_START + SD_INODE_DATA_INDEX_SIZE as u64;

fn touches_index(offset: u64, len: usize) -> bool {
    let end = offset.saturating_add(len as u64);
    offset < INDEX_END && end > INDEX_START
}

/// A write into an inode's `data_vdi_id[]`: objects its old entries named are freed once
/// no live VDI references them (see [`crate::reclaim`]). This is what Sheepdog's `dog vdi
/// delete` and QEMU's discard rely on.
pub(crate) async fn write_inode_index(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    data: Bytes,
    copies: usize,
) -> SheepResult<()> {
    let _serial = sheep.index_ops.lock().await;
    let end = offset.saturating_add(data.len() as u64);
    // Whole entries overlapped by the write.
    let first = (offset.max(INDEX_START) - INDEX_START) / 4;
    let last = (end.min(INDEX_END) - INDEX_START).div_ceil(4);
    let span = u32::try_from((last - first) * 4).unwrap_or(0);
    let at = INDEX_START + first * 4;
    let before = gateway::read(sheep, oid, at, span, copies).await?;
    crate::failpoint::crash_point("index:before_write");
    gateway::mutate(sheep, oid, copies, Mutation::Write { offset, data }).await?;
    let after = gateway::read(sheep, oid, at, span, copies).await?;
    let candidates: Vec<(u32, u32)> = decode_index(&before)
        .into_iter()
        .zip(decode_index(&after))
        .enumerate()
        .filter(|(_, (old, new))| *old != 0 && old != new)
        .filter_map(|(i, (old, _))| Some((old, u32::try_from(first + i as u64).ok()?)))
        .collect();
    if !candidates.is_empty() {
        let freed = crate::reclaim::free_unreferenced(sheep, &candidates).await?;
        tracing::debug!(vid = %oid.vid(), dropped = candidates.len(), freed, "index entries dropped");
    }
    Ok(())
}
