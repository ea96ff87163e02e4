//! Do the copies of an object agree? The rule behind `dog vdi check` and the sheep's
//! background scrub, given what each replica answered to GET_HASH. Pure: no I/O.

/// One replica's answer to GET_HASH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The SHA-1 of its copy.
    Hash([u8; 20]),
    /// It has no copy (NO_OBJ).
    Missing,
    /// It could not be asked, or answered an error.
    Failed,
}

/// Why a replica is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// It had no copy: `fixed missing`.
    Missing,
    /// Its copy differed from the good one: `fixed replica`.
    Replica,
}

/// What to do with one object, from its replicas' answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The copy of replica `source` is good; `repairs` (replica, why) copy it (none: the
    /// object is consistent).
    Good {
        /// A replica holding the good copy.
        source: usize,
        /// The replicas to repair from it.
        repairs: Vec<(usize, Fix)>,
    },
    /// Every replica answered, the copies disagree and no copy has a strict majority.
    NoMajority,
    /// Every replica answered and none has a copy.
    Lost,
    /// A replica did not answer and the others do not settle it.
    Undecided,
}

/// The rule for one object (pure): the copy strictly more than half of the replicas hold
/// is good; failing that, if every replica answered and all the copies present are the same,
/// that copy is good (nothing disputes it); otherwise nothing is repaired.
pub fn decide(answers: &[Answer]) -> Decision {
    let mut counts: Vec<([u8; 20], usize)> = Vec::new();
    for a in answers {
        if let Answer::Hash(h) = a {
            match counts.iter_mut().find(|(x, _)| x == h) {
                Some((_, n)) => *n += 1,
                None => counts.push((*h, 1)),
            }
        }
    }
    let all_answered = !answers.contains(&Answer::Failed);
    let majority = counts
        .iter()
        .find(|(_, n)| n.saturating_mul(2) > answers.len())
        .map(|(h, _)| *h);
    let good = match (majority, all_answered, counts.as_slice()) {
        (Some(h), _, _) => h,
        (None, true, []) => return Decision::Lost,
        (None, true, [(h, _)]) => *h,
        (None, true, _) => return Decision::NoMajority,
        (None, false, _) => return Decision::Undecided,
    };
    let Some(source) = answers.iter().position(|a| *a == Answer::Hash(good)) else {
        // `good` was counted from these answers.
        return Decision::Undecided;
    };
    good_copy(answers, source, good)
}

/// `source`'s copy (hash `good`) is good: every replica missing it or holding another is
/// repaired from it.
fn good_copy(answers: &[Answer], source: usize, good: [u8; 20]) -> Decision {
    let repairs = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Answer::Missing => Some((i, Fix::Missing)),
            Answer::Hash(h) if *h != good => Some((i, Fix::Replica)),
            _ => None,
        })
        .collect();
    Decision::Good { source, repairs }
}

/// The rule for copies that can differ only by writes no client was told succeeded (a
/// write fan-out cut short by a replica's error or by its gateway's death): as [`decide`],
/// but where no copy has a strict majority, the copy of the first replica holding one
/// wins. Every copy then holds every acknowledged write, so either copy is a right answer;
/// taking the same one on every node makes them identical, so every reader sees one of the
/// two. Not for copies that may be damaged (the scrub's case), where a guess could spread
/// the damage.
pub fn settle(answers: &[Answer]) -> Decision {
    match decide(answers) {
        Decision::NoMajority => {
            let Some((source, good)) = answers.iter().enumerate().find_map(|(i, a)| match a {
                Answer::Hash(h) => Some((i, *h)),
                _ => None,
            }) else {
                return Decision::Lost;
            };
            good_copy(answers, source, good)
        }
        other => other,
    }
}

/// The payload REPAIR_REPLICA may carry (our extension; the C `dog` sends none): the copy
/// the asker saw on the replica being repaired, as 20 bytes: its SHA-1, or zeros when it
/// saw no copy. The replica refuses the repair (AGAIN) if its copy no longer matches: a
/// write reached it since, and replacing the copy could lose that write.
pub fn seen_payload(seen: Answer) -> [u8; 20] {
    match seen {
        Answer::Hash(h) => h,
        Answer::Missing | Answer::Failed => [0; 20],
    }
}

