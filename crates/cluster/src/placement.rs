//! Object placement: Sheepdog's vnode ring (spec §11.3). Pure; sheep and dog share it.
//!
//! Every node with vnodes contributes `nr_vnodes` points: the chain `sd_hash_next` starting at
//! `sd_hash(addr ‖ port)`. An object's first replica is the node owning the first point at or
//! after `sd_hash_oid(oid)` (wrapping); further replicas walk the ring clockwise, skipping
//! points whose node's zone already holds a replica.

use sd_proto::Oid;
use sd_proto::hash::{sd_hash_next, sd_hash_oid};
use sd_proto::node::SdNode;

/// The vnode ring of one membership view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// Members (sorted by address), including gateway-only nodes.
    nodes: Vec<SdNode>,
    /// (point, index into `nodes`), sorted by point then node.
    points: Vec<(u64, usize)>,
    /// Distinct zones among nodes with vnodes.
    nr_zones: usize,
}

impl Ring {
    /// Builds the ring of `nodes` (any order; the ring sorts them as Sheepdog does).
    pub fn new(nodes: &[SdNode]) -> Ring {
        let mut nodes = nodes.to_vec();
        nodes.sort_by_key(|n| n.nid);
        nodes.dedup_by(|a, b| a.nid == b.nid);
        let mut points = Vec::with_capacity(nodes.iter().map(|n| usize::from(n.nr_vnodes)).sum());
        for (i, n) in nodes.iter().enumerate() {
            let mut h = n.nid.vnode_seed();
            for _ in 0..n.nr_vnodes {
                h = sd_hash_next(h);
                points.push((h, i));
            }
        }
        points.sort_unstable();
        let mut zones: Vec<u32> = nodes
            .iter()
            .filter(|n| n.nr_vnodes > 0)
            .map(|n| n.zone)
            .collect();
        zones.sort_unstable();
        zones.dedup();
        Ring {
            nodes,
            points,
            nr_zones: zones.len(),
        }
    }

    /// The members, sorted by address.
    pub fn nodes(&self) -> &[SdNode] {
        &self.nodes
    }

    /// Number of distinct zones that hold data.
    pub fn nr_zones(&self) -> usize {
        self.nr_zones
    }

    /// The nodes holding `oid` with `copies` replicas, primary first:
    /// `min(copies, zones)` nodes in distinct zones. Empty when no node has vnodes.
    pub fn replicas(&self, oid: Oid, copies: usize) -> Vec<SdNode> {
        let want = copies.min(self.nr_zones);
        let mut out: Vec<SdNode> = Vec::with_capacity(want);
        if want == 0 || self.points.is_empty() {
            return out;
        }
        let key = sd_hash_oid(oid);
        let start = self.points.partition_point(|(p, _)| *p < key);
        let n = self.points.len();
        for k in 0..n {
            if out.len() == want {
                break;
            }
            let Some(&(_, i)) = self.points.get((start + k) % n) else {
                break;
            };
            let Some(node) = self.nodes.get(i) else { break };
            if out.iter().all(|c| c.zone != node.zone) {
                out.push(*node);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sd_proto::node::NodeId;

    fn node(port: u16, zone: u32) -> SdNode {
        SdNode {
            nid: NodeId::from_socket(format!("127.0.0.1:{port}").parse().unwrap()),
            nr_vnodes: 128,
            zone,
            ..SdNode::default()
        }
    }

    #[test]
    fn matches_sheepdog_on_the_sample_cluster() {
        // shared/spec/dog-output-samples.txt: 3 sheep on 7000-7002 in zones 0,1,2, copies=2,
        // "the object should be located at: 127.0.0.1:7001 127.0.0.1:7000".
        let ring = Ring::new(&[node(7000, 0), node(7001, 1), node(7002, 2)]);
        let r = ring.replicas(Oid::new(0x007c_2b25_0000_0000), 2);
        let ports: Vec<u16> = r.iter().map(|n| n.nid.port).collect();
        assert_eq!(ports, vec![7001, 7000]);
        // After 7001 died: "127.0.0.1:7000 127.0.0.1:7002".
        let ring = Ring::new(&[node(7000, 0), node(7002, 2)]);
        let ports: Vec<u16> = ring
            .replicas(Oid::new(0x007c_2b25_0000_0000), 2)
            .iter()
            .map(|n| n.nid.port)
            .collect();
        assert_eq!(ports, vec![7000, 7002]);
    }

    #[test]
    fn copies_are_capped_by_zones_and_gateways_hold_nothing() {
        let mut gw = node(7003, 9);
        gw.nr_vnodes = 0;
        let ring = Ring::new(&[node(7000, 1), node(7001, 1), gw]);
        assert_eq!(ring.nr_zones(), 1);
        let r = ring.replicas(Oid::new(42), 3);
        assert_eq!(r.len(), 1);
        assert_ne!(r[0].nid.port, 7003);
        assert!(Ring::new(&[gw]).replicas(Oid::new(1), 3).is_empty());
    }
}
