//! Non-object files of the base directory (`config`, `epoch/00000001`, ...), replaced
//! atomically and durably.
//!
//! Names are fixed strings chosen by the daemon; each is a relative path of plain
//! components, so every file stays below the base directory. One writer per name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{StoreError, len_u64};
use crate::store::fsync_dir_path;

/// The largest metadata file [`read_file`] accepts (an epoch log of 6144 nodes is ~0.5 MiB).
pub const MAX_META_FILE: u64 = 16 << 20;

/// Replaces `dir/name` with `bytes`: writes `name.tmp`, fsyncs it, renames it over
/// `name` and fsyncs the parent directory. Missing parent directories are created and
/// made durable.
pub fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let path = resolve(dir, name)?;
    let parent = path.parent().unwrap_or(dir);
    create_dirs(dir, parent)?;
    let tmp = path.with_file_name(tmp_file_name(&path));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &path, e))?;
    fsync_dir_path(parent)
}

/// The contents of `dir/name`, or `None` if it does not exist.
pub fn read_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let path = resolve(dir, name)?;
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("open", &path, e)),
    };
    let size = file
        .metadata()
        .map_err(|e| StoreError::io("fstat", &path, e))?
        .len();
    if size > MAX_META_FILE {
        return Err(StoreError::MetaTooLarge {
            path,
            size,
            max: MAX_META_FILE,
        });
    }
    let mut bytes = Vec::new();
    // Read one byte past the limit so a file that grew after fstat is still caught.
    (&file)
        .take(MAX_META_FILE.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", &path, e))?;
    let size = len_u64(bytes.len());
    if size > MAX_META_FILE {
        return Err(StoreError::MetaTooLarge {
            path,
            size,
            max: MAX_META_FILE,
        });
    }
    Ok(Some(bytes))
}

/// `dir/name` if `name` is a non-empty relative path of plain components.
fn resolve(dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
    let rel = Path::new(name);
    let plain = !name.is_empty()
        && !name.contains('\0')
        && !name.ends_with('/')
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(StoreError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(dir.join(rel))
}

/// `<file name>.tmp`.
fn tmp_file_name(path: &Path) -> std::ffi::OsString {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    name
}

/// Creates `dir` and the directories from `dir` down to `parent`, fsyncing the
/// directory that holds each one created below `dir`.
fn create_dirs(dir: &Path, parent: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(|e| StoreError::io("mkdir", dir, e))?;
    let Ok(rel) = parent.strip_prefix(dir) else {
        return Ok(());
    };
    let mut at = dir.to_path_buf();
    for component in rel.components() {
        let holder = at.clone();
        at.push(component);
        match fs::create_dir(&at) {
            Ok(()) => fsync_dir_path(&holder)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io("mkdir", &at, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let dir = Path::new("/base");
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "./config",
            "a/",
            "a\0b",
        ] {
            assert!(
                matches!(resolve(dir, bad), Err(StoreError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        for good in ["config", "epoch/00000001", "a/b/c", "node_config"] {
            assert_eq!(resolve(dir, good).ok(), Some(dir.join(good)), "{good:?}");
        }
    }
}
