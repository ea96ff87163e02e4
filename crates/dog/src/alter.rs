//! `dog vdi alter-copy -c N VDI` and `dog cluster alter-copy -c N` (dog-cli.md §7):
//! replication counts only, with the C `dog`'s checks, prompts, messages and exit codes.
//! `vdi alter-copy` rewrites the inode header's `nr_copies` (by the old count), then sends
//! ALTER_VDI_COPY; only a standalone VDI (no parent, no snapshot or clone of it) may
//! change. `cluster alter-copy` reads the default from STAT_CLUSTER, then sends
//! ALTER_CLUSTER_COPY.

use sd_client::{ClientError, WriteOpts};
use sd_proto::inode::{InodeHeader, SD_INODE_HEADER_SIZE};
use sd_proto::{Flags, SdResult, Vid};

use crate::ctx::{Ctx, WriteKind};
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE};
use crate::format::text;
use crate::sd_err;

/// Copies used when `-c` is absent (`SD_DEFAULT_COPIES`).
const DEFAULT_COPIES: u8 = 3;
/// Offset of `nr_copies` in the inode header.
const NR_COPIES_OFFSET: usize = 554;

/// The caution before changing a VDI's copies.
const ALTER_VDI_COPY_PRINT: &str = "    __\n   ()'`;\n   /\\|`  Caution! Changing VDI's redundancy level will affect\n  /  |   the VDI itself only and trigger recovery.\n(/_)_|_  Are you sure you want to continue? [yes/no]: ";

/// The caution before changing the cluster's default copies.
const ALTER_CLUSTER_COPY_PRINT: &str = "    __\n   ()'`;\n   /\\|`  Caution! Changing cluster's redundancy level will affect\n  /  |   all the VDIs to be created later.\n(/_)_|_  Are you sure you want to continue? [yes/no]: ";

/// `-c`'s count, or the default (saying so on stdout, as the C `dog` does); `None` after
/// refusing an erasure code (the caller exits 64, printing the usage).
fn wanted_copies(ctx: &mut Ctx, what: &str) -> Option<u8> {
    if ctx.opts.copy_policy != 0 {
        sd_err!("Changing redundancy level of erasure coded vdi is not supported yet.");
        return None;
    }
    if ctx.opts.copies == 0 {
        ctx.put(&format!(
            "The {what}'s redundancy level is not specified, use {DEFAULT_COPIES} as default.\n"
        ));
        return Some(DEFAULT_COPIES);
    }
    Some(ctx.opts.copies)
}

/// Asks before asking for more copies than there are nodes (unless `-f`).
fn confirm_node_count(ctx: &mut Ctx, copies: u8) -> Result<(), crate::exit::Abort> {
    let nodes = ctx.nodes.len();
    if !ctx.opts.force && usize::from(copies) > nodes {
        ctx.confirm(&format!(
            "Number of copies ({copies}) is larger than number of nodes ({nodes}).\n\
             Are you sure you want to continue? [yes/no]: "
        ))?;
    }
    Ok(())
}

/// `send_light_req`'s report of a refused request (transport failures were reported).
fn report_refusal(e: &ClientError) {
    match e {
        ClientError::Result(r) => sd_err!("Response's result: {}", r.message()),
        other => Ctx::report_transport(other),
    }
}

