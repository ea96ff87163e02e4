//! `dog vdi check [-s SNAP] [-e] NAME` and `dog cluster check` (dog-cli.md §3, §4.7, §7):
//! every object of a VDI (its inode, then each allocated data object) is looked for on
//! the replicas the ring places it on (`track::holders`, the current epoch's members).
//!
//! Without `-e`, every node is first asked which of its copies it lacks (OIDS_EXIST), then
//! each replica holding one is asked its SHA-1 (GET_HASH); the copy a strict majority of the
//! replicas holds is the good one, and every replica that lacks it or holds other bytes is
//! told to fetch it from a good holder (REPAIR_REPLICA, sent to the replica being
//! repaired): `fixed missing %lx` / `fixed replica %lx`. The rule is `sd_cluster::check::decide`'s: an
//! undisputed copy (every replica answered, the
//! ones holding a copy agree) is good too; copies that disagree with no majority are
//! reported (`no majority of %lx`) and left alone; an object no replica holds is lost; a
//! replica that cannot be asked leaves the object undecided. Any of these exits 1.
//! Objects are checked [`IN_FLIGHT`] at a time, each worker with its own connections.
//!
//! An erasure-coded VDI's data objects are checked by a sheep instead (CHECK_STRIPS): it
//! reads every strip, rebuilds the missing ones and a wrong one when the others say which
//! (`fixed missing %lx` / `fixed replica %lx` per strip), and reports strips that disagree
//! with nothing saying which is wrong as `no majority of %lx`.
//!
//! With `-e`, each node is asked once (OIDS_EXIST, in batches) which of the objects it
//! should hold it lacks; nothing is repaired.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use sd_client::{ClientError, Connection};
use sd_proto::node::{NodeId, SdNode};
use sd_proto::oid_list::OidList;
use sd_proto::strip_check::{Outcome, StripCheck, StripStatus};
use sd_proto::{
    Epoch, Flags, ForwArgs, ObjArgs, Oid, Opcode, RequestHeader, ResponseHeader, SdResult, Vid,
};
use tokio::sync::mpsc;

use crate::ctx::{Ctx, report_open_failure};
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_USAGE};
use crate::format::text;
use crate::json::{CheckedCopy, ClusterCheck, VdiCheck, oid_hex};
use crate::progress::Progress;
use crate::sd_err;
use crate::vdi::{ListedVdi, count_data_objs, index_entry, live_vids, read_listed};
use sd_cluster::check::{Answer, Decision, Fix, decide};

/// Objects checked at once (one request at a time each, on its own connections).
const IN_FLIGHT: usize = 8;
/// Object ids per OIDS_EXIST request (512 KiB of payload, well under a sheep's cap).
const EXIST_BATCH: usize = 1 << 16;

/// What went wrong with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    NoMajority,
    Lost,
    Failed,
}

/// One checked object, sent by a worker to the task that prints.
#[derive(Debug)]
struct Report {
    oid: Oid,
    /// Replicas repaired.
    fixed: Vec<(Fix, NodeId)>,
    problem: Option<Problem>,
    /// Diagnostics for stderr.
    errors: Vec<String>,
}

/// What the workers share.
struct Plan {
    oids: Vec<Oid>,
    copies: u8,
    nodes: Vec<SdNode>,
    epoch: Epoch,
    /// Copies their node's store directory lacks (asked first, with OIDS_EXIST).
    missing: HashSet<(NodeId, Oid)>,
}

/// A worker's own connections.
type Conns = HashMap<SocketAddr, Connection>;

/// Sends one request to `node` on this worker's connection (connecting if needed); a
/// connection that failed is dropped, so the next request connects again.
async fn call(
    conns: &mut Conns,
    node: &NodeId,
    hdr: RequestHeader,
    payload: &[u8],
) -> Result<(ResponseHeader, Bytes), ClientError> {
    let addr = node.socket_addr();
    let conn = match conns.entry(addr) {
        Entry::Occupied(o) => o.into_mut(),
        Entry::Vacant(v) => v.insert(Connection::connect(addr).await?),
    };
    let r = conn.call(hdr, payload).await;
    if r.is_err() {
        conns.remove(&addr);
    }
    r
}

