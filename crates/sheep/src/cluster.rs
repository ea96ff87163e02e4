//! The membership owner task: folds the ordered log (`sd_cluster::Membership`), keeps
//! `SysState` and the VDI table in step with it, persists epochs, applies format and
//! shutdown, and answers the cluster operations this node submitted.
//!
//! Records before our own join are history: they are folded (so we learn members, epochs
//! and VDIs exactly as everyone else did) but trigger no side effects on our store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sd_cluster::log::{LogEntry, Record};
use sd_cluster::placement::Ring;
use sd_cluster::{ClusterDriver, Membership, Outcome, Status};
use sd_proto::cluster::{NodeStatus, SheepdogConfig};
use sd_proto::inode::SD_MAX_VDI_LEN;
use sd_proto::{SdResult, Vid};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{SheepError, SheepResult};
use crate::sys::{Sheep, remove_epochs, write_config, write_epoch};
use crate::vdi::{VdiEntry, VdiTable};

/// A VDI operation decided in log order on every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMsg {
    /// Create a VDI: every member allocates the same vid from its identical table.
    NewVdi {
        /// Answer token of the submitter.
        token: u64,
        /// Name.
        name: Vec<u8>,
        /// Size in bytes.
        size: u64,
        /// Redundancy.
        copies: u8,
        /// log2 of the object size.
        shift: u8,
    },
    /// Mark a VDI deleted (its objects were freed by the submitter).
    DelVdi {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
    },
    /// No effect: once applied, the submitter has seen every record appended before it.
    Barrier {
        /// Answer token of the submitter.
        token: u64,
    },
}

impl ClusterMsg {
    fn token(&self) -> u64 {
        match self {
            ClusterMsg::NewVdi { token, .. }
            | ClusterMsg::DelVdi { token, .. }
            | ClusterMsg::Barrier { token } => *token,
        }
    }

    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ClusterMsg::NewVdi {
                token,
                name,
                size,
                copies,
                shift,
            } => {
                out.push(1);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.push(*copies);
                out.push(*shift);
                out.extend_from_slice(
                    name.get(..name.len().min(SD_MAX_VDI_LEN))
                        .unwrap_or_default(),
                );
            }
            ClusterMsg::DelVdi { token, vid } => {
                out.push(2);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&vid.get().to_le_bytes());
            }
            ClusterMsg::Barrier { token } => {
                out.push(3);
                out.extend_from_slice(&token.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a message (`None` if malformed).
    pub fn decode(b: &[u8]) -> Option<ClusterMsg> {
        let (&kind, rest) = b.split_first()?;
        let token = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let rest = rest.get(8..)?;
        match kind {
            1 => {
                let size = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
                let copies = *rest.get(8)?;
                let shift = *rest.get(9)?;
                let name = rest.get(10..)?.to_vec();
                (!name.is_empty() && name.len() < SD_MAX_VDI_LEN).then_some(ClusterMsg::NewVdi {
                    token,
                    name,
                    size,
                    copies,
                    shift,
                })
            }
            2 => {
                let vid = Vid::new(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?))?;
                Some(ClusterMsg::DelVdi { token, vid })
            }
            3 => Some(ClusterMsg::Barrier { token }),
            _ => None,
        }
    }
}

/// What applying a [`ClusterMsg`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The VDI created or deleted.
    pub vid: Vid,
    /// When the record was appended (Unix seconds).
    pub time: u64,
}

/// Cluster operations of this node waiting for their record.
#[derive(Debug, Default)]
pub struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Applied, SdResult>>>>,
}

impl Pending {
    fn register(&self) -> (u64, oneshot::Receiver<Result<Applied, SdResult>>) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token, tx);
        (token, rx)
    }

    fn complete(&self, token: u64, r: Result<Applied, SdResult>) {
        let tx = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        if let Some(tx) = tx {
            let _ = tx.send(r);
        }
    }
}

/// Appends a VDI operation built by `make(token)` and waits until every member applies it
/// (we observe it in log order like everyone else).
pub async fn submit(sheep: &Sheep, make: impl FnOnce(u64) -> ClusterMsg) -> SheepResult<Applied> {
    let (token, rx) = sheep.pending.register();
    let msg = make(token);
    sheep
        .driver
        .append(LogEntry::Notify {
            from: sheep.me.nid,
            msg: msg.encode(),
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cluster notification failed");
            SheepError::Result(SdResult::ClusterError)
        })?;
    match rx.await {
        Ok(r) => r.map_err(SheepError::Result),
        Err(_) => Err(SdResult::ClusterError.into()),
    }
}

