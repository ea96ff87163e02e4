//! Table tests of the VDI fold (`vdi_fold::apply` over a `VdiTable`): scripts of log
//! records, each with the answer every member computes, checked without a runtime.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use proptest::prelude::*;
use sd_cluster::vdi_fold::apply;
use sd_cluster::{Applied, ClusterMsg, LockOwner, VdiEntry, VdiTable};
use sd_proto::hash::sd_hash_vdi;
use sd_proto::node::NodeId;
use sd_proto::{SdResult, Vid};

/// When every record of the scripts was appended (Unix seconds).
const TIME: u64 = 1_700_000_000;

fn node(i: u16) -> NodeId {
    NodeId::from_socket(format!("127.0.0.1:{}", 7000 + i).parse().unwrap())
}

fn vid(v: u32) -> Vid {
    Vid::new(v).unwrap()
}

/// The vid a fresh name gets in an empty table: its hash.
fn hash(name: &str) -> Vid {
    sd_hash_vdi(name.as_bytes())
}

fn new_vdi(name: &str, base: Option<Vid>, snapshot_of: Option<Vid>, tag: &str) -> ClusterMsg {
    ClusterMsg::NewVdi {
        token: 0,
        name: name.as_bytes().to_vec(),
        size: 1 << 30,
        copies: 3,
        shift: 22,
        copy_policy: 0,
        base,
        snapshot_of,
        tag: tag.as_bytes().to_vec(),
    }
}

fn create(name: &str) -> ClusterMsg {
    new_vdi(name, None, None, "")
}

/// `dog vdi snapshot -s tag name`: the working VDI `w` turns read-only, a copy of it
/// continues as the working VDI.
fn snapshot(name: &str, w: Vid, tag: &str) -> ClusterMsg {
    new_vdi(name, Some(w), Some(w), tag)
}

fn clone_of(name: &str, base: Vid) -> ClusterMsg {
    new_vdi(name, Some(base), None, "")
}

fn del(vid: Vid) -> ClusterMsg {
    ClusterMsg::DelVdi { token: 0, vid }
}

fn lock(vid: Vid, holder: u64) -> ClusterMsg {
    ClusterMsg::Lock {
        token: 0,
        vid,
        holder,
    }
}

fn unlock(vid: Vid, holder: u64) -> ClusterMsg {
    ClusterMsg::Unlock {
        token: 0,
        vid,
        holder,
    }
}

fn settled(vid: Vid) -> ClusterMsg {
    ClusterMsg::Settled { token: 0, vid }
}

/// One record of a script: the node that appended it, the record, the answer.
type Step = (u16, ClusterMsg, Result<Vid, SdResult>);

/// Folds `steps` into `table`, checking each answer.
fn check_on(table: &mut VdiTable, steps: &[Step]) {
    for (i, (from, msg, expect)) in steps.iter().enumerate() {
        let got = apply(table, msg, node(*from), TIME);
        let expect = expect.map(|vid| Applied { vid, time: TIME });
        assert_eq!(got, expect, "step {i}: {msg:?} from node {from}");
    }
}

/// Folds `steps` into an empty table, checking each answer.
fn check(steps: &[Step]) -> VdiTable {
    let mut t = VdiTable::default();
    check_on(&mut t, steps);
    t
}

/// What the fold decided per VDI, in a comparable form (the bitmaps follow from it:
/// [`same_bitmaps`]).
type View = (Vec<(Vid, VdiEntry, Option<LockOwner>, bool)>, Vec<Vid>);

fn view(t: &VdiTable) -> View {
    let mut entries: Vec<_> = t
        .iter()
        .map(|(v, e)| (v, e.clone(), t.lock_owner(v), t.is_unsettled(v)))
        .collect();
    entries.sort_by_key(|e| e.0);
    (entries, t.orphaned())
}

fn same_bitmaps(a: &VdiTable, b: &VdiTable) -> bool {
    a.inuse().as_bytes() == b.inuse().as_bytes() && a.deleted().as_bytes() == b.deleted().as_bytes()
}

fn working(t: &VdiTable, name: &str) -> Result<Vid, SdResult> {
    t.lookup(name.as_bytes(), b"", 0)
        .map(|f| f.vid)
        .map_err(|m| m.result)
}

