//! `dog vdi create|list|delete` (spec dog-cli.md §4.1, §7); `vdi list --json`.

use bytes::Bytes;
use sd_client::{ClientError, NewVdi, WriteOpts};
use sd_proto::inode::{
    InodeHeader, SD_INODE_DATA_INDEX_SIZE, SD_INODE_HEADER_SIZE, SD_INODE_LIST_READ, SD_INODE_SIZE,
    SD_MAX_VDI_SIZE,
};
use sd_proto::{Flags, Oid, SdResult, Vid};

use crate::ctx::{Ctx, WriteKind};
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_MISSING, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE};
use crate::format::{self, VdiRow, parse_size, strnumber, text};
use crate::sd_err;

/// Indexes of a normal (non-hyper) inode.
const OLD_MAX_DATA_OBJS: u64 = 1 << 20;
/// B-tree header magic of hyper volumes.
const BTREE_MAGIC: u16 = 0x6274;

/// Parses a size argument, printing the C messages on failure.
pub fn size_arg(s: &[u8]) -> Option<u64> {
    let t = text(s);
    match parse_size(&t) {
        Ok(v) => Some(v),
        Err(_) => {
            sd_err!("Invalid size '{t}'");
            sd_err!(
                "You may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes."
            );
            None
        }
    }
}

/// `1 << shift` as an object size; `None` for shifts a sheep cannot have.
pub fn object_size(shift: u8) -> Option<u64> {
    (shift <= 31).then(|| 1u64 << shift)
}

/// The `N` bytes at `off`, if present.
fn bytes_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Little-endian u16 at `off` (0 past the end).
fn le16(b: &[u8], off: usize) -> u16 {
    bytes_at(b, off).map_or(0, u16::from_le_bytes)
}

/// Little-endian u32 at `off` (0 past the end).
fn le32(b: &[u8], off: usize) -> u32 {
    bytes_at(b, off).map_or(0, u32::from_le_bytes)
}

/// Little-endian u64 at `off` (0 past the end).
fn le64(b: &[u8], off: usize) -> u64 {
    bytes_at(b, off).map_or(0, u64::from_le_bytes)
}

/// `data_vdi_id[idx]` from a buffer that starts at the index (0 past its end).
pub fn index_entry(index: &[u8], idx: u64) -> u32 {
    usize::try_from(idx)
        .ok()
        .and_then(|i| i.checked_mul(4))
        .map_or(0, |off| le32(index, off))
}

/// `count_data_objs`: indexes covering the VDI.
pub fn count_data_objs(hdr: &InodeHeader) -> u64 {
    object_size(hdr.block_size_shift).map_or(0, |os| hdr.vdi_size.div_ceil(os))
}

/// `vdi create NAME SIZE`.
pub async fn create(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let Some(size_text) = args.get(1) else {
        sd_err!("Please specify the VDI size");
        return Ok(EXIT_USAGE);
    };
    let Some(size) = size_arg(size_text) else {
        return Ok(EXIT_USAGE);
    };
    let o = ctx.opts.clone();
    let mut shift = o.block_size_shift;
    if shift == 0 && o.store_policy == 1 {
        // Hyper volumes always use the default object size.
        shift = sd_proto::inode::SD_DEFAULT_BLOCK_SIZE_SHIFT;
    }
    let obj_size = if shift != 0 {
        object_size(shift).unwrap_or(0)
    } else {
        let Some(c) = ctx.conn().await else {
            sd_err!("Fail to execute request: SD_OP_CLUSTER_INFO");
            return Ok(EXIT_FAILURE);
        };
        let wait = || {
            sd_err!(
                "Failed to create VDI {}: {}",
                text(name),
                SdResult::WaitForFormat.message()
            );
            Ok(EXIT_FAILURE)
        };
        match c.cluster_info().await {
            Ok(ci) if ci.ctime == 0 => return wait(),
            Ok(ci) => object_size(ci.block_size_shift).unwrap_or(0),
            Err(ClientError::Result(SdResult::WaitForFormat)) => return wait(),
            Err(ClientError::Result(r)) => {
                sd_err!("{}", r.message());
                return Ok(EXIT_FAILURE);
            }
            Err(e) => {
                Ctx::report_transport(&e);
                sd_err!("Fail to execute request: SD_OP_CLUSTER_INFO");
                return Ok(EXIT_FAILURE);
            }
        }
    };
    let old_max = obj_size.saturating_mul(OLD_MAX_DATA_OBJS);
    if size > old_max && o.store_policy == 0 {
        sd_err!(
            "VDI size is larger than {} bytes, please use '-y' to create a hyper volume with size up to {} bytes or use '-z' to create larger object size volume",
            strnumber(old_max, o.raw),
            strnumber(SD_MAX_VDI_SIZE, o.raw)
        );
        return Ok(EXIT_USAGE);
    }
    if size > SD_MAX_VDI_SIZE {
        sd_err!("VDI size is too large");
        return Ok(EXIT_USAGE);
    }

    let req = NewVdi {
        name,
        vdi_size: size,
        base_vid: 0,
        snapid: 0,
        copies: o.copies,
        copy_policy: o.copy_policy,
        store_policy: o.store_policy,
        block_size_shift: shift,
    };
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    let vid = match c.new_vdi(&req).await {
        Ok(v) => v.vdi_id,
        Err(ClientError::Result(r)) => {
            sd_err!("Failed to create VDI {}: {}", text(name), r.message());
            return Ok(EXIT_FAILURE);
        }
        Err(e) => {
            Ctx::report_transport(&e);
            return Ok(EXIT_SYSFAIL);
        }
    };
    if o.prealloc {
        let code = preallocate(ctx, vid, size).await;
        if code != EXIT_SUCCESS {
            return Ok(code);
        }
    }
    ctx.put_new_vid("VDI ID of newly created VDI", vid);
    Ok(EXIT_SUCCESS)
}

