//! `dog vdi read|write`: byte ranges of a VDI to stdout / from stdin, at any offset and
//! length. The data path streams one object-sized chunk at a time: a helper thread
//! reads stdin (or writes stdout) while the connection carries the previous chunk, with
//! a bounded queue and recycled buffers, so memory stays at a few objects.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use sd_client::WriteOpts;
use sd_proto::inode::{InodeHeader, SD_INODE_HEADER_SIZE, SD_INODE_SIZE};
use sd_proto::{Flags, Vid};
use tokio::sync::mpsc;

use crate::ctx::{Ctx, WriteKind, strerror};
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE};
use crate::progress::{Progress, Stdout};
use crate::sd_err;
use crate::vdi::{index_entry, object_size, size_arg};

/// Chunks queued between the connection and the stdin/stdout thread.
const QUEUE_DEPTH: usize = 2;

/// One object-bounded piece of a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Data object index.
    pub idx: u64,
    /// Offset inside the object.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// Splits `[offset, offset + total)` at object boundaries.
#[derive(Debug, Clone)]
pub struct Chunks {
    pos: u64,
    end: u64,
    obj_size: u64,
}

/// The chunks of `total` bytes starting at `offset` with objects of `obj_size` bytes.
pub fn chunks(offset: u64, total: u64, obj_size: u64) -> Chunks {
    Chunks {
        pos: offset,
        end: offset.saturating_add(total),
        obj_size: obj_size.max(1),
    }
}

impl Iterator for Chunks {
    type Item = Chunk;
    fn next(&mut self) -> Option<Chunk> {
        if self.pos >= self.end {
            return None;
        }
        let idx = self.pos / self.obj_size;
        let offset = self.pos % self.obj_size;
        let len = (self.obj_size - offset).min(self.end - self.pos);
        self.pos += len;
        Some(Chunk { idx, offset, len })
    }
}

struct Range {
    inode: Bytes,
    hdr: InodeHeader,
    vid: Vid,
    offset: u64,
    total: u64,
    obj_size: u64,
}

/// Parses `NAME [OFFSET [LEN]]`, loads the inode and clips the range to the VDI.
async fn open_range(
    ctx: &mut Ctx,
    args: &[&[u8]],
    snapid: u32,
    tag: &[u8],
    what: &str,
) -> Result<Range, u8> {
    let Some(&name) = args.first() else {
        return Err(EXIT_USAGE);
    };
    let offset = match args.get(1) {
        Some(a) => size_arg(a).ok_or(EXIT_USAGE)?,
        None => 0,
    };
    let len = match args.get(2) {
        Some(a) => size_arg(a).ok_or(EXIT_USAGE)?,
        None => u64::MAX,
    };
    let inode_len = u32::try_from(SD_INODE_SIZE).unwrap_or(u32::MAX);
    let (vid, inode) = ctx.read_vdi_obj(name, snapid, tag, inode_len).await?;
    let Ok(hdr) = InodeHeader::decode(&inode) else {
        sd_err!("Failed to read a vdi {}", crate::format::text(name));
        return Err(EXIT_FAILURE);
    };
    if hdr.store_policy != 0 {
        sd_err!("Reading or writing a hyper volume is not supported by this dog");
        return Err(EXIT_FAILURE);
    }
    let Some(obj_size) = object_size(hdr.block_size_shift) else {
        sd_err!("Invalid block size shift {}", hdr.block_size_shift);
        return Err(EXIT_FAILURE);
    };
    if hdr.vdi_size < offset {
        sd_err!("{what} offset is beyond the end of the VDI");
        return Err(EXIT_FAILURE);
    }
    let total = len.min(hdr.vdi_size - offset);
    Ok(Range {
        inode,
        hdr,
        vid,
        offset,
        total,
        obj_size,
    })
}

impl Range {
    fn index(&self) -> &[u8] {
        self.inode.get(SD_INODE_HEADER_SIZE..).unwrap_or_default()
    }
}

