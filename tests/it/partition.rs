//! Partitions: real sheep and a real ZooKeeper, each in its own network namespace
//! (`sd_testkit::netns`), links cut with nftables rules inside the namespaces (packets
//! dropped, so TCP sees silence). What must hold: a sheep cut off from ZooKeeper stops
//! acknowledging writes (the fence) well before its session can expire, comes back in the
//! same session if the cut heals in time, and otherwise rejoins as a new member; no
//! acknowledged write is lost, and every replica reads back the same bytes after healing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_proto::{Oid, SdResult, Vid};
use sd_testkit::netns::{Host, Net};
use sd_testkit::zookeeper::ZkServer;
use sd_testkit::{Cluster, RawClient, assert_same_bytes, pattern, poll_until, random_seed, req};

use crate::common::create_vdi;

/// Bytes each write covers (at offset 0 of a data object).
const REGION: usize = 64 << 10;
/// How long one request through a gateway may take in these tests.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for membership changes, exits and recovery here.
const WAIT: Duration = Duration::from_secs(30);

/// A cluster of `n` sheep on hosts 1..=n of a private network, with ZooKeeper on host 0.
/// Fields drop in order: the sheep, then ZooKeeper, then the namespaces.
struct Partitioned {
    c: Cluster,
    zk: ZkServer,
    net: Net,
}

impl Partitioned {
    fn start(n: usize, timeout_ms: u64) -> Partitioned {
        let t = Instant::now();
        let net = Net::new(n + 1).expect("network namespaces (needs root, iproute2, nftables)");
        let zk = ZkServer::start_on(net.host(0)).unwrap();
        let spec = format!(
            "zookeeper:{}/part-{:x},timeout={timeout_ms}",
            zk.connect_string(),
            random_seed()
        );
        let hosts: Vec<Host> = (1..=n).map(|i| net.host(i).clone()).collect();
        let c = Cluster::start_on_net(&hosts, &["-c", &spec]).unwrap();
        eprintln!("{n} sheep and ZooKeeper in namespaces: {:.2?}", t.elapsed());
        Partitioned { c, zk, net }
    }

    /// The network host of sheep `i`.
    fn host_of(i: usize) -> usize {
        i + 1
    }

    /// Cuts sheep `i` off from ZooKeeper only.
    fn cut_from_zk(&mut self, i: usize) {
        let zk = self.zk.addr();
        let std::net::SocketAddr::V4(zk) = zk else {
            panic!("ZooKeeper on {zk}")
        };
        self.net.cut(Self::host_of(i), &[*zk.ip()]).unwrap();
    }

    fn client(&self, i: usize) -> RawClient {
        let c = self.c.connect(i).unwrap();
        c.set_io_timeout(CALL_TIMEOUT).unwrap();
        c
    }
}

/// What generation `gen` of `oid` holds: derived from (seed, oid, generation).
fn bytes(seed: u64, oid: Oid, generation: u64) -> Vec<u8> {
    let s = seed ^ oid.get().rotate_left(17) ^ generation.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    pattern(s, 0, REGION)
}

/// One object's history as a client saw it.
#[derive(Debug, Default, Clone)]
struct Ledger {
    /// The last generation whose write was acknowledged.
    acked: u64,
    /// Generations written after it whose write failed: each may or may not have landed.
    maybe: Vec<u64>,
}

impl Ledger {
    fn record(&mut self, generation: u64, ok: bool) {
        if ok {
            self.acked = generation;
            self.maybe.clear();
        } else {
            self.maybe.push(generation);
        }
    }

    /// The generations the object may hold now.
    fn candidates(&self) -> Vec<u64> {
        std::iter::once(self.acked)
            .chain(self.maybe.iter().copied())
            .collect()
    }
}

/// WRITE_OBJ of generation `generation` of `oid`'s region through `c`: its result and how long it took.
fn write_gen(c: &mut RawClient, seed: u64, oid: Oid, generation: u64) -> (SdResult, Duration) {
    let t = Instant::now();
    let data = bytes(seed, oid, generation);
    let len = u32::try_from(data.len()).unwrap();
    let r = c
        .call(&req::write_obj(oid, 0, len), &data)
        .map(|r| r.result())
        .unwrap_or(SdResult::NetworkError);
    (r, t.elapsed())
}

