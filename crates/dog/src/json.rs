//! The `--json` documents (sheepdog-rs extension): one typed struct per command, so the
//! field names are fixed here and nowhere else. They are an interface: docs/json-output.md
//! documents every field, and a field is only ever added, never renamed or retyped.
//!
//! Conventions: snake_case names; sizes in bytes (`*_bytes`); times as Unix seconds plus an
//! RFC 3339 UTC string (`*_rfc3339`); vids as numbers; object ids as 16 lowercase hex digits
//! (a 64-bit oid does not fit a JSON double); node addresses as `addr` ("ip:port", IPv6
//! without brackets, as the text output prints them) with `ip` and `port` beside it.

use chrono::{SecondsFormat, TimeZone, Utc};
use sd_proto::SdResult;
use sd_proto::node::SdNode;
use serde::Serialize;

/// RFC 3339 in UTC (`2026-11-24T23:51:00Z`); empty when out of range.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// An object id as 16 lowercase hex digits.
pub fn oid_hex(oid: sd_proto::Oid) -> String {
    format!("{:016x}", oid.get())
}

/// A node's address fields.
#[derive(Debug, Clone, Serialize)]
pub struct Addr {
    /// `ip:port`.
    pub addr: String,
    /// The IP address.
    pub ip: String,
    /// The port.
    pub port: u16,
}

impl Addr {
    /// The address of `node`.
    pub fn of(node: &SdNode) -> Addr {
        let sa = node.nid.socket_addr();
        Addr {
            addr: node.nid.to_string(),
            ip: sa.ip().to_string(),
            port: sa.port(),
        }
    }
}

/// `vdi list --json`.
#[derive(Debug, Serialize)]
pub struct VdiList {
    /// The listed VDIs, ascending vid.
    pub vdis: Vec<Vdi>,
}

/// One VDI of `vdi list`.
#[derive(Debug, Serialize)]
pub struct Vdi {
    /// Name.
    pub name: String,
    /// VDI id.
    pub vid: u32,
    /// `working`, `snapshot` or `clone`.
    pub kind: &'static str,
    /// Snapshot id (0 for a working VDI or clone).
    pub snap_id: u32,
    /// Snapshot tag ("" if none).
    pub tag: String,
    /// Virtual size.
    pub size_bytes: u64,
    /// Bytes in objects this VDI owns.
    pub used_bytes: u64,
    /// Bytes in objects shared with ancestors.
    pub shared_bytes: u64,
    /// Creation time, Unix seconds.
    pub ctime: u64,
    /// Creation time, RFC 3339 UTC.
    pub ctime_rfc3339: String,
    /// Number of copies (data + parity strips for erasure coding).
    pub copies: u8,
    /// `"3"` or `"4:2"` (data:parity), as the text output's Copies column.
    pub redundancy: String,
    /// Object size is `1 << block_size_shift`.
    pub block_size_shift: u8,
    /// Parent VDI id (0: none).
    pub parent_vid: u32,
}

/// `vdi tree --json`.
#[derive(Debug, Serialize)]
pub struct VdiTree {
    /// One tree per root VDI, as the text drawing's lines.
    pub trees: Vec<TreeNode>,
}

/// A VDI in `vdi tree` and the VDIs hanging under it.
#[derive(Debug, Serialize)]
pub struct TreeNode {
    /// Name.
    pub name: String,
    /// VDI id.
    pub vid: u32,
    /// Parent VDI id (0: none).
    pub parent_vid: u32,
    /// A snapshot (false: the working VDI, "you are here").
    pub snapshot: bool,
    /// Creation time, Unix seconds.
    pub ctime: u64,
    /// Creation time, RFC 3339 UTC.
    pub ctime_rfc3339: String,
    /// Children: VDIs of the same name whose parent this is.
    pub children: Vec<TreeNode>,
}

/// `vdi lock list --json`.
#[derive(Debug, Serialize)]
pub struct LockList {
    /// Locked VDIs.
    pub locks: Vec<Lock>,
}

/// One locked VDI.
#[derive(Debug, Serialize)]
pub struct Lock {
    /// Name.
    pub name: String,
    /// VDI id.
    pub vid: u32,
    /// The gateway holding the lock: `ip:port`.
    pub owner_addr: String,
    /// Its IP address.
    pub owner_ip: String,
    /// Its port.
    pub owner_port: u16,
}

/// `vdi object map --json`.
#[derive(Debug, Serialize)]
pub struct ObjectMap {
    /// The VDI's id.
    pub vid: u32,
    /// Allocated data objects, ascending index.
    pub objects: Vec<MappedObject>,
}

/// One allocated index of `vdi object map`.
#[derive(Debug, Serialize)]
pub struct MappedObject {
    /// Data object index.
    pub index: u64,
    /// The VDI owning the object (this VDI or an ancestor).
    pub vid: u32,
    /// The object id.
    pub oid: String,
}

