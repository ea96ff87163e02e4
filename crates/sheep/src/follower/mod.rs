//! The membership owner task: folds the ordered log (`sd_cluster::Membership`, and its VDI
//! records into the VDI table with `sd_cluster::vdi_fold::apply`), keeps `SysState` in
//! step with it, persists epochs, applies format and shutdown, and answers the cluster
//! operations this node submitted (`submit`, `barrier`).
//!
//! Records before our own join are history: they are folded (so we learn members, epochs
//! and VDIs exactly as everyone else did) but trigger no side effects on our store.

mod plan;

use std::sync::Arc;

use sd_cluster::log::Record;
use sd_cluster::placement::Ring;
use sd_cluster::{ClusterMsg, Membership, Status, VdiTable};
use sd_proto::cluster::{NodeStatus, SheepdogConfig};
use sd_proto::{Oid, SdResult};
use tokio::sync::{mpsc, watch};

use crate::disk::blocking;
use crate::error::{SheepError, SheepResult};
use crate::node::Sheep;
use crate::sys::{remove_epochs, write_config, write_epoch};
use plan::{Context, Effect, plan};

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
    crate::recovery::partial::unplaced(sheep, &after);
    let store = sheep.store.clone();
    let local = blocking(move || crate::strip::local_oids(&store)).await?;
    let regained: Vec<Oid> = local
        .into_iter()
        .filter(|oid| {
            if let Some(g) = crate::strip::geometry(sheep, *oid) {
                // A strip's place may move while this node stays a holder.
                let at = |r: &Ring| crate::strip::index_on(sheep, r, *oid, g);
                return at(&after).is_some() && at(&after) != at(&before);
            }
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
    sheep.publish_epoch(fold.epoch());
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
        let was_formatted = fold.config().ctime != 0;
        let outcomes = fold.apply(&rec);
        let cx = Context {
            me: sheep.me.nid,
            incarnation: sheep.incarnation,
            live,
            shutdown_requested: sheep.shutdown_requested(),
            was_formatted,
            formatted: fold.config().ctime != 0,
            status: fold.status(),
        };
        for effect in plan(&rec, outcomes, &cx) {
            let what = effect.name();
            if let Err(e) = execute(&sheep, &fold, &rec, effect, &live_tx).await {
                tracing::error!(error = %e, effect = %what, "applying a cluster record failed; stopping");
                sheep.cancel.cancel();
                return;
            }
        }
        live = live || plan::own_join(&rec, &cx);
    }
}

