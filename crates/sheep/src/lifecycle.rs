//! A node's life: [`start`] opens what `DIR` holds, joins the cluster and spawns the
//! node's tasks (membership, recovery, background flush); [`stop`] ends it cleanly.
//!
//! [`stop`], a clean stop (SIGTERM): stop taking client work, let what is in flight finish, make
//! writeback data durable, leave the cluster, then stop.
//!
//! 1. Client requests (Sheepdog gateway and VDI operations, NBD commands) that arrive from
//!    now on are refused (SD_RES_SHUTDOWN; NBD: an I/O error). Requests from other sheep are
//!    still served: until our departure is in the log, they may still read and write our
//!    copies.
//! 2. The client requests in flight are waited for, up to [`INFLIGHT_WAIT`].
//! 3. Writeback: every VDI this gateway wrote since its last flush is flushed (FLUSH_PEER to
//!    the nodes it wrote), and everything dirty in the local store is synced, so nothing a
//!    client was told is written depends on this node's page cache.
//! 4. Our `Leave` is appended to the membership log, so the others bump the epoch at once
//!    instead of waiting for failure detection; we wait (up to [`LEAVE_WAIT`]) until it
//!    is applied here.
//! 5. The daemon is cancelled.

use std::sync::Arc;
use std::time::Duration;

use sd_cluster::log::{LogEntry, Saved};
use sd_cluster::placement::Ring;
use sd_cluster::{ClusterDriver, EpochEntry};
use sd_proto::Epoch;
use sd_proto::cluster::{NodeStatus, SheepdogConfig};
use sd_proto::node::{NodeId, SdNode};
use sd_store::{Store, StoreConfig, SyncMode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::node::Sheep;
use crate::sys::{StartError, SysState, load_config, load_epochs, now_sd_time, take_clean_mark};

/// How long in-flight client requests are waited for.
pub const INFLIGHT_WAIT: Duration = Duration::from_secs(10);
/// How long our leave may take to be applied.
pub const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// What start-up reads from `DIR`.
struct Loaded {
    store: Store,
    /// The previous run stopped cleanly (or there was none).
    clean: bool,
    /// The store's durable 4 KiB write latency at start (`None`: not measurable).
    write_latency: Option<std::time::Duration>,
    config: SheepdogConfig,
    epochs: Vec<EpochEntry>,
}

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
        // Unclean only matters if there are copies to distrust.
        let clean = take_clean_mark(&dir)? || store.list()?.is_empty();
        let write_latency = store
            .durable_write_latency()
            .inspect_err(|e| tracing::warn!(error = %e, "cannot measure the disk's write latency"))
            .ok();
        Ok::<_, StartError>(Loaded {
            store,
            clean,
            write_latency,
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
    let sys = SysState {
        status: NodeStatus::Wait,
        epoch: Epoch(0),
        config: loaded.config,
        nodes: Vec::new(),
        epochs: loaded.epochs,
        ring: Arc::new(Ring::new(&[])),
        stable: Epoch(0),
    };
    let clean = loaded.clean;
    let write_latency = loaded.write_latency;
    let sheep = Sheep::new(me, incarnation, loaded.store, cfg, sys, driver, cancel);
    if !clean {
        tracing::warn!(
            "the last run did not stop cleanly: local copies are suspect until compared with the other replicas"
        );
        sheep.recovery.unclean_start();
    }
    if let Some(took) = write_latency {
        tracing::debug!(?took, "durable 4 KiB write latency");
        sheep.recovery.disk_write_latency(took);
    }
    let (live_tx, mut live_rx) = watch::channel(false);
    tokio::spawn(crate::follower::run(sheep.clone(), records, live_tx));
    tokio::spawn(crate::recovery::run(sheep.clone()));
    tokio::spawn(crate::writeback::run_flusher(sheep.clone()));
    tokio::spawn(crate::scrub::run(sheep.clone()));
    tokio::spawn(crate::fanout::run(sheep.clone()));
    tokio::spawn(crate::ec::run_checkpointer(sheep.clone()));
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

/// Stops `sheep` cleanly (see the module docs), then cancels it.
pub async fn stop(sheep: &Arc<Sheep>) {
    let d = &sheep.drain;
    d.begin();
    tracing::info!("stopping: refusing new client requests");
    let left = d.wait_idle(INFLIGHT_WAIT).await;
    if left > 0 {
        tracing::warn!(left, "stopping with client requests still in flight");
    }
    let mut durable = true;
    if sheep.store.sync_mode() == SyncMode::Writeback {
        let vids = sheep.writeback.written_vids();
        for vid in &vids {
            if let Err(e) = crate::writeback::flush_vdi(sheep, *vid).await {
                tracing::error!(%vid, error = %e, "flush at stop failed");
            }
        }
        durable = crate::writeback::sync_local(sheep).await;
        tracing::info!(
            vdis = vids.len(),
            dirty = sheep.store.dirty_bytes(),
            "writeback data flushed"
        );
    }
    let me = sheep.me.nid;
    let mut rx = sheep.watch_epoch();
    match sheep.driver.append(LogEntry::Leave { nid: me }).await {
        Ok(()) => {
            let gone = |_: &sd_proto::Epoch| !sheep.sys().nodes.iter().any(|n| n.nid == me);
            // A driver that stops once it reads our leave (ZooKeeper) ends the node first.
            let left = async {
                tokio::select! {
                    _ = rx.wait_for(gone) => {}
                    () = sheep.cancel.cancelled() => {}
                }
            };
            if tokio::time::timeout(LEAVE_WAIT, left).await.is_err() {
                tracing::warn!("our leave was not applied in time; stopping anyway");
            } else {
                tracing::info!("left the cluster");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not announce our leave"),
    }
    if durable {
        crate::recovery::mark_clean_stop(sheep).await;
    }
    sheep.cancel.cancel();
}
