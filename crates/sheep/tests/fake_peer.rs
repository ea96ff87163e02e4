//! In-process tests of the gateway's fan-out and retry rules: one real `sheep::run` and
//! scripted fake peers (`sd_testkit::fake_peer`) in one `-c local` cluster, driven over a
//! real socket with raw frames as a client would.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sd_cluster::placement::Ring;
use sd_proto::cluster::flags;
use sd_proto::{
    ClusterArgs, Epoch, ObjArgs, Oid, Opcode, RequestHeader, ResponseHeader, SdResult, VdiArgs, Vid,
};
use sd_testkit::fake_peer::{FakePeer, Received, Script};
use sd_testkit::{assert_same_bytes, pattern};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use common::Conn;

/// Bound on every wait for the cluster (joins, leaves, answers): far above what they take.
const BOUND: Duration = Duration::from_secs(20);
/// Data object size (the format's default block size shift, 22).
const OBJ_SIZE: usize = 4 << 20;

struct Node {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let mut cfg = sheep::Config::new(dir.path().to_path_buf());
        cfg.cluster = sd_cluster::DriverSpec::Local {
            path: Some(dir.path().join("cluster")),
        };
        let c = cancel.clone();
        let task = tokio::spawn(async move { sheep::run(listener, cfg, c).await.unwrap() });
        Node {
            dir,
            addr,
            cancel,
            task,
        }
    }

    fn cluster_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("cluster")
    }

    /// The real node's copy of `oid`, whole, if it has one.
    fn object(&self, oid: Oid) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join(format!("obj/{oid}"))).ok()
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

impl Conn {
    async fn obj(&mut self, op: Opcode, oid: Oid, offset: u64, data: &[u8]) -> ResponseHeader {
        self.call(obj(op, oid, offset, 0), data).await.0
    }

    async fn read(&mut self, oid: Oid, offset: u64, len: usize) -> (SdResult, Bytes) {
        let (rsp, data) = self
            .call(obj(Opcode::ReadObj, oid, offset, len as u32), &[])
            .await;
        (rsp.result, data)
    }

