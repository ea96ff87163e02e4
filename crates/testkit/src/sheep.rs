//! [`Sheep`]: one real `sheep` daemon process on a loopback port.

use std::ffi::OsString;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_proto::SdResult;

use crate::netns::Host;
use crate::raw::RawClient;
use crate::{DogOutput, bin_path, free_port, poll_until, req};

/// How long a starting daemon may take to answer its first request.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one readiness probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Bytes of daemon output kept for error messages.
const TAIL_MAX: usize = 64 << 10;

/// Attempts at finding a port no other process grabs between [`free_port`] and the bind.
const PORT_ATTEMPTS: usize = 5;

/// A running (or SIGKILLed, awaiting restart) `sheep -f` process.
///
/// The daemon's stdout and stderr are drained by background threads into a bounded tail
/// that error messages quote. Dropping the handle SIGKILLs the daemon (printing that tail if
/// the test is panicking); a temporary base directory made by [`Sheep::start_temp`] is
/// removed after that.
#[derive(Debug)]
pub struct Sheep {
    child: Option<Child>,
    dir: PathBuf,
    /// The address the daemon binds (`-b`): 127.0.0.1, or its [`Host`]'s.
    ip: Ipv4Addr,
    /// The network namespace the daemon runs in ([`Sheep::start_on`]).
    host: Option<Host>,
    port: u16,
    /// The NBD port (`--nbd 127.0.0.1:PORT`) of a daemon started with an NBD export.
    nbd_port: Option<u16>,
    extra: Vec<OsString>,
    /// Environment variables of the next start (test hooks such as `SHEEP_CRASH_AT`).
    env: Vec<(String, String)>,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    // Declared last: removed only after `Drop` has killed the daemon.
    root: Option<tempfile::TempDir>,
    /// The private `-c local:PATH` state of a daemon started without its own `-c`, so
    /// tests running in parallel never join each other's clusters. Only held, never read.
    _cluster: Option<tempfile::TempDir>,
}

/// Why one start attempt failed.
enum StartFailure {
    /// The daemon could not bind its port (taken in the meantime): try another one.
    PortTaken(anyhow::Error),
    /// Anything else.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartFailure {
    fn from(e: anyhow::Error) -> Self {
        StartFailure::Other(e)
    }
}

