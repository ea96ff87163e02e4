//! A running node: [`Sheep`] holds the handles every layer above shares (the store, the
//! cluster view, the VDI table, the peer pools, and the state of recovery, writeback and the
//! clean stop). Its fields are state types defined below this module; the logic that acts
//! on them lives in the layers above, which take `&Sheep`. Nothing here imports those
//! layers, so the hub cannot tie them into a loop.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sd_cluster::{Applied, ClusterDriver, ClusterMsg, VdiTable};
use sd_proto::node::SdNode;
use sd_proto::{Epoch, Oid, Vid};
use sd_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::drain::Drain;
use crate::driver::Driver;
use crate::error::SheepResult;
use crate::peer::PeerPool;
use crate::propose::Pending;
use crate::recovery::state::Recovery;
use crate::sys::SysState;
use crate::writeback::state::Writeback;

/// A running node: the state every request handler shares.
#[derive(Debug)]
pub struct Sheep {
    /// This node as the cluster sees it.
    pub me: SdNode,
    /// Unique to this run of the process (recognises our own join in the log).
    pub incarnation: u64,
    /// The object store.
    pub store: Arc<Store>,
    /// Configuration.
    pub cfg: Config,
    sys: RwLock<SysState>,
    vdis: RwLock<VdiTable>,
    /// The membership service.
    pub driver: Driver,
    /// Cluster operations waiting for their notification to be applied.
    pending: Pending,
    /// The current epoch, for waiters.
    epoch_tx: watch::Sender<Epoch>,
    /// Bumped whenever the VDI table changes, for waiters.
    vdi_version: watch::Sender<u64>,
    /// Connections to the other sheep.
    pub peers: PeerPool,
    /// Connections to the other sheep for leaf requests (`server::Class::Leaf`: recovery
    /// reads, object lists, peer flushes), apart from `peers` so that a peer's
    /// per-connection limits never queue them behind peer requests waiting on them.
    pub leaf_peers: PeerPool,
    /// Object recovery.
    pub recovery: Recovery,
    /// Writeback bookkeeping.
    pub writeback: Writeback,
    /// Objects a failed write fan-out may have left different (`fanout`).
    pub fanout: crate::fanout::state::Fanout,
    /// Erasure-coded objects this gateway is working on (`ec`).
    pub ec: crate::ec::state::EcState,
    /// Client work in flight, refused once the node stops (`drain`).
    pub drain: Drain,
    /// This node's own `Arc`, for work it spawns.
    this: std::sync::OnceLock<std::sync::Weak<Sheep>>,
    /// Serialises inode index updates that drop object references.
    index_ops: tokio::sync::Mutex<()>,
    /// The last lock holder id this node handed out (see [`Sheep::new_lock_holder`]).
    lock_holders: std::sync::atomic::AtomicU64,
    /// Serialises this gateway's GET_VDI_ATTR probes (`ops::attr`).
    attr_ops: tokio::sync::Mutex<()>,
    /// Set by the node that asked for SHUTDOWN: it stops after answering its client.
    shutdown_requested: AtomicBool,
    /// Cancelled to stop the daemon.
    pub cancel: CancellationToken,
}

impl Sheep {
    /// A node in `sys`'s state, before it follows the cluster (the start-up in
    /// `lifecycle` then spawns the tasks that do).
    pub fn new(
        me: SdNode,
        incarnation: u64,
        store: Store,
        cfg: Config,
        sys: SysState,
        driver: Driver,
        cancel: CancellationToken,
    ) -> Arc<Sheep> {
        let sheep = Arc::new(Sheep {
            me,
            incarnation,
            store: Arc::new(store),
            cfg,
            sys: RwLock::new(sys),
            vdis: RwLock::new(VdiTable::default()),
            driver,
            pending: Pending::default(),
            epoch_tx: watch::channel(Epoch(0)).0,
            vdi_version: watch::channel(0).0,
            peers: PeerPool::with_hello(&me),
            leaf_peers: PeerPool::default(),
            recovery: Recovery::default(),
            writeback: Writeback::default(),
            fanout: crate::fanout::state::Fanout::default(),
            ec: crate::ec::state::EcState::default(),
            drain: Drain::default(),
            this: std::sync::OnceLock::new(),
            index_ops: tokio::sync::Mutex::new(()),
            lock_holders: std::sync::atomic::AtomicU64::new(0),
            attr_ops: tokio::sync::Mutex::new(()),
            shutdown_requested: AtomicBool::new(false),
            cancel,
        });
        let _ = sheep.this.set(Arc::downgrade(&sheep));
        sheep
    }

    /// Appends a VDI operation built by `make(token)` to the cluster log and waits until
    /// this node applies it (see [`Pending::submit`]).
    pub async fn submit(&self, make: impl FnOnce(u64) -> ClusterMsg) -> SheepResult<Applied> {
        self.pending
            .submit(&self.driver, self.me.nid, &self.cancel, make)
            .await
    }

