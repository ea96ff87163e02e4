//! The CHECK_STRIPS answer (0xF8, a sheepdog-rs extension): what `dog vdi check` learns of
//! one erasure-coded object from a sheep that read every strip of it (and repaired them).
//!
//! ```text
//! 0 u8 outcome · 1 u8 n strips · 2 n × u8 strip status (index order)
//! ```
//!
//! The request names the object (`obj.oid`); `obj.offset` 1 asks only which strips exist
//! (`dog vdi check -e`), 0 checks and repairs.

use crate::DecodeError;

/// What became of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every strip is there and they agree (or, for an existence check, every strip is there).
    Intact,
    /// Some strips were missing or wrong and were rebuilt (existence check: some are missing).
    Repaired,
    /// Fewer than D strips remain: the object cannot be decoded.
    Lost,
    /// The strips disagree in a way that does not say which are wrong, or a holder did not
    /// answer: nothing was changed.
    Undecided,
}

/// One strip's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripStatus {
    /// Present and consistent.
    Good,
    /// Missing (and, when repairing, rebuilt).
    Missing,
    /// Present but not what the others decode to (and, when repairing, rebuilt).
    Wrong,
    /// Its holder did not answer.
    Unknown,
}

/// A CHECK_STRIPS answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripCheck {
    /// The object's outcome.
    pub outcome: Outcome,
    /// Each strip's state, by index.
    pub strips: Vec<StripStatus>,
}

fn outcome_byte(o: Outcome) -> u8 {
    match o {
        Outcome::Intact => 0,
        Outcome::Repaired => 1,
        Outcome::Lost => 2,
        Outcome::Undecided => 3,
    }
}

fn status_byte(s: StripStatus) -> u8 {
    match s {
        StripStatus::Good => 0,
        StripStatus::Missing => 1,
        StripStatus::Wrong => 2,
        StripStatus::Unknown => 3,
    }
}

impl StripCheck {
    /// Encodes the answer (at most 255 strips are listed).
    pub fn encode(&self) -> Vec<u8> {
        let n = self.strips.len().min(255);
        let mut out = Vec::with_capacity(2 + n);
        out.push(outcome_byte(self.outcome));
        out.push(u8::try_from(n).unwrap_or(u8::MAX));
        out.extend(self.strips.iter().take(n).map(|s| status_byte(*s)));
        out
    }

    /// Decodes an answer; every byte must be a known value and the count must match.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let bad = || DecodeError::BadLength {
            what: "strip check",
            len: b.len(),
        };
        let (&o, rest) = b.split_first().ok_or_else(bad)?;
        let (&n, rest) = rest.split_first().ok_or_else(bad)?;
        if rest.len() != usize::from(n) {
            return Err(bad());
        }
        let outcome = match o {
            0 => Outcome::Intact,
            1 => Outcome::Repaired,
            2 => Outcome::Lost,
            3 => Outcome::Undecided,
            _ => return Err(bad()),
        };
        let strips = rest
            .iter()
            .map(|s| match s {
                0 => Ok(StripStatus::Good),
                1 => Ok(StripStatus::Missing),
                2 => Ok(StripStatus::Wrong),
                3 => Ok(StripStatus::Unknown),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?;
        Ok(StripCheck { outcome, strips })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let c = StripCheck {
            outcome: Outcome::Repaired,
            strips: vec![StripStatus::Good, StripStatus::Missing, StripStatus::Wrong],
        };
        let b = c.encode();
        assert_eq!(b, [1, 3, 0, 1, 2]);
        assert_eq!(StripCheck::decode(&b), Ok(c));
        assert!(StripCheck::decode(&[1, 3, 0, 1]).is_err());
        assert!(StripCheck::decode(&[9, 0]).is_err());
        assert!(StripCheck::decode(&[0, 1, 7]).is_err());
        assert!(StripCheck::decode(&[]).is_err());
    }
}
