//! What a verifying client knows about its VDI: which write generation each byte is
//! *guaranteed* to hold, and which later writes may or may not have landed on top of it.
//!
//! Every write gets a generation number; its bytes are `pattern(seed of generation, vdi offset)`,
//! so any part of any write can be recomputed. Generation 0 is the zeros of a fresh VDI.
//! A write enters the model as *maybe* when it is sent. It becomes *guaranteed* when the
//! protocol promises it survives: at its acknowledgement in writethrough mode, at the
//! acknowledgement of a later FLUSH_VDI through the same gateway in writeback mode. A write
//! that never reaches that point stays *maybe* forever: its bytes may read old or new.

use std::collections::BTreeMap;

use crate::pattern;

/// A write generation; 0 is the initial zeros.
pub type Gen = u32;

/// Non-overlapping half-open ranges `[start, end)` of the VDI mapped to a generation;
/// bytes in no range hold generation 0.
#[derive(Debug, Default, Clone)]
struct RangeMap {
    /// start → (end, generation).
    map: BTreeMap<u64, (u64, Gen)>,
}

impl RangeMap {
    /// Maps `[start, end)` to `generation`, replacing what was there.
    fn set(&mut self, start: u64, end: u64, generation: Gen) {
        if start >= end {
            return;
        }
        // A range beginning before `start` that reaches into the new one: keep its head,
        // and its tail if it also reaches past `end`.
        if let Some((&s, &(e, g))) = self.map.range(..start).next_back()
            && e > start
        {
            self.map.insert(s, (start, g));
            if e > end {
                self.map.insert(end, (e, g));
            }
        }
        let inside: Vec<u64> = self.map.range(start..end).map(|(s, _)| *s).collect();
        for s in inside {
            if let Some((e, g)) = self.map.remove(&s)
                && e > end
            {
                self.map.insert(end, (e, g));
            }
        }
        self.map.insert(start, (end, generation));
    }

    /// The segments `(start, end, generation)` covering `[start, end)` in order, gaps as generation 0.
    fn segments(&self, start: u64, end: u64) -> Vec<(u64, u64, Gen)> {
        let mut out = Vec::new();
        let mut pos = start;
        let from = self
            .map
            .range(..=start)
            .next_back()
            .filter(|(_, (e, _))| *e > start)
            .map_or(start, |(s, _)| *s);
        for (&s, &(e, g)) in self.map.range(from..end) {
            let s = s.max(start);
            if s > pos {
                out.push((pos, s, 0));
            }
            let e = e.min(end);
            if e > s {
                out.push((s, e, g));
                pos = e;
            }
        }
        if pos < end {
            out.push((pos, end, 0));
        }
        out
    }
}

/// What one read proved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Bytes with no possible value but their guaranteed one, found holding it.
    pub guaranteed: u64,
    /// Bytes a maybe-write covers, found holding one of their possible values.
    pub uncertain: u64,
}

impl std::ops::AddAssign for Checked {
    fn add_assign(&mut self, o: Checked) {
        self.guaranteed += o.guaranteed;
        self.uncertain += o.uncertain;
    }
}

/// The model of one VDI's bytes (see the module documentation).
#[derive(Debug, Clone)]
pub struct Model {
    seed: u64,
    size: u64,
    next: Gen,
    durable: RangeMap,
    /// Writes sent but not (yet) guaranteed: generation → `[start, end)`.
    maybe: BTreeMap<Gen, (u64, u64)>,
}

impl Model {
    /// A VDI of `size` zero bytes; write data derives from `seed`.
    pub fn new(seed: u64, size: u64) -> Model {
        Model {
            seed,
            size,
            next: 1,
            durable: RangeMap::default(),
            maybe: BTreeMap::new(),
        }
    }

    /// The VDI size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Registers a write of `len` bytes at VDI offset `off` about to be sent, as *maybe*.
    pub fn begin_write(&mut self, off: u64, len: u64) -> Gen {
        let generation = self.next;
        self.next += 1;
        self.maybe
            .insert(generation, (off, off.saturating_add(len)));
        generation
    }

