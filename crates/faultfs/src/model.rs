//! [`Model`]: the file system as two states, pure and without I/O.
//!
//! The **live** state is what the running file system shows. The **durable** state is what
//! a power cut leaves: it changes only when something is made durable.
//!
//! - `fsync`/`fdatasync` of a file copies the file's live data and size (and attributes)
//!   into the durable state.
//! - A write through an `O_DSYNC`/`O_SYNC` descriptor, or a `pwritev2(RWF_DSYNC)`, is applied
//!   to both states at once: exactly the bytes written become durable, nothing else.
//! - `fsync` of a directory copies its live entries into the durable state. A child that
//!   has no durable version yet gets an empty one (a file of size 0, a directory without
//!   entries): its name survives, its contents only if they were synced too.
//! - Nothing else is durable: not a create, rename, unlink or mkdir until its directory is
//!   synced, and no data until its file is synced. This is stricter than ext4 (whose
//!   journal commits namespace changes in order, and which syncs a new file's entry with
//!   the file) and models a disk that loses everything not explicitly flushed.
//!
//! [`Model::crash`] is the file system after a power cut: the durable state, minus what no
//! durable name reaches. Capacity limits and injected read errors are live-only settings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path};
use std::time::SystemTime;

use nix::errno::Errno;

use crate::data::{FileData, MAX_FILE_SIZE, PAGE_U64, len_u64};

/// An inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory (FUSE's `FUSE_ROOT_ID`).
    pub const ROOT: Ino = Ino(1);
}

/// Attributes kept per inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last data change.
    pub mtime: SystemTime,
    /// Last inode change.
    pub ctime: SystemTime,
}

/// What an inode holds.
#[derive(Debug, Clone)]
pub enum Body {
    /// A regular file.
    File(FileData),
    /// A directory: name → inode.
    Dir(BTreeMap<OsString, Ino>),
}

/// An inode in one of the two states.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its attributes.
    pub attr: Attr,
    /// Its data or entries.
    pub body: Body,
}

impl Node {
    /// The same kind of inode with nothing in it: the durable version of an inode whose
    /// name was synced before its contents.
    fn empty_like(&self) -> Node {
        Node {
            attr: self.attr.clone(),
            body: match self.body {
                Body::File(_) => Body::File(FileData::default()),
                Body::Dir(_) => Body::Dir(BTreeMap::new()),
            },
        }
    }

    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }
}

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// What `stat` shows of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes (files).
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Hard links.
    pub nlink: u32,
    /// The rest.
    pub attr: Attr,
}

/// A live inode and its reference counts.
#[derive(Debug, Clone)]
struct Live {
    node: Node,
    /// Names pointing at it (the root counts as named).
    nlink: u32,
    /// Open file handles.
    opens: u32,
}

/// An open file.
#[derive(Debug, Clone, Copy)]
struct Handle {
    ino: Ino,
    /// Opened `O_DSYNC` or `O_SYNC`: every write is durable.
    sync: bool,
}

/// Who creates an inode, and when.
#[derive(Debug, Clone, Copy)]
pub struct Creator {
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Now.
    pub now: SystemTime,
}

/// The whole file system: live and durable state (see the module docs).
#[derive(Debug, Clone)]
pub struct Model {
    live: HashMap<Ino, Live>,
    durable: HashMap<Ino, Node>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Most bytes of allocated file data; writes past it fail with `ENOSPC`.
    capacity: Option<u64>,
    /// Bytes of allocated file data in the live state.
    used: u64,
    /// Files whose reads fail with `EIO`.
    eio: HashSet<Ino>,
}

impl Default for Model {
    fn default() -> Self {
        Model::new(SystemTime::UNIX_EPOCH)
    }
}