/// `vdi read NAME [OFFSET [LEN]]`.
pub async fn read(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let snapid = ctx.opts.snapshot_id;
    let tag = ctx.opts.snapshot_tag.clone();
    let r = match open_range(ctx, args, snapid, &tag, "Read").await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    ctx.out.flush();
    let (tx, writer) = spawn_stdout_writer(ctx.data_out.take());
    let bar = Progress::new(r.total, Stdout::Data);
    let mut zeros = Bytes::new();
    let mut failed = false;
    for c in chunks(r.offset, r.total, r.obj_size) {
        let len = usize::try_from(c.len).unwrap_or(usize::MAX);
        let owner = index_entry(r.index(), c.idx);
        let data = if owner == 0 {
            if zeros.len() < len {
                zeros = Bytes::from(vec![0u8; len]);
            }
            zeros.slice(..len)
        } else {
            let (Ok(idx), Ok(len32)) = (u32::try_from(c.idx), u32::try_from(c.len)) else {
                failed = true;
                break;
            };
            let oid = Vid::from_masked(owner).data_oid(idx);
            match ctx.read_object(oid, len32, c.offset, false).await {
                Ok(d) if d.len() >= len => d.slice(..len),
                Ok(d) => {
                    let mut padded = BytesMut::from(d.as_ref());
                    padded.resize(len, 0);
                    padded.freeze()
                }
                Err(_) => {
                    sd_err!("Failed to read VDI");
                    failed = true;
                    break;
                }
            }
        };
        if tx.send(data).await.is_err() {
            break;
        }
        bar.inc(c.len);
    }
    drop(tx);
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("writer panicked")));
    if failed {
        bar.abandon();
        return Ok(EXIT_FAILURE);
    }
    match written {
        Ok(()) => {
            bar.finish();
            Ok(EXIT_SUCCESS)
        }
        Err(e) => {
            bar.abandon();
            sd_err!("Failed to write to stdout: {}", strerror(&e));
            Ok(EXIT_SYSFAIL)
        }
    }
}

/// Writes queued chunks to `sink`, or to standard output (then fsynced like the C
/// code's `fsync(STDOUT_FILENO)`; pipes and terminals refuse that, harmlessly).
fn spawn_stdout_writer(
    sink: Option<Box<dyn Write + Send>>,
) -> (mpsc::Sender<Bytes>, JoinHandle<std::io::Result<()>>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE_DEPTH);
    let handle = std::thread::spawn(move || {
        let stdout;
        let (mut w, file): (Box<dyn Write>, Option<&File>) = match sink {
            Some(s) => (s, None),
            None => {
                stdout = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
                (Box::new(&stdout), Some(&stdout))
            }
        };
        while let Some(b) = rx.blocking_recv() {
            w.write_all(&b)?;
        }
        w.flush()?;
        if let Some(f) = file {
            let _ = f.sync_data();
        }
        Ok(())
    });
    (tx, handle)
}

/// A chunk of stdin: `buf` holds the chunk's length, `got` bytes of it from stdin and
/// zeros after.
struct Filled {
    buf: Vec<u8>,
    got: usize,
}

/// Reads stdin chunk by chunk following `plan`, stopping after the first short chunk.
/// Buffers come back through the returned sender for reuse.
fn spawn_stdin_reader(
    plan: Chunks,
    source: Option<Box<dyn Read + Send>>,
) -> (
    mpsc::Receiver<std::io::Result<Filled>>,
    std::sync::mpsc::Sender<Vec<u8>>,
) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut f: Box<dyn Read> = match source {
            Some(s) => s,
            None => match std::io::stdin().as_fd().try_clone_to_owned() {
                Ok(fd) => Box::new(File::from(fd)),
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            },
        };
        for c in plan {
            let len = usize::try_from(c.len).unwrap_or(usize::MAX);
            let mut buf = back_rx.try_recv().unwrap_or_default();
            buf.resize(len, 0);
            let got = match read_full(f.as_mut(), &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if let Some(tail) = buf.get_mut(got..) {
                tail.fill(0);
            }
            if tx.blocking_send(Ok(Filled { buf, got })).is_err() || got < len {
                return;
            }
        }
    });
    (rx, back_tx)
}

