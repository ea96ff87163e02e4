//! Do the copies of an object agree? The decision behind `dog vdi check` and the sheep's
//! background scrub, given what each replica answered to GET_HASH. Pure: no I/O.

/// What one replica answered about its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// SHA-1 of its copy.
    Hash([u8; 20]),
    /// It has no copy (NO_OBJ).
    Missing,
    /// No usable answer (unreachable, EIO, still recovering ...).
    Unknown,
}

/// What to do about an object, from its replicas' answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every replica holds the same bytes.
    Agree,
    /// A strict majority of the replicas agrees on `good`: replicas `from` hold it, and the
    /// copies at the indexes `missing` (none) and `differ` (other bytes) need repair.
    Repair {
        /// Indexes of the replicas holding the majority copy.
        from: Vec<usize>,
        /// Indexes of the replicas without a copy.
        missing: Vec<usize>,
        /// Indexes of the replicas whose copy differs.
        differ: Vec<usize>,
    },
    /// Some replica did not answer: nothing can be decided safely now.
    Undecided,
    /// Copies exist but no strict majority agrees: repairing would be a guess.
    NoMajority,
    /// No replica has a copy.
    Lost,
}

/// Judges the answers of an object's replicas (in placement order). A repair needs every
/// replica to have answered, and the copies that exist to be identical, or strictly more
/// than half of the replicas to hold identical bytes.
pub fn judge(answers: &[CopyState]) -> Verdict {
    if answers.contains(&CopyState::Unknown) {
        return Verdict::Undecided;
    }
    let hashes: Vec<[u8; 20]> = answers
        .iter()
        .filter_map(|a| match a {
            CopyState::Hash(h) => Some(*h),
            _ => None,
        })
        .collect();
    if hashes.is_empty() {
        return Verdict::Lost;
    }
    // Copies that all agree are copied to the replicas that lack one, however few they
    // are; copies that disagree need a strict majority of the replicas.
    let all_equal = hashes.iter().all(|h| Some(h) == hashes.first());
    let Some(good) = hashes
        .iter()
        .find(|h| all_equal || hashes.iter().filter(|x| x == h).count() * 2 > answers.len())
    else {
        return Verdict::NoMajority;
    };
    let mut from = Vec::new();
    let mut missing = Vec::new();
    let mut differ = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        match a {
            CopyState::Hash(h) if h == good => from.push(i),
            CopyState::Hash(_) => differ.push(i),
            _ => missing.push(i),
        }
    }
    if missing.is_empty() && differ.is_empty() {
        Verdict::Agree
    } else {
        Verdict::Repair {
            from,
            missing,
            differ,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CopyState::{Hash, Missing, Unknown};
    use super::*;

    const A: [u8; 20] = [1; 20];
    const B: [u8; 20] = [2; 20];
    const C: [u8; 20] = [3; 20];

    #[test]
    fn agreement_needs_every_copy_identical() {
        assert_eq!(judge(&[Hash(A), Hash(A), Hash(A)]), Verdict::Agree);
        assert_eq!(judge(&[Hash(A)]), Verdict::Agree);
    }

    #[test]
    fn a_strict_majority_repairs_the_rest() {
        assert_eq!(
            judge(&[Hash(A), Hash(B), Hash(A)]),
            Verdict::Repair {
                from: vec![0, 2],
                missing: vec![],
                differ: vec![1],
            }
        );
        assert_eq!(
            judge(&[Missing, Hash(A), Hash(A)]),
            Verdict::Repair {
                from: vec![1, 2],
                missing: vec![0],
                differ: vec![],
            }
        );
        // The only copy left is copied back.
        assert_eq!(
            judge(&[Missing, Missing, Hash(A)]),
            Verdict::Repair {
                from: vec![2],
                missing: vec![0, 1],
                differ: vec![],
            }
        );
        // Copies that differ need a majority of the replicas, not of the copies.
        assert_eq!(judge(&[Missing, Hash(A), Hash(B)]), Verdict::NoMajority);
    }

    #[test]
    fn ties_and_silence_decide_nothing() {
        assert_eq!(judge(&[Hash(A), Hash(B)]), Verdict::NoMajority);
        assert_eq!(judge(&[Hash(A), Hash(B), Hash(C)]), Verdict::NoMajority);
        assert_eq!(judge(&[Hash(A), Hash(A), Unknown]), Verdict::Undecided);
        assert_eq!(judge(&[Missing, Missing]), Verdict::Lost);
        assert_eq!(judge(&[]), Verdict::Lost);
    }
}
