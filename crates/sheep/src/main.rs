//! `sheep [options] DIR`: parses the command line, takes the store lock, binds, daemonizes
//! (unless `-f`), sets up logging and runs the node.

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use sd_cluster::DriverSpec;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::prelude::*;

/// Command line, as Sheepdog 1.0's `sheep` (see shared/spec/sheep-cli.md).
#[derive(Debug, Parser)]
#[command(
    name = "sheep",
    version,
    about = "sheepdog-rs storage daemon",
    disable_version_flag = true
)]
struct Args {
    /// Base directory: objects, epoch log, config and sheep.log.
    dir: PathBuf,
    /// Listen port.
    #[arg(short = 'p', long = "port", default_value_t = sd_proto::SD_LISTEN_PORT)]
    port: u16,
    /// Address to listen on. The default accepts local clients only: the protocol has no
    /// authentication, so listen on a network address only on a trusted network.
    #[arg(short = 'b', long = "bindaddr", default_value = "127.0.0.1")]
    bindaddr: IpAddr,
    /// Address advertised to other sheep (default: the bind address).
    #[arg(short = 'y', long = "myaddr")]
    myaddr: Option<IpAddr>,
    /// Stay in the foreground and log to stderr too.
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// Failure zone (default: from the address).
    #[arg(short = 'z', long = "zone")]
    zone: Option<u32>,
    /// Cluster driver: local[:PATH] or zookeeper:HOST:PORT[,...].
    #[arg(short = 'c', long = "cluster", default_value = "local")]
    cluster: DriverSpec,
    /// Logging: dir=DIR,level=LEVEL,format=default|json,dst=default|stdout.
    #[arg(short = 'l', long = "log")]
    log: Option<String>,
    /// Write the daemon's pid to this file.
    #[arg(short = 'P', long = "pidfile")]
    pidfile: Option<PathBuf>,
    /// Gateway only: hold no objects.
    #[arg(short = 'g', long = "gateway")]
    gateway: bool,
    /// Writeback backend store: object writes land in the page cache; FLUSH makes them
    /// durable.
    #[arg(short = 'W', long = "writeback")]
    writeback: bool,
    /// Writeback: dirty data older than this many milliseconds is flushed in the background.
    #[arg(long = "writeback-max-age", default_value_t = 1000)]
    writeback_max_age: u64,
    /// Writeback: most dirty bytes held before new writes wait (e.g. 256M).
    #[arg(long = "writeback-max-dirty", default_value = "256M", value_parser = parse_size)]
    writeback_max_dirty: u64,
    /// How a flush is carried out: dirty (targeted) or syncfs (the 2012 design).
    #[arg(long = "flush", default_value = "dirty")]
    flush: sheep::config::FlushMode,
    /// NBD export of the VDIs: ADDR:PORT, or `off` (default 127.0.0.1:10809; when the
    /// default port is taken, e.g. by another sheep on this host, NBD stays off).
    #[arg(long = "nbd")]
    nbd: Option<String>,
    /// Serve Prometheus metrics over HTTP on ADDR:PORT (off by default; see
    /// docs/operations.md for the metric names).
    #[arg(long = "metrics")]
    metrics: Option<SocketAddr>,
    /// Recovery throttling: max=N objects per interval=MS.
    #[arg(short = 'R', long = "recovery")]
    recovery: Option<sheep::config::RecoveryThrottle>,
    /// Number of vnodes.
    #[arg(short = 'V', long = "vnodes")]
    vnodes: Option<u16>,
    /// Most connections served at once (clients and other sheep); more are closed as soon
    /// as they are accepted. The open-file limit is raised to its hard limit at start.
    #[arg(long = "max-connections", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Most requests one connection may have in flight; a client sending more is not read
    /// until answers have been written.
    #[arg(long = "max-inflight", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    max_inflight: u32,
    /// Largest request payload accepted (e.g. 64K; default and maximum: the protocol's
    /// 4M+64K); a larger request is answered INVALID_PARMS and its payload skipped, never
    /// buffered.
    #[arg(long = "max-payload", value_parser = parse_payload)]
    max_payload: Option<u64>,
    /// Bytes of request payloads and reply buffers that client requests may hold at once,
    /// all connections together; sheep-to-sheep requests have two more pools of this size
    /// (replica I/O, recovery reads). A request waits for room before it is read.
    #[arg(long = "max-buffered", default_value = "128M", value_parser = parse_size)]
    max_buffered: u64,
    /// Seconds within which a request frame begun must arrive completely, and each write
    /// of answers must be taken by the client; otherwise the connection is closed. Idle
    /// connections are kept.
    #[arg(long = "io-timeout", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    io_timeout: u64,
    /// Threads serving connections, each a single-threaded runtime serving its share of
    /// the connections whole (default: one per CPU). Blocking disk work (O_DSYNC writes,
    /// fdatasync, creates) runs on further threads as needed.
    #[arg(long = "threads", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Scrub: every SECS seconds (after the previous pass ends), compare the SHA-1 of every
    /// copy of the objects this node places first and repair copies that differ from the
    /// majority or are missing. 0 (default): off.
    #[arg(long = "scrub-interval", default_value_t = 0)]
    scrub_interval: u64,
    /// Scrub read rate of this node's own copies, bytes per second (K, M, G suffixes).
    #[arg(long = "scrub-rate", default_value = "32M", value_parser = parse_size)]
    scrub_rate: u64,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
}