    /// The members the real node lists, polled until there are `n` of them.
    async fn wait_members(&mut self, n: u32) -> Epoch {
        let deadline = Instant::now() + BOUND;
        loop {
            let mut h = RequestHeader::new(Opcode::GetNodeList);
            h.data_length = 64 << 10;
            let (rsp, _) = self.call(h, &[]).await;
            if rsp.node().nr_nodes == n {
                return rsp.epoch;
            }
            assert!(Instant::now() < deadline, "never {n} members");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn obj(op: Opcode, oid: Oid, offset: u64, len: u32) -> RequestHeader {
    let mut h = RequestHeader::new(op).with_obj(ObjArgs {
        oid,
        offset,
        ..ObjArgs::default()
    });
    h.data_length = len;
    h
}

/// A real node and `fakes` fake peers, formatted with `copies` once all of them are
/// members, and a VDI "v" created through the real node.
async fn cluster(fakes: usize, copies: u8) -> (Node, Vec<FakePeer>, Conn, Vid) {
    let node = Node::start().await;
    let mut c = Conn::new(node.addr).await;
    // The real node's join is in the log first (it created it); then the fakes join.
    c.wait_members(1).await;
    let mut peers = Vec::new();
    for _ in 0..fakes {
        peers.push(FakePeer::start(&node.cluster_dir()).await.unwrap());
    }
    c.wait_members(1 + fakes as u32).await;
    let h = RequestHeader::new(Opcode::MakeFs).with_cluster(ClusterArgs {
        ctime: 1 << 32,
        copies,
        flags: flags::AUTO_VNODES,
        ..ClusterArgs::default()
    });
    let (rsp, _) = c.call(h, b"plain\0").await;
    assert_eq!(rsp.result, SdResult::Success);
    for p in &peers {
        p.wait_epoch(Epoch(1), BOUND).await.unwrap();
    }
    let mut name = b"v".to_vec();
    name.resize(256, 0);
    let h = RequestHeader::new(Opcode::NewVdi).with_vdi(VdiArgs {
        vdi_size: 1 << 30,
        copies,
        ..VdiArgs::default()
    });
    let (rsp, _) = c.call(h, &name).await;
    assert_eq!(rsp.result, SdResult::Success);
    let vid = Vid::from_masked(rsp.vdi().vdi_id);
    (node, peers, c, vid)
}

/// `data` laid at `offset` over a zeroed object of `size` bytes.
fn object_with(size: usize, offset: usize, data: &[u8]) -> Vec<u8> {
    let mut o = vec![0; size];
    o[offset..offset + data.len()].copy_from_slice(data);
    o
}

/// A data object of `vid` whose replicas (with `copies`) among `members` are all fake
/// peers: the real node (`real`) holds no copy of it.
fn oid_not_on(
    real: SocketAddr,
    members: &[sd_proto::node::SdNode],
    vid: Vid,
    copies: usize,
) -> Oid {
    let ring = Ring::new(members);
    let real = sd_proto::node::NodeId::from_socket(real);
    (0..1024)
        .map(|i| vid.data_oid(i))
        .find(|oid| ring.replicas(*oid, copies).iter().all(|n| n.nid != real))
        .expect("some object placed on the fake peers only")
}

/// A write reaches every replica of the epoch with the client's bytes: the fake peer gets
/// CREATE_AND_WRITE_PEER, then WRITE_PEER, tagged with the epoch the client's answer
/// carries, and both copies end up byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_fans_out_to_every_replica() {
    let (node, peers, mut c, vid) = cluster(1, 2).await;
    let fake = &peers[0];
    let oid = vid.data_oid(0);
    let first = pattern(1, 4096, 8192);
    let rsp = c.obj(Opcode::CreateAndWriteObj, oid, 4096, &first).await;
    assert_eq!(rsp.result, SdResult::Success);

    let got = fake.received(Opcode::CreateAndWritePeer);
    let got: Vec<_> = got.iter().filter(|r| r.oid == oid).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].epoch, got[0].offset), (rsp.epoch, 4096));
    assert_same_bytes(&got[0].payload, &first, "CREATE_AND_WRITE_PEER payload");
    let expect = object_with(OBJ_SIZE, 4096, &first);
    assert_same_bytes(&fake.object(oid).unwrap(), &expect, "fake's copy");
    assert_same_bytes(&node.object(oid).unwrap(), &expect, "real node's copy");

    let second = pattern(2, 100, 512);
    let rsp = c.obj(Opcode::WriteObj, oid, 100, &second).await;
    assert_eq!(rsp.result, SdResult::Success);
    let got = fake.received(Opcode::WritePeer);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].oid, got[0].epoch, got[0].offset),
        (oid, rsp.epoch, 100)
    );
    let mut expect = expect;
    expect[100..612].copy_from_slice(&second);
    assert_same_bytes(&fake.object(oid).unwrap(), &expect, "fake's copy");
    assert_same_bytes(&node.object(oid).unwrap(), &expect, "real node's copy");
    // The real node is a replica: it reads its own copy and does not ask the fake.
    let (r, back) = c.read(oid, 0, 8192).await;
    assert_eq!(r, SdResult::Success);
    assert_same_bytes(&back, &expect[..8192], "read");
    assert!(fake.received(Opcode::ReadPeer).is_empty());
    node.stop().await;
}

/// A replica's error answer is the write's answer (the first failure wins): the client
/// sees EIO or NO_SPACE, never success. There is no rollback: the replica that did
/// succeed keeps the new bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_error_fails_the_write() {
    let (node, peers, mut c, vid) = cluster(1, 2).await;
    let fake = &peers[0];
    let oid = vid.data_oid(1);
    let old = pattern(3, 0, 4096);
    let rsp = c.obj(Opcode::CreateAndWriteObj, oid, 0, &old).await;
    assert_eq!(rsp.result, SdResult::Success);

    fake.on(Opcode::WritePeer, Script::Answer(SdResult::Eio));
    let new = pattern(4, 0, 4096);
    let rsp = c.obj(Opcode::WriteObj, oid, 0, &new).await;
    assert_eq!(rsp.result, SdResult::Eio);
    // Asked once: an error is not retried.
    assert_eq!(fake.received(Opcode::WritePeer).len(), 1);
    assert_same_bytes(&fake.object(oid).unwrap()[..4096], &old, "fake's copy");
    // The client was told the write failed, yet the real replica applied it: the copies
    // differ, so the gateway queues the object to make them identical again (`fanout`),
    // and soon compares the copies (this fake does not answer GET_HASH, so they stay as
    // they are here; tests/it/fanout.rs has real replicas).
    assert_same_bytes(&node.object(oid).unwrap()[..4096], &new, "real node's copy");
    fake.wait_received(Opcode::GetHash, oid, 1, BOUND)
        .await
        .unwrap();

    // A failed create: the next one, unscripted, succeeds.
    let oid = vid.data_oid(2);
    fake.on_times(
        Opcode::CreateAndWritePeer,
        1,
        Script::Answer(SdResult::NoSpace),
    );
    let rsp = c.obj(Opcode::CreateAndWriteObj, oid, 0, &new).await;
    assert_eq!(rsp.result, SdResult::NoSpace);
    assert!(fake.object(oid).is_none());
    let rsp = c.obj(Opcode::CreateAndWriteObj, oid, 0, &new).await;
    assert_eq!(rsp.result, SdResult::Success);
    assert_same_bytes(&fake.object(oid).unwrap()[..4096], &new, "fake's copy");
    node.stop().await;
}

