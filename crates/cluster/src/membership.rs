//! The membership state machine: a pure fold over the ordered log. Every member applies the
//! same records in the same order and so derives the same members, epochs and status.
//!
//! Two VDI records of the log change what it folds: `ClusterMsg::AlterClusterCopy` sets the
//! config's default copies, and `ClusterMsg::AlterVdiCopy` moves objects without a new
//! epoch: it starts another recovery *pass* of the epoch, and the epoch is stable again only
//! once every member reports that pass done (`LogEntry::RecoveryDone::pass`).

use std::collections::BTreeSet;

use sd_proto::Epoch;
use sd_proto::cluster::SheepdogConfig;
use sd_proto::node::{NodeId, SdNode};

use crate::log::{LogEntry, Record, Saved};
use crate::vdi_log::ClusterMsg;

/// Cluster status as the fold sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not formatted.
    WaitFormat,
    /// Formatted, but nodes needed for consistent data are missing.
    WaitJoin,
    /// Serving.
    Ok,
    /// Shut down.
    Shutdown,
}

/// One epoch of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEntry {
    /// The epoch.
    pub epoch: Epoch,
    /// When it began (Unix seconds, from the log).
    pub time: u64,
    /// Its members, sorted.
    pub members: Vec<SdNode>,
}

/// What a member must act on after a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new epoch began: log it, then recover.
    NewEpoch(EpochEntry),
    /// The cluster was formatted with this config (epoch 1 follows as `NewEpoch`).
    Formatted(SheepdogConfig),
    /// The status changed.
    Status(Status),
    /// Every member finished recovering this epoch (its latest pass): copies no longer
    /// placed on a node may be removed from it.
    Stable(Epoch),
    /// The cluster's default copies changed (`ClusterMsg::AlterClusterCopy`): the new
    /// config, to save. Comes before the record's `Notify`.
    Config(SheepdogConfig),
    /// A VDI's copies changed (`ClusterMsg::AlterVdiCopy`): every member recovers `epoch`
    /// again, as its pass `pass`, placing objects by the new counts. Comes after the
    /// record's `Notify`.
    NewPass {
        /// The epoch (unchanged).
        epoch: Epoch,
        /// The new pass of it.
        pass: u32,
    },
    /// A notification to apply.
    Notify {
        /// Sender.
        from: NodeId,
        /// Message.
        msg: Vec<u8>,
    },
}

/// Nodes the cluster waits for, and how many of them may stay missing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wait {
    nodes: BTreeSet<NodeId>,
    tolerate: usize,
}

/// The folded state of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    members: Vec<SdNode>,
    config: SheepdogConfig,
    epoch: Epoch,
    history: Vec<EpochEntry>,
    status: Status,
    wait: Option<Wait>,
    /// Members whose copies are complete: the last epoch every member finished recovering.
    stable: BTreeSet<NodeId>,
    /// How many copies each object has among the stable members: `copies`, or fewer when
    /// they span fewer zones. Losing this many of them may lose every copy of an object.
    stable_copies: usize,
    /// Members that finished recovering the current epoch's current pass.
    recovered: BTreeSet<NodeId>,
    /// The current recovery pass of the epoch: 0 when it begins, bumped by every VDI copy
    /// change.
    pass: u32,
    /// The last epoch every member finished recovering (0: none since the format).
    stable_epoch: Epoch,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            members: Vec::new(),
            config: SheepdogConfig::default(),
            epoch: Epoch(0),
            history: Vec::new(),
            status: Status::WaitFormat,
            wait: None,
            stable: BTreeSet::new(),
            stable_copies: 1,
            recovered: BTreeSet::new(),
            pass: 0,
            stable_epoch: Epoch(0),
        }
    }
}

impl Membership {
    /// Current members, sorted by address.
    pub fn members(&self) -> &[SdNode] {
        &self.members
    }
    /// Current epoch (0 before format).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// Cluster config (ctime 0: not formatted).
    pub fn config(&self) -> &SheepdogConfig {
        &self.config
    }
    /// Status.
    pub fn status(&self) -> Status {
        self.status
    }
    /// The last epoch every member finished recovering (0: none since the format). Once
    /// it is the format's epoch 1 or later, every member serves the formatted cluster.
    pub fn stable_epoch(&self) -> Epoch {
        self.stable_epoch
    }
    /// The current recovery pass of the epoch (0 until a VDI's copies change in it).
    pub fn pass(&self) -> u32 {
        self.pass
    }
    /// Epochs seen by this fold, oldest first.
    pub fn history(&self) -> &[EpochEntry] {
        &self.history
    }
    /// Nodes the cluster waits for (empty unless `WaitJoin`).
    pub fn waiting_for(&self) -> Vec<NodeId> {
        self.wait.as_ref().map_or_else(Vec::new, |w| {
            w.nodes
                .iter()
                .filter(|n| !self.is_member(n))
                .copied()
                .collect()
        })
    }
    /// Whether `nid` is a member.
    pub fn is_member(&self, nid: &NodeId) -> bool {
        self.members.iter().any(|m| m.nid == *nid)
    }