#[test]
fn creates_allocate_the_same_vids_on_every_table() {
    let test = hash("test");
    assert_eq!(test, vid(0x7c_2b25));
    let script: Vec<Step> = vec![
        (0, create("test"), Ok(test)),
        (1, create("a"), Ok(hash("a"))),
        (2, create("b"), Ok(hash("b"))),
    ];
    // Two members fold the same records from empty tables: same answers, same tables.
    let (a, b) = (check(&script), check(&script));
    assert_eq!(view(&a), view(&b));
    assert!(same_bitmaps(&a, &b));
    let e = a.get(test).unwrap();
    assert_eq!(
        (
            e.name.as_slice(),
            e.snap_id,
            e.snapshot,
            e.parent,
            e.snapshot_of
        ),
        (&b"test"[..], 1, false, None, None)
    );
    assert_eq!(
        (e.nr_copies, e.block_size_shift, e.vdi_size),
        (3, 22, 1 << 30)
    );
    assert_eq!(
        e.create_time,
        TIME << 32,
        "the log's time, as every member sees it"
    );
    assert!(a.is_unsettled(test), "the submitter still writes the inode");
}

#[test]
fn a_taken_name_is_answered_vdi_exist_and_changes_nothing() {
    let mut t = check(&[(0, create("test"), Ok(hash("test")))]);
    let before = view(&t);
    check_on(&mut t, &[(1, create("test"), Err(SdResult::VdiExist))]);
    assert_eq!(view(&t), before);
}

#[test]
fn a_snapshot_marks_the_working_vdi_and_allocates_its_successor() {
    let w = hash("test");
    let next = vid(w.get() + 1);
    let t = check(&[
        (0, create("test"), Ok(w)),
        (0, settled(w), Ok(w)),
        (0, snapshot("test", w, "s1"), Ok(next)),
        // The same snapshot again: `w` is no longer the working VDI.
        (1, snapshot("test", w, "s2"), Err(SdResult::NoVdi)),
    ]);
    let old = t.get(w).unwrap();
    assert_eq!((old.snapshot, old.tag.as_slice()), (true, &b"s1"[..]));
    let new = t.get(next).unwrap();
    assert_eq!(
        (new.snapshot, new.snap_id, new.parent, new.snapshot_of),
        (false, 2, Some(w), Some(w))
    );
    assert_eq!(working(&t, "test"), Ok(next));
    assert_eq!(t.lookup(b"test", b"s1", 0).unwrap().vid, w);
    assert!(t.is_unsettled(next) && !t.is_unsettled(w));
}

#[test]
fn a_snapshot_of_a_vdi_that_is_not_the_working_one_is_refused() {
    let w = hash("test");
    let other = hash("other");
    let mut t = check(&[(0, create("test"), Ok(w)), (0, create("other"), Ok(other))]);
    let before = view(&t);
    check_on(
        &mut t,
        &[
            (0, snapshot("test", other, "s"), Err(SdResult::NoVdi)),
            (0, snapshot("nope", w, "s"), Err(SdResult::NoVdi)),
        ],
    );
    assert_eq!(view(&t), before);
}

#[test]
fn a_snapshot_moves_the_writers_lock_to_the_successor() {
    let w = hash("test");
    let next = vid(w.get() + 1);
    let t = check(&[
        (0, create("test"), Ok(w)),
        (1, lock(w, 5), Ok(w)),
        (0, snapshot("test", w, ""), Ok(next)),
    ]);
    assert_eq!(t.lock_owner(w), None);
    assert_eq!(
        t.lock_owner(next),
        Some(LockOwner {
            node: node(1),
            holder: 5
        })
    );
}

#[test]
fn a_clone_starts_from_a_live_snapshot() {
    let w = hash("base");
    let snap = w;
    let next = vid(w.get() + 1);
    let c = hash("clone");
    let t = check(&[
        (0, create("base"), Ok(w)),
        (0, snapshot("base", w, "gold"), Ok(next)),
        (1, clone_of("clone", snap), Ok(c)),
        (1, clone_of("clone", snap), Err(SdResult::VdiExist)),
        (1, del(snap), Ok(snap)),
        (1, clone_of("clone2", snap), Err(SdResult::BaseVdiRead)),
        (
            1,
            clone_of("clone3", vid(0x12_3456)),
            Err(SdResult::BaseVdiRead),
        ),
    ]);
    let e = t.get(c).unwrap();
    assert_eq!((e.parent, e.snapshot_of, e.snap_id), (Some(snap), None, 1));
    let mut family = vec![next, c];
    family.sort_unstable();
    assert_eq!(
        t.live_descendants(snap),
        family,
        "the deleted snapshot is no longer live"
    );
}

#[test]
fn a_delete_hides_the_vdi_and_keeps_its_bit() {
    let v = hash("test");
    let mut t = check(&[
        (0, create("test"), Ok(v)),
        (0, settled(v), Ok(v)),
        (1, del(v), Ok(v)),
        (1, del(v), Err(SdResult::NoVdi)),
        (1, del(vid(0x12_3456)), Err(SdResult::NoVdi)),
        (1, lock(v, 1), Err(SdResult::NoVdi)),
    ]);
    assert_eq!(working(&t, "test"), Err(SdResult::NoVdi));
    assert!(!t.is_live(v) && t.inuse().get(v) && t.deleted().get(v));
    assert!(
        t.is_unsettled(v),
        "the deleting gateway still frees its objects"
    );
    check_on(&mut t, &[(1, settled(v), Ok(v))]);
    assert!(!t.is_unsettled(v));
    // The name is free again; the deleted vid is not.
    check_on(&mut t, &[(0, create("test"), Ok(vid(v.get() + 1)))]);
}

