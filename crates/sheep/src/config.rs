//! The daemon's configuration, built by `main` from the command line.

use std::path::PathBuf;

use sd_cluster::DriverSpec;
use sd_store::SyncMode;

/// Everything `sheep::run` needs to know besides its listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base directory: store, epoch log, config, log file.
    pub dir: PathBuf,
    /// Failure zone; `None` derives it from the address.
    pub zone: Option<u32>,
    /// Vnodes of this node (0 = gateway only).
    pub vnodes: u16,
    /// Vnodes were fixed with `-V` rather than derived from disk space ("auto vnodes").
    pub fixed_vnodes: bool,
    /// Membership driver.
    pub cluster: DriverSpec,
    /// How object writes reach the disk.
    pub sync: SyncMode,
    /// What one client (and all of them together) may make this daemon hold.
    pub limits: Limits,
    /// Address advertised to other sheep instead of the listener's (`-y`).
    pub advertise: Option<std::net::IpAddr>,
    /// Recovery throttling (`-R max=N,interval=MS`).
    pub recovery: RecoveryThrottle,
    /// Writeback behaviour (used when `sync` is `Writeback`).
    pub writeback: WritebackConfig,
    /// Where to serve Prometheus metrics (`--metrics`); `None`: not served.
    pub metrics: Option<std::net::SocketAddr>,
    /// Threads serving connections (`--threads`), each a single-threaded runtime (see
    /// `shards`); 1: everything runs on the runtime `sheep::run` is called on.
    pub threads: usize,
    /// Background scrub (`--scrub-interval`, `--scrub-rate`).
    pub scrub: ScrubConfig,
}

/// The background scrub: how often a pass starts and how fast it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Time from the end of one pass to the start of the next; zero: no scrub.
    pub interval: std::time::Duration,
    /// Bytes per second this node hashes (its own copies), at most.
    pub rate: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            interval: std::time::Duration::ZERO,
            rate: 32 << 20,
        }
    }
}

/// Bounds on what clients can make the daemon hold: at most three pools of `max_buffered`
/// bytes, plus a few KiB per connection (`--max-connections`, `--max-inflight`,
/// `--max-payload`, `--max-buffered`, `--io-timeout`); see `server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (clients and other sheep); more are closed at accept.
    pub max_connections: usize,
    /// Requests one connection may have in flight (read and not yet answered).
    pub max_inflight: usize,
    /// The largest request payload accepted (at most [`sd_proto::MAX_REQUEST_PAYLOAD`]);
    /// a larger one is answered INVALID_PARMS and skipped without being buffered.
    pub max_payload: usize,
    /// Bytes of request payloads and reply buffers that the requests of one class
    /// (`server::Class`: client, peer, leaf) may hold at once, all connections together;
    /// each class has a pool of this size.
    pub max_buffered: usize,
    /// A request frame begun must arrive completely, and an answer must be written,
    /// within this; otherwise the connection is closed. Idle connections are kept.
    pub io_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_inflight: 32,
            max_payload: sd_proto::MAX_REQUEST_PAYLOAD,
            max_buffered: 128 << 20,
            io_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// How a FLUSH is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// Only the nodes written for the VDI, each syncing only that VDI's dirty objects.
    #[default]
    Dirty,
    /// Sheepdog 2012: every node `syncfs()`es its store (kept for comparison).
    Syncfs,
}

impl std::str::FromStr for FlushMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dirty" => Ok(FlushMode::Dirty),
            "syncfs" => Ok(FlushMode::Syncfs),
            _ => Err(format!("unknown flush mode {s:?} (dirty or syncfs)")),
        }
    }
}

/// Writeback limits (`--writeback-max-age`, `--writeback-max-dirty`, `--flush`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritebackConfig {
    /// Dirty data older than this is flushed in the background.
    pub max_age: std::time::Duration,
    /// New writes wait while more than this many bytes are dirty.
    pub max_dirty: u64,
    /// How flushes are carried out.
    pub flush: FlushMode,
}

impl Default for WritebackConfig {
    fn default() -> Self {
        WritebackConfig {
            max_age: std::time::Duration::from_secs(1),
            max_dirty: 256 << 20,
            flush: FlushMode::Dirty,
        }
    }
}

/// At most `max` objects recovered per `interval`, at most `max` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryThrottle {
    /// Objects per interval (and in flight).
    pub max: usize,
    /// The interval; zero means no rate limit, only the parallelism bound.
    pub interval: std::time::Duration,
}

impl Default for RecoveryThrottle {
    fn default() -> Self {
        RecoveryThrottle {
            max: 4,
            interval: std::time::Duration::ZERO,
        }
    }
}

impl std::str::FromStr for RecoveryThrottle {
    type Err = String;

    /// Parses `max=N,interval=MS` (either key may be omitted).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut t = RecoveryThrottle::default();
        for kv in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {kv:?}"))?;
            let n: u64 = v.parse().map_err(|_| format!("bad number {v:?}"))?;
            match k {
                "max" if n > 0 => t.max = usize::try_from(n).unwrap_or(usize::MAX),
                "interval" => t.interval = std::time::Duration::from_millis(n),
                _ => return Err(format!("unknown or invalid {kv:?} (max=N>0,interval=MS)")),
            }
        }
        Ok(t)
    }
}

impl Config {
    /// Defaults for a store in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Config {
            dir,
            zone: None,
            vnodes: sd_proto::node::SD_DEFAULT_VNODES,
            fixed_vnodes: false,
            cluster: DriverSpec::default(),
            sync: SyncMode::Writethrough,
            limits: Limits::default(),
            advertise: None,
            recovery: RecoveryThrottle::default(),
            writeback: WritebackConfig::default(),
            metrics: None,
            threads: 1,
            scrub: ScrubConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recovery_throttle() {
        let t: RecoveryThrottle = "max=8,interval=100".parse().unwrap();
        assert_eq!((t.max, t.interval.as_millis()), (8, 100));
        let t: RecoveryThrottle = "max=2".parse().unwrap();
        assert_eq!((t.max, t.interval.as_millis()), (2, 0));
        assert!("max=0".parse::<RecoveryThrottle>().is_err());
        assert!("speed=3".parse::<RecoveryThrottle>().is_err());
        assert!("max".parse::<RecoveryThrottle>().is_err());
    }
}