impl Sheep {
    /// Starts `sheep -f -p PORT -b 127.0.0.1 [extra...] DIR` and waits until it answers a
    /// GET_NODE_LIST. The daemon's working directory is `dir`'s parent, so stray relative
    /// paths land next to the base directory where a test can see them.
    pub fn start(dir: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Sheep> {
        // Absolute, because the daemon runs in another working directory.
        let dir =
            std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
        let mut s = Sheep::new(dir, port, extra, None, None);
        match s.spawn_ready() {
            Ok(()) => Ok(s),
            Err(StartFailure::PortTaken(e) | StartFailure::Other(e)) => Err(e),
        }
    }

    /// Starts `sheep -f -p PORT -b IP [extra...] DIR` inside `host`'s network namespace,
    /// bound to the host's address (any port is free there), and waits until it answers.
    pub fn start_on(host: &Host, dir: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Sheep> {
        let dir =
            std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
        let mut s = Sheep::new(dir, port, extra, None, None);
        s.ip = host.ip();
        s.host = Some(host.clone());
        match s.spawn_ready() {
            Ok(()) => Ok(s),
            Err(StartFailure::PortTaken(e) | StartFailure::Other(e)) => Err(e),
        }
    }

    /// Starts a daemon on a free port with a fresh base directory `ROOT/dir` inside a new
    /// temporary directory `ROOT`, which holds nothing else. Retries with another port if
    /// the chosen one was taken before the daemon bound it.
    pub fn start_temp(extra: &[&str]) -> anyhow::Result<Sheep> {
        let root = tempfile::Builder::new()
            .prefix("sheepdog-it-")
            .tempdir()
            .context("creating a temporary directory")?;
        let dir = root.path().join("dir");
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Sheep::start_free_port(dir, extra, Some(root), Nbd::Off)
    }

    /// Starts a daemon on `dir` (absolute) on a free port, retrying with another port if
    /// the chosen one was taken before the daemon bound it. With [`Nbd::FreePort`] it also
    /// serves NBD on another free loopback port (renewed with the first on a retry).
    pub(crate) fn start_free_port(
        dir: PathBuf,
        extra: &[&str],
        root: Option<tempfile::TempDir>,
        nbd: Nbd,
    ) -> anyhow::Result<Sheep> {
        let nbd_port = match nbd {
            Nbd::Off => None,
            Nbd::FreePort => Some(free_port()?),
        };
        let mut s = Sheep::new(dir, free_port()?, extra, root, nbd_port);
        let mut attempt = 1;
        loop {
            match s.spawn_ready() {
                Ok(()) => return Ok(s),
                Err(StartFailure::PortTaken(e)) if attempt < PORT_ATTEMPTS => {
                    eprintln!(
                        "sheep could not bind port {} (NBD {:?}), retrying: {e:#}",
                        s.port, s.nbd_port
                    );
                    s.port = free_port()?;
                    if s.nbd_port.is_some() {
                        s.nbd_port = Some(free_port()?);
                    }
                    attempt += 1;
                }
                Err(StartFailure::PortTaken(e) | StartFailure::Other(e)) => return Err(e),
            }
        }
    }

    fn new(
        dir: PathBuf,
        port: u16,
        extra: &[&str],
        root: Option<tempfile::TempDir>,
        nbd_port: Option<u16>,
    ) -> Sheep {
        let mut extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
        // Tests run in parallel: no NBD listener unless the test asks for one.
        if nbd_port.is_none() && !extra.iter().any(|a| a == "--nbd") {
            extra.extend(["--nbd".into(), "off".into()]);
        }
        let has_driver = extra.iter().any(|a| a == "-c" || a == "--cluster");
        let cluster = if has_driver {
            None
        } else {
            // A private cluster of one; the directory lives as long as this handle.
            tempfile::Builder::new()
                .prefix("sheepdog-cluster-")
                .tempdir()
                .ok()
        };
        if let Some(c) = &cluster {
            extra.push("-c".into());
            let mut spec = OsString::from("local:");
            spec.push(c.path());
            extra.push(spec);
        }
        Sheep {
            child: None,
            dir,
            ip: Ipv4Addr::LOCALHOST,
            host: None,
            port,
            nbd_port,
            extra,
            env: Vec::new(),
            output: Arc::new(Mutex::new(Vec::new())),
            readers: Vec::new(),
            root,
            _cluster: cluster,
        }
    }

    /// The base directory (`DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The temporary directory holding `DIR`, for [`Sheep::start_temp`] daemons.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_ref().map(tempfile::TempDir::path)
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    /// The NBD address of a daemon started with an NBD export (see
    /// [`crate::Cluster::start_nbd`]); `None` for one started with `--nbd off`.
    pub fn nbd_addr(&self) -> Option<SocketAddr> {
        self.nbd_port.map(|p| SocketAddr::from((self.ip, p)))
    }

    /// `nbd://127.0.0.1:PORT/EXPORT`, the URI of VDI `export` on this daemon's NBD
    /// listener (as qemu-img, qemu-io, nbdinfo and fio take it). Fails for a daemon
    /// without an NBD export.
    pub fn nbd_uri(&self, export: &str) -> anyhow::Result<String> {
        let addr = self
            .nbd_addr()
            .with_context(|| format!("sheep on port {} serves no NBD", self.port))?;
        Ok(format!("nbd://{addr}/{export}"))
    }

    /// The process id, while a process is running or not yet reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A new raw protocol connection.
    pub fn connect(&self) -> anyhow::Result<RawClient> {
        RawClient::connect(self.addr())
    }

    /// Runs `dog ARGS -p PORT` against this daemon.
    pub fn dog(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<DogOutput> {
        let port = self.port.to_string();
        let ip = self.ip.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-p", port.as_str()]);
        if self.host.is_some() {
            all.extend(["-a", ip.as_str()]);
        }
        crate::dog(&all, stdin)
    }

    /// Starts `dog ARGS -p PORT` against this daemon with its stdin on a pipe the caller
    /// feeds ([`crate::spawn_dog`]).
    pub fn spawn_dog(&self, args: &[&str]) -> anyhow::Result<crate::DogChild> {
        let port = self.port.to_string();
        let ip = self.ip.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-p", port.as_str()]);
        if self.host.is_some() {
            all.extend(["-a", ip.as_str()]);
        }
        crate::spawn_dog(&all)
    }

    /// Starts `dog ARGS -p PORT` against this daemon, its stdout lines readable as they come
    /// ([`crate::spawn_dog_lines`]).
    pub fn spawn_dog_lines(&self, args: &[&str]) -> anyhow::Result<crate::DogChild> {
        let port = self.port.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-p", port.as_str()]);
        crate::spawn_dog_lines(&all)
    }

    /// Formats the cluster over a raw connection, as `dog cluster format` does (store
    /// "plain", server-default copies and object size, ctime now).
    pub fn format(&self) -> anyhow::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?;
        let ctime = sd_proto::cluster::sd_time(now.as_secs(), now.subsec_nanos());
        self.connect()?
            .call_ok(&req::make_fs(ctime, 0), req::STORE_PLAIN)
            .map(drop)
    }

    /// True while the process runs (reaps it if it has exited).
    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fails, quoting the daemon's output, unless the process is running.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("sheep is not running (killed by the test)");
        };
        match child.try_wait().context("checking the sheep process")? {
            None => Ok(()),
            Some(status) => Err(anyhow!(
                "sheep on port {} exited unexpectedly with {status}\n{}",
                self.port,
                self.diagnostics()
            )),
        }
    }