/// Waits until this node has applied every record appended before now.
pub async fn barrier(sheep: &Sheep) -> SheepResult<()> {
    submit(sheep, |token| ClusterMsg::Barrier { token })
        .await
        .map(|_| ())
}

/// Applies a VDI operation to `table` exactly as every other member does.
fn apply_msg(table: &mut VdiTable, msg: &ClusterMsg, time: u64) -> Result<Applied, SdResult> {
    match msg {
        ClusterMsg::NewVdi {
            name,
            size,
            copies,
            shift,
            ..
        } => {
            let miss = match table.lookup(name, b"", 0) {
                Ok(_) => return Err(SdResult::VdiExist),
                Err(m) => m,
            };
            let vid = match (miss.result, miss.free) {
                (SdResult::NoVdi, Some(v)) => v,
                (SdResult::NoVdi | SdResult::FullVdi, _) => return Err(SdResult::FullVdi),
                (other, _) => return Err(other),
            };
            table.insert(
                vid,
                VdiEntry {
                    name: name.clone(),
                    tag: Vec::new(),
                    snap_id: miss.next_snap_id,
                    snapshot: false,
                    nr_copies: *copies,
                    copy_policy: 0,
                    block_size_shift: *shift,
                    vdi_size: *size,
                },
            );
            Ok(Applied { vid, time })
        }
        ClusterMsg::DelVdi { vid, .. } => {
            table.mark_deleted(*vid);
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Barrier { .. } => Ok(Applied {
            vid: Vid::default(),
            time,
        }),
    }
}

fn node_status(s: Status) -> NodeStatus {
    match s {
        Status::WaitFormat | Status::WaitJoin => NodeStatus::Wait,
        Status::Ok => NodeStatus::Ok,
        Status::Shutdown => NodeStatus::Shutdown,
    }
}

/// Copies the fold's view into `SysState`.
fn sync_sys(sheep: &Sheep, fold: &Membership) {
    let mut sys = sheep.sys_mut();
    sys.status = node_status(fold.status());
    sys.epoch = fold.epoch();
    sys.nodes = fold.members().to_vec();
    if fold.config().ctime != 0 {
        sys.config = fold.config().clone();
    }
    for h in fold.history() {
        match sys.epochs.iter_mut().find(|e| e.epoch == h.epoch) {
            Some(e) => *e = h.clone(),
            None => sys.epochs.push(h.clone()),
        }
    }
    sys.epochs.sort_by_key(|e| e.epoch);
    if sys.ring.nodes() != fold.members() {
        sys.ring = Arc::new(Ring::new(fold.members()));
    }
    drop(sys);
    sheep.epoch_tx.send_replace(fold.epoch());
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, sd_store::StoreError> + Send + 'static,
) -> Result<T, SheepError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Our store belongs to another format of the cluster (or to none): start empty.
async fn adopt_config(sheep: &Sheep, config: SheepdogConfig) -> SheepResult<()> {
    let store = sheep.store.clone();
    let dir = sheep.cfg.dir.clone();
    blocking(move || {
        store.purge()?;
        remove_epochs(&dir).map_err(|source| sd_store::StoreError::Io {
            op: "remove epoch log",
            path: dir.join("epoch"),
            source,
        })?;
        write_config(&dir, &config)
    })
    .await
}

async fn persist_epochs(sheep: &Sheep, fold: &Membership) -> SheepResult<()> {
    let dir = sheep.cfg.dir.clone();
    let history = fold.history().to_vec();
    blocking(move || {
        for e in &history {
            if !dir.join(crate::sys::epoch_file(e.epoch)).exists() {
                write_epoch(&dir, e)?;
            }
        }
        Ok(())
    })
    .await
}

/// The membership task: runs until the driver's stream ends or the node stops.
pub async fn run(
    sheep: Arc<Sheep>,
    mut records: mpsc::Receiver<Record>,
    live_tx: watch::Sender<bool>,
) {
    let mut fold = Membership::default();
    let mut live = false;
    loop {
        let rec = tokio::select! {
            () = sheep.cancel.cancelled() => return,
            r = records.recv() => match r {
                Some(r) => r,
                None => {
                    tracing::error!("cluster driver stopped; this node can no longer follow the cluster");
                    sheep.cancel.cancel();
                    return;
                }
            },
        };
        let was_formatted = fold.config().ctime != 0;
        let outcomes = fold.apply(&rec);
        if !was_formatted
            && fold.config().ctime != 0
            && !outcomes.iter().any(|o| matches!(o, Outcome::Formatted(_)))
        {
            // The cluster adopted the state a restarted node brought: VDIs created before the
            // log began are known from the inodes on disk.
            // FIXME(issue 4): merge the VDI bitmaps of every member, not only ours.
            let store = sheep.store.clone();
            match tokio::task::spawn_blocking(move || crate::vdi::load_local(&store)).await {
                Ok(Ok(t)) => *sheep.vdis_mut() = t,
                other => tracing::error!(?other, "loading local inodes failed"),
            }
        }
        if let Err(e) = apply_outcomes(&sheep, &fold, &rec, outcomes, live).await {
            tracing::error!(error = %e, "applying a cluster record failed; stopping");
            sheep.cancel.cancel();
            return;
        }
        let own_join = matches!(&rec.entry, LogEntry::Join { node, incarnation, .. }
            if node.nid == sheep.me.nid && *incarnation == sheep.incarnation);
        if !live && own_join {
            live = true;
            if let Err(e) = go_live(&sheep, &fold).await {
                tracing::error!(error = %e, "joining failed");
                sheep.cancel.cancel();
                return;
            }
        }
        if live {
            sync_sys(&sheep, &fold);
            let _ = live_tx.send(true);
        }
    }
}

/// Our join has been applied: reconcile our store with the cluster, persist the history.
async fn go_live(sheep: &Sheep, fold: &Membership) -> SheepResult<()> {
    let cluster = fold.config().clone();
    let mine =
        crate::sys::load_config(&sheep.cfg.dir).map_err(|_| SheepError::Result(SdResult::Eio))?;
    if cluster.ctime != 0 && cluster.ctime != mine.ctime {
        tracing::info!("store belongs to another format of the cluster: emptying it");
        adopt_config(sheep, cluster).await?;
        sheep.sys_mut().epochs.clear();
    }
    persist_epochs(sheep, fold).await?;
    // Our copies may have missed writes while we were away: none is served until checked.
    let store = sheep.store.clone();
    let local = blocking(move || store.list()).await?;
    sheep.recovery.distrust(local);
    sync_sys(sheep, fold);
    if fold.status() == Status::Ok {
        sheep.recovery.start_epoch(fold.epoch());
    }
    Ok(())
}

async fn apply_outcomes(
    sheep: &Arc<Sheep>,
    fold: &Membership,
    rec: &Record,
    outcomes: Vec<Outcome>,
    live: bool,
) -> SheepResult<()> {
    for o in outcomes {
        match o {
            Outcome::Formatted(config) => {
                *sheep.vdis_mut() = VdiTable::default();
                if live {
                    tracing::info!(copies = config.copies, "cluster formatted");
                    adopt_config(sheep, config).await?;
                    sheep.sys_mut().epochs.clear();
                    sheep.recovery.reset();
                }
            }
            Outcome::NewEpoch(e) => {
                if live {
                    tracing::info!(epoch = %e.epoch, members = e.members.len(), "new epoch");
                    let dir = sheep.cfg.dir.clone();
                    let entry = e.clone();
                    blocking(move || write_epoch(&dir, &entry)).await?;
                    sync_sys(sheep, fold);
                    if fold.status() == Status::Ok {
                        sheep.recovery.start_epoch(e.epoch);
                    }
                }
            }
            Outcome::Stable(epoch) => {
                if live {
                    let sheep = Arc::clone(sheep);
                    tokio::spawn(async move {
                        if let Err(e) = crate::recovery::cleanup(&sheep, epoch).await {
                            tracing::warn!(error = %e, "removing stale copies failed");
                        }
                    });
                }
            }
            Outcome::Status(s) => {
                if live {
                    tracing::info!(status = ?s, "cluster status");
                    if s == Status::Shutdown
                        && !sheep
                            .shutdown_requested
                            .load(std::sync::atomic::Ordering::SeqCst)
                    {
                        sheep.sys_mut().status = NodeStatus::Shutdown;
                        sheep.cancel.cancel();
                    }
                }
            }
            Outcome::Notify { from, msg } => {
                let Some(m) = ClusterMsg::decode(&msg) else {
                    tracing::warn!(%from, "ignoring a malformed cluster notification");
                    continue;
                };
                let r = apply_msg(&mut sheep.vdis_mut(), &m, rec.time);
                sheep.vdi_version.send_modify(|v| *v += 1);
                if live && from == sheep.me.nid {
                    sheep.pending.complete(m.token(), r);
                }
            }
        }
    }
    Ok(())
}
