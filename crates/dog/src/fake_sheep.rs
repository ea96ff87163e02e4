//! Test-only: an in-process, single-node "sheep" speaking the real wire protocol that
//! records every request, and tests that pin the request sequences of dog-cli.md §7 and
//! the outputs of the implemented commands by running them through the real command
//! line path.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use sd_proto::cluster::{ClusterInfo, EpochLogRecord, SD_VDI_BITMAP_SIZE, flags};
use sd_proto::codec::{RequestDecoder, RequestFrame, encode_response};
use sd_proto::hash::sd_hash_vdi;
use sd_proto::inode::{Inode, InodeHeader};
use sd_proto::node::{NodeId, SdNode};
use sd_proto::store_list::StoreList;
use sd_proto::{
    Epoch, Flags, MAX_REQUEST_PAYLOAD, NodeRsp, Oid, Opcode, RequestHeader, ResponseHeader,
    SdResult, VdiRsp, Vid, c_str,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::cli;
use crate::ctx::{Ctx, Out};

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    op: Opcode,
    oid: u64,
    offset: u64,
    len: u32,
    flags: u16,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    formatted: bool,
    ctime: u64,
    copies: u8,
    objects: HashMap<u64, Vec<u8>>,
    inuse: Vec<u8>,
    deleted: Vec<u8>,
}

impl State {
    fn set(bits: &mut Vec<u8>, vid: u32) {
        if bits.is_empty() {
            bits.resize(SD_VDI_BITMAP_SIZE, 0);
        }
        if let Some(b) = bits.get_mut((vid / 8) as usize) {
            *b |= 1 << (vid % 8);
        }
    }

    fn lookup(&self, name: &[u8]) -> Option<u32> {
        self.objects.iter().find_map(|(oid, data)| {
            let o = Oid::new(*oid);
            let h = InodeHeader::decode(data).ok()?;
            (o.is_inode() && h.name == name && !h.is_snapshot()).then_some(o.vid().get())
        })
    }

