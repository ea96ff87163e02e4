//! Typed calls, one method per operation `dog` (and later peers and tests) needs.
//!
//! Every method checks the result code and returns [`ClientError::Result`] for anything
//! but SUCCESS, except [`Connection::stat_cluster`], whose result *is* the cluster
//! status and is returned as data.

use bytes::Bytes;
use sd_proto::cluster::{CLUSTER_INFO_SIZE, ClusterInfo, EpochLogRecord, SD_VDI_BITMAP_SIZE};
use sd_proto::header::VdiStateArgs;
use sd_proto::inode::{SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN};
use sd_proto::node::{SD_MAX_NODES, SD_NODE_SIZE, SdNode};
use sd_proto::store_list::StoreList;
use sd_proto::{
    ClusterArgs, DecodeError, Epoch, Flags, NodeRsp, ObjArgs, Oid, Opcode, RequestHeader,
    ResponseHeader, SdResult, VdiArgs, VdiRsp, Vid,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{ClientError, Connection, VdiBitmap};

/// Length of a store-driver name field (the name plus its NUL must fit).
const STORE_LEN: usize = 16;
/// Buffer `dog` offers for GET_STORE_LIST.
const STORE_LIST_LEN: u32 = 512;

/// Redundancy and flags of an object write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOpts {
    /// Copies (0 = the VDI's).
    pub copies: u8,
    /// Copy policy (0 = replication).
    pub copy_policy: u8,
    /// Extra header flags (e.g. [`Flags::DIRECT`], [`Flags::CACHE`]); WRITE and COW are
    /// added by the call.
    pub flags: Flags,
}

/// Arguments of NEW_VDI.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewVdi<'a> {
    /// VDI name (truncated to 255 bytes).
    pub name: &'a [u8],
    /// Size in bytes.
    pub vdi_size: u64,
    /// Parent vid (0 = fresh VDI).
    pub base_vid: u32,
    /// Snapshot request (`dog` sends 1 for `vdi snapshot`, else 0).
    pub snapid: u32,
    /// Copies (0 = cluster default).
    pub copies: u8,
    /// Copy policy.
    pub copy_policy: u8,
    /// 0 normal, 1 hyper volume.
    pub store_policy: u8,
    /// log2 of the object size (0 = cluster default).
    pub block_size_shift: u8,
}

/// Arguments of MAKE_FS.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeFs<'a> {
    /// Store driver name (truncated to 15 bytes; sent with its NUL).
    pub store: &'a [u8],
    /// Default copies (0 = server default).
    pub copies: u8,
    /// Default copy policy.
    pub copy_policy: u8,
    /// Default block size shift (0 = server default).
    pub block_size_shift: u8,
    /// `SD_CLUSTER_FLAG_*` bits.
    pub flags: u16,
    /// Creation time (`sec << 32 | nsec`).
    pub ctime: u64,
}

/// A STAT_CLUSTER reply. The result code is the cluster status (SUCCESS = running).
#[derive(Debug, Clone)]
pub struct ClusterStat {
    /// Cluster status or BUFFER_SMALL.
    pub result: SdResult,
    /// The answering node's epoch.
    pub epoch: Epoch,
    /// Node slots per record the request asked for.
    pub nodes_nr: u32,
    /// Raw records.
    pub data: Bytes,
}

impl ClusterStat {
    /// Size of one record.
    pub fn record_size(&self) -> usize {
        usize::try_from(self.nodes_nr)
            .ok()
            .and_then(|n| n.checked_mul(SD_NODE_SIZE))
            .and_then(|n| n.checked_add(sd_proto::cluster::EPOCH_LOG_SIZE))
            .unwrap_or(usize::MAX)
    }

    /// Decodes every complete record, newest epoch first.
    pub fn records(&self) -> Result<Vec<EpochLogRecord>, DecodeError> {
        let size = self.record_size();
        let slots = usize::try_from(self.nodes_nr).map_err(|_| DecodeError::Truncated)?;
        self.data
            .chunks_exact(size)
            .map(|rec| EpochLogRecord::decode(rec, slots))
            .collect()
    }
}

