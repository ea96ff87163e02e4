//! The VDI record codec (`ClusterMsg`): golden bytes of every kind, records of older
//! layouts, proptest round trips and untrusted bytes.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use proptest::prelude::*;
use sd_cluster::{ClusterMsg, MsgDecodeError};
use sd_proto::Vid;
use sd_proto::inode::SD_MAX_VDI_LEN;

/// Bytes from whitespace-separated hex.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn vid(v: u32) -> Vid {
    Vid::new(v).unwrap()
}

/// Every kind in the layout the previous binaries wrote: these bytes sit in ZooKeeper
/// queues and local log files, so they must decode, and today's encoder must produce them.
#[test]
fn golden_bytes_of_every_kind() {
    let cases = [
        (
            "fresh create",
            ClusterMsg::NewVdi {
                token: 7,
                name: b"vm1".to_vec(),
                size: 1 << 30,
                copies: 3,
                shift: 22,
                copy_policy: 0,
                base: None,
                snapshot_of: None,
                tag: Vec::new(),
            },
            "04  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  03  16
             00 00 00 00  00 00 00 00  03 00  76 6d 31",
        ),
        (
            "snapshot or clone: base, snapshot_of and tag",
            ClusterMsg::NewVdi {
                token: 7,
                name: b"vm1".to_vec(),
                size: 1 << 30,
                copies: 3,
                shift: 22,
                copy_policy: 0,
                base: Some(vid(0x0a_0b0c)),
                snapshot_of: Some(vid(0x01_0203)),
                tag: b"t1".to_vec(),
            },
            "04  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  03  16
             0c 0b 0a 00  03 02 01 00  03 00  76 6d 31  74 31",
        ),
        (
            "an erasure-coded create (4:2): kind 8, the policy after the shift",
            ClusterMsg::NewVdi {
                token: 7,
                name: b"vm1".to_vec(),
                size: 1 << 30,
                copies: 6,
                shift: 22,
                copy_policy: 0x22,
                base: None,
                snapshot_of: None,
                tag: Vec::new(),
            },
            "08  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  06  16  22
             00 00 00 00  00 00 00 00  03 00  76 6d 31",
        ),
        (
            "delete",
            ClusterMsg::DelVdi {
                token: 1,
                vid: vid(0x7c_2b25),
            },
            "02  01 00 00 00 00 00 00 00  25 2b 7c 00",
        ),
        (
            "barrier",
            ClusterMsg::Barrier {
                token: 0x0102_0304_0506_0708,
            },
            "03  08 07 06 05 04 03 02 01",
        ),
        (
            "settled",
            ClusterMsg::Settled {
                token: 2,
                vid: vid(0x7c_2b25),
            },
            "05  02 00 00 00 00 00 00 00  25 2b 7c 00",
        ),
        (
            "lock",
            ClusterMsg::Lock {
                token: 3,
                vid: vid(0x7c_2b25),
                holder: 9,
            },
            "06  03 00 00 00 00 00 00 00  25 2b 7c 00  09 00 00 00 00 00 00 00",
        ),
        (
            "forced unlock",
            ClusterMsg::Unlock {
                token: 4,
                vid: vid(0x7c_2b25),
                holder: 0,
            },
            "07  04 00 00 00 00 00 00 00  25 2b 7c 00  00 00 00 00 00 00 00 00",
        ),
        (
            "cluster default copies",
            ClusterMsg::AlterClusterCopy {
                token: 5,
                copies: 2,
            },
            "09  05 00 00 00 00 00 00 00  02",
        ),
        (
            "a VDI's copies",
            ClusterMsg::AlterVdiCopy {
                token: 6,
                vid: vid(0x7c_2b25),
                copies: 3,
            },
            "0a  06 00 00 00 00 00 00 00  25 2b 7c 00  03",
        ),
    ];
    for (what, msg, bytes) in cases {
        let bytes = hex(bytes);
        assert_eq!(msg.encode(), bytes, "{what}: encoding");
        assert_eq!(ClusterMsg::decode(&bytes), Ok(msg), "{what}: decoding");
    }
}

#[test]
fn records_of_the_first_format_still_decode() {
    // kind 1: token, size, copies, shift, name (before snapshots existed).
    let mut b = vec![1];
    b.extend_from_slice(&7u64.to_le_bytes());
    b.extend_from_slice(&(1u64 << 30).to_le_bytes());
    b.extend_from_slice(&[3, 22]);
    b.extend_from_slice(b"vm1");
    let first = ClusterMsg::NewVdi {
        token: 7,
        name: b"vm1".to_vec(),
        size: 1 << 30,
        copies: 3,
        shift: 22,
        copy_policy: 0,
        base: None,
        snapshot_of: None,
        tag: Vec::new(),
    };
    assert_eq!(ClusterMsg::decode(&b), Ok(first.clone()));
    assert_eq!(
        b,
        hex("01  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  03  16  76 6d 31")
    );
    // It is written again in the current layout, never in the first.
    assert_eq!(first.encode()[0], 4);
}

