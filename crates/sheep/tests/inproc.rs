//! In-process tests: `sheep::run` on port 0, driven over a real socket with raw frames.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use sd_proto::cluster::{SD_VDI_BITMAP_SIZE, flags};
use sd_proto::inode::data_index_offset;
use sd_proto::stat::{RECOVERY_STATE_SIZE, RecoveryState};
use sd_proto::{ClusterArgs, ObjArgs, Opcode, RequestHeader, SdResult, VdiArgs, Vid};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use common::Conn;

struct Node {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path) -> Node {
    start_on(dir, "127.0.0.1:0".parse().unwrap()).await
}

async fn start_on(dir: &Path, addr: SocketAddr) -> Node {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let mut cfg = sheep::Config::new(dir.to_path_buf());
    // The cluster state sits next to the store: private to this test.
    cfg.cluster = sd_cluster::DriverSpec::Local {
        path: Some(dir.join("cluster")),
    };
    let c = cancel.clone();
    let task = tokio::spawn(async move { sheep::run(listener, cfg, c).await.unwrap() });
    Node { addr, cancel, task }
}

impl Node {
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

fn obj(op: Opcode, oid: sd_proto::Oid, offset: u64, len: u32) -> RequestHeader {
    let mut h = RequestHeader::new(op).with_obj(ObjArgs {
        oid,
        offset,
        ..ObjArgs::default()
    });
    h.data_length = len;
    h
}

fn name_field(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(256, 0);
    v
}

async fn format(c: &mut Conn) {
    let h = RequestHeader::new(Opcode::MakeFs).with_cluster(ClusterArgs {
        ctime: 1 << 32,
        copies: 1,
        flags: flags::AUTO_VNODES,
        ..ClusterArgs::default()
    });
    let (rsp, _) = c.call(h, b"plain\0").await;
    assert_eq!(rsp.result, SdResult::Success);
}

async fn new_vdi(c: &mut Conn, name: &str, size: u64) -> (SdResult, Vid) {
    let h = RequestHeader::new(Opcode::NewVdi).with_vdi(VdiArgs {
        vdi_size: size,
        ..VdiArgs::default()
    });
    let (rsp, _) = c.call(h, &name_field(name)).await;
    (rsp.result, Vid::from_masked(rsp.vdi().vdi_id))
}

async fn lookup(c: &mut Conn, name: &str) -> (SdResult, u32) {
    let (rsp, _) = c
        .call(RequestHeader::new(Opcode::GetVdiInfo), &name_field(name))
        .await;
    (rsp.result, rsp.vdi().vdi_id)
}

#[tokio::test]
async fn data_and_vdis_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut c = Conn::new(node.addr).await;
    format(&mut c).await;
    let (r, vid) = new_vdi(&mut c, "test", 1 << 30).await;
    assert_eq!((r, vid.get()), (SdResult::Success, 0x7c2b25));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (rsp, _) = c
        .call(
            obj(Opcode::CreateAndWriteObj, vid.data_oid(3), 777, 0),
            &data,
        )
        .await;
    assert_eq!(rsp.result, SdResult::Success);
    assert!(dir.path().join("obj/007c2b2500000003").exists());
    drop(c);
    let addr = node.addr;
    node.stop().await;

    let node = start_on(dir.path(), addr).await;
    let mut c = Conn::new(node.addr).await;
    assert_eq!(lookup(&mut c, "test").await, (SdResult::Success, 0x7c2b25));
    let (rsp, back) = c
        .call(
            obj(Opcode::ReadObj, vid.data_oid(3), 777, data.len() as u32),
            &[],
        )
        .await;
    assert_eq!(rsp.result, SdResult::Success);
    assert_eq!(back.as_ref(), &data[..]);
    // The restarted node rejoined: a new epoch, in which it recovered its own copies.
    assert_eq!(rsp.epoch.get(), 2);
    assert!(dir.path().join("epoch/00000002").exists());
    // A second VDI of the same name is refused.
    assert_eq!(new_vdi(&mut c, "test", 1 << 20).await.0, SdResult::VdiExist);
    drop(c);
    node.stop().await;
}

