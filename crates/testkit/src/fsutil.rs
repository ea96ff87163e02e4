//! Small file-system helpers for assertions about what a daemon left on disk.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;

/// The names of the entries of `dir` (not recursive), sorted. Names that are not UTF-8 are
/// converted lossily, so they still show up in an assertion message.
pub fn dir_names(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for ent in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let ent = ent.with_context(|| format!("listing {}", dir.display()))?;
        out.insert(ent.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}