/// A replica that has not applied the epoch yet (NEW_NODE_VER) is asked again after a
/// short pause, in the same epoch, and the write succeeds without the client noticing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_behind_the_epoch_is_asked_again() {
    let (node, peers, mut c, vid) = cluster(1, 2).await;
    let fake = &peers[0];
    let oid = vid.data_oid(3);
    let data = pattern(5, 0, 4096);
    assert_eq!(
        c.obj(Opcode::CreateAndWriteObj, oid, 0, &data).await.result,
        SdResult::Success
    );
    fake.on_times(Opcode::WritePeer, 2, Script::Answer(SdResult::NewNodeVer));
    let data = pattern(6, 0, 4096);
    let rsp = c.obj(Opcode::WriteObj, oid, 0, &data).await;
    assert_eq!(rsp.result, SdResult::Success);
    let got = fake.received(Opcode::WritePeer);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|r| r.epoch == rsp.epoch), "{got:?}");
    assert_same_bytes(&fake.object(oid).unwrap()[..4096], &data, "fake's copy");
    assert_same_bytes(
        &node.object(oid).unwrap()[..4096],
        &data,
        "real node's copy",
    );
    node.stop().await;
}

/// One object of a VDI placed on the two fake peers only, written through the gateway:
/// the cluster, the object, and its (primary, secondary) replicas by index into `peers`.
async fn on_fakes_only() -> (Node, Vec<FakePeer>, Conn, Oid, Vec<u8>, (usize, usize)) {
    let (node, peers, mut c, vid) = cluster(2, 2).await;
    let members = peers[0].members();
    let oid = oid_not_on(node.addr, &members, vid, 2);
    let data = pattern(14, 0, 4096);
    assert_eq!(
        c.obj(Opcode::CreateAndWriteObj, oid, 0, &data).await.result,
        SdResult::Success
    );
    let order = Ring::new(&members).replicas(oid, 2);
    let index = |i: usize| peers.iter().position(|p| p.nid() == order[i].nid).unwrap();
    let replicas = (index(0), index(1));
    (node, peers, c, oid, data, replicas)
}

/// A read of an object the real node does not hold goes to the fake replicas in placement
/// order; one answering EIO makes the gateway read the next; when every replica fails,
/// the client gets the last failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_falls_back_to_the_next_replica() {
    let (node, peers, mut c, oid, data, (p, s)) = on_fakes_only().await;
    assert_eq!(peers[0].members().len(), 3);
    assert!(node.object(oid).is_none(), "the real node is no replica");
    let (primary, secondary) = (&peers[p], &peers[s]);
    for p in [primary, secondary] {
        assert_same_bytes(&p.object(oid).unwrap()[..4096], &data, "fake's copy");
    }

    // The primary serves it; the secondary is not asked.
    let (r, back) = c.read(oid, 0, 4096).await;
    assert_eq!(r, SdResult::Success);
    assert_same_bytes(&back, &data, "read from the primary");
    assert_eq!(primary.received(Opcode::ReadPeer).len(), 1);
    assert!(secondary.received(Opcode::ReadPeer).is_empty());

    // The secondary's copy is made recognisable; the primary fails with EIO.
    let other = pattern(8, 0, OBJ_SIZE);
    secondary.put_object(oid, other.clone(), secondary.epoch());
    primary.on(Opcode::ReadPeer, Script::Answer(SdResult::Eio));
    let (r, back) = c.read(oid, 512, 4096).await;
    assert_eq!(r, SdResult::Success);
    assert_same_bytes(&back, &other[512..512 + 4096], "read from the secondary");
    assert_eq!(primary.received(Opcode::ReadPeer).len(), 2);
    let got = secondary.received(Opcode::ReadPeer);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].offset, got[0].data_length), (512, 4096));

    // Nobody serves it: the last replica's failure is the answer.
    secondary.on(Opcode::ReadPeer, Script::Answer(SdResult::NoObj));
    assert_eq!(c.read(oid, 0, 4096).await.0, SdResult::NoObj);
    primary.on(Opcode::ReadPeer, Script::Answer(SdResult::NoObj));
    secondary.on(Opcode::ReadPeer, Script::Answer(SdResult::Eio));
    assert_eq!(c.read(oid, 0, 4096).await.0, SdResult::Eio);
    node.stop().await;
}