impl Model {
    /// An empty file system (a root directory, durable) created at `now`.
    pub fn new(now: SystemTime) -> Model {
        let root = Node {
            attr: Attr {
                perm: 0o755,
                uid: 0,
                gid: 0,
                mtime: now,
                ctime: now,
            },
            body: Body::Dir(BTreeMap::new()),
        };
        Model::from_durable(HashMap::from([(Ino::ROOT, root)]), Ino::ROOT.0 + 1)
    }

    /// The file system a mount of the durable state `nodes` shows (after a power cut or
    /// from an image file); `next_ino` is above every inode number used.
    pub(crate) fn from_durable(nodes: HashMap<Ino, Node>, next_ino: u64) -> Model {
        let mut nlink: HashMap<Ino, u32> = HashMap::new();
        for node in nodes.values() {
            if let Body::Dir(entries) = &node.body {
                for child in entries.values() {
                    *nlink.entry(*child).or_default() += 1;
                }
            }
        }
        let mut used = 0u64;
        let live = nodes
            .iter()
            .map(|(ino, node)| {
                if let Body::File(f) = &node.body {
                    used += f.allocated_pages() * PAGE_U64;
                }
                let links = nlink.get(ino).copied().unwrap_or(0) + u32::from(*ino == Ino::ROOT);
                let l = Live {
                    node: node.clone(),
                    nlink: links,
                    opens: 0,
                };
                (*ino, l)
            })
            .collect();
        Model {
            live,
            durable: nodes,
            next_ino,
            handles: HashMap::new(),
            next_fh: 1,
            capacity: None,
            used,
            eio: HashSet::new(),
        }
    }

    /// The file system after a power cut now: the durable state reachable from the root.
    pub fn crash(&self) -> Model {
        Model::from_durable(self.durable_reachable(), self.next_ino)
    }

    /// Makes everything live durable (a clean unmount).
    pub fn sync_all(&mut self) {
        self.durable = self
            .live
            .iter()
            .map(|(ino, l)| (*ino, l.node.clone()))
            .collect();
        self.gc_durable();
    }

    /// The durable inodes a durable name reaches from the root (what an image holds), and
    /// the next free inode number.
    pub(crate) fn durable_image(&self) -> (HashMap<Ino, Node>, u64) {
        (self.durable_reachable(), self.next_ino)
    }

    fn durable_reachable(&self) -> HashMap<Ino, Node> {
        let keep = closure(&self.durable, [Ino::ROOT]);
        self.durable
            .iter()
            .filter(|(ino, _)| keep.contains(ino))
            .map(|(ino, n)| (*ino, n.clone()))
            .collect()
    }

    /// Drops durable inodes that can never become reachable again: neither reachable from
    /// the durable root nor from a live inode (which a later directory sync could name).
    fn gc_durable(&mut self) {
        let roots: Vec<Ino> = std::iter::once(Ino::ROOT)
            .chain(self.live.keys().copied())
            .collect();
        let keep = closure(&self.durable, roots);
        self.durable.retain(|ino, _| keep.contains(ino));
    }

    fn live(&self, ino: Ino) -> Result<&Live, Errno> {
        self.live.get(&ino).ok_or(Errno::ENOENT)
    }

