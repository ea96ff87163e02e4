//! [`FaultFs`]: the FUSE front of a [`Model`] (through `fuser`). Every request takes the
//! model's lock, so requests apply in one order; after a power cut every request fails with
//! `EIO`, like a disk that lost power.
//!
//! Files are opened `FOPEN_DIRECT_IO`: no request is answered from the kernel's page cache,
//! so every read reaches the model (injected `EIO`s are seen) and nothing the model lost
//! at a cut lingers in a cache. A write is durable at once when its request carries
//! `O_DSYNC` (the kernel sets it for descriptors opened `O_DSYNC`/`O_SYNC` and for
//! `pwritev2(RWF_DSYNC)`), or when its handle was opened so.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};
use nix::fcntl::OFlag;

use crate::data::{PAGE_U64, len_u64};
use crate::model::{Creator, Ino, Kind, Model, Stat};

/// Attributes and entries are not cached by the kernel: other processes (the test
/// looking at a sheep's files) always see the model.
const TTL: Duration = Duration::ZERO;
/// Capacity `statfs` reports without a limit: 1 TiB.
const UNLIMITED: u64 = 1 << 40;

/// Counters of what the kernel sent, for tests of the layer itself.
#[derive(Debug, Default)]
pub struct Counters {
    /// FUSE_FSYNC requests (files).
    pub fsyncs: AtomicU64,
    /// FUSE_FSYNCDIR requests.
    pub fsyncdirs: AtomicU64,
    /// Writes that were durable by themselves (`O_DSYNC` on the request or the handle).
    pub sync_writes: AtomicU64,
    /// All writes.
    pub writes: AtomicU64,
}

/// The state the FUSE threads and the control socket share.
#[derive(Debug)]
pub struct Shared {
    model: Mutex<Model>,
    /// Set by a power cut: the disk is gone.
    dead: AtomicBool,
    /// What the kernel sent.
    pub counters: Counters,
}

impl Shared {
    /// Shares `model`.
    pub fn new(model: Model) -> Arc<Shared> {
        Arc::new(Shared {
            model: Mutex::new(model),
            dead: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }

    /// The model, locked.
    pub fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the power: from now on every request fails with `EIO`. Returns the model
    /// (locked) so the caller can save what survived before anything else runs.
    pub fn cut(&self) -> MutexGuard<'_, Model> {
        let m = self.lock();
        self.dead.store(true, Ordering::SeqCst);
        m
    }

    /// The model for a request, or `EIO` after a cut.
    fn model(&self) -> Result<MutexGuard<'_, Model>, Errno> {
        let m = self.lock();
        if self.dead.load(Ordering::SeqCst) {
            return Err(Errno::EIO);
        }
        Ok(m)
    }
}

/// The `fuser` file system over a [`Shared`] model.
#[derive(Debug)]
pub struct FaultFs {
    shared: Arc<Shared>,
}

impl FaultFs {
    /// A file system serving `shared`.
    pub fn new(shared: Arc<Shared>) -> FaultFs {
        FaultFs { shared }
    }
}

fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

