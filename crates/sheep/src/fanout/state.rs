//! Fan-out reconciliation's bookkeeping (owned by `Sheep`): the writes received from each
//! gateway, and the objects waiting to be checked. Pure bookkeeping; the checking is in
//! `fanout`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sd_proto::Oid;
use sd_proto::node::NodeId;

/// How long a write received from a gateway counts as possibly part of a fan-out that
/// gateway has not finished: longer than a peer call may take (30 s) plus the time the
/// membership takes to notice a dead node.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long after a failure an object is first checked (the copies settle; a client
/// usually resends the write at once, which makes them identical anyway).
const FIRST_CHECK: Duration = Duration::from_secs(1);
/// The longest wait between two checks of an object that could not be settled.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Checks of one object before it is given up (the scrub, if on, still finds it).
const ATTEMPTS: u32 = 30;

#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    due: Instant,
    attempts: u32,
}

/// Writes received per gateway: object → when last written.
#[derive(Debug, Default)]
struct Received {
    by_gateway: HashMap<NodeId, HashMap<Oid, Instant>>,
    /// The size at which a gateway's map is next pruned of old entries.
    prune_at: HashMap<NodeId, usize>,
}

/// The bookkeeping (owned by `Sheep`).
#[derive(Debug, Default)]
pub struct Fanout {
    received: Mutex<Received>,
    queue: Mutex<HashMap<Oid, Pending>>,
    kick: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Entries a gateway's map holds before it is first pruned.
const PRUNE_MIN: usize = 1024;

impl Fanout {
    /// A write (or create, or remove) of `oid` from gateway `from` is about to be applied.
    pub fn received(&self, from: NodeId, oid: Oid) {
        let now = Instant::now();
        let mut r = lock(&self.received);
        let Received {
            by_gateway,
            prune_at,
        } = &mut *r;
        let map = by_gateway.entry(from).or_default();
        map.insert(oid, now);
        let limit = prune_at.entry(from).or_insert(PRUNE_MIN);
        if map.len() >= *limit {
            map.retain(|_, t| now.duration_since(*t) < WINDOW);
            *limit = (map.len() * 2).max(PRUNE_MIN);
        }
    }

    /// Node `nid` left the membership: the objects it wrote here within [`WINDOW`] are
    /// checked.
    pub fn node_left(&self, nid: NodeId) {
        let written = {
            let mut r = lock(&self.received);
            r.prune_at.remove(&nid);
            r.by_gateway.remove(&nid).unwrap_or_default()
        };
        let now = Instant::now();
        let recent: Vec<Oid> = written
            .into_iter()
            .filter(|(_, t)| now.duration_since(*t) < WINDOW)
            .map(|(oid, _)| oid)
            .collect();
        if !recent.is_empty() {
            tracing::info!(node = %nid, objects = recent.len(), "a gateway left: checking the copies it was writing");
            self.queue(recent);
        }
    }

    /// A mutation of `oid` this gateway fanned out failed: some replicas may have applied
    /// it.
    pub fn failed(&self, oid: Oid) {
        self.queue([oid]);
    }

    fn queue(&self, oids: impl IntoIterator<Item = Oid>) {
        let due = Instant::now() + FIRST_CHECK;
        let mut q = lock(&self.queue);
        for oid in oids {
            q.entry(oid).or_insert(Pending { due, attempts: 0 });
        }
        drop(q);
        self.kick.notify_one();
    }

    /// Waits until objects are queued.
    pub(super) async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// Objects waiting to be checked.
    pub fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Takes the objects due now.
    pub(super) fn take_due(&self, now: Instant) -> Vec<(Oid, Pending)> {
        let mut q = lock(&self.queue);
        let due: Vec<(Oid, Pending)> = q
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(o, p)| (*o, *p))
            .collect();
        for (oid, _) in &due {
            q.remove(oid);
        }
        due
    }

    /// Puts back an object that could not be settled, unless it was tried often enough.
    pub(super) fn again(&self, oid: Oid, p: Pending) -> bool {
        let attempts = p.attempts + 1;
        if attempts >= ATTEMPTS {
            return false;
        }
        let wait = FIRST_CHECK
            .saturating_mul(1 << attempts.min(5))
            .min(RETRY_MAX);
        lock(&self.queue).entry(oid).or_insert(Pending {
            due: Instant::now() + wait,
            attempts,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sd_proto::Vid;

    fn node(port: u16) -> NodeId {
        NodeId {
            addr: [0; 16],
            port,
        }
    }

    #[test]
    fn a_leaving_gateway_queues_what_it_wrote_here() {
        let f = Fanout::default();
        let vid = Vid::from_masked(7);
        f.received(node(1), vid.data_oid(1));
        f.received(node(1), vid.data_oid(2));
        f.received(node(1), vid.data_oid(1));
        f.received(node(2), vid.data_oid(3));
        f.node_left(node(1));
        let mut q: Vec<Oid> = lock(&f.queue).keys().copied().collect();
        q.sort();
        assert_eq!(q, [vid.data_oid(1), vid.data_oid(2)]);
        // Forgotten once queued; the other gateway's writes stay.
        f.node_left(node(1));
        assert_eq!(f.queued(), 2);
        assert!(lock(&f.received).by_gateway.contains_key(&node(2)));
        // Not due before the first check's delay.
        assert!(f.take_due(Instant::now()).is_empty());
        let later = Instant::now() + FIRST_CHECK;
        assert_eq!(f.take_due(later).len(), 2);
        assert_eq!(f.queued(), 0);
    }

    #[test]
    fn old_writes_are_pruned_and_retries_end() {
        let f = Fanout::default();
        let vid = Vid::from_masked(9);
        for i in 0..u32::try_from(PRUNE_MIN * 3).unwrap() {
            f.received(node(1), vid.data_oid(i));
        }
        // Recent entries are kept however many there are.
        assert_eq!(lock(&f.received).by_gateway[&node(1)].len(), PRUNE_MIN * 3);
        let oid = vid.data_oid(1);
        let mut p = Pending {
            due: Instant::now(),
            attempts: 0,
        };
        let mut tries = 1;
        while f.again(oid, p) {
            p = f.take_due(Instant::now() + RETRY_MAX).pop().unwrap().1;
            tries += 1;
        }
        assert_eq!(tries, ATTEMPTS);
        assert_eq!(f.queued(), 0);
    }
}
