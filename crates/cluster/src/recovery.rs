//! Recovery's choice of the copy an object is recovered from: pure decisions over what the
//! live members answered, so that the daemon's recovery only does the I/O around them.
//!
//! Two strategies, tried in this order:
//! - **By version** ([`choose_source`]): every copy carries the epoch of its last write, and
//!   every write acknowledged in an epoch reached all of that epoch's holders, so the copy
//!   with the highest version holds every acknowledged write the others do. Each live member
//!   is asked for its version ([`Probe`]); ours counts too and is kept on a tie.
//! - **By placement** ([`placement_sources`], [`placement_fallback`]): when no copy carries a
//!   version (a file system without user extended attributes) or a member predates
//!   FETCH_PEER, the holders of earlier epochs are tried, newest epoch first, then the
//!   current holders.
//!
//! **Invariant**: a member that could not answer may hold a newer copy than any seen, so
//! the by-version choice never keeps or fetches a copy while one is busy; it waits
//! ([`SourceChoice::Again`]).

use std::collections::HashSet;

use sd_proto::node::NodeId;
use sd_proto::peer_copy::SUSPECT;
use sd_proto::{Epoch, Oid, SdResult};

use crate::membership::EpochEntry;
use crate::placement::Ring;

/// What a live member answered when asked for the version of its copy of an object
/// (FETCH_PEER without room for data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// It has a copy, last written in this epoch (0: unknown, the copy carries no version).
    Version(u32),
    /// It has a copy last written in this epoch, but restarted after an unclean stop and
    /// has not compared it with the others yet (`sd_proto::peer_copy::SUSPECT`).
    Suspect(u32),
    /// It has no copy.
    Missing,
    /// It could not answer now (unreachable, still applying the epoch, an I/O error): it
    /// may hold the newest copy.
    Busy,
    /// It does not know FETCH_PEER (a sheep of an older version, during a rolling upgrade).
    Unsupported,
}

impl Probe {
    /// Classifies the answer to a version probe: `Ok(version)` of a copy, or the result code
    /// it was refused with (a transport failure counts as `NETWORK_ERROR`). NO_OBJ means
    /// no copy, INVALID_PARMS is how an older sheep refuses an opcode it does not know,
    /// and any other failure leaves the member's copy unknown.
    pub fn from_answer(answer: Result<u32, SdResult>) -> Probe {
        match answer {
            Ok(v) if v & SUSPECT != 0 => Probe::Suspect(v & !SUSPECT),
            Ok(version) => Probe::Version(version),
            Err(SdResult::NoObj) => Probe::Missing,
            Err(SdResult::InvalidParms) => Probe::Unsupported,
            Err(_) => Probe::Busy,
        }
    }
}

impl Probe {
    /// The version of the copy it reported, if it has one.
    pub fn version(self) -> Option<u32> {
        match self {
            Probe::Version(v) | Probe::Suspect(v) => Some(v),
            _ => None,
        }
    }
}

/// Why the local copy is kept as it is (see [`SourceChoice::KeepLocal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeepReason {
    /// Every member answered and none has a copy: ours is the only live one.
    OnlyLiveCopy,
    /// Ours is at least as new as `newest`, the newest version a member holds (a tie
    /// keeps ours: it holds the same acknowledged writes).
    Newest {
        /// The highest version among the members' copies.
        newest: u32,
    },
}

/// Where the local copy of an object is brought up to date from, decided by
/// [`choose_source`] from the members' version probes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceChoice {
    /// Versions cannot decide (a member does not know FETCH_PEER, or no copy carries a
    /// version): try the sources of [`placement_sources`] in order, then
    /// [`placement_fallback`].
    ByPlacement,
    /// Nothing to fetch: the local copy stays as it is.
    KeepLocal(KeepReason),
    /// Fetch the copy of `version` from the first member of `from` that serves it; if none
    /// does, wait and retry (AGAIN).
    Fetch {
        /// The newest version any member reported; newer than the local copy's, or as new
        /// when ours is suspect (see [`choose_source_with`]).
        version: u32,
        /// Every member that reported `version`, in the order the members were given.
        /// Never empty.
        from: Vec<NodeId>,
    },
    /// Wait and retry (AGAIN): a member that could not answer may hold a newer copy than
    /// any seen, or the only one.
    Again,
    /// No live copy: every member answered that it has none, and this node has none
    /// either (NO_OBJ).
    Lost,
}

/// Chooses where the local copy of an object is recovered from, given each live member's
/// answer to the version probe (`answers`, this node excluded, in member order) and the
/// version of the local copy (`mine`: `None` without one, `Some(0)` for a copy without a
/// version).
///
/// The rules, first match wins:
/// 1. a member does not know FETCH_PEER: [`SourceChoice::ByPlacement`];
/// 2. no member has a copy: a member is busy → [`SourceChoice::Again`]; else a local copy →
///    [`KeepReason::OnlyLiveCopy`]; else [`SourceChoice::Lost`];
/// 3. the newest version is 0 and so is ours (or we have none): no versions to compare,
///    [`SourceChoice::ByPlacement`];
/// 4. a member is busy: [`SourceChoice::Again`];
/// 5. ours is at least as new as the newest: [`KeepReason::Newest`];
/// 6. else [`SourceChoice::Fetch`] from the members holding the newest version.
pub fn choose_source(answers: &[(NodeId, Probe)], mine: Option<u32>) -> SourceChoice {
    choose_source_with(answers, mine, None)
}