/// Creates `n` data objects of `vid` from index `first`, generation 0, through `c`.
fn create_objects(
    c: &mut RawClient,
    seed: u64,
    vid: Vid,
    first: u32,
    n: u32,
) -> BTreeMap<Oid, Ledger> {
    let mut out = BTreeMap::new();
    for idx in first..first + n {
        let oid = vid.data_oid(idx);
        let data = bytes(seed, oid, 0);
        let len = u32::try_from(data.len()).unwrap();
        c.call_ok(&req::create_and_write_obj(oid, 0, len), &data)
            .unwrap();
        out.insert(oid, Ledger::default());
    }
    out
}

/// Checks every replica on disk of every object: each holds a generation the object may
/// hold, and all replicas of an object whose last write was acknowledged hold that write.
/// Returns the objects whose replicas differ: only ever ones whose last write failed (it
/// reached some replicas and not others).
fn check_replicas(p: &Partitioned, seed: u64, objects: &BTreeMap<Oid, Ledger>) -> Vec<Oid> {
    let holders = p.c.actual_placement(&p.c.live()).unwrap();
    let mut diverged = Vec::new();
    for (oid, ledger) in objects {
        let on = holders.get(oid).cloned().unwrap_or_default();
        assert_eq!(on.len(), 3, "{oid} held by {on:?}");
        let mut gens = std::collections::BTreeSet::new();
        for i in on {
            let file = p.c.read_object(i, *oid).unwrap();
            let region = &file[..REGION];
            let found = ledger
                .candidates()
                .into_iter()
                .find(|g| bytes(seed, *oid, *g) == region);
            let Some(g) = found else {
                assert_same_bytes(
                    region,
                    &bytes(seed, *oid, ledger.acked),
                    &format!("{oid} on node {i}'s disk (ledger {ledger:?})"),
                );
                unreachable!()
            };
            gens.insert(g);
        }
        if ledger.maybe.is_empty() {
            assert_eq!(
                gens.len(),
                1,
                "{oid}: acknowledged write not on every replica"
            );
        } else if gens.len() > 1 {
            diverged.push(*oid);
        }
    }
    diverged
}

/// What a client does with writes that failed (QEMU's driver resends them): writes each
/// object whose last write failed again, through `gateway`, until acknowledged.
fn rewrite_failed(p: &Partitioned, seed: u64, objects: &mut BTreeMap<Oid, Ledger>, gateway: usize) {
    let mut c = p.client(gateway);
    for (oid, ledger) in objects.iter_mut() {
        if ledger.maybe.is_empty() {
            continue;
        }
        let generation = ledger.maybe.iter().max().copied().unwrap_or(ledger.acked) + 1;
        let (r, took) = write_gen(&mut c, seed, *oid, generation);
        assert_eq!(r, SdResult::Success, "rewrite {oid} ({took:?})");
        ledger.record(generation, true);
    }
}

/// Every object reads back, through every gateway, as one generation it may hold, the
/// same one everywhere; and every replica's file is identical.
fn verify(p: &Partitioned, seed: u64, objects: &BTreeMap<Oid, Ledger>) {
    p.c.check_replicas_identical().unwrap();
    for (oid, ledger) in objects {
        let mut seen = None;
        for i in p.c.live() {
            let mut c = p.client(i);
            let rsp = c
                .call(&req::read_obj(*oid, 0, u32::try_from(REGION).unwrap()), &[])
                .unwrap();
            assert_eq!(rsp.result(), SdResult::Success, "read {oid} through {i}");
            let found = ledger
                .candidates()
                .into_iter()
                .find(|g| bytes(seed, *oid, *g) == rsp.payload);
            let Some(g) = found else {
                assert_same_bytes(
                    &rsp.payload,
                    &bytes(seed, *oid, ledger.acked),
                    &format!("{oid} through node {i} (ledger {ledger:?})"),
                );
                unreachable!()
            };
            if let Some(s) = seen {
                assert_eq!(s, g, "{oid}: gateways disagree");
            }
            seen = Some(g);
        }
    }
}