/// `vdi create -P`: creates every data object and records it in the inode.
async fn preallocate(ctx: &mut Ctx, vid: u32, size: u64) -> u8 {
    let Some(vid) = Vid::new(vid) else {
        return EXIT_FAILURE;
    };
    let inode_len = u32::try_from(SD_INODE_SIZE).unwrap_or(u32::MAX);
    let Ok(inode) = ctx.read_object(vid.inode_oid(), inode_len, 0, true).await else {
        sd_err!("Failed to read a newly created VDI object");
        return EXIT_FAILURE;
    };
    let Ok(hdr) = InodeHeader::decode(&inode) else {
        sd_err!("Failed to read a newly created VDI object");
        return EXIT_FAILURE;
    };
    if hdr.store_policy != 0 {
        sd_err!("Preallocating a hyper volume is not supported");
        return EXIT_FAILURE;
    }
    let Some(os) = object_size(hdr.block_size_shift) else {
        return EXIT_FAILURE;
    };
    let opts = WriteOpts {
        copies: hdr.nr_copies,
        copy_policy: hdr.copy_policy,
        flags: Flags::DIRECT,
    };
    for idx in 0..size.div_ceil(os) {
        let Ok(idx) = u32::try_from(idx) else {
            return EXIT_FAILURE;
        };
        if ctx
            .write_object(WriteKind::Create, vid.data_oid(idx), None, 0, &[], opts)
            .await
            .is_err()
        {
            return EXIT_FAILURE;
        }
        if ctx.set_index_entry(vid, idx, opts).await.is_err() {
            return EXIT_FAILURE;
        }
    }
    EXIT_SUCCESS
}

/// `vdi delete NAME`: LOOKUP, then DEL_VDI. Sheepdog's dog first zeroed the index in
/// batches of inode writes; our sheep frees what only this VDI referenced itself, in one
/// pass that survives a crash (the cluster log records the delete first), so the batches
/// are not sent. Unlike Sheepdog 1.0 (which always exits 0), failures exit non-zero.
pub async fn delete(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let snapid = ctx.opts.snapshot_id;
    let tag = ctx.opts.snapshot_tag.clone();
    if let Err(r) = ctx.find_vdi(name, snapid, &tag).await {
        crate::ctx::report_open_failure(name, snapid, &tag, r);
        return Ok(EXIT_FAILURE);
    }
    del_vdi(ctx, name, snapid, &tag).await
}

/// DEL_VDI with the C messages.
pub async fn del_vdi(ctx: &mut Ctx, name: &[u8], snapid: u32, tag: &[u8]) -> CmdResult {
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    match c.del_vdi(name, tag, snapid).await {
        Ok(_) => Ok(EXIT_SUCCESS),
        Err(ClientError::Result(r)) => {
            sd_err!("Failed to delete {}: {}", text(name), r.message());
            Ok(if r == SdResult::NoVdi {
                EXIT_MISSING
            } else {
                EXIT_FAILURE
            })
        }
        Err(e) => {
            Ctx::report_transport(&e);
            Ok(EXIT_SYSFAIL)
        }
    }
}

/// A VDI as `vdi list` and `node info` see it.
pub struct ListedVdi {
    /// Its vid.
    pub vid: Vid,
    /// The inode header.
    pub hdr: InodeHeader,
    /// The index region that was read (empty unless requested).
    pub meta: Bytes,
    /// The 8 bytes following the header (the B-tree header of hyper volumes).
    pub btree_head: [u8; 8],
}