/// A replica that dies while it is being written (its connection drops, its liveness lock
/// is released) does not fail the write: the gateway waits for the membership to drop it
/// and writes again to the new epoch's replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_dying_mid_write_is_dropped_and_the_write_retried() {
    let (node, peers, mut c, vid) = cluster(1, 2).await;
    let fake = &peers[0];
    let oid = vid.data_oid(4);
    let old = pattern(9, 0, 4096);
    let rsp = c.obj(Opcode::CreateAndWriteObj, oid, 0, &old).await;
    assert_eq!(rsp.result, SdResult::Success);
    let before = rsp.epoch;

    fake.on(Opcode::WritePeer, Script::Die);
    let new = pattern(10, 0, 4096);
    let rsp = c.obj(Opcode::WriteObj, oid, 0, &new).await;
    assert_eq!(rsp.result, SdResult::Success);
    assert!(rsp.epoch > before, "answered in epoch {}", rsp.epoch);
    assert!(fake.is_dead());
    let got = fake.received(Opcode::WritePeer);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].epoch, before);
    assert_same_bytes(&fake.object(oid).unwrap()[..4096], &old, "dead fake's copy");
    assert_same_bytes(&node.object(oid).unwrap()[..4096], &new, "real node's copy");
    assert_eq!(c.wait_members(1).await, rsp.epoch);
    let (r, back) = c.read(oid, 0, 4096).await;
    assert_eq!(r, SdResult::Success);
    assert_same_bytes(&back, &new, "read after the death");
    node.stop().await;
}

/// A write is acknowledged only once every replica acknowledged it: a stalled replica
/// holds it; once released, the write completes in the same epoch with its bytes on both.
/// A replica that stalls and then dies no longer holds it: it completes in the next epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_replica_holds_the_write_until_it_answers_or_leaves() {
    let (node, peers, mut c, vid) = cluster(1, 2).await;
    let fake = &peers[0];
    let oid = vid.data_oid(5);
    let data = pattern(11, 0, 4096);
    let rsp = c.obj(Opcode::CreateAndWriteObj, oid, 0, &data).await;
    assert_eq!(rsp.result, SdResult::Success);
    let epoch = rsp.epoch;

    fake.on(Opcode::WritePeer, Script::Stall);
    let first = pattern(12, 0, 4096);
    let id = c.send(obj(Opcode::WriteObj, oid, 0, 0), &first).await;
    fake.wait_received(Opcode::WritePeer, oid, 1, BOUND)
        .await
        .unwrap();
    // The real replica is written already, yet the client waits for the stalled one.
    let pending = tokio::time::timeout(Duration::from_millis(300), c.recv()).await;
    assert!(pending.is_err(), "acknowledged without the stalled replica");
    fake.release();
    let (rsp, _) = tokio::time::timeout(BOUND, c.recv()).await.unwrap();
    assert_eq!(
        (rsp.id, rsp.result, rsp.epoch),
        (id, SdResult::Success, epoch)
    );
    assert_same_bytes(&fake.object(oid).unwrap()[..4096], &first, "fake's copy");
    assert_same_bytes(
        &node.object(oid).unwrap()[..4096],
        &first,
        "real node's copy",
    );

    let second = pattern(13, 0, 4096);
    let id = c.send(obj(Opcode::WriteObj, oid, 0, 0), &second).await;
    fake.wait_received(Opcode::WritePeer, oid, 2, BOUND)
        .await
        .unwrap();
    fake.die();
    let (rsp, _) = tokio::time::timeout(BOUND, c.recv()).await.unwrap();
    assert_eq!((rsp.id, rsp.result), (id, SdResult::Success));
    assert!(rsp.epoch > epoch, "answered in epoch {}", rsp.epoch);
    assert_same_bytes(
        &fake.object(oid).unwrap()[..4096],
        &first,
        "dead fake's copy",
    );
    assert_same_bytes(
        &node.object(oid).unwrap()[..4096],
        &second,
        "real node's copy",
    );
    node.stop().await;
}