/// Why the local copy of an object is not trusted as it is, for [`choose_source_with`]:
/// this node restarted after an unclean stop and has not compared it with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspect<'a> {
    /// This node.
    pub me: NodeId,
    /// The copy may lack writes acknowledged before the stop (writeback: they were in the
    /// page cache): a trusted copy of the same version is fetched rather than ours kept.
    /// Without it (writethrough: every acknowledged write was durable), ours is kept.
    pub lossy: bool,
    /// When every copy of the newest version is suspect (every holder stopped uncleanly,
    /// as in a power cut of the whole cluster), the first of these nodes holding one wins
    /// ([`suspect_order`]): every holder computes the same winner, so the copies end up
    /// identical even where unacknowledged writes reached only some.
    pub order: &'a [NodeId],
}

/// The order in which suspect copies win ([`Suspect::order`]): the nodes of `members`
/// that stayed in the cluster longest before their last absence come first (from the
/// epoch history every member shares), then by `placement` (the object's current
/// replicas), then by node. A node that left before the others may have missed writes a
/// flush made durable without it; one that stayed to the end has every flushed write.
/// `history` is the epoch log, oldest first.
pub fn suspect_order(
    history: &[EpochEntry],
    members: &[NodeId],
    placement: &[NodeId],
) -> Vec<NodeId> {
    let mut order = members.to_vec();
    order.sort_by_key(|n| {
        let stayed = stayed_until(history, *n);
        let pos = placement.iter().position(|p| p == n).unwrap_or(usize::MAX);
        (std::cmp::Reverse(stayed), pos, *n)
    });
    order.dedup();
    order
}

/// The last epoch `nid` was a member of before its last absence from the cluster (the
/// newest epoch it belongs to if it was never absent after joining).
fn stayed_until(history: &[EpochEntry], nid: NodeId) -> Epoch {
    let member = |e: &EpochEntry| e.members.iter().any(|m| m.nid == nid);
    let mut last_member = Epoch(0);
    let mut before_gap = Epoch(0);
    for e in history {
        if member(e) {
            last_member = e.epoch;
        } else if last_member > before_gap {
            before_gap = last_member;
        }
    }
    if before_gap == Epoch(0) {
        last_member
    } else {
        before_gap
    }
}

/// [`choose_source`], for a local copy that may be [`Suspect`] (`None`: trusted), with
/// members' copies answered as [`Probe::Suspect`] too. Rules 1 to 4 are the same; then:
/// 5. ours is newer than every member's copy: kept;
/// 6. ours is as new as the newest and trusted: kept;
/// 7. ours is as new as the newest and suspect: a trusted member holds that version →
///    fetched from it if ours is `lossy`, else kept; no trusted member does → the first
///    holder in `order` (ours included) wins: kept if that is us, else fetched from it;
/// 8. else fetched from the members holding the newest version, trusted ones first, then
///    suspect ones in `order`.
pub fn choose_source_with(
    answers: &[(NodeId, Probe)],
    mine: Option<u32>,
    suspect: Option<&Suspect<'_>>,
) -> SourceChoice {
    let probes = || answers.iter().map(|&(_, p)| p);
    if probes().any(|p| p == Probe::Unsupported) {
        return SourceChoice::ByPlacement;
    }
    let busy = probes().any(|p| p == Probe::Busy);
    let best = probes().filter_map(Probe::version).max();
    let Some(best) = best else {
        if busy {
            return SourceChoice::Again;
        }
        if mine.is_some() {
            return SourceChoice::KeepLocal(KeepReason::OnlyLiveCopy);
        }
        return SourceChoice::Lost;
    };
    if best == 0 && mine.unwrap_or(0) == 0 {
        return SourceChoice::ByPlacement;
    }
    if busy {
        return SourceChoice::Again;
    }
    let keep = SourceChoice::KeepLocal(KeepReason::Newest { newest: best });
    let trusted: Vec<NodeId> = answers
        .iter()
        .filter(|&&(_, p)| p == Probe::Version(best))
        .map(|&(n, _)| n)
        .collect();
    let rank = |n: &NodeId| {
        let pos = suspect.and_then(|s| s.order.iter().position(|o| o == n));
        (pos.unwrap_or(usize::MAX), *n)
    };
    let mut suspects: Vec<NodeId> = answers
        .iter()
        .filter(|&&(_, p)| p == Probe::Suspect(best))
        .map(|&(n, _)| n)
        .collect();
    suspects.sort_by_key(rank);
    match (mine, suspect) {
        (Some(v), _) if v > best => return keep,
        (Some(v), None) if v >= best => return keep,
        (Some(v), Some(s)) if v == best => {
            if !trusted.is_empty() {
                if !s.lossy {
                    return keep;
                }
                return SourceChoice::Fetch {
                    version: best,
                    from: trusted,
                };
            }
            return match suspects.first() {
                Some(w) if rank(w) < rank(&s.me) => SourceChoice::Fetch {
                    version: best,
                    from: vec![*w],
                },
                _ => keep,
            };
        }
        _ => {}
    }
    let mut from = trusted;
    from.extend(suspects);
    SourceChoice::Fetch {
        version: best,
        from,
    }
}

