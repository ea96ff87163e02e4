//! What the membership task does with one record of the ordered log, decided without
//! doing it: [`plan`] turns the record and the fold's outcomes into [`Effect`]s, which the
//! task (`follower`) then carries out in order. Pure, so the rules below are tested as a
//! table, without a runtime, a store or a network.
//!
//! The rules:
//! - a node that joins or leaves ends its previous run: its unfinished VDI work is
//!   orphaned and our connections to it are dropped, whether or not we are live yet;
//! - VDI records are applied to the VDI table always (history teaches us the table as it
//!   did everyone else), but only a live node answers its own proposals (and prepares its
//!   store for a VDI's copy change);
//! - a change of the cluster's default copies is saved (live; a node that goes live
//!   saves the config it learnt), before the proposal it answers;
//! - a VDI's copy change recovers the epoch again (live), after the record is applied;
//! - every effect on our store or our view (format, epochs, recovery, stale copies, stop)
//!   waits until our own join has been applied (`live`): records before it are history;
//! - our own join makes us live: the store is reconciled with the cluster (`GoLive`);
//! - a live node then publishes its view, and names the nodes the cluster waits for when a
//!   member came or went while it waits.

use sd_cluster::log::{LogEntry, Record};
use sd_cluster::{ClusterMsg, EpochEntry, Outcome, Status};
use sd_proto::Epoch;
use sd_proto::cluster::SheepdogConfig;
use sd_proto::node::NodeId;

/// What this node knows beside the record when it plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// This node.
    pub me: NodeId,
    /// This run of the process (recognises our own join).
    pub incarnation: u64,
    /// Our own join was applied before this record.
    pub live: bool,
    /// This node asked for the shutdown (it stops after answering its client).
    pub shutdown_requested: bool,
    /// The cluster was formatted before this record.
    pub was_formatted: bool,
    /// The cluster is formatted after this record.
    pub formatted: bool,
    /// The cluster's status after this record.
    pub status: Status,
}

/// One step of the membership task, in the order [`plan`] gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `NodeId`'s previous run is over: orphan its unfinished VDI work, forget our
    /// connections to it (after a partition they may be silent rather than closed).
    Gone(NodeId),
    /// The cluster adopted the state a restarted node brought: learn the VDIs created
    /// before the log began from the inodes in our store.
    LoadLocalVdis,
    /// The cluster was formatted: the VDI table starts empty.
    ResetVdis,
    /// (live) The format applies to our store: empty it, adopt `config`, forget the epoch
    /// history and any recovery.
    AdoptFormat(SheepdogConfig),
    /// (live) A new epoch began: persist it, distrust copies placed here again, publish the
    /// view, and recover the epoch if the cluster runs.
    NewEpoch(EpochEntry),
    /// (live) Every member recovered this epoch: drop copies no longer placed here, then
    /// sweep dead copies and finish interrupted VDI work.
    Stable(Epoch),
    /// (live) The cluster's status changed (logged).
    StatusChanged(Status),
    /// (live) The cluster shut down and we did not ask for it: stop now.
    Stop,
    /// Apply a VDI record to the VDI table; `reply`: it is our own live proposal, whose
    /// waiter gets the outcome.
    Vdi {
        /// Who proposed it.
        from: NodeId,
        /// The record.
        msg: ClusterMsg,
        /// Answer our waiting proposal with the outcome.
        reply: bool,
        /// We are live: a copy change also distrusts the local copies it moves
        /// (`recovery::copies`).
        live: bool,
    },
    /// (live) The cluster's default copies changed: save the config.
    SaveConfig(SheepdogConfig),
    /// (live) A VDI's copies changed: recover the epoch again as its pass `pass`.
    Repass {
        /// The epoch.
        epoch: Epoch,
        /// Its new pass.
        pass: u32,
    },
    /// A VDI record that does not decode: ignored (and logged).
    Malformed {
        /// Who sent it.
        from: NodeId,
        /// Why it does not decode.
        error: String,
    },
    /// Our own join: reconcile the store with the cluster, persist the history, distrust
    /// our copies, start recovery.
    GoLive,
    /// (live) Publish the fold's view (status, epoch, members, history, ring).
    SyncView,
    /// (live) The cluster waits for nodes of its last epoch: say which.
    LogWait,
}