/// `xread`: fills `buf` unless end of file comes first; returns the bytes read.
fn read_full(f: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match f.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `vdi write NAME [OFFSET [LEN]]`: unallocated objects are created, objects owned by
/// an ancestor are copied on write, own objects are overwritten; every created object
/// is recorded with a 4-byte inode write. A short stdin writes what it got and stops:
/// unlike Sheepdog's dog, which zero-filled the rest of the chunk (and wrote one more
/// all-zero object when input ended on an object boundary), so existing data past the
/// end of the input was overwritten with zeros.
pub async fn write(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = match open_range(ctx, args, 0, b"", "Write").await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let own = r.vid;
    let opts = WriteOpts {
        copies: r.hdr.nr_copies,
        copy_policy: r.hdr.copy_policy,
        flags: if ctx.opts.writeback {
            Flags::CACHE
        } else {
            Flags::default()
        },
    };
    let plan = chunks(r.offset, r.total, r.obj_size);
    let (mut rx, back) = spawn_stdin_reader(plan.clone(), ctx.data_in.take());
    let bar = Progress::new(r.total, Stdout::Text);
    let code = write_chunks(ctx, &r, plan, &mut rx, &back, &bar, opts).await;
    if code != EXIT_SUCCESS {
        bar.abandon();
        return Ok(code);
    }
    // On a writeback cluster the data is durable only after a flush; `vdi write` returns
    // when it is (a writethrough sheep answers at once).
    let Some(c) = ctx.conn().await else {
        bar.abandon();
        return Ok(EXIT_SYSFAIL);
    };
    if let Err(e) = c.flush_vdi(own).await {
        bar.abandon();
        sd_err!("Failed to flush VDI: {e}");
        return Ok(EXIT_FAILURE);
    }
    bar.finish();
    Ok(EXIT_SUCCESS)
}

/// The chunk loop of `vdi write`; the exit code.
async fn write_chunks(
    ctx: &mut Ctx,
    r: &Range,
    plan: Chunks,
    rx: &mut mpsc::Receiver<std::io::Result<Filled>>,
    back: &std::sync::mpsc::Sender<Vec<u8>>,
    bar: &Progress,
    opts: WriteOpts,
) -> u8 {
    let own = r.vid;
    for c in plan {
        let Ok(idx) = u32::try_from(c.idx) else {
            return EXIT_FAILURE;
        };
        let owner = index_entry(r.index(), c.idx);
        let (kind, cow) = if owner == 0 {
            (WriteKind::Create, None)
        } else if owner != own.get() {
            (
                WriteKind::Create,
                Some(Vid::from_masked(owner).data_oid(idx)),
            )
        } else {
            (WriteKind::Overwrite, None)
        };
        let filled = match rx.recv().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                sd_err!("Failed to read from stdin: {}", strerror(&e));
                return EXIT_SYSFAIL;
            }
            None => {
                sd_err!("Failed to read from stdin");
                return EXIT_SYSFAIL;
            }
        };
        let short = filled.got < filled.buf.len();
        if filled.got == 0 {
            break;
        }
        let data = filled.buf.get(..filled.got).unwrap_or_default();
        if ctx
            .write_object(kind, own.data_oid(idx), cow, c.offset, data, opts)
            .await
            .is_err()
        {
            sd_err!("Failed to write VDI");
            return EXIT_FAILURE;
        }
        if kind == WriteKind::Create && ctx.set_index_entry(own, idx, opts).await.is_err() {
            return EXIT_FAILURE;
        }
        bar.inc(u64::try_from(filled.got).unwrap_or(0));
        let _ = back.send(filled.buf);
        if short {
            break;
        }
    }
    EXIT_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(idx: u64, offset: u64, len: u64) -> Chunk {
        Chunk { idx, offset, len }
    }

    #[test]
    fn chunks_split_at_object_boundaries() {
        let mb4 = 4 << 20;
        assert_eq!(chunks(0, 6, mb4).collect::<Vec<_>>(), vec![c(0, 0, 6)]);
        assert_eq!(
            chunks(4_194_300, 8, mb4).collect::<Vec<_>>(),
            vec![c(0, 4_194_300, 4), c(1, 0, 4)]
        );
        assert_eq!(
            chunks(1000, 2 * mb4, mb4).collect::<Vec<_>>(),
            vec![c(0, 1000, mb4 - 1000), c(1, 0, mb4), c(2, 0, 1000)]
        );
        assert_eq!(chunks(5, 0, mb4).count(), 0);
        assert_eq!(chunks(0, 16 << 20, mb4).count(), 4);
    }
}
