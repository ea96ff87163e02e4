//! The VDI table: the in-use and deleted bitmaps and a summary of every inode, with
//! Sheepdog's name lookup (linear probing from `sd_hash_vdi(name)`, spec §10.3), vid
//! allocation, writers' locks and the unsettled/orphaned VDI work.
//!
//! Pure state: the daemon builds it from the inode objects on its disk when a restarted
//! cluster adopts them, and every member changes it only by folding the log's VDI records
//! ([`crate::vdi_fold::apply`]).

use std::collections::HashMap;

use sd_proto::cluster::SD_VDI_BITMAP_SIZE;
use sd_proto::hash::sd_hash_vdi;
use sd_proto::ids::SD_NR_VDIS;
use sd_proto::inode::InodeHeader;
use sd_proto::node::NodeId;
use sd_proto::{SdResult, Vid};

/// A 2^24-bit bitmap, bit n = vid n, LSB-first within each byte (the READ_VDIS format).
#[derive(Clone)]
pub struct Bitmap(Vec<u8>);

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bitmap({} set)",
            self.0.iter().map(|b| b.count_ones()).sum::<u32>()
        )
    }
}

impl Default for Bitmap {
    fn default() -> Self {
        Bitmap(vec![0; SD_VDI_BITMAP_SIZE])
    }
}

impl Bitmap {
    /// Whether bit `vid` is set.
    pub fn get(&self, vid: Vid) -> bool {
        self.0
            .get(vid.index() >> 3)
            .is_some_and(|b| b & (1 << (vid.index() & 7)) != 0)
    }
    /// Sets bit `vid`.
    pub fn set(&mut self, vid: Vid) {
        if let Some(b) = self.0.get_mut(vid.index() >> 3) {
            *b |= 1 << (vid.index() & 7);
        }
    }
    /// The wire/disk bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// First clear bit in `[from, to)`.
    fn first_clear(&self, from: u32, to: u32) -> Option<Vid> {
        (from..to).filter_map(Vid::new).find(|v| !self.get(*v))
    }
}

/// What the table keeps of one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiEntry {
    /// Name (empty once deleted).
    pub name: Vec<u8>,
    /// Snapshot tag.
    pub tag: Vec<u8>,
    /// Position in the snapshot chain.
    pub snap_id: u32,
    /// Read-only snapshot.
    pub snapshot: bool,
    /// Redundancy.
    pub nr_copies: u8,
    /// Copy policy.
    pub copy_policy: u8,
    /// log2 of the object size.
    pub block_size_shift: u8,
    /// Size in bytes.
    pub vdi_size: u64,
    /// The VDI this one was snapshotted or cloned from.
    pub parent: Option<Vid>,
    /// Creation time, Sheepdog's `sec << 32 | nsec`.
    pub create_time: u64,
    /// The working VDI this one replaced when it was created by a snapshot.
    pub snapshot_of: Option<Vid>,
}

impl VdiEntry {
    /// The summary of an inode header.
    pub fn from_header(h: &InodeHeader) -> Self {
        VdiEntry {
            name: h.name.clone(),
            tag: h.tag.clone(),
            snap_id: h.snap_id,
            snapshot: h.is_snapshot(),
            nr_copies: h.nr_copies,
            copy_policy: h.copy_policy,
            block_size_shift: h.block_size_shift,
            vdi_size: h.vdi_size,
            parent: Vid::nonzero(h.parent_vdi_id),
            create_time: h.create_time,
            snapshot_of: None,
        }
    }
}

/// A successful lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The VDI found.
    pub vid: Vid,
}

/// A failed lookup, with what NEW_VDI needs to allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    /// NO_VDI, NO_TAG or FULL_VDI.
    pub result: SdResult,
    /// The vid a new VDI of this name gets (end of the probe run).
    pub free: Option<Vid>,
    /// The snap id a new working VDI of this name gets.
    pub next_snap_id: u32,
}