    fn handle(
        &mut self,
        h: &RequestHeader,
        payload: &[u8],
        node: SdNode,
    ) -> (SdResult, Vec<u8>, VdiRsp) {
        let o = h.obj();
        let len = h.data_length as usize;
        let none = VdiRsp::default();
        match h.opcode {
            Opcode::GetNodeList => (SdResult::Success, SdNode::encode_list(&[node]), none),
            Opcode::StatCluster => {
                let slots = h.cluster().nodes_nr as usize;
                if !self.formatted {
                    return (SdResult::WaitForFormat, vec![], none);
                }
                if slots < 1 {
                    return (SdResult::BufferSmall, vec![], none);
                }
                let rec = EpochLogRecord {
                    ctime: self.ctime,
                    time: self.ctime >> 32,
                    epoch: Epoch(1),
                    nr_copies: self.copies,
                    flags: flags::AUTO_VNODES,
                    drv_name: b"plain".to_vec(),
                    nodes: vec![node],
                    ..EpochLogRecord::default()
                };
                let mut data = rec.encode(slots);
                data.truncate(len);
                (SdResult::Success, data, none)
            }
            Opcode::ClusterInfo => {
                let ci = ClusterInfo {
                    proto_ver: 0x0a,
                    epoch: Epoch(u32::from(self.formatted)),
                    ctime: self.ctime,
                    flags: flags::AUTO_VNODES,
                    nr_copies: self.copies,
                    status: 1,
                    block_size_shift: 22,
                    default_store: b"plain".to_vec(),
                    nodes: vec![node],
                    ..ClusterInfo::default()
                };
                let mut data = ci.encode();
                data.truncate(len);
                (SdResult::Success, data, none)
            }
            Opcode::MakeFs => {
                if c_str(payload) != b"plain" {
                    return (SdResult::NoStore, vec![], none);
                }
                self.formatted = true;
                self.ctime = h.cluster().ctime;
                self.copies = if h.cluster().copies == 0 {
                    3
                } else {
                    h.cluster().copies
                };
                (SdResult::Success, vec![], none)
            }
            Opcode::GetStoreList => {
                let list = StoreList {
                    names: vec![b"plain".to_vec()],
                };
                (SdResult::Success, list.encode(), none)
            }
            Opcode::ReadVdis | Opcode::ReadDelVdis => {
                let bits = if h.opcode == Opcode::ReadVdis {
                    &self.inuse
                } else {
                    &self.deleted
                };
                let mut data = bits.clone();
                data.resize(SD_VDI_BITMAP_SIZE, 0);
                (SdResult::Success, data, none)
            }
            Opcode::NewVdi => {
                let name = c_str(payload).to_vec();
                if self.lookup(&name).is_some() {
                    return (SdResult::VdiExist, vec![], none);
                }
                let v = h.vdi();
                let vid = sd_hash_vdi(&name).get();
                let hdr = InodeHeader {
                    name,
                    vdi_size: v.vdi_size,
                    create_time: 1_795_564_263 << 32,
                    nr_copies: if v.copies == 0 { self.copies } else { v.copies },
                    copy_policy: v.copy_policy,
                    block_size_shift: if v.block_size_shift == 0 {
                        22
                    } else {
                        v.block_size_shift
                    },
                    vdi_id: vid,
                    ..InodeHeader::default()
                };
                self.objects.insert(
                    Vid::new(vid).unwrap().inode_oid().get(),
                    Inode::new(hdr).encode(),
                );
                State::set(&mut self.inuse, vid);
                let rsp = VdiRsp {
                    vdi_id: vid,
                    ..VdiRsp::default()
                };
                (SdResult::Success, vec![], rsp)
            }
            Opcode::GetVdiInfo | Opcode::DelVdi => {
                let Some(vid) = self.lookup(c_str(payload)) else {
                    return (SdResult::NoVdi, vec![], none);
                };
                if h.opcode == Opcode::DelVdi {
                    State::set(&mut self.deleted, vid);
                    let oid = Vid::new(vid).unwrap().inode_oid().get();
                    if let Some(obj) = self.objects.get_mut(&oid) {
                        obj[..256].fill(0);
                    }
                }
                (
                    SdResult::Success,
                    vec![],
                    VdiRsp {
                        vdi_id: vid,
                        ..VdiRsp::default()
                    },
                )
            }
            Opcode::ReadObj => match self.objects.get(&o.oid.get()) {
                None => (SdResult::NoObj, vec![], none),
                Some(obj) => {
                    let start = usize::try_from(o.offset).unwrap().min(obj.len());
                    let mut data = obj[start..(start + len).min(obj.len())].to_vec();
                    data.resize(len, 0);
                    (SdResult::Success, data, none)
                }
            },
            Opcode::WriteObj | Opcode::CreateAndWriteObj => {
                let create = h.opcode == Opcode::CreateAndWriteObj;
                if create {
                    let mut obj = vec![0u8; usize::try_from(o.oid.object_size(22)).unwrap()];
                    if h.flags.contains(Flags::COW) {
                        obj = self.objects.get(&o.cow_oid.get()).cloned().unwrap_or(obj);
                    }
                    self.objects.insert(o.oid.get(), obj);
                }
                let Some(obj) = self.objects.get_mut(&o.oid.get()) else {
                    return (SdResult::NoObj, vec![], none);
                };
                let start = usize::try_from(o.offset).unwrap();
                obj[start..start + payload.len()].copy_from_slice(payload);
                (SdResult::Success, vec![], none)
            }
            Opcode::StatSheep => (SdResult::Success, vec![], none),
            Opcode::Shutdown => (SdResult::Success, vec![], none),
            _ => (SdResult::InvalidParms, vec![], none),
        }
    }
}

type Shared = Arc<Mutex<State>>;