/// Carries out one effect of the record `rec`, after the fold applied it.
async fn execute(
    sheep: &Arc<Sheep>,
    fold: &Membership,
    rec: &Record,
    effect: Effect,
    live_tx: &watch::Sender<bool>,
) -> SheepResult<()> {
    match effect {
        Effect::Gone(nid) => {
            sheep.vdis_mut().orphan(&nid);
            sheep.peers.forget(&nid);
            sheep.leaf_peers.forget(&nid);
        }
        Effect::LoadLocalVdis => {
            let store = sheep.store.clone();
            match blocking(move || crate::vdi::load_local(&store)).await {
                Ok(t) => *sheep.vdis_mut() = t,
                Err(e) => tracing::error!(error = %e, "loading local inodes failed"),
            }
        }
        Effect::ResetVdis => *sheep.vdis_mut() = VdiTable::default(),
        Effect::AdoptFormat(config) => {
            tracing::info!(copies = config.copies, "cluster formatted");
            adopt_config(sheep, config).await?;
            sheep.sys_mut().epochs.clear();
            sheep.recovery.reset();
            crate::failpoint::delay_point("format:before_running").await;
        }
        Effect::NewEpoch(e) => {
            tracing::info!(epoch = %e.epoch, members = e.members.len(), "new epoch");
            let dir = sheep.cfg.dir.clone();
            let epoch = e.epoch;
            blocking(move || write_epoch(&dir, &e)).await?;
            distrust_regained(sheep, fold).await?;
            let departed: Vec<_> = sheep
                .sys()
                .nodes
                .iter()
                .map(|n| n.nid)
                .filter(|nid| fold.members().iter().all(|m| m.nid != *nid))
                .collect();
            sync_sys(sheep, fold);
            // Writes a departed gateway was fanning out may have reached only some
            // replicas.
            for nid in departed {
                sheep.fanout.node_left(nid);
            }
            if fold.status() == Status::Ok {
                sheep.recovery.start_epoch(epoch);
            }
        }
        Effect::Stable(epoch) => {
            let sheep = Arc::clone(sheep);
            // The pass every member reported done (the fold applied exactly this record).
            let pass = fold.pass();
            tokio::spawn(async move {
                if let Err(e) = crate::recovery::cleanup(&sheep, epoch, pass).await {
                    tracing::warn!(error = %e, "removing stale copies failed");
                }
                crate::reconcile::at_stable(&sheep).await;
            });
        }
        Effect::StatusChanged(s) => tracing::info!(status = ?s, "cluster status"),
        Effect::Stop => {
            sheep.sys_mut().status = NodeStatus::Shutdown;
            // The whole cluster stops: writeback data is made durable here, so the next
            // start trusts these copies.
            if crate::writeback::sync_local(sheep).await {
                crate::recovery::mark_clean_stop(sheep).await;
            }
            sheep.cancel.cancel();
        }
        Effect::Vdi {
            from,
            msg,
            reply,
            live,
        } => {
            let alter = match &msg {
                ClusterMsg::AlterVdiCopy { vid, copies, .. } if live => Some((*vid, *copies)),
                _ => None,
            };
            if let Some((vid, copies)) = alter {
                // Before the table changes: no read may reach a copy the change moves
                // before it is distrusted.
                crate::recovery::copies::before_change(sheep, vid, copies).await?;
            }
            let r = sd_cluster::vdi_fold::apply(&mut sheep.vdis_mut(), &msg, from, rec.time);
            sheep.vdis_changed();
            if let (Some((vid, copies)), Ok(_)) = (alter, &r) {
                tracing::info!(%vid, copies, "VDI copies changed");
                crate::recovery::copies::after_change(sheep);
            }
            if reply {
                sheep.complete_proposal(msg.token(), r);
            }
        }
        Effect::SaveConfig(config) => save_copies(sheep, config.copies).await?,
        Effect::Repass { epoch, pass } => {
            if !sheep.recovery.start_pass(epoch, pass) {
                tracing::warn!(%epoch, pass, "not recovering this epoch: copy change not recovered");
            }
        }
        Effect::Malformed { from, error } => {
            tracing::warn!(%from, %error, "ignoring a malformed cluster notification");
        }
        Effect::GoLive => go_live(sheep, fold).await?,
        Effect::SyncView => {
            sync_sys(sheep, fold);
            let _ = live_tx.send(true);
        }
        Effect::LogWait => log_wait(sheep, fold),
    }
    Ok(())
}

/// The cluster's default copies are now `copies`: in our view at once (the proposal this
/// record answers next reads it), and in `DIR/config`, rewritten atomically.
async fn save_copies(sheep: &Sheep, copies: u8) -> SheepResult<()> {
    tracing::info!(copies, "cluster default copies changed");
    sheep.sys_mut().config.copies = copies;
    let dir = sheep.cfg.dir.clone();
    let mut config = crate::sys::load_config(&dir).map_err(|e| {
        tracing::error!(error = %e, "reading the config to change its copies");
        SheepError::Result(SdResult::Eio)
    })?;
    config.copies = copies;
    blocking(move || write_config(&dir, &config)).await
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
    // Another format: its creation time differs, or (two formats in the same second, or a
    // cut that lost the format's local effects) our epoch log goes past the cluster's or
    // disagrees with it: epochs only grow within a format.
    let other_history = cluster.ctime != 0 && {
        let sys = sheep.sys();
        sys.epochs.iter().any(|e| {
            e.epoch > fold.epoch()
                || fold
                    .history()
                    .iter()
                    .any(|h| h.epoch == e.epoch && h.members != e.members)
        })
    };
    if (cluster.ctime != 0 && cluster.ctime != mine.ctime) || other_history {
        tracing::info!(
            other_history,
            "store belongs to another format of the cluster: emptying it"
        );
        adopt_config(sheep, cluster).await?;
        sheep.sys_mut().epochs.clear();
    } else if cluster.ctime != 0 && cluster.copies != mine.copies {
        // The default changed while we were away.
        save_copies(sheep, cluster.copies).await?;
    }
    persist_epochs(sheep, fold).await?;
    // Our copies may have missed writes while we were away: none is served until checked.
    let store = sheep.store.clone();
    let local = blocking(move || crate::strip::local_oids(&store)).await?;
    sheep.recovery.distrust(local);
    sheep.recovery.rejoined();
    sync_sys(sheep, fold);
    if fold.status() == Status::Ok {
        sheep.recovery.start_epoch(fold.epoch());
    }
    Ok(())
}