/// A size with an optional K/M/G/T suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("bad size suffix in {s:?}")),
            };
            (s.get(..i).unwrap_or_default(), m)
        }
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("bad size {s:?}"))
}

/// Raises the soft open-file limit to the hard one, so that `--max-connections` (and not
/// EMFILE at accept) is what bounds connections; warns if even the hard limit is lower.
fn raise_nofile_limit(max_connections: u32) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        tracing::warn!(soft, hard, "could not raise the open-file limit");
    }
    // Object files, the log and the peers' connections need descriptors too.
    let wanted = u64::from(max_connections).saturating_add(256);
    if hard < wanted {
        tracing::warn!(
            limit = hard,
            max_connections,
            "the open-file limit is below --max-connections plus a margin; \
             accept will fail with EMFILE before the connection limit is reached"
        );
    }
}

/// A `--max-payload` size: at least 1 byte, at most the protocol's maximum.
fn parse_payload(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    let max = sd_proto::MAX_REQUEST_PAYLOAD as u64;
    if n == 0 || n > max {
        return Err(format!(
            "{s:?} is outside 1..={max} bytes (the protocol maximum)"
        ));
    }
    Ok(n)
}

/// Parsed `-l` option.
#[derive(Debug)]
struct LogOpts {
    dir: Option<PathBuf>,
    /// Sheepdog's numbering (0 emerg … 7 debug; 8 trace).
    level: i32,
    json: bool,
    stdout: bool,
    /// Rotate the log file past this many bytes (0: never).
    max_size: u64,
    /// Rotated files kept.
    keep: u32,
}

/// Default `-l max_size=`.
const LOG_MAX_SIZE: u64 = 64 << 20;
/// Default `-l keep=`.
const LOG_KEEP: u32 = 5;

fn parse_log(spec: Option<&str>) -> anyhow::Result<LogOpts> {
    let mut o = LogOpts {
        dir: None,
        level: sheep::logging::DEFAULT_LEVEL,
        json: false,
        stdout: false,
        max_size: LOG_MAX_SIZE,
        keep: LOG_KEEP,
    };
    for kv in spec.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("bad -l item {kv:?}: expected key=value"))?;
        match k {
            "dir" => o.dir = Some(PathBuf::from(v)),
            "level" => {
                o.level = sheep::logging::parse_level(v)
                    .with_context(|| format!("unknown log level {v:?}"))?;
            }
            "format" => {
                o.json = match v {
                    "default" | "server" => false,
                    "json" => true,
                    _ => bail!("unknown log format {v:?}"),
                }
            }
            "dst" => {
                o.stdout = match v {
                    "default" => false,
                    "stdout" => true,
                    _ => bail!("unsupported log destination {v:?} (default or stdout)"),
                }
            }
            "max_size" => o.max_size = parse_size(v).map_err(anyhow::Error::msg)?,
            "keep" => o.keep = v.parse().with_context(|| format!("bad -l keep={v:?}"))?,
            _ => bail!("unknown -l key {k:?}"),
        }
    }
    Ok(o)
}

fn init_logging(
    opts: &LogOpts,
    base: &Path,
    foreground: bool,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    let dir = opts.dir.clone().unwrap_or_else(|| base.to_path_buf());
    let (writer, guard, file) = if opts.stdout {
        let (w, g) = tracing_appender::non_blocking(std::io::stdout());
        (w, g, None)
    } else {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating log dir {}", dir.display()))?;
        let path = dir.join("sheep.log");
        let file = sheep::logging::LogFile::open(&path, opts.max_size, opts.keep)
            .with_context(|| format!("opening {}", path.display()))?;
        let (w, g) = tracing_appender::non_blocking(file.clone());
        (w, g, Some(file))
    };
    let (filter, handle) =
        tracing_subscriber::reload::Layer::new(sheep::logging::filter_for(opts.level));
    let file_layer = if opts.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_ansi(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .boxed()
    };
    let stderr_layer = (foreground && !opts.stdout)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .context("installing the log subscriber")?;
    sheep::logging::install(
        sheep::logging::Control {
            set_filter: Box::new(move |f| {
                if let Err(e) = handle.modify(|cur| *cur = f) {
                    eprintln!("sheep: changing the log level: {e}");
                }
            }),
            reopen: Box::new(move || {
                if let Some(Err(e)) = file.as_ref().map(sheep::logging::LogFile::reopen) {
                    eprintln!("sheep: reopening the log file: {e}");
                }
            }),
        },
        opts.level,
    );
    Ok(guard)
}