    /// The bytes write `generation` carries for `[off, off + len)` (zeros for generation 0).
    pub fn data(&self, generation: Gen, off: u64, len: usize) -> Vec<u8> {
        if generation == 0 {
            return vec![0; len];
        }
        pattern(self.gen_seed(generation), off, len)
    }

    fn gen_seed(&self, generation: Gen) -> u64 {
        // Any injective mixing will do: `pattern` hashes the seed with the offset.
        self.seed ^ (u64::from(generation) << 32 | u64::from(generation))
    }

    /// Write `generation` is now guaranteed: its bytes hold it, unless a later guaranteed write
    /// already covers them. Unknown (or already guaranteed) generations are ignored.
    pub fn make_durable(&mut self, generation: Gen) {
        let Some((start, end)) = self.maybe.remove(&generation) else {
            return;
        };
        for (s, e, g) in self.durable.segments(start, end) {
            if g < generation {
                self.durable.set(s, e, generation);
            }
        }
    }

    /// Writes sent and not guaranteed (still possibly on disk, possibly not).
    pub fn maybe_count(&self) -> usize {
        self.maybe.len()
    }

    /// Checks bytes read at VDI offset `off`: each must hold its guaranteed generation or a
    /// later maybe-write covering it. Returns what was proved, or a description of the
    /// first byte that holds neither.
    pub fn verify(&self, off: u64, actual: &[u8]) -> Result<Checked, String> {
        let end = off.saturating_add(actual.len() as u64);
        let mut checked = Checked::default();
        for (s, e, g) in self.durable.segments(off, end) {
            let len = usize::try_from(e - s).map_err(|_| "segment too long".to_string())?;
            let expect = self.data(g, s, len);
            let at = usize::try_from(s - off).map_err(|_| "offset too large".to_string())?;
            let got = actual.get(at..at + len).ok_or("read shorter than asked")?;
            let later: Vec<(Gen, u64, u64)> = self
                .maybe
                .range(g.saturating_add(1)..)
                .filter(|(_, (ms, me))| *ms < e && *me > s)
                .map(|(mg, (ms, me))| (*mg, *ms, *me))
                .collect();
            if later.is_empty() {
                if got != expect.as_slice() {
                    let i = got.iter().zip(&expect).position(|(a, b)| a != b);
                    let i = i.unwrap_or(0);
                    return Err(format!(
                        "byte {} holds {:#04x}, but write {g} guaranteed {:#04x} \
                         (no later write may have landed there)",
                        s + i as u64,
                        got.get(i).copied().unwrap_or_default(),
                        expect.get(i).copied().unwrap_or_default(),
                    ));
                }
                checked.guaranteed += e - s;
                continue;
            }
            // Bytes with alternatives: check one by one, but the alternatives only where the
            // guaranteed value does not match.
            for (i, (a, x)) in got.iter().zip(&expect).enumerate() {
                let pos = s + i as u64;
                let covered: Vec<Gen> = later
                    .iter()
                    .filter(|(_, ms, me)| *ms <= pos && pos < *me)
                    .map(|(mg, _, _)| *mg)
                    .collect();
                if covered.is_empty() {
                    if a != x {
                        return Err(format!(
                            "byte {pos} holds {a:#04x}, but write {g} guaranteed {x:#04x}"
                        ));
                    }
                    checked.guaranteed += 1;
                    continue;
                }
                let ok = a == x
                    || covered
                        .iter()
                        .any(|mg| self.data(*mg, pos, 1).first() == Some(a));
                if !ok {
                    return Err(format!(
                        "byte {pos} holds {a:#04x}: neither guaranteed write {g} ({x:#04x}) nor \
                         any of the writes that may have landed there ({covered:?})"
                    ));
                }
                checked.uncertain += 1;
            }
        }
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(m: &RangeMap, s: u64, e: u64) -> Vec<(u64, u64, Gen)> {
        m.segments(s, e)
    }

    #[test]
    fn range_map_overwrites_split_and_merge() {
        let mut m = RangeMap::default();
        assert_eq!(segs(&m, 0, 10), vec![(0, 10, 0)]);
        m.set(2, 8, 1);
        assert_eq!(segs(&m, 0, 10), vec![(0, 2, 0), (2, 8, 1), (8, 10, 0)]);
        m.set(4, 6, 2);
        assert_eq!(
            segs(&m, 0, 10),
            vec![(0, 2, 0), (2, 4, 1), (4, 6, 2), (6, 8, 1), (8, 10, 0)]
        );
        m.set(1, 7, 3);
        assert_eq!(
            segs(&m, 0, 10),
            vec![(0, 1, 0), (1, 7, 3), (7, 8, 1), (8, 10, 0)]
        );
        assert_eq!(segs(&m, 3, 5), vec![(3, 5, 3)]);
        assert_eq!(segs(&m, 7, 9), vec![(7, 8, 1), (8, 9, 0)]);
        m.set(0, 10, 4);
        assert_eq!(segs(&m, 0, 12), vec![(0, 10, 4), (10, 12, 0)]);
        assert_eq!(m.map.len(), 1);
    }

    #[test]
    fn acknowledged_writes_are_exact_and_unflushed_ones_may_read_old_or_new() {
        let mut m = Model::new(7, 100);
        let g1 = m.begin_write(10, 20);
        m.make_durable(g1);
        let mut disk = vec![0u8; 100];
        disk[10..30].copy_from_slice(&m.data(g1, 10, 20));
        assert_eq!(
            m.verify(0, &disk),
            Ok(Checked {
                guaranteed: 100,
                uncertain: 0
            })
        );

        // A write that may have landed: old or new bytes both pass, a third value does not.
        let g2 = m.begin_write(20, 20);
        assert!(m.verify(0, &disk).is_ok(), "old bytes");
        let mut new = disk.clone();
        new[20..40].copy_from_slice(&m.data(g2, 20, 20));
        let c = m.verify(0, &new).unwrap();
        assert_eq!((c.guaranteed, c.uncertain), (80, 20));
        // Torn: half landed. Still allowed (no atomicity is promised across bytes).
        let mut torn = disk.clone();
        torn[20..30].copy_from_slice(&m.data(g2, 20, 10));
        assert!(m.verify(0, &torn).is_ok());
        let mut bad = new.clone();
        bad[25] ^= 0x55;
        assert!(m.verify(0, &bad).is_err());
        // Outside the maybe-write, the guaranteed bytes are exact.
        let mut bad = disk.clone();
        bad[15] ^= 1;
        assert!(m.verify(0, &bad).unwrap_err().contains("byte 15"));

        // Once guaranteed, only the new bytes pass.
        m.make_durable(g2);
        assert!(m.verify(0, &new).is_ok());
        assert!(m.verify(0, &disk).is_err());
        assert_eq!(m.maybe_count(), 0);
    }

    #[test]
    fn a_later_guaranteed_write_is_not_undone_by_an_older_one() {
        let mut m = Model::new(1, 64);
        let old = m.begin_write(0, 32);
        let new = m.begin_write(16, 32);
        m.make_durable(new);
        m.make_durable(old);
        let mut disk = m.data(old, 0, 16);
        disk.extend(m.data(new, 16, 32));
        disk.extend(vec![0; 16]);
        assert_eq!(m.verify(0, &disk).unwrap().guaranteed, 64);
        // A maybe-write older than the guaranteed value is no alternative to it.
        let mut m = Model::new(1, 64);
        let old = m.begin_write(0, 64);
        let new = m.begin_write(0, 64);
        m.make_durable(new);
        assert!(m.verify(0, &m.data(old, 0, 64)).is_err());
        assert!(m.verify(0, &m.data(new, 0, 64)).is_ok());
    }
}