/// `vdi object location --json`.
#[derive(Debug, Serialize)]
pub struct ObjectLocation {
    /// The VDI's id.
    pub vid: u32,
    /// Data object index (`null`: the inode object).
    pub index: Option<u64>,
    /// The object is allocated (false only for an unallocated `-i` index).
    pub allocated: bool,
    /// The object id (`null` when not allocated).
    pub oid: Option<String>,
    /// The VDI's copies.
    pub copies: u8,
    /// Every node, and whether it has the object.
    pub nodes: Vec<NodeHas>,
    /// Where the vnode ring places the object (`addr`s, in placement order).
    pub placement: Vec<String>,
}

/// One node's answer in `vdi object location`.
#[derive(Debug, Serialize)]
pub struct NodeHas {
    /// Address.
    #[serde(flatten)]
    pub addr: Addr,
    /// The node has the object.
    pub has_object: bool,
}

/// `vdi track --json`.
#[derive(Debug, Serialize)]
pub struct Track {
    /// The tracked object.
    pub oid: String,
    /// The VDI's id.
    pub vid: u32,
    /// Data object index (`null`: the inode object, or an oid given with `-o`).
    pub index: Option<u64>,
    /// The VDI's copies.
    pub copies: u8,
    /// Placement per epoch, newest first.
    pub epochs: Vec<TrackEpoch>,
}

/// The placement of an object at one epoch.
#[derive(Debug, Serialize)]
pub struct TrackEpoch {
    /// Epoch.
    pub epoch: u32,
    /// Replica `addr`s in placement order (every member when members < copies).
    pub locations: Vec<String>,
}

/// `node list --json`.
#[derive(Debug, Serialize)]
pub struct NodeList {
    /// Members, sorted by address then port (`id` is the position).
    pub nodes: Vec<Node>,
}

/// One member of `node list`.
#[derive(Debug, Serialize)]
pub struct Node {
    /// Position in the list (`dog node kill ID`).
    pub id: usize,
    /// Address.
    #[serde(flatten)]
    pub addr: Addr,
    /// Virtual nodes.
    pub vnodes: u16,
    /// Zone.
    pub zone: u32,
}

impl Node {
    /// The member at position `id`.
    pub fn of(id: usize, n: &SdNode) -> Node {
        Node {
            id,
            addr: Addr::of(n),
            vnodes: n.nr_vnodes,
            zone: n.zone,
        }
    }
}

/// `node info --json`.
#[derive(Debug, Serialize)]
pub struct NodeInfo {
    /// Nodes that answered STAT_SHEEP.
    pub nodes: Vec<NodeSpace>,
    /// Sums over `nodes`.
    pub total: Space,
    /// Sum of the sizes of working VDIs (the text's "Total virtual image size").
    pub vdi_size_bytes: u64,
}

/// One node's store space.
#[derive(Debug, Serialize)]
pub struct NodeSpace {
    /// Position in `node list`.
    pub id: usize,
    /// Address.
    #[serde(flatten)]
    pub addr: Addr,
    /// Space.
    #[serde(flatten)]
    pub space: Space,
}

/// Store space.
#[derive(Debug, Serialize)]
pub struct Space {
    /// Capacity.
    pub size_bytes: u64,
    /// Used.
    pub used_bytes: u64,
    /// Free.
    pub avail_bytes: u64,
    /// Integer percentage used (truncated; 0 when the size is 0).
    pub use_percent: u64,
}

impl Space {
    /// The space of a store of `size` bytes with `free` free.
    pub fn new(size: u64, free: u64) -> Space {
        Space {
            size_bytes: size,
            used_bytes: size.saturating_sub(free),
            avail_bytes: free,
            use_percent: crate::format::percent_used(size, free),
        }
    }
}

/// `node recovery --json`.
#[derive(Debug, Serialize)]
pub struct Recovery {
    /// The epoch the node list was taken at.
    pub epoch: u32,
    /// Every node that answered STAT_RECOVERY (the text lists only those recovering).
    pub nodes: Vec<NodeRecovery>,
}

/// One node's recovery state.
#[derive(Debug, Serialize)]
pub struct NodeRecovery {
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// The node is recovering an epoch.
    pub in_recovery: bool,
    /// Objects recovered so far.
    pub objects_done: u64,
    /// Objects to recover in this epoch.
    pub objects_total: u64,
    /// `objects_done / objects_total` in percent (0 when the total is 0).
    pub progress_percent: f64,
}