fn check(rsp: &ResponseHeader) -> Result<(), ClientError> {
    if rsp.result.is_success() {
        Ok(())
    } else {
        Err(ClientError::Result(rsp.result))
    }
}

fn len_u32(len: usize, what: &'static str) -> Result<u32, ClientError> {
    u32::try_from(len).map_err(|_| ClientError::TooLarge { what })
}

/// Copies `s` into a NUL-padded field of `n` bytes, keeping at most `n - 1` bytes.
fn put_fixed(out: &mut Vec<u8>, s: &[u8], n: usize) {
    let keep = sd_proto::c_str(s);
    let keep = keep.get(..n.saturating_sub(1)).unwrap_or(keep);
    out.extend_from_slice(keep);
    out.resize(out.len() + (n - keep.len()), 0);
}

/// The 512-byte name + tag payload of lookups and DEL_VDI.
fn name_tag(name: &[u8], tag: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SD_MAX_VDI_LEN + SD_MAX_VDI_TAG_LEN);
    put_fixed(&mut buf, name, SD_MAX_VDI_LEN);
    put_fixed(&mut buf, tag, SD_MAX_VDI_TAG_LEN);
    buf
}

fn with_payload(mut h: RequestHeader, payload: &[u8]) -> Result<RequestHeader, ClientError> {
    h.flags = h.flags | Flags::WRITE;
    h.data_length = len_u32(payload.len(), "payload")?;
    Ok(h)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Sends a request and fails unless the result is SUCCESS.
    async fn call_ok(
        &mut self,
        header: RequestHeader,
        payload: &[u8],
    ) -> Result<(ResponseHeader, Bytes), ClientError> {
        let (rsp, data) = self.call(header, payload).await?;
        check(&rsp)?;
        Ok((rsp, data))
    }

    /// READ_OBJ of `len` bytes at `offset`.
    pub async fn read_obj(
        &mut self,
        oid: Oid,
        offset: u64,
        len: u32,
    ) -> Result<Bytes, ClientError> {
        self.read_obj_with(oid, offset, len, Flags::default()).await
    }

    /// READ_OBJ with extra header flags (`dog` sets [`Flags::DIRECT`] on metadata reads).
    pub async fn read_obj_with(
        &mut self,
        oid: Oid,
        offset: u64,
        len: u32,
        flags: Flags,
    ) -> Result<Bytes, ClientError> {
        let mut h = RequestHeader::new(Opcode::ReadObj).with_obj(ObjArgs {
            oid,
            offset,
            ..ObjArgs::default()
        });
        h.flags = flags;
        h.data_length = len;
        Ok(self.call_ok(h, &[]).await?.1)
    }

    /// WRITE_OBJ of `data` at `offset` into an existing object.
    pub async fn write_obj(
        &mut self,
        oid: Oid,
        offset: u64,
        data: &[u8],
        opts: WriteOpts,
    ) -> Result<(), ClientError> {
        let mut h = RequestHeader::new(Opcode::WriteObj).with_obj(ObjArgs {
            oid,
            offset,
            copies: opts.copies,
            copy_policy: opts.copy_policy,
            ..ObjArgs::default()
        });
        h.flags = opts.flags;
        self.call_ok(with_payload(h, data)?, data).await.map(|_| ())
    }

    /// CREATE_AND_WRITE_OBJ; with `cow` the object is created as a copy of that object
    /// (COW flag) with `data` overlaid at `offset`.
    pub async fn create_and_write_obj(
        &mut self,
        oid: Oid,
        cow: Option<Oid>,
        offset: u64,
        data: &[u8],
        opts: WriteOpts,
    ) -> Result<(), ClientError> {
        let mut h = RequestHeader::new(Opcode::CreateAndWriteObj).with_obj(ObjArgs {
            oid,
            cow_oid: cow.unwrap_or_default(),
            offset,
            copies: opts.copies,
            copy_policy: opts.copy_policy,
            ..ObjArgs::default()
        });
        h.flags = opts.flags;
        if cow.is_some() {
            h.flags = h.flags | Flags::COW;
        }
        self.call_ok(with_payload(h, data)?, data).await.map(|_| ())
    }

    /// FLUSH_VDI: makes every write to the VDI acknowledged so far durable on its replicas.
    /// A Sheepdog 1.0 sheep answers INVALID_PARMS ("no cache"): its writes are already
    /// durable, so that counts as success.
    pub async fn flush_vdi(&mut self, vid: Vid) -> Result<(), ClientError> {
        let h = RequestHeader::new(Opcode::FlushVdi).with_obj(ObjArgs {
            oid: vid.inode_oid(),
            ..ObjArgs::default()
        });
        let (rsp, _) = self.call(h, &[]).await?;
        match rsp.result {
            SdResult::Success | SdResult::InvalidParms => Ok(()),
            r => Err(ClientError::Result(r)),
        }
    }

    /// GET_VDI_INFO: looks a VDI up by name and tag or snapshot id (0 = current).
    pub async fn get_vdi_info(
        &mut self,
        name: &[u8],
        tag: &[u8],
        snapid: u32,
    ) -> Result<VdiRsp, ClientError> {
        self.vdi_lookup(Opcode::GetVdiInfo, name, tag, snapid).await
    }

    /// DEL_VDI: marks a VDI deleted (the caller zeroes its index first).
    pub async fn del_vdi(
        &mut self,
        name: &[u8],
        tag: &[u8],
        snapid: u32,
    ) -> Result<VdiRsp, ClientError> {
        self.vdi_lookup(Opcode::DelVdi, name, tag, snapid).await
    }

    async fn vdi_lookup(
        &mut self,
        op: Opcode,
        name: &[u8],
        tag: &[u8],
        snapid: u32,
    ) -> Result<VdiRsp, ClientError> {
        let payload = name_tag(name, tag);
        let h = RequestHeader::new(op).with_vdi(VdiArgs {
            snapid,
            ..VdiArgs::default()
        });
        let (rsp, _) = self.call_ok(with_payload(h, &payload)?, &payload).await?;
        Ok(rsp.vdi())
    }

    /// GET_VDI_ATTR with an encoded `sheepdog_vdi_attr` record (see
    /// [`sd_proto::attr::VdiAttr`]); `flags` adds CREAT, EXCL or DEL. The response carries the
    /// hashed vid, the attribute id and the copies to read the attribute object with.
    pub async fn get_vdi_attr(
        &mut self,
        record: &[u8],
        snapid: u32,
        flags: Flags,
    ) -> Result<VdiRsp, ClientError> {
        let mut h = RequestHeader::new(Opcode::GetVdiAttr).with_vdi(VdiArgs {
            snapid,
            ..VdiArgs::default()
        });
        h.flags = flags;
        let (rsp, _) = self.call_ok(with_payload(h, record)?, record).await?;
        Ok(rsp.vdi())
    }

    /// NEW_VDI: creates a VDI, snapshot or clone.
    pub async fn new_vdi(&mut self, req: &NewVdi<'_>) -> Result<VdiRsp, ClientError> {
        let mut payload = Vec::with_capacity(SD_MAX_VDI_LEN);
        put_fixed(&mut payload, req.name, SD_MAX_VDI_LEN);
        let h = RequestHeader::new(Opcode::NewVdi).with_vdi(VdiArgs {
            vdi_size: req.vdi_size,
            base_vdi_id: req.base_vid,
            copies: req.copies,
            copy_policy: req.copy_policy,
            store_policy: req.store_policy,
            block_size_shift: req.block_size_shift,
            snapid: req.snapid,
            lock_type: 0,
        });
        let (rsp, _) = self.call_ok(with_payload(h, &payload)?, &payload).await?;
        Ok(rsp.vdi())
    }

    /// READ_VDIS: the in-use bitmap.
    pub async fn read_vdis(&mut self) -> Result<VdiBitmap, ClientError> {
        self.read_bitmap(Opcode::ReadVdis).await
    }

    /// READ_DEL_VDIS: the deleted bitmap.
    pub async fn read_del_vdis(&mut self) -> Result<VdiBitmap, ClientError> {
        self.read_bitmap(Opcode::ReadDelVdis).await
    }

    async fn read_bitmap(&mut self, op: Opcode) -> Result<VdiBitmap, ClientError> {
        let mut h = RequestHeader::new(op);
        h.data_length = len_u32(SD_VDI_BITMAP_SIZE, "bitmap")?;
        Ok(VdiBitmap::new(self.call_ok(h, &[]).await?.1))
    }

    /// LOCK_VDI: looks `name` (and `tag`/`snapid`) up and takes its lock.
    pub async fn lock_vdi(
        &mut self,
        name: &[u8],
        tag: &[u8],
        snapid: u32,
    ) -> Result<VdiRsp, ClientError> {
        let mut payload = Vec::with_capacity(2 * SD_MAX_VDI_LEN);
        put_fixed(&mut payload, name, SD_MAX_VDI_LEN);
        put_fixed(&mut payload, tag, SD_MAX_VDI_LEN);
        let h = RequestHeader::new(Opcode::LockVdi).with_vdi(VdiArgs {
            snapid,
            ..VdiArgs::default()
        });
        let (rsp, _) = self.call_ok(with_payload(h, &payload)?, &payload).await?;
        Ok(rsp.vdi())
    }

    /// RELEASE_VDI of `vid` (base_vdi_id), as QEMU and `dog vdi lock unlock` send it.
    pub async fn release_vdi(&mut self, vid: Vid) -> Result<(), ClientError> {
        let h = RequestHeader::new(Opcode::ReleaseVdi).with_vdi(VdiArgs {
            base_vdi_id: vid.get(),
            ..VdiArgs::default()
        });
        self.call_ok(h, &[]).await.map(|_| ())
    }

    /// GET_VDI_COPIES with room for `max` records.
    pub async fn get_vdi_copies(
        &mut self,
        max: usize,
    ) -> Result<Vec<sd_proto::vdi_state::VdiState>, ClientError> {
        use sd_proto::vdi_state::{VDI_STATE_SIZE, VdiState};
        let mut h = RequestHeader::new(Opcode::GetVdiCopies);
        h.data_length = len_u32(max.saturating_mul(VDI_STATE_SIZE), "vdi state buffer")?;
        let (_, data) = self.call_ok(h, &[]).await?;
        Ok(VdiState::decode_all(&data)?)
    }

    /// ALTER_VDI_COPY: `vid`'s objects get `copies` replicas (`copy_policy` must be 0 for
    /// a sheep to accept it; `block_size_shift` is the VDI's, as `dog` sends it).
    pub async fn alter_vdi_copy(
        &mut self,
        vid: Vid,
        copies: u8,
        copy_policy: u8,
        block_size_shift: u8,
    ) -> Result<(), ClientError> {
        let h = RequestHeader::new(Opcode::AlterVdiCopy).with_vdi_state(VdiStateArgs {
            new_vid: vid.get(),
            copies,
            copy_policy,
            block_size_shift,
            ..VdiStateArgs::default()
        });
        self.call_ok(h, &[]).await.map(|_| ())
    }

    /// ALTER_CLUSTER_COPY: the cluster's default copies become `copies`.
    pub async fn alter_cluster_copy(
        &mut self,
        copies: u8,
        copy_policy: u8,
    ) -> Result<(), ClientError> {
        let h = RequestHeader::new(Opcode::AlterClusterCopy).with_cluster(ClusterArgs {
            copies,
            copy_policy,
            ..ClusterArgs::default()
        });
        self.call_ok(h, &[]).await.map(|_| ())
    }

    /// GET_NODE_LIST with room for every possible node; nodes in reply order.
    pub async fn get_node_list(&mut self) -> Result<Vec<SdNode>, ClientError> {
        let mut h = RequestHeader::new(Opcode::GetNodeList);
        h.data_length = len_u32(SD_MAX_NODES * SD_NODE_SIZE, "node list")?;
        let (_, data) = self.call_ok(h, &[]).await?;
        Ok(SdNode::decode_list(&data, data.len() / SD_NODE_SIZE)?)
    }

    /// STAT_CLUSTER with `nodes_nr` node slots per record and room for `max_records`
    /// records. Never fails on the result code (it is the cluster status).
    pub async fn stat_cluster(
        &mut self,
        nodes_nr: u32,
        max_records: u32,
    ) -> Result<ClusterStat, ClientError> {
        let record = u64::from(nodes_nr)
            .checked_mul(SD_NODE_SIZE as u64)
            .and_then(|n| n.checked_add(sd_proto::cluster::EPOCH_LOG_SIZE as u64))
            .and_then(|n| n.checked_mul(u64::from(max_records)))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(ClientError::TooLarge {
                what: "STAT_CLUSTER buffer",
            })?;
        let mut h = RequestHeader::new(Opcode::StatCluster).with_cluster(ClusterArgs {
            nodes_nr,
            ..ClusterArgs::default()
        });
        h.data_length = record;
        let (rsp, data) = self.call(h, &[]).await?;
        Ok(ClusterStat {
            result: rsp.result,
            epoch: rsp.epoch,
            nodes_nr,
            data,
        })
    }

    /// CLUSTER_INFO.
    pub async fn cluster_info(&mut self) -> Result<ClusterInfo, ClientError> {
        let mut h = RequestHeader::new(Opcode::ClusterInfo);
        h.data_length = len_u32(CLUSTER_INFO_SIZE, "cluster info")?;
        let (_, data) = self.call_ok(h, &[]).await?;
        Ok(ClusterInfo::decode(&data)?)
    }

    /// MAKE_FS: formats the cluster.
    pub async fn make_fs(&mut self, req: &MakeFs<'_>) -> Result<(), ClientError> {
        let store = sd_proto::c_str(req.store);
        let store = store.get(..STORE_LEN - 1).unwrap_or(store);
        let mut payload = store.to_vec();
        payload.push(0);
        let h = RequestHeader::new(Opcode::MakeFs).with_cluster(ClusterArgs {
            ctime: req.ctime,
            copies: req.copies,
            copy_policy: req.copy_policy,
            flags: req.flags,
            nodes_nr: 0,
            block_size_shift: req.block_size_shift,
        });
        self.call_ok(with_payload(h, &payload)?, &payload)
            .await
            .map(|_| ())
    }

    /// GET_STORE_LIST: the node's store driver names.
    pub async fn get_store_list(&mut self) -> Result<StoreList, ClientError> {
        let mut h = RequestHeader::new(Opcode::GetStoreList);
        h.data_length = STORE_LIST_LEN;
        Ok(StoreList::decode(&self.call_ok(h, &[]).await?.1))
    }

    /// SHUTDOWN: stops every sheep.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        self.call_ok(RequestHeader::new(Opcode::Shutdown), &[])
            .await
            .map(|_| ())
    }

    /// STAT_SHEEP: this node's store size and free space.
    pub async fn stat_sheep(&mut self) -> Result<NodeRsp, ClientError> {
        let (rsp, _) = self
            .call_ok(RequestHeader::new(Opcode::StatSheep), &[])
            .await?;
        Ok(rsp.node())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::{recv_request, send_reply};
    use sd_proto::Vid;
    use tokio::io::duplex;

    #[test]
    fn name_tag_is_nul_padded_and_truncated() {
        let b = name_tag(b"test", b"snap1");
        assert_eq!(b.len(), 512);
        assert_eq!(&b[..5], b"test\0");
        assert_eq!(&b[256..262], b"snap1\0");
        let long = vec![b'x'; 300];
        let b = name_tag(&long, b"");
        assert_eq!(b.len(), 512);
        assert_eq!(b[254], b'x');
        assert_eq!(b[255], 0);
    }

    #[tokio::test]
    async fn lookup_sends_512_byte_payload_and_maps_results() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, body) = recv_request(&mut server).await;
            assert_eq!(h.opcode, Opcode::GetVdiInfo);
            assert!(h.flags.contains(Flags::WRITE));
            assert_eq!(h.data_length, 512);
            assert_eq!(h.vdi().snapid, 2);
            assert_eq!(&body[..4], b"test");
            let mut rsp =
                ResponseHeader::reply_to(&h, Epoch(1), SdResult::Success).with_vdi(VdiRsp {
                    vdi_id: 0x7c2b25,
                    copies: 3,
                    ..VdiRsp::default()
                });
            rsp.data_length = 0;
            tokio::io::AsyncWriteExt::write_all(&mut server, &rsp.encode())
                .await
                .unwrap();
            let (h, _) = recv_request(&mut server).await;
            send_reply(&mut server, &h, SdResult::NoVdi, &[]).await;
        });
        let mut c = Connection::new(client);
        let v = c.get_vdi_info(b"test", b"", 2).await.unwrap();
        assert_eq!(v.vid(), Vid::new(0x7c2b25));
        let err = c.get_vdi_info(b"nosuch", b"", 0).await.unwrap_err();
        assert_eq!(err.result(), Some(SdResult::NoVdi));
        assert!(!err.is_transport());
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn object_io_headers() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, body) = recv_request(&mut server).await;
            assert_eq!(h.opcode, Opcode::CreateAndWriteObj);
            assert!(h.flags.contains(Flags::WRITE | Flags::COW));
            let o = h.obj();
            assert_eq!(o.oid, Oid::new(0x7c2b2600000003));
            assert_eq!(o.cow_oid, Oid::new(0x7c2b2500000003));
            assert_eq!((o.copies, o.offset), (2, 4096));
            assert_eq!(body, vec![7u8; 10]);
            send_reply(&mut server, &h, SdResult::Success, &[]).await;
            let (h, _) = recv_request(&mut server).await;
            assert_eq!(h.opcode, Opcode::ReadObj);
            assert!(h.flags.contains(Flags::DIRECT));
            assert_eq!(h.data_length, 4672);
            send_reply(&mut server, &h, SdResult::NoObj, &[]).await;
        });
        let mut c = Connection::new(client);
        c.create_and_write_obj(
            Oid::new(0x7c2b2600000003),
            Some(Oid::new(0x7c2b2500000003)),
            4096,
            &[7u8; 10],
            WriteOpts {
                copies: 2,
                ..WriteOpts::default()
            },
        )
        .await
        .unwrap();
        let err = c
            .read_obj_with(Oid::new(1), 0, 4672, Flags::DIRECT)
            .await
            .unwrap_err();
        assert_eq!(err.result(), Some(SdResult::NoObj));
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn stat_cluster_returns_status_not_error() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, _) = recv_request(&mut server).await;
            assert_eq!(h.cluster().nodes_nr, 1);
            assert_eq!(h.data_length, 2 * (48 + 80));
            let rec = EpochLogRecord {
                epoch: Epoch(1),
                nodes: vec![SdNode::default()],
                drv_name: b"plain".to_vec(),
                ..EpochLogRecord::default()
            };
            send_reply(&mut server, &h, SdResult::WaitForJoin, &rec.encode(1)).await;
        });
        let mut c = Connection::new(client);
        let st = c.stat_cluster(1, 2).await.unwrap();
        assert_eq!(st.result, SdResult::WaitForJoin);
        let recs = st.records().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].drv_name, b"plain");
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn make_fs_sends_store_with_nul() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, body) = recv_request(&mut server).await;
            assert_eq!(h.opcode, Opcode::MakeFs);
            assert_eq!(h.proto_ver, 0x0a);
            assert_eq!(body, b"plain\0");
            let c = h.cluster();
            assert_eq!(
                (c.copies, c.copy_policy, c.flags, c.ctime),
                (6, 0x22, 4, 99)
            );
            send_reply(&mut server, &h, SdResult::Success, &[]).await;
        });
        let mut c = Connection::new(client);
        c.make_fs(&MakeFs {
            store: b"plain",
            copies: 6,
            copy_policy: 0x22,
            flags: 4,
            ctime: 99,
            block_size_shift: 0,
        })
        .await
        .unwrap();
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn get_store_list_decodes_the_names() {
        let (client, mut server) = duplex(1 << 20);
        let srv = tokio::spawn(async move {
            let (h, body) = recv_request(&mut server).await;
            assert_eq!(h.opcode, Opcode::GetStoreList);
            assert_eq!(h.data_length, 512);
            assert!(body.is_empty());
            // The C sheep's answer.
            send_reply(&mut server, &h, SdResult::Success, b"plain tree \0").await;
        });
        let mut c = Connection::new(client);
        let list = c.get_store_list().await.unwrap();
        assert_eq!(list.names, [b"plain".to_vec(), b"tree".to_vec()]);
        srv.await.unwrap();
    }
}
