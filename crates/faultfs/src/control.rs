//! The control protocol: one command per line on the unix socket `faultfs --control PATH`
//! listens on, one answer line each (`ok[ DETAIL]` or `err MESSAGE`).
//!
//! | command | effect |
//! |---|---|
//! | `cut` | power cut: drop everything not durable, save the durable state to IMAGE, unmount, exit |
//! | `unmount` | clean unmount: make everything durable, save, unmount, exit |
//! | `sync` | make everything durable now (as `syncfs`) |
//! | `capacity BYTES` / `capacity off` | writes that would allocate past BYTES of file data fail with `ENOSPC` |
//! | `eio PATH` / `eio-clear PATH` / `eio-clear` | reads of the file at PATH (relative to the mount) fail with `EIO` / work again |
//! | `stat` | `ok used=B capacity=B\|off fsyncs=N fsyncdirs=N writes=N sync_writes=N` |

use std::path::PathBuf;

/// One control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Power cut.
    Cut,
    /// Clean unmount.
    Unmount,
    /// Make everything durable.
    Sync,
    /// Set or lift the capacity.
    Capacity(Option<u64>),
    /// Make reads of a file fail.
    Eio(PathBuf),
    /// Make reads of one file (`Some`) or of every file work again.
    EioClear(Option<PathBuf>),
    /// Report usage and counters.
    Stat,
}

/// Parses one command line (without its newline).
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (word, arg) = match line.split_once(char::is_whitespace) {
        Some((w, a)) => (w, Some(a.trim())),
        None => (line, None),
    };
    match (word, arg) {
        ("cut", None) => Ok(Command::Cut),
        ("unmount", None) => Ok(Command::Unmount),
        ("sync", None) => Ok(Command::Sync),
        ("stat", None) => Ok(Command::Stat),
        ("capacity", Some("off")) => Ok(Command::Capacity(None)),
        ("capacity", Some(n)) => n
            .parse()
            .map(|n| Command::Capacity(Some(n)))
            .map_err(|_| format!("capacity wants BYTES or off, not {n:?}")),
        ("eio", Some(p)) => Ok(Command::Eio(PathBuf::from(p))),
        ("eio-clear", None) => Ok(Command::EioClear(None)),
        ("eio-clear", Some(p)) => Ok(Command::EioClear(Some(PathBuf::from(p)))),
        _ => Err(format!("unknown command {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse("cut"), Ok(Command::Cut));
        assert_eq!(parse(" unmount \n"), Ok(Command::Unmount));
        assert_eq!(parse("capacity 4096"), Ok(Command::Capacity(Some(4096))));
        assert_eq!(parse("capacity off"), Ok(Command::Capacity(None)));
        assert_eq!(
            parse("eio obj/00000001"),
            Ok(Command::Eio("obj/00000001".into()))
        );
        assert_eq!(parse("eio-clear"), Ok(Command::EioClear(None)));
        assert!(parse("capacity -1").is_err());
        assert!(parse("cut now").is_err());
        assert!(parse("").is_err());
    }
}