    /// Waits until this node has applied every record appended before now.
    pub async fn barrier(&self) -> SheepResult<()> {
        self.submit(|token| ClusterMsg::Barrier { token })
            .await
            .map(|_| ())
    }

    /// The current epoch, to wait for it to change.
    pub fn watch_epoch(&self) -> watch::Receiver<Epoch> {
        self.epoch_tx.subscribe()
    }

    /// The membership task moved to epoch `e`.
    pub fn publish_epoch(&self, e: Epoch) {
        self.epoch_tx.send_replace(e);
    }

    /// Changes whenever the VDI table changes.
    pub fn watch_vdis(&self) -> watch::Receiver<u64> {
        self.vdi_version.subscribe()
    }

    /// The membership task changed the VDI table.
    pub fn vdis_changed(&self) {
        self.vdi_version.send_modify(|v| *v += 1);
    }

    /// The record of our proposal `token` was applied with outcome `r`.
    pub fn complete_proposal(&self, token: u64, r: Result<Applied, sd_proto::SdResult>) {
        self.pending.complete(token, r);
    }

    /// Held while an inode index update that drops object references runs: one at a time
    /// on this node, so reclaim never races an update's before/after reads.
    pub async fn index_update(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.index_ops.lock().await
    }

    /// Held while this gateway probes for a VDI attribute (GET_VDI_ATTR): one at a time.
    pub async fn attr_probe(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.attr_ops.lock().await
    }

    /// This node asked the cluster to shut down: it stops after answering its client,
    /// not when it reads the shutdown.
    pub fn request_shutdown(&self) {
        self.shutdown_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this node asked for the shutdown.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A fresh id for a writer taking a VDI lock through this node (never 0, which
    /// means "any holder").
    pub fn new_lock_holder(&self) -> u64 {
        self.lock_holders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1)
            .max(1)
    }

    /// This node's `Arc` (for spawning work from a `&Sheep`); `None` once it is gone.
    pub fn self_ref(&self) -> Option<Arc<Sheep>> {
        self.this.get().and_then(std::sync::Weak::upgrade)
    }

    /// True once the membership driver can no longer vouch that our view of the cluster
    /// is current ([`ClusterDriver::current_until`] passed): the node then acknowledges no
    /// write and serves no read, as a client gateway or as a peer, until it is again.
    pub fn fenced(&self) -> bool {
        self.driver
            .current_until()
            .is_some_and(|t| std::time::Instant::now() >= t)
    }

    /// Resolves once [`Sheep::fenced`] holds (never with a driver that cannot fence). Sleeps
    /// until the current fence instant, which moves forward while the driver renews it.
    pub async fn until_fenced(&self) {
        loop {
            let Some(t) = self.driver.current_until() else {
                return std::future::pending().await;
            };
            if std::time::Instant::now() >= t {
                return;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
        }
    }

    /// A snapshot of the cluster state.
    pub fn sys(&self) -> RwLockReadGuard<'_, SysState> {
        self.sys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutable cluster state (hold briefly; never across an await).
    pub fn sys_mut(&self) -> RwLockWriteGuard<'_, SysState> {
        self.sys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The VDI table.
    pub fn vdis(&self) -> RwLockReadGuard<'_, VdiTable> {
        self.vdis.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutable VDI table (hold briefly; never across an await).
    pub fn vdis_mut(&self) -> RwLockWriteGuard<'_, VdiTable> {
        self.vdis.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The block size shift of `vid`'s objects, if the VDI is known.
    pub fn vdi_shift(&self, vid: Vid) -> Option<u8> {
        self.vdis().get(vid).map(|e| e.block_size_shift)
    }

    /// The size of object `oid`: from its VDI's block size, else the cluster's.
    pub fn object_size(&self, oid: Oid) -> u64 {
        let shift = self
            .vdi_shift(oid.vid())
            .unwrap_or_else(|| self.sys().config.block_size_shift);
        oid.object_size(shift)
    }

    /// The current members other than this node.
    pub fn other_members(&self) -> Vec<sd_proto::node::NodeId> {
        self.sys()
            .nodes
            .iter()
            .map(|n| n.nid)
            .filter(|n| *n != self.me.nid)
            .collect()
    }

    /// Redundancy of `oid`: its VDI's, as the VDI table says now (a VDI's copies change
    /// in log order, `ClusterMsg::AlterVdiCopy`, while clients keep the count they read
    /// from the inode); for a VDI this node does not know (yet), `requested` if non-zero,
    /// else the cluster's.
    pub fn copies_of(&self, oid: Oid, requested: u8) -> usize {
        if let Some(c) = self.vdi_copies(oid) {
            return c;
        }
        let c = if requested != 0 {
            requested
        } else {
            self.sys().config.copies
        };
        usize::from(c.max(1))
    }

    /// Redundancy of `oid` by its VDI's entry in the VDI table; `None` if the table does
    /// not know the VDI.
    pub fn vdi_copies(&self, oid: Oid) -> Option<usize> {
        self.vdis()
            .get(oid.vid())
            .map(|e| e.nr_copies)
            .filter(|c| *c != 0)
            .map(usize::from)
    }
}