impl Effect {
    /// The effect's kind, for logs (without its payload, so naming it costs nothing).
    pub fn name(&self) -> &'static str {
        match self {
            Effect::Gone(_) => "gone",
            Effect::LoadLocalVdis => "load local VDIs",
            Effect::ResetVdis => "reset VDIs",
            Effect::AdoptFormat(_) => "adopt format",
            Effect::NewEpoch(_) => "new epoch",
            Effect::Stable(_) => "stable",
            Effect::StatusChanged(_) => "status changed",
            Effect::Stop => "stop",
            Effect::Vdi { .. } => "VDI record",
            Effect::SaveConfig(_) => "save config",
            Effect::Repass { .. } => "recover again",
            Effect::Malformed { .. } => "malformed record",
            Effect::GoLive => "go live",
            Effect::SyncView => "sync view",
            Effect::LogWait => "log wait",
        }
    }
}

/// Whether `rec` is this run's own join (which makes the node live).
pub fn own_join(rec: &Record, cx: &Context) -> bool {
    matches!(&rec.entry, LogEntry::Join { node, incarnation, .. }
        if node.nid == cx.me && *incarnation == cx.incarnation)
}

/// The effects of `rec`, which the fold answered with `outcomes`, in the order they must
/// run.
pub fn plan(rec: &Record, outcomes: Vec<Outcome>, cx: &Context) -> Vec<Effect> {
    let mut out = Vec::new();
    let gone = match &rec.entry {
        LogEntry::Join { node, .. } => Some(node.nid),
        LogEntry::Leave { nid } => Some(*nid),
        _ => None,
    };
    if let Some(nid) = gone {
        out.push(Effect::Gone(nid));
    }
    if !cx.was_formatted
        && cx.formatted
        && !outcomes.iter().any(|o| matches!(o, Outcome::Formatted(_)))
    {
        // FIXME(issue 4): merge the VDI bitmaps of every member, not only ours.
        out.push(Effect::LoadLocalVdis);
    }
    for o in outcomes {
        match o {
            Outcome::Formatted(config) => {
                out.push(Effect::ResetVdis);
                if cx.live {
                    out.push(Effect::AdoptFormat(config));
                }
            }
            Outcome::NewEpoch(e) if cx.live => out.push(Effect::NewEpoch(e)),
            Outcome::Stable(epoch) if cx.live => out.push(Effect::Stable(epoch)),
            Outcome::Status(s) if cx.live => {
                out.push(Effect::StatusChanged(s));
                if s == Status::Shutdown && !cx.shutdown_requested {
                    out.push(Effect::Stop);
                }
            }
            Outcome::Config(config) if cx.live => out.push(Effect::SaveConfig(config)),
            Outcome::NewPass { epoch, pass } if cx.live => {
                out.push(Effect::Repass { epoch, pass });
            }
            Outcome::NewEpoch(_)
            | Outcome::Stable(_)
            | Outcome::Status(_)
            | Outcome::Config(_)
            | Outcome::NewPass { .. } => {}
            Outcome::Notify { from, msg } => out.push(match ClusterMsg::decode(&msg) {
                Ok(msg) => Effect::Vdi {
                    from,
                    msg,
                    reply: cx.live && from == cx.me,
                    live: cx.live,
                },
                Err(error) => Effect::Malformed {
                    from,
                    error: error.to_string(),
                },
            }),
        }
    }
    let own_join = own_join(rec, cx);
    let live = cx.live || own_join;
    if !cx.live && own_join {
        out.push(Effect::GoLive);
    }
    if live {
        out.push(Effect::SyncView);
        if gone.is_some() && cx.status == Status::WaitJoin {
            out.push(Effect::LogWait);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sd_cluster::log::Saved;
    use sd_proto::node::SdNode;

    use super::*;

    fn nid(port: u16) -> NodeId {
        NodeId::from_socket(format!("127.0.0.1:{port}").parse().unwrap())
    }

    const ME: u16 = 7000;
    const RUN: u64 = 42;

    fn cx(live: bool) -> Context {
        Context {
            me: nid(ME),
            incarnation: RUN,
            live,
            shutdown_requested: false,
            was_formatted: true,
            formatted: true,
            status: Status::Ok,
        }
    }

    fn rec(entry: LogEntry) -> Record {
        Record { time: 9, entry }
    }

    fn join(port: u16, incarnation: u64) -> Record {
        let nid = nid(port);
        rec(LogEntry::Join {
            node: SdNode {
                nid,
                io_addr: [0; 16],
                io_port: 0,
                nr_vnodes: 128,
                zone: nid.default_zone(),
                space: 0,
            },
            incarnation,
            saved: Saved {
                config: SheepdogConfig::default(),
                epoch: Epoch(0),
                members: Vec::new(),
            },
        })
    }

    fn leave(port: u16) -> Record {
        rec(LogEntry::Leave { nid: nid(port) })
    }

    fn epoch(n: u32) -> EpochEntry {
        EpochEntry {
            epoch: Epoch(n),
            time: 9,
            members: Vec::new(),
        }
    }

    fn barrier(token: u64) -> ClusterMsg {
        ClusterMsg::Barrier { token }
    }

    fn notify(port: u16, msg: &ClusterMsg) -> Outcome {
        Outcome::Notify {
            from: nid(port),
            msg: msg.encode(),
        }
    }

    fn config() -> SheepdogConfig {
        SheepdogConfig {
            ctime: 5,
            copies: 3,
            ..SheepdogConfig::default()
        }
    }

    #[track_caller]
    fn check(rec: Record, outcomes: Vec<Outcome>, cx: Context, expect: Vec<Effect>) {
        assert_eq!(plan(&rec, outcomes, &cx), expect);
    }

    #[test]
    fn history_before_our_join_touches_nothing_of_ours() {
        // Another node's join, a format and an epoch, read while we catch up: the VDI
        // table learns (reset by the format), the store and view do not.
        let mut c = cx(false);
        c.was_formatted = false;
        check(
            join(7001, 1),
            vec![
                Outcome::Formatted(config()),
                Outcome::NewEpoch(epoch(1)),
                Outcome::Status(Status::Ok),
                Outcome::Stable(Epoch(1)),
            ],
            c,
            vec![Effect::Gone(nid(7001)), Effect::ResetVdis],
        );
    }

    #[test]
    fn our_own_join_makes_us_live_after_its_outcomes() {
        // The epoch our join starts is history to us (GoLive persists the whole history,
        // then recovers the current epoch): no NewEpoch effect of its own.
        check(
            join(ME, RUN),
            vec![Outcome::NewEpoch(epoch(4))],
            cx(false),
            vec![Effect::Gone(nid(ME)), Effect::GoLive, Effect::SyncView],
        );
    }

    #[test]
    fn an_older_run_of_ours_is_not_our_join() {
        // Our previous incarnation's join, found in the log, is history.
        check(
            join(ME, RUN - 1),
            Vec::new(),
            cx(false),
            vec![Effect::Gone(nid(ME))],
        );
    }

    #[test]
    fn a_live_node_follows_epochs_and_publishes_its_view() {
        check(
            leave(7001),
            vec![Outcome::NewEpoch(epoch(5))],
            cx(true),
            vec![
                Effect::Gone(nid(7001)),
                Effect::NewEpoch(epoch(5)),
                Effect::SyncView,
            ],
        );
    }

    #[test]
    fn a_format_while_live_empties_the_store() {
        check(
            rec(LogEntry::Format { config: config() }),
            vec![
                Outcome::Formatted(config()),
                Outcome::NewEpoch(epoch(1)),
                Outcome::Status(Status::Ok),
            ],
            cx(true),
            vec![
                Effect::ResetVdis,
                Effect::AdoptFormat(config()),
                Effect::NewEpoch(epoch(1)),
                Effect::StatusChanged(Status::Ok),
                Effect::SyncView,
            ],
        );
    }

    #[test]
    fn adopting_a_restarted_nodes_state_loads_our_vdis() {
        // The cluster became formatted without a format record: it adopted what a
        // restarted node brought, and the VDIs are read from the inodes on disk.
        let mut c = cx(true);
        c.was_formatted = false;
        check(
            join(7001, 1),
            Vec::new(),
            c,
            vec![
                Effect::Gone(nid(7001)),
                Effect::LoadLocalVdis,
                Effect::SyncView,
            ],
        );
    }

    #[test]
    fn a_shutdown_stops_us_unless_we_asked_for_it() {
        let shutdown = || rec(LogEntry::Shutdown);
        let outcomes = || vec![Outcome::Status(Status::Shutdown)];
        check(
            shutdown(),
            outcomes(),
            cx(true),
            vec![
                Effect::StatusChanged(Status::Shutdown),
                Effect::Stop,
                Effect::SyncView,
            ],
        );
        // The node that asked answers its client first, then stops by itself.
        let mut asked = cx(true);
        asked.shutdown_requested = true;
        check(
            shutdown(),
            outcomes(),
            asked,
            vec![Effect::StatusChanged(Status::Shutdown), Effect::SyncView],
        );
        // Before our join, a shutdown in the log is history.
        check(shutdown(), outcomes(), cx(false), Vec::new());
    }

    #[test]
    fn a_stable_epoch_cleans_up_only_when_live() {
        let done = || {
            rec(LogEntry::RecoveryDone {
                nid: nid(7001),
                epoch: Epoch(3),
                pass: 0,
            })
        };
        check(
            done(),
            vec![Outcome::Stable(Epoch(3))],
            cx(true),
            vec![Effect::Stable(Epoch(3)), Effect::SyncView],
        );
        check(
            done(),
            vec![Outcome::Stable(Epoch(3))],
            cx(false),
            Vec::new(),
        );
    }

    #[test]
    fn vdi_records_apply_always_and_answer_only_our_live_proposals() {
        let msg = barrier(11);
        let vdi = |port, reply, live| Effect::Vdi {
            from: nid(port),
            msg: msg.clone(),
            reply,
            live,
        };
        let r = || {
            rec(LogEntry::Notify {
                from: nid(ME),
                msg: msg.encode(),
            })
        };
        check(
            r(),
            vec![notify(ME, &msg)],
            cx(true),
            vec![vdi(ME, true, true), Effect::SyncView],
        );
        check(
            r(),
            vec![notify(7001, &msg)],
            cx(true),
            vec![vdi(7001, false, true), Effect::SyncView],
        );
        // A proposal of our previous run, read before our join: applied, never answered.
        check(
            r(),
            vec![notify(ME, &msg)],
            cx(false),
            vec![vdi(ME, false, false)],
        );
    }

    #[test]
    fn copy_changes_save_the_config_and_recover_again_only_when_live() {
        let vdi_msg = ClusterMsg::AlterVdiCopy {
            token: 3,
            vid: sd_proto::Vid::new(0x7c_2b25).unwrap(),
            copies: 3,
        };
        let vdi = |live| Effect::Vdi {
            from: nid(7001),
            msg: vdi_msg.clone(),
            reply: false,
            live,
        };
        let r = || {
            rec(LogEntry::Notify {
                from: nid(7001),
                msg: vdi_msg.encode(),
            })
        };
        let outcomes = || {
            vec![
                notify(7001, &vdi_msg),
                Outcome::NewPass {
                    epoch: Epoch(4),
                    pass: 1,
                },
            ]
        };
        check(
            r(),
            outcomes(),
            cx(true),
            vec![
                vdi(true),
                Effect::Repass {
                    epoch: Epoch(4),
                    pass: 1,
                },
                Effect::SyncView,
            ],
        );
        check(r(), outcomes(), cx(false), vec![vdi(false)]);

        // The default: saved before our own proposal is answered.
        let cluster_msg = ClusterMsg::AlterClusterCopy {
            token: 4,
            copies: 2,
        };
        let mut two = config();
        two.copies = 2;
        let r = || {
            rec(LogEntry::Notify {
                from: nid(ME),
                msg: cluster_msg.encode(),
            })
        };
        let outcomes = || vec![Outcome::Config(two.clone()), notify(ME, &cluster_msg)];
        check(
            r(),
            outcomes(),
            cx(true),
            vec![
                Effect::SaveConfig(two.clone()),
                Effect::Vdi {
                    from: nid(ME),
                    msg: cluster_msg.clone(),
                    reply: true,
                    live: true,
                },
                Effect::SyncView,
            ],
        );
        // Before our join it is history: going live saves what the fold learnt.
        check(
            r(),
            outcomes(),
            cx(false),
            vec![Effect::Vdi {
                from: nid(ME),
                msg: cluster_msg.clone(),
                reply: false,
                live: false,
            }],
        );
    }

    #[test]
    fn a_malformed_vdi_record_is_ignored() {
        let out = plan(
            &rec(LogEntry::Notify {
                from: nid(7001),
                msg: vec![0xff; 3],
            }),
            vec![Outcome::Notify {
                from: nid(7001),
                msg: vec![0xff; 3],
            }],
            &cx(true),
        );
        assert!(
            matches!(out.as_slice(), [Effect::Malformed { from, .. }, Effect::SyncView] if *from == nid(7001)),
            "{out:?}"
        );
    }

    #[test]
    fn a_member_coming_or_going_while_waiting_names_the_missing() {
        let mut waiting = cx(true);
        waiting.status = Status::WaitJoin;
        check(
            leave(7001),
            Vec::new(),
            waiting,
            vec![Effect::Gone(nid(7001)), Effect::SyncView, Effect::LogWait],
        );
        // Other records while waiting say nothing new.
        check(
            rec(LogEntry::Shutdown),
            Vec::new(),
            waiting,
            vec![Effect::SyncView],
        );
    }
}
