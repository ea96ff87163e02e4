//! Tests of the stripe layout, block alignment and split/join.

use proptest::prelude::*;

use super::*;

const MIB: u64 = 1 << 20;

fn geo(d: u32, p: u32, object_size: u64) -> Geometry {
    Geometry::new(Ec::new(d, p).unwrap(), object_size).unwrap()
}

/// Bytes that differ at every offset of a range (so misplaced copies show).
fn pattern(offset: u64, len: u64) -> Vec<u8> {
    (offset..offset + len)
        .map(|o| (o ^ (o >> 8) ^ (o >> 16)).to_le_bytes()[0])
        .collect()
}

#[test]
fn block_sizes() {
    // (D, unit, block strip bytes, block data bytes)
    for (d, unit, strip, data) in [
        (2, 256, 256, 512),
        (4, 128, 128, 512),
        (8, 64, 64, 512),
        (16, 32, 64, 1024),
    ] {
        let g = geo(d, 1, 4 * MIB);
        assert_eq!(g.unit(), unit, "D={d}");
        assert_eq!(g.block_strip_bytes(), strip, "D={d}");
        assert_eq!(g.block_data_bytes(), data, "D={d}");
        assert_eq!(g.strip_size(), 4 * MIB / u64::from(d));
        assert_eq!(g.block_strip_bytes() % CODEC_CHUNK, 0);
    }
}

#[test]
fn object_sizes() {
    let ec16 = Ec::new(16, 4).unwrap();
    for shift in 20..=31 {
        assert!(Geometry::new(ec16, 1 << shift).is_ok(), "shift {shift}");
    }
    assert!(Geometry::new(ec16, 1024).is_ok());
    for bad in [0, 512, 1536, 4 * MIB + 512] {
        assert_eq!(
            Geometry::new(ec16, bad),
            Err(EcError::BadObjectSize {
                object_size: bad,
                block: 1024
            })
        );
    }
    let ec2 = Ec::new(2, 1).unwrap();
    assert!(Geometry::new(ec2, 1536).is_ok());
}

/// D=2, u=256: the example pinned by hand.
#[test]
fn layout_pinned_d2() {
    let g = geo(2, 1, MIB);
    let range = g.range(0, 1024).unwrap();
    assert_eq!(
        range.strip_range(),
        StripRange {
            offset: 0,
            len: 512
        }
    );
    let data = pattern(0, 1024);
    let strips = g.split(range, &data).unwrap();
    assert_eq!(strips.len(), 2);
    assert_eq!(strips[0][0..256], data[0..256]);
    assert_eq!(strips[1][0..256], data[256..512]);
    assert_eq!(strips[0][256..512], data[512..768]);
    assert_eq!(strips[1][256..512], data[768..1024]);

    for (o, strip, off) in [
        (0, 0, 0),
        (255, 0, 255),
        (256, 1, 0),
        (511, 1, 255),
        (512, 0, 256),
    ] {
        assert_eq!(
            g.locate(o),
            Ok(StripPos { strip, offset: off }),
            "offset {o}"
        );
    }
    assert_eq!(
        g.locate(MIB - 1),
        Ok(StripPos {
            strip: 1,
            offset: MIB / 2 - 1
        })
    );
}

/// D=16, u=32: one block is two stripes, 64 bytes of each strip.
#[test]
fn layout_pinned_d16() {
    let g = geo(16, 4, MIB);
    let range = g.range(1024, 1024).unwrap();
    assert_eq!(
        range.strip_range(),
        StripRange {
            offset: 64,
            len: 64
        }
    );
    let data = pattern(1024, 1024);
    let strips = g.split(range, &data).unwrap();
    assert_eq!(strips.len(), 16);
    for (i, strip) in strips.iter().enumerate() {
        assert_eq!(strip.len(), 64);
        // First stripe (object 1024..1536), then second (1536..2048).
        assert_eq!(strip[..32], data[i * 32..i * 32 + 32], "strip {i}");
        assert_eq!(
            strip[32..],
            data[512 + i * 32..512 + i * 32 + 32],
            "strip {i}"
        );
    }
    assert_eq!(
        g.locate(32),
        Ok(StripPos {
            strip: 1,
            offset: 0
        })
    );
    assert_eq!(
        g.locate(512),
        Ok(StripPos {
            strip: 0,
            offset: 32
        })
    );
    assert_eq!(
        g.locate(1024 + 480 + 5),
        Ok(StripPos {
            strip: 15,
            offset: 69
        })
    );
}