    fn copies(&self) -> usize {
        usize::from(self.config.copies.max(1))
    }

    /// Waits for every member of the current epoch (of the history: the fold's members may
    /// have changed since without a new epoch), none of them missing.
    fn wait_for_last_epoch(&mut self) {
        let nodes = self
            .history
            .last()
            .map_or_else(BTreeSet::new, |e| e.members.iter().map(|n| n.nid).collect());
        self.wait = Some(Wait { nodes, tolerate: 0 });
    }

    /// `nodes` hold complete copies of every object (`stable`).
    fn set_stable(&mut self, nodes: &[SdNode]) {
        self.stable = nodes.iter().map(|n| n.nid).collect();
        let zones: BTreeSet<u32> = nodes.iter().map(|n| n.zone).collect();
        self.stable_copies = self.copies().min(zones.len()).max(1);
    }

    fn bump(&mut self, time: u64, out: &mut Vec<Outcome>) {
        self.epoch = self.epoch.next();
        self.recovered.clear();
        self.pass = 0;
        let e = EpochEntry {
            epoch: self.epoch,
            time,
            members: self.members.clone(),
        };
        self.history.push(e.clone());
        out.push(Outcome::NewEpoch(e));
    }

    fn set_status(&mut self, s: Status, out: &mut Vec<Outcome>) {
        if self.status != s {
            self.status = s;
            out.push(Outcome::Status(s));
        }
    }

    /// Ends a wait once enough of the awaited nodes are back; starts the next epoch.
    fn check_wait(&mut self, time: u64, out: &mut Vec<Outcome>) {
        let Some(w) = &self.wait else { return };
        let missing = w.nodes.iter().filter(|n| !self.is_member(n)).count();
        if missing <= w.tolerate {
            self.wait = None;
            self.set_status(Status::Ok, out);
            self.bump(time, out);
        }
    }

    fn adopt(&mut self, saved: &Saved, time: u64, out: &mut Vec<Outcome>) {
        self.config = saved.config.clone();
        self.epoch = saved.epoch;
        self.history = vec![EpochEntry {
            epoch: saved.epoch,
            time,
            members: saved.members.clone(),
        }];
        self.set_stable(&saved.members);
        self.wait = Some(Wait {
            nodes: self.stable.clone(),
            tolerate: 0,
        });
        self.set_status(Status::WaitJoin, out);
    }