/// READ_VDIS and READ_DEL_VDIS: the vids in use and not deleted, ascending.
pub async fn live_vids(ctx: &mut Ctx) -> Result<Vec<Vid>, u8> {
    let Some(c) = ctx.conn().await else {
        return Err(EXIT_SYSFAIL);
    };
    let mut maps = Vec::with_capacity(2);
    for del in [false, true] {
        let r = if del {
            c.read_del_vdis().await
        } else {
            c.read_vdis().await
        };
        match r {
            Ok(m) => maps.push(m),
            Err(ClientError::Result(r)) => {
                sd_err!("{}", r.message());
                return Err(EXIT_FAILURE);
            }
            Err(e) => {
                Ctx::report_transport(&e);
                return Err(EXIT_SYSFAIL);
            }
        }
    }
    let (Some(inuse), Some(deleted)) = (maps.first(), maps.get(1)) else {
        return Err(EXIT_FAILURE);
    };
    Ok(inuse.iter().filter(|v| !deleted.contains(*v)).collect())
}

/// `sd_inode_get_meta_size`: bytes of index to read after the header.
fn meta_size(hdr: &InodeHeader, btree_head: &[u8; 8]) -> u64 {
    if hdr.store_policy == 0 {
        let cap = (SD_INODE_SIZE - SD_INODE_HEADER_SIZE - 4) as u64;
        (count_data_objs(hdr) * 4).min(cap)
    } else {
        let depth = le16(btree_head, 2);
        let entries = u64::from(le32(btree_head, 4));
        match depth {
            1 => 8 + entries * 8,
            2 => 8 + entries * 16,
            _ => 8,
        }
    }
}

/// Reads one VDI's header (and index when `with_index`), as `parse_vdi` does; `None`
/// for unreadable or deleted inodes (reported like the C code).
pub async fn read_listed(ctx: &mut Ctx, vid: Vid, with_index: bool) -> Option<ListedVdi> {
    let oid = vid.inode_oid();
    let head_len = u32::try_from(SD_INODE_LIST_READ).unwrap_or(u32::MAX);
    let Ok(head) = ctx.read_object(oid, head_len, 0, true).await else {
        sd_err!("Failed to read inode header");
        return None;
    };
    let Ok(hdr) = InodeHeader::decode(&head) else {
        sd_err!("Failed to read inode header");
        return None;
    };
    if hdr.is_deleted() {
        return None;
    }
    let mut btree_head = [0u8; 8];
    for (d, s) in btree_head
        .iter_mut()
        .zip(head.get(SD_INODE_HEADER_SIZE..).unwrap_or_default())
    {
        *d = *s;
    }
    let meta = if with_index {
        let len = u32::try_from(meta_size(&hdr, &btree_head)).unwrap_or(u32::MAX);
        match ctx
            .read_object(oid, len, SD_INODE_HEADER_SIZE as u64, true)
            .await
        {
            Ok(m) => m,
            Err(_) => {
                sd_err!("Failed to read inode");
                return None;
            }
        }
    } else {
        Bytes::new()
    };
    Some(ListedVdi {
        vid,
        hdr,
        meta,
        btree_head,
    })
}

/// Leaf entries `(idx, vdi_id)` of a B-tree node or root at `buf` (after its header).
fn btree_leaves(buf: &[u8], entries: usize) -> impl Iterator<Item = (u32, u32)> + '_ {
    buf.chunks_exact(8)
        .take(entries)
        .map(|e| (le32(e, 0), le32(e, 4)))
}

/// `sd_inode_stat`: (objects owned, objects shared) of a listed VDI. Hyper volumes of
/// depth 2 read their B-tree nodes.
pub async fn inode_stat(ctx: &mut Ctx, v: &ListedVdi) -> (u64, u64) {
    let own = v.hdr.vdi_id;
    let mut mine = 0;
    let mut cow = 0;
    let mut count = |vid: u32| {
        if vid == own {
            mine += 1;
        } else if vid != 0 {
            cow += 1;
        }
    };
    if v.hdr.store_policy == 0 {
        for i in 0..count_data_objs(&v.hdr) {
            count(index_entry(&v.meta, i));
        }
        return (mine, cow);
    }
    let magic = le16(&v.btree_head, 0);
    let depth = le16(&v.btree_head, 2);
    let entries = usize::try_from(le32(&v.btree_head, 4)).unwrap_or(0);
    if magic != BTREE_MAGIC {
        return (0, 0);
    }
    let body = v.meta.get(8..).unwrap_or_default();
    if depth == 1 {
        for (_, vid) in btree_leaves(body, entries) {
            count(vid);
        }
    } else if depth == 2 {
        let node_len = u32::try_from(SD_INODE_DATA_INDEX_SIZE).unwrap_or(u32::MAX);
        let nodes: Vec<u64> = body
            .chunks_exact(16)
            .take(entries)
            .map(|e| le64(e, 8))
            .collect();
        for oid in nodes {
            let Ok(node) = ctx.read_object(Oid::new(oid), node_len, 0, true).await else {
                continue;
            };
            let n = usize::try_from(le32(&node, 4)).unwrap_or(0);
            for (_, vid) in btree_leaves(node.get(8..).unwrap_or_default(), n) {
                count(vid);
            }
        }
    }
    (mine, cow)
}