#[test]
fn whole_object() {
    let g = geo(4, 2, 4 * MIB);
    let whole = g.whole();
    assert_eq!(
        (whole.offset(), whole.len(), whole.end()),
        (0, 4 * MIB, 4 * MIB)
    );
    assert!(!whole.is_empty());
    assert_eq!(
        whole.strip_range(),
        StripRange {
            offset: 0,
            len: MIB
        }
    );
    assert_eq!(g.range(0, 4 * MIB), Ok(whole));
}

#[test]
fn align_examples() {
    let g = geo(4, 2, MIB);
    let check = |offset, len, expect: (u64, u64)| {
        let r = g.align(offset, len).unwrap();
        assert_eq!((r.offset(), r.len()), expect, "align({offset}, {len})");
    };
    check(0, 1, (0, 512));
    check(100, 10, (0, 512));
    check(511, 2, (0, 1024));
    check(512, 512, (512, 512));
    check(513, 4096, (512, 4608));
    check(MIB - 1, 1, (MIB - 512, 512));
    check(0, MIB, (0, MIB));

    let g16 = geo(16, 15, MIB);
    let r = g16.align(1000, 100).unwrap();
    assert_eq!((r.offset(), r.len()), (0, 2048));
    assert_eq!(
        r.strip_range(),
        StripRange {
            offset: 0,
            len: 128
        }
    );
}

#[test]
fn range_errors() {
    let g = geo(4, 2, MIB);
    assert_eq!(g.align(5, 0), Err(EcError::EmptyRange { offset: 5 }));
    assert_eq!(g.range(512, 0), Err(EcError::EmptyRange { offset: 512 }));
    for (offset, len) in [
        (MIB, 1),
        (MIB - 1, 2),
        (0, MIB + 1),
        (u64::MAX, 1),
        (1, u64::MAX),
    ] {
        let err = Err(EcError::OutOfRange {
            offset,
            len,
            object_size: MIB,
        });
        assert_eq!(g.align(offset, len), err);
        assert_eq!(g.range(offset, len), err);
    }
    assert!(matches!(g.locate(MIB), Err(EcError::OutOfRange { .. })));
    for (offset, len) in [(1, 512), (0, 511), (512, 1000)] {
        assert_eq!(
            g.range(offset, len),
            Err(EcError::Misaligned {
                offset,
                len,
                block: 512
            })
        );
    }
}

#[test]
fn ranges_from_another_geometry_are_rechecked() {
    let g2 = geo(2, 1, 4 * MIB);
    let g16 = geo(16, 4, MIB);
    let data = vec![0u8; 512];
    // Aligned for D=2 (512-byte blocks), not for D=16 (1024-byte blocks).
    let r = g2.range(512, 512).unwrap();
    assert!(matches!(
        g16.split(r, &data),
        Err(EcError::Misaligned { .. })
    ));
    // Inside the 4 MiB object, outside the 1 MiB one.
    let r = g2.range(2 * MIB, 1024).unwrap();
    assert!(matches!(
        g16.split(r, &data),
        Err(EcError::OutOfRange { .. })
    ));
    // Aligned for both: the range is re-made for D=16, strip range and all.
    let r = g2.range(1024, 1024).unwrap();
    let strips = g16.split(r, &pattern(0, 1024)).unwrap();
    assert_eq!(strips.len(), 16);
    assert!(strips.iter().all(|s| s.len() == 64));
}

#[test]
fn split_join_bad_lengths() {
    let g = geo(4, 2, MIB);
    let r = g.range(0, 1024).unwrap();
    for len in [0, 1, 1023, 1025, 2048] {
        assert_eq!(
            g.split(r, &vec![0; len]),
            Err(EcError::BadLength {
                expected: 1024,
                got: len
            })
        );
    }
    let good = vec![vec![0u8; 256]; 4];
    assert!(g.join(r, &good).is_ok());
    for n in [0, 1, 3, 5] {
        assert_eq!(
            g.join(r, &vec![vec![0u8; 256]; n]),
            Err(EcError::WrongStripCount {
                expected: 4,
                got: n
            })
        );
    }
    let mut uneven = good.clone();
    uneven[2].pop();
    assert_eq!(
        g.join(r, &uneven),
        Err(EcError::BadLength {
            expected: 256,
            got: 255
        })
    );
    let empty: [&[u8]; 0] = [];
    assert!(g.join(r, &empty).is_err());
}