fn attr(s: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(s.ino.0),
        size: s.size,
        blocks: s.blocks,
        atime: s.attr.mtime,
        mtime: s.attr.mtime,
        ctime: s.attr.ctime,
        crtime: s.attr.ctime,
        kind: file_type(s.kind),
        perm: s.attr.perm,
        nlink: s.nlink,
        uid: s.attr.uid,
        gid: s.attr.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn is_sync(flags: i32) -> bool {
    flags & OFlag::O_DSYNC.bits() != 0
}

fn perm_of(mode: u32, umask: u32) -> u16 {
    u16::try_from(mode & !umask & 0o7777).unwrap_or(0o644)
}

fn creator(req: &Request, mode: u32, umask: u32) -> Creator {
    Creator {
        perm: perm_of(mode, umask),
        uid: req.uid(),
        gid: req.gid(),
        now: SystemTime::now(),
    }
}

/// Replies to an entry-returning request.
fn entry(reply: ReplyEntry, r: Result<Stat, nix::errno::Errno>) {
    match r {
        Ok(s) => reply.entry(&TTL, &attr(&s), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), nix::errno::Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl FaultFs {
    /// Runs `f` on the live model, or fails with `EIO` after a cut.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Model) -> Result<T, nix::errno::Errno>,
    ) -> Result<T, nix::errno::Errno> {
        let mut m = self.shared.model().map_err(|_| nix::errno::Errno::EIO)?;
        f(&mut m)
    }
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(
            reply,
            self.with(|m| m.lookup(Ino(parent.0), name).and_then(|i| m.stat(i))),
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with(|m| m.stat(Ino(ino.0))) {
            Ok(s) => reply.attr(&TTL, &attr(&s)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = Ino(ino.0);
        let now = SystemTime::now();
        let r = self.with(|m| {
            if let Some(len) = size {
                m.set_len(ino, len, now)?;
            }
            if let Some(mode) = mode {
                m.set_perm(ino, perm_of(mode, 0), now)?;
            }
            m.stat(ino)
        });
        match r {
            Ok(s) => reply.attr(&TTL, &attr(&s)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & nix::sys::stat::SFlag::S_IFMT.bits() != nix::sys::stat::SFlag::S_IFREG.bits() {
            reply.error(Errno::EPERM);
            return;
        }
        let who = creator(req, mode, umask);
        entry(
            reply,
            self.with(|m| m.create(Ino(parent.0), name, who).and_then(|i| m.stat(i))),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let who = creator(req, mode, umask);
        entry(
            reply,
            self.with(|m| m.mkdir(Ino(parent.0), name, who).and_then(|i| m.stat(i))),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let now = SystemTime::now();
        empty(reply, self.with(|m| m.unlink(Ino(parent.0), name, now)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let now = SystemTime::now();
        empty(reply, self.with(|m| m.rmdir(Ino(parent.0), name, now)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let now = SystemTime::now();
        empty(
            reply,
            self.with(|m| {
                m.rename(
                    (Ino(parent.0), name),
                    (Ino(newparent.0), newname),
                    noreplace,
                    now,
                )
            }),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|m| m.open(Ino(ino.0), is_sync(flags.0))) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let who = creator(req, mode, umask);
        let r = self.with(|m| {
            let ino = m.create(Ino(parent.0), name, who)?;
            let fh = m.open(ino, is_sync(flags))?;
            Ok((m.stat(ino)?, fh))
        });
        match r {
            Ok((s, fh)) => reply.created(
                &TTL,
                &attr(&s),
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        match self.with(|m| m.read(Ino(ino.0), offset, len)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let c = &self.shared.counters;
        c.writes.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        let r = self.with(|m| {
            let sync = is_sync(flags.0) || m.handle(fh.0).is_some_and(|(_, s)| s);
            if sync {
                c.sync_writes.fetch_add(1, Ordering::Relaxed);
            }
            m.write(Ino(ino.0), offset, data, sync, now)
        });
        match r {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Even after a cut: the kernel is letting go of the handle.
        self.shared.lock().release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        empty(reply, self.with(|m| m.fsync(Ino(ino.0))));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|m| m.stat(Ino(ino.0))) {
            Ok(s) if s.kind == Kind::Dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.with(|m| m.readdir(Ino(ino.0))) {
            Ok(e) => e,
            Err(e) => {
                reply.error(errno(e));
                return;
            }
        };
        let dots = [
            (OsStr::new(".").to_os_string(), Ino(ino.0), Kind::Dir),
            (OsStr::new("..").to_os_string(), Ino(ino.0), Kind::Dir),
        ];
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (name, child, kind)) in dots.into_iter().chain(entries).enumerate().skip(skip) {
            if reply.add(INodeNo(child.0), len_u64(i) + 1, file_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.shared
            .counters
            .fsyncdirs
            .fetch_add(1, Ordering::Relaxed);
        empty(reply, self.with(|m| m.fsync(Ino(ino.0))));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.with(|m| Ok((m.capacity(), m.used()))) {
            Ok((cap, used)) => {
                let blocks = cap.unwrap_or(UNLIMITED) / PAGE_U64;
                let free = blocks.saturating_sub(used.div_ceil(PAGE_U64));
                reply.statfs(blocks, free, free, 1 << 20, 1 << 20, 4096, 255, 4096);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let now = SystemTime::now();
        empty(
            reply,
            self.with(|m| m.allocate(Ino(ino.0), offset, length, now)),
        );
    }
}