/// GET_HASH of `oid` on `node`; a failure is described in `errors`.
async fn get_hash(
    conns: &mut Conns,
    node: &NodeId,
    oid: Oid,
    epoch: Epoch,
    errors: &mut Vec<String>,
) -> Answer {
    let hdr = RequestHeader::new(Opcode::GetHash).with_obj(ObjArgs {
        oid,
        tgt_epoch: epoch,
        ..ObjArgs::default()
    });
    match call(conns, node, hdr, &[]).await {
        Ok((rsp, _)) if rsp.result == SdResult::Success => Answer::Hash(rsp.hash()),
        Ok((rsp, _)) if rsp.result == SdResult::NoObj => Answer::Missing,
        Ok((rsp, _)) => {
            errors.push(format!(
                "failed to get the hash of {:x} from {node}: {}",
                oid.get(),
                rsp.result.message()
            ));
            Answer::Failed
        }
        Err(e) => {
            errors.push(format!(
                "failed to get the hash of {:x} from {node}: {e}",
                oid.get()
            ));
            Answer::Failed
        }
    }
}

/// REPAIR_REPLICA: `target` replaces its copy of `oid` (which we saw as `seen`) with the
/// one `from` holds; it refuses if its copy changed since (a client wrote it meanwhile).
async fn repair(
    conns: &mut Conns,
    target: &NodeId,
    from: &NodeId,
    oid: Oid,
    epoch: Epoch,
    seen: Answer,
) -> Result<(), String> {
    let mut hdr =
        RequestHeader::new(Opcode::RepairReplica).with_forw(ForwArgs { oid, from: *from });
    hdr.epoch = epoch;
    let payload = sd_cluster::check::seen_payload(seen);
    hdr.flags = Flags::WRITE;
    hdr.data_length = 20;
    let why = match call(conns, target, hdr, &payload).await {
        Ok((rsp, _)) if rsp.result == SdResult::Success => return Ok(()),
        Ok((rsp, _)) => rsp.result.message().to_string(),
        Err(e) => e.to_string(),
    };
    Err(format!(
        "failed to repair {:x} on {target} from {from}: {why}",
        oid.get()
    ))
}

/// Checks (and repairs) one object on its replicas.
async fn check_object(conns: &mut Conns, plan: &Plan, oid: Oid) -> Report {
    let replicas = crate::track::holders(oid, plan.copies, &plan.nodes);
    let mut report = Report {
        oid,
        fixed: Vec::new(),
        problem: None,
        errors: Vec::new(),
    };
    let mut answers = Vec::with_capacity(replicas.len());
    for n in &replicas {
        let answer = if plan.missing.contains(&(n.nid, oid)) {
            Answer::Missing
        } else {
            get_hash(conns, &n.nid, oid, plan.epoch, &mut report.errors).await
        };
        answers.push(answer);
    }
    let (source, repairs) = match decide(&answers) {
        Decision::Good { source, repairs } => (source, repairs),
        Decision::NoMajority => {
            report.problem = Some(Problem::NoMajority);
            return report;
        }
        Decision::Lost => {
            report.problem = Some(Problem::Lost);
            return report;
        }
        Decision::Undecided => {
            report.problem = Some(Problem::Failed);
            return report;
        }
    };
    if answers.contains(&Answer::Failed) {
        report.problem = Some(Problem::Failed);
    }
    let Some(from) = replicas.get(source).map(|n| n.nid) else {
        report.problem = Some(Problem::Failed);
        return report;
    };
    for (i, why) in repairs {
        let (Some(target), Some(seen)) = (replicas.get(i).map(|n| n.nid), answers.get(i).copied())
        else {
            continue;
        };
        match repair(conns, &target, &from, oid, plan.epoch, seen).await {
            Ok(()) => report.fixed.push((why, target)),
            Err(e) => {
                report.errors.push(e);
                report.problem = Some(Problem::Failed);
            }
        }
    }
    report
}

/// Takes the next unchecked object until none is left.
async fn worker(plan: Arc<Plan>, next: Arc<AtomicUsize>, tx: mpsc::Sender<Report>) {
    let mut conns = Conns::new();
    while let Some(&oid) = plan.oids.get(next.fetch_add(1, Ordering::Relaxed)) {
        let report = check_object(&mut conns, &plan, oid).await;
        if tx.send(report).await.is_err() {
            return;
        }
    }
}

