//! Deterministic test data: the byte at any absolute offset is a pure function of
//! `(seed, offset)`, so any sub-range of a written region can be recomputed on its own.

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `len` pseudo-random bytes for the range starting at absolute `offset`: byte `o` is byte
/// `o % 8` of `mix(seed ^ mix(o / 8))`. Different seeds give unrelated data, so a seed per
/// object and generation tells the generations apart.
pub fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut pos = offset;
    while out.len() < len {
        let word = mix(seed ^ mix(pos / 8)).to_le_bytes();
        let skip = usize::try_from(pos % 8).unwrap_or(0);
        let take = (8 - skip).min(len - out.len());
        out.extend(word.iter().skip(skip).take(take));
        pos += take as u64;
    }
    out
}

/// A fresh random seed, printed so a failing run can be reproduced.
pub fn random_seed() -> u64 {
    let seed = rand::random::<u64>();
    eprintln!("pattern seed: {seed:#018x}");
    seed
}

/// Panics with the first differing offset, the lengths and a few bytes around the
/// difference when `actual != expected`. Much shorter than `assert_eq!` on megabytes.
#[track_caller]
pub fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let window = |b: &[u8]| -> Vec<u8> { b.iter().skip(first).take(16).copied().collect() };
    panic!(
        "{what}: bytes differ (actual {} bytes, expected {} bytes); first difference at \
         offset {first}: actual {:02x?}, expected {:02x?}",
        actual.len(),
        expected.len(),
        window(actual),
        window(expected),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_ranges_agree_with_the_whole() {
        let whole = pattern(7, 1000, 4096);
        for (off, len) in [(0usize, 1usize), (3, 13), (8, 8), (4095, 1), (1, 4094)] {
            assert_eq!(
                pattern(7, 1000 + off as u64, len),
                whole[off..off + len].to_vec()
            );
        }
        assert_ne!(pattern(7, 0, 64), pattern(8, 0, 64));
        assert_eq!(pattern(7, 0, 0), Vec::<u8>::new());
    }

    #[test]
    fn pattern_is_not_trivially_repetitive() {
        let p = pattern(1, 0, 1 << 16);
        let distinct: std::collections::BTreeSet<u8> = p.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_ne!(p[..4096], p[4096..8192]);
    }
}