    /// Applies one record; returns what the member must do.
    pub fn apply(&mut self, rec: &Record) -> Vec<Outcome> {
        let mut out = Vec::new();
        let time = rec.time;
        match &rec.entry {
            LogEntry::Join { node, .. } if self.status == Status::Shutdown => {
                // Every member stopped at the shutdown: this is the cluster starting again.
                // The old incarnations are gone (their leaves may come later, or never),
                // so the joiners are the members; the cluster serves again once every node
                // of its last epoch is back.
                self.members = vec![*node];
                self.recovered.clear();
                if self.config.ctime == 0 {
                    self.wait = None;
                    self.set_status(Status::WaitFormat, &mut out);
                } else {
                    self.set_status(Status::WaitJoin, &mut out);
                    self.check_wait(time, &mut out);
                }
            }
            LogEntry::Join { node, saved, .. } => {
                self.members.retain(|m| m.nid != node.nid);
                self.members.push(*node);
                self.members.sort_by_key(|m| m.nid);
                let formatted = self.config.ctime != 0;
                let saved_formatted = saved.config.ctime != 0;
                match self.status {
                    Status::WaitFormat if saved_formatted => {
                        self.adopt(saved, time, &mut out);
                        self.check_wait(time, &mut out);
                    }
                    Status::WaitJoin
                        if saved.config.ctime == self.config.ctime && saved.epoch > self.epoch =>
                    {
                        // A node with a newer history: wait for its view instead.
                        self.adopt(saved, time, &mut out);
                        self.check_wait(time, &mut out);
                    }
                    Status::WaitJoin => self.check_wait(time, &mut out),
                    Status::Ok if formatted => {
                        // A joiner, or a restarted member that may have missed writes: a new
                        // epoch makes it recover.
                        self.bump(time, &mut out);
                    }
                    _ => {}
                }
            }
            LogEntry::Leave { nid } => {
                if !self.is_member(nid) {
                    return out;
                }
                self.members.retain(|m| m.nid != *nid);
                self.recovered.remove(nid);
                if self.status == Status::Ok {
                    let lost = self.stable.iter().filter(|n| !self.is_member(n)).count();
                    if self.members.is_empty() {
                        // The last member left: the last epoch's members hold the newest
                        // copies (each earlier leave kept fewer than `stable_copies` of the
                        // stable view lost, so at least one holder of every object stayed to
                        // the end), and the cluster must wait for all of them.
                        self.wait_for_last_epoch();
                        self.set_status(Status::WaitJoin, &mut out);
                    } else if lost >= self.stable_copies {
                        // Every copy of some object may be gone: serve nothing until enough
                        // of the lost nodes return.
                        self.wait = Some(Wait {
                            nodes: self.stable.clone(),
                            tolerate: self.stable_copies - 1,
                        });
                        self.set_status(Status::WaitJoin, &mut out);
                    } else {
                        self.bump(time, &mut out);
                    }
                }
            }
            LogEntry::Format { config } => {
                self.config = config.clone();
                self.epoch = Epoch(0);
                self.history.clear();
                self.wait = None;
                self.stable_epoch = Epoch(0);
                self.set_stable(&self.members.clone());
                out.push(Outcome::Formatted(config.clone()));
                self.set_status(Status::Ok, &mut out);
                self.bump(time, &mut out);
            }
            LogEntry::Shutdown => {
                if self.status == Status::Ok {
                    // When it starts again, the cluster waits for every node of this epoch.
                    self.wait_for_last_epoch();
                }
                // Waiting for nodes already (or unformatted): the same wait holds later.
                self.set_status(Status::Shutdown, &mut out);
            }
            LogEntry::RecoveryDone { nid, epoch, pass } => {
                // A pass superseded by a copy change says nothing about the new placement.
                if *epoch == self.epoch && *pass == self.pass && self.is_member(nid) {
                    self.recovered.insert(*nid);
                    if self.members.iter().all(|m| self.recovered.contains(&m.nid)) {
                        self.set_stable(&self.members.clone());
                        self.stable_epoch = self.epoch;
                        out.push(Outcome::Stable(self.epoch));
                    }
                }
            }
            LogEntry::Notify { from, msg } => {
                let decoded = ClusterMsg::decode(msg).ok();
                if let Some(ClusterMsg::AlterClusterCopy { copies, .. }) = decoded {
                    self.alter_cluster_copy(copies, &mut out);
                }
                out.push(Outcome::Notify {
                    from: *from,
                    msg: msg.clone(),
                });
                if matches!(decoded, Some(ClusterMsg::AlterVdiCopy { .. })) {
                    self.new_pass(&mut out);
                }
            }
        }
        out
    }

    /// `ClusterMsg::AlterClusterCopy`: a formatted, replicated cluster's default copies
    /// become `copies` (a count out of range, which the VDI fold refuses, changes nothing).
    fn alter_cluster_copy(&mut self, copies: u8, out: &mut Vec<Outcome>) {
        if self.config.ctime == 0
            || self.config.copy_policy != 0
            || !crate::vdi_fold::valid_copies(copies)
            || self.config.copies == copies
        {
            return;
        }
        self.config.copies = copies;
        out.push(Outcome::Config(self.config.clone()));
    }

    /// `ClusterMsg::AlterVdiCopy`: objects move within the epoch. Every member recovers it
    /// again; reports of the passes before no longer count. (Whether the VDI fold accepts
    /// the record does not matter here: a pass that moves nothing finishes at once.)
    fn new_pass(&mut self, out: &mut Vec<Outcome>) {
        if self.status != Status::Ok {
            // No recovery runs; the epoch that ends the wait recovers by the new counts.
            return;
        }
        self.pass = self.pass.wrapping_add(1);
        self.recovered.clear();
        out.push(Outcome::NewPass {
            epoch: self.epoch,
            pass: self.pass,
        });
    }
}