/// The VDI bitmaps and inode summaries of the cluster.
#[derive(Debug, Default, Clone)]
pub struct VdiTable {
    inuse: Bitmap,
    deleted: Bitmap,
    entries: HashMap<Vid, VdiEntry>,
    /// VDIs whose creation or deletion the log decided but whose inode work is not yet
    /// confirmed done, with the node doing it (`None` once that node left or restarted:
    /// the work was interrupted and the daemon's reconciliation finishes it).
    unsettled: HashMap<Vid, Option<NodeId>>,
    /// Writers holding VDIs: the gateway node and a holder id it chose.
    locks: HashMap<Vid, LockOwner>,
}

/// Who holds a VDI's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOwner {
    /// The gateway the writer is connected to.
    pub node: NodeId,
    /// Which writer on that gateway.
    pub holder: u64,
}

impl VdiTable {
    /// Records an inode (creation, or discovery at start-up).
    pub fn insert(&mut self, vid: Vid, entry: VdiEntry) {
        self.inuse.set(vid);
        if entry.name.is_empty() {
            self.deleted.set(vid);
        }
        self.entries.insert(vid, entry);
    }

    /// Marks `vid` deleted: its name is cleared, its bit stays in use.
    pub fn mark_deleted(&mut self, vid: Vid) {
        self.deleted.set(vid);
        if let Some(e) = self.entries.get_mut(&vid) {
            e.name.clear();
            e.vdi_size = 0;
        }
    }

    /// `node` is doing the inode work of a create or delete of `vid`.
    pub fn mark_unsettled(&mut self, vid: Vid, node: NodeId) {
        self.unsettled.insert(vid, Some(node));
    }

    /// Whether the inode work of a create or delete of `vid` is still under way.
    pub fn is_unsettled(&self, vid: Vid) -> bool {
        self.unsettled.contains_key(&vid)
    }

    /// The inode work of `vid` is done.
    pub fn settle(&mut self, vid: Vid) {
        self.unsettled.remove(&vid);
    }

    /// `node` left or restarted: the work it was doing was interrupted, and the locks of
    /// the writers connected to it die with it.
    pub fn orphan(&mut self, node: &NodeId) {
        self.locks.retain(|_, o| o.node != *node);
        for owner in self.unsettled.values_mut() {
            if owner.as_ref() == Some(node) {
                *owner = None;
            }
        }
    }

    /// VDIs whose interrupted inode work someone must finish, ascending.
    pub fn orphaned(&self) -> Vec<Vid> {
        let mut v: Vec<Vid> = self
            .unsettled
            .iter()
            .filter(|(_, o)| o.is_none())
            .map(|(v, _)| *v)
            .collect();
        v.sort_unstable();
        v
    }

    /// `owner` takes the lock of `vid`: VDI_LOCKED if someone else holds it. Taking it
    /// again as its holder succeeds.
    pub fn lock(&mut self, vid: Vid, owner: LockOwner) -> Result<(), SdResult> {
        match self.locks.get(&vid) {
            Some(o) if *o != owner => Err(SdResult::VdiLocked),
            _ => {
                self.locks.insert(vid, owner);
                Ok(())
            }
        }
    }

    /// Releases the lock of `vid`: only `owner`'s, or whoever holds it (`None`, a forced
    /// unlock). Whether a lock was released.
    /// A lock taken on a VDI that was snapshotted since moved to its successor, which is
    /// where the release goes (QEMU may release by the vid it opened).
    pub fn unlock(&mut self, vid: Vid, owner: Option<LockOwner>) -> bool {
        let mut vid = vid;
        for _ in 0..self.entries.len() {
            if self.locks.contains_key(&vid) {
                break;
            }
            match self
                .entries
                .iter()
                .find(|(_, e)| e.snapshot_of == Some(vid))
            {
                Some((next, _)) => vid = *next,
                None => break,
            }
        }
        match (self.locks.get(&vid), owner) {
            (Some(held), Some(o)) if *held != o => false,
            (Some(_), _) => {
                self.locks.remove(&vid);
                true
            }
            (None, _) => false,
        }
    }

