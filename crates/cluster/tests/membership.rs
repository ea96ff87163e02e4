//! Table-style tests of the membership fold and the log record codec.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use proptest::prelude::*;
use sd_cluster::log::{LogEntry, Record, Saved};
use sd_cluster::{ClusterMsg, Membership, Outcome, Status};
use sd_proto::Epoch;
use sd_proto::cluster::SheepdogConfig;
use sd_proto::node::{NodeId, SdNode};

fn node(i: u16) -> SdNode {
    SdNode {
        nid: NodeId::from_socket(format!("127.0.0.1:{}", 7000 + i).parse().unwrap()),
        nr_vnodes: 128,
        zone: u32::from(i),
        ..SdNode::default()
    }
}

fn config(copies: u8) -> SheepdogConfig {
    SheepdogConfig {
        ctime: 42 << 32,
        copies,
        store: b"plain".to_vec(),
        block_size_shift: 22,
        version: 6,
        ..SheepdogConfig::default()
    }
}

fn fresh() -> Saved {
    Saved {
        config: SheepdogConfig::default(),
        epoch: Epoch(0),
        members: vec![],
    }
}

fn rec(entry: LogEntry) -> Record {
    Record { time: 100, entry }
}

fn join(i: u16, saved: Saved) -> Record {
    rec(LogEntry::Join {
        node: node(i),
        incarnation: u64::from(i),
        saved,
    })
}

fn leave(i: u16) -> Record {
    rec(LogEntry::Leave { nid: node(i).nid })
}

fn run(m: &mut Membership, recs: &[Record]) -> Vec<Outcome> {
    recs.iter().flat_map(|r| m.apply(r)).collect()
}

fn ports(m: &Membership) -> Vec<u16> {
    m.members().iter().map(|n| n.nid.port - 7000).collect()
}

#[test]
fn joins_leaves_and_format_bump_epochs_in_order() {
    let mut m = Membership::default();
    run(
        &mut m,
        &[join(0, fresh()), join(1, fresh()), join(2, fresh())],
    );
    assert_eq!((m.status(), m.epoch()), (Status::WaitFormat, Epoch(0)));
    let out = run(&mut m, &[rec(LogEntry::Format { config: config(2) })]);
    assert!(matches!(out[0], Outcome::Formatted(_)));
    assert_eq!((m.status(), m.epoch()), (Status::Ok, Epoch(1)));
    run(&mut m, &[leave(1)]);
    assert_eq!((m.epoch(), ports(&m)), (Epoch(2), vec![0, 2]));
    // A duplicate leave (two members noticed the death) changes nothing.
    assert!(run(&mut m, &[leave(1)]).is_empty());
    run(&mut m, &[join(1, fresh())]);
    assert_eq!((m.epoch(), ports(&m)), (Epoch(3), vec![0, 1, 2]));
    // A restart without a leave in between still bumps the epoch (the node must recover).
    run(&mut m, &[join(2, fresh())]);
    assert_eq!((m.epoch(), ports(&m)), (Epoch(4), vec![0, 1, 2]));
    let epochs: Vec<u32> = m.history().iter().map(|e| e.epoch.get()).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4]);
}

#[test]
fn losing_copies_nodes_at_once_waits_until_enough_return() {
    let mut m = Membership::default();
    let joins: Vec<Record> = (0..5).map(|i| join(i, fresh())).collect();
    run(&mut m, &joins);
    run(&mut m, &[rec(LogEntry::Format { config: config(3) })]);
    run(&mut m, &[leave(0), leave(1)]);
    assert_eq!((m.status(), m.epoch()), (Status::Ok, Epoch(3)));
    run(&mut m, &[leave(2)]);
    assert_eq!(m.status(), Status::WaitJoin);
    assert_eq!(m.epoch(), Epoch(3));
    assert_eq!(m.waiting_for().len(), 3);
    run(&mut m, &[join(1, fresh())]);
    assert_eq!((m.status(), m.epoch()), (Status::Ok, Epoch(4)));
}