/// A sheep cut off from ZooKeeper (its clients and peers still reach it) fails writes
/// and reads within a third of the session timeout, long before the session could expire;
/// a peer's write that needs it waits instead of failing; after the cut heals within the
/// session, it serves again in the same session (same process, same epoch) and every
/// acknowledged write reads back on every replica.
#[test]
fn a_sheep_cut_from_zookeeper_fences_then_resumes_its_session() {
    const TIMEOUT_MS: u64 = 6000;
    let timeout = Duration::from_millis(TIMEOUT_MS);
    let mut p = Partitioned::start(3, TIMEOUT_MS);
    p.c.format(3).unwrap();
    let seed = random_seed();
    let mut c0 = p.client(0);
    let vid = create_vdi(&mut c0, "part", 64 << 20);
    let mut objects = create_objects(&mut c0, seed, vid, 0, 4);
    let oids: Vec<Oid> = objects.keys().copied().collect();
    let (epoch, _) = p.c.members_seen_by(0).unwrap();
    let pid = p.c.sheep(0).pid();
    let mut generation = 1;
    for oid in &oids {
        let (r, _) = write_gen(&mut c0, seed, *oid, generation);
        assert_eq!(r, SdResult::Success);
        objects.get_mut(oid).unwrap().record(generation, true);
        generation += 1;
    }

    p.cut_from_zk(0);
    let cut = Instant::now();
    // Writes through node 0 until one fails; none may take longer than the fence.
    let fenced = loop {
        let oid = oids[usize::try_from(generation).unwrap() % oids.len()];
        let (r, took) = write_gen(&mut c0, seed, oid, generation);
        objects
            .get_mut(&oid)
            .unwrap()
            .record(generation, r == SdResult::Success);
        generation += 1;
        if r != SdResult::Success {
            assert_eq!(r, SdResult::ClusterError, "a fenced write's error");
            break cut.elapsed();
        }
        assert!(
            cut.elapsed() < timeout,
            "still acknowledging writes {took:?} after the cut"
        );
    };
    eprintln!(
        "figure: partition fence: writes refused {fenced:?} after the cut (session timeout {timeout:?})"
    );
    assert!(
        fenced < timeout / 2,
        "fenced only {fenced:?} after the cut; session timeout {timeout:?}"
    );
    // Fenced: writes and reads through node 0 fail at once.
    for _ in 0..3 {
        let oid = oids[0];
        let (r, took) = write_gen(&mut c0, seed, oid, generation);
        objects
            .get_mut(&oid)
            .unwrap()
            .record(generation, r == SdResult::Success);
        generation += 1;
        assert_eq!(r, SdResult::ClusterError);
        assert!(
            took < Duration::from_millis(500),
            "a fenced write took {took:?}"
        );
    }
    let rsp = c0
        .call(
            &req::read_obj(oids[1], 0, u32::try_from(REGION).unwrap()),
            &[],
        )
        .unwrap();
    assert_eq!(rsp.result(), SdResult::ClusterError, "a fenced read");
    // A write through node 1 needs node 0 (copies=3): node 0 refuses it as a peer, and
    // node 1 keeps retrying instead of failing its client.
    let peer_oid = oids[2];
    let peer_gen = generation;
    generation += 1;
    let mut c1 = p.client(1);
    let peer_write = std::thread::spawn(move || write_gen(&mut c1, seed, peer_oid, peer_gen));

    p.net.heal(Partitioned::host_of(0)).unwrap();
    let healed = Instant::now();
    let resumed = loop {
        let oid = oids[3];
        let (r, _) = write_gen(&mut c0, seed, oid, generation);
        objects
            .get_mut(&oid)
            .unwrap()
            .record(generation, r == SdResult::Success);
        generation += 1;
        if r == SdResult::Success {
            break healed.elapsed();
        }
        assert_eq!(r, SdResult::ClusterError);
        assert!(
            healed.elapsed() < WAIT,
            "node 0 still fenced {WAIT:?} after healing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("serving again {resumed:?} after healing");
    let (r, took) = peer_write.join().unwrap();
    assert_eq!(r, SdResult::Success, "the write through node 1 ({took:?})");
    objects.get_mut(&peer_oid).unwrap().record(peer_gen, true);
    // The same session: the same process, and nobody recorded a leave.
    assert_eq!(p.c.sheep(0).pid(), pid);
    for i in 0..3 {
        assert_eq!(
            p.c.members_seen_by(i).unwrap().0,
            epoch,
            "epoch seen by {i}"
        );
    }
    verify(&p, seed, &objects);
}

/// Five sheep, copies=3, split two (cut from ZooKeeper and from the other three) against
/// three plus ZooKeeper, with a client writing through each side. The minority side fences
/// and acknowledges nothing once cut; the majority records the minority's leaves when
/// their sessions expire and goes on acknowledging writes. After healing, the minority
/// sheep (their sessions gone, so they stopped) rejoin as new members, the cluster returns
/// to three copies of everything, and every write acknowledged before or during the
/// partition reads back identical through every gateway and on every replica.
#[test]
fn a_minority_partition_loses_no_acknowledged_write() {
    const TIMEOUT_MS: u64 = 3000;
    let timeout = Duration::from_millis(TIMEOUT_MS);
    let mut p = Partitioned::start(5, TIMEOUT_MS);
    p.c.format(3).unwrap();
    let seed = random_seed();
    let mut c2 = p.client(2);
    let vid = create_vdi(&mut c2, "split", 256 << 20);
    let minority_objects = create_objects(&mut c2, seed, vid, 0, 6);
    let majority_objects = create_objects(&mut c2, seed, vid, 6, 6);
    drop(c2);

    // One writer per side, each on its own objects, from before the cut until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let majority_acks = Arc::new(AtomicU64::new(0));
    let writer = |gateway: usize, mut objects: BTreeMap<Oid, Ledger>, acks: Arc<AtomicU64>| {
        let mut c = p.client(gateway);
        let stop = stop.clone();
        std::thread::spawn(move || {
            let oids: Vec<Oid> = objects.keys().copied().collect();
            // (when it finished, result)
            let mut log = Vec::new();
            let mut generation = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let oid = oids[usize::try_from(generation).unwrap() % oids.len()];
                let (r, _) = write_gen(&mut c, seed, oid, generation);
                objects
                    .get_mut(&oid)
                    .unwrap()
                    .record(generation, r == SdResult::Success);
                log.push((Instant::now(), r));
                generation += 1;
                if r == SdResult::Success {
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                if r != SdResult::Success {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            (objects, log)
        })
    };
    let minority = writer(0, minority_objects, Arc::new(AtomicU64::new(0)));
    let majority = writer(2, majority_objects, majority_acks.clone());
    p.c.poll_until(WAIT, "writes before the cut", |_| {
        Ok((majority_acks.load(Ordering::Relaxed) >= 5).then_some(()))
    })
    .unwrap();

    p.net.partition(&[1, 2], &[0, 3, 4, 5]).unwrap();
    let cut = Instant::now();
    // The majority records both leaves (after the sessions expire) and moves on.
    poll_until(WAIT, "the majority to see three members", || {
        let (_, nodes) = p.c.members_seen_by(2)?;
        Ok((nodes.len() == 3).then_some(()))
    })
    .unwrap();
    let left = cut.elapsed();
    eprintln!("majority without the minority {left:?} after the cut");
    // The majority writer acknowledges writes again.
    let before = majority_acks.load(Ordering::Relaxed);
    // Not the cluster's poll: it fails once a sheep exits, and the minority's sheep stop
    // by themselves when their sessions expire.
    poll_until(WAIT, "majority writes after the leaves", || {
        Ok((majority_acks.load(Ordering::Relaxed) >= before + 10).then_some(()))
    })
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let (minority_objects, minority_log) = minority.join().unwrap();
    let (majority_objects, majority_log) = majority.join().unwrap();

    // The minority: nothing acknowledged once the fence could have fallen, first error
    // well before the session timeout.
    let fence_bound = timeout / 2;
    let first_error = minority_log
        .iter()
        .find(|(t, r)| *t > cut && *r != SdResult::Success)
        .map(|(t, _)| *t - cut)
        .expect("the minority writer saw no error");
    eprintln!(
        "figure: partition minority: first error {first_error:?} after the cut (session timeout 3s)"
    );
    assert!(first_error < fence_bound, "{first_error:?}");
    let late_acks = minority_log
        .iter()
        .filter(|(t, r)| *t > cut + fence_bound && *r == SdResult::Success)
        .count();
    assert_eq!(late_acks, 0, "minority acknowledged writes after its fence");
    let acked = |log: &[(Instant, SdResult)], after: Instant| {
        log.iter()
            .filter(|(t, r)| *t > after && *r == SdResult::Success)
            .count()
    };
    let majority_acked = acked(&majority_log, cut);
    eprintln!(
        "during the partition: minority acknowledged {}, majority {majority_acked} ({} after the leaves)",
        acked(&minority_log, cut),
        acked(&majority_log, cut + left)
    );
    assert!(
        acked(&majority_log, cut + left) > 0,
        "the majority acknowledged nothing"
    );

    // Heal. The minority sheep lost their sessions: they stop, and are restarted.
    p.net.heal_all().unwrap();
    for i in [0, 1] {
        p.c.wait_exit(i, WAIT).unwrap();
    }
    for i in [0, 1] {
        p.c.restart(i).unwrap();
    }
    let settled = p.c.wait_settled(3, Duration::from_secs(60)).unwrap();
    eprintln!("back to three copies {settled:?} after the restarts");
    let mut all = minority_objects;
    all.extend(majority_objects);
    let unacked = all.values().filter(|l| !l.maybe.is_empty()).count();
    let diverged = check_replicas(&p, seed, &all);
    eprintln!(
        "{unacked} objects' last write failed; replicas differ for {} at first: {diverged:?}",
        diverged.len()
    );
    // A write that failed may have reached some replicas and not others; once the
    // cluster is quiet the copies are identical again (`sheep::fanout`), before any
    // client resends anything.
    let t = Instant::now();
    poll_until(Duration::from_secs(60), "the copies to agree", || {
        Ok(check_replicas(&p, seed, &all).is_empty().then_some(()))
    })
    .unwrap();
    eprintln!("copies identical {:.2?} later", t.elapsed());
    rewrite_failed(&p, seed, &mut all, 2);
    verify(&p, seed, &all);
}

/// A sheep cut off from ZooKeeper past its session timeout: the others record its leave
/// and serve writes without it; it stops by itself. Restarted after the cut heals, it
/// rejoins as a new member, its stale copies are replaced, and the cluster holds three
/// identical copies of every object again.
#[test]
fn a_sheep_cut_past_its_session_rejoins_as_a_new_member() {
    const TIMEOUT_MS: u64 = 3000;
    let mut p = Partitioned::start(4, TIMEOUT_MS);
    p.c.format(3).unwrap();
    let seed = random_seed();
    let mut c1 = p.client(1);
    let vid = create_vdi(&mut c1, "rejoin", 64 << 20);
    let mut objects = create_objects(&mut c1, seed, vid, 0, 6);
    let oids: Vec<Oid> = objects.keys().copied().collect();

    p.cut_from_zk(0);
    let cut = Instant::now();
    p.c.wait_exit(0, WAIT).unwrap();
    eprintln!("node 0 stopped {:?} after the cut", cut.elapsed());
    // Every object gets a new generation without node 0.
    for (n, oid) in oids.iter().enumerate() {
        let generation = 1 + u64::try_from(n).unwrap();
        let (r, took) = write_gen(&mut c1, seed, *oid, generation);
        assert_eq!(r, SdResult::Success, "write {oid} ({took:?})");
        objects.get_mut(oid).unwrap().record(generation, true);
    }
    p.c.wait_settled(3, WAIT).unwrap();
    p.net.heal(Partitioned::host_of(0)).unwrap();
    p.c.restart(0).unwrap();
    let settled = p.c.wait_settled(3, Duration::from_secs(60)).unwrap();
    eprintln!("back to three copies on four nodes {settled:?} after the restart");
    verify(&p, seed, &objects);
}
