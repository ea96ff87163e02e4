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
use sd_proto::node::NodeId;
use sd_proto::{Oid, SdResult, Vid};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{SheepError, SheepResult};
use crate::sys::{Sheep, remove_epochs, write_config, write_epoch};
use crate::vdi::{LockOwner, VdiEntry, VdiTable};

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
        /// The snapshot a clone or rollback starts from, or the VDI a snapshot copies
        /// (0: a fresh VDI).
        base: u32,
        /// A snapshot: this working VDI of `name` becomes read-only (0: not a snapshot).
        snapshot_of: u32,
        /// The tag the snapshot gets.
        tag: Vec<u8>,
    },
    /// Mark a VDI deleted (its objects were freed by the submitter).
    DelVdi {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
    },
    /// The inode work of a create or delete of `vid` is done.
    Settled {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
    },
    /// The submitter's writer `holder` takes the lock of `vid`.
    Lock {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
        /// Which writer on the submitting node.
        holder: u64,
    },
    /// Release the lock of `vid`: `holder`'s on the submitting node, or (`holder` 0)
    /// whoever holds it.
    Unlock {
        /// Answer token of the submitter.
        token: u64,
        /// The VDI.
        vid: Vid,
        /// Which writer on the submitting node (0: any, a forced unlock).
        holder: u64,
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
            | ClusterMsg::Settled { token, .. }
            | ClusterMsg::Lock { token, .. }
            | ClusterMsg::Unlock { token, .. }
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
                base,
                snapshot_of,
                tag,
            } => {
                let clip = |b: &[u8]| {
                    b.get(..b.len().min(SD_MAX_VDI_LEN - 1))
                        .unwrap_or_default()
                        .to_vec()
                };
                let (name, tag) = (clip(name), clip(tag));
                out.push(4);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.push(*copies);
                out.push(*shift);
                out.extend_from_slice(&base.to_le_bytes());
                out.extend_from_slice(&snapshot_of.to_le_bytes());
                out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&name);
                out.extend_from_slice(&tag);
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
            ClusterMsg::Settled { token, vid } => {
                out.push(5);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&vid.get().to_le_bytes());
            }
            ClusterMsg::Lock { token, vid, holder } | ClusterMsg::Unlock { token, vid, holder } => {
                out.push(if matches!(self, ClusterMsg::Lock { .. }) {
                    6
                } else {
                    7
                });
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&vid.get().to_le_bytes());
                out.extend_from_slice(&holder.to_le_bytes());
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
                    base: 0,
                    snapshot_of: 0,
                    tag: Vec::new(),
                })
            }
            4 => {
                let u32_at = |k: usize| -> Option<u32> {
                    Some(u32::from_le_bytes(rest.get(k..k + 4)?.try_into().ok()?))
                };
                let size = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
                let copies = *rest.get(8)?;
                let shift = *rest.get(9)?;
                let base = u32_at(10)?;
                let snapshot_of = u32_at(14)?;
                let name_len = usize::from(u16::from_le_bytes(rest.get(18..20)?.try_into().ok()?));
                let name = rest.get(20..20 + name_len)?.to_vec();
                let tag = rest.get(20 + name_len..)?.to_vec();
                let ok =
                    !name.is_empty() && name.len() < SD_MAX_VDI_LEN && tag.len() < SD_MAX_VDI_LEN;
                ok.then_some(ClusterMsg::NewVdi {
                    token,
                    name,
                    size,
                    copies,
                    shift,
                    base,
                    snapshot_of,
                    tag,
                })
            }
            2 => {
                let vid = Vid::new(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?))?;
                Some(ClusterMsg::DelVdi { token, vid })
            }
            3 => Some(ClusterMsg::Barrier { token }),
            5 => {
                let vid = Vid::new(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?))?;
                Some(ClusterMsg::Settled { token, vid })
            }
            6 | 7 => {
                let vid = Vid::new(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?))?;
                let holder = u64::from_le_bytes(rest.get(4..12)?.try_into().ok()?);
                Some(if kind == 6 {
                    ClusterMsg::Lock { token, vid, holder }
                } else {
                    ClusterMsg::Unlock { token, vid, holder }
                })
            }
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
    tokio::select! {
        r = rx => match r {
            Ok(r) => r.map_err(SheepError::Result),
            Err(_) => Err(SdResult::ClusterError.into()),
        },
        // A stopping node no longer follows the log: nobody would answer.
        () = sheep.cancel.cancelled() => Err(SdResult::Shutdown.into()),
    }
}

/// Waits until this node has applied every record appended before now.
pub async fn barrier(sheep: &Sheep) -> SheepResult<()> {
    submit(sheep, |token| ClusterMsg::Barrier { token })
        .await
        .map(|_| ())
}