#[test]
fn a_locked_vdi_cannot_be_deleted() {
    let v = hash("test");
    check(&[
        (0, create("test"), Ok(v)),
        (1, lock(v, 1), Ok(v)),
        (2, del(v), Err(SdResult::VdiLocked)),
        (1, unlock(v, 1), Ok(v)),
        (2, del(v), Ok(v)),
    ]);
}

#[test]
fn locks_belong_to_a_holder_on_a_node() {
    let v = hash("test");
    let t = check(&[
        (0, create("test"), Ok(v)),
        (1, lock(v, 1), Ok(v)),
        (1, lock(v, 1), Ok(v)), // the holder may take it again
        (1, lock(v, 2), Err(SdResult::VdiLocked)),
        (2, lock(v, 1), Err(SdResult::VdiLocked)), // same holder id, other gateway
        (2, unlock(v, 1), Ok(v)),                  // not its lock: nothing released
    ]);
    let a = LockOwner {
        node: node(1),
        holder: 1,
    };
    assert_eq!(t.lock_owner(v), Some(a));
    let mut released = t.clone();
    check_on(
        &mut released,
        &[(1, unlock(v, 1), Ok(v)), (2, lock(v, 7), Ok(v))],
    );
    assert_eq!(
        released.lock_owner(v),
        Some(LockOwner {
            node: node(2),
            holder: 7
        })
    );
    // Holder 0 is a forced unlock (`dog vdi lock unlock`): whoever holds it, from any node.
    let mut forced = t;
    check_on(
        &mut forced,
        &[(2, unlock(v, 0), Ok(v)), (0, lock(v, 3), Ok(v))],
    );
}

#[test]
fn a_release_by_the_snapshotted_vid_reaches_the_moved_lock() {
    let w = hash("test");
    let next = vid(w.get() + 1);
    let t = check(&[
        (0, create("test"), Ok(w)),
        (1, lock(w, 4), Ok(w)),
        (0, snapshot("test", w, ""), Ok(next)),
        // QEMU releases by the vid it opened.
        (1, unlock(w, 4), Ok(w)),
    ]);
    assert_eq!(t.lock_owner(next), None);
}

#[test]
fn an_unlock_of_vid_zero_releases_nothing() {
    let v = hash("test");
    let t = check(&[
        (0, create("test"), Ok(v)),
        (1, lock(v, 1), Ok(v)),
        (2, unlock(vid(0), 0), Ok(vid(0))),
    ]);
    assert!(t.lock_owner(v).is_some());
}

#[test]
fn work_and_locks_of_a_departed_node_are_orphaned() {
    let (a, b, c) = (hash("a"), hash("b"), hash("c"));
    let mut t = check(&[
        (1, create("a"), Ok(a)),
        (2, create("b"), Ok(b)),
        (1, create("c"), Ok(c)),
        (1, settled(c), Ok(c)),
        (1, lock(c, 9), Ok(c)),
        (2, lock(b, 9), Ok(b)),
    ]);
    assert_eq!(t.orphaned(), []);
    // Node 1 leaves (the daemon calls `orphan` on its Leave or restart).
    t.orphan(&node(1));
    assert_eq!(t.orphaned(), [a]);
    assert!(t.is_unsettled(a) && t.is_unsettled(b));
    assert_eq!(t.lock_owner(c), None, "its writers' locks died with it");
    assert!(t.lock_owner(b).is_some(), "node 2's lock stays");
    // Whoever finishes the work confirms it.
    check_on(&mut t, &[(0, settled(a), Ok(a))]);
    assert_eq!(t.orphaned(), []);
    assert!(!t.is_unsettled(a));
}

#[test]
fn a_barrier_changes_nothing() {
    let v = hash("test");
    let mut t = check(&[(0, create("test"), Ok(v)), (1, lock(v, 1), Ok(v))]);
    let before = view(&t);
    check_on(
        &mut t,
        &[(2, ClusterMsg::Barrier { token: 42 }, Ok(Vid::default()))],
    );
    assert_eq!(view(&t), before);
}

fn alter(vid: Vid, copies: u8) -> ClusterMsg {
    ClusterMsg::AlterVdiCopy {
        token: 0,
        vid,
        copies,
    }
}

