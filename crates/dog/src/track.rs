//! `dog vdi track [-i INDEX] [-o OID] [-s SNAP] NAME` (dog-cli.md §4.7, §7): where an object
//! of the VDI was placed in every epoch, computed from each epoch's member list (STAT_CLUSTER)
//! with the same vnode ring the sheep use (`sd_cluster::placement`).
//!
//! The text follows Sheepdog 1.0's `do_track_object` byte for byte: object ids print as 16
//! hex digits (`%016lx`), and the epochs print in the order STAT_CLUSTER returns them,
//! newest first. (The C loop counts down but walks the reply buffer forwards; dog-cli.md's
//! summary "0x%lx ... oldest first" reads the loop, not the output.) One C bug is not
//! copied: an epoch with fewer members than copies did not advance its record pointer, so
//! every later epoch repeated it. `--json` gives the same placements.

use sd_cluster::placement::Ring;
use sd_proto::cluster::EpochLogRecord;
use sd_proto::inode::{InodeHeader, SD_INODE_HEADER_SIZE, SD_INODE_SIZE};
use sd_proto::node::{SD_MAX_NODES, SdNode};
use sd_proto::{Oid, SdResult, Vid};

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL};
use crate::sd_err;
use crate::vdi::index_entry;

/// Data indexes of any VDI (`MAX_DATA_OBJS`).
const MAX_DATA_OBJS: u64 = 1 << 32;
/// The rule under each epoch's heading.
const RULE: &str = "---------------------------------------------------";

/// `vdi track NAME`.
pub async fn track(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(crate::exit::EXIT_USAGE);
    };
    let (snapid, tag) = (ctx.opts.snapshot_id, ctx.opts.snapshot_tag.clone());
    let len = u32::try_from(SD_INODE_SIZE).unwrap_or(u32::MAX);
    let inode = match ctx.read_vdi_obj(name, snapid, &tag, len).await {
        Ok((_, inode)) => inode,
        Err(_) => {
            sd_err!("FATAL: no inode objects");
            return Ok(EXIT_FAILURE);
        }
    };
    let Ok(hdr) = InodeHeader::decode(&inode) else {
        sd_err!("FATAL: no inode objects");
        return Ok(EXIT_FAILURE);
    };
    let vid = hdr.vdi_id;
    let copies = hdr.nr_copies;
    let nodes = ctx.nodes.len();
    let json = ctx.opts.json;
    let (oid, heading) = match (ctx.opts.oid, ctx.opts.index) {
        (Some(oid), _) => {
            let oid = Oid::new(oid);
            let heading =
                format!("Tracking the object {oid} (the inode vid 0x{vid:x}) with {nodes} nodes\n");
            (oid, heading)
        }
        (None, None) => {
            let heading = format!("Tracking the inode object 0x{vid:x} with {nodes} nodes\n");
            (Vid::from_masked(vid).inode_oid(), heading)
        }
        (None, Some(idx)) => {
            let Some(idx) = u32::try_from(idx).ok().filter(|_| idx < MAX_DATA_OBJS) else {
                ctx.put("The offset is too large!\n");
                return Ok(EXIT_FAILURE);
            };
            // As Sheepdog: an unallocated index tracks the object of vid 0.
            let index = inode.get(SD_INODE_HEADER_SIZE..).unwrap_or_default();
            let owner = index_entry(index, u64::from(idx));
            let oid = Vid::from_masked(owner).data_oid(idx);
            let heading = format!(
                "Tracking the object {oid} (the inode vid 0x{vid:x} idx {idx}) with {nodes} nodes\n"
            );
            (oid, heading)
        }
    };
    if !json {
        ctx.put_header(&heading);
    }
    let records = match epoch_records(ctx).await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if json {
        let epochs = records
            .iter()
            .map(|rec| crate::json::TrackEpoch {
                epoch: rec.epoch.get(),
                locations: holders(oid, copies, &rec.nodes)
                    .iter()
                    .map(|n| n.nid.to_string())
                    .collect(),
            })
            .collect();
        ctx.put_json(&crate::json::Track {
            oid: crate::json::oid_hex(oid),
            vid,
            index: ctx.opts.index.filter(|_| ctx.opts.oid.is_none()),
            copies,
            epochs,
        });
        return Ok(EXIT_SUCCESS);
    }
    let mut out = String::new();
    for rec in &records {
        out.push_str(&epoch_section(oid, rec.epoch.get(), copies, &rec.nodes));
    }
    ctx.put(&out);
    Ok(EXIT_SUCCESS)
}