#[test]
fn recovery_done_everywhere_makes_the_view_stable() {
    let mut m = Membership::default();
    let joins: Vec<Record> = (0..4).map(|i| join(i, fresh())).collect();
    run(&mut m, &joins);
    run(&mut m, &[rec(LogEntry::Format { config: config(2) })]);
    run(&mut m, &[leave(0)]);
    // Epoch 2 recovered by every member: losing one more is survivable again.
    let done: Vec<Record> = (1..4)
        .map(|i| {
            rec(LogEntry::RecoveryDone {
                nid: node(i).nid,
                epoch: Epoch(2),
                pass: 0,
            })
        })
        .collect();
    assert_eq!(m.stable_epoch(), Epoch(0));
    run(&mut m, &done);
    assert_eq!(m.stable_epoch(), Epoch(2));
    run(&mut m, &[leave(1)]);
    assert_eq!(m.status(), Status::Ok);
    // Without recovery, a second loss of copies=2 nodes since the stable view waits.
    run(&mut m, &[leave(2)]);
    assert_eq!(m.status(), Status::WaitJoin);
}

#[test]
fn a_restarted_cluster_waits_for_every_node_of_its_last_epoch() {
    let saved = Saved {
        config: config(2),
        epoch: Epoch(7),
        members: vec![node(0), node(1), node(2)],
    };
    let mut m = Membership::default();
    run(&mut m, &[join(0, saved.clone()), join(1, saved.clone())]);
    assert_eq!(m.status(), Status::WaitJoin);
    assert_eq!(m.waiting_for(), vec![node(2).nid]);
    let out = run(&mut m, &[join(2, saved)]);
    assert!(out.contains(&Outcome::Status(Status::Ok)));
    assert_eq!(m.epoch(), Epoch(8));
    assert_eq!(m.config().ctime, 42 << 32);
}

#[test]
fn shutdown_and_notifications_pass_through() {
    let mut m = Membership::default();
    let msg = LogEntry::Notify {
        from: node(0).nid,
        msg: b"hello".to_vec(),
    };
    assert_eq!(
        run(&mut m, &[rec(msg)]),
        vec![Outcome::Notify {
            from: node(0).nid,
            msg: b"hello".to_vec()
        }]
    );
    run(&mut m, &[rec(LogEntry::Shutdown)]);
    assert_eq!(m.status(), Status::Shutdown);
}

/// `RecoveryDone` of `epoch`'s pass `pass` from nodes `nodes`.
fn done(nodes: std::ops::Range<u16>, epoch: u32, pass: u32) -> Vec<Record> {
    nodes
        .map(|i| {
            rec(LogEntry::RecoveryDone {
                nid: node(i).nid,
                epoch: Epoch(epoch),
                pass,
            })
        })
        .collect()
}

fn notify(msg: &ClusterMsg) -> Record {
    rec(LogEntry::Notify {
        from: node(0).nid,
        msg: msg.encode(),
    })
}

#[test]
fn a_vdi_copy_change_starts_a_pass_whose_reports_alone_make_the_epoch_stable() {
    let mut m = formatted(3, 2);
    assert_eq!((m.epoch(), m.pass()), (Epoch(1), 0));
    let alter = ClusterMsg::AlterVdiCopy {
        token: 7,
        vid: sd_proto::Vid::new(0x7c_2b25).unwrap(),
        copies: 3,
    };
    // The record is answered first, then every member recovers epoch 1 again.
    assert_eq!(
        run(&mut m, &[notify(&alter)]),
        vec![
            Outcome::Notify {
                from: node(0).nid,
                msg: alter.encode()
            },
            Outcome::NewPass {
                epoch: Epoch(1),
                pass: 1
            }
        ]
    );
    assert_eq!((m.epoch(), m.pass()), (Epoch(1), 1));
    // Reports of the pass before (in flight when the copies changed) do not count.
    assert_eq!(run(&mut m, &done(0..3, 1, 0)), vec![]);
    assert_eq!(m.stable_epoch(), Epoch(0));
    assert_eq!(run(&mut m, &done(0..2, 1, 1)), vec![]);
    assert_eq!(
        run(&mut m, &done(2..3, 1, 1)),
        vec![Outcome::Stable(Epoch(1))]
    );
    assert_eq!(m.stable_epoch(), Epoch(1));
    // Another change, then a new epoch: its recovery starts at pass 0 again.
    run(&mut m, &[notify(&alter)]);
    assert_eq!(m.pass(), 2);
    run(&mut m, &[leave(2)]);
    assert_eq!((m.epoch(), m.pass()), (Epoch(2), 0));
    assert_eq!(
        run(&mut m, &done(0..2, 2, 0)),
        vec![Outcome::Stable(Epoch(2))]
    );
}

