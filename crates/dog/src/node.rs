//! `dog node list|info` (spec dog-cli.md §4.4, §4.5).

use sd_client::ClientError;

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_SUCCESS, EXIT_SYSFAIL};
use crate::format;
use crate::sd_err;
use crate::vdi::{live_vids, read_listed};

/// `node list`: prints the prologue's node list.
pub fn list(ctx: &mut Ctx) -> CmdResult {
    let raw = ctx.opts.raw;
    let mut text = String::new();
    if !raw {
        text.push_str(format::NODE_LIST_HEADER);
    }
    for (i, n) in ctx.nodes.iter().enumerate() {
        text.push_str(&format::format_node_list_row(i, n, raw));
    }
    ctx.put(&text);
    Ok(EXIT_SUCCESS)
}

/// `node info`: STAT_SHEEP to each node, then the total virtual size of working VDIs.
pub async fn info(ctx: &mut Ctx) -> CmdResult {
    let raw = ctx.opts.raw;
    if !raw {
        ctx.put(format::NODE_INFO_HEADER);
    }
    let mut shown = 0;
    let (mut total_size, mut total_free) = (0u64, 0u64);
    let addrs: Vec<_> = ctx.nodes.iter().map(|n| n.nid.socket_addr()).collect();
    for addr in addrs {
        let Some(c) = ctx.conn_at(addr).await else {
            continue;
        };
        match c.stat_sheep().await {
            Ok(st) => {
                let row = format::format_node_info_row(shown, st.store_size, st.store_free, raw);
                ctx.put(&row);
                shown += 1;
                total_size = total_size.saturating_add(st.store_size);
                total_free = total_free.saturating_add(st.store_free);
            }
            Err(ClientError::Result(r)) => sd_err!("Response's result: {}", r.message()),
            Err(e) => Ctx::report_transport(&e),
        }
    }
    if shown == 0 {
        sd_err!("Cannot get information from any nodes");
        return Ok(EXIT_SYSFAIL);
    }
    let vids = match live_vids(ctx).await {
        Ok(v) => v,
        Err(_) => return Ok(EXIT_SYSFAIL),
    };
    let mut vdi_total = 0u64;
    for vid in vids {
        if let Some(v) = read_listed(ctx, vid, false).await
            && !v.hdr.is_snapshot()
        {
            vdi_total = vdi_total.saturating_add(v.hdr.vdi_size);
        }
    }
    let total = format::format_node_info_total(total_size, total_free, vdi_total, raw);
    ctx.put(&total);
    Ok(EXIT_SUCCESS)
}
