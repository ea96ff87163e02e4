//! `dog cluster info|format|shutdown` (spec dog-cli.md §4.6, §7); `cluster info --json`.

use std::time::{SystemTime, UNIX_EPOCH};

use sd_client::{ClientError, MakeFs};
use sd_proto::SdResult;
use sd_proto::cluster::{EpochLogRecord, flags, sd_time};
use sd_proto::node::{SD_MAX_NODES, SdNode};

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL};
use crate::format::{self, ClusterInfoView};
use crate::json;
use crate::sd_err;

/// The caution printed before formatting a cluster that has VDIs.
const FORMAT_PRINT: &str = "    __\n   ()'`;\n   /\\|`\n  /  |   Caution! The cluster is not empty.\n(/_)_|_  Are you sure you want to continue? [yes/no]: ";

/// Store used when `-b` is absent.
const DEFAULT_STORE: &[u8] = b"plain";

/// `cluster info`: STAT_CLUSTER for every epoch, growing the node slots on BUFFER_SMALL.
pub async fn info(ctx: &mut Ctx) -> CmdResult {
    let mut nodes_nr = u32::try_from(ctx.nodes.len()).unwrap_or(u32::MAX);
    let epochs = ctx.epoch.get();
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    let stat = loop {
        match c.stat_cluster(nodes_nr, epochs).await {
            Ok(st) if st.result == SdResult::BufferSmall => {
                if usize::try_from(nodes_nr).is_ok_and(|n| n > SD_MAX_NODES) {
                    sd_err!("{}", SdResult::BufferSmall.message());
                    return Ok(EXIT_SYSFAIL);
                }
                nodes_nr = nodes_nr.saturating_mul(2).max(1);
            }
            Ok(st) => break st,
            Err(e) => {
                Ctx::report_transport(&e);
                return Ok(EXIT_SYSFAIL);
            }
        }
    };
    let records = match stat.records() {
        Ok(r) => r,
        Err(e) => {
            sd_err!("bad STAT_CLUSTER reply: {e}");
            return Ok(EXIT_SYSFAIL);
        }
    };
    if ctx.opts.json {
        ctx.put_json(&info_json(stat.result, &records, &ctx.nodes));
        return Ok(EXIT_SUCCESS);
    }
    let view = ClusterInfoView {
        raw: ctx.opts.raw,
        verbose: ctx.opts.verbose,
        diff: ctx.opts.diff,
    };
    let mut text = format::format_cluster_info(stat.result, &records, view, &chrono::Local);
    if view.verbose && !view.raw {
        // sheepdog-rs: each node's store mode (STAT_SHEEP byte 24), after the vnode mode.
        let nodes = ctx.nodes.clone();
        let mut modes = Vec::new();
        for n in &nodes {
            let Some(c) = ctx.conn_at(n.nid.socket_addr()).await else {
                continue;
            };
            if let Ok(st) = c.stat_sheep().await {
                let mode = if st.writeback {
                    "writeback"
                } else {
                    "writethrough"
                };
                modes.push(format!("{} {mode}", n.nid));
            }
        }
        let line = format!("Cluster store modes: {}\n", modes.join(", "));
        text = format::insert_after_line(&text, "Cluster vnode mode: ", &line);
    }
    if stat.result == SdResult::WaitForJoin && !view.raw {
        // sheepdog-rs: what the cluster waits for, after the C lines of the status.
        let after = if view.verbose {
            "Cluster store modes: "
        } else {
            "Cluster status: "
        };
        let lines = wait_for_join_text(&records, &ctx.nodes);
        text = format::insert_after_line(&text, after, &lines);
    }
    ctx.put(&text);
    Ok(EXIT_SUCCESS)
}

/// Where a sheep started with the default `-c local` keeps the cluster state it shares
/// with every other such sheep of the host: `sheep::driver::DEFAULT_LOCAL_PATH` (a test
/// keeps the two equal; dog does not depend on the daemon's crate).
const DEFAULT_LOCAL_PATH: &str = "/tmp/sheepdog-rs-local";

/// The lines `cluster info` adds while the cluster waits for nodes to join: the members
/// of the latest epoch (`records` are newest first) missing from the current node list,
/// and how to start a fresh cluster instead (a sheep started with the default `-c local`
/// joins whatever cluster an earlier run left in the host's shared state).
fn wait_for_join_text(records: &[EpochLogRecord], current: &[SdNode]) -> String {
    let mut s = String::new();
    let missing: Vec<String> = awaited(records, current)
        .map(|n| n.nid.to_string())
        .collect();
    if let Some(last) = records.first().filter(|_| !missing.is_empty()) {
        s.push_str(&format!(
            "Waiting for nodes of epoch {} to join: {}\n",
            last.epoch.get(),
            missing.join(", ")
        ));
    }
    s.push_str(&format!(
        "Hint: sheep started with the default '-c local' share the cluster state in \
         {DEFAULT_LOCAL_PATH} with every such sheep on this host; start them with \
         '-c local:PATH' and a new PATH for a fresh cluster.\n"
    ));
    s
}

