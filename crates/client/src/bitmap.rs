//! The 2^24-bit VDI bitmaps returned by READ_VDIS and READ_DEL_VDIS.

use bytes::Bytes;
use sd_proto::Vid;

/// A VDI bitmap: bit `n` (LSB-first within each byte) is set when vid `n` is marked.
/// A reply shorter than 2 MiB reads as clear beyond its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VdiBitmap {
    bits: Bytes,
}

impl VdiBitmap {
    /// Wraps the raw reply bytes.
    pub fn new(bits: Bytes) -> Self {
        VdiBitmap { bits }
    }

    /// True if `vid` is set.
    pub fn contains(&self, vid: Vid) -> bool {
        let i = vid.index();
        self.bits
            .get(i / 8)
            .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
    }

    /// True if no bit is set.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&b| b == 0)
    }

    /// The set vids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Vid> + '_ {
        self.bits
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(|(i, &b)| {
                (0..8u32)
                    .filter(move |bit| b & (1 << bit) != 0)
                    .filter_map(move |bit| {
                        let n = u32::try_from(i).ok()?.checked_mul(8)?.checked_add(bit)?;
                        Vid::new(n)
                    })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_set_bits_in_order() {
        let mut raw = vec![0u8; 2 << 20];
        for v in [1u32, 7, 8, 0x7c2b25, 0xFF_FFFF] {
            raw[(v / 8) as usize] |= 1 << (v % 8);
        }
        let bm = VdiBitmap::new(Bytes::from(raw));
        let got: Vec<u32> = bm.iter().map(Vid::get).collect();
        assert_eq!(got, vec![1, 7, 8, 0x7c2b25, 0xFF_FFFF]);
        assert!(bm.contains(Vid::new(0x7c2b25).unwrap()));
        assert!(!bm.contains(Vid::new(0x7c2b26).unwrap()));
        assert!(!bm.is_empty());
        assert!(VdiBitmap::new(Bytes::from(vec![0u8; 16])).is_empty());
        // Short replies read as clear.
        assert!(!VdiBitmap::new(Bytes::new()).contains(Vid::new(5).unwrap()));
    }
}