/// Checks and repairs `oids`, printing as the C `dog` does, and records it all in `doc`.
async fn repair_objects(ctx: &mut Ctx, oids: Vec<Oid>, copies: u8, doc: &mut VdiCheck) {
    let json = ctx.opts.json;
    let total = oids.len();
    // Existence first, in one request per node: a missing copy needs no GET_HASH, and a
    // sheep that predates our GET_HASH's own existence check (it could hash a file removed
    // under its descriptor cache) is still judged right.
    let mut unasked = Vec::new();
    let missing = missing_copies(ctx, &oids, copies, &mut unasked)
        .await
        .into_iter()
        .collect();
    let plan = Arc::new(Plan {
        oids,
        copies,
        nodes: ctx.nodes.clone(),
        epoch: ctx.epoch,
        missing,
    });
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT.min(total) {
        workers.spawn(worker(plan.clone(), next.clone(), tx.clone()));
    }
    drop(tx);
    let bar = Progress::objects(u64::try_from(total).unwrap_or(u64::MAX));
    let mut seen = 0usize;
    while let Some(r) = rx.recv().await {
        seen += 1;
        let oid = oid_hex(r.oid);
        bar.suspend(|| {
            for e in &r.errors {
                sd_err!("{e}");
            }
            for (why, node) in &r.fixed {
                let copy = CheckedCopy {
                    oid: oid.clone(),
                    addr: node.to_string(),
                };
                let (line, list) = match why {
                    Fix::Missing => ("fixed missing", &mut doc.fixed_missing),
                    Fix::Replica => ("fixed replica", &mut doc.fixed_replicas),
                };
                if !json {
                    ctx.put(&format!("{line} {:x}\n", r.oid.get()));
                }
                list.push(copy);
            }
            match r.problem {
                Some(Problem::NoMajority) => {
                    sd_err!("no majority of {:x}", r.oid.get());
                    doc.no_majority.push(oid.clone());
                }
                Some(Problem::Lost) => {
                    sd_err!("object {:x} is lost: no replica has a copy", r.oid.get());
                    doc.lost.push(oid.clone());
                }
                Some(Problem::Failed) => doc.failed.push(oid.clone()),
                None => {}
            }
        });
        bar.inc(1);
    }
    while workers.join_next().await.is_some() {}
    if seen < total {
        // A worker died (it only returns early if this loop stopped listening).
        sd_err!("{} objects were not checked", total - seen);
        doc.failed.push(String::from("unchecked"));
    }
    bar.finish();
}

/// The copies (node, object) of `oids` that their nodes lack, in node order, asking every
/// node once per [`EXIST_BATCH`] objects (OIDS_EXIST, which looks at the store directory).
/// Objects a node could not be asked about are added to `failed`.
async fn missing_copies(
    ctx: &mut Ctx,
    oids: &[Oid],
    copies: u8,
    failed: &mut Vec<String>,
) -> Vec<(NodeId, Oid)> {
    let mut wanted: HashMap<NodeId, Vec<Oid>> = HashMap::new();
    for &oid in oids {
        for n in crate::track::holders(oid, copies, &ctx.nodes) {
            wanted.entry(n.nid).or_default().push(oid);
        }
    }
    let nodes: Vec<NodeId> = ctx.nodes.iter().map(|n| n.nid).collect();
    let mut out = Vec::new();
    for nid in nodes {
        let Some(list) = wanted.get(&nid) else {
            continue;
        };
        for batch in list.chunks(EXIST_BATCH) {
            match oids_exist(ctx, &nid, batch).await {
                Some(missing) => out.extend(missing.into_iter().map(|o| (nid, o))),
                None => failed.extend(batch.iter().map(|o| oid_hex(*o))),
            }
        }
    }
    out
}

/// OIDS_EXIST of `batch` on `nid`: the objects it lacks (`None`, reported, if it could not
/// tell).
async fn oids_exist(ctx: &mut Ctx, nid: &NodeId, batch: &[Oid]) -> Option<Vec<Oid>> {
    let payload = OidList {
        oids: batch.to_vec(),
    }
    .encode();
    let mut hdr = RequestHeader::new(Opcode::OidsExist);
    hdr.flags = Flags::WRITE | Flags::PIGGYBACK;
    hdr.data_length = u32::try_from(payload.len()).ok()?;
    let c = ctx.conn_at(nid.socket_addr()).await?;
    match c.call(hdr, &payload).await {
        Ok((rsp, _)) if rsp.result == SdResult::Success => Some(Vec::new()),
        Ok((rsp, data)) if rsp.result == SdResult::NoObj => match OidList::decode(&data) {
            Ok(l) => Some(l.oids),
            Err(e) => {
                sd_err!("bad OIDS_EXIST answer from {nid}: {e}");
                None
            }
        },
        Ok((rsp, _)) => {
            sd_err!("failed to check objects on {nid}: {}", rsp.result.message());
            None
        }
        Err(e) => {
            Ctx::report_transport(&e);
            ctx.forget_conn(nid.socket_addr());
            None
        }
    }
}