/// The choice for a *stale* local copy, made from [`choose_source_with`]'s: a leftover copy
/// a change of its VDI's copy count placed on this node again. It missed the writes made
/// while it was placed elsewhere, yet its version may equal the newest (versions are
/// epochs, and a copy change keeps the epoch), so a tie no longer keeps it: it is fetched
/// from the members holding that version, trusted ones first (the caller may still keep
/// it when its bytes match theirs). A strictly newer copy, or the only one, is kept.
pub fn stale_loses_ties(
    choice: SourceChoice,
    answers: &[(NodeId, Probe)],
    mine: Option<u32>,
) -> SourceChoice {
    let SourceChoice::KeepLocal(KeepReason::Newest { newest }) = choice else {
        return choice;
    };
    if mine != Some(newest) {
        return choice;
    }
    let holding = |want: Probe| answers.iter().filter(move |&&(_, p)| p == want);
    let from: Vec<NodeId> = holding(Probe::Version(newest))
        .chain(holding(Probe::Suspect(newest)))
        .map(|&(n, _)| n)
        .collect();
    if from.is_empty() {
        return choice;
    }
    SourceChoice::Fetch {
        version: newest,
        from,
    }
}

/// The nodes to fetch `oid` from, in order, when copies carry no version: for each epoch of
/// `history` older than `epoch`, newest first, the holders of `oid` (`copies` replicas on
/// that epoch's ring) that are `alive`; then, as a last resort, the holders on the
/// `current` ring (they may have recovered it already). `me` never appears, nor any node
/// twice.
///
/// `history` is the epoch log in its order (oldest first, as the membership keeps it);
/// `alive` is the current members. Only the earlier epochs' holders are checked against
/// `alive`: the current ring's holders are current members by construction.
pub fn placement_sources(
    me: NodeId,
    alive: &HashSet<NodeId>,
    history: &[EpochEntry],
    current: &Ring,
    epoch: Epoch,
    oid: Oid,
    copies: usize,
) -> Vec<NodeId> {
    let mut sources = Vec::new();
    for h in history.iter().rev().filter(|h| h.epoch < epoch) {
        for n in Ring::new(&h.members).replicas(oid, copies) {
            if n.nid != me && alive.contains(&n.nid) && !sources.contains(&n.nid) {
                sources.push(n.nid);
            }
        }
    }
    for n in current.replicas(oid, copies) {
        if n.nid != me && !sources.contains(&n.nid) {
            sources.push(n.nid);
        }
    }
    sources
}

/// Who may hold strip `index` of erasure-coded object `oid` (of `total` strips, strip `i`
/// on the `i`-th node of the object's placement): the current ring's holder of that index
/// first, then the holder of that index in each of `earlier` (newest first) that is in
/// `alive`, each node once.
pub fn strip_sources(
    alive: &HashSet<NodeId>,
    current: &Ring,
    earlier: &[&Ring],
    oid: Oid,
    total: usize,
    index: usize,
) -> Vec<NodeId> {
    let mut sources = Vec::new();
    if let Some(n) = current.replicas(oid, total).get(index) {
        sources.push(n.nid);
    }
    for ring in earlier {
        if let Some(n) = ring.replicas(oid, total).get(index)
            && alive.contains(&n.nid)
            && !sources.contains(&n.nid)
        {
            sources.push(n.nid);
        }
    }
    sources
}

/// Why one of the [`placement_sources`] did not serve the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFailure {
    /// It answered with this result code instead of the object.
    Refused(SdResult),
    /// No answer to act on: unreachable, timed out, or the cluster left the epoch first.
    Unreachable,
}

impl SourceFailure {
    /// Whether the source may serve the object later: it could not be reached, or it was
    /// at another epoch than the request (NEW_NODE_VER, OLD_NODE_VER). Any other refusal
    /// (NO_OBJ, EIO, ...) counts as a source without the object.
    pub fn may_serve_later(self) -> bool {
        match self {
            SourceFailure::Unreachable => true,
            SourceFailure::Refused(r) => matches!(r, SdResult::NewNodeVer | SdResult::OldNodeVer),
        }
    }
}

/// What recovery by placement does once no source served the object (see
/// [`placement_fallback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// Wait and retry (AGAIN): a source that may serve later could hold the object.
    Again,
    /// Keep the local copy: no other live copy was found.
    KeepLocal,
    /// No live copy anywhere (NO_OBJ).
    Lost,
}