/// `vdi list [NAME]`.
pub async fn list(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let raw = ctx.opts.raw;
    let json = ctx.opts.json;
    if !raw && !json {
        ctx.put_header(format::VDI_LIST_HEADER);
    }
    let mut doc = crate::json::VdiList { vdis: Vec::new() };
    let filter = args.first().copied();
    let oid_filter = match ctx.opts.oid.map(Oid::new) {
        Some(o) if !o.is_data() => return Ok(EXIT_FAILURE),
        other => other,
    };
    let vids = match live_vids(ctx).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    for vid in vids {
        let Some(v) = read_listed(ctx, vid, true).await else {
            continue;
        };
        if filter.is_some_and(|f| f != v.hdr.name.as_slice()) {
            continue;
        }
        if let Some(oid) = oid_filter {
            let entry = index_entry(&v.meta, u64::from(oid.index()));
            if entry == 0 || entry != oid.vid().get() {
                continue;
            }
        }
        let (mine, cow) = inode_stat(ctx, &v).await;
        let os = object_size(v.hdr.block_size_shift).unwrap_or(0);
        let h = &v.hdr;
        let row = VdiRow {
            snapshot: h.is_snapshot(),
            clone: h.snap_id == 1 && h.parent_vdi_id != 0,
            name: &h.name,
            snapid: if h.is_snapshot() { h.snap_id } else { 0 },
            size: h.vdi_size,
            used: mine.saturating_mul(os),
            shared: cow.saturating_mul(os),
            ctime: h.create_time >> 32,
            vid: v.vid.get(),
            copies: h.nr_copies,
            copy_policy: h.copy_policy,
            tag: &h.tag,
            block_size_shift: h.block_size_shift,
        };
        if json {
            doc.vdis.push(json_row(&row, h.parent_vdi_id));
        } else {
            let line = format::format_vdi_list_row(&row, raw, &chrono::Local);
            ctx.put(&line);
        }
    }
    if json {
        ctx.put_json(&doc);
    }
    Ok(EXIT_SUCCESS)
}

/// A `vdi list` row as JSON.
fn json_row(row: &VdiRow<'_>, parent_vid: u32) -> crate::json::Vdi {
    let kind = if row.snapshot {
        "snapshot"
    } else if row.clone {
        "clone"
    } else {
        "working"
    };
    crate::json::Vdi {
        name: text(row.name),
        vid: row.vid,
        kind,
        snap_id: row.snapid,
        tag: text(row.tag),
        size_bytes: row.size,
        used_bytes: row.used,
        shared_bytes: row.shared,
        ctime: row.ctime,
        ctime_rfc3339: crate::json::rfc3339(row.ctime),
        copies: row.copies,
        redundancy: format::redundancy(row.copies, row.copy_policy),
        block_size_shift: row.block_size_shift,
        parent_vid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[u32]) -> Vec<u8> {
        entries.iter().flat_map(|e| e.to_le_bytes()).collect()
    }

    #[test]
    fn meta_size_and_counts() {
        let hdr = InodeHeader {
            vdi_size: (1 << 30) + 1,
            block_size_shift: 22,
            ..InodeHeader::default()
        };
        assert_eq!(count_data_objs(&hdr), 257);
        assert_eq!(meta_size(&hdr, &[0; 8]), 257 * 4);
        let hyper = InodeHeader {
            store_policy: 1,
            ..hdr
        };
        let mut head = [0u8; 8];
        head[2] = 1;
        head[4] = 3;
        assert_eq!(meta_size(&hyper, &head), 8 + 3 * 8);
        assert_eq!(index_entry(&index(&[1, 2, 3]), 2), 3);
        assert_eq!(index_entry(&index(&[1, 2, 3]), 3), 0);
    }
}