#[test]
fn a_standalone_vdi_changes_its_copies() {
    let v = hash("test");
    let mut t = check(&[(0, create("test"), Ok(v)), (1, lock(v, 1), Ok(v))]);
    // A writer's lock does not stop it (the VM keeps running).
    check_on(&mut t, &[(2, alter(v, 1), Ok(v)), (0, alter(v, 31), Ok(v))]);
    assert_eq!(t.get(v).unwrap().nr_copies, 31);
    let before = view(&t);
    // Out of range, or no such VDI: refused, nothing changes.
    check_on(
        &mut t,
        &[
            (0, alter(v, 0), Err(SdResult::InvalidParms)),
            (0, alter(v, 32), Err(SdResult::InvalidParms)),
            (0, alter(vid(v.get() + 1), 2), Err(SdResult::NoVdi)),
        ],
    );
    assert_eq!(view(&t), before);
    // Deleted: no VDI any more.
    let mut t = check(&[(0, create("gone"), Ok(hash("gone")))]);
    check_on(
        &mut t,
        &[
            (0, del(hash("gone")), Ok(hash("gone"))),
            (0, alter(hash("gone"), 2), Err(SdResult::NoVdi)),
        ],
    );
}

#[test]
fn a_vdi_sharing_objects_keeps_its_copies() {
    // As Sheepdog 1.0: a snapshot, a VDI snapshotted (its successor shares its objects),
    // a clone, and an erasure-coded VDI are refused.
    let a = hash("test");
    let mut t = check(&[(0, create("test"), Ok(a))]);
    let w = vid(a.get() + 1);
    check_on(&mut t, &[(0, snapshot("test", a, "s1"), Ok(w))]);
    let c = hash("c");
    check_on(&mut t, &[(0, clone_of("c", a), Ok(c))]);
    let ec = hash("ec");
    check_on(
        &mut t,
        &[(
            0,
            ClusterMsg::NewVdi {
                token: 0,
                name: b"ec".to_vec(),
                size: 1 << 30,
                copies: 3,
                shift: 22,
                copy_policy: 0x12,
                base: None,
                snapshot_of: None,
                tag: Vec::new(),
            },
            Ok(ec),
        )],
    );
    let before = view(&t);
    for v in [a, w, c, ec] {
        check_on(&mut t, &[(0, alter(v, 2), Err(SdResult::InvalidParms))]);
    }
    assert_eq!(view(&t), before);
    assert!(t.is_standalone(hash("unrelated")) == t.is_live(hash("unrelated")));
}

#[test]
fn a_cluster_copy_change_is_only_answered_here() {
    let v = hash("test");
    let mut t = check(&[(0, create("test"), Ok(v))]);
    let before = view(&t);
    let msg = |copies| ClusterMsg::AlterClusterCopy { token: 0, copies };
    check_on(
        &mut t,
        &[
            (0, msg(2), Ok(Vid::default())),
            (0, msg(0), Err(SdResult::InvalidParms)),
            (0, msg(32), Err(SdResult::InvalidParms)),
        ],
    );
    assert_eq!(view(&t), before);
}

/// A small world of names and vids, so scripts hit each other's VDIs.
fn small_msg() -> impl Strategy<Value = ClusterMsg> {
    let name = prop::sample::select(vec!["a", "b", "test"]);
    let v = prop::sample::select(vec![
        hash("a"),
        hash("b"),
        hash("test"),
        vid(hash("test").get() + 1),
    ]);
    let ov = prop::option::of(v.clone());
    prop_oneof![
        (name, ov.clone(), ov, "[a-z]{0,2}")
            .prop_map(|(n, base, snap, tag)| new_vdi(n, base, snap, &tag)),
        v.clone().prop_map(del),
        v.clone().prop_map(settled),
        (v.clone(), 0u64..3).prop_map(|(v, h)| lock(v, h)),
        (v.clone(), 0u64..3).prop_map(|(v, h)| unlock(v, h)),
        Just(ClusterMsg::Barrier { token: 0 }),
        (v, 0u8..4).prop_map(|(v, c)| alter(v, c)),
    ]
}

proptest! {
    /// Any script folds to the same answers and the same table on every member.
    #[test]
    fn every_member_folds_a_script_alike(
        script in proptest::collection::vec((0u16..3, small_msg()), 0..40),
    ) {
        let (mut a, mut b) = (VdiTable::default(), VdiTable::default());
        for (from, msg) in &script {
            let ra = apply(&mut a, msg, node(*from), TIME);
            let rb = apply(&mut b, msg, node(*from), TIME);
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(view(&a), view(&b));
        prop_assert!(same_bitmaps(&a, &b));
    }

    /// Arbitrary log bytes: whatever decodes folds without panicking.
    #[test]
    fn malformed_records_never_panic_the_fold(
        records in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..20),
    ) {
        let mut t = VdiTable::default();
        for bytes in &records {
            if let Ok(msg) = ClusterMsg::decode(bytes) {
                let _ = apply(&mut t, &msg, node(0), TIME);
            }
        }
    }
}