/// The members of the latest epoch (`records` are newest first) missing from `current`.
fn awaited<'a>(
    records: &'a [EpochLogRecord],
    current: &'a [SdNode],
) -> impl Iterator<Item = &'a SdNode> {
    records
        .first()
        .into_iter()
        .flat_map(|last| last.nodes.iter())
        .filter(|n| !current.iter().any(|c| c.nid == n.nid))
}

/// The `cluster info --json` document; `records` are newest first, `current` the members
/// now.
fn info_json(
    result: SdResult,
    records: &[EpochLogRecord],
    current: &[SdNode],
) -> json::ClusterInfo {
    let waiting_for = if result == SdResult::WaitForJoin {
        awaited(records, current).map(json::Addr::of).collect()
    } else {
        Vec::new()
    };
    let first = records.first().filter(|_| result.is_success());
    let auto_recovery = first.map(|r| r.disable_recovery == 0);
    let status_message = if result.is_success() {
        let on = auto_recovery.unwrap_or(true);
        format!(
            "running, auto-recovery {}",
            if on { "enabled" } else { "disabled" }
        )
    } else {
        result.message().into_owned()
    };
    let epochs = records
        .iter()
        .map(|r| json::ClusterEpoch {
            epoch: r.epoch.get(),
            time: r.time,
            time_rfc3339: json::rfc3339(r.time),
            nodes: r
                .nodes
                .iter()
                .map(|n| json::EpochMember {
                    addr: json::Addr::of(n),
                    vnodes: n.nr_vnodes,
                    zone: n.zone,
                })
                .collect(),
        })
        .collect();
    json::ClusterInfo {
        status: json::status_name(result),
        status_message,
        result_code: result.as_u32(),
        auto_recovery,
        created: first.map(|r| r.ctime >> 32),
        created_rfc3339: first.map(|r| json::rfc3339(r.ctime >> 32)),
        epoch: records.first().map_or(0, |r| r.epoch.get()),
        store: first.map(|r| format::text(&r.drv_name)),
        copies: first.map(|r| r.nr_copies),
        redundancy: first.map(|r| format::redundancy(r.nr_copies, r.copy_policy)),
        vnodes_strategy: first.map(|r| {
            if r.flags & flags::AUTO_VNODES != 0 {
                "auto"
            } else {
                "fixed"
            }
        }),
        vnode_mode: first.map(|r| {
            if r.flags & flags::DISKMODE != 0 {
                "disk"
            } else {
                "node"
            }
        }),
        epochs,
        waiting_for,
    }
}

