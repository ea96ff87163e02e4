//! This node's replica operations: the store behind the peer ops and behind the gateway
//! when this node is one of the replicas. Objects still awaiting recovery are recovered
//! before they are served; a copy that cannot be read (EIO) is answered with EIO and
//! replaced from another replica in the background.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sd_proto::peer_copy::PeerCopy;
use sd_proto::{Epoch, ObjectKind, Oid, SdResult};
use sd_store::{CreateSpec, StoreError};

use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;

/// How long a replica waits to learn a VDI another gateway just created.
const VDI_WAIT: Duration = Duration::from_secs(5);

/// Object size for a create: data-like objects take their VDI's block size, so the VDI must
/// be known here. A VDI created through another gateway may reach this node's table a
/// moment after that gateway's first write: wait for it briefly.
async fn create_spec(sheep: &Sheep, oid: Oid) -> SheepResult<CreateSpec> {
    if matches!(oid.kind(), ObjectKind::Btree | ObjectKind::Ledger) {
        // Hyper volumes and refcount ledgers are not implemented.
        return Err(SdResult::NoSupport.into());
    }
    if oid.kind() == ObjectKind::Attr {
        // Fixed size: no need to know the (hashed-name) VDI.
        return Ok(CreateSpec {
            size: oid.object_size(0),
            sparse: true,
        });
    }
    let mut rx = sheep.watch_vdis();
    let shift = match tokio::time::timeout(VDI_WAIT, async {
        loop {
            if let Some(s) = sheep.vdi_shift(oid.vid()) {
                return Some(s);
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .await
    {
        Ok(Some(s)) => s,
        _ => return Err(SdResult::NoVdi.into()),
    };
    Ok(CreateSpec {
        size: oid.object_size(shift),
        sparse: oid.is_sparse(),
    })
}

/// Reads from the local copy. A recovery read (`for_recovery`) of a copy that is not yet
/// trustworthy answers NO_OBJ so the recovering node asks someone else.
pub async fn read(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    len: u32,
    for_recovery: bool,
) -> SheepResult<Bytes> {
    if !for_recovery {
        sheep.recovery.client_io();
    }
    if sheep.recovery.needs(oid) {
        if for_recovery {
            return Err(SdResult::NoObj.into());
        }
        ahead_of_us(sheep, oid)?;
        let started = Instant::now();
        crate::recovery::object::recover_now(sheep, oid).await?;
        crate::metrics::recovery_wait("read", started);
    }
    match read_store(sheep, oid, offset, len).await {
        // Missing here although asked for: perhaps placed here by a new epoch and not
        // recovered yet. Fetch it, then serve.
        Err(e) if !for_recovery && e.result() == SdResult::NoObj => {
            ahead_of_us(sheep, oid)?;
            let started = Instant::now();
            crate::recovery::object::recover_missing(sheep, oid).await?;
            crate::metrics::recovery_wait("read", started);
            read_store(sheep, oid, offset, len).await
        }
        // The copy is bad: answer EIO (the gateway reads another replica) and replace it.
        Err(e @ SheepError::Store(StoreError::Unreadable { .. })) => {
            tracing::error!(%oid, error = %e, "local copy unreadable");
            crate::recovery::object::repair_unreadable(sheep, oid);
            Err(e)
        }
        other => other,
    }
}

/// Before recovering `oid` for client I/O: if this node's view does not place it here, the
/// gateway applied a change of its VDI's copies this node has not yet (the epochs are the
/// same, or the request had been refused): NEW_NODE_VER, which the gateway retries in a
/// moment, instead of fetching a copy that may miss writes still in flight
/// (`recovery::copies`).
fn ahead_of_us(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    if crate::recovery::copies::placed_here(sheep, oid) {
        Ok(())
    } else {
        Err(SdResult::NewNodeVer.into())
    }
}

async fn read_store(sheep: &Sheep, oid: Oid, offset: u64, len: u32) -> SheepResult<Bytes> {
    crate::disk::read(&sheep.store, oid, offset, len).await
}

/// Overwrites part of the local copy; `durable`: on stable storage before returning, in
/// writeback mode too (the gateway asks for it when its client flushes after every write).
/// The copy's version becomes `epoch` (`sd_store::Store::version`).
pub async fn write(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    data: Bytes,
    durable: bool,
    epoch: Epoch,
) -> SheepResult<()> {
    sheep.recovery.client_io();
    if !durable {
        crate::writeback::throttle(sheep).await?;
    }
    if sheep.recovery.needs(oid) {
        ahead_of_us(sheep, oid)?;
        // Not held yet: kept in a partial copy, which recovery merges first.
        if crate::recovery::partial::write(sheep, oid, offset, &data, epoch).await? {
            return Ok(());
        }
        let started = Instant::now();
        crate::recovery::object::recover_now(sheep, oid).await?;
        crate::metrics::recovery_wait("write", started);
    }
    let put = |data: Bytes| crate::disk::write(&sheep.store, oid, offset, data, durable, epoch.0);
    let started = Instant::now();
    let first = put(data.clone()).await;
    if first.is_ok() && (durable || sheep.store.sync_mode() == sd_store::SyncMode::Writethrough) {
        // What recovery paces itself by (`recovery::yielding::Pace`).
        sheep.recovery.client_write_took(started.elapsed());
    }
    match first {
        // As for reads: an object this node lacks may be one recovery has not reached.
        Err(e) if e.result() == SdResult::NoObj => {
            ahead_of_us(sheep, oid)?;
            let started = Instant::now();
            crate::recovery::object::recover_missing(sheep, oid).await?;
            crate::metrics::recovery_wait("write", started);
            put(data).await
        }
        other => other,
    }
}

/// Creates (or replaces) the local copy, at version `epoch`.
pub async fn create(
    sheep: &Sheep,
    oid: Oid,
    offset: u64,
    data: Bytes,
    epoch: Epoch,
) -> SheepResult<()> {
    sheep.recovery.client_io();
    let spec = create_spec(sheep, oid).await?;
    let store = sheep.store.clone();
    sheep
        .recovery
        .replace(oid, async move {
            blocking(move || store.create_versioned(oid, spec, offset, &data, epoch.0)).await
        })
        .await
}

/// FETCH_PEER: the local copy's version, then (when `room` allows) its bytes, whether or not
/// this node trusts the copy yet: the asking node compares versions (`recovery`). A copy
/// still suspect after an unclean stop, or stale after a copy change, says so
/// (`peer_copy::SUSPECT`). Without a copy, a
/// partial copy answers with its version marked `peer_copy::PARTIAL`, and its ranges.
pub async fn fetch(sheep: &Sheep, oid: Oid, room: u32) -> SheepResult<Bytes> {
    let store = sheep.store.clone();
    // A stale leftover (`recovery::copies`) ranks after trusted copies, as a suspect one.
    let flag = if sheep.recovery.is_suspect(oid) || sheep.recovery.is_stale(oid) {
        sd_proto::peer_copy::SUSPECT
    } else {
        0
    };
    let data = blocking(move || {
        let version = match store.version(oid) {
            Ok(v) => v | flag,
            Err(StoreError::NoObject(_)) => return fetch_partial(&store, oid, room),
            Err(e) => return Err(e),
        };
        let size = store.object_size(oid)?;
        if !PeerCopy::fits(room, size) {
            return Ok(PeerCopy {
                version,
                data: Bytes::new(),
            }
            .encode());
        }
        let len = usize::try_from(size).unwrap_or(0);
        PeerCopy::encode_with(version, len, |buf| store.read_bulk(oid, 0, buf))
    })
    .await?;
    Ok(Bytes::from(data))
}

/// The FETCH_PEER answer of a partial copy of `oid` (NO_OBJ without one).
fn fetch_partial(store: &sd_store::Store, oid: Oid, room: u32) -> Result<Vec<u8>, StoreError> {
    let partial = sd_proto::peer_copy::PARTIAL;
    if room < 8 {
        let version = store
            .partial_version(oid)
            .ok_or(StoreError::NoObject(oid))?;
        return Ok(PeerCopy {
            version: version | partial,
            data: Bytes::new(),
        }
        .encode());
    }
    let (version, ranges) = store.read_partial(oid)?.ok_or(StoreError::NoObject(oid))?;
    let encoded = ranges.encode();
    let data = if PeerCopy::fits(room, encoded.len() as u64) {
        Bytes::from(encoded)
    } else {
        Bytes::new()
    };
    Ok(PeerCopy {
        version: version | partial,
        data,
    }
    .encode())
}

/// GET_HASH: the SHA-1 of the whole local copy (`disk::hash`). NO_OBJ if this node has no
/// copy; a copy that cannot be read answers EIO and is replaced in the background, as for
/// a read.
pub async fn hash(sheep: &Sheep, oid: Oid) -> SheepResult<[u8; 20]> {
    let r = crate::disk::hash(&sheep.store, oid).await;
    if let Err(SheepError::Store(StoreError::Unreadable { .. })) = &r {
        tracing::error!(%oid, "local copy unreadable while hashing");
        crate::recovery::object::repair_unreadable(sheep, oid);
    }
    r
}

/// Removes the local copy.
pub async fn remove(sheep: &Sheep, oid: Oid) -> SheepResult<()> {
    let store = sheep.store.clone();
    sheep
        .recovery
        .replace(
            oid,
            async move { blocking(move || store.remove(oid)).await },
        )
        .await
}
