//! In-process tests: `sheep::run` on port 0, driven over a real socket with raw frames.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::net::SocketAddr;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use sd_proto::cluster::{SD_VDI_BITMAP_SIZE, flags};
use sd_proto::inode::data_index_offset;
use sd_proto::{
    ClusterArgs, Flags, ObjArgs, Opcode, RequestHeader, ResponseDecoder, ResponseHeader, SdResult,
    VdiArgs, Vid,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

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

struct Conn {
    s: TcpStream,
    buf: BytesMut,
    next_id: u32,
}

impl Conn {
    async fn new(addr: SocketAddr) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    async fn send(&mut self, mut h: RequestHeader, payload: &[u8]) -> u32 {
        h.id = self.next_id;
        self.next_id += 1;
        if !payload.is_empty() {
            h.flags = h.flags | Flags::WRITE;
            h.data_length = payload.len() as u32;
        }
        let mut out = BytesMut::new();
        sd_proto::codec::encode_request(&h, payload, &mut out);
        self.s.write_all(&out).await.unwrap();
        h.id
    }

    async fn recv(&mut self) -> (ResponseHeader, Bytes) {
        let mut dec = ResponseDecoder::new(64 << 20);
        loop {
            if let Some(r) = dec.decode(&mut self.buf).unwrap() {
                return r;
            }
            assert_ne!(
                self.s.read_buf(&mut self.buf).await.unwrap(),
                0,
                "server closed"
            );
        }
    }

    async fn call(&mut self, h: RequestHeader, payload: &[u8]) -> (ResponseHeader, Bytes) {
        let id = self.send(h, payload).await;
        let (rsp, data) = self.recv().await;
        assert_eq!(rsp.id, id);
        (rsp, data)
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