#[tokio::test]
async fn unreferencing_an_index_entry_and_deleting_free_objects() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut c = Conn::new(node.addr).await;
    format(&mut c).await;
    let (_, vid) = new_vdi(&mut c, "test", 64 << 20).await;
    for idx in 0..3u32 {
        let (rsp, _) = c
            .call(
                obj(Opcode::CreateAndWriteObj, vid.data_oid(idx), 0, 0),
                b"x",
            )
            .await;
        assert_eq!(rsp.result, SdResult::Success);
        let (rsp, _) = c
            .call(
                obj(Opcode::WriteObj, vid.inode_oid(), data_index_offset(idx), 0),
                &vid.get().to_le_bytes(),
            )
            .await;
        assert_eq!(rsp.result, SdResult::Success);
    }
    let obj_path = |i: u32| dir.path().join(format!("obj/{}", vid.data_oid(i)));
    // Zeroing entry 1 drops object 1 (what `dog vdi delete` relies on).
    let (rsp, _) = c
        .call(
            obj(Opcode::WriteObj, vid.inode_oid(), data_index_offset(1), 0),
            &[0; 4],
        )
        .await;
    assert_eq!(rsp.result, SdResult::Success);
    assert!(obj_path(0).exists() && !obj_path(1).exists() && obj_path(2).exists());

    // DEL_VDI frees the rest; the vid stays in use and is marked deleted.
    let (rsp, _) = c
        .call(RequestHeader::new(Opcode::DelVdi), &name_field("test"))
        .await;
    assert_eq!(
        (rsp.result, rsp.vdi().vdi_id),
        (SdResult::Success, vid.get())
    );
    assert!(!obj_path(0).exists() && !obj_path(2).exists());
    assert_eq!(lookup(&mut c, "test").await.0, SdResult::NoVdi);
    let mut h = RequestHeader::new(Opcode::ReadDelVdis);
    h.data_length = SD_VDI_BITMAP_SIZE as u32;
    let (_, del) = c.call(h, &[]).await;
    assert_ne!(del[vid.index() / 8] & (1 << (vid.index() % 8)), 0);
    // The name is free again and gets the next vid of its probe run.
    assert_eq!(
        new_vdi(&mut c, "test", 1 << 20).await,
        (SdResult::Success, Vid::new(0x7c2b26).unwrap())
    );
    node.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut c = Conn::new(node.addr).await;
    format(&mut c).await;
    let (_, vid) = new_vdi(&mut c, "p", 1 << 30).await;
    let mut ids = std::collections::HashMap::new();
    for i in 0..64u32 {
        let payload = vec![i as u8; 4096];
        let id = c
            .send(
                obj(Opcode::CreateAndWriteObj, vid.data_oid(i), 0, 0),
                &payload,
            )
            .await;
        ids.insert(id, i);
    }
    for _ in 0..64 {
        let (rsp, _) = c.recv().await;
        assert_eq!(rsp.result, SdResult::Success);
        assert!(ids.remove(&rsp.id).is_some(), "unexpected id {}", rsp.id);
    }
    for i in 0..64u32 {
        let (_, d) = c
            .call(obj(Opcode::ReadObj, vid.data_oid(i), 0, 4096), &[])
            .await;
        assert!(d.iter().all(|b| *b == i as u8));
    }
    node.stop().await;
}

/// A member of the cluster log that accepts connections and reads requests but never
/// answers: a sheep cut off by a partition (packets dropped, so its connections go silent
/// without a reset) until the others record its leave. It reports what it received.
struct SilentMember {
    driver: Option<sheep::driver::local::LocalDriver>,
    /// Stops its driver.
    cancel: CancellationToken,
    /// Closes its listener and connections (when the test is done with it).
    close: CancellationToken,
    received: tokio::sync::mpsc::UnboundedReceiver<(Opcode, sd_proto::Oid)>,
}

