//! The daemon's log: its level as Sheepdog numbers it (0 emerg … 7 debug), changeable while
//! running (SET_LOGLEVEL, `dog node log level set`), and the log file, rotated by size and
//! reopened on SIGHUP (for an external logrotate).
//!
//! The subscriber itself is built by the binary; it hands this module a [`Control`] with
//! the two actions only it can do (swap the level filter, reopen the file). Logging is
//! process-wide, so the control is too.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::level_filters::LevelFilter;

/// Sheepdog's level names, indexed by level.
pub const LEVEL_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];
/// The default level (info).
pub const DEFAULT_LEVEL: i32 = 6;
/// Our level above debug (`-l level=trace`); reported as debug to Sheepdog clients.
pub const TRACE_LEVEL: i32 = 8;

/// A level from its name (Sheepdog's, or `error`/`warn`/`trace`) or its number.
pub fn parse_level(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (0..=TRACE_LEVEL).contains(&n).then_some(n);
    }
    match s {
        "error" => Some(3),
        "warn" => Some(4),
        "trace" => Some(TRACE_LEVEL),
        _ => LEVEL_NAMES
            .iter()
            .position(|n| *n == s)
            .and_then(|i| i32::try_from(i).ok()),
    }
}

/// What `tracing` shows at a Sheepdog level: emerg..err are errors, warning warnings,
/// notice and info information, debug debug.
pub fn filter_for(level: i32) -> LevelFilter {
    match level {
        i32::MIN..=3 => LevelFilter::ERROR,
        4 => LevelFilter::WARN,
        5 | 6 => LevelFilter::INFO,
        7 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The actions on the subscriber the binary installed.
pub struct Control {
    /// Replaces the level filter.
    pub set_filter: Box<dyn Fn(LevelFilter) + Send + Sync>,
    /// Reopens the log file (SIGHUP).
    pub reopen: Box<dyn Fn() + Send + Sync>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();
static LEVEL: AtomicI32 = AtomicI32::new(DEFAULT_LEVEL);

/// Installs the subscriber's control, at start-up level `level`. Only the first call counts.
pub fn install(control: Control, level: i32) {
    LEVEL.store(level, Ordering::SeqCst);
    let _ = CONTROL.set(control);
}

/// The current level, as Sheepdog clients see it (0..=7).
pub fn level() -> i32 {
    LEVEL.load(Ordering::SeqCst).min(7)
}

/// Sets the level; `false` if `level` is outside 0..=7.
pub fn set_level(level: i32) -> bool {
    if !(0..=7).contains(&level) {
        return false;
    }
    LEVEL.store(level, Ordering::SeqCst);
    if let Some(c) = CONTROL.get() {
        (c.set_filter)(filter_for(level));
    }
    tracing::info!(
        level = LEVEL_NAMES
            .get(usize::try_from(level).unwrap_or(0))
            .copied(),
        "log level changed"
    );
    true
}

/// Reopens the log file (after an external rotation moved it away).
pub fn reopen() {
    if let Some(c) = CONTROL.get() {
        (c.reopen)();
    }
}

/// The log file: appends; once it exceeds `max_size` bytes it is renamed `NAME.1` (older
/// ones shifted up to `NAME.KEEP`, the oldest dropped) and a new one started. Cloning shares
/// the file.
#[derive(Debug, Clone)]
pub struct LogFile(Arc<Mutex<LogFileInner>>);

#[derive(Debug)]
struct LogFileInner {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    keep: u32,
}

impl LogFile {
    /// Opens (appends to) `path`, rotating at `max_size` bytes (0: never), keeping `keep`
    /// old files.
    pub fn open(path: &Path, max_size: u64, keep: u32) -> io::Result<LogFile> {
        let mut inner = LogFileInner {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            max_size,
            keep,
        };
        inner.open()?;
        Ok(LogFile(Arc::new(Mutex::new(inner))))
    }

    /// Closes and reopens the file at its path.
    pub fn reopen(&self) -> io::Result<()> {
        self.inner().open()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, LogFileInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LogFileInner {
    fn open(&mut self) -> io::Result<()> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    fn old(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                match std::fs::rename(self.old(n), self.old(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, self.old(1))?;
        }
        self.open()
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner();
        if inner.max_size > 0 && inner.size > 0 && inner.size + buf.len() as u64 > inner.max_size {
            // A failed rotation keeps logging to the current file.
            if let Err(e) = inner.rotate() {
                eprintln!("sheep: rotating {}: {e}", inner.path.display());
                if inner.file.is_none() {
                    inner.open()?;
                }
            }
        }
        let n = match inner.file.as_mut() {
            Some(f) => f.write(buf)?,
            None => return Err(io::ErrorKind::NotConnected.into()),
        };
        inner.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.inner().file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_name_and_number() {
        assert_eq!(parse_level("emerg"), Some(0));
        assert_eq!(parse_level("debug"), Some(7));
        assert_eq!(parse_level("warn"), Some(4));
        assert_eq!(parse_level("5"), Some(5));
        assert_eq!(parse_level("9"), None);
        assert_eq!(parse_level("loud"), None);
        assert_eq!(filter_for(3), LevelFilter::ERROR);
        assert_eq!(filter_for(6), LevelFilter::INFO);
        assert_eq!(filter_for(7), LevelFilter::DEBUG);
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sheep.log");
        let mut f = LogFile::open(&path, 100, 2)?;
        for i in 0..10 {
            f.write_all(format!("line {i:02} {}\n", "x".repeat(40)).as_bytes())?;
        }
        // 50 bytes a line, 100 a file: 5 files written, the current and 2 kept.
        let current = std::fs::read_to_string(&path)?;
        assert!(current.starts_with("line 08"), "{current}");
        assert!(std::fs::read_to_string(dir.path().join("sheep.log.1"))?.starts_with("line 06"));
        assert!(std::fs::read_to_string(dir.path().join("sheep.log.2"))?.starts_with("line 04"));
        assert!(!dir.path().join("sheep.log.3").exists());
        // Moved away by someone else, then reopened: a new file at the path.
        std::fs::rename(&path, dir.path().join("moved"))?;
        f.reopen()?;
        f.write_all(b"after\n")?;
        assert_eq!(std::fs::read_to_string(&path)?, "after\n");
        Ok(())
    }
}
