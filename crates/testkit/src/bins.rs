//! Locating the `sheep` and `dog` executables built by cargo.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Environment variable overriding the directory the binaries are taken from.
pub const BIN_DIR_ENV: &str = "SHEEPDOG_BIN_DIR";

/// The directory holding the workspace binaries: `$SHEEPDOG_BIN_DIR` if set, else the
/// cargo profile directory of the running test (`target/<profile>/deps/<test>` →
/// `target/<profile>`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the running test executable")?;
    let mut dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir
            .parent()
            .with_context(|| format!("{} has no parent directory", dir.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// The path of the workspace binary `name` (`sheep` or `dog`), which must exist.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = bin_dir()?;
    let path = dir.join(name);
    if !is_file(&path) {
        bail!(
            "{} does not exist: run `cargo build --workspace --bins` first \
             (or set {BIN_DIR_ENV} to the directory holding `{name}`)",
            path.display()
        );
    }
    Ok(path)
}

fn is_file(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| m.is_file())
}
