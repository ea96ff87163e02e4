//! Fan-out reconciliation: copies a write left different are made identical again.
//!
//! A gateway writes every replica of an object at once. If one replica fails the write
//! (EIO, no space) or the gateway dies before every replica got it, the client is told
//! the write failed (or never hears back), yet some replicas applied it: their copies now
//! differ, and two readers reaching different replicas would read different bytes. Any
//! of the copies is a right answer (each holds every acknowledged write; only the
//! unacknowledged one differs), so it suffices to pick one and copy it over the others.
//!
//! Two parties notice such writes:
//! - **The gateway**, when a mutation it fanned out fails ([`state::Fanout::failed`]).
//! - **Each replica**, for a gateway that dies: every peer connection names its sending
//!   node first (PEER_HELLO), and the writes received from each gateway in the last
//!   [`state::WINDOW`] are remembered ([`state::Fanout::received`]). When that gateway leaves the
//!   membership, they are queued here ([`state::Fanout::node_left`]).
//!
//! Queued objects are checked once recovery has finished: GET_HASH of every replica, and
//! [`sd_cluster::check::settle`] picks the copy (the majority's, else the first replica's
//! that holds one), with the scrub's second look and REPAIR_REPLICA's guard against a
//! copy that changed meanwhile (`crate::scrub::check_object`). An object that cannot be
//! settled yet (a replica down, copies still changing) is tried again later.

pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_cluster::check::settle;
use sd_proto::Oid;
use sd_proto::cluster::NodeStatus;

use crate::node::Sheep;
use crate::scrub::{Outcome, check_object};

/// How often the queue is looked at when nothing wakes it.
const TICK: Duration = Duration::from_millis(250);

/// Whether objects can be checked now: the node serves, and no recovery is under way (it
/// may be about to replace some of the copies anyway).
fn quiet(sheep: &Sheep) -> bool {
    sheep.sys().status == NodeStatus::Ok && !sheep.recovery.progress().active
}

/// The background task: checks queued objects as they fall due.
pub async fn run(sheep: Arc<Sheep>) {
    loop {
        tokio::select! {
            () = sheep.cancel.cancelled() => return,
            () = sheep.fanout.kicked() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        if !quiet(&sheep) {
            continue;
        }
        for (oid, p) in sheep.fanout.take_due(Instant::now()) {
            if sheep.cancel.is_cancelled() {
                return;
            }
            let settled = if quiet(&sheep) {
                settle_object(&sheep, oid).await
            } else {
                false
            };
            if !settled && !sheep.fanout.again(oid, p) {
                tracing::warn!(%oid, "could not make the copies of an object agree; giving up (the scrub still looks)");
            }
        }
    }
}

/// Checks one object and makes its copies identical; whether that is done.
async fn settle_object(sheep: &Sheep, oid: Oid) -> bool {
    if !sheep.vdis().is_live(oid.vid()) {
        // A deleted VDI's objects are reclaimed, not repaired.
        return true;
    }
    // Before the sys guard: `copies_of` may take it too.
    let copies = sheep.copies_of(oid, 0);
    let (epoch, replicas) = {
        let sys = sheep.sys();
        (sys.epoch, sys.replica_nids(oid, copies))
    };
    let outcome = check_object(sheep, epoch, oid, &replicas, settle).await;
    let (done, repaired) = match outcome {
        Outcome::Agree => (true, 0),
        Outcome::Repaired(n) => (true, n),
        Outcome::Unresolved { .. } => (false, 0),
    };
    if done {
        crate::metrics::reconciled(repaired);
        if repaired > 0 {
            tracing::info!(%oid, repaired, "copies left different by a failed write made identical");
        }
    }
    done
}