/// Takes `DIR/lock` so two sheep never share a store. Held until the process exits.
fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .with_context(|| format!("opening {}", dir.join("lock").display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .with_context(|| format!("another sheep is using {}", dir.display()))?;
    Ok(f)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sheep: {e:#}");
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let log = parse_log(args.log.as_deref())?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let _lock = lock_dir(&dir)?;
    let addr = SocketAddr::new(args.bindaddr, args.port);
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true).context("set_nonblocking")?;
    let nbd = bind_nbd(args.nbd.as_deref())?;

    if !args.foreground {
        // Fork before any thread exists; the listener and lock fds are inherited.
        nix::unistd::daemon(true, false).context("daemonizing")?;
    }
    let _guard = init_logging(&log, &dir, args.foreground)?;
    raise_nofile_limit(args.max_connections);
    let _pid = match &args.pidfile {
        Some(p) => Some(PidFile::create(p)?),
        None => None,
    };

    let mut cfg = sheep::Config::new(dir);
    cfg.zone = args.zone;
    cfg.cluster = args.cluster;
    cfg.advertise = args.myaddr;
    cfg.fixed_vnodes = args.vnodes.is_some();
    cfg.recovery = args.recovery.unwrap_or_default();
    cfg.metrics = args.metrics;
    cfg.scrub = sheep::config::ScrubConfig {
        interval: std::time::Duration::from_secs(args.scrub_interval),
        rate: args.scrub_rate.max(1),
    };
    if args.writeback {
        cfg.sync = sd_store::SyncMode::Writeback;
    }
    cfg.writeback = sheep::config::WritebackConfig {
        max_age: std::time::Duration::from_millis(args.writeback_max_age),
        max_dirty: args.writeback_max_dirty,
        flush: args.flush,
    };
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    cfg.limits = sheep::config::Limits {
        max_connections: to_usize(args.max_connections.into()),
        max_inflight: to_usize(args.max_inflight.into()),
        max_payload: args
            .max_payload
            .map_or(sd_proto::MAX_REQUEST_PAYLOAD, to_usize),
        max_buffered: to_usize(args.max_buffered),
        io_timeout: std::time::Duration::from_secs(args.io_timeout),
    };
    cfg.vnodes = if args.gateway {
        0
    } else {
        args.vnodes.unwrap_or(sd_proto::node::SD_DEFAULT_VNODES)
    };

    cfg.threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        usize::from,
    );
    // Shard 0 (see `sheep::run`): this thread, and the daemon's background tasks.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("sheep-io0")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).context("adopting the listener")?;
        let nbd = match nbd {
            Some(l) => {
                Some(tokio::net::TcpListener::from_std(l).context("adopting the NBD listener")?)
            }
            None => None,
        };
        let cancel = CancellationToken::new();
        let stop = CancellationToken::new();
        let on_signal = (stop.clone(), cancel.clone());
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        let mut hup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
        // SIGTERM or ^C: a clean stop (sheep::run_until_stopped); a second one: at once.
        tokio::spawn(async move {
            let mut stopping = false;
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                    _ = hup.recv() => {
                        sheep::logging::reopen();
                        tracing::info!("SIGHUP: log file reopened");
                        continue;
                    }
                }
                if stopping {
                    tracing::info!("second signal: stopping now");
                    on_signal.1.cancel();
                    return;
                }
                tracing::info!("signal received, stopping cleanly");
                stopping = true;
                on_signal.0.cancel();
            }
        });
        sheep::run_until_stopped(listener, nbd, cfg, stop, cancel)
            .await
            .context("sheep failed")
    })
}

/// Default NBD address.
const DEFAULT_NBD: &str = "127.0.0.1:10809";

/// Binds the NBD listener: an explicit address must bind; the default may be taken.
fn bind_nbd(opt: Option<&str>) -> anyhow::Result<Option<std::net::TcpListener>> {
    let (spec, explicit) = match opt {
        Some("off") => return Ok(None),
        Some(s) => (s, true),
        None => (DEFAULT_NBD, false),
    };
    let addr: SocketAddr = spec
        .parse()
        .with_context(|| format!("bad --nbd address {spec:?}"))?;
    match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            l.set_nonblocking(true).context("set_nonblocking")?;
            Ok(Some(l))
        }
        Err(e) if !explicit => {
            eprintln!("sheep: NBD stays off: binding {addr}: {e}");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding NBD on {addr}")),
    }
}

/// A pid file removed when the daemon exits normally.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<PidFile> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
