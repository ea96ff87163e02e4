//! FNV-1a hashing as Sheepdog uses it: VDI ids from names (spec §10.1) and ring points (§11.2).

use crate::{Oid, Vid};

/// FNV-1a 64-bit offset basis.
pub const FNV1A_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `buf`, continuing from `h`.
pub fn fnv1a_64(buf: &[u8], mut h: u64) -> u64 {
    for &b in buf {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_64_PRIME);
    }
    h
}

/// One FNV-1a step over the 8 little-endian bytes of `x`, continuing from `h`.
pub fn fnv64(x: u64, h: u64) -> u64 {
    fnv1a_64(&x.to_le_bytes(), h)
}

/// `sd_hash`: FNV-1a of `buf`, then one more step over the result.
pub fn sd_hash(buf: &[u8]) -> u64 {
    let h = fnv1a_64(buf, FNV1A_64_INIT);
    fnv64(h, h)
}

/// `sd_hash_oid`: the ring key of an object.
pub fn sd_hash_oid(oid: Oid) -> u64 {
    sd_hash(&oid.get().to_le_bytes())
}

/// `sd_hash_next`: the next point of a vnode chain.
pub fn sd_hash_next(h: u64) -> u64 {
    fnv64(h, h)
}

/// `sd_hash_vdi`: the starting vid of a name's probe run (0 is mapped to 1).
pub fn sd_hash_vdi(name: &[u8]) -> Vid {
    let name = crate::wire::c_str(name);
    let h = fnv1a_64(name, FNV1A_64_INIT);
    let v = Vid::from_masked((h & 0x00FF_FFFF) as u32);
    if v.get() == 0 { Vid::from_masked(1) } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_test_vectors() {
        assert_eq!(fnv1a_64(b"test", FNV1A_64_INIT), 0xf9e6_e6ef_197c_2b25);
        assert_eq!(sd_hash_vdi(b"test").get(), 0x7c2b25);
        assert_eq!(sd_hash_vdi(b"test\0garbage").get(), 0x7c2b25);
        assert_eq!(sd_hash_vdi(b"alpha").get(), 0xed202b);
        assert_eq!(sd_hash_vdi(b"vm1").get(), 0xc59887);
        assert_eq!(
            sd_hash_oid(Oid::new(0x807c_2b25_0000_0000)),
            0x8b4b_18c2_43be_fa1a
        );
        assert_eq!(
            sd_hash_oid(Oid::new(0x80ab_cdef_0000_0000)),
            0xa4f8_2083_4d77_e8b3
        );
        assert_eq!(
            sd_hash_oid(Oid::new(0x007c_2b25_0000_0005)),
            0x422f_3c8a_f3f8_de1c
        );
    }
}