    fn live_mut(&mut self, ino: Ino) -> Result<&mut Live, Errno> {
        self.live.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<OsString, Ino>, Errno> {
        match &self.live(ino)?.node.body {
            Body::Dir(e) => Ok(e),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<OsString, Ino>, Errno> {
        match &mut self.live_mut(ino)?.node.body {
            Body::Dir(e) => Ok(e),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileData, Errno> {
        match &mut self.live_mut(ino)?.node.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// The inode `name` in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.dir(parent)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// The inode at `path` (relative to the root; `.`/`..` are refused).
    pub fn resolve(&self, path: &Path) -> Result<Ino, Errno> {
        let mut at = Ino::ROOT;
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => at = self.lookup(at, name)?,
                Component::ParentDir | Component::Prefix(_) => return Err(Errno::EINVAL),
            }
        }
        Ok(at)
    }

    /// `stat` of a live inode.
    pub fn stat(&self, ino: Ino) -> Result<Stat, Errno> {
        let l = self.live(ino)?;
        let (size, pages) = match &l.node.body {
            Body::File(f) => (f.size(), f.allocated_pages()),
            Body::Dir(e) => (len_u64(e.len()), 0),
        };
        Ok(Stat {
            ino,
            kind: l.node.kind(),
            size,
            blocks: pages * (PAGE_U64 / 512),
            nlink: match l.node.body {
                Body::Dir(_) => 2,
                Body::File(_) => l.nlink,
            },
            attr: l.node.attr.clone(),
        })
    }

    fn new_node(&mut self, parent: Ino, name: &OsStr, node: Node) -> Result<Ino, Errno> {
        if name.is_empty() || name.len() > 255 || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        let now = node.attr.mtime;
        let entries = self.dir(parent)?;
        if entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = Ino(self.next_ino);
        self.next_ino += 1;
        self.live.insert(
            ino,
            Live {
                node,
                nlink: 1,
                opens: 0,
            },
        );
        self.dir_mut(parent)?.insert(name.to_os_string(), ino);
        self.touch(parent, now);
        Ok(ino)
    }

    fn touch(&mut self, ino: Ino, now: SystemTime) {
        if let Some(l) = self.live.get_mut(&ino) {
            l.node.attr.mtime = now;
            l.node.attr.ctime = now;
        }
    }

    /// Creates an empty file `name` in `parent` (`EEXIST` if the name is taken).
    pub fn create(&mut self, parent: Ino, name: &OsStr, who: Creator) -> Result<Ino, Errno> {
        let node = Node {
            attr: attr_of(who),
            body: Body::File(FileData::default()),
        };
        self.new_node(parent, name, node)
    }

    /// Creates an empty directory `name` in `parent`.
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, who: Creator) -> Result<Ino, Errno> {
        let node = Node {
            attr: attr_of(who),
            body: Body::Dir(BTreeMap::new()),
        };
        self.new_node(parent, name, node)
    }

    /// One name less for `ino`; forgets it when nothing refers to it any more.
    fn unref(&mut self, ino: Ino) {
        let Some(l) = self.live.get_mut(&ino) else {
            return;
        };
        l.nlink = l.nlink.saturating_sub(1);
        self.drop_if_unused(ino);
    }

    fn drop_if_unused(&mut self, ino: Ino) {
        let unused = self
            .live
            .get(&ino)
            .is_some_and(|l| l.nlink == 0 && l.opens == 0);
        if !unused {
            return;
        }
        if let Some(Live {
            node: Node {
                body: Body::File(f),
                ..
            },
            ..
        }) = self.live.remove(&ino)
        {
            self.used = self.used.saturating_sub(f.allocated_pages() * PAGE_U64);
        }
        self.eio.remove(&ino);
    }

    /// Removes the file `name` from `parent`.
    pub fn unlink(&mut self, parent: Ino, name: &OsStr, now: SystemTime) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if self.live(ino)?.node.kind() == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        self.dir_mut(parent)?.remove(name);
        self.touch(parent, now);
        self.unref(ino);
        Ok(())
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr, now: SystemTime) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if !self.dir(ino)?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir_mut(parent)?.remove(name);
        self.touch(parent, now);
        self.unref(ino);
        Ok(())
    }

    /// Moves `parent/name` to `new_parent/new_name`, replacing a file (or an empty
    /// directory, for a directory) there unless `noreplace`.
    pub fn rename(
        &mut self,
        (parent, name): (Ino, &OsStr),
        (new_parent, new_name): (Ino, &OsStr),
        noreplace: bool,
        now: SystemTime,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        if new_name.is_empty() || new_name.len() > 255 || new_name == "." || new_name == ".." {
            return Err(Errno::EINVAL);
        }
        let kind = self.live(ino)?.node.kind();
        if kind == Kind::Dir && closure_live(&self.live, ino).contains(&new_parent) {
            return Err(Errno::EINVAL);
        }
        let old = self.dir(new_parent)?.get(new_name).copied();
        if let Some(old) = old {
            if old == ino {
                return Ok(());
            }
            if noreplace {
                return Err(Errno::EEXIST);
            }
            match (kind, self.live(old)?.node.kind()) {
                (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
                (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !self.dir(old)?.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        self.dir_mut(parent)?.remove(name);
        self.dir_mut(new_parent)?
            .insert(new_name.to_os_string(), ino);
        self.touch(parent, now);
        self.touch(new_parent, now);
        if let Some(old) = old {
            self.unref(old);
        }
        Ok(())
    }

    /// Opens `ino`; `sync` for `O_DSYNC`/`O_SYNC`. Returns the handle.
    pub fn open(&mut self, ino: Ino, sync: bool) -> Result<u64, Errno> {
        self.live_mut(ino)?.opens += 1;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { ino, sync });
        Ok(fh)
    }

    /// The inode of handle `fh` and whether it was opened for synchronous writes.
    pub fn handle(&self, fh: u64) -> Option<(Ino, bool)> {
        self.handles.get(&fh).map(|h| (h.ino, h.sync))
    }

    /// Closes handle `fh`.
    pub fn release(&mut self, fh: u64) {
        if let Some(h) = self.handles.remove(&fh) {
            if let Some(l) = self.live.get_mut(&h.ino) {
                l.opens = l.opens.saturating_sub(1);
            }
            self.drop_if_unused(h.ino);
        }
    }

    /// Up to `len` bytes of file `ino` at `offset` (`EIO` if reads of it are made to fail).
    pub fn read(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        if self.eio.contains(&ino) {
            return Err(Errno::EIO);
        }
        match &self.live(ino)?.node.body {
            Body::File(f) => Ok(f.read(offset, len)),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// Refuses growth of `ino`'s allocation by `new_pages` past the capacity.
    fn reserve(&mut self, new_pages: u64) -> Result<(), Errno> {
        let want = self.used.saturating_add(new_pages.saturating_mul(PAGE_U64));
        if self.capacity.is_some_and(|cap| want > cap) {
            return Err(Errno::ENOSPC);
        }
        self.used = want;
        Ok(())
    }

    /// Writes `data` at `offset` of file `ino`; with `sync` the bytes are durable too.
    /// `ENOSPC` (nothing written) if the newly allocated pages do not fit the capacity.
    pub fn write(
        &mut self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        sync: bool,
        now: SystemTime,
    ) -> Result<(), Errno> {
        let end = offset
            .checked_add(len_u64(data.len()))
            .filter(|e| *e <= MAX_FILE_SIZE)
            .ok_or(Errno::EFBIG)?;
        let new = self.file_mut(ino)?.new_pages(offset, end - offset);
        self.reserve(new)?;
        self.file_mut(ino)?.write(offset, data);
        self.touch(ino, now);
        if sync {
            let live = &self.live.get(&ino).ok_or(Errno::ENOENT)?.node;
            let durable = self.durable.entry(ino).or_insert_with(|| live.empty_like());
            if let Body::File(f) = &mut durable.body {
                f.write(offset, data);
            }
        }
        Ok(())
    }

    /// Truncates or extends file `ino` to `len` bytes.
    pub fn set_len(&mut self, ino: Ino, len: u64, now: SystemTime) -> Result<(), Errno> {
        if len > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let f = self.file_mut(ino)?;
        let before = f.allocated_pages();
        f.set_len(len);
        let freed = before.saturating_sub(f.allocated_pages());
        self.used = self.used.saturating_sub(freed * PAGE_U64);
        self.touch(ino, now);
        Ok(())
    }

    /// Allocates `offset..offset + len` of file `ino`, growing it (`fallocate` mode 0).
    pub fn allocate(
        &mut self,
        ino: Ino,
        offset: u64,
        len: u64,
        now: SystemTime,
    ) -> Result<(), Errno> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= MAX_FILE_SIZE)
            .ok_or(Errno::EFBIG)?;
        let new = self.file_mut(ino)?.new_pages(offset, end - offset);
        self.reserve(new)?;
        self.file_mut(ino)?.allocate(offset, len);
        self.touch(ino, now);
        Ok(())
    }

    /// Changes the permission bits of `ino`.
    pub fn set_perm(&mut self, ino: Ino, perm: u16, now: SystemTime) -> Result<(), Errno> {
        let l = self.live_mut(ino)?;
        l.node.attr.perm = perm & 0o7777;
        l.node.attr.ctime = now;
        Ok(())
    }

    /// `fsync` of `ino`: a file's data, size and attributes, or a directory's entries,
    /// become durable.
    pub fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        let node = self.live(ino)?.node.clone();
        let Body::Dir(entries) = &node.body else {
            self.durable.insert(ino, node);
            return Ok(());
        };
        for child in entries.values() {
            if !self.durable.contains_key(child) {
                let empty = self.live(*child)?.node.empty_like();
                self.durable.insert(*child, empty);
            }
        }
        self.durable.insert(ino, node);
        self.gc_durable();
        Ok(())
    }

    /// The entries of directory `ino`, by name.
    pub fn readdir(&self, ino: Ino) -> Result<Vec<(OsString, Ino, Kind)>, Errno> {
        Ok(self
            .dir(ino)?
            .iter()
            .map(|(name, child)| {
                let kind = self.live.get(child).map_or(Kind::File, |l| l.node.kind());
                (name.clone(), *child, kind)
            })
            .collect())
    }

    /// Sets (`Some`) or lifts (`None`) the limit on allocated file data.
    pub fn set_capacity(&mut self, bytes: Option<u64>) {
        self.capacity = bytes;
    }

    /// The limit on allocated file data, if any.
    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    /// Bytes of file data allocated in the live state.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Makes reads of file `ino` fail with `EIO` (`on`), or work again.
    pub fn set_eio(&mut self, ino: Ino, on: bool) -> Result<(), Errno> {
        self.live(ino)?;
        if on {
            self.eio.insert(ino);
        } else {
            self.eio.remove(&ino);
        }
        Ok(())
    }

    /// Makes reads of every file work again.
    pub fn clear_eio(&mut self) {
        self.eio.clear();
    }
}

fn attr_of(who: Creator) -> Attr {
    Attr {
        perm: who.perm & 0o7777,
        uid: who.uid,
        gid: who.gid,
        mtime: who.now,
        ctime: who.now,
    }
}

/// The inodes `roots` reach through the directory entries of `nodes` (roots included if
/// present).
fn closure(nodes: &HashMap<Ino, Node>, roots: impl IntoIterator<Item = Ino>) -> HashSet<Ino> {
    let mut seen = HashSet::new();
    let mut todo: Vec<Ino> = roots.into_iter().collect();
    while let Some(ino) = todo.pop() {
        let Some(node) = nodes.get(&ino) else {
            continue;
        };
        if !seen.insert(ino) {
            continue;
        }
        if let Body::Dir(entries) = &node.body {
            todo.extend(entries.values().copied());
        }
    }
    seen
}

/// `dir` and every live inode below it.
fn closure_live(live: &HashMap<Ino, Live>, dir: Ino) -> HashSet<Ino> {
    let mut seen = HashSet::new();
    let mut todo = vec![dir];
    while let Some(ino) = todo.pop() {
        if !seen.insert(ino) {
            continue;
        }
        if let Some(Body::Dir(entries)) = live.get(&ino).map(|l| &l.node.body) {
            todo.extend(entries.values().copied());
        }
    }
    seen
}
