//! `dog vdi object {location|map} [-i index] <vdiname>` (spec dog-cli.md §4.7): where an
//! object is, asked of every node (EXIST), and where the vnode ring says it should be —
//! the same `sd_cluster::placement` the sheep use. Both take `--json`.

use sd_cluster::placement::Ring;
use sd_proto::inode::{SD_INODE_HEADER_SIZE, SD_INODE_SIZE};
use sd_proto::{ObjArgs, Oid, Opcode, RequestHeader, SdResult, Vid};

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_USAGE};
use crate::json;
use crate::sd_err;
use crate::vdi::index_entry;

/// `vdi object SUB NAME`.
pub async fn object(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (Some(&sub), Some(&name)) = (args.first(), args.get(1)) else {
        return Ok(EXIT_USAGE);
    };
    let (snapid, tag) = (ctx.opts.snapshot_id, ctx.opts.snapshot_tag.clone());
    let len = u32::try_from(SD_INODE_SIZE).unwrap_or(u32::MAX);
    let (vid, inode) = match ctx.read_vdi_obj(name, snapid, &tag, len).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Ok(hdr) = sd_proto::inode::InodeHeader::decode(&inode) else {
        sd_err!("Failed to read a vdi {}", crate::format::text(name));
        return Ok(EXIT_FAILURE);
    };
    let index = inode.get(SD_INODE_HEADER_SIZE..).unwrap_or_default();
    match sub {
        b"map" => {
            let mut out = String::from("Index       VID\n");
            let mut doc = json::ObjectMap {
                vid: vid.get(),
                objects: Vec::new(),
            };
            let idxs: Vec<u64> = match ctx.opts.index {
                Some(i) => vec![i],
                None => (0..hdr.data_objects()).collect(),
            };
            for i in idxs {
                let owner = index_entry(index, i);
                if owner != 0 {
                    out.push_str(&format!("{i:08} {owner:8x}\n"));
                    if let Ok(idx) = u32::try_from(i) {
                        doc.objects.push(json::MappedObject {
                            index: i,
                            vid: owner,
                            oid: json::oid_hex(Vid::from_masked(owner).data_oid(idx)),
                        });
                    }
                }
            }
            if ctx.opts.json {
                ctx.put_json(&doc);
            } else {
                ctx.put(&out);
            }
            Ok(EXIT_SUCCESS)
        }
        b"location" => {
            ctx.update_node_list().await?;
            let json = ctx.opts.json;
            let mut doc = json::ObjectLocation {
                vid: vid.get(),
                index: ctx.opts.index,
                allocated: true,
                oid: None,
                copies: hdr.nr_copies,
                nodes: Vec::new(),
                placement: Vec::new(),
            };
            let oid = match ctx.opts.index {
                None => {
                    if !json {
                        ctx.put_header(&format!(
                            "Looking for the inode object 0x{:x} with {} nodes\n\n",
                            vid.get(),
                            ctx.nodes.len()
                        ));
                    }
                    vid.inode_oid()
                }
                Some(i) => {
                    let Ok(idx) = u32::try_from(i) else {
                        if json {
                            sd_err!("The offset is too large!");
                        } else {
                            ctx.put("The offset is too large!\n");
                        }
                        return Ok(EXIT_FAILURE);
                    };
                    let owner = index_entry(index, i);
                    if owner == 0 {
                        if json {
                            doc.allocated = false;
                            ctx.put_json(&doc);
                        } else {
                            ctx.put(&format!(
                                "The inode object 0x{:x} idx {i} is not allocated\n",
                                vid.get()
                            ));
                        }
                        return Ok(EXIT_SUCCESS);
                    }
                    let oid = Vid::from_masked(owner).data_oid(idx);
                    if !json {
                        ctx.put_header(&format!(
                            "Looking for the object 0x{:x} (vid 0x{:x} idx {i}, {} copies) with {} nodes\n\n",
                            oid.get(),
                            vid.get(),
                            hdr.nr_copies,
                            ctx.nodes.len()
                        ));
                    }
                    oid
                }
            };
            doc.oid = Some(json::oid_hex(oid));
            location(ctx, oid, usize::from(hdr.nr_copies), doc).await
        }
        _ => Ok(EXIT_USAGE),
    }
}

/// Asks every node whether it has `oid`, then prints the ring's placement (`--json`:
/// fills in and prints `doc`).
async fn location(
    ctx: &mut Ctx,
    oid: Oid,
    copies: usize,
    mut doc: json::ObjectLocation,
) -> CmdResult {
    let nodes = ctx.nodes.clone();
    let epoch = ctx.epoch;
    let json = ctx.opts.json;
    for n in &nodes {
        let Some(c) = ctx.conn_at(n.nid.socket_addr()).await else {
            continue;
        };
        let mut h = RequestHeader::new(Opcode::Exist).with_obj(ObjArgs {
            oid,
            ..ObjArgs::default()
        });
        h.epoch = epoch;
        let has = matches!(c.call(h, &[]).await, Ok((rsp, _)) if rsp.result == SdResult::Success);
        if json {
            doc.nodes.push(json::NodeHas {
                addr: json::Addr::of(n),
                has_object: has,
            });
        } else {
            let verb = if has { "has" } else { "doesn't have" };
            ctx.put(&format!("{} {verb} the object\n", n.nid));
        }
    }
    let placed: Vec<String> = Ring::new(&nodes)
        .replicas(oid, copies)
        .iter()
        .map(|n| n.nid.to_string())
        .collect();
    if json {
        doc.placement = placed;
        ctx.put_json(&doc);
        return Ok(EXIT_SUCCESS);
    }
    ctx.put("\nAccording to sheepdog algorithm, the object should be located at:\n");
    ctx.put(&format!("{}\n", placed.join(" ")));
    Ok(EXIT_SUCCESS)
}