/// The fake peer's own bookkeeping: it joined, took part in the format's epoch and
/// announced its recovery (MAKE_FS answered, so the cluster became stable), and the real
/// node's recovery asked it for its object list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fake_peer_is_a_member_the_real_node_recovers_with() {
    let (node, peers, _c, _vid) = cluster(1, 2).await;
    let fake = &peers[0];
    assert_eq!(fake.epoch(), Epoch(1));
    let members = fake.members();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m.nid == fake.nid()));
    assert!(!fake.received(Opcode::GetObjList).is_empty());
    node.stop().await;
}

/// A replica's read answer of the wrong length is a failed replica: the gateway reads the
/// next one. Longer than asked: the peer connection rejects it as a framing error and
/// resends once on a new connection first. Shorter than asked: the gateway refuses it
/// (a client told SUCCESS takes `data_length` bytes for its data, as QEMU does).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_answer_of_the_wrong_length() {
    let (node, peers, mut c, oid, data, (p, s)) = on_fakes_only().await;
    let (primary, secondary) = (&peers[p], &peers[s]);
    primary.on(Opcode::ReadPeer, Script::Reply(Bytes::from(vec![7; 8192])));
    let (r, back) = c.read(oid, 0, 4096).await;
    assert_eq!(r, SdResult::Success);
    assert_same_bytes(&back, &data, "read from the secondary");
    assert_eq!(primary.received(Opcode::ReadPeer).len(), 2);
    assert_eq!(secondary.received(Opcode::ReadPeer).len(), 1);

    primary.on(
        Opcode::ReadPeer,
        Script::Reply(Bytes::from_static(b"short")),
    );
    let (rsp, back) = c.call(obj(Opcode::ReadObj, oid, 0, 4096), &[]).await;
    assert_eq!((rsp.result, rsp.data_length), (SdResult::Success, 4096));
    assert_same_bytes(&back, &data, "read from the secondary after a short answer");
    assert_eq!(secondary.received(Opcode::ReadPeer).len(), 2);
    node.stop().await;
}

/// A read asks the replicas one at a time: a first replica that neither answers nor
/// leaves holds the read, although the next replica has the data. Released, it serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_first_replica_holds_a_read() {
    let (node, peers, mut c, oid, data, (p, s)) = on_fakes_only().await;
    let (primary, secondary) = (&peers[p], &peers[s]);
    primary.on(Opcode::ReadPeer, Script::Stall);
    let id = c.send(obj(Opcode::ReadObj, oid, 0, 4096), &[]).await;
    primary
        .wait_received(Opcode::ReadPeer, oid, 1, BOUND)
        .await
        .unwrap();
    // FIXME (latency, not correctness): the read waits for the stalled replica until the
    // peer call timeout (30 s) before asking the next one, and every later read asks the
    // stalled one first again. A per-read deadline or a hedged second read would bound it.
    let pending = tokio::time::timeout(Duration::from_millis(500), c.recv()).await;
    assert!(pending.is_err(), "answered without the stalled replica");
    assert!(secondary.received(Opcode::ReadPeer).is_empty());
    primary.release();
    let (rsp, back) = tokio::time::timeout(BOUND, c.recv()).await.unwrap();
    assert_eq!((rsp.id, rsp.result), (id, SdResult::Success));
    assert_same_bytes(&back, &data, "read from the released primary");
    assert!(secondary.received(Opcode::ReadPeer).is_empty());
    node.stop().await;
}