/// Applies a VDI operation to `table` exactly as every other member does.
fn apply_msg(
    table: &mut VdiTable,
    msg: &ClusterMsg,
    from: NodeId,
    time: u64,
) -> Result<Applied, SdResult> {
    match msg {
        ClusterMsg::NewVdi {
            name,
            size,
            copies,
            shift,
            base,
            snapshot_of,
            tag,
            ..
        } => {
            let base_vid = Vid::nonzero(*base);
            if base_vid.is_some_and(|b| !table.is_live(b)) {
                return Err(SdResult::BaseVdiRead);
            }
            let (vid, snap_id, replaced) = match Vid::nonzero(*snapshot_of) {
                // A snapshot: the working VDI it names must still be the working VDI.
                Some(w) => {
                    match table.lookup(name, b"", 0) {
                        Ok(f) if f.vid == w => {}
                        _ => return Err(SdResult::NoVdi),
                    }
                    let vid = table.free_vid(name).ok_or(SdResult::FullVdi)?;
                    let snap_id = table.get(w).map_or(1, |e| e.snap_id.saturating_add(1));
                    table.mark_snapshot(w, tag);
                    (vid, snap_id, Some(w))
                }
                None => {
                    let miss = match table.lookup(name, b"", 0) {
                        Ok(_) => return Err(SdResult::VdiExist),
                        Err(m) => m,
                    };
                    match (miss.result, miss.free) {
                        (SdResult::NoVdi, Some(v)) => (v, miss.next_snap_id, None),
                        (SdResult::NoVdi | SdResult::FullVdi, _) => return Err(SdResult::FullVdi),
                        (other, _) => return Err(other),
                    }
                }
            };
            table.insert(
                vid,
                VdiEntry {
                    name: name.clone(),
                    tag: Vec::new(),
                    snap_id,
                    snapshot: false,
                    nr_copies: *copies,
                    copy_policy: 0,
                    block_size_shift: *shift,
                    vdi_size: *size,
                    parent: *base,
                    create_time: sd_proto::cluster::sd_time(time, 0),
                    snapshot_of: *snapshot_of,
                },
            );
            table.mark_unsettled(vid, from);
            if let Some(w) = replaced {
                table.move_lock(w, vid);
            }
            Ok(Applied { vid, time })
        }
        ClusterMsg::DelVdi { vid, .. } => {
            if !table.is_live(*vid) {
                return Err(SdResult::NoVdi);
            }
            if table.lock_owner(*vid).is_some() {
                // A writer holds it: deleting would pull the disk from under it.
                return Err(SdResult::VdiLocked);
            }
            table.mark_deleted(*vid);
            table.mark_unsettled(*vid, from);
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Settled { vid, .. } => {
            table.settle(*vid);
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Lock { vid, holder, .. } => {
            if !table.is_live(*vid) {
                return Err(SdResult::NoVdi);
            }
            table.lock(
                *vid,
                LockOwner {
                    node: from,
                    holder: *holder,
                },
            )?;
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Unlock { vid, holder, .. } => {
            let owner = (*holder != 0).then_some(LockOwner {
                node: from,
                holder: *holder,
            });
            table.unlock(*vid, owner);
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

/// Before a new epoch is served: local copies this node holds in the new epoch but did not
/// hold in the one before are leftovers of an older epoch, and may have missed every write
/// made since; they are distrusted (re-verified by recovery before they are served), as a
/// rejoining node's copies are.
async fn distrust_regained(sheep: &Sheep, fold: &Membership) -> SheepResult<()> {
    let before = sheep.sys().ring.clone();
    let after = Ring::new(fold.members());
    let me = sheep.me.nid;
    if before.nodes().iter().all(|n| n.nid != me) {
        // Not a member before: go_live distrusted every copy already.
        return Ok(());
    }
    let store = sheep.store.clone();
    let local = blocking(move || store.list()).await?;
    let regained: Vec<Oid> = local
        .into_iter()
        .filter(|oid| {
            let copies = sheep.copies_of(*oid, 0);
            let holds = |r: &Ring| r.replicas(*oid, copies).iter().any(|n| n.nid == me);
            holds(&after) && !holds(&before)
        })
        .collect();
    if !regained.is_empty() {
        tracing::info!(
            objects = regained.len(),
            "leftover copies placed here again: re-verifying them"
        );
        sheep.recovery.distrust(regained);
    }
    Ok(())
}

/// Copies the fold's view into `SysState`.
fn sync_sys(sheep: &Sheep, fold: &Membership) {
    let mut sys = sheep.sys_mut();
    sys.status = node_status(fold.status());
    sys.epoch = fold.epoch();
    sys.nodes = fold.members().to_vec();
    sys.stable = fold.stable_epoch();
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
                None if sheep.drain.is_draining() => {
                    tracing::info!("cluster driver stopped after our leave");
                    sheep.cancel.cancel();
                    return;
                }
                None => {
                    tracing::error!("cluster driver stopped; this node can no longer follow the cluster");
                    sheep.cancel.cancel();
                    return;
                }
            },
        };
        let gone = match &rec.entry {
            LogEntry::Join { node, .. } => Some(node.nid),
            LogEntry::Leave { nid } => Some(*nid),
            _ => None,
        };
        if let Some(nid) = gone {
            // Whatever VDI work that node was doing died with its previous run.
            sheep.vdis_mut().orphan(&nid);
            // So did our connections to it: after a partition they may be silent rather
            // than closed, and the next request would wait out the peer timeout on them.
            sheep.peers.forget(&nid);
            sheep.leaf_peers.forget(&nid);
        }
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
            if gone.is_some() && fold.status() == Status::WaitJoin {
                log_wait(&sheep, &fold);
            }
        }
    }
}

/// Says which nodes the cluster waits for, and where its state lives (a sheep may have
/// joined a cluster an earlier run left in the shared state).
fn log_wait(sheep: &Sheep, fold: &Membership) {
    let waiting: Vec<String> = fold.waiting_for().iter().map(ToString::to_string).collect();
    tracing::warn!(
        epoch = %fold.epoch(),
        waiting_for = %waiting.join(", "),
        state = %crate::driver::describe(&sheep.cfg.cluster),
        "the cluster waits for nodes of its last epoch to join"
    );
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
                    crate::failpoint::delay_point("format:before_running").await;
                }
            }
            Outcome::NewEpoch(e) => {
                if live {
                    tracing::info!(epoch = %e.epoch, members = e.members.len(), "new epoch");
                    let dir = sheep.cfg.dir.clone();
                    let entry = e.clone();
                    blocking(move || write_epoch(&dir, &entry)).await?;
                    distrust_regained(sheep, fold).await?;
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
                        crate::reconcile::at_stable(&sheep).await;
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
                let r = apply_msg(&mut sheep.vdis_mut(), &m, from, rec.time);
                sheep.vdi_version.send_modify(|v| *v += 1);
                if live && from == sheep.me.nid {
                    sheep.pending.complete(m.token(), r);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vid() -> impl Strategy<Value = Vid> {
        (0u32..(1 << 24)).prop_map(Vid::from_masked)
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 1..SD_MAX_VDI_LEN)
    }

    fn msg() -> impl Strategy<Value = ClusterMsg> {
        prop_oneof![
            (
                any::<u64>(),
                name(),
                any::<u64>(),
                any::<u8>(),
                any::<u8>(),
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..SD_MAX_VDI_LEN)
            )
                .prop_map(
                    |(token, name, size, copies, shift, base, snapshot_of, tag)| {
                        ClusterMsg::NewVdi {
                            token,
                            name,
                            size,
                            copies,
                            shift,
                            base,
                            snapshot_of,
                            tag,
                        }
                    }
                ),
            (any::<u64>(), vid()).prop_map(|(token, vid)| ClusterMsg::DelVdi { token, vid }),
            (any::<u64>(), vid()).prop_map(|(token, vid)| ClusterMsg::Settled { token, vid }),
            (any::<u64>(), vid(), any::<u64>()).prop_map(|(token, vid, holder)| ClusterMsg::Lock {
                token,
                vid,
                holder
            }),
            (any::<u64>(), vid(), any::<u64>())
                .prop_map(|(token, vid, holder)| ClusterMsg::Unlock { token, vid, holder }),
            any::<u64>().prop_map(|token| ClusterMsg::Barrier { token }),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(m in msg()) {
            prop_assert_eq!(ClusterMsg::decode(&m.encode()), Some(m));
        }

        #[test]
        fn untrusted_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(m) = ClusterMsg::decode(&b) {
                // Whatever decodes re-encodes to something that decodes the same.
                prop_assert_eq!(ClusterMsg::decode(&m.encode()), Some(m));
            }
        }
    }

    #[test]
    fn records_of_the_first_format_still_decode() {
        // kind 1: token, size, copies, shift, name (before snapshots existed).
        let mut b = vec![1];
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&(1u64 << 30).to_le_bytes());
        b.extend_from_slice(&[3, 22]);
        b.extend_from_slice(b"vm1");
        assert_eq!(
            ClusterMsg::decode(&b),
            Some(ClusterMsg::NewVdi {
                token: 7,
                name: b"vm1".to_vec(),
                size: 1 << 30,
                copies: 3,
                shift: 22,
                base: 0,
                snapshot_of: 0,
                tag: Vec::new(),
            })
        );
    }
}
