//! A bounded cache of open object files, so the I/O path costs one `pread`/`pwrite` rather
//! than `open` + `fstat` + the I/O + `close`.
//!
//! **Invariant:** an entry is dropped before its object is removed, replaced (create renames
//! over it) or moved aside, so a cached descriptor always names the file now at the
//! object's path.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard};

use sd_proto::Oid;

/// Open objects kept at most.
const CAPACITY: usize = 4096;

/// An open object: the descriptor (read-write, `O_DSYNC` in writethrough mode) and the
/// file's length when opened (objects never change size in place).
#[derive(Debug, Clone)]
pub(crate) struct OpenObject {
    pub(crate) file: Arc<File>,
    pub(crate) len: u64,
}

#[derive(Debug, Default)]
pub(crate) struct FdCache {
    map: Mutex<HashMap<Oid, OpenObject>>,
}

impl FdCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<Oid, OpenObject>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, oid: Oid) -> Option<OpenObject> {
        self.lock().get(&oid).cloned()
    }

    pub(crate) fn insert(&self, oid: Oid, o: OpenObject) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            // Any victim will do: a miss costs one open.
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(oid, o);
    }

    pub(crate) fn forget(&self, oid: Oid) {
        self.lock().remove(&oid);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}
