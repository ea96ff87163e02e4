//! Source hygiene enforced by `cargo test` (after rust-analyzer's `tidy.rs`): every Rust
//! file under `crates/` and `tests/` opens with a `//!` comment saying what it is for.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..").canonicalize().expect("workspace root")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for ent in entries {
        let path = ent.expect("read_dir entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_comment() {
    let root = workspace_root();
    let mut files = Vec::new();
    for top in ["crates", "tests"] {
        rust_files(&root.join(top), &mut files);
    }
    files.sort();
    assert!(
        files.len() > 10,
        "found only {files:?} under {}",
        root.display()
    );
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.lines().next().is_some_and(|l| l.starts_with("//!"))
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "{} file(s) do not start with a `//!` doc comment line:\n  {}",
        offenders.len(),
        offenders.join("\n  ")
    );
}