/// The end of recovery by placement when none of the sources served the object:
/// `failures` says how each one failed, `local_copy` whether this node has a copy. A source
/// that may serve later means wait ([`Fallback::Again`]); otherwise the local copy is kept
/// if there is one, else the object is [`Fallback::Lost`].
pub fn placement_fallback(failures: &[SourceFailure], local_copy: bool) -> Fallback {
    if failures.iter().any(|f| f.may_serve_later()) {
        Fallback::Again
    } else if local_copy {
        Fallback::KeepLocal
    } else {
        Fallback::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use sd_proto::node::SdNode;

    use KeepReason::{Newest, OnlyLiveCopy};
    use Probe::{Busy, Missing, Unsupported, Version};
    use SourceChoice::{Again, ByPlacement, Fetch, KeepLocal, Lost};

    fn nid(port: u16) -> NodeId {
        NodeId::from_socket(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Members 7001, 7002, ... answering `probes` in that order.
    fn answers(probes: &[Probe]) -> Vec<(NodeId, Probe)> {
        probes
            .iter()
            .zip(7001u16..)
            .map(|(&p, port)| (nid(port), p))
            .collect()
    }

    fn fetch(version: u32, ports: &[u16]) -> SourceChoice {
        Fetch {
            version,
            from: ports.iter().map(|&p| nid(p)).collect(),
        }
    }

    #[test]
    fn a_stale_copy_loses_ties() {
        let stale = |probes: &[Probe], mine: Option<u32>| {
            let a = answers(probes);
            stale_loses_ties(choose_source(&a, mine), &a, mine)
        };
        // A tie fetches from the holders of that version, trusted first.
        assert_eq!(
            stale(&[Probe::Suspect(5), Version(5), Version(4)], Some(5)),
            fetch(5, &[7002, 7001])
        );
        // Strictly newer, the only copy, or older: as for any copy.
        assert_eq!(
            stale(&[Version(4), Missing], Some(5)),
            KeepLocal(Newest { newest: 4 })
        );
        assert_eq!(stale(&[Missing], Some(5)), KeepLocal(OnlyLiveCopy));
        assert_eq!(stale(&[Version(6)], Some(5)), fetch(6, &[7001]));
        assert_eq!(stale(&[Busy, Version(5)], Some(5)), Again);
    }

    #[track_caller]
    fn check(probes: &[Probe], mine: Option<u32>, want: SourceChoice) {
        assert_eq!(
            choose_source(&answers(probes), mine),
            want,
            "probes {probes:?}, mine {mine:?}"
        );
    }

    #[track_caller]
    fn check_suspect(probes: &[Probe], mine: u32, lossy: bool, want: SourceChoice) {
        // Placement order: 7002, us (7000), 7001, 7003.
        let order = [nid(7002), nid(7000), nid(7001), nid(7003)];
        let s = Suspect {
            me: nid(7000),
            lossy,
            order: &order,
        };
        assert_eq!(
            choose_source_with(&answers(probes), Some(mine), Some(&s)),
            want,
            "probes {probes:?}, mine {mine} (suspect, lossy {lossy})"
        );
    }

    #[test]
    fn suspects_rank_by_how_long_their_node_stayed() {
        let node = |port| SdNode {
            nid: nid(port),
            ..SdNode::default()
        };
        let epoch = |e, ports: &[u16]| EpochEntry {
            epoch: Epoch(e),
            time: 0,
            members: ports.iter().map(|p| node(*p)).collect(),
        };
        // 7001 leaves at 3; 7002 and 7003 stay until 3, then everyone is gone (the first
        // node back records the others' leaves) and they come back one by one.
        let history = [
            epoch(1, &[7001, 7002, 7003]),
            epoch(2, &[7001, 7002, 7003]),
            epoch(3, &[7002, 7003]),
            epoch(4, &[7001]),
            epoch(5, &[7001, 7002]),
            epoch(6, &[7001, 7002, 7003]),
        ];
        assert_eq!(stayed_until(&history, nid(7001)), Epoch(2));
        assert_eq!(stayed_until(&history, nid(7002)), Epoch(3));
        assert_eq!(stayed_until(&history, nid(7003)), Epoch(3));
        assert_eq!(stayed_until(&history, nid(7004)), Epoch(0));
        let members = [nid(7001), nid(7002), nid(7003)];
        // Placement puts 7001 first, but it left earliest; 7003 precedes 7002 there.
        let placement = [nid(7001), nid(7003), nid(7002)];
        assert_eq!(
            suspect_order(&history, &members, &placement),
            [nid(7003), nid(7002), nid(7001)]
        );
        // Never absent: its newest epoch counts.
        assert_eq!(stayed_until(&history[..2], nid(7001)), Epoch(2));
    }

    #[test]
    fn suspect_copies() {
        use Probe::Suspect as S;
        let (lossy, durable) = (true, false);
        // A trusted copy as new as our suspect one: fetched in writeback (ours may lack
        // acknowledged writes), kept in writethrough.
        check_suspect(&[Version(4), Version(4)], 4, lossy, fetch(4, &[7001, 7002]));
        check_suspect(&[Version(4), S(4)], 4, lossy, fetch(4, &[7001]));
        check_suspect(
            &[Version(4), Version(4)],
            4,
            durable,
            KeepLocal(Newest { newest: 4 }),
        );
        // Ours newer than every other copy: kept, suspect or not.
        check_suspect(
            &[Version(3), S(2)],
            4,
            lossy,
            KeepLocal(Newest { newest: 3 }),
        );
        // Every copy of the newest version suspect: the first in placement order wins,
        // whichever node decides. 7002 precedes us...
        check_suspect(&[S(4), S(4)], 4, lossy, fetch(4, &[7002]));
        check_suspect(&[S(4), S(4)], 4, durable, fetch(4, &[7002]));
        // ...we precede 7001 and 7003.
        check_suspect(
            &[S(4), Missing, S(4)],
            4,
            lossy,
            KeepLocal(Newest { newest: 4 }),
        );
        check_suspect(
            &[S(4), Version(3)],
            4,
            lossy,
            KeepLocal(Newest { newest: 4 }),
        );
        // An older suspect copy of ours: fetched, trusted holders first, then suspect
        // ones in placement order.
        check_suspect(
            &[S(5), S(5), Version(5)],
            4,
            lossy,
            fetch(5, &[7003, 7002, 7001]),
        );
        // A trusted node sees a suspect copy as any copy of its version.
        assert_eq!(
            choose_source(&answers(&[S(4)]), Some(4)),
            KeepLocal(Newest { newest: 4 })
        );
        assert_eq!(
            choose_source(&answers(&[S(5), Version(5)]), Some(4)),
            fetch(5, &[7002, 7001])
        );
        // The flag travels in the version's top bit.
        assert_eq!(Probe::from_answer(Ok(5 | SUSPECT)), S(5));
        assert_eq!(Probe::from_answer(Ok(5)), Version(5));
    }

    #[test]
    fn choose_source_table() {
        // --- No member has a copy. ---
        // A single-node cluster without the object: nothing anywhere.
        check(&[], None, Lost);
        // A single-node cluster: our copy is all there is.
        check(&[], Some(3), KeepLocal(OnlyLiveCopy));
        // Everyone answered "none": the object is gone, say so (NO_OBJ) rather than wait.
        check(&[Missing, Missing], None, Lost);
        // Everyone answered "none": ours is the only live copy, even without a version.
        check(&[Missing, Missing], Some(0), KeepLocal(OnlyLiveCopy));
        // A busy member may hold a newer copy than ours: wait, do not serve ours.
        check(&[Missing, Busy], Some(3), Again);
        // A busy member may hold the only copy: wait, never report the object lost.
        check(&[Missing, Busy], None, Again);
        check(&[Busy], None, Again);

        // --- A member predates FETCH_PEER: versions cannot be compared. ---
        check(&[Unsupported, Version(5)], None, ByPlacement);
        // Checked before busy: placement handles its own busy sources.
        check(&[Busy, Unsupported], Some(2), ByPlacement);
        // Even with a versioned local copy and no other copy.
        check(&[Unsupported], Some(9), ByPlacement);
        check(&[Missing, Unsupported, Missing], None, ByPlacement);

        // --- No copy carries a version (0 everywhere): placement decides. ---
        check(&[Version(0), Version(0)], None, ByPlacement);
        check(&[Version(0), Missing], Some(0), ByPlacement);
        // Checked before busy: placement's sources decide whether to wait.
        check(&[Version(0), Busy], None, ByPlacement);
        // Only our copy is versioned: it is newer than the unversioned ones, keep it.
        check(&[Version(0)], Some(4), KeepLocal(Newest { newest: 0 }));
        // ... unless a member that did not answer may hold a newer one.
        check(&[Version(0), Busy], Some(4), Again);

        // --- Versions decide. ---
        // A tie keeps ours: it holds every write the other newest copy holds.
        check(
            &[Version(3), Version(5), Missing],
            Some(5),
            KeepLocal(Newest { newest: 5 }),
        );
        check(&[Version(5)], Some(7), KeepLocal(Newest { newest: 5 }));
        // Ours looks newest, but the busy member may hold an even newer copy.
        check(&[Version(5), Busy], Some(7), Again);
        // A newer copy exists but another member may hold a newer one still: wait.
        check(&[Version(5), Busy], None, Again);
        check(&[Busy, Version(5)], Some(1), Again);
        // Every holder of the newest version is a source, in member order, and only they.
        check(
            &[Version(5), Version(3), Version(5)],
            Some(4),
            fetch(5, &[7001, 7003]),
        );
        check(&[Missing, Version(5)], None, fetch(5, &[7002]));
        // Our copy without a version is older than any versioned copy.
        check(&[Version(5)], Some(0), fetch(5, &[7001]));
        // An unversioned member copy counts as older than a versioned one: never a source.
        check(&[Version(0), Version(2)], None, fetch(2, &[7002]));
        check(&[Version(0), Version(2)], Some(1), fetch(2, &[7002]));
        // The edges of the version range.
        check(
            &[Version(u32::MAX), Version(1)],
            Some(u32::MAX - 1),
            fetch(u32::MAX, &[7001]),
        );
        check(
            &[Version(u32::MAX)],
            Some(u32::MAX),
            KeepLocal(Newest { newest: u32::MAX }),
        );
    }

    #[test]
    fn probe_from_answer_table() {
        let rows = [
            (Ok(7), Version(7)),
            // A copy without a version still is a copy.
            (Ok(0), Version(0)),
            (Err(SdResult::NoObj), Missing),
            // How an older sheep refuses an opcode it does not know.
            (Err(SdResult::InvalidParms), Unsupported),
            // Anything else leaves the member's copy unknown: it may be the newest.
            (Err(SdResult::NetworkError), Busy),
            (Err(SdResult::Eio), Busy),
            (Err(SdResult::NewNodeVer), Busy),
            (Err(SdResult::OldNodeVer), Busy),
            (Err(SdResult::Unknown(0x99)), Busy),
            (Err(SdResult::Success), Busy),
        ];
        for (answer, want) in rows {
            assert_eq!(Probe::from_answer(answer), want, "{answer:?}");
        }
    }

    #[test]
    fn source_failure_table() {
        let rows = [
            // Cut off, timed out, or the epoch moved: it may still hold the object.
            (SourceFailure::Unreachable, true),
            // Still applying the epoch, or behind it: it may serve in a moment.
            (SourceFailure::Refused(SdResult::NewNodeVer), true),
            (SourceFailure::Refused(SdResult::OldNodeVer), true),
            // It has no copy.
            (SourceFailure::Refused(SdResult::NoObj), false),
            // Other refusals count as no copy (see the report on EIO).
            (SourceFailure::Refused(SdResult::Eio), false),
            (SourceFailure::Refused(SdResult::NetworkError), false),
            (SourceFailure::Refused(SdResult::InvalidParms), false),
            (SourceFailure::Refused(SdResult::Unknown(0x99)), false),
        ];
        for (failure, want) in rows {
            assert_eq!(failure.may_serve_later(), want, "{failure:?}");
        }
    }

    #[test]
    fn placement_fallback_table() {
        let no_obj = SourceFailure::Refused(SdResult::NoObj);
        let new_ver = SourceFailure::Refused(SdResult::NewNodeVer);
        let rows: [(&[SourceFailure], bool, Fallback); 7] = [
            // No source at all: ours is the only copy, or there is none.
            (&[], true, Fallback::KeepLocal),
            (&[], false, Fallback::Lost),
            // Every source answered it has none.
            (&[no_obj, no_obj], true, Fallback::KeepLocal),
            (&[no_obj], false, Fallback::Lost),
            // A source that may serve later may hold a newer copy than ours: wait.
            (&[no_obj, SourceFailure::Unreachable], true, Fallback::Again),
            (&[new_ver], true, Fallback::Again),
            (&[no_obj, new_ver], false, Fallback::Again),
        ];
        for (failures, local, want) in rows {
            assert_eq!(
                placement_fallback(failures, local),
                want,
                "{failures:?}, local copy {local}"
            );
        }
    }

    // --- placement_sources ---

    /// The oid of the sample cluster in shared/spec/dog-output-samples.txt, see
    /// `placement::tests`.
    const SAMPLE: Oid = Oid::new(0x007c_2b25_0000_0000);

    fn node(port: u16, zone: u32) -> SdNode {
        SdNode {
            nid: nid(port),
            nr_vnodes: 128,
            zone,
            ..SdNode::default()
        }
    }

    /// The sample cluster: 7000, 7001, 7002 in zones 0, 1, 2.
    fn r3() -> Vec<SdNode> {
        vec![node(7000, 0), node(7001, 1), node(7002, 2)]
    }

    /// The sample cluster after 7001 died.
    fn r2() -> Vec<SdNode> {
        vec![node(7000, 0), node(7002, 2)]
    }

    fn entry(epoch: u32, members: &[SdNode]) -> EpochEntry {
        EpochEntry {
            epoch: Epoch(epoch),
            time: 0,
            members: members.to_vec(),
        }
    }

    fn ports(nodes: &[NodeId]) -> Vec<u16> {
        nodes.iter().map(|n| n.port).collect()
    }

    #[test]
    fn sample_rings_hold_the_sample_oid_where_the_spec_says() {
        // The premise of the placement table: the sample's holders, from the spec.
        let holders = |nodes: &[SdNode], copies| {
            let r: Vec<NodeId> = Ring::new(nodes)
                .replicas(SAMPLE, copies)
                .iter()
                .map(|n| n.nid)
                .collect();
            ports(&r)
        };
        assert_eq!(holders(&r3(), 2), [7001, 7000]);
        assert_eq!(holders(&r2(), 2), [7000, 7002]);
        // More copies extend the same walk; fewer take its head.
        assert_eq!(holders(&r3(), 3), [7001, 7000, 7002]);
        assert_eq!(holders(&r3(), 1), [7001]);
        assert_eq!(holders(&r2(), 1), [7000]);
    }

    #[test]
    fn strip_sources_follow_each_index_back_through_the_epochs() {
        // 2:1 over the sample cluster: epoch 1 places SAMPLE's strips on 7001, 7000, 7002.
        let r1 = Ring::new(&r3());
        // 7001 died: 7000 is index 0 now, 7002 index 1.
        let r2 = Ring::new(&r2());
        let alive: HashSet<NodeId> = [nid(7000), nid(7002)].into_iter().collect();
        let sources = |index| ports(&strip_sources(&alive, &r2, &[&r1], SAMPLE, 3, index));
        // Strip 0 was on 7001 (dead): only its new holder, 7000.
        assert_eq!(sources(0), [7000]);
        // Strip 1 was on 7000: its new holder 7002 first, then 7000.
        assert_eq!(sources(1), [7002, 7000]);
        // Strip 2 has no holder now (two zones), but 7002 held it in epoch 1.
        assert_eq!(sources(2), [7002]);
        // Without history, only the current holders.
        assert_eq!(
            ports(&strip_sources(&alive, &r2, &[], SAMPLE, 3, 2)),
            [] as [u16; 0]
        );
    }

    /// One row: `me`, the live ports, the epoch log, the current members, the epoch being
    /// recovered and the copies → the source ports, in order.
    struct Row {
        me: u16,
        alive: &'static [u16],
        history: Vec<EpochEntry>,
        current: Vec<SdNode>,
        epoch: u32,
        copies: usize,
        want: &'static [u16],
    }

    #[track_caller]
    fn check_placement(row: Row) {
        let alive: HashSet<NodeId> = row.alive.iter().map(|&p| nid(p)).collect();
        let got = placement_sources(
            nid(row.me),
            &alive,
            &row.history,
            &Ring::new(&row.current),
            Epoch(row.epoch),
            SAMPLE,
            row.copies,
        );
        assert_eq!(ports(&got), row.want);
    }

    #[test]
    fn placement_sources_table() {
        // 7001 died (epoch 2); 7002, a new holder, recovers: the dead holder of epoch 1 is
        // skipped, its live holder tried; the current holder 7000 is not repeated.
        check_placement(Row {
            me: 7002,
            alive: &[7000, 7002],
            history: vec![entry(1, &r3()), entry(2, &r2())],
            current: r2(),
            epoch: 2,
            copies: 2,
            want: &[7000],
        });
        // This node is never its own source; the last resort is the current holders,
        // which may have recovered the object already.
        check_placement(Row {
            me: 7000,
            alive: &[7000, 7002],
            history: vec![entry(1, &r3()), entry(2, &r2())],
            current: r2(),
            epoch: 2,
            copies: 2,
            want: &[7002],
        });
        // 7001 rejoins (epoch 3): the holders of epoch 2, which took the writes it missed,
        // come before those of epoch 1.
        check_placement(Row {
            me: 7001,
            alive: &[7000, 7001, 7002],
            history: vec![entry(1, &r3()), entry(2, &r2()), entry(3, &r3())],
            current: r3(),
            epoch: 3,
            copies: 2,
            want: &[7000, 7002],
        });
        // Recovering an older epoch than the log's newest: only strictly older epochs are
        // sources (7002 comes from epoch 2 alone, so it is not tried).
        check_placement(Row {
            me: 7001,
            alive: &[7000, 7001, 7002],
            history: vec![entry(1, &r3()), entry(2, &r2()), entry(3, &r3())],
            current: r3(),
            epoch: 2,
            copies: 2,
            want: &[7000],
        });
        // The format's epoch has no earlier one: the current holders only.
        check_placement(Row {
            me: 7002,
            alive: &[7000, 7001, 7002],
            history: vec![entry(1, &r3())],
            current: r3(),
            epoch: 1,
            copies: 2,
            want: &[7001, 7000],
        });
        // A node holding the object in several epochs is tried once, at its newest.
        check_placement(Row {
            me: 7002,
            alive: &[7000, 7001, 7002],
            history: vec![entry(1, &r2()), entry(2, &r3())],
            current: r3(),
            epoch: 3,
            copies: 2,
            want: &[7001, 7000],
        });
        // Earlier epochs' holders must be alive; the current ring's are not checked
        // against `alive` (they are current members by construction).
        check_placement(Row {
            me: 7002,
            alive: &[7002],
            history: vec![entry(1, &r3())],
            current: r3(),
            epoch: 2,
            copies: 2,
            want: &[7001, 7000],
        });
        // A gateway (no vnodes) held nothing in its epoch: never a source from it.
        let mut gateway = node(7000, 0);
        gateway.nr_vnodes = 0;
        check_placement(Row {
            me: 7002,
            alive: &[7000, 7001, 7002],
            history: vec![entry(1, &[gateway, node(7001, 1)])],
            current: r2(),
            epoch: 2,
            copies: 2,
            want: &[7001, 7000],
        });
        // One copy: only the primary of each ring.
        check_placement(Row {
            me: 7002,
            alive: &[7000, 7002],
            history: vec![entry(1, &r3())],
            current: r2(),
            epoch: 2,
            copies: 1,
            want: &[7000],
        });
        // Only this node ever held it: no source at all (placement_fallback decides).
        check_placement(Row {
            me: 7002,
            alive: &[7002],
            history: vec![entry(1, &[node(7002, 2)])],
            current: vec![node(7002, 2)],
            epoch: 2,
            copies: 2,
            want: &[],
        });
    }

    /// `recover_by_placement`'s source order as crates/sheep/src/recovery.rs wrote it before
    /// it moved here (commit 478fb4a), kept as the oracle that the move changed nothing.
    fn daemon_placement_order(
        me: NodeId,
        alive: &HashSet<NodeId>,
        epochs: &[EpochEntry],
        ring: &Ring,
        epoch: Epoch,
        oid: Oid,
        copies: usize,
    ) -> Vec<NodeId> {
        let mut sources = Vec::new();
        for h in epochs.iter().rev().filter(|h| h.epoch < epoch) {
            for n in Ring::new(&h.members).replicas(oid, copies) {
                if n.nid != me && alive.contains(&n.nid) && !sources.contains(&n.nid) {
                    sources.push(n.nid);
                }
            }
        }
        for n in ring.replicas(oid, copies) {
            if n.nid != me && !sources.contains(&n.nid) {
                sources.push(n.nid);
            }
        }
        sources
    }

    fn pick(pool: &[SdNode], mask: u8) -> Vec<SdNode> {
        pool.iter()
            .enumerate()
            .filter(|&(i, _)| (mask >> i) & 1 == 1)
            .map(|(_, n)| *n)
            .collect()
    }

    fn probe() -> impl Strategy<Value = Probe> {
        prop_oneof![
            4 => (0u32..4).prop_map(Version),
            2 => Just(Missing),
            1 => Just(Busy),
            1 => Just(Unsupported),
        ]
    }

    proptest! {
        #[test]
        fn choice_invariants(
            probes in vec(probe(), 0..6),
            mine in proptest::option::of(0u32..4),
        ) {
            let answers = answers(&probes);
            let choice = choose_source(&answers, mine);
            let busy = probes.contains(&Busy);
            let unsupported = probes.contains(&Unsupported);
            let best = probes
                .iter()
                .filter_map(|p| match *p {
                    Version(v) => Some(v),
                    _ => None,
                })
                .max();
            // A member that predates FETCH_PEER always sends recovery to placement.
            if unsupported {
                prop_assert_eq!(&choice, &ByPlacement);
            }
            // While a member cannot answer, nothing is settled by version.
            if busy {
                prop_assert!(matches!(choice, Again | ByPlacement), "{:?}", choice);
            }
            match &choice {
                Fetch { version, from } => {
                    prop_assert!(!busy && !unsupported);
                    prop_assert_eq!(Some(*version), best);
                    // Only ever fetched to replace an older copy (or none).
                    prop_assert!(*version > mine.unwrap_or(0));
                    // Exactly the members that reported that version, in member order.
                    let holders: Vec<NodeId> = answers
                        .iter()
                        .filter(|&&(_, p)| p == Version(*version))
                        .map(|&(n, _)| n)
                        .collect();
                    prop_assert!(!from.is_empty());
                    prop_assert_eq!(from, &holders);
                }
                KeepLocal(why) => {
                    prop_assert!(!busy && !unsupported);
                    prop_assert!(mine.is_some());
                    match *why {
                        OnlyLiveCopy => prop_assert_eq!(best, None),
                        // Never keeps ours while a member holds a newer one.
                        Newest { newest } => {
                            prop_assert_eq!(Some(newest), best);
                            prop_assert!(mine >= Some(newest));
                        }
                    }
                }
                Again => prop_assert!(busy && !unsupported),
                // Lost only when no one, this node included, has a copy.
                Lost => prop_assert!(mine.is_none() && probes.iter().all(|p| *p == Missing)),
                ByPlacement => prop_assert!(
                    unsupported || (best == Some(0) && mine.unwrap_or(0) == 0)
                ),
            }
        }

        #[test]
        fn choice_ignores_member_order_but_fetch_keeps_it(
            probes in vec(probe(), 0..6),
            mine in proptest::option::of(0u32..4),
        ) {
            let forward = answers(&probes);
            let mut backward = forward.clone();
            backward.reverse();
            let mut want = choose_source(&forward, mine);
            if let Fetch { from, .. } = &mut want {
                from.reverse();
            }
            prop_assert_eq!(choose_source(&backward, mine), want);
        }

        #[test]
        fn placement_sources_match_the_daemon(
            attrs in vec((0u32..3, prop_oneof![Just(0u16), Just(4), Just(32)]), 6),
            masks in vec(any::<u8>(), 0..6),
            current in any::<u8>(),
            alive in any::<u8>(),
            me in 0usize..6,
            epoch in 1u32..8,
            oid in any::<u64>(),
            copies in 1usize..5,
        ) {
            let pool: Vec<SdNode> = attrs
                .iter()
                .zip(7000u16..)
                .map(|(&(zone, nr_vnodes), port)| SdNode {
                    nid: nid(port),
                    nr_vnodes,
                    zone,
                    ..SdNode::default()
                })
                .collect();
            let history: Vec<EpochEntry> = masks
                .iter()
                .zip(1u32..)
                .map(|(&m, e)| entry(e, &pick(&pool, m)))
                .collect();
            let ring = Ring::new(&pick(&pool, current));
            let alive: HashSet<NodeId> = pick(&pool, alive).iter().map(|n| n.nid).collect();
            let me = pool[me].nid;
            let (epoch, oid) = (Epoch(epoch), Oid::new(oid));
            let got = placement_sources(me, &alive, &history, &ring, epoch, oid, copies);
            prop_assert_eq!(
                &got,
                &daemon_placement_order(me, &alive, &history, &ring, epoch, oid, copies)
            );
            prop_assert!(!got.contains(&me));
            let unique: HashSet<&NodeId> = got.iter().collect();
            prop_assert_eq!(unique.len(), got.len());
            let holders: Vec<NodeId> = ring.replicas(oid, copies).iter().map(|n| n.nid).collect();
            // A source is a live earlier holder or a current holder...
            for n in &got {
                prop_assert!(alive.contains(n) || holders.contains(n));
            }
            // ... and every current holder but this node is one (the last resort).
            for n in holders.iter().filter(|&&n| n != me) {
                prop_assert!(got.contains(n));
            }
        }
    }
}
