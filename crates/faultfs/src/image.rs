//! The image file: the durable state of a [`Model`] on the real disk, so that a later mount
//! shows the disk as a power cut left it.
//!
//! Layout (little endian): magic `FAULTFS\x01`, `next_ino: u64`, `count: u64`, then `count`
//! inodes: `ino: u64`, `kind: u8` (0 file, 1 directory), `perm: u16`, `uid: u32`,
//! `gid: u32`, mtime and ctime as `secs: u64, nanos: u32`; a file continues with
//! `size: u64, pages: u64` and per page `index: u64` plus 4096 bytes; a directory with
//! `entries: u64` and per entry `name_len: u16`, the name, `ino: u64`.
//!
//! Decoding checks every count and reference: a bad image is an [`ImageError`], never a
//! panic or a dangling entry.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::data::{FileData, MAX_FILE_SIZE, PAGE, PAGE_U64, Page, len_u64};
use crate::model::{Attr, Body, Ino, Model, Node};

const MAGIC: &[u8; 8] = b"FAULTFS\x01";
/// Longest file name (as Linux).
const NAME_MAX: usize = 255;

/// Why an image could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing the file failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What failed.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid image.
    #[error("{} is not a valid faultfs image: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Loads the durable state saved in `path`; a missing file is an empty file system.