/// `-e`: prints the copies that are missing, nothing is repaired.
async fn exist_objects(ctx: &mut Ctx, oids: &[Oid], copies: u8, doc: &mut VdiCheck) {
    let missing = missing_copies(ctx, oids, copies, &mut doc.failed).await;
    for (nid, oid) in missing {
        if !ctx.opts.json {
            ctx.put(&format!("[{nid}] oid {:016x} is missing.\n", oid.get()));
        }
        doc.missing.push(CheckedCopy {
            oid: oid_hex(oid),
            addr: nid.to_string(),
        });
    }
}

/// The data objects of an erasure-coded VDI: each checked (`-e`: looked for) by a sheep
/// that reads every strip (CHECK_STRIPS), which rebuilds the missing and wrong ones.
async fn ec_objects(ctx: &mut Ctx, oids: &[Oid], total: u8, doc: &mut VdiCheck) {
    let exist = ctx.opts.exist_only;
    let json = ctx.opts.json;
    let ring = sd_cluster::placement::Ring::new(&ctx.nodes);
    let bar = Progress::objects(u64::try_from(oids.len()).unwrap_or(u64::MAX));
    for &oid in oids {
        bar.inc(1);
        let mut hdr = RequestHeader::new(Opcode::CheckStrips).with_obj(ObjArgs {
            oid,
            offset: u64::from(exist),
            ..ObjArgs::default()
        });
        hdr.data_length = 2 + 255;
        let answer = match ctx.conn().await {
            Some(c) => c.call(hdr, &[]).await,
            None => {
                doc.failed.push(oid_hex(oid));
                continue;
            }
        };
        let report = match answer {
            Ok((rsp, data)) if rsp.result == SdResult::Success => StripCheck::decode(&data).ok(),
            Ok((rsp, _)) => {
                bar.suspend(|| {
                    sd_err!("failed to check {:x}: {}", oid.get(), rsp.result.message())
                });
                None
            }
            Err(e) => {
                Ctx::report_transport(&e);
                None
            }
        };
        let Some(report) = report else {
            doc.failed.push(oid_hex(oid));
            continue;
        };
        let holders = ring.replicas(oid, usize::from(total));
        bar.suspend(|| {
            for (i, st) in report.strips.iter().enumerate() {
                let addr = holders
                    .get(i)
                    .map(|n| n.nid.to_string())
                    .unwrap_or_default();
                let copy = CheckedCopy {
                    oid: oid_hex(oid),
                    addr: addr.clone(),
                };
                match (st, exist) {
                    (StripStatus::Missing, true) => {
                        if !json {
                            ctx.put(&format!("[{addr}] oid {:016x} is missing.\n", oid.get()));
                        }
                        doc.missing.push(copy);
                    }
                    (StripStatus::Missing, false) if report.outcome == Outcome::Repaired => {
                        if !json {
                            ctx.put(&format!("fixed missing {:x}\n", oid.get()));
                        }
                        doc.fixed_missing.push(copy);
                    }
                    (StripStatus::Wrong, false) if report.outcome == Outcome::Repaired => {
                        if !json {
                            ctx.put(&format!("fixed replica {:x}\n", oid.get()));
                        }
                        doc.fixed_replicas.push(copy);
                    }
                    _ => {}
                }
            }
            match report.outcome {
                Outcome::Lost => {
                    sd_err!(
                        "object {:x} is lost: too few strips to decode it",
                        oid.get()
                    );
                    doc.lost.push(oid_hex(oid));
                }
                Outcome::Undecided if report.strips.contains(&StripStatus::Unknown) => {
                    doc.failed.push(oid_hex(oid));
                }
                Outcome::Undecided => {
                    sd_err!("no majority of {:x}", oid.get());
                    doc.no_majority.push(oid_hex(oid));
                }
                Outcome::Intact | Outcome::Repaired => {}
            }
        });
    }
    bar.finish();
}

