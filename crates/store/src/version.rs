//! Copy versions: the epoch of the last write to each local copy, kept with the object
//! file as the extended attribute `user.sd.epoch` (4 bytes, little-endian), so it survives
//! restarts and travels with the file through the create's rename.
//!
//! Recovery compares the versions of the copies live nodes hold and takes the highest: every
//! write acknowledged in an epoch reached all of that epoch's holders, so a copy last
//! written in a later epoch holds every acknowledged write an earlier one does. Version 0
//! means unknown: an object written before versions existed, or a file system without user
//! extended attributes (then recovery falls back to its placement order).

use std::collections::HashMap;
use std::fs::File;

use sd_proto::Oid;

use crate::error::StoreError;
use crate::store::Store;

/// The attribute's name.
const XATTR: &str = "user.sd.epoch";

/// The last version set per object by this process, so that a write sets the attribute
/// only when the epoch changed.
#[derive(Debug, Default)]
pub(crate) struct Versions(std::sync::Mutex<HashMap<Oid, u32>>);

impl Versions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Oid, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn forget(&self, oid: Oid) {
        self.map().remove(&oid);
    }
}

/// Writes `version` on `file`; a file system without user attributes is not an error.
pub(crate) fn write_version(file: &File, version: u32) -> std::io::Result<()> {
    match rustix::fs::fsetxattr(
        file,
        XATTR,
        &version.to_le_bytes(),
        rustix::fs::XattrFlags::empty(),
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::NOSYS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The version `file` carries (0: none, or unreadable).
pub(crate) fn read_version(file: &File) -> u32 {
    let mut buf = [0u8; 4];
    match rustix::fs::fgetxattr(file, XATTR, &mut buf[..]) {
        Ok(4) => u32::from_le_bytes(buf),
        _ => 0,
    }
}

impl Store {
    /// The version of the local copy of `oid` (0: unknown). [`StoreError::NoObject`] if
    /// there is none.
    pub fn version(&self, oid: Oid) -> Result<u32, StoreError> {
        let o = self.cached_object(oid)?;
        Ok(read_version(&o.file))
    }

    /// Records that the local copy of `oid` was written in epoch `version` (a no-op when it
    /// already says so).
    pub fn set_version(&self, oid: Oid, version: u32) -> Result<(), StoreError> {
        if self.has_version(oid, version) {
            return Ok(());
        }
        let o = self.cached_object(oid)?;
        write_version(&o.file, version)
            .map_err(|e| StoreError::object(oid, "fsetxattr", &self.object_path(oid), e))?;
        self.versions.map().insert(oid, version);
        Ok(())
    }

    /// Whether this process knows the local copy of `oid` to carry `version` already.
    pub(crate) fn has_version(&self, oid: Oid, version: u32) -> bool {
        self.versions.map().get(&oid) == Some(&version)
    }

    pub(crate) fn remember_version(&self, oid: Oid, version: u32) {
        self.versions.map().insert(oid, version);
    }
}