#[test]
fn a_vdi_copy_change_while_waiting_starts_no_pass() {
    let mut m = formatted(3, 2);
    run(&mut m, &[leave(0), leave(1)]);
    assert_eq!(m.status(), Status::WaitJoin);
    let alter = ClusterMsg::AlterVdiCopy {
        token: 7,
        vid: sd_proto::Vid::new(0x7c_2b25).unwrap(),
        copies: 3,
    };
    let out = run(&mut m, &[notify(&alter)]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(m.pass(), 0);
}

#[test]
fn a_cluster_copy_change_sets_the_default_in_the_config() {
    let mut m = formatted(3, 3);
    let alter = |copies| ClusterMsg::AlterClusterCopy { token: 1, copies };
    let out = run(&mut m, &[notify(&alter(2))]);
    let mut want = config(3);
    want.copies = 2;
    assert_eq!(
        out,
        vec![
            Outcome::Config(want.clone()),
            Outcome::Notify {
                from: node(0).nid,
                msg: alter(2).encode()
            }
        ]
    );
    assert_eq!(m.config(), &want);
    assert_eq!(m.pass(), 0, "no object moves");
    // Out of range, or unchanged: nothing happens (the VDI fold refuses the first).
    for copies in [0, 32, 2] {
        let out = run(&mut m, &[notify(&alter(copies))]);
        assert_eq!(out.len(), 1, "{copies}: {out:?}");
        assert_eq!(m.config().copies, 2);
    }
    // Restarted members bring it back in their saved config.
    let r = rejoin(1, &m);
    let LogEntry::Join { saved, .. } = &r.entry else {
        unreachable!()
    };
    assert_eq!(saved.config.copies, 2);
    // An unformatted cluster has no default to change.
    let mut u = Membership::default();
    run(&mut u, &[join(0, fresh()), notify(&alter(2))]);
    assert_eq!(u.config(), &SheepdogConfig::default());
}

#[test]
fn recovery_done_records_keep_the_first_layout_for_pass_0() {
    let nid = node(0).nid;
    let r = |pass| Record {
        time: 0x0102,
        entry: LogEntry::RecoveryDone {
            nid,
            epoch: Epoch(5),
            pass,
        },
    };
    // time u64, kind, nid (16-byte address, port), epoch u32[, pass u32]
    let mut v5 = vec![0x02, 0x01, 0, 0, 0, 0, 0, 0, 5];
    v5.extend_from_slice(&nid.addr);
    v5.extend_from_slice(&[0x58, 0x1b, 5, 0, 0, 0]);
    assert_eq!(r(0).encode(), v5);
    assert_eq!(Record::decode(&v5).unwrap(), r(0));
    let mut v7 = v5.clone();
    v7[8] = 7;
    v7.extend_from_slice(&[3, 0, 0, 0]);
    assert_eq!(r(3).encode(), v7);
    assert_eq!(Record::decode(&v7).unwrap(), r(3));
    // A kind 7 record without its pass is not a record.
    assert!(Record::decode(&v7[..v7.len() - 1]).is_err());
}

fn formatted(n: u16, copies: u8) -> Membership {
    let mut m = Membership::default();
    let joins: Vec<Record> = (0..n).map(|i| join(i, fresh())).collect();
    run(&mut m, &joins);
    run(
        &mut m,
        &[rec(LogEntry::Format {
            config: config(copies),
        })],
    );
    m
}

fn epochs(m: &Membership) -> Vec<u32> {
    m.history().iter().map(|e| e.epoch.get()).collect()
}

/// A node's restart: it brings the state it saved on its disk.
fn rejoin(i: u16, m: &Membership) -> Record {
    join(
        i,
        Saved {
            config: m.config().clone(),
            epoch: m.epoch(),
            members: m.history().last().unwrap().members.clone(),
        },
    )
}

#[test]
fn a_shut_down_cluster_starts_again_once_its_last_epoch_is_back() {
    // Check both shapes of the log: the local driver records the old incarnations' leaves
    // before the first join; ZooKeeper's joins replace them and their leaves come later.
    for leaves_first in [true, false] {
        let mut m = formatted(3, 3);
        let out = run(&mut m, &[rec(LogEntry::Shutdown)]);
        assert_eq!(out, vec![Outcome::Status(Status::Shutdown)]);
        if leaves_first {
            run(&mut m, &[leave(0), leave(1), leave(2)]);
            assert_eq!(m.status(), Status::Shutdown);
        }
        let r0 = rejoin(0, &m);
        run(&mut m, &[r0]);
        assert_eq!(m.status(), Status::WaitJoin, "leaves first: {leaves_first}");
        assert_eq!(ports(&m), vec![0], "old incarnations are not members");
        assert_eq!(m.waiting_for(), vec![node(1).nid, node(2).nid]);
        let r1 = rejoin(1, &m);
        run(&mut m, &[r1, leave(2)]);
        assert_eq!(m.status(), Status::WaitJoin);
        assert_eq!(m.waiting_for(), vec![node(2).nid]);
        let r2 = rejoin(2, &m);
        let out = run(&mut m, &[r2]);
        assert!(out.contains(&Outcome::Status(Status::Ok)));
        assert_eq!((m.epoch(), ports(&m)), (Epoch(2), vec![0, 1, 2]));
        assert_eq!(epochs(&m), vec![1, 2], "the history goes on");
        // Leaves of old incarnations appended late change nothing.
        assert!(run(&mut m, &[leave(7)]).is_empty());
    }
}

#[test]
fn a_shutdown_while_a_node_is_down_waits_for_the_last_epoch_only() {
    let mut m = formatted(4, 2);
    run(&mut m, &[leave(3)]);
    assert_eq!(m.epoch(), Epoch(2));
    run(
        &mut m,
        &[rec(LogEntry::Shutdown), leave(0), leave(1), leave(2)],
    );
    // The node that was down starts first: it is not what the cluster waits for.
    let saved_3 = Saved {
        config: config(2),
        epoch: Epoch(1),
        members: (0..4).map(node).collect(),
    };
    run(&mut m, &[join(3, saved_3)]);
    assert_eq!(m.status(), Status::WaitJoin);
    assert_eq!(m.waiting_for(), vec![node(0).nid, node(1).nid, node(2).nid]);
    let (r0, r1, r2) = (rejoin(0, &m), rejoin(1, &m), rejoin(2, &m));
    run(&mut m, &[r0, r1]);
    assert_eq!(m.status(), Status::WaitJoin);
    run(&mut m, &[r2]);
    assert_eq!(m.status(), Status::Ok);
    assert_eq!((m.epoch(), ports(&m)), (Epoch(3), vec![0, 1, 2, 3]));
}

#[test]
fn a_cluster_whose_members_all_left_waits_for_the_last_one() {
    // Clean stops one after the other: the last node holds writes the others never saw.
    let mut m = formatted(3, 3);
    run(&mut m, &[leave(0), leave(1)]);
    assert_eq!(
        (m.status(), m.epoch(), ports(&m)),
        (Status::Ok, Epoch(3), vec![2])
    );
    run(&mut m, &[leave(2)]);
    assert_eq!((m.status(), m.epoch()), (Status::WaitJoin, Epoch(3)));
    assert_eq!(m.waiting_for(), vec![node(2).nid]);
    let (r0, r1) = (rejoin(0, &m), rejoin(1, &m));
    run(&mut m, &[r0, r1]);
    assert_eq!(
        m.status(),
        Status::WaitJoin,
        "a node without the newest writes"
    );
    let r2 = rejoin(2, &m);
    run(&mut m, &[r2]);
    assert_eq!(
        (m.status(), m.epoch(), ports(&m)),
        (Status::Ok, Epoch(4), vec![0, 1, 2])
    );
}

#[test]
fn a_node_still_recovering_never_runs_alone() {
    // Node 1 was away (epoch 2: nodes 0 and 2 hold every object, copies=3 on two nodes),
    // came back (epoch 3) and had not finished recovering when every node was killed. The
    // node restarting first records the others' deaths; it must not run alone on its stale
    // copies: losing both nodes of a two-node stable view may lose every copy.
    let mut m = formatted(3, 3);
    run(&mut m, &[leave(1)]);
    let done: Vec<Record> = [0, 2]
        .into_iter()
        .map(|i| {
            rec(LogEntry::RecoveryDone {
                nid: node(i).nid,
                epoch: Epoch(2),
                pass: 0,
            })
        })
        .collect();
    run(&mut m, &done);
    let r1 = rejoin(1, &m);
    run(&mut m, &[r1]);
    assert_eq!((m.status(), m.epoch()), (Status::Ok, Epoch(3)));
    run(&mut m, &[leave(0), leave(2)]);
    assert_eq!(m.status(), Status::WaitJoin);
    assert_eq!(m.waiting_for(), vec![node(0).nid, node(2).nid]);
    let r1 = rejoin(1, &m);
    run(&mut m, &[r1]);
    assert_eq!(m.status(), Status::WaitJoin, "node 1 alone");
    let r2 = rejoin(2, &m);
    run(&mut m, &[r2]);
    assert_eq!(
        m.status(),
        Status::Ok,
        "one node of the stable view is enough"
    );
}

#[test]
fn an_unformatted_cluster_shut_down_waits_for_format_again() {
    let mut m = Membership::default();
    run(&mut m, &[join(0, fresh()), rec(LogEntry::Shutdown)]);
    run(&mut m, &[join(0, fresh())]);
    assert_eq!((m.status(), m.epoch()), (Status::WaitFormat, Epoch(0)));
}

fn entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        (0u16..50, 0u32..9, 0usize..4).prop_map(|(i, e, n)| LogEntry::Join {
            node: node(i),
            incarnation: u64::from(e) << 7,
            saved: Saved {
                config: config(3),
                epoch: Epoch(e),
                members: (0..n as u16).map(node).collect()
            }
        }),
        (0u16..50).prop_map(|i| LogEntry::Leave { nid: node(i).nid }),
        Just(LogEntry::Format { config: config(2) }),
        Just(LogEntry::Shutdown),
        (
            0u16..50,
            any::<u32>(),
            prop_oneof![Just(0u32), any::<u32>()]
        )
            .prop_map(|(i, e, pass)| LogEntry::RecoveryDone {
                nid: node(i).nid,
                epoch: Epoch(e),
                pass
            }),
        (0u16..50, 0u32..(1 << 24), 0u8..40).prop_map(|(i, v, copies)| LogEntry::Notify {
            from: node(i).nid,
            msg: ClusterMsg::AlterVdiCopy {
                token: 1,
                vid: sd_proto::Vid::from_masked(v),
                copies
            }
            .encode()
        }),
        (0u16..50, 0u8..40).prop_map(|(i, copies)| LogEntry::Notify {
            from: node(i).nid,
            msg: ClusterMsg::AlterClusterCopy { token: 1, copies }.encode()
        }),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|msg| LogEntry::Notify {
            from: node(1).nid,
            msg
        }),
    ]
}

proptest! {
    #[test]
    fn records_round_trip(time in any::<u64>(), e in entry()) {
        let r = Record { time, entry: e };
        prop_assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn record_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Record::decode(&bytes);
    }

    /// Two members folding the same log agree on everything.
    #[test]
    fn folds_are_deterministic(entries in proptest::collection::vec(entry(), 0..40)) {
        let recs: Vec<Record> = entries.into_iter().map(rec).collect();
        let (mut a, mut b) = (Membership::default(), Membership::default());
        let oa = run(&mut a, &recs);
        let ob = run(&mut b, &recs);
        prop_assert_eq!(oa, ob);
        prop_assert_eq!(a, b);
    }
}