#[test]
fn bytes_that_are_not_records_say_why() {
    let cases: [(&str, Vec<u8>, MsgDecodeError); 16] = [
        ("empty", vec![], MsgDecodeError::Truncated),
        (
            "kind 0",
            hex("00  01 00 00 00 00 00 00 00"),
            MsgDecodeError::UnknownKind(0),
        ),
        (
            "kind 11 (newer binary)",
            hex("0b  01 00 00 00 00 00 00 00"),
            MsgDecodeError::UnknownKind(11),
        ),
        (
            "cluster copies without the count",
            hex("09  01 00 00 00 00 00 00 00"),
            MsgDecodeError::Truncated,
        ),
        (
            "VDI copies without the count",
            hex("0a  01 00 00 00 00 00 00 00  25 2b 7c 00"),
            MsgDecodeError::Truncated,
        ),
        (
            "VDI copies of a vid over 24 bits",
            hex("0a  01 00 00 00 00 00 00 00  00 00 00 01  03"),
            MsgDecodeError::BadField("vid"),
        ),
        (
            "erasure-coded create without its policy",
            hex("08  01 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  06  16"),
            MsgDecodeError::Truncated,
        ),
        ("kind 255", vec![255], MsgDecodeError::UnknownKind(255)),
        ("token cut", hex("03  01 02 03"), MsgDecodeError::Truncated),
        (
            "delete without vid",
            hex("02  01 00 00 00 00 00 00 00  25 2b"),
            MsgDecodeError::Truncated,
        ),
        (
            "vid over 24 bits",
            hex("02  01 00 00 00 00 00 00 00  00 00 00 01"),
            MsgDecodeError::BadField("vid"),
        ),
        (
            "lock without holder",
            hex("06  01 00 00 00 00 00 00 00  25 2b 7c 00  09"),
            MsgDecodeError::Truncated,
        ),
        (
            "first layout, empty name",
            hex("01  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  03  16"),
            MsgDecodeError::BadField("name"),
        ),
        (
            "base over 24 bits",
            hex(
                "04  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  03  16
                 00 00 00 01  00 00 00 00  03 00  76 6d 31",
            ),
            MsgDecodeError::BadField("base"),
        ),
        (
            "name longer than the record",
            hex(
                "04  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  03  16
                 00 00 00 00  00 00 00 00  04 00  76 6d 31",
            ),
            MsgDecodeError::Truncated,
        ),
        (
            "tag of 256 bytes",
            [
                hex(
                    "04  07 00 00 00 00 00 00 00  00 00 00 40 00 00 00 00  03  16
                     00 00 00 00  00 00 00 00  03 00  76 6d 31",
                ),
                vec![b't'; SD_MAX_VDI_LEN],
            ]
            .concat(),
            MsgDecodeError::BadField("tag"),
        ),
    ];
    for (what, bytes, err) in cases {
        assert_eq!(ClusterMsg::decode(&bytes), Err(err), "{what}");
    }
}

#[test]
fn long_names_and_tags_are_cut_to_255_bytes() {
    let m = ClusterMsg::NewVdi {
        token: 1,
        name: vec![b'n'; 300],
        size: 0,
        copies: 1,
        shift: 22,
        copy_policy: 0,
        base: None,
        snapshot_of: None,
        tag: vec![b't'; 300],
    };
    let ClusterMsg::NewVdi { name, tag, .. } = ClusterMsg::decode(&m.encode()).unwrap() else {
        panic!("not a create");
    };
    assert_eq!((name.len(), tag.len()), (255, 255));
}

fn any_vid() -> impl Strategy<Value = Vid> {
    (0u32..(1 << 24)).prop_map(Vid::from_masked)
}

fn opt_vid() -> impl Strategy<Value = Option<Vid>> {
    (0u32..(1 << 24)).prop_map(Vid::nonzero)
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 1..SD_MAX_VDI_LEN)
}

fn msg() -> impl Strategy<Value = ClusterMsg> {
    prop_oneof![
        (
            any::<u64>(),
            name(),
            any::<u64>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            opt_vid(),
            opt_vid(),
            proptest::collection::vec(any::<u8>(), 0..SD_MAX_VDI_LEN)
        )
            .prop_map(
                |(token, name, size, copies, shift, copy_policy, base, snapshot_of, tag)| {
                    ClusterMsg::NewVdi {
                        token,
                        name,
                        size,
                        copies,
                        shift,
                        copy_policy,
                        base,
                        snapshot_of,
                        tag,
                    }
                }
            ),
        (any::<u64>(), any_vid()).prop_map(|(token, vid)| ClusterMsg::DelVdi { token, vid }),
        (any::<u64>(), any_vid()).prop_map(|(token, vid)| ClusterMsg::Settled { token, vid }),
        (any::<u64>(), any_vid(), any::<u64>()).prop_map(|(token, vid, holder)| ClusterMsg::Lock {
            token,
            vid,
            holder
        }),
        (any::<u64>(), any_vid(), any::<u64>())
            .prop_map(|(token, vid, holder)| ClusterMsg::Unlock { token, vid, holder }),
        any::<u64>().prop_map(|token| ClusterMsg::Barrier { token }),
        (any::<u64>(), any::<u8>())
            .prop_map(|(token, copies)| ClusterMsg::AlterClusterCopy { token, copies }),
        (any::<u64>(), any_vid(), any::<u8>())
            .prop_map(|(token, vid, copies)| ClusterMsg::AlterVdiCopy { token, vid, copies }),
    ]
}

proptest! {
    #[test]
    fn messages_round_trip(m in msg()) {
        prop_assert_eq!(ClusterMsg::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn untrusted_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = ClusterMsg::decode(&b) {
            // Whatever decodes re-encodes to something that decodes the same.
            prop_assert_eq!(ClusterMsg::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn records_with_a_known_kind_byte_never_panic(
        kind in 1u8..=10,
        b in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let b = [&[kind][..], &b].concat();
        if let Ok(m) = ClusterMsg::decode(&b) {
            prop_assert_eq!(ClusterMsg::decode(&m.encode()), Ok(m));
        }
    }
}