/// Starts the fake sheep on an ephemeral port.
async fn start() -> (u16, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state: Shared = Arc::default();
    let st = state.clone();
    let node = SdNode {
        nid: NodeId::from_socket(listener.local_addr().unwrap()),
        nr_vnodes: 128,
        zone: 0,
        ..SdNode::default()
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let st = st.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
                loop {
                    while let Ok(Some(RequestFrame::Request { header, payload })) =
                        dec.decode(&mut buf)
                    {
                        let (result, data, vdi) = {
                            let mut s = st.lock().unwrap();
                            let is_obj = matches!(
                                header.opcode,
                                Opcode::ReadObj
                                    | Opcode::WriteObj
                                    | Opcode::CreateAndWriteObj
                                    | Opcode::FlushVdi
                            );
                            let obj = if is_obj {
                                header.obj()
                            } else {
                                sd_proto::ObjArgs::default()
                            };
                            s.seen.push(Seen {
                                op: header.opcode,
                                oid: obj.oid.get(),
                                offset: obj.offset,
                                len: header.data_length,
                                flags: header.flags.0,
                            });
                            s.handle(&header, &payload, node)
                        };
                        let mut rsp =
                            ResponseHeader::reply_to(&header, Epoch(1), result).with_vdi(vdi);
                        if header.opcode == Opcode::StatSheep {
                            rsp = rsp.with_node(NodeRsp {
                                nr_nodes: 0,
                                writeback: false,
                                store_size: 100 << 30,
                                store_free: (100 << 30) - (8 << 20),
                            });
                        }
                        rsp.data_length = u32::try_from(data.len()).unwrap();
                        let mut out = BytesMut::new();
                        encode_response(&rsp, &data, &mut out);
                        if sock.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            });
        }
    });
    (port, state)
}

/// Captured standard output.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `dog <args> -p <port>` in-process; returns (exit code, stdout, data written).
async fn dog(port: u16, args: &str, stdin: &[u8]) -> (u8, String, Vec<u8>) {
    let mut argv: Vec<OsString> = args.split_whitespace().map(OsString::from).collect();
    argv.push("-p".into());
    argv.push(port.to_string().into());
    dog_argv(argv, stdin).await
}

/// Runs `dog <argv>` in-process; returns (exit code, stdout, data written).
async fn dog_argv(args: Vec<OsString>, stdin: &[u8]) -> (u8, String, Vec<u8>) {
    let mut argv: Vec<OsString> = vec!["dog".into()];
    argv.extend(args);
    let text = Capture::default();
    let data = Capture::default();
    let mut out = Out::from_writer(Box::new(text.clone()));
    let code = match cli::parse_invocation(&argv, &mut out) {
        Err(a) => a.0,
        Ok(inv) => {
            let mut ctx = Ctx::new(inv.opts.clone(), inv.addr, out);
            ctx.data_in = Some(Box::new(std::io::Cursor::new(stdin.to_vec())));
            ctx.data_out = Some(Box::new(data.clone()));
            let r = cli::execute(&mut ctx, &inv).await;
            ctx.out.flush();
            match r {
                Ok(c) | Err(crate::exit::Abort(c)) => c,
            }
        }
    };
    let bytes = data.0.lock().unwrap().clone();
    (code, text.text(), bytes)
}

/// The requests seen since the last call, as (opcode, oid, offset, len, flags).
fn take(state: &Shared) -> Vec<(Opcode, u64, u64, u32, u16)> {
    let seen = std::mem::take(&mut state.lock().unwrap().seen);
    seen.into_iter()
        .map(|s| (s.op, s.oid, s.offset, s.len, s.flags))
        .collect()
}

fn ops(v: &[(Opcode, u64, u64, u32, u16)]) -> Vec<Opcode> {
    v.iter().map(|s| s.0).collect()
}

const W: u16 = 0x01;
const COW: u16 = 0x02;
const DIRECT: u16 = 0x08;
const INODE_LEN: u32 = 12_587_576;
const TEST: u64 = 0x807c_2b25_0000_0000;