/// `cluster info --json`.
#[derive(Debug, Serialize)]
pub struct ClusterInfo {
    /// `running`, `waiting_for_format`, `waiting_for_join`, `shutdown`, `killed` or
    /// `error`.
    pub status: &'static str,
    /// The text output's status (e.g. "running, auto-recovery enabled").
    pub status_message: String,
    /// The STAT_CLUSTER result code.
    pub result_code: u32,
    /// Automatic recovery is on (`null` before format).
    pub auto_recovery: Option<bool>,
    /// Format time, Unix seconds (`null` before format).
    pub created: Option<u64>,
    /// Format time, RFC 3339 UTC (`null` before format).
    pub created_rfc3339: Option<String>,
    /// The newest epoch (0 before format).
    pub epoch: u32,
    /// Store driver (`null` before format).
    pub store: Option<String>,
    /// Default copies (`null` before format).
    pub copies: Option<u8>,
    /// Default redundancy, `"3"` or `"4:2"` (`null` before format).
    pub redundancy: Option<String>,
    /// `auto` or `fixed` (`null` before format).
    pub vnodes_strategy: Option<&'static str>,
    /// `node` or `disk` (`null` before format).
    pub vnode_mode: Option<&'static str>,
    /// Epochs, newest first.
    pub epochs: Vec<ClusterEpoch>,
    /// While the cluster waits for nodes to join: the members of the newest epoch not in
    /// the cluster now (empty otherwise).
    pub waiting_for: Vec<Addr>,
}

/// One epoch of `cluster info`.
#[derive(Debug, Serialize)]
pub struct ClusterEpoch {
    /// Epoch.
    pub epoch: u32,
    /// When it began, Unix seconds.
    pub time: u64,
    /// When it began, RFC 3339 UTC.
    pub time_rfc3339: String,
    /// Its members.
    pub nodes: Vec<EpochMember>,
}

/// A member of an epoch.
#[derive(Debug, Serialize)]
pub struct EpochMember {
    /// Address.
    #[serde(flatten)]
    pub addr: Addr,
    /// Virtual nodes.
    pub vnodes: u16,
    /// Zone.
    pub zone: u32,
}

/// `vdi check --json`: what the check found and did to one VDI.
#[derive(Debug, Default, Serialize)]
pub struct VdiCheck {
    /// Name.
    pub name: String,
    /// VDI id.
    pub vid: u32,
    /// `working`, `snapshot` or `clone`.
    pub kind: &'static str,
    /// Snapshot id (0 for a working VDI or clone).
    pub snap_id: u32,
    /// Snapshot tag ("" if none).
    pub tag: String,
    /// `repair` (hashes compared, copies repaired) or `exist` (`-e`: existence only).
    pub mode: &'static str,
    /// Objects checked: the inode and every allocated data object.
    pub objects: u64,
    /// Copies whose bytes differed from the majority's and were replaced.
    pub fixed_replicas: Vec<CheckedCopy>,
    /// Copies that were missing and were recreated.
    pub fixed_missing: Vec<CheckedCopy>,
    /// `-e`: copies that are missing (nothing is repaired).
    pub missing: Vec<CheckedCopy>,
    /// Objects whose copies differ with no majority (left as they are).
    pub no_majority: Vec<String>,
    /// Objects no replica holds.
    pub lost: Vec<String>,
    /// Objects that could not be checked or repaired completely (a node did not answer,
    /// or a repair failed).
    pub failed: Vec<String>,
    /// Nothing is wrong any more: every copy exists and matches (exit code 0).
    pub ok: bool,
}

/// One copy of an object on one node.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedCopy {
    /// The object.
    pub oid: String,
    /// The node holding (or missing) the copy, `ip:port`.
    pub addr: String,
}

/// `cluster check --json`.
#[derive(Debug, Serialize)]
pub struct ClusterCheck {
    /// Every VDI and snapshot, ascending vid.
    pub vdis: Vec<VdiCheck>,
}

/// The machine-readable name of a cluster status.
pub fn status_name(r: SdResult) -> &'static str {
    match r {
        SdResult::Success => "running",
        SdResult::WaitForFormat => "waiting_for_format",
        SdResult::WaitForJoin => "waiting_for_join",
        SdResult::Shutdown => "shutdown",
        SdResult::Killed => "killed",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sd_proto::node::NodeId;

    #[test]
    fn conventions() {
        assert_eq!(rfc3339(1_795_564_260), "2026-11-24T23:51:00Z");
        assert_eq!(rfc3339(u64::MAX), "");
        assert_eq!(
            oid_hex(sd_proto::Oid::new(0x007c_2b25_0000_0002)),
            "007c2b2500000002"
        );
        let n = SdNode {
            nid: NodeId::from_socket("127.0.0.1:7001".parse().unwrap()),
            nr_vnodes: 128,
            zone: 1,
            ..SdNode::default()
        };
        assert_eq!(
            serde_json::to_string(&Node::of(2, &n)).unwrap(),
            r#"{"id":2,"addr":"127.0.0.1:7001","ip":"127.0.0.1","port":7001,"vnodes":128,"zone":1}"#
        );
        assert_eq!(
            serde_json::to_string(&Space::new(100, 25)).unwrap(),
            r#"{"size_bytes":100,"used_bytes":75,"avail_bytes":25,"use_percent":75}"#
        );
    }
}