impl SilentMember {
    /// Joins the local cluster whose shared directory is `cluster`.
    async fn join(cluster: &Path) -> SilentMember {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nid = sd_proto::node::NodeId::from_socket(listener.local_addr().unwrap());
        let cancel = CancellationToken::new();
        let close = CancellationToken::new();
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        let stop = close.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tokio::select! {
                    () = stop.cancelled() => return,
                    a = listener.accept() => a.unwrap(),
                };
                let tx = tx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    let mut dec = sd_proto::RequestDecoder::new(64 << 20);
                    loop {
                        while let Some(f) = dec.decode(&mut buf).unwrap() {
                            if let sd_proto::RequestFrame::Request { header, .. } = f {
                                let _ = tx.send((header.opcode, header.obj().oid));
                            }
                        }
                        tokio::select! {
                            () = stop.cancelled() => return,
                            n = s.read_buf(&mut buf) => if n.unwrap_or(0) == 0 { return },
                        }
                    }
                });
            }
        });
        let node = sd_proto::node::SdNode {
            nid,
            io_addr: [0; 16],
            io_port: 0,
            nr_vnodes: 128,
            zone: nid.default_zone(),
            space: 0,
        };
        let saved = sd_cluster::log::Saved {
            config: sd_proto::cluster::SheepdogConfig::default(),
            epoch: sd_proto::Epoch(0),
            members: Vec::new(),
        };
        // It takes no part beyond holding its liveness lock: its records are not read.
        let (driver, _records) = sheep::driver::local::LocalDriver::start(
            cluster.to_path_buf(),
            node,
            1,
            saved,
            cancel.clone(),
        )
        .await
        .unwrap();
        SilentMember {
            driver: Some(driver),
            cancel,
            close,
            received,
        }
    }

    /// Waits until it has received `op` for `oid`.
    async fn wait_for(&mut self, op: Opcode, oid: sd_proto::Oid) {
        while self.received.recv().await.unwrap() != (op, oid) {}
    }

    /// Dies as a process would: its liveness lock is released, and its connections stay
    /// silent.
    fn leave(&mut self) {
        self.driver = None;
        self.cancel.cancel();
    }
}

impl Drop for SilentMember {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.close.cancel();
    }
}

/// The epoch once the cluster has `n` members, polled until `deadline`.
async fn wait_members(c: &mut Conn, n: u32, deadline: tokio::time::Instant) -> u32 {
    loop {
        let mut h = RequestHeader::new(Opcode::GetNodeList);
        h.data_length = 64 << 10;
        let (rsp, _) = c.call(h, &[]).await;
        if rsp.node().nr_nodes == n {
            return rsp.epoch.get();
        }
        assert!(tokio::time::Instant::now() < deadline, "never {n} members");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A member that goes silent (cut off by a partition, no reset) holds recovery only until
/// the membership drops it: a replica request waiting to recover its object is answered,
/// and the next epoch's recovery finishes, as soon as the member's leave is applied, not
/// when the peer timeout (30 s) ends the calls on its connection.
#[tokio::test]
async fn recovery_stops_waiting_on_a_silent_member_once_it_leaves() {
    // Far below the peer timeout, far above a leave (liveness probes every 300 ms).
    const BOUND: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut c = Conn::new(node.addr).await;
    format(&mut c).await;
    let mut silent = SilentMember::join(&dir.path().join("cluster")).await;
    let joined = wait_members(&mut c, 2, tokio::time::Instant::now() + BOUND).await;

    // A replica read of an object this node lacks: it asks every member for its copy
    // (FETCH_PEER), the silent one too, before it answers.
    let oid = Vid::new(0x7c2b25).unwrap().data_oid(0);
    let mut h = obj(Opcode::ReadPeer, oid, 0, 4096);
    h.epoch = sd_proto::Epoch(joined);
    let id = c.send(h, &[]).await;
    tokio::time::timeout(BOUND, silent.wait_for(Opcode::FetchPeer, oid))
        .await
        .expect("no FETCH_PEER reached the silent member");
    silent.leave();
    let (rsp, _) = tokio::time::timeout(BOUND, c.recv())
        .await
        .expect("the replica read still waits on the member that left");
    // The object could not be checked in that epoch: the gateway retries in the next.
    assert_eq!((rsp.id, rsp.result), (id, SdResult::Again));
    let left = rsp.epoch.get();
    assert!(left > joined, "answered in epoch {left}");
    let mut h = obj(Opcode::ReadPeer, oid, 0, 4096);
    h.epoch = rsp.epoch;
    let (rsp, _) = c.call(h, &[]).await;
    assert_eq!(rsp.result, SdResult::NoObj, "no member holds it");

    // The recovery of the epoch without the silent member finishes too.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let mut h = RequestHeader::new(Opcode::StatRecovery);
        h.data_length = RECOVERY_STATE_SIZE as u32;
        let (rsp, state) = c.call(h, &[]).await;
        assert_eq!(rsp.result, SdResult::Success);
        if !RecoveryState::decode(&state).unwrap().in_recovery {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recovery still running {BOUND:?} after the silent member left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
}
