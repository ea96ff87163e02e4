//! [`Ec`]: an erasure code D:P and its Sheepdog 1.0 copy-policy byte.
//!
//! The policy byte keeps `D / 2` in its high nibble and `P` in its low nibble
//! (C sheepdog's `ec_policy_to_dp`); policy 0 means plain replication.

use std::fmt;

use crate::EcError;

/// The data strip counts Sheepdog 1.0 supports.
pub const DATA_STRIPS: [u8; 4] = [2, 4, 8, 16];

/// The largest parity strip count (the low nibble of the policy byte).
pub const MAX_PARITY: u8 = 15;

/// An erasure code: `data` data strips plus `parity` parity strips.
///
/// **Invariant:** `data` ∈ {2, 4, 8, 16} and `1 <= parity <= 15`, so the total is at most
/// 31 and the code always has a policy byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ec {
    data: u8,
    parity: u8,
}

impl Ec {
    /// Checks `data` and `parity` against what Sheepdog 1.0 supports.
    pub fn new(data: u32, parity: u32) -> Result<Ec, EcError> {
        let bad = EcError::BadPolicy { data, parity };
        let d = u8::try_from(data).map_err(|_| bad.clone())?;
        let p = u8::try_from(parity).map_err(|_| bad.clone())?;
        if !DATA_STRIPS.contains(&d) || p == 0 || p > MAX_PARITY {
            return Err(bad);
        }
        Ok(Ec { data: d, parity: p })
    }

    /// Decodes a copy-policy byte: `Ok(None)` for 0 (replication), `Ok(Some)` for a
    /// supported erasure code, `Err(BadPolicy)` otherwise.
    pub fn from_policy(byte: u8) -> Result<Option<Ec>, EcError> {
        if byte == 0 {
            return Ok(None);
        }
        let data = u32::from(byte >> 4) * 2;
        let parity = u32::from(byte & 0x0F);
        Ec::new(data, parity).map(Some)
    }

    /// The copy-policy byte of this code (`(D / 2) << 4 | P`).
    pub fn policy(&self) -> u8 {
        ((self.data / 2) << 4) | self.parity
    }

    /// Number of data strips D.
    pub fn data(&self) -> u8 {
        self.data
    }

    /// Number of parity strips P.
    pub fn parity(&self) -> u8 {
        self.parity
    }

    /// Number of strips D + P: the length of the object's placement list.
    pub fn total(&self) -> u8 {
        self.data + self.parity
    }

    /// D as a count for buffers and slices.
    pub(crate) fn data_count(&self) -> usize {
        usize::from(self.data)
    }

    /// P as a count for buffers and slices.
    pub(crate) fn parity_count(&self) -> usize {
        usize::from(self.parity)
    }

    /// D + P as a count for buffers and slices.
    pub(crate) fn total_count(&self) -> usize {
        usize::from(self.total())
    }
}

impl fmt::Display for Ec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.data, self.parity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (D, P) Sheepdog 1.0 supports.
    fn all_valid() -> impl Iterator<Item = (u32, u32)> {
        DATA_STRIPS
            .iter()
            .flat_map(|&d| (1..=u32::from(MAX_PARITY)).map(move |p| (u32::from(d), p)))
    }

    #[test]
    fn known_policy_bytes() {
        for (d, p, byte) in [(2, 1, 0x11), (4, 2, 0x22), (16, 15, 0x8F), (8, 3, 0x43)] {
            let ec = Ec::new(d, p).unwrap();
            assert_eq!(ec.policy(), byte, "{ec}");
            assert_eq!(Ec::from_policy(byte), Ok(Some(ec)));
        }
    }

    #[test]
    fn policy_round_trip_every_valid_code() {
        let mut n = 0;
        for (d, p) in all_valid() {
            let ec = Ec::new(d, p).unwrap();
            assert_eq!(u32::from(ec.data()), d);
            assert_eq!(u32::from(ec.parity()), p);
            assert_eq!(u32::from(ec.total()), d + p);
            assert_eq!(Ec::from_policy(ec.policy()), Ok(Some(ec)));
            assert_eq!(ec.to_string(), format!("{d}:{p}"));
            n += 1;
        }
        assert_eq!(n, 4 * 15);
    }

    #[test]
    fn every_byte_is_valid_invalid_or_replication() {
        let mut valid = 0;
        for byte in 0..=u8::MAX {
            match Ec::from_policy(byte) {
                Ok(None) => assert_eq!(byte, 0),
                Ok(Some(ec)) => {
                    assert_eq!(ec.policy(), byte);
                    valid += 1;
                }
                Err(EcError::BadPolicy { data, parity }) => {
                    assert_eq!(data, u32::from(byte >> 4) * 2);
                    assert_eq!(parity, u32::from(byte & 0xF));
                    let d_ok = [2, 4, 8, 16].contains(&data);
                    assert!(!d_ok || parity == 0, "{byte:#04x} rejected");
                }
                Err(e) => panic!("{byte:#04x}: unexpected {e:?}"),
            }
        }
        assert_eq!(valid, 4 * 15);
    }

    #[test]
    fn invalid_bytes_rejected() {
        for (byte, data, parity) in [(0x31, 6, 1), (0x10, 2, 0), (0x01, 0, 1), (0xF1, 30, 1)] {
            assert_eq!(
                Ec::from_policy(byte),
                Err(EcError::BadPolicy { data, parity }),
                "{byte:#04x}"
            );
        }
        assert_eq!(Ec::from_policy(0x00), Ok(None));
    }

    #[test]
    fn new_rejects_out_of_range_counts() {
        for (d, p) in [
            (0, 1),
            (1, 1),
            (3, 1),
            (6, 2),
            (32, 1),
            (2, 0),
            (2, 16),
            (256 + 2, 1),
        ] {
            assert_eq!(
                Ec::new(d, p),
                Err(EcError::BadPolicy { data: d, parity: p })
            );
        }
        assert!(Ec::new(u32::MAX, u32::MAX).is_err());
    }
}