/// Reads [`seen_payload`]; `None` if it is not 20 bytes.
pub fn parse_seen(payload: &[u8]) -> Option<Answer> {
    let hash: [u8; 20] = payload.try_into().ok()?;
    Some(if hash == [0; 20] {
        Answer::Missing
    } else {
        Answer::Hash(hash)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Answer = Answer::Hash([1; 20]);
    const B: Answer = Answer::Hash([2; 20]);
    const C: Answer = Answer::Hash([3; 20]);
    const M: Answer = Answer::Missing;
    const F: Answer = Answer::Failed;

    fn good(source: usize, repairs: &[(usize, Fix)]) -> Decision {
        Decision::Good {
            source,
            repairs: repairs.to_vec(),
        }
    }

    #[test]
    fn majority_decides() {
        use Fix::{Missing as Mi, Replica as Re};
        let table: &[(&[Answer], Decision)] = &[
            // Consistent.
            (&[A], good(0, &[])),
            (&[A, A], good(0, &[])),
            (&[A, A, A], good(0, &[])),
            // A strict majority wins: the others are repaired from its first holder.
            (&[A, A, M], good(0, &[(2, Mi)])),
            (&[M, A, A], good(1, &[(0, Mi)])),
            (&[A, B, A], good(0, &[(1, Re)])),
            (&[B, A, A], good(1, &[(0, Re)])),
            (&[A, A, B, M, A], good(0, &[(2, Re), (3, Mi)])),
            // A majority holds even if a replica did not answer (it is not repaired).
            (&[A, F, A], good(0, &[])),
            (&[A, A, A, F, M], good(0, &[(4, Mi)])),
            (&[A, A, F, M], Decision::Undecided),
            // Undisputed: every replica answered and the copies present agree.
            (&[A, M], good(0, &[(1, Mi)])),
            (&[M, M, A], good(2, &[(0, Mi), (1, Mi)])),
            (&[M, A, A, M], good(1, &[(0, Mi), (3, Mi)])),
            // Disagreement without a strict majority: nothing is guessed.
            (&[A, B], Decision::NoMajority),
            (&[A, B, C], Decision::NoMajority),
            (&[A, B, M], Decision::NoMajority),
            (&[A, A, B, B], Decision::NoMajority),
            // Nobody has it.
            (&[M], Decision::Lost),
            (&[M, M, M], Decision::Lost),
            // A silent replica might hold what settles it.
            (&[A, F], Decision::Undecided),
            (&[A, M, F], Decision::Undecided),
            (&[M, F], Decision::Undecided),
            (&[F, F, F], Decision::Undecided),
            (&[A, B, F], Decision::Undecided),
            (&[], Decision::Lost),
        ];
        for (answers, want) in table {
            assert_eq!(&decide(answers), want, "{answers:?}");
        }
    }

    #[test]
    fn settling_takes_the_first_copy_without_a_majority() {
        use Fix::{Missing as Mi, Replica as Re};
        let table: &[(&[Answer], Decision)] = &[
            (&[A, B], good(0, &[(1, Re)])),
            (&[M, B, A], good(1, &[(0, Mi), (2, Re)])),
            (&[A, B, C], good(0, &[(1, Re), (2, Re)])),
            (&[B, B, A, A], good(0, &[(2, Re), (3, Re)])),
            // Otherwise exactly as `decide`.
            (&[A, B, B], good(1, &[(0, Re)])),
            (&[A, A], good(0, &[])),
            (&[A, M], good(0, &[(1, Mi)])),
            (&[A, B, F], Decision::Undecided),
            (&[M, M], Decision::Lost),
        ];
        for (answers, want) in table {
            assert_eq!(&settle(answers), want, "{answers:?}");
        }
    }

    #[test]
    fn the_seen_copy_round_trips() {
        for seen in [A, B, M] {
            assert_eq!(parse_seen(&seen_payload(seen)), Some(seen));
        }
        assert_eq!(parse_seen(&[0; 19]), None);
        assert_eq!(parse_seen(&[]), None);
    }
}