    /// SIGKILLs the daemon (a power cut, as far as the store can tell) and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("sheep is not running")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        // The child is ours and not yet reaped, so the pid cannot have been reused.
        if child.try_wait()?.is_none() {
            kill(Pid::from_raw(pid), Signal::SIGKILL).context("SIGKILL sheep")?;
        }
        let status = child.wait().context("reaping sheep")?;
        self.join_readers();
        Ok(status)
    }

    /// Waits up to `timeout` for the daemon to exit by itself, and reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let port = self.port;
        let status = poll_until(timeout, &format!("sheep on port {port} to exit"), || {
            let child = self.child.as_mut().context("sheep is not running")?;
            child.try_wait().context("checking the sheep process")
        })?;
        self.child = None;
        self.join_readers();
        Ok(status)
    }

    /// Sets (`Some`) or clears (`None`) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Starts the daemon again on the same directory, port and arguments (after
    /// [`Sheep::kill9`], or after it exited by itself).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_alive() {
            bail!("sheep on port {} is still running", self.port);
        }
        if let Some(mut old) = self.child.take() {
            old.wait().context("reaping sheep")?;
        }
        self.join_readers();
        match self.spawn_ready() {
            Ok(()) => Ok(()),
            Err(StartFailure::PortTaken(e) | StartFailure::Other(e)) => Err(e),
        }
    }

    /// The last [`TAIL_MAX`] bytes the daemon wrote to stdout and stderr.
    pub fn output_tail(&self) -> String {
        let out = self.output.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The last few KiB of `DIR/sheep.log` (empty if it cannot be read).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read(self.dir.join("sheep.log")).unwrap_or_default();
        let from = log.len().saturating_sub(8 << 10);
        String::from_utf8_lossy(log.get(from..).unwrap_or_default()).into_owned()
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- sheep output (tail) ---\n{}\n--- DIR/sheep.log (tail) ---\n{}",
            self.output_tail(),
            self.log_tail()
        )
    }

    fn spawn_ready(&mut self) -> Result<(), StartFailure> {
        self.spawn()?;
        let addr = self.addr();
        let waited = poll_until(READY_TIMEOUT, "sheep to answer GET_NODE_LIST", || {
            let child = self.child.as_mut().context("sheep was not spawned")?;
            if let Some(status) = child.try_wait().context("checking the sheep process")? {
                bail!("sheep exited with {status} before it was ready");
            }
            let Ok(mut c) = RawClient::connect(addr) else {
                return Ok(None);
            };
            // Short, so that a listener that is not our daemon's (the port was taken) cannot
            // hold the loop while our daemon exits; a slow answer is just retried.
            c.set_io_timeout(PROBE_TIMEOUT)?;
            match c.call(&req::get_node_list(), &[]) {
                Ok(rsp) if rsp.result() == SdResult::Success => Ok(Some(())),
                _ => Ok(None),
            }
        });
        // The listener that answered must be ours: a daemon that lost the race for the port
        // exits at once, before anything answers on its behalf.
        let result = waited.and_then(|()| self.check_alive());
        let Err(e) = result else {
            return Ok(());
        };
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The pipes are closed now, so the tail holds everything the daemon said.
        self.join_readers();
        let diag = self.diagnostics();
        let port_taken = diag.contains("binding") || diag.contains("Address already in use");
        let e = e.context(format!(
            "starting sheep on port {} in {}\n{diag}",
            self.port,
            self.dir.display(),
        ));
        Err(if port_taken {
            StartFailure::PortTaken(e)
        } else {
            StartFailure::Other(e)
        })
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = bin_path("sheep")?;
        let cwd = self.dir.parent().unwrap_or(&self.dir);
        let mut cmd = match &self.host {
            Some(h) => h.command(&bin),
            None => Command::new(&bin),
        };
        let mut child = cmd
            .arg("-f")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(self.ip.to_string())
            .args(&self.extra)
            .args(
                self.nbd_addr()
                    .map(|a| ["--nbd".to_string(), a.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg(&self.dir)
            .current_dir(cwd)
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        if let Some(out) = child.stdout.take() {
            self.readers
                .push(drain(Pipe::Out(out), self.output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            self.readers
                .push(drain(Pipe::Err(err), self.output.clone()));
        }
        self.child = Some(child);
        Ok(())
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Sheep {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.kill9();
        }
        self.join_readers();
        if std::thread::panicking() {
            // The test is failing: show what the daemon said (nextest prints it with the
            // failure) before the temporary directory and its sheep.log disappear.
            eprintln!("sheep on port {}:\n{}", self.port, self.diagnostics());
        }
    }
}

/// Whether a daemon started by the harness serves NBD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nbd {
    /// `--nbd off` (unless the extra arguments say otherwise).
    Off,
    /// `--nbd 127.0.0.1:PORT` on a free port.
    FreePort,
}

enum Pipe {
    Out(ChildStdout),
    Err(ChildStderr),
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Pipe::Out(p) => p.read(buf),
            Pipe::Err(p) => p.read(buf),
        }
    }
}

/// Copies a pipe into the shared tail until end-of-file, keeping the last [`TAIL_MAX`] bytes.
fn drain(mut pipe: Pipe, tail: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
            t.extend_from_slice(buf.get(..n).unwrap_or_default());
            let excess = t.len().saturating_sub(TAIL_MAX);
            t.drain(..excess);
        }
    })
}
