//! `dog vdi snapshot|clone|rollback` (spec dog-cli.md §3.1, §4.7, §7, §8).

use sd_client::{ClientError, NewVdi, WriteOpts};
use sd_proto::inode::{InodeHeader, SD_INODE_HEADER_SIZE, SD_INODE_SIZE, SD_MAX_VDI_TAG_LEN};
use sd_proto::{Flags, SdResult, Vid};

use crate::ctx::{Ctx, WriteKind};
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE};
use crate::format::text;
use crate::progress::{Progress, Stdout};
use crate::sd_err;
use crate::vdi::{count_data_objs, index_entry, object_size};

/// Offset of `tag` in the inode.
const TAG_OFFSET: u64 = 256;

fn header_len() -> u32 {
    u32::try_from(SD_INODE_HEADER_SIZE).unwrap_or(u32::MAX)
}

/// `do_vdi_create`: NEW_VDI with the C message on failure; the new vid.
async fn create_vdi(ctx: &mut Ctx, req: &NewVdi<'_>) -> Result<u32, u8> {
    let Some(c) = ctx.conn().await else {
        return Err(EXIT_SYSFAIL);
    };
    match c.new_vdi(req).await {
        Ok(v) => Ok(v.vdi_id),
        Err(ClientError::Result(r)) => {
            sd_err!("Failed to create VDI {}: {}", text(req.name), r.message());
            Err(EXIT_FAILURE)
        }
        Err(e) => {
            Ctx::report_transport(&e);
            Err(EXIT_SYSFAIL)
        }
    }
}

/// `vdi snapshot [-s TAG] NAME`: tags the working VDI, then NEW_VDI with `snapid = 1`:
/// the working VDI goes on under a new vid and the old one is the snapshot.
pub async fn snapshot(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    if ctx.opts.snapshot_id != 0 {
        sd_err!("Please specify a non-integer value for a snapshot tag name");
        return Ok(EXIT_USAGE);
    }
    let tag = ctx.opts.snapshot_tag.clone();
    // A tag already taken by a snapshot of this VDI is refused.
    let vid = match ctx.find_vdi(name, 0, &tag).await {
        Ok(v) => v,
        Err(SdResult::NoTag) => match ctx.find_vdi(name, 0, b"").await {
            Ok(v) => v,
            Err(r) => {
                crate::ctx::report_open_failure(name, 0, b"", r);
                return Ok(EXIT_FAILURE);
            }
        },
        Err(r) => {
            crate::ctx::report_open_failure(name, 0, &tag, r);
            return Ok(EXIT_FAILURE);
        }
    };
    let Ok(head) = ctx
        .read_object(vid.inode_oid(), header_len(), 0, true)
        .await
    else {
        return Ok(EXIT_FAILURE);
    };
    let Ok(hdr) = InodeHeader::decode(&head) else {
        return Ok(EXIT_FAILURE);
    };
    if hdr.is_snapshot() {
        sd_err!(
            "Failed to create snapshot for {}, maybe snapshot id (0) or tag ({}) is existed",
            text(name),
            text(&tag)
        );
        return Ok(EXIT_FAILURE);
    }
    if hdr.store_policy != 0 {
        sd_err!("creating a snapshot of hypervolume is not supported");
        return Ok(EXIT_FAILURE);
    }
    if ctx.opts.reduce_identical {
        let n = u32::try_from(count_data_objs(&hdr) * 4).unwrap_or(u32::MAX);
        let at = sd_proto::inode::data_index_offset(0);
        let Ok(index) = ctx.read_object(vid.inode_oid(), n, at, true).await else {
            return Ok(EXIT_FAILURE);
        };
        let owns = (0..count_data_objs(&hdr)).any(|i| index_entry(&index, i) == vid.get());
        if !owns {
            if ctx.opts.verbose {
                ctx.put(&format!(
                    "VDI {} hasn't been modified since the last snapshot\n",
                    text(name)
                ));
            }
            return Ok(EXIT_SUCCESS);
        }
    }
    let mut tag_field = tag.clone();
    tag_field.resize(SD_MAX_VDI_TAG_LEN, 0);
    let opts = WriteOpts {
        copies: hdr.nr_copies,
        copy_policy: hdr.copy_policy,
        flags: Flags::DIRECT,
    };
    if ctx
        .write_object(
            WriteKind::Overwrite,
            vid.inode_oid(),
            None,
            TAG_OFFSET,
            &tag_field,
            opts,
        )
        .await
        .is_err()
    {
        return Ok(EXIT_FAILURE);
    }
    let req = new_vdi_like(name, &hdr, vid.get(), 1);
    let new_vid = match create_vdi(ctx, &req).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if ctx.opts.verbose {
        if ctx.opts.raw {
            ctx.put(&format!("{new_vid:x} {:x}\n", vid.get()));
        } else {
            ctx.put(&format!(
                "new VID of original VDI: {new_vid:x}, VDI ID of newly created snapshot: {:x}\n",
                vid.get()
            ));
        }
    }
    Ok(EXIT_SUCCESS)
}