    /// The holder of `vid`'s lock.
    pub fn lock_owner(&self, vid: Vid) -> Option<LockOwner> {
        self.locks.get(&vid).copied()
    }

    /// A snapshot moved the working VDI from `from` to `to`: so does its writer's lock.
    pub fn move_lock(&mut self, from: Vid, to: Vid) {
        if let Some(o) = self.locks.remove(&from) {
            self.locks.insert(to, o);
        }
    }

    /// The entry of `vid`.
    pub fn get(&self, vid: Vid) -> Option<&VdiEntry> {
        self.entries.get(&vid)
    }

    /// `vid` becomes a read-only snapshot tagged `tag`.
    pub fn mark_snapshot(&mut self, vid: Vid, tag: &[u8]) {
        if let Some(e) = self.entries.get_mut(&vid) {
            e.snapshot = true;
            e.tag = tag.to_vec();
        }
    }

    /// `vid`'s objects have `copies` replicas from now on; false if the table has no such
    /// VDI.
    pub fn set_copies(&mut self, vid: Vid, copies: u8) -> bool {
        match self.entries.get_mut(&vid) {
            Some(e) => {
                e.nr_copies = copies;
                true
            }
            None => false,
        }
    }

    /// Whether `vid` is a live working VDI sharing no object with another VDI: it has no
    /// parent (not a clone, nor the continuation of a snapshot) and no live VDI descends
    /// from it. Only such a VDI may change its copies (Sheepdog's "standalone" VDI).
    pub fn is_standalone(&self, vid: Vid) -> bool {
        let Some(e) = self.entries.get(&vid) else {
            return false;
        };
        self.is_live(vid)
            && !e.snapshot
            && e.parent.is_none()
            && self.live_descendants(vid).iter().all(|v| *v == vid)
    }

    /// Every VDI, deleted ones included, by vid.
    pub fn iter(&self) -> impl Iterator<Item = (Vid, &VdiEntry)> {
        self.entries.iter().map(|(v, e)| (*v, e))
    }

    /// Whether `vid` is in use and not deleted.
    pub fn is_live(&self, vid: Vid) -> bool {
        self.entries.contains_key(&vid) && !self.deleted.get(vid)
    }

    /// Live VDIs whose chain of parents reaches `ancestor` (itself included if live):
    /// the only ones whose index can point at objects `ancestor` owns, since an index
    /// starts as a copy of its parent's.
    pub fn live_descendants(&self, ancestor: Vid) -> Vec<Vid> {
        let mut out: Vec<Vid> = self
            .entries
            .keys()
            .copied()
            .filter(|v| self.is_live(*v) && self.descends_from(*v, ancestor))
            .collect();
        out.sort_unstable();
        out
    }

    fn descends_from(&self, mut vid: Vid, ancestor: Vid) -> bool {
        // A chain never revisits a vid; the bound guards against a corrupt table.
        for _ in 0..=self.entries.len() {
            if vid == ancestor {
                return true;
            }
            match self.entries.get(&vid).and_then(|e| e.parent) {
                Some(p) => vid = p,
                None => return false,
            }
        }
        false
    }

    /// The vid a new member of `name`'s probe run gets (the first clear bit after it).
    pub fn free_vid(&self, name: &[u8]) -> Option<Vid> {
        let left = sd_hash_vdi(name);
        self.inuse
            .first_clear(left.get(), SD_NR_VDIS)
            .or_else(|| self.inuse.first_clear(1, left.get()))
    }