/// `cluster format`: checks every node's vnode strategy, confirms, then MAKE_FS.
pub async fn format(ctx: &mut Ctx) -> CmdResult {
    let o = ctx.opts.clone();
    let nodes = ctx.nodes.clone();
    for n in &nodes {
        let Some(c) = ctx.conn_at(n.nid.socket_addr()).await else {
            sd_err!("Fail to execute request");
            return Ok(EXIT_FAILURE);
        };
        let ci = match c.cluster_info().await {
            Ok(ci) => ci,
            Err(ClientError::Result(r)) => {
                sd_err!("{}", r.message());
                return Ok(EXIT_FAILURE);
            }
            Err(e) => {
                Ctx::report_transport(&e);
                sd_err!("Fail to execute request");
                return Ok(EXIT_FAILURE);
            }
        };
        if n.nr_vnodes != 0 {
            let auto = ci.flags & flags::AUTO_VNODES != 0;
            if auto && o.fixed_vnodes {
                sd_err!(
                    "Can not apply the option of '-V', because there are vnode strategy of sheep is auto in the cluster"
                );
                return Ok(EXIT_FAILURE);
            }
            if !auto && !o.fixed_vnodes {
                sd_err!(
                    "Need to specify the option of '-V', because there are vnode strategy of sheep is fixed in the cluster"
                );
                return Ok(EXIT_FAILURE);
            }
        }
    }
    let zones = ctx.zones();
    if usize::from(o.copies) > zones {
        ctx.confirm(&format!(
            "Number of copies ({}) is larger than number of zones ({zones}).\nAre you sure you want to continue? [yes/no]: ",
            o.copies
        ))?;
    }
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    let inuse = match c.read_vdis().await {
        Ok(m) => m,
        Err(ClientError::Result(r)) => {
            sd_err!("{}", r.message());
            return Ok(EXIT_FAILURE);
        }
        Err(e) => {
            Ctx::report_transport(&e);
            return Ok(EXIT_SYSFAIL);
        }
    };
    if !inuse.is_empty() && !o.force {
        ctx.confirm(FORMAT_PRINT)?;
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ctime = sd_time(now.as_secs(), now.subsec_micros() * 1000);
    let store: &[u8] = if o.store.is_empty() {
        DEFAULT_STORE
    } else {
        &o.store
    };
    let mut cflags = 0;
    for (on, bit) in [
        (o.strict, flags::STRICT),
        (o.use_lock, flags::USE_LOCK),
        (o.recycle_vid, flags::RECYCLE_VID),
        (!o.fixed_vnodes, flags::AUTO_VNODES),
        (o.avoid_diskfull, flags::AVOID_DISKFULL),
    ] {
        if on {
            cflags |= bit;
        }
    }
    ctx.put_header(&format!("using backend {} store\n", format::text(store)));
    let req = MakeFs {
        store,
        copies: o.copies,
        copy_policy: o.copy_policy,
        block_size_shift: o.block_size_shift,
        flags: cflags,
        ctime,
    };
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    match c.make_fs(&req).await {
        Ok(()) => Ok(EXIT_SUCCESS),
        Err(ClientError::Result(r)) => {
            sd_err!("Format failed: {}", r.message());
            if r == SdResult::NoStore {
                list_store(ctx).await
            } else {
                Ok(EXIT_SYSFAIL)
            }
        }
        Err(e) => {
            Ctx::report_transport(&e);
            Ok(EXIT_SYSFAIL)
        }
    }
}

/// Prints the server's store drivers after a NO_STORE format failure.
async fn list_store(ctx: &mut Ctx) -> CmdResult {
    let Some(c) = ctx.conn().await else {
        return Ok(EXIT_SYSFAIL);
    };
    match c.get_store_list().await {
        Ok(list) => {
            let names: String = list
                .names
                .iter()
                .map(|n| format!("{} ", format::text(n)))
                .collect();
            ctx.put(&format!(
                "Available stores:\n---------------------------------------\n{names}\n"
            ));
            Ok(EXIT_SYSFAIL)
        }
        Err(ClientError::Result(r)) => {
            sd_err!("Restore failed: {}", r.message());
            Ok(EXIT_FAILURE)
        }
        Err(e) => {
            Ctx::report_transport(&e);
            Ok(EXIT_SYSFAIL)
        }
    }
}

/// `cluster shutdown`.
pub async fn shutdown(ctx: &mut Ctx) -> CmdResult {
    let Some(c) = ctx.conn().await else {
        sd_err!("failed to execute request");
        return Ok(EXIT_FAILURE);
    };
    match c.shutdown().await {
        Ok(()) => Ok(EXIT_SUCCESS),
        Err(e) => {
            match &e {
                ClientError::Result(r) => sd_err!("Response's result: {}", r.message()),
                other => Ctx::report_transport(other),
            }
            sd_err!("failed to execute request");
            Ok(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sd_proto::Epoch;
    use sd_proto::node::NodeId;

    fn node(port: u16) -> SdNode {
        SdNode {
            nid: NodeId::from_socket(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
            nr_vnodes: 128,
            ..SdNode::default()
        }
    }

    fn epoch(e: u32, ports: &[u16]) -> EpochLogRecord {
        EpochLogRecord {
            epoch: Epoch(e),
            nodes: ports.iter().map(|p| node(*p)).collect(),
            ..EpochLogRecord::default()
        }
    }

    #[test]
    fn wait_for_join_names_the_missing_nodes_of_the_latest_epoch() {
        let hint = format!(
            "Hint: sheep started with the default '-c local' share the cluster state in \
             {DEFAULT_LOCAL_PATH} with every such sheep on this host; start them with \
             '-c local:PATH' and a new PATH for a fresh cluster.\n"
        );
        let check = |records: &[EpochLogRecord], current: &[u16], expect: &str| {
            let current: Vec<SdNode> = current.iter().map(|p| node(*p)).collect();
            assert_eq!(
                wait_for_join_text(records, &current),
                format!("{expect}{hint}"),
                "current {current:?}"
            );
        };
        // Newest first: epoch 3 has 7000, 7002 and 7003; 7001, only in epoch 2, is not
        // waited for.
        let log = [epoch(3, &[7000, 7002, 7003]), epoch(2, &[7000, 7001])];
        check(
            &log,
            &[7000],
            "Waiting for nodes of epoch 3 to join: 127.0.0.1:7002, 127.0.0.1:7003\n",
        );
        check(
            &log,
            &[7003, 7000],
            "Waiting for nodes of epoch 3 to join: 127.0.0.1:7002\n",
        );
        // Nobody missing (or no log): only the hint.
        check(&log, &[7000, 7002, 7003], "");
        check(&[], &[7000], "");
    }

    #[test]
    fn the_hint_names_the_daemons_default_local_path() {
        let driver = include_str!("../../sheep/src/driver/mod.rs");
        assert!(
            driver.contains(&format!(
                "DEFAULT_LOCAL_PATH: &str = \"{DEFAULT_LOCAL_PATH}\";"
            )),
            "sheep's default -c local path changed; update dog's hint"
        );
    }
}