/// `do_track_object`'s STAT_CLUSTER for every epoch (doubling the node slots on
/// BUFFER_SMALL), newest first; errors are printed and become the exit code.
async fn epoch_records(ctx: &mut Ctx) -> Result<Vec<EpochLogRecord>, u8> {
    let mut nodes_nr = u32::try_from(ctx.nodes.len()).unwrap_or(u32::MAX);
    let epochs = ctx.epoch.get();
    let Some(c) = ctx.conn().await else {
        return Err(EXIT_SYSFAIL);
    };
    let stat = loop {
        match c.stat_cluster(nodes_nr, epochs).await {
            Ok(st) if st.result == SdResult::BufferSmall => {
                if usize::try_from(nodes_nr).is_ok_and(|n| n > SD_MAX_NODES) {
                    ctx.put(&format!("{}\n", SdResult::BufferSmall.message()));
                    return Err(EXIT_SYSFAIL);
                }
                nodes_nr = nodes_nr.saturating_mul(2).max(1);
            }
            Ok(st) => break st,
            Err(e) => {
                Ctx::report_transport(&e);
                return Err(EXIT_SYSFAIL);
            }
        }
    };
    if stat.result != SdResult::Success {
        ctx.put(&format!("{}\n", stat.result.message()));
        return Err(EXIT_SYSFAIL);
    }
    stat.records().map_err(|_| {
        sd_err!("bad STAT_CLUSTER reply");
        EXIT_SYSFAIL
    })
}

/// Where the ring puts `oid` among `members` (every member when there are fewer members
/// than copies), primary first: the nodes `vdi track` names and `vdi check` asks.
pub fn holders(oid: Oid, copies: u8, members: &[SdNode]) -> Vec<SdNode> {
    if members.len() < usize::from(copies) {
        members.to_vec()
    } else {
        Ring::new(members).replicas(oid, usize::from(copies))
    }
}

/// One epoch's part of the output: a blank line, the heading, the rule, then the replicas
/// in placement order (every member when there are fewer members than copies).
pub fn epoch_section(oid: Oid, epoch: u32, copies: u8, members: &[SdNode]) -> String {
    let mut s = format!("\nobj {oid} locations at epoch {epoch}, copies = {copies}\n{RULE}\n");
    for n in holders(oid, copies, members) {
        s.push_str(&format!("{}\n", n.nid));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sd_proto::node::NodeId;

    fn node(port: u16) -> SdNode {
        SdNode {
            nid: NodeId::from_socket(format!("127.0.0.1:{port}").parse().unwrap()),
            nr_vnodes: 128,
            zone: u32::from(port) - 7000,
            ..SdNode::default()
        }
    }

    #[test]
    fn sections_print_the_ring_placement() {
        // The placement the sample cluster of dog-output-samples.txt reports for this oid.
        let members = [node(7000), node(7001), node(7002)];
        let oid = Oid::new(0x007c_2b25_0000_0000);
        assert_eq!(
            epoch_section(oid, 3, 2, &members),
            format!(
                "\nobj 007c2b2500000000 locations at epoch 3, copies = 2\n{RULE}\n127.0.0.1:7001\n127.0.0.1:7000\n"
            )
        );
        // Fewer members than copies: all of them.
        assert_eq!(
            epoch_section(oid, 1, 3, &members[..2]),
            format!(
                "\nobj 007c2b2500000000 locations at epoch 1, copies = 3\n{RULE}\n127.0.0.1:7000\n127.0.0.1:7001\n"
            )
        );
        assert_eq!(RULE.len(), 51);
    }
}