/// An EC code, an object made of 16 blocks of it, and an aligned range inside.
fn aligned_case() -> impl Strategy<Value = (Geometry, DataRange)> {
    (
        prop::sample::select(vec![2u32, 4, 8, 16]),
        0u64..16,
        1u64..=16,
    )
        .prop_map(|(d, a, n)| {
            let probe = geo(d, 1, MIB);
            let block = probe.block_data_bytes();
            let g = geo(d, 1, 16 * block);
            let start = a.min(15);
            let len = n.min(16 - start);
            (g, g.range(start * block, len * block).unwrap())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn split_join_round_trip((g, r) in aligned_case(), seed in any::<u64>()) {
        let data: Vec<u8> = pattern(r.offset() ^ seed, r.len());
        let strips = g.split(r, &data).unwrap();
        prop_assert_eq!(strips.len(), usize::from(g.ec().data()));
        let sr = r.strip_range();
        prop_assert_eq!(sr.offset * u64::from(g.ec().data()), r.offset());
        for s in &strips {
            prop_assert_eq!(s.len() as u64, sr.len);
        }
        // Every byte is where `locate` says.
        for (k, byte) in data.iter().enumerate() {
            let pos = g.locate(r.offset() + k as u64).unwrap();
            let at = usize::try_from(pos.offset - sr.offset).unwrap();
            prop_assert_eq!(strips[pos.strip][at], *byte);
        }
        prop_assert_eq!(g.join(r, &strips).unwrap(), data);
    }

    #[test]
    fn align_is_minimal_cover(
        d in prop::sample::select(vec![2u32, 4, 8, 16]),
        offset in 0u64..64 * 1024,
        len in 1u64..8 * 1024,
    ) {
        let g = geo(d, 2, 64 * 1024);
        let block = g.block_data_bytes();
        match g.align(offset, len) {
            Ok(r) => {
                prop_assert!(offset + len <= g.object_size());
                prop_assert!(r.offset() <= offset && offset - r.offset() < block);
                prop_assert!(r.end() >= offset + len && r.end() - (offset + len) < block);
                prop_assert_eq!(r.offset() % block, 0);
                prop_assert_eq!(r.len() % block, 0);
                prop_assert_eq!(g.range(r.offset(), r.len()), Ok(r));
            }
            Err(e) => {
                prop_assert!(offset + len > g.object_size());
                let is_out_of_range = matches!(e, EcError::OutOfRange { .. });
                prop_assert!(is_out_of_range);
            }
        }
    }
}

/// The write path end to end: a partial write re-encodes only the blocks it touches, and
/// the spliced strips equal a full re-encode of the new object; lost strips come back.
#[test]
fn partial_write_splices_into_full_encoding() {
    for (d, p) in [(2, 1), (4, 2), (8, 3), (16, 4)] {
        let g = geo(d, p, 64 * 1024);
        let mut object = pattern(0, g.object_size());
        let mut strips = g.split(g.whole(), &object).unwrap();
        strips.extend(g.encode(&strips).unwrap());

        // Overwrite 700 bytes at an odd offset.
        let (offset, len) = (g.block_data_bytes() * 3 + 100, 700);
        let range = g.align(offset, len).unwrap();
        let (lo, hi) = (
            usize::try_from(range.offset()).unwrap(),
            usize::try_from(range.end()).unwrap(),
        );
        let at = usize::try_from(offset).unwrap();
        object[at..at + 700].fill(0xA5);
        let sub = g.split(range, &object[lo..hi]).unwrap();
        let sub_parity = g.encode(&sub).unwrap();
        let sr = range.strip_range();
        let (a, b) = (
            usize::try_from(sr.offset).unwrap(),
            usize::try_from(sr.end()).unwrap(),
        );
        for (strip, new) in strips.iter_mut().zip(sub.iter().chain(&sub_parity)) {
            strip[a..b].copy_from_slice(new);
        }

        let mut fresh = g.split(g.whole(), &object).unwrap();
        fresh.extend(g.encode(&fresh).unwrap());
        assert_eq!(strips, fresh, "{d}:{p}");

        // Lose P strips (the first P data strips where possible), rebuild, read back.
        let mut degraded: Vec<Option<Vec<u8>>> = strips.into_iter().map(Some).collect();
        for slot in degraded.iter_mut().take(usize::try_from(p).unwrap()) {
            *slot = None;
        }
        g.reconstruct(&mut degraded).unwrap();
        let all: Vec<Vec<u8>> = degraded.into_iter().map(Option::unwrap).collect();
        assert_eq!(all, fresh, "{d}:{p}");
        let data_strips = &all[..usize::try_from(d).unwrap()];
        assert_eq!(g.join(g.whole(), data_strips).unwrap(), object, "{d}:{p}");
    }
}