/// `vdi alter-copy [-c N] [-f] VDI`.
pub async fn vdi_alter_copy(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let name_text = text(name);
    let Some(copies) = wanted_copies(ctx, "vdi") else {
        return Ok(EXIT_USAGE);
    };
    confirm_node_count(ctx, copies)?;
    let len = u32::try_from(SD_INODE_HEADER_SIZE).unwrap_or(u32::MAX);
    let (vid, head) = match ctx.read_vdi_obj(name, 0, b"", len).await {
        Ok(v) => v,
        Err(_) => {
            sd_err!("Reading {name_text}'s vdi object failure.");
            return Ok(EXIT_FAILURE);
        }
    };
    let Ok(hdr) = InodeHeader::decode(&head) else {
        sd_err!("Reading {name_text}'s vdi object failure.");
        return Ok(EXIT_FAILURE);
    };
    if hdr.copy_policy != 0 {
        sd_err!("{name_text}'s copy policy is erasure code, changing it is not supported yet.");
        return Ok(EXIT_FAILURE);
    }
    let old = hdr.nr_copies;
    if old == copies {
        sd_err!("{name_text}'s redundancy level is already set to {old}, nothing changed.");
        return Ok(EXIT_FAILURE);
    }
    match standalone(ctx, vid, &hdr).await {
        Ok(true) => {}
        Ok(false) => {
            sd_err!("Only standalone vdi supports changing redundancy level.");
            sd_err!("Please clone {name_text} with -n (--no-share) option first.");
            return Ok(EXIT_FAILURE);
        }
        Err(code) => return Ok(code),
    }
    if !ctx.opts.force {
        ctx.confirm(ALTER_VDI_COPY_PRINT)?;
    }
    // The header as read, with only the count changed, written where the old count
    // places it.
    let mut head = head.to_vec();
    head.resize(SD_INODE_HEADER_SIZE, 0);
    if let Some(b) = head.get_mut(NR_COPIES_OFFSET) {
        *b = copies;
    }
    let opts = WriteOpts {
        copies: old,
        copy_policy: hdr.copy_policy,
        flags: Flags::DIRECT,
    };
    if ctx
        .write_object(WriteKind::Overwrite, vid.inode_oid(), None, 0, &head, opts)
        .await
        .is_err()
    {
        sd_err!(
            "Overwrite the vdi object's header of {name_text} failure while setting its redundancy level."
        );
        return Ok(EXIT_FAILURE);
    }
    let Some(c) = ctx.conn().await else {
        sd_err!("Changing {name_text}'s redundancy level failure.");
        return Ok(EXIT_FAILURE);
    };
    match c.alter_vdi_copy(vid, copies, 0, hdr.block_size_shift).await {
        Ok(()) => {
            sd_err!("{name_text}'s redundancy level is set to {copies}, the old one was {old}.");
            Ok(EXIT_SUCCESS)
        }
        Err(e) => {
            report_refusal(&e);
            sd_err!("Changing {name_text}'s redundancy level failure.");
            Ok(EXIT_FAILURE)
        }
    }
}

/// `is_vdi_standalone`: no parent, and no live VDI has `vid` as its parent (read from
/// every inode header, as the C `dog`'s tree does); `Err` is the exit code when the VDIs
/// cannot be listed.
async fn standalone(ctx: &mut Ctx, vid: Vid, hdr: &InodeHeader) -> Result<bool, u8> {
    if hdr.parent_vdi_id != 0 {
        return Ok(false);
    }
    let vids = crate::vdi::live_vids(ctx).await?;
    for other in vids.into_iter().filter(|v| *v != vid) {
        if let Some(v) = crate::vdi::read_listed(ctx, other, false).await
            && v.hdr.parent_vdi_id == vid.get()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `cluster alter-copy [-c N] [-f]`.
pub async fn cluster_alter_copy(ctx: &mut Ctx) -> CmdResult {
    let Some(copies) = wanted_copies(ctx, "cluster") else {
        return Ok(EXIT_USAGE);
    };
    confirm_node_count(ctx, copies)?;
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_FAILURE);
    };
    let stat = match c.stat_cluster(0, 1).await {
        Ok(st) => st,
        Err(e) => {
            Ctx::report_transport(&e);
            return Ok(EXIT_FAILURE);
        }
    };
    if stat.result != SdResult::Success {
        sd_err!("Response's result: {}", stat.result.message());
        return Ok(EXIT_FAILURE);
    }
    let record = match stat.records() {
        Ok(r) => r.into_iter().next(),
        Err(e) => {
            sd_err!("bad STAT_CLUSTER reply: {e}");
            return Ok(EXIT_SYSFAIL);
        }
    };
    let (old, policy) = record.map_or((0, 0), |r| (r.nr_copies, r.copy_policy));
    if policy != 0 {
        sd_err!("The cluster's copy policy is erasure code, changing it is not supported yet.");
        return Ok(EXIT_FAILURE);
    }
    if old == copies {
        sd_err!("The cluster's redundancy level is already set to {copies}, nothing changed.");
        return Ok(EXIT_FAILURE);
    }
    if !ctx.opts.force {
        ctx.confirm(ALTER_CLUSTER_COPY_PRINT)?;
    }
    let Some(c) = ctx.conn().await else {
        sd_err!("Changing the cluster's redundancy level failure.");
        return Ok(EXIT_FAILURE);
    };
    match c.alter_cluster_copy(copies, 0).await {
        Ok(()) => {
            sd_err!("The cluster's redundancy level is set to {copies}, the old one was {old}.");
            Ok(EXIT_SUCCESS)
        }
        Err(e) => {
            report_refusal(&e);
            sd_err!("Changing the cluster's redundancy level failure.");
            Ok(EXIT_FAILURE)
        }
    }
}