/// A replica's death moves an object it held onto the real node, which recovers it from
/// the surviving replica (FETCH_PEER: a version probe, then the copy). A copy of the wrong
/// size in that answer is refused, never stored: recovery waits and asks again, and
/// meanwhile a client's read is served by the replica holding the whole object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_refuses_a_short_copy() {
    let (node, peers, mut c, oid, data, (p, s)) = on_fakes_only().await;
    let (primary, secondary) = (&peers[p], &peers[s]);
    // The version probes are served; the fetch of the copy gets 100 bytes of data.
    let mut short = secondary.epoch().get().to_le_bytes().to_vec();
    short.extend_from_slice(&data[..100]);
    // (Recovery may fetch other objects, the VDI's inode among them: those are served.)
    let room = move |r: &Received| r.oid == oid && r.data_length > 4;
    secondary.on_if(Opcode::FetchPeer, room, Script::Reply(Bytes::from(short)));
    primary.die();
    let epoch = c.wait_members(2).await;
    let fetch = secondary
        .wait_until(BOUND, "FETCH_PEER with room for the copy", || {
            secondary.received(Opcode::FetchPeer).into_iter().find(room)
        })
        .await
        .unwrap();
    assert_eq!((fetch.oid, fetch.epoch), (oid, epoch));
    assert_eq!(fetch.data_length as usize, OBJ_SIZE + 4);
    // Version probes came first (repeated while the fake had not applied the epoch yet).
    let fetches: Vec<_> = secondary
        .received(Opcode::FetchPeer)
        .into_iter()
        .filter(|r| r.oid == oid)
        .collect();
    assert!(fetches.len() >= 2, "{fetches:?}");
    assert_eq!(fetches[0].data_length, 4, "{fetches:?}");
    // Refused, so asked again (recovery retries while the copy cannot be had).
    secondary
        .wait_until(BOUND, "a second FETCH_PEER with room for the copy", || {
            let n = secondary
                .received(Opcode::FetchPeer)
                .into_iter()
                .filter(room)
                .count();
            (n >= 2).then_some(())
        })
        .await
        .unwrap();
    assert_eq!(node.object(oid), None, "a short copy was stored");
    // Served whole, by recovering through the next fetch.
    secondary.clear_scripts();
    let (r, back) = c.read(oid, 0, 4096).await;
    assert_eq!(r, SdResult::Success);
    assert_same_bytes(&back, &data, "read after the short copy was refused");
    // And recovery stores the whole copy once it is served.
    let deadline = tokio::time::Instant::now() + BOUND;
    let copy = loop {
        if let Some(o) = node.object(oid).filter(|o| o.len() == OBJ_SIZE) {
            break o;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the whole copy was not recovered on the real node"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_same_bytes(&copy[..4096], &data, "the recovered copy");
    node.stop().await;
}

/// A remove reaches every replica; one that has no copy (NO_OBJ) does not fail it, but
/// a remove that finds no copy anywhere answers NO_OBJ.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remove_needs_a_copy_on_some_replica() {
    let (node, peers, mut c, vid) = cluster(1, 2).await;
    let fake = &peers[0];
    let oid = vid.data_oid(6);
    let data = pattern(15, 0, 4096);
    assert_eq!(
        c.obj(Opcode::CreateAndWriteObj, oid, 0, &data).await.result,
        SdResult::Success
    );
    fake.on_oid(Opcode::RemovePeer, oid, Script::Answer(SdResult::NoObj));
    let rsp = c.obj(Opcode::RemoveObj, oid, 0, &[]).await;
    assert_eq!(rsp.result, SdResult::Success);
    let got = fake.received(Opcode::RemovePeer);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].oid, got[0].epoch), (oid, rsp.epoch));
    assert!(node.object(oid).is_none());

    // Unscripted, the fake removes the copy it kept; a third remove finds none: NO_OBJ.
    fake.clear_scripts();
    assert!(fake.object(oid).is_some());
    let rsp = c.obj(Opcode::RemoveObj, oid, 0, &[]).await;
    assert_eq!(rsp.result, SdResult::Success, "the fake still had its copy");
    assert!(fake.object(oid).is_none());
    let rsp = c.obj(Opcode::RemoveObj, oid, 0, &[]).await;
    assert_eq!(rsp.result, SdResult::NoObj);
    assert_eq!(fake.received(Opcode::RemovePeer).len(), 3);
    node.stop().await;
}
