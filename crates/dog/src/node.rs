//! `dog node list|info|kill|recovery` (spec dog-cli.md §4.4, §4.5, §4.7), with `--json`.

use sd_client::ClientError;
use sd_proto::stat::{RECOVERY_STATE_SIZE, RecoveryState};
use sd_proto::{Opcode, RequestHeader, SdResult};

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE};
use crate::format;
use crate::json;
use crate::sd_err;
use crate::vdi::{live_vids, read_listed};

/// `node list`: prints the prologue's node list.
pub fn list(ctx: &mut Ctx) -> CmdResult {
    if ctx.opts.json {
        let nodes = ctx
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| json::Node::of(i, n))
            .collect();
        ctx.put_json(&json::NodeList { nodes });
        return Ok(EXIT_SUCCESS);
    }
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
    let json = ctx.opts.json;
    if !raw && !json {
        ctx.put_header(format::NODE_INFO_HEADER);
    }
    let mut shown = 0;
    let mut rows = Vec::new();
    let (mut total_size, mut total_free) = (0u64, 0u64);
    let nodes = ctx.nodes.clone();
    for (id, n) in nodes.iter().enumerate() {
        let Some(c) = ctx.conn_at(n.nid.socket_addr()).await else {
            continue;
        };
        match c.stat_sheep().await {
            Ok(st) => {
                if json {
                    rows.push(json::NodeSpace {
                        id,
                        addr: json::Addr::of(n),
                        space: json::Space::new(st.store_size, st.store_free),
                    });
                } else {
                    let row =
                        format::format_node_info_row(shown, st.store_size, st.store_free, raw);
                    ctx.put(&row);
                }
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
    if json {
        ctx.put_json(&json::NodeInfo {
            nodes: rows,
            total: json::Space::new(total_size, total_free),
            vdi_size_bytes: vdi_total,
        });
    } else {
        let total = format::format_node_info_total(total_size, total_free, vdi_total, raw);
        ctx.put(&total);
    }
    Ok(EXIT_SUCCESS)
}

/// `node kill <node id>` (or `-l`: the daemon given by `-a`/`-p`): KILL_NODE.
pub async fn kill(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let addr = if ctx.opts.local {
        ctx.addr
    } else {
        let Some(arg) = args.first() else {
            return Ok(EXIT_USAGE);
        };
        let text = String::from_utf8_lossy(arg);
        let idx = text.parse::<usize>().ok().filter(|i| *i < ctx.nodes.len());
        let Some(node) = idx.and_then(|i| ctx.nodes.get(i)) else {
            sd_err!("Invalid node id '{text}'");
            return Ok(EXIT_USAGE);
        };
        node.nid.socket_addr()
    };
    let Some(c) = ctx.conn_at(addr).await else {
        return Ok(EXIT_SYSFAIL);
    };
    match c.call(RequestHeader::new(Opcode::KillNode), &[]).await {
        Ok((rsp, _)) if rsp.result == SdResult::Success => Ok(EXIT_SUCCESS),
        Ok((rsp, _)) => {
            sd_err!("Failed to execute request: {}", rsp.result.message());
            Ok(EXIT_FAILURE)
        }
        // The node stops right after answering; a closed connection is expected.
        Err(ClientError::Closed) => Ok(EXIT_SUCCESS),
        Err(e) => {
            Ctx::report_transport(&e);
            Ok(EXIT_SYSFAIL)
        }
    }
}

/// Size of the STAT_RECOVERY reply.
const RECOVERY_STATE_LEN: u32 = 24;
const _: () = assert!(RECOVERY_STATE_LEN as usize == RECOVERY_STATE_SIZE);

/// `node recovery [info]`: STAT_RECOVERY to every node, listing those in recovery
/// (`--json`: every node that answered, with its state). The node list is fetched here,
/// not by the prologue, so that each `--watch` refresh sees the current members.
pub async fn recovery(ctx: &mut Ctx) -> CmdResult {
    ctx.update_node_list().await?;
    let raw = ctx.opts.raw;
    let json = ctx.opts.json;
    if !raw && !json {
        ctx.put_header(
            "Nodes In Recovery:\n  Id   Host:Port         V-Nodes       Zone       Progress\n",
        );
    }
    let mut doc = json::Recovery {
        epoch: ctx.epoch.get(),
        nodes: Vec::new(),
    };
    let nodes = ctx.nodes.clone();
    for (i, n) in nodes.iter().enumerate() {
        let addr = n.nid.socket_addr();
        let Some(c) = ctx.conn_at(addr).await else {
            continue;
        };
        let mut h = RequestHeader::new(Opcode::StatRecovery);
        h.data_length = RECOVERY_STATE_LEN;
        let data = match c.call(h, &[]).await {
            Ok((rsp, data)) if rsp.result == SdResult::Success => data,
            Ok(_) => continue,
            Err(e) => {
                Ctx::report_transport(&e);
                ctx.forget_conn(addr);
                continue;
            }
        };
        let Ok(state) = RecoveryState::decode(&data) else {
            continue;
        };
        if json {
            doc.nodes.push(json::NodeRecovery {
                node: json::Node::of(i, n),
                in_recovery: state.in_recovery,
                objects_done: state.nr_finished,
                objects_total: state.nr_total,
                progress_percent: format::recovery_percent(&state),
            });
        } else if state.in_recovery {
            let row = format::format_recovery_row(i, n, &state, raw);
            ctx.put(&row);
        }
    }
    if json {
        ctx.put_json(&doc);
    }
    Ok(EXIT_SUCCESS)
}
