//! Property tests of the vnode ring: distinct zones, order independence, bounded movement.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::collections::HashSet;

use proptest::prelude::*;
use sd_cluster::placement::Ring;
use sd_proto::Oid;
use sd_proto::node::{NodeId, SdNode};

fn node(i: u16, zone: u32) -> SdNode {
    SdNode {
        nid: NodeId::from_socket(
            format!("127.0.0.{}:{}", 1 + i / 100, 7000 + i)
                .parse()
                .unwrap(),
        ),
        nr_vnodes: 128,
        zone,
        ..SdNode::default()
    }
}

fn cluster() -> impl Strategy<Value = Vec<SdNode>> {
    (1usize..12, 1u32..6).prop_flat_map(|(n, zones)| {
        proptest::collection::vec(0..zones, n).prop_map(|zs| {
            zs.into_iter()
                .enumerate()
                .map(|(i, z)| node(i as u16, z))
                .collect()
        })
    })
}

proptest! {
    #[test]
    fn replicas_are_in_distinct_zones(nodes in cluster(), copies in 1usize..6, oids in proptest::collection::vec(any::<u64>(), 32)) {
        let ring = Ring::new(&nodes);
        for oid in oids {
            let r = ring.replicas(Oid::new(oid), copies);
            prop_assert_eq!(r.len(), copies.min(ring.nr_zones()));
            let zones: HashSet<u32> = r.iter().map(|n| n.zone).collect();
            prop_assert_eq!(zones.len(), r.len());
        }
    }

    #[test]
    fn placement_does_not_depend_on_member_order(nodes in cluster(), seed in any::<u64>()) {
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        shuffled.rotate_left((seed % nodes.len() as u64) as usize);
        let (a, b) = (Ring::new(&nodes), Ring::new(&shuffled));
        for k in 0..64u64 {
            let oid = Oid::new(seed.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            prop_assert_eq!(a.replicas(oid, 3), b.replicas(oid, 3));
        }
    }
}

/// When one node of N joins, only about 1/N of the primary copies move, and only to it.
#[test]
fn one_join_moves_about_one_nth() {
    for n in [4u16, 8, 16] {
        let before: Vec<SdNode> = (0..n).map(|i| node(i, u32::from(i))).collect();
        let mut after = before.clone();
        after.push(node(n, u32::from(n)));
        let (a, b) = (Ring::new(&before), Ring::new(&after));
        let total = 20_000u64;
        let mut moved = 0u64;
        for k in 0..total {
            let oid = Oid::new(0x0012_3400_0000_0000 | k);
            let (pa, pb) = (a.replicas(oid, 1)[0], b.replicas(oid, 1)[0]);
            if pa != pb {
                assert_eq!(
                    pb,
                    after[usize::from(n)],
                    "an object moved between old members"
                );
                moved += 1;
            }
        }
        let expected = total as f64 / f64::from(n + 1);
        let ratio = moved as f64 / expected;
        assert!(
            (0.7..1.3).contains(&ratio),
            "n={n}: moved {moved}, expected ~{expected:.0}"
        );
    }
}
