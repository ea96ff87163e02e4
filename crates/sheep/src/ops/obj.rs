//! Object operations: the gateway ops (CREATE_AND_WRITE/READ/WRITE/REMOVE_OBJ), their peer
//! counterparts, FLUSH_VDI and DISCARD_OBJ.
//!
//! A cluster of one is its own only replica, so the gateway path goes straight to the local
//! store; replication fans out from the same functions.

use bytes::{Bytes, BytesMut};
use sd_proto::inode::{SD_INODE_DATA_INDEX_SIZE, SD_INODE_HEADER_SIZE, decode_index};
use sd_proto::{Flags, ObjectKind, Oid, RequestHeader, SdResult, Vid};
use sd_store::{CreateSpec, StoreError};

use super::{OpKind, Reply, blocking};
use crate::error::SheepResult;
use crate::sys::Sheep;

pub(super) async fn handle(
    sheep: &Sheep,
    kind: OpKind,
    req: &RequestHeader,
    payload: Bytes,
) -> SheepResult<Reply> {
    use sd_proto::Opcode as O;
    let args = req.obj();
    tracing::debug!(oid = %args.oid, offset = args.offset, len = req.data_length, "object op");
    let gateway = kind == OpKind::Gateway;
    match req.opcode {
        O::ReadObj | O::ReadPeer => read(sheep, args.oid, args.offset, req.data_length).await,
        O::WriteObj | O::WritePeer => {
            super::expect_payload(req, &payload)?;
            write(sheep, gateway, args.oid, args.offset, payload).await
        }
        O::CreateAndWriteObj | O::CreateAndWritePeer => {
            super::expect_payload(req, &payload)?;
            let cow = req.flags.contains(Flags::COW).then_some(args.cow_oid);
            create_and_write(sheep, gateway, args.oid, cow, args.offset, payload).await
        }
        O::RemoveObj | O::RemovePeer => {
            let store = sheep.store.clone();
            let oid = args.oid;
            blocking(move || store.remove(oid)).await?;
            Ok(Reply::ok())
        }
        // Writethrough: every acknowledged write is already on disk.
        O::FlushVdi => Ok(Reply::ok()),
        // Discard is not offered yet; QEMU's driver reads INVALID_PARMS as "disable discard".
        O::DiscardObj => Err(SdResult::InvalidParms.into()),
        _ => Err(SdResult::InvalidParms.into()),
    }
}

/// Object size for a create: data-like objects take their VDI's block size, which means
/// the VDI must exist; metadata objects have fixed sizes.
fn create_spec(sheep: &Sheep, oid: Oid) -> SheepResult<CreateSpec> {
    let shift = match oid.kind() {
        ObjectKind::Data | ObjectKind::VmState => {
            sheep.vdi_shift(oid.vid()).ok_or(SdResult::NoVdi)?
        }
        ObjectKind::Inode | ObjectKind::Attr => {
            sheep.vdi_shift(oid.vid()).ok_or(SdResult::NoVdi)?;
            0
        }
        // Hyper volumes and refcount ledgers are not implemented.
        ObjectKind::Btree | ObjectKind::Ledger => return Err(SdResult::NoSupport.into()),
    };
    Ok(CreateSpec {
        size: oid.object_size(shift),
        sparse: oid.is_sparse(),
    })
}

/// Writes to data objects of a snapshot are refused (QEMU then re-reads the inode).
fn check_writable(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    if oid.is_data() && sheep.vdis().get(oid.vid()).is_some_and(|e| e.snapshot) {
        return Err(SdResult::Readonly.into());
    }
    Ok(())
}

async fn read(sheep: &Sheep, oid: Oid, offset: u64, len: u32) -> SheepResult<Reply> {
    let store = sheep.store.clone();
    let len = u64::from(len);
    let data = blocking(move || {
        // Bound the allocation by the object, not by what the client claims.
        let size = store.object_size(oid)?;
        let end = offset.checked_add(len).filter(|e| *e <= size);
        let Some(_) = end else {
            return Err(StoreError::OutOfBounds {
                oid,
                offset,
                len,
                size,
            });
        };
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        store.read(oid, offset, &mut buf)?;
        Ok(buf)
    })
    .await?;
    Ok(Reply::data(data))
}

async fn write(
    sheep: &Sheep,
    gateway: bool,
    oid: Oid,
    offset: u64,
    data: Bytes,
) -> SheepResult<Reply> {
    if gateway {
        check_writable(sheep, oid)?;
        if oid.is_inode() && touches_index(offset, data.len()) {
            return write_inode_index(sheep, oid, offset, data).await;
        }
    }
    let store = sheep.store.clone();
    blocking(move || store.write(oid, offset, &data)).await?;
    Ok(Reply::ok())
}