#[tokio::test]
async fn format_create_write_read_list_delete() {
    use Opcode::*;
    let (port, st) = start().await;

    let (code, out, _) = dog(port, "cluster info", b"").await;
    assert_eq!(
        (code, out.as_str()),
        (0, "Cluster status: Waiting for cluster to be formatted\n\n")
    );
    take(&st);

    let (code, out, _) = dog(port, "cluster format -c 1", b"").await;
    assert_eq!((code, out.as_str()), (0, "using backend plain store\n"));
    assert_eq!(
        ops(&take(&st)),
        vec![GetNodeList, StatCluster, ClusterInfo, ReadVdis, MakeFs]
    );

    let (code, out, _) = dog(port, "vdi create test 1G", b"").await;
    assert_eq!((code, out.as_str()), (0, ""));
    let seen = take(&st);
    assert_eq!(
        ops(&seen),
        vec![GetNodeList, StatCluster, ClusterInfo, NewVdi]
    );
    assert_eq!(
        (seen[1].3, seen[2].3, seen[3].3, seen[3].4),
        (48, 491_568, 256, W)
    );

    // Unaligned write across an object boundary: create + index update per object.
    let (code, _, _) = dog(port, "vdi write test 4194300 8", b"abcdefgh").await;
    assert_eq!(code, 0);
    assert_eq!(
        take(&st),
        vec![
            (GetVdiInfo, 0, 0, 512, W),
            (ReadObj, TEST, 0, INODE_LEN, DIRECT),
            (CreateAndWriteObj, 0x007c_2b25_0000_0000, 4_194_300, 4, W),
            (WriteObj, TEST, 4664, 4, W),
            (CreateAndWriteObj, 0x007c_2b25_0000_0001, 0, 4, W),
            (WriteObj, TEST, 4668, 4, W),
            // Durable on return, also on a writeback cluster.
            (FlushVdi, TEST, 0, 0, 0),
        ]
    );
    // Overwrite of owned objects: plain WRITE_OBJ, no index update.
    let (code, _, _) = dog(port, "vdi write test 4194301 2", b"XY").await;
    assert_eq!(code, 0);
    assert_eq!(
        take(&st)[2..],
        [
            (WriteObj, 0x007c_2b25_0000_0000, 4_194_301, 2, W),
            (FlushVdi, TEST, 0, 0, 0)
        ]
    );

    let (code, _, data) = dog(port, "vdi read test 4194296 16", b"").await;
    assert_eq!(code, 0);
    assert_eq!(data, b"\0\0\0\0aXYdefgh\0\0\0\0");
    assert_eq!(
        take(&st),
        vec![
            (GetVdiInfo, 0, 0, 512, W),
            (ReadObj, TEST, 0, INODE_LEN, DIRECT),
            (ReadObj, 0x007c_2b25_0000_0000, 4_194_296, 8, 0),
            (ReadObj, 0x007c_2b25_0000_0001, 0, 8, 0),
        ]
    );
    // Unallocated ranges are zeros without any request.
    let (_, _, data) = dog(port, "vdi read test 8M 4k", b"").await;
    assert_eq!(data, vec![0u8; 4096]);
    assert_eq!(take(&st).len(), 2);

    let (code, out, _) = dog(port, "vdi list -r", b"").await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "= test 0 1073741824 8388608 0 1795564263 7c2b25 1  22\n"
    );
    assert_eq!(
        take(&st),
        vec![
            (ReadVdis, 0, 0, 2 << 20, 0),
            (ReadDelVdis, 0, 0, 2 << 20, 0),
            (ReadObj, TEST, 0, 4672, DIRECT),
            (ReadObj, TEST, 4664, 256 * 4, DIRECT),
        ]
    );

    let (code, out, _) = dog(port, "node info", b"").await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "Id\tSize\tUsed\tAvail\tUse%\n 0\t100 GB\t8.0 MB\t100 GB\t  0%\nTotal\t100 GB\t8.0 MB\t100 GB\t  0%\n\nTotal virtual image size\t1.0 GB\n"
    );
    assert_eq!(
        ops(&take(&st)),
        vec![
            GetNodeList,
            StatCluster,
            StatSheep,
            ReadVdis,
            ReadDelVdis,
            ReadObj
        ]
    );

    let (code, _, _) = dog(port, "vdi delete test", b"").await;
    assert_eq!(code, 0);
    assert_eq!(
        take(&st),
        // LOOKUP, then DEL_VDI: the sheep frees the objects itself (no index batches).
        vec![(GetVdiInfo, 0, 0, 512, W), (DelVdi, 0, 0, 512, W),]
    );
    let (code, out, _) = dog(port, "vdi list", b"").await;
    assert_eq!((code, out.as_str()), (0, crate::format::VDI_LIST_HEADER));

    // Sheepdog 1.0 exits 0 here; this dog reports the failure.
    let (code, _, _) = dog(port, "vdi delete test", b"").await;
    assert_eq!(code, 1);
}

