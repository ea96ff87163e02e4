//! `dog vdi lock list|unlock` (spec dog-cli.md §3.1, §4.7, §7): the writers holding VDIs,
//! and a forced unlock (for a writer that died without releasing). `lock list --json`.

use sd_client::ClientError;
use sd_proto::inode::SD_INODE_HEADER_SIZE;
use sd_proto::vdi_state::LockState;

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE};
use crate::format::text;
use crate::sd_err;

/// Records GET_VDI_COPIES asks for (as `dog` does).
const MAX_VDI_STATES: usize = 512;

/// `vdi lock list`.
pub async fn list(ctx: &mut Ctx) -> CmdResult {
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    let states = match c.get_vdi_copies(MAX_VDI_STATES).await {
        Ok(s) => s,
        Err(e) => {
            if let ClientError::Result(r) = &e {
                sd_err!("Failed to get VDI state: {}", r.message());
            } else {
                Ctx::report_transport(&e);
            }
            return Ok(EXIT_SYSFAIL);
        }
    };
    let json = ctx.opts.json;
    if !json {
        ctx.put_header("VDI | owner node\n");
    }
    let mut doc = crate::json::LockList { locks: Vec::new() };
    for s in states.iter().filter(|s| s.lock_state == LockState::Locked) {
        let len = u32::try_from(SD_INODE_HEADER_SIZE).unwrap_or(u32::MAX);
        let Ok(head) = ctx.read_object(s.vid.inode_oid(), len, 0, true).await else {
            continue;
        };
        let name = sd_proto::inode::InodeHeader::decode(&head)
            .map(|h| text(&h.name))
            .unwrap_or_default();
        let ip = s.lock_owner.ip();
        if json {
            doc.locks.push(crate::json::Lock {
                name,
                vid: s.vid.get(),
                owner_addr: s.lock_owner.to_string(),
                owner_ip: ip.to_string(),
                owner_port: s.lock_owner.port,
            });
            continue;
        }
        let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        ctx.put(&format!(
            "{name} | {family} ip:{ip} port:{}\n",
            s.lock_owner.port
        ));
    }
    if json {
        ctx.put_json(&doc);
    }
    Ok(EXIT_SUCCESS)
}

/// `vdi lock unlock [-s SNAP] NAME`: releases the lock whoever holds it.
pub async fn unlock(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.get(1) else {
        sd_err!("VDI name must be specified");
        return Ok(EXIT_USAGE);
    };
    let (snapid, tag) = (ctx.opts.snapshot_id, ctx.opts.snapshot_tag.clone());
    let vid = match ctx.find_vdi(name, snapid, &tag).await {
        Ok(v) => v,
        Err(r) => {
            crate::ctx::report_open_failure(name, snapid, &tag, r);
            return Ok(EXIT_FAILURE);
        }
    };
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    match c.release_vdi(vid).await {
        Ok(()) => Ok(EXIT_SUCCESS),
        Err(ClientError::Result(r)) => {
            sd_err!("Failed to unlock {}: {}", text(name), r.message());
            Ok(EXIT_FAILURE)
        }
        Err(e) => {
            Ctx::report_transport(&e);
            Ok(EXIT_SYSFAIL)
        }
    }
}
