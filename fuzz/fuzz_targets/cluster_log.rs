//! Fuzz target: the membership log's `Record::decode` (sd-cluster) on arbitrary bytes, and
//! the fold of whatever decodes. The input is a sequence of records, each behind a 2-byte
//! little-endian length. Checks that decoding never panics, that decoded records survive
//! encode → decode, and that `Membership::apply` keeps its invariants on any record
//! sequence (the log is written by every member and read back from disk). The payload of
//! each notification is decoded as a VDI operation (`ClusterMsg`), which must survive
//! encode → decode too, and folded into a `VdiTable` as every member does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sd_cluster::log::{LogEntry, Record};
use sd_cluster::{ClusterMsg, Membership, VdiTable, vdi_fold};

fuzz_target!(|data: &[u8]| {
    let mut fold = Membership::default();
    let mut vdis = VdiTable::default();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let Ok(rec) = Record::decode(bytes) else {
            continue;
        };
        assert_eq!(Record::decode(&rec.encode()).as_ref(), Ok(&rec));
        let _ = fold.apply(&rec);
        check(&fold);
        if let LogEntry::Notify { from, msg } = &rec.entry
            && let Ok(m) = ClusterMsg::decode(msg)
        {
            assert_eq!(ClusterMsg::decode(&m.encode()).as_ref(), Ok(&m));
            let _ = vdi_fold::apply(&mut vdis, &m, *from, rec.time);
        }
    }
});

/// Invariants of the fold after any record.
fn check(m: &Membership) {
    let members = m.members();
    assert!(
        members.windows(2).all(|w| w[0].nid < w[1].nid),
        "members sorted and unique"
    );
    match m.history().last() {
        Some(last) => assert_eq!(last.epoch, m.epoch(), "history ends at the epoch"),
        None => assert_eq!(m.epoch().get(), 0, "no history before the first epoch"),
    }
    for nid in m.waiting_for() {
        assert!(!m.is_member(&nid));
    }
}