async fn create_and_write(
    sheep: &Sheep,
    gateway: bool,
    oid: Oid,
    cow: Option<Oid>,
    offset: u64,
    data: Bytes,
) -> SheepResult<Reply> {
    if gateway {
        check_writable(sheep, oid)?;
    }
    let spec = create_spec(sheep, oid)?;
    let store = sheep.store.clone();
    blocking(move || {
        let whole = usize::try_from(spec.size).ok() == Some(data.len()) && offset == 0;
        match cow {
            Some(src) if !whole => {
                // Copy-on-write: the new object starts as a copy of the source.
                let len = usize::try_from(spec.size).map_err(|_| StoreError::OutOfBounds {
                    oid,
                    offset,
                    len: spec.size,
                    size: spec.size,
                })?;
                let mut buf = BytesMut::zeroed(len);
                store.read(src, 0, &mut buf)?;
                let start = usize::try_from(offset).ok();
                let end = start.and_then(|s| s.checked_add(data.len()));
                let dst = match (start, end) {
                    (Some(s), Some(e)) => buf.get_mut(s..e),
                    _ => None,
                };
                let Some(dst) = dst else {
                    return Err(StoreError::OutOfBounds {
                        oid,
                        offset,
                        len: data.len() as u64,
                        size: spec.size,
                    });
                };
                dst.copy_from_slice(&data);
                store.create_and_write(oid, spec, 0, &buf)
            }
            _ => store.create_and_write(oid, spec, offset, &data),
        }
    })
    .await?;
    Ok(Reply::ok())
}

const INDEX_START: u64 = SD_INODE_HEADER_SIZE as u64;
const INDEX_END: u64 = INDEX_START + SD_INODE_DATA_INDEX_SIZE as u64;

fn touches_index(offset: u64, len: usize) -> bool {
    let end = offset.saturating_add(len as u64);
    offset < INDEX_END && end > INDEX_START
}

/// A write into an inode's `data_vdi_id[]`: entries that stop pointing at an object this
/// VDI owns drop that object (what `dog vdi delete` relies on).
///
/// FIXME(issue 7): with snapshots and clones an owned object may still be referenced by a
/// child; this must go through generational reference counts before objects are freed.
async fn write_inode_index(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    data: Bytes,
) -> SheepResult<Reply> {
    let _serial = sheep.index_ops.lock().await;
    let store = sheep.store.clone();
    let own = oid.vid();
    let freed = blocking(move || {
        let end = offset.saturating_add(data.len() as u64);
        // Whole entries overlapped by the write.
        let first = (offset.max(INDEX_START) - INDEX_START) / 4;
        let last = (end.min(INDEX_END) - INDEX_START).div_ceil(4);
        let span = usize::try_from((last - first) * 4).unwrap_or(0);
        let at = INDEX_START + first * 4;
        let mut before = vec![0u8; span];
        store.read(oid, at, &mut before)?;
        store.write(oid, offset, &data)?;
        let mut after = vec![0u8; span];
        store.read(oid, at, &mut after)?;
        let mut freed = Vec::new();
        for (i, (old, new)) in decode_index(&before)
            .into_iter()
            .zip(decode_index(&after))
            .enumerate()
        {
            if old == own.get() && new == 0 {
                let idx = u32::try_from(first + i as u64).unwrap_or(u32::MAX);
                freed.push(own.data_oid(idx));
            }
        }
        for data_oid in &freed {
            match store.remove(*data_oid) {
                Ok(()) | Err(StoreError::NoObject(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(freed.len())
    })
    .await?;
    if freed > 0 {
        tracing::debug!(vid = %own, freed, "dropped unreferenced data objects");
    }
    Ok(Reply::ok())
}

/// Removes every data object `vid` owns according to its index (DEL_VDI).
pub(crate) async fn remove_owned_objects(sheep: &Sheep, vid: Vid) -> SheepResult<usize> {
    let store = sheep.store.clone();
    blocking(move || {
        let mut index = vec![0u8; SD_INODE_DATA_INDEX_SIZE];
        store.read(vid.inode_oid(), INDEX_START, &mut index)?;
        let mut n = 0;
        for (idx, owner) in decode_index(&index).into_iter().enumerate() {
            if owner != vid.get() {
                continue;
            }
            let idx = u32::try_from(idx).unwrap_or(u32::MAX);
            match store.remove(vid.data_oid(idx)) {
                Ok(()) => n += 1,
                Err(StoreError::NoObject(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    })
    .await
}