#[tokio::test]
async fn prealloc_cow_and_errors() {
    use Opcode::*;
    let (port, st) = start().await;
    let (code, _, _) = dog(port, "vdi create x 1G", b"").await;
    assert_eq!(code, 1, "unformatted cluster");
    dog(port, "cluster format", b"").await;
    take(&st);

    let (code, out, _) = dog(port, "vdi create -P -v pre 8M", b"").await;
    assert_eq!(
        (code, out.as_str()),
        (0, "VDI ID of newly created VDI: a1edc6\n")
    );
    let seen = take(&st);
    let inode = 0x80a1_edc6_0000_0000;
    assert_eq!(
        seen[3..],
        [
            (NewVdi, 0, 0, 256, W),
            (ReadObj, inode, 0, INODE_LEN, DIRECT),
            (CreateAndWriteObj, 0x00a1_edc6_0000_0000, 0, 0, W | DIRECT),
            (WriteObj, inode, 4664, 4, W | DIRECT),
            (CreateAndWriteObj, 0x00a1_edc6_0000_0001, 0, 0, W | DIRECT),
            (WriteObj, inode, 4668, 4, W | DIRECT),
        ]
    );

    // An object owned by another VDI is copied on write.
    {
        let mut s = st.lock().unwrap();
        let obj = s.objects.get_mut(&inode).unwrap();
        obj[4664..4668].copy_from_slice(&0x1234u32.to_le_bytes());
    }
    let (code, _, _) = dog(port, "vdi write -w pre 0 1", b"z").await;
    assert_eq!(code, 0);
    let seen = take(&st);
    assert_eq!(
        seen[2],
        (
            CreateAndWriteObj,
            0x00a1_edc6_0000_0000,
            0,
            1,
            W | COW | 0x04
        )
    );
    assert_eq!(seen[3], (WriteObj, inode, 4664, 4, W | 0x04));

    // Short stdin: only the bytes read are written (no zero fill over existing data) and
    // writing stops; empty stdin writes nothing.
    let (code, _, _) = dog(port, "vdi write pre 4M", b"abc").await;
    assert_eq!(code, 0);
    let seen = take(&st);
    assert_eq!(seen[2], (WriteObj, 0x00a1_edc6_0000_0001, 0, 3, W));
    assert_eq!(seen[3], (FlushVdi, inode, 0, 0, 0));
    assert_eq!(seen.len(), 4);
    let (code, _, _) = dog(port, "vdi write pre 4M", b"").await;
    assert_eq!(code, 0);
    assert_eq!(take(&st).len(), 3, "lookup, inode read and flush only");

    let (code, _, _) = dog(port, "vdi read pre 9M", b"").await;
    assert_eq!(code, 1, "offset beyond the end");
    let (code, out, _) = dog(port, "vdi create pre2 5T", b"").await;
    assert_eq!(code, 64);
    assert!(out.starts_with("Usage: dog vdi create "));
    let (code, _, _) = dog(port, "vdi read pre 1X", b"").await;
    assert_eq!(code, 64);
    let (code, out, _) = dog(port, "cluster format -f -b nosuch", b"").await;
    assert_eq!(code, 2);
    assert!(out.ends_with("Available stores:\n---------------------------------------\nplain \n"));
}

/// The subcommands `dog --help` leaves out (not implemented yet) still parse, and fail with
/// exit 1 and nothing on stdout ("not implemented yet" goes to stderr).
#[tokio::test]
async fn hidden_subcommands_still_parse_and_fail() {
    let (port, _st) = start().await;
    let mut hidden = 0;
    for cmd in crate::table::COMMANDS {
        for sub in cmd.subs.iter().filter(|s| !s.is_implemented()) {
            let mut argv: Vec<OsString> = vec![cmd.name.into(), sub.name.into()];
            if let Some(first) = sub.subsub.first() {
                argv.push(first.name.into());
            }
            argv.push("x".into());
            if sub.opts.contains('p') {
                argv.push("-p".into());
                argv.push(port.to_string().into());
            }
            let what = format!("{argv:?}");
            let (code, out, _) = dog_argv(argv, b"").await;
            assert_eq!((code, out.as_str()), (1, ""), "dog {what}");
            hidden += 1;
        }
    }
    assert_eq!(hidden, 15);
}
