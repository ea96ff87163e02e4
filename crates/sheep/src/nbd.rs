//! NBD export of VDIs: every sheep serves `--nbd ADDR:PORT`; export name = VDI name, and
//! `NAME@TAG` or `NAME@SNAPID` exports a snapshot read-only. A [`VdiDev`] turns block I/O
//! into object I/O through this sheep's gateway, allocating objects as `dog vdi write` and
//! QEMU's driver do (create the object, then point the inode's index entry at it).
//!
//! **Invariant** (CAN_MULTI_CONN): all connections to one export on this sheep share one
//! `VdiDev`, and its FLUSH is FLUSH_VDI, which covers every write this gateway acknowledged
//! for the VDI, whichever connection sent it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use sd_nbd::{BlockDev, BlockError, ExportError, Exports};
use sd_proto::inode::{InodeHeader, data_index_offset};
use sd_proto::{SdResult, Vid};

use crate::error::{SheepError, SheepResult};
use crate::gateway::{self, Mutation};
use crate::metrics::Protocol;
use crate::node::Sheep;

fn block_err(e: SheepError) -> BlockError {
    match e.result() {
        SdResult::NoSpace => BlockError::NoSpace,
        SdResult::Readonly => BlockError::ReadOnly,
        // Another writer (a QEMU driver client, or an NBD export on another sheep) holds
        // the VDI: this export refuses writes.
        SdResult::VdiLocked => BlockError::ReadOnly,
        SdResult::Shutdown => BlockError::Shutdown,
        _ => BlockError::io(e),
    }
}

/// The piece of one data object a byte range of the VDI covers.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// The object's index in the VDI.
    idx: u32,
    /// Offset in the object.
    inner: u64,
    /// Bytes (at most one object).
    len: u32,
}

/// One VDI as a block device.
///
/// An export of a working VDI follows it across snapshots: `dog vdi snapshot` gives the
/// working VDI a new vid (the old one turns read-only), and the next write here notices,
/// flushes what it wrote under the old vid, reloads the new inode and goes on there.
#[derive(Debug)]
pub struct VdiDev {
    sheep: Arc<Sheep>,
    /// The VDI name (working exports re-resolve it after a snapshot).
    name: Vec<u8>,
    size: u64,
    obj_size: u64,
    read_only: bool,
    /// The current vid and its `data_vdi_id[]` as this gateway knows it (it is the only
    /// writer of this VDI).
    state: Mutex<DevState>,
    /// Serialises allocations, so two writes never both create one object.
    alloc: tokio::sync::Mutex<()>,
    /// This export's id as a lock holder, and whether it holds the VDI's lock (taken at
    /// the first write, released when the last connection closes).
    holder: u64,
    locked: tokio::sync::Mutex<bool>,
    /// Open connections to this export.
    conns: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct DevState {
    vid: Vid,
    index: Vec<u32>,
}

/// Reads `vid`'s header and index.
async fn load_inode(sheep: &Sheep, vid: Vid) -> SheepResult<(InodeHeader, Vec<u32>)> {
    let hdr = crate::inode::read_header(sheep, vid).await?;
    let n = hdr.data_objects();
    if n > sd_proto::inode::SD_INODE_DATA_INDEX as u64 {
        return Err(SdResult::NoSupport.into());
    }
    let mut index = crate::inode::read_index(sheep, vid, n).await?;
    index.resize(usize::try_from(n).map_err(|_| SdResult::NoSupport)?, 0);
    Ok((hdr, index))
}

impl VdiDev {
    async fn open(sheep: Arc<Sheep>, vid: Vid) -> SheepResult<VdiDev> {
        let (hdr, index) = load_inode(&sheep, vid).await?;
        Ok(VdiDev {
            name: hdr.name.clone(),
            size: hdr.vdi_size,
            obj_size: hdr.object_size(),
            read_only: hdr.is_snapshot(),
            state: Mutex::new(DevState { vid, index }),
            alloc: tokio::sync::Mutex::new(()),
            holder: sheep.new_lock_holder(),
            locked: tokio::sync::Mutex::new(false),
            conns: std::sync::atomic::AtomicUsize::new(0),
            sheep,
        })
    }

    /// Before the first write: take the VDI's lock, so no other writer shares it.
    async fn ensure_locked(&self) -> SheepResult<()> {
        let mut locked = self.locked.lock().await;
        if *locked {
            return Ok(());
        }
        let vid = self.vid();
        if let Err(e) = crate::volume::lock(&self.sheep, vid, self.holder).await {
            if e.result() == SdResult::VdiLocked {
                tracing::warn!(%vid, "NBD write refused: another writer holds the VDI's lock");
            }
            return Err(e);
        }
        *locked = true;
        Ok(())
    }