    /// Names of the working (not deleted, not snapshot) VDIs, sorted.
    pub fn working_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .values()
            .filter(|e| !e.snapshot && !e.name.is_empty())
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect();
        v.sort();
        v
    }

    /// The in-use bitmap.
    pub fn inuse(&self) -> &Bitmap {
        &self.inuse
    }

    /// The deleted bitmap.
    pub fn deleted(&self) -> &Bitmap {
        &self.deleted
    }

    /// Looks `name` up as Sheepdog does. With a non-empty `tag` or a non-zero `snapid`
    /// it looks for that snapshot; otherwise for the working VDI.
    pub fn lookup(&self, name: &[u8], tag: &[u8], snapid: u32) -> Result<Found, Missing> {
        let left = sd_hash_vdi(name);
        let (right, wrapped) = match self.inuse.first_clear(left.get(), SD_NR_VDIS) {
            Some(r) => (Some(r), false),
            None => (self.inuse.first_clear(1, left.get()), true),
        };
        let miss = |result, next_snap_id| Missing {
            result,
            free: right,
            next_snap_id,
        };
        if right == Some(left) {
            return Err(miss(SdResult::NoVdi, 1));
        }
        // Candidates, highest vid first, as Sheepdog scans them.
        let candidates: Box<dyn Iterator<Item = u32>> = match (right, wrapped) {
            (Some(r), false) => Box::new((left.get()..r.get()).rev()),
            (Some(r), true) => Box::new((1..r.get()).rev().chain((left.get()..SD_NR_VDIS).rev())),
            (None, _) => Box::new((1..SD_NR_VDIS).rev()),
        };
        let want_snapshot = !tag.is_empty() || snapid != 0;
        let mut name_found = false;
        for raw in candidates {
            let Some(vid) = Vid::new(raw) else { continue };
            let Some(e) = self.entries.get(&vid) else {
                continue;
            };
            if e.name != name {
                continue;
            }
            if want_snapshot {
                if !e.snapshot {
                    name_found = true;
                    continue;
                }
                if (!tag.is_empty() && e.tag == tag) || (snapid != 0 && e.snap_id == snapid) {
                    return Ok(Found { vid });
                }
                name_found = true;
            } else if e.snapshot {
                return Err(miss(SdResult::NoVdi, e.snap_id.saturating_add(1)));
            } else {
                return Ok(Found { vid });
            }
        }
        if right.is_none() {
            return Err(miss(SdResult::FullVdi, 1));
        }
        let result = if want_snapshot && name_found {
            SdResult::NoTag
        } else {
            SdResult::NoVdi
        };
        Err(miss(result, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, snapshot: bool, snap_id: u32, tag: &str) -> VdiEntry {
        VdiEntry {
            name: name.as_bytes().to_vec(),
            tag: tag.as_bytes().to_vec(),
            snap_id,
            snapshot,
            nr_copies: 3,
            copy_policy: 0,
            block_size_shift: 22,
            vdi_size: 1 << 30,
            parent: None,
            create_time: 0,
            snapshot_of: None,
        }
    }

    #[test]
    fn fresh_name_gets_its_hash_as_vid() {
        let t = VdiTable::default();
        let m = t.lookup(b"test", b"", 0).unwrap_err();
        assert_eq!(m.result, SdResult::NoVdi);
        assert_eq!(m.free.unwrap().get(), 0x7c2b25);
    }

    #[test]
    fn working_vdi_is_found_and_next_free_is_after_run() {
        let mut t = VdiTable::default();
        let v = Vid::new(0x7c2b25).unwrap();
        t.insert(v, entry("test", false, 1, ""));
        assert_eq!(t.lookup(b"test", b"", 0).unwrap().vid, v);
        // A colliding name probes past the run.
        let other = t.lookup(b"other", b"", 0).unwrap_err();
        assert_eq!(other.result, SdResult::NoVdi);
    }

    #[test]
    fn snapshots_are_found_by_tag_or_id() {
        let mut t = VdiTable::default();
        let s = Vid::new(0x7c2b25).unwrap();
        let w = Vid::new(0x7c2b26).unwrap();
        t.insert(s, entry("test", true, 1, "snap1"));
        t.insert(w, entry("test", false, 2, ""));
        assert_eq!(t.lookup(b"test", b"", 0).unwrap().vid, w);
        assert_eq!(t.lookup(b"test", b"snap1", 0).unwrap().vid, s);
        assert_eq!(t.lookup(b"test", b"", 1).unwrap().vid, s);
        assert_eq!(
            t.lookup(b"test", b"nope", 0).unwrap_err().result,
            SdResult::NoTag
        );
        assert_eq!(
            t.lookup(b"nope", b"x", 0).unwrap_err().result,
            SdResult::NoVdi
        );
    }

    #[test]
    fn deleted_vdi_is_not_found_and_its_bit_stays_used() {
        let mut t = VdiTable::default();
        let v = Vid::new(0x7c2b25).unwrap();
        t.insert(v, entry("test", false, 1, ""));
        t.mark_deleted(v);
        let m = t.lookup(b"test", b"", 0).unwrap_err();
        assert_eq!(m.result, SdResult::NoVdi);
        assert_eq!(m.free.unwrap().get(), 0x7c2b26);
        assert!(t.inuse().get(v));
        assert!(t.deleted().get(v));
    }

    #[test]
    fn locks_follow_snapshots_and_die_with_their_node() {
        let mut t = VdiTable::default();
        let w = Vid::new(0x7c2b25).unwrap();
        let n = Vid::new(0x7c2b26).unwrap();
        t.insert(w, entry("test", false, 1, ""));
        let a = LockOwner {
            node: NodeId::default(),
            holder: 1,
        };
        let b = LockOwner { holder: 2, ..a };
        assert_eq!(t.lock(w, a), Ok(()));
        assert_eq!(t.lock(w, a), Ok(()), "the holder may take it again");
        assert_eq!(t.lock(w, b), Err(SdResult::VdiLocked));
        // A snapshot moves the lock to the new working VDI; a release by the old vid
        // reaches it.
        t.mark_snapshot(w, b"");
        t.insert(
            n,
            VdiEntry {
                snapshot_of: Some(w),
                ..entry("test", false, 2, "")
            },
        );
        t.move_lock(w, n);
        assert_eq!(t.lock_owner(n), Some(a));
        assert!(!t.unlock(w, Some(b)), "not b's lock");
        assert!(t.unlock(w, None));
        assert_eq!(t.lock_owner(n), None);
        // A node's departure drops its locks.
        assert_eq!(t.lock(n, b), Ok(()));
        t.orphan(&NodeId::default());
        assert_eq!(t.lock_owner(n), None);
    }

    #[test]
    fn descendants_follow_parents_through_deleted_links() {
        let mut t = VdiTable::default();
        let v = |n| Vid::new(n).unwrap();
        t.insert(v(1), entry("a", true, 1, ""));
        t.insert(
            v(2),
            VdiEntry {
                parent: Some(v(1)),
                ..entry("a", true, 2, "")
            },
        );
        t.insert(
            v(3),
            VdiEntry {
                parent: Some(v(2)),
                ..entry("a", false, 3, "")
            },
        );
        t.insert(
            v(4),
            VdiEntry {
                parent: Some(v(1)),
                ..entry("b", false, 1, "")
            },
        );
        t.mark_deleted(v(2));
        assert_eq!(t.live_descendants(v(1)), [v(1), v(3), v(4)]);
        assert_eq!(t.live_descendants(v(2)), [v(3)]);
        assert_eq!(t.live_descendants(v(4)), [v(4)]);
    }

    #[test]
    fn bitmap_layout_is_lsb_first() {
        let mut b = Bitmap::default();
        b.set(Vid::new(9).unwrap());
        assert_eq!(b.as_bytes()[1], 0b10);
    }
}