pub fn load(path: &Path) -> Result<Model, ImageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Model::new(SystemTime::now()));
        }
        Err(source) => {
            return Err(ImageError::Io {
                op: "open",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    decode(&mut BufReader::new(file)).map_err(|e| match e {
        Decode::Io(source) if source.kind() != io::ErrorKind::UnexpectedEof => ImageError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        },
        Decode::Io(_) => ImageError::Corrupt {
            path: path.to_path_buf(),
            why: "truncated".into(),
        },
        Decode::Bad(why) => ImageError::Corrupt {
            path: path.to_path_buf(),
            why,
        },
    })
}

/// Saves the durable state of `model` to `path` atomically and durably (temporary file,
/// fsync, rename, fsync of the directory).
pub fn save(model: &Model, path: &Path) -> Result<(), ImageError> {
    let io_err = |op, p: &Path| {
        let p = p.to_path_buf();
        move |source| ImageError::Io {
            op,
            path: p,
            source,
        }
    };
    let mut tmp_name = path.as_os_str().to_os_string();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let mut w = BufWriter::new(file);
    encode(model, &mut w).map_err(io_err("write", &tmp))?;
    let file = w
        .into_inner()
        .map_err(|e| io_err("write", &tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename", path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Writes the durable state of `model` (see the module docs).
pub fn encode(model: &Model, w: &mut impl Write) -> io::Result<()> {
    let (nodes, next_ino) = model.durable_image();
    let mut inos: Vec<&Ino> = nodes.keys().collect();
    inos.sort_unstable();
    w.write_all(MAGIC)?;
    w.write_all(&next_ino.to_le_bytes())?;
    w.write_all(&len_u64(nodes.len()).to_le_bytes())?;
    for ino in inos {
        let Some(node) = nodes.get(ino) else {
            continue;
        };
        w.write_all(&ino.0.to_le_bytes())?;
        let kind: u8 = match node.body {
            Body::File(_) => 0,
            Body::Dir(_) => 1,
        };
        w.write_all(&[kind])?;
        w.write_all(&node.attr.perm.to_le_bytes())?;
        w.write_all(&node.attr.uid.to_le_bytes())?;
        w.write_all(&node.attr.gid.to_le_bytes())?;
        write_time(w, node.attr.mtime)?;
        write_time(w, node.attr.ctime)?;
        match &node.body {
            Body::File(f) => {
                w.write_all(&f.size().to_le_bytes())?;
                w.write_all(&f.allocated_pages().to_le_bytes())?;
                for (idx, page) in f.pages() {
                    w.write_all(&idx.to_le_bytes())?;
                    w.write_all(page)?;
                }
            }
            Body::Dir(entries) => {
                w.write_all(&len_u64(entries.len()).to_le_bytes())?;
                for (name, child) in entries {
                    let name = name.as_bytes();
                    let len = u16::try_from(name.len())
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                    w.write_all(&len.to_le_bytes())?;
                    w.write_all(name)?;
                    w.write_all(&child.0.to_le_bytes())?;
                }
            }
        }
    }
    Ok(())
}

fn write_time(w: &mut impl Write, t: SystemTime) -> io::Result<()> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    w.write_all(&d.as_secs().to_le_bytes())?;
    w.write_all(&d.subsec_nanos().to_le_bytes())
}

/// A decoding failure before it is tied to a path.
#[derive(Debug)]
pub(crate) enum Decode {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for Decode {
    fn from(e: io::Error) -> Self {
        Decode::Io(e)
    }
}

fn bad(why: impl Into<String>) -> Decode {
    Decode::Bad(why.into())
}

fn array<const N: usize>(r: &mut impl Read) -> Result<[u8; N], Decode> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn u64_le(r: &mut impl Read) -> Result<u64, Decode> {
    array(r).map(u64::from_le_bytes)
}

fn u32_le(r: &mut impl Read) -> Result<u32, Decode> {
    array(r).map(u32::from_le_bytes)
}

fn u16_le(r: &mut impl Read) -> Result<u16, Decode> {
    array(r).map(u16::from_le_bytes)
}

fn read_time(r: &mut impl Read) -> Result<SystemTime, Decode> {
    let secs = u64_le(r)?;
    let nanos = u32_le(r)?;
    if nanos >= 1_000_000_000 {
        return Err(bad("nanoseconds out of range"));
    }
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| bad("time out of range"))
}

/// Reads an image (see the module docs) into the model a mount of it shows.
pub(crate) fn decode(r: &mut impl Read) -> Result<Model, Decode> {
    if &array::<8>(r)? != MAGIC {
        return Err(bad("bad magic"));
    }
    let next_ino = u64_le(r)?;
    let count = u64_le(r)?;
    let mut nodes: HashMap<Ino, Node> = HashMap::new();
    for _ in 0..count {
        let ino = Ino(u64_le(r)?);
        if ino.0 == 0 || ino.0 >= next_ino {
            return Err(bad(format!("inode {} outside 1..{next_ino}", ino.0)));
        }
        let [kind] = array::<1>(r)?;
        let attr = Attr {
            perm: u16_le(r)? & 0o7777,
            uid: u32_le(r)?,
            gid: u32_le(r)?,
            mtime: read_time(r)?,
            ctime: read_time(r)?,
        };
        let body = match kind {
            0 => Body::File(read_file(r)?),
            1 => Body::Dir(read_dir(r)?),
            k => return Err(bad(format!("inode {}: unknown kind {k}", ino.0))),
        };
        if nodes.insert(ino, Node { attr, body }).is_some() {
            return Err(bad(format!("inode {} twice", ino.0)));
        }
    }
    if !matches!(nodes.get(&Ino::ROOT).map(|n| &n.body), Some(Body::Dir(_))) {
        return Err(bad("no root directory"));
    }
    for (ino, node) in &nodes {
        if let Body::Dir(entries) = &node.body
            && let Some((name, child)) = entries.iter().find(|(_, c)| !nodes.contains_key(c))
        {
            return Err(bad(format!(
                "inode {}: entry {name:?} names missing inode {}",
                ino.0, child.0
            )));
        }
    }
    Ok(Model::from_durable(nodes, next_ino))
}

fn read_file(r: &mut impl Read) -> Result<FileData, Decode> {
    let size = u64_le(r)?;
    if size > MAX_FILE_SIZE {
        return Err(bad(format!("file size {size} too large")));
    }
    let n = u64_le(r)?;
    if n > size.div_ceil(PAGE_U64) {
        return Err(bad(format!("{n} pages in a file of {size} bytes")));
    }
    let mut pages: BTreeMap<u64, Page> = BTreeMap::new();
    for _ in 0..n {
        let idx = u64_le(r)?;
        let page: [u8; PAGE] = array(r)?;
        if idx >= size.div_ceil(PAGE_U64) || pages.insert(idx, Arc::new(page)).is_some() {
            return Err(bad(format!("bad page index {idx}")));
        }
    }
    Ok(FileData::from_parts(size, pages))
}

fn read_dir(r: &mut impl Read) -> Result<BTreeMap<OsString, Ino>, Decode> {
    let n = u64_le(r)?;
    let mut entries = BTreeMap::new();
    for _ in 0..n {
        let len = usize::from(u16_le(r)?);
        if len == 0 || len > NAME_MAX {
            return Err(bad(format!("name of {len} bytes")));
        }
        let mut name = vec![0u8; len];
        r.read_exact(&mut name)?;
        if name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".." {
            return Err(bad(format!(
                "bad name {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        let child = Ino(u64_le(r)?);
        if child == Ino::ROOT || entries.insert(OsString::from_vec(name), child).is_some() {
            return Err(bad("bad or duplicate entry"));
        }
    }
    Ok(entries)
}
