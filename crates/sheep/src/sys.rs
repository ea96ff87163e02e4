//! The node's shared state (cluster status, epoch history, placement, VDI table, store,
//! peers) and start-up: load what `DIR` holds, join the cluster, wait until our own join
//! has been applied.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sd_cluster::log::Saved;
use sd_cluster::placement::Ring;
use sd_cluster::{ClusterDriver, EpochEntry, VdiTable};
use sd_proto::cluster::{EpochMembers, NodeStatus, SD_FORMAT_VERSION, SheepdogConfig};
use sd_proto::node::{NodeId, SdNode};
use sd_proto::{Epoch, Oid, Vid};
use sd_store::{Store, StoreConfig, meta};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::cluster::Pending;
use crate::driver::Driver;
use crate::peer::PeerPool;
use crate::recovery::Recovery;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store or a metadata file could not be read or written.
    #[error(transparent)]
    Store(#[from] sd_store::StoreError),
    /// A metadata file is corrupt.
    #[error("corrupt {what} in {path}")]
    Corrupt {
        /// Which file.
        what: &'static str,
        /// Where.
        path: String,
    },
    /// The store was formatted by an incompatible version.
    #[error("store format version {found:#x}, expected {expected:#x}")]
    Version {
        /// Found.
        found: u16,
        /// Expected.
        expected: u16,
    },
    /// The metrics endpoint (`--metrics`) could not be started.
    #[error("metrics endpoint: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    /// Membership failed.
    #[error(transparent)]
    Cluster(#[from] sd_cluster::ClusterError),
    /// The start-up task panicked.
    #[error("start-up task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The daemon was stopped before it joined.
    #[error("stopped before joining the cluster")]
    Cancelled,
}

/// Cluster-wide state of this node. Read and replaced under a short lock, never held
/// across an await.
#[derive(Debug, Clone)]
pub struct SysState {
    /// Running, waiting, shutting down or killed.
    pub status: NodeStatus,
    /// Current epoch (0 before format).
    pub epoch: Epoch,
    /// The cluster's persistent configuration (ctime 0 = not formatted).
    pub config: SheepdogConfig,
    /// Current members, sorted.
    pub nodes: Vec<SdNode>,
    /// Epoch history, oldest first.
    pub epochs: Vec<EpochEntry>,
    /// Placement of the current epoch.
    pub ring: Arc<Ring>,
    /// The last epoch every member finished recovering (0: none since the format).
    pub stable: Epoch,
}

impl SysState {
    /// The cluster default copies/policy/shift.
    pub fn defaults(&self) -> (u8, u8, u8) {
        (
            self.config.copies,
            self.config.copy_policy,
            self.config.block_size_shift,
        )
    }

    /// The ring of epoch `e`, if this node knows its members.
    pub fn ring_at(&self, e: Epoch) -> Option<Ring> {
        self.epochs
            .iter()
            .find(|h| h.epoch == e)
            .map(|h| Ring::new(&h.members))
    }
}

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
    pub pending: Pending,
    /// The current epoch, for waiters.
    pub epoch_tx: watch::Sender<Epoch>,
    /// Bumped whenever the VDI table changes, for waiters.
    pub vdi_version: watch::Sender<u64>,
    /// Connections to the other sheep.
    pub peers: PeerPool,
    /// Connections to the other sheep for leaf requests (`server::Class::Leaf`: recovery
    /// reads, object lists, peer flushes), apart from `peers` so that a peer's
    /// per-connection limits never queue them behind peer requests waiting on them.
    pub leaf_peers: PeerPool,
    /// Object recovery.
    pub recovery: Recovery,
    /// Writeback bookkeeping.
    pub writeback: crate::writeback::Writeback,
    /// Client work in flight, refused once the node stops (`drain`).
    pub drain: crate::drain::Drain,
    /// This node's own `Arc`, for work it spawns.
    this: std::sync::OnceLock<std::sync::Weak<Sheep>>,
    /// Serialises inode index updates that drop object references.
    pub index_ops: tokio::sync::Mutex<()>,
    /// The last lock holder id this node handed out (see [`Sheep::new_lock_holder`]).
    lock_holders: std::sync::atomic::AtomicU64,
    /// Serialises this gateway's GET_VDI_ATTR probes (`ops::attr`).
    pub attr_ops: tokio::sync::Mutex<()>,
    /// Set by the node that asked for SHUTDOWN: it stops after answering its client.
    pub shutdown_requested: AtomicBool,
    /// Cancelled to stop the daemon.
    pub cancel: CancellationToken,
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sheepdog timestamp (`sec << 32 | nsec`) now.
pub fn now_sd_time() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    sd_proto::cluster::sd_time(d.as_secs(), d.subsec_nanos())
}

/// Name of the epoch file of `e` under the base dir.
pub fn epoch_file(e: Epoch) -> String {
    format!("epoch/{:08}", e.get())
}