/// The objects of a VDI: its inode, then every allocated data object (the oid names the
/// VDI the index entry points at).
fn vdi_objects(v: &ListedVdi) -> Vec<Oid> {
    let mut oids = vec![v.vid.inode_oid()];
    for idx in 0..count_data_objs(&v.hdr) {
        let entry = index_entry(&v.meta, idx);
        if let (true, Ok(idx)) = (entry != 0, u32::try_from(idx)) {
            oids.push(Vid::from_masked(entry).data_oid(idx));
        }
    }
    oids
}

/// Checks one VDI read by [`read_listed`] (with its index); prints unless `--json`.
async fn check_vdi(ctx: &mut Ctx, v: &ListedVdi) -> VdiCheck {
    let h = &v.hdr;
    let name = text(&h.name);
    let kind = if h.is_snapshot() {
        "snapshot"
    } else if h.snap_id == 1 && h.parent_vdi_id != 0 {
        "clone"
    } else {
        "working"
    };
    let exist = ctx.opts.exist_only;
    let mut doc = VdiCheck {
        name: name.clone(),
        vid: v.vid.get(),
        kind,
        snap_id: if h.is_snapshot() { h.snap_id } else { 0 },
        tag: text(&h.tag),
        mode: if exist { "exist" } else { "repair" },
        ..VdiCheck::default()
    };
    if h.store_policy != 0 {
        sd_err!("{name}: checking hyper volumes is not supported");
        doc.failed.push(oid_hex(v.vid.inode_oid()));
        return doc;
    }
    let mut oids = vdi_objects(v);
    doc.objects = u64::try_from(oids.len()).unwrap_or(u64::MAX);
    let json = ctx.opts.json;
    if h.copy_policy != 0 {
        // Erasure coded: the inode is replicated (below), the data objects are strips.
        let data = oids.split_off(1.min(oids.len()));
        ec_objects(ctx, &data, h.nr_copies, &mut doc).await;
    }
    if exist {
        exist_objects(ctx, &oids, h.nr_copies, &mut doc).await;
        if !json {
            if !doc.missing.is_empty() {
                ctx.put(&format!("{name} lost {} object(s).\n", doc.missing.len()));
            } else if doc.failed.is_empty() {
                ctx.put(&format!("{name} is fine, no object is missing.\n"));
            }
        }
    } else {
        repair_objects(ctx, oids, h.nr_copies, &mut doc).await;
        if !json {
            ctx.put(&format!("finish check&repair {name}\n"));
        }
    }
    doc.ok = doc.missing.is_empty()
        && doc.no_majority.is_empty()
        && doc.lost.is_empty()
        && doc.failed.is_empty();
    doc
}

/// `vdi check [-s SNAP] [-e] NAME`.
pub async fn vdi_check(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let (snapid, tag) = (ctx.opts.snapshot_id, ctx.opts.snapshot_tag.clone());
    let vid = match ctx.find_vdi(name, snapid, &tag).await {
        Ok(v) => v,
        Err(r) => {
            report_open_failure(name, snapid, &tag, r);
            return Ok(EXIT_FAILURE);
        }
    };
    let Some(v) = read_listed(ctx, vid, true).await else {
        sd_err!("Failed to read a vdi {}", text(name));
        return Ok(EXIT_FAILURE);
    };
    let doc = check_vdi(ctx, &v).await;
    if ctx.opts.json {
        ctx.put_json(&doc);
    }
    Ok(if doc.ok { EXIT_SUCCESS } else { EXIT_FAILURE })
}

/// `cluster check`: `vdi check` of every VDI and snapshot, ascending vid.
pub async fn cluster_check(ctx: &mut Ctx) -> CmdResult {
    let vids = match live_vids(ctx).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let json = ctx.opts.json;
    let mut all = ClusterCheck { vdis: Vec::new() };
    for vid in vids {
        let Some(v) = read_listed(ctx, vid, true).await else {
            continue;
        };
        if !json {
            let h = &v.hdr;
            let line = if h.is_snapshot() {
                format!(
                    "fix snapshot {} (id: {}, tag: \"{}\")\n",
                    text(&h.name),
                    h.snap_id,
                    text(&h.tag)
                )
            } else {
                format!("fix vdi {}\n", text(&h.name))
            };
            ctx.put(&line);
        }
        all.vdis.push(check_vdi(ctx, &v).await);
    }
    let ok = all.vdis.iter().all(|d| d.ok);
    if json {
        ctx.put_json(&all);
    }
    Ok(if ok { EXIT_SUCCESS } else { EXIT_FAILURE })
}