/// `vdi clone -s SNAP [-P] [-n] SRC DST`: a new VDI sharing the snapshot's objects
/// (copy-on-write), or with `-n` a full copy of its data.
pub async fn clone(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&src) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let (snapid, tag) = (ctx.opts.snapshot_id, ctx.opts.snapshot_tag.clone());
    if snapid == 0 && tag.is_empty() {
        sd_err!("Only snapshot VDIs can be cloned");
        sd_err!("Please specify the '-s' option");
        return Ok(EXIT_USAGE);
    }
    let Some(&dst) = args.get(1) else {
        sd_err!("Destination VDI name must be specified");
        return Ok(EXIT_USAGE);
    };
    let inode_len = u32::try_from(SD_INODE_SIZE).unwrap_or(u32::MAX);
    let (base, inode) = match ctx.read_vdi_obj(src, snapid, &tag, inode_len).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Ok(hdr) = InodeHeader::decode(&inode) else {
        return Ok(EXIT_FAILURE);
    };
    let o = ctx.opts.clone();
    let req = NewVdi {
        name: dst,
        vdi_size: hdr.vdi_size,
        base_vid: if o.no_share { 0 } else { base.get() },
        snapid: 0,
        // The clone keeps its snapshot's redundancy, erasure code included, unless -c says.
        copies: if o.copies != 0 {
            o.copies
        } else {
            hdr.nr_copies
        },
        copy_policy: if o.copies != 0 {
            o.copy_policy
        } else {
            hdr.copy_policy
        },
        store_policy: hdr.store_policy,
        block_size_shift: hdr.block_size_shift,
    };
    let new_vid = match create_vdi(ctx, &req).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if o.prealloc || o.no_share {
        let Some(new) = Vid::nonzero(new_vid) else {
            return Ok(EXIT_FAILURE);
        };
        let index = inode.get(SD_INODE_HEADER_SIZE..).unwrap_or_default();
        let code = copy_objects(ctx, &hdr, index, new, o.no_share).await;
        if code != EXIT_SUCCESS {
            return Ok(code);
        }
    }
    ctx.put_new_vid("VDI ID of newly created clone", new_vid);
    Ok(EXIT_SUCCESS)
}

/// The data loop of `clone -n` / `clone -P`: every allocated object of the source is
/// copied into an object of the clone; with `-P` the holes are preallocated too.
async fn copy_objects(
    ctx: &mut Ctx,
    hdr: &InodeHeader,
    index: &[u8],
    new: Vid,
    copy_data: bool,
) -> u8 {
    let Some(os) = object_size(hdr.block_size_shift) else {
        return EXIT_FAILURE;
    };
    let opts = WriteOpts {
        copies: hdr.nr_copies,
        copy_policy: hdr.copy_policy,
        flags: Flags::DIRECT,
    };
    let Ok(os32) = u32::try_from(os) else {
        return EXIT_FAILURE;
    };
    let total = count_data_objs(hdr);
    // The bar counts the image's bytes, copied or skipped (as `vdi read` counts holes).
    let bar = Progress::new(hdr.vdi_size, Stdout::Text);
    for idx in 0..total {
        bar.inc(os);
        let Ok(idx32) = u32::try_from(idx) else {
            bar.abandon();
            return EXIT_FAILURE;
        };
        let owner = index_entry(index, idx);
        let data = match Vid::nonzero(owner) {
            Some(v) if copy_data => {
                match ctx.read_object(v.data_oid(idx32), os32, 0, false).await {
                    Ok(b) => Some(b),
                    Err(_) => {
                        bar.abandon();
                        return EXIT_FAILURE;
                    }
                }
            }
            Some(_) => None,
            None if ctx.opts.prealloc => Some(bytes::Bytes::new()),
            None => None,
        };
        let Some(data) = data else {
            continue;
        };
        if ctx
            .write_object(WriteKind::Create, new.data_oid(idx32), None, 0, &data, opts)
            .await
            .is_err()
            || ctx.set_index_entry(new, idx32, opts).await.is_err()
        {
            bar.abandon();
            return EXIT_FAILURE;
        }
    }
    bar.finish();
    EXIT_SUCCESS
}

/// `vdi rollback -s SNAP [-f] NAME`: the working VDI is deleted and recreated from the
/// snapshot (a new vid; the snapshot stays).
pub async fn rollback(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let (snapid, tag) = (ctx.opts.snapshot_id, ctx.opts.snapshot_tag.clone());
    if snapid == 0 && tag.is_empty() {
        sd_err!("Please specify the '-s' option");
        return Ok(EXIT_USAGE);
    }
    let (base, head) = match ctx.read_vdi_obj(name, snapid, &tag, header_len()).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Ok(hdr) = InodeHeader::decode(&head) else {
        return Ok(EXIT_FAILURE);
    };
    if !ctx.opts.force {
        ctx.confirm(
            "This operation dicards any changes made since the previous\n\
             snapshot was taken.  Continue? [yes/no]: ",
        )?;
    }
    // The working VDI, if there still is one, goes first.
    match ctx.find_vdi(name, 0, b"").await {
        Ok(_) => {
            let code = crate::vdi::del_vdi(ctx, name, 0, b"").await?;
            if code != EXIT_SUCCESS {
                sd_err!("Failed to delete the current state");
                return Ok(EXIT_FAILURE);
            }
        }
        Err(SdResult::NoVdi) => {}
        Err(r) => {
            crate::ctx::report_open_failure(name, 0, b"", r);
            return Ok(EXIT_FAILURE);
        }
    }
    let req = new_vdi_like(name, &hdr, base.get(), 0);
    let new_vid = match create_vdi(ctx, &req).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    ctx.put_new_vid("New VDI ID of rollbacked VDI", new_vid);
    Ok(EXIT_SUCCESS)
}

/// NEW_VDI of `name` shaped like `hdr` (size, copies, policies, object size), based on
/// `base_vid`; `snapid` 1 makes the working VDI continue under a new vid (a snapshot).
fn new_vdi_like<'a>(name: &'a [u8], hdr: &InodeHeader, base_vid: u32, snapid: u32) -> NewVdi<'a> {
    NewVdi {
        name,
        vdi_size: hdr.vdi_size,
        base_vid,
        snapid,
        copies: hdr.nr_copies,
        copy_policy: hdr.copy_policy,
        store_policy: hdr.store_policy,
        block_size_shift: hdr.block_size_shift,
    }
}