    /// The last connection closed: release the lock if this export took it.
    async fn release(&self) {
        let mut locked = self.locked.lock().await;
        if !*locked || self.conns.load(std::sync::atomic::Ordering::SeqCst) != 0 {
            return;
        }
        let vid = self.vid();
        match crate::volume::unlock(&self.sheep, vid, self.holder).await {
            Ok(()) => *locked = false,
            Err(e) => tracing::warn!(%vid, error = %e, "releasing the NBD export's lock failed"),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DevState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replicas of `oid` now: its VDI's count, which a copy change may alter while the
    /// export is open (`ClusterMsg::AlterVdiCopy`).
    fn copies(&self, oid: sd_proto::Oid) -> usize {
        self.sheep.copies_of(oid, 0)
    }

    /// The vid I/O goes to now.
    fn vid(&self) -> Vid {
        self.state().vid
    }

    /// Moves a working export to `to` (the vid its name resolves to now): what was
    /// written under the old vid is flushed first, so a later FLUSH still covers it.
    async fn retarget(&self, to: Vid) -> SheepResult<()> {
        let _alloc = self.alloc.lock().await;
        let from = self.vid();
        if from == to {
            return Ok(());
        }
        crate::writeback::flush_vdi(&self.sheep, from).await?;
        let (hdr, index) = load_inode(&self.sheep, to).await?;
        if hdr.object_size() != self.obj_size || hdr.vdi_size < self.size {
            return Err(SdResult::NoSupport.into());
        }
        *self.state() = DevState { vid: to, index };
        tracing::info!(from = %from, to = %to, "NBD export follows its VDI to a new vid");
        Ok(())
    }

    /// Before a write: if our vid turned into a snapshot, follow the working VDI.
    async fn follow_working(&self) -> SheepResult<()> {
        let vid = self.vid();
        if !self.sheep.vdis().get(vid).is_some_and(|e| e.snapshot) {
            return Ok(());
        }
        let to = self
            .sheep
            .vdis()
            .lookup(&self.name, b"", 0)
            .map_err(|m| SheepError::Result(m.result))?
            .vid;
        self.retarget(to).await
    }

    /// The VDI owning data object `idx` (0: not allocated).
    fn owner(&self, idx: u32) -> u32 {
        self.state().index.get(idx as usize).copied().unwrap_or(0)
    }

    fn set_owner(&self, idx: u32, vid: u32) {
        if let Some(e) = self.state().index.get_mut(idx as usize) {
            *e = vid;
        }
    }

    /// Splits `[offset, offset+len)` into the pieces of the objects it covers; an object
    /// index past what an inode can name is INVALID_PARMS (the export's size keeps ranges
    /// below it, so this is a bug caught, not a value clamped).
    fn chunks(&self, offset: u64, len: u64) -> SheepResult<Vec<Chunk>> {
        let bad = |_| SheepError::Result(SdResult::InvalidParms);
        let mut out = Vec::new();
        let (mut pos, end) = (offset, offset.saturating_add(len));
        while pos < end {
            let inner = pos % self.obj_size;
            let n = (self.obj_size - inner).min(end - pos);
            out.push(Chunk {
                idx: u32::try_from(pos / self.obj_size).map_err(bad)?,
                inner,
                len: u32::try_from(n).map_err(bad)?,
            });
            pos += n;
        }
        Ok(out)
    }

    async fn read_range(&self, offset: u64, len: u32) -> SheepResult<Bytes> {
        let mut out = BytesMut::with_capacity(len as usize);
        for Chunk { idx, inner, len } in self.chunks(offset, u64::from(len))? {
            let owner = self.owner(idx);
            if owner == 0 {
                out.resize(out.len() + len as usize, 0);
                continue;
            }
            let oid = Vid::from_masked(owner).data_oid(idx);
            out.extend_from_slice(
                &gateway::read(&self.sheep, oid, inner, len, self.copies(oid)).await?,
            );
        }
        Ok(out.freeze())
    }

    async fn write_chunk(&self, idx: u32, inner: u64, data: Bytes) -> SheepResult<()> {
        let vid = self.vid();
        let oid = vid.data_oid(idx);
        let overwrite = |data| {
            let m = Mutation::Write {
                offset: inner,
                data,
            };
            gateway::mutate(&self.sheep, oid, self.copies(oid), m)
        };
        if self.owner(idx) == vid.get() {
            return overwrite(data).await;
        }
        let _alloc = self.alloc.lock().await;
        if self.vid() != vid {
            // Retargeted meanwhile: the caller starts over.
            return Err(SheepError::Retargeted);
        }
        let owner = self.owner(idx);
        if owner == vid.get() {
            return overwrite(data).await;
        }
        let (offset, data) = if owner == 0 {
            (inner, data)
        } else {
            // Owned by an ancestor (snapshot or clone source): copy on write.
            let src = Vid::from_masked(owner).data_oid(idx);
            (
                0,
                crate::volume::copy_on_write(&self.sheep, oid, src, inner, data).await?,
            )
        };
        gateway::mutate(
            &self.sheep,
            oid,
            self.copies(oid),
            Mutation::Create { offset, data },
        )
        .await?;
        // The data object exists on every replica before the inode points at it.
        let entry = Bytes::copy_from_slice(&vid.get().to_le_bytes());
        crate::volume::write_inode_index(
            &self.sheep,
            vid.inode_oid(),
            data_index_offset(idx),
            entry,
            self.copies(vid.inode_oid()),
        )
        .await?;
        self.set_owner(idx, vid.get());
        Ok(())
    }

    /// A write, following the working VDI if a snapshot moved it (once: a second
    /// READONLY means the export itself is read-only).
    async fn write_range(&self, offset: u64, data: Bytes) -> SheepResult<()> {
        self.follow_working().await?;
        self.ensure_locked().await?;
        match self.write_range_once(offset, data.clone()).await {
            Err(e) if e.result() == SdResult::Readonly && !self.read_only => {
                self.follow_working().await?;
                self.write_range_once(offset, data).await
            }
            other => other,
        }
    }

    async fn write_range_once(&self, offset: u64, data: Bytes) -> SheepResult<()> {
        let mut pos = 0usize;
        for Chunk { idx, inner, len } in self.chunks(offset, data.len() as u64)? {
            let n = len as usize;
            self.write_chunk(idx, inner, data.slice(pos..pos + n))
                .await?;
            pos += n;
        }
        Ok(())
    }

    /// Zeroes a range: whole objects this VDI owns are freed (the index entry cleared, the
    /// object removed); partial ranges of allocated objects are written with zeros.
    async fn zero_range(&self, offset: u64, len: u64) -> SheepResult<()> {
        self.follow_working().await?;
        self.ensure_locked().await?;
        for Chunk { idx, inner, len } in self.chunks(offset, len)? {
            let owner = self.owner(idx);
            if owner == 0 {
                continue;
            }
            let vid = self.vid();
            if inner == 0 && u64::from(len) == self.obj_size && owner == vid.get() {
                let _alloc = self.alloc.lock().await;
                let zero = Bytes::from_static(&[0; 4]);
                crate::volume::write_inode_index(
                    &self.sheep,
                    vid.inode_oid(),
                    data_index_offset(idx),
                    zero,
                    self.copies(vid.inode_oid()),
                )
                .await?;
                self.set_owner(idx, 0);
                continue;
            }
            let zeros = Bytes::from(vec![0u8; len as usize]);
            self.write_chunk(idx, inner, zeros).await?;
        }
        Ok(())
    }

    async fn flush_vdi(&self) -> SheepResult<()> {
        crate::writeback::flush_vdi(&self.sheep, self.vid()).await
    }
}

impl BlockDev for VdiDev {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes, BlockError>> {
        Box::pin(async move { self.read_range(offset, len).await.map_err(block_err) })
    }

    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(async move {
            self.write_range(offset, data).await.map_err(block_err)?;
            if fua {
                self.flush_vdi().await.map_err(block_err)?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(async move { self.flush_vdi().await.map_err(block_err) })
    }

    fn trim(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(async move {
            self.zero_range(offset, u64::from(len))
                .await
                .map_err(block_err)
        })
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        _no_hole: bool,
    ) -> BoxFuture<'_, Result<(), BlockError>> {
        // Unallocated ranges already read as zeros; NO_HOLE only forbids punching holes,
        // which a freed object is not from the client's point of view (it reads zeros).
        Box::pin(async move {
            self.zero_range(offset, u64::from(len))
                .await
                .map_err(block_err)
        })
    }
}

/// One connection's handle on an export: counts the connections, so the export's lock is
/// released when the last one closes.
#[derive(Debug)]
struct ExportConn(Arc<VdiDev>);

impl ExportConn {
    fn new(dev: Arc<VdiDev>) -> Self {
        dev.conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ExportConn(dev)
    }
}

impl Drop for ExportConn {
    fn drop(&mut self) {
        let left = self
            .0
            .conns
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if left == 1
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let dev = self.0.clone();
            rt.spawn(async move { dev.release().await });
        }
    }
}

impl BlockDev for ExportConn {
    fn size(&self) -> u64 {
        self.0.size()
    }

    fn read_only(&self) -> bool {
        self.0.read_only()
    }

    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes, BlockError>> {
        Box::pin(async move {
            let r = measured(&self.0.sheep.drain, "read", self.0.read(offset, len)).await;
            if let Ok(data) = &r {
                crate::metrics::read_bytes(Protocol::Nbd, data.len());
            }
            r
        })
    }

    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, Result<(), BlockError>> {
        let n = data.len();
        Box::pin(async move {
            let r = measured(
                &self.0.sheep.drain,
                "write",
                self.0.write(offset, data, fua),
            )
            .await;
            if r.is_ok() {
                crate::metrics::written_bytes(Protocol::Nbd, n);
            }
            r
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(measured(&self.0.sheep.drain, "flush", self.0.flush()))
    }

    fn trim(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(measured(
            &self.0.sheep.drain,
            "trim",
            self.0.trim(offset, len),
        ))
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        no_hole: bool,
    ) -> BoxFuture<'_, Result<(), BlockError>> {
        Box::pin(measured(
            &self.0.sheep.drain,
            "write_zeroes",
            self.0.write_zeroes(offset, len, no_hole),
        ))
    }
}

/// Runs one NBD command, counted as client work in flight (refused once the node stops,
/// see `drain`), and records it (`metrics::request`).
async fn measured<T>(
    drain: &crate::drain::Drain,
    op: &'static str,
    f: BoxFuture<'_, Result<T, BlockError>>,
) -> Result<T, BlockError> {
    let Some(_inflight) = drain.enter() else {
        return Err(block_err(SdResult::Shutdown.into()));
    };
    let started = std::time::Instant::now();
    let r = f.await;
    crate::metrics::request(Protocol::Nbd, op, started, r.is_ok());
    r
}

/// The VDIs of the cluster, as NBD exports.
#[derive(Debug)]
pub struct VdiExports {
    sheep: Arc<Sheep>,
    /// One device per export, shared by every connection to it (see the module docs).
    open: Mutex<HashMap<ExportKey, Arc<VdiDev>>>,
}

/// What an export name denotes: a working VDI follows its name across snapshots; a
/// snapshot is one fixed vid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ExportKey {
    Working(Vec<u8>),
    Snapshot(Vid),
}

impl VdiExports {
    /// The exports served by `sheep`.
    pub fn new(sheep: Arc<Sheep>) -> Self {
        VdiExports {
            sheep,
            open: Mutex::new(HashMap::new()),
        }
    }

    async fn resolve(&self, name: &str) -> Result<Arc<VdiDev>, ExportError> {
        let (vdi, tag, snapid) = match name.split_once('@') {
            Some((n, s)) => match s.parse::<u32>() {
                Ok(id) if id > 0 => (n, "", id),
                _ => (n, s, 0),
            },
            None => (name, "", 0),
        };
        if vdi.is_empty() {
            return Err(ExportError::NotFound);
        }
        let vid = match self
            .sheep
            .vdis()
            .lookup(vdi.as_bytes(), tag.as_bytes(), snapid)
        {
            Ok(f) => f.vid,
            Err(_) => return Err(ExportError::NotFound),
        };
        let key = if tag.is_empty() && snapid == 0 {
            ExportKey::Working(vdi.as_bytes().to_vec())
        } else {
            ExportKey::Snapshot(vid)
        };
        let cached = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(d) = cached {
            // A working VDI may have moved (snapshot, rollback) since the device opened.
            d.retarget(vid)
                .await
                .map_err(|e| ExportError::Unavailable(Box::new(e)))?;
            return Ok(d);
        }
        let dev = VdiDev::open(self.sheep.clone(), vid)
            .await
            .map_err(|e| ExportError::Unavailable(Box::new(e)))?;
        let dev = Arc::new(dev);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        Ok(open.entry(key).or_insert(dev).clone())
    }
}

impl Exports for VdiExports {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn BlockDev>, ExportError>> {
        Box::pin(async move {
            self.resolve(name)
                .await
                .map(|d| Arc::new(ExportConn::new(d)) as Arc<dyn BlockDev>)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExportError>> {
        Box::pin(async move { Ok(self.sheep.vdis().working_names()) })
    }
}