/// What start-up reads from `DIR`.
struct Loaded {
    store: Store,
    config: SheepdogConfig,
    epochs: Vec<EpochEntry>,
}

impl Sheep {
    /// Opens the store and metadata in `cfg.dir`, joins the cluster, and returns once our
    /// own join has been applied.
    pub async fn start(
        cfg: Config,
        addr: std::net::SocketAddr,
        cancel: CancellationToken,
    ) -> Result<Arc<Sheep>, StartError> {
        let nid = NodeId::from_socket(match cfg.advertise {
            Some(ip) => std::net::SocketAddr::new(ip, addr.port()),
            None => addr,
        });
        let me = SdNode {
            nid,
            io_addr: [0; 16],
            io_port: 0,
            nr_vnodes: cfg.vnodes,
            zone: cfg.zone.unwrap_or_else(|| nid.default_zone()),
            space: 0,
        };
        let dir = cfg.dir.clone();
        let sync = cfg.sync;
        let fixed_vnodes = cfg.fixed_vnodes;
        let loaded = tokio::task::spawn_blocking(move || {
            let store = Store::open(StoreConfig {
                dir: dir.clone(),
                sync,
            })?;
            let mut config = load_config(&dir)?;
            if config.ctime == 0 && !fixed_vnodes {
                // An unformatted node reports its vnode strategy; `dog cluster format`
                // checks that every node agrees with the one it asks for.
                config.flags |= sd_proto::cluster::flags::AUTO_VNODES;
            }
            let epochs = load_epochs(&dir)?;
            Ok::<_, StartError>(Loaded {
                store,
                config,
                epochs,
            })
        })
        .await
        .map_err(StartError::Task)??;

        let saved = Saved {
            config: if loaded.config.ctime == 0 {
                SheepdogConfig::default()
            } else {
                loaded.config.clone()
            },
            epoch: loaded.epochs.last().map_or(Epoch(0), |e| e.epoch),
            members: loaded
                .epochs
                .last()
                .map(|e| e.members.clone())
                .unwrap_or_default(),
        };
        let incarnation = now_sd_time() ^ (u64::from(std::process::id()) << 16);
        let (driver, records) =
            crate::driver::start(&cfg.cluster, me, incarnation, saved, cancel.clone()).await?;
        let (epoch_tx, _) = watch::channel(Epoch(0));
        let sys = SysState {
            status: NodeStatus::Wait,
            epoch: Epoch(0),
            config: loaded.config,
            nodes: Vec::new(),
            epochs: loaded.epochs,
            ring: Arc::new(Ring::new(&[])),
            stable: Epoch(0),
        };
        let sheep = Arc::new(Sheep {
            me,
            incarnation,
            store: Arc::new(loaded.store),
            cfg,
            sys: RwLock::new(sys),
            vdis: RwLock::new(VdiTable::default()),
            driver,
            pending: Pending::default(),
            epoch_tx,
            vdi_version: watch::channel(0).0,
            peers: PeerPool::default(),
            leaf_peers: PeerPool::default(),
            recovery: Recovery::default(),
            writeback: crate::writeback::Writeback::default(),
            drain: crate::drain::Drain::default(),
            this: std::sync::OnceLock::new(),
            index_ops: tokio::sync::Mutex::new(()),
            lock_holders: std::sync::atomic::AtomicU64::new(0),
            attr_ops: tokio::sync::Mutex::new(()),
            shutdown_requested: AtomicBool::new(false),
            cancel,
        });
        let _ = sheep.this.set(Arc::downgrade(&sheep));
        let (live_tx, mut live_rx) = watch::channel(false);
        tokio::spawn(crate::cluster::run(sheep.clone(), records, live_tx));
        tokio::spawn(crate::recovery::run(sheep.clone()));
        tokio::spawn(crate::writeback::run_flusher(sheep.clone()));
        tokio::select! {
            r = live_rx.wait_for(|l| *l) => { r.map_err(|_| StartError::Cancelled)?; }
            () = sheep.cancel.cancelled() => return Err(StartError::Cancelled),
        }
        {
            let sys = sheep.sys();
            tracing::info!(epoch = %sys.epoch, status = ?sys.status, nodes = sys.nodes.len(), "joined the cluster");
        }
        Ok(sheep)
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

    /// Redundancy of `oid`: `requested` if non-zero, else its VDI's, else the cluster's.
    pub fn copies_of(&self, oid: Oid, requested: u8) -> usize {
        let c = if requested != 0 {
            requested
        } else {
            self.vdis()
                .get(oid.vid())
                .map(|e| e.nr_copies)
                .filter(|c| *c != 0)
                .unwrap_or_else(|| self.sys().config.copies)
        };
        usize::from(c.max(1))
    }
}

pub(crate) fn load_config(dir: &Path) -> Result<SheepdogConfig, StartError> {
    match meta::read_file(dir, "config")? {
        None => Ok(SheepdogConfig {
            version: SD_FORMAT_VERSION,
            ..SheepdogConfig::default()
        }),
        Some(bytes) => {
            let c = SheepdogConfig::decode(&bytes).map_err(|_| StartError::Corrupt {
                what: "config",
                path: dir.join("config").display().to_string(),
            })?;
            if c.version != SD_FORMAT_VERSION {
                return Err(StartError::Version {
                    found: c.version,
                    expected: SD_FORMAT_VERSION,
                });
            }
            Ok(c)
        }
    }
}

/// Persists the cluster config.
pub fn write_config(dir: &Path, c: &SheepdogConfig) -> Result<(), sd_store::StoreError> {
    meta::write_file_atomic(dir, "config", &c.encode())
}

/// Persists one epoch file: the members followed by the 8-byte start time (the layout of
/// [`EpochMembers`], the GET_EPOCH answer).
pub fn write_epoch(dir: &Path, e: &EpochEntry) -> Result<(), sd_store::StoreError> {
    let buf = EpochMembers {
        nodes: e.members.clone(),
        time: e.time,
    }
    .encode();
    meta::write_file_atomic(dir, &epoch_file(e.epoch), &buf)
}

/// Removes every epoch file (cluster format).
pub fn remove_epochs(dir: &Path) -> std::io::Result<()> {
    let d = dir.join("epoch");
    match std::fs::read_dir(&d) {
        Ok(rd) => {
            for ent in rd {
                std::fs::remove_file(ent?.path())?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn load_epochs(dir: &Path) -> Result<Vec<EpochEntry>, StartError> {
    let d = dir.join("epoch");
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(_) => return Ok(out),
    };
    let mut numbers: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name().to_str().and_then(|n| {
                (n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok())
                    .flatten()
            })
        })
        .collect();
    numbers.sort_unstable();
    for n in numbers {
        let epoch = Epoch(n);
        let corrupt = || StartError::Corrupt {
            what: "epoch file",
            path: d.join(format!("{n:08}")).display().to_string(),
        };
        let bytes = meta::read_file(dir, &epoch_file(epoch))?.ok_or_else(corrupt)?;
        let EpochMembers { nodes, time } = EpochMembers::decode(&bytes).map_err(|_| corrupt())?;
        out.push(EpochEntry {
            epoch,
            time,
            members: nodes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// `epoch/%08u` (spec §11.4) of epoch 3 with one member, 127.0.0.1:7000 (128 vnodes,
    /// 1 GiB), begun at 3 000 000 000: the sd_node, then the u64 time.
    fn golden() -> Vec<u8> {
        let mut g = vec![0u8; 88];
        g[36..40].copy_from_slice(&[127, 0, 0, 1]); // IPv4 in the last 4 address bytes
        g[40..42].copy_from_slice(&[0x58, 0x1b]); // port 7000
        g[64..66].copy_from_slice(&[0x80, 0x00]); // nr_vnodes 128
        g[68..72].copy_from_slice(&[0x7f, 0x00, 0x00, 0x01]); // zone
        g[72..80].copy_from_slice(&[0, 0, 0, 0x40, 0, 0, 0, 0]); // space 1 GiB
        g[80..88].copy_from_slice(&[0x00, 0x5e, 0xd0, 0xb2, 0, 0, 0, 0]); // time
        g
    }

    fn entry() -> EpochEntry {
        let nid = NodeId::from_socket("127.0.0.1:7000".parse().unwrap());
        EpochEntry {
            epoch: Epoch(3),
            time: 3_000_000_000,
            members: vec![SdNode {
                nid,
                io_addr: [0; 16],
                io_port: 0,
                nr_vnodes: 128,
                zone: nid.default_zone(),
                space: 1 << 30,
            }],
        }
    }

    #[test]
    fn epoch_file_bytes_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        write_epoch(dir.path(), &entry()).unwrap();
        let bytes = std::fs::read(dir.path().join("epoch/00000003")).unwrap();
        assert_eq!(bytes, golden());
    }

    #[test]
    fn epoch_files_of_existing_stores_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("epoch")).unwrap();
        std::fs::write(dir.path().join("epoch/00000003"), golden()).unwrap();
        // No members (a file of the time alone) loads too.
        std::fs::write(dir.path().join("epoch/00000004"), 7u64.to_le_bytes()).unwrap();
        let loaded = load_epochs(dir.path()).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0], entry());
        assert_eq!((loaded[1].epoch, loaded[1].time), (Epoch(4), 7));
        assert!(loaded[1].members.is_empty());
    }

    #[test]
    fn cut_epoch_files_are_corrupt() {
        for len in [0, 7, 87, 89] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("epoch")).unwrap();
            let mut g = golden();
            g.resize(len, 0);
            std::fs::write(dir.path().join("epoch/00000003"), g).unwrap();
            assert!(
                matches!(
                    load_epochs(dir.path()),
                    Err(StartError::Corrupt {
                        what: "epoch file",
                        ..
                    })
                ),
                "{len} bytes"
            );
        }
    }
}
