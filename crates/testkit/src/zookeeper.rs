//! [`ZkServer`]: a private standalone ZooKeeper server for tests of the `zookeeper` cluster
//! driver, on a free loopback port with its data in a temporary directory.
//!
//! The server is the one Debian's `zookeeperd` package installs (`apt-get install -y
//! zookeeperd`, which pulls in the `zookeeper` jars and a JRE), started directly as
//! `java -cp <jars> org.apache.zookeeper.server.quorum.QuorumPeerMain <cfg>`: no systemd,
//! no `zkServer.sh` (it insists on system paths). Another installation is found through
//! `SHEEPDOG_ZK_CLASSPATH` (a Java class path) or `ZOOKEEPER_HOME` (a release tarball);
//! `JAVA` names the `java` binary.
//!
//! The config keeps tests fast: a 250 ms tick (session timeouts from 500 ms are accepted and
//! sessions expire within a tick of their timeout), no fsync of the transaction log (the
//! tests never restart ZooKeeper expecting its data back), no admin HTTP server.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Host;
use crate::{free_port, poll_until};

/// The client port of a server started in its own namespace ([`ZkServer::start_on`]).
pub const ZK_NETNS_PORT: u16 = 2181;

/// How long a starting server may take to serve requests (about 1 s on the dev machine).
pub const ZK_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable naming the Java class path of a ZooKeeper server.
pub const ZK_CLASSPATH_ENV: &str = "SHEEPDOG_ZK_CLASSPATH";

/// The server jar of Debian's `zookeeper` package; its manifest names every dependency.
const DEBIAN_JAR: &str = "/usr/share/java/zookeeper.jar";

/// Attempts at finding a port no other process takes before the server binds it.
const PORT_ATTEMPTS: usize = 3;

/// How long one `srvr` probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A running standalone ZooKeeper server; dropping it SIGKILLs the JVM and removes its data.
#[derive(Debug)]
pub struct ZkServer {
    child: Option<Child>,
    /// The client address's IP: 127.0.0.1, or the [`Host`]'s the server runs in.
    ip: Ipv4Addr,
    host: Option<Host>,
    port: u16,
    /// How long the last start took until the server answered.
    startup: Duration,
    // Declared last: removed after `Drop` killed the server.
    dir: tempfile::TempDir,
}

/// The Java class path of the server, or why there is none.
fn classpath() -> anyhow::Result<String> {
    if let Ok(cp) = std::env::var(ZK_CLASSPATH_ENV) {
        return Ok(cp);
    }
    if let Some(home) = std::env::var_os("ZOOKEEPER_HOME") {
        let home = PathBuf::from(home);
        return Ok(format!(
            "{}:{}",
            home.join("lib/*").display(),
            home.join("*").display()
        ));
    }
    if Path::new(DEBIAN_JAR).is_file() {
        return Ok(DEBIAN_JAR.to_owned());
    }
    bail!(
        "no ZooKeeper server found: install it with `apt-get install -y zookeeperd` \
         (or set {ZK_CLASSPATH_ENV} or ZOOKEEPER_HOME)"
    )
}

fn config(data: &Path, ip: Ipv4Addr, port: u16) -> String {
    format!(
        "tickTime=250\n\
         minSessionTimeout=500\n\
         maxSessionTimeout=60000\n\
         dataDir={}\n\
         clientPort={port}\n\
         clientPortAddress={ip}\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=srvr,ruok,mntr,dump\n\
         forceSync=no\n\
         preAllocSize=4096\n",
        data.display()
    )
}

/// Sends a four-letter command and returns the whole answer.
fn four_letter(addr: SocketAddr, cmd: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = Vec::new();
    s.take(1 << 20).read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

impl ZkServer {
    /// Starts a server on a free port and waits until it serves requests.
    pub fn start() -> anyhow::Result<ZkServer> {
        let dir = tempfile::Builder::new()
            .prefix("sheepdog-zk-")
            .tempdir()
            .context("creating a temporary directory")?;
        let classpath = classpath()?;
        let mut zk = ZkServer {
            child: None,
            ip: Ipv4Addr::LOCALHOST,
            host: None,
            port: free_port()?,
            startup: Duration::ZERO,
            dir,
        };
        let mut attempt = 1;
        loop {
            match zk.spawn_ready(&classpath) {
                Ok(()) => return Ok(zk),
                // A server that lost its port to another process exits at once.
                Err(Failure::Exited(e)) if attempt < PORT_ATTEMPTS => {
                    eprintln!("ZooKeeper on port {} failed, retrying: {e:#}", zk.port);
                    zk.port = free_port()?;
                    attempt += 1;
                }
                Err(Failure::Exited(e) | Failure::Other(e)) => return Err(e),
            }
        }
    }

    /// Starts a server inside `host`'s network namespace, on the host's address and port
    /// [`ZK_NETNS_PORT`], and waits until it serves requests.
    pub fn start_on(host: &Host) -> anyhow::Result<ZkServer> {
        let dir = tempfile::Builder::new()
            .prefix("sheepdog-zk-")
            .tempdir()
            .context("creating a temporary directory")?;
        let classpath = classpath()?;
        let mut zk = ZkServer {
            child: None,
            ip: host.ip(),
            host: Some(host.clone()),
            port: ZK_NETNS_PORT,
            startup: Duration::ZERO,
            dir,
        };
        match zk.spawn_ready(&classpath) {
            Ok(()) => Ok(zk),
            Err(Failure::Exited(e) | Failure::Other(e)) => Err(e),
        }
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    /// `IP:PORT`, for `-c zookeeper:...`.
    pub fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    /// How long the server took from launch until it served requests.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The answer to a four-letter-word command (`srvr`, `ruok`, `mntr`, `dump`).
    pub fn four_letter(&self, cmd: &str) -> anyhow::Result<String> {
        four_letter(self.addr(), cmd).with_context(|| format!("ZooKeeper `{cmd}`"))
    }

    /// True while the JVM runs (reaps it if it exited).
    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the server (every client loses its connection; sessions die with it).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("ZooKeeper is not running")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        // Ours and not yet reaped, so the pid cannot have been reused.
        if child.try_wait()?.is_none() {
            kill(Pid::from_raw(pid), Signal::SIGKILL).context("SIGKILL ZooKeeper")?;
        }
        child.wait().context("reaping ZooKeeper")?;
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("zookeeper.out")
    }

    fn spawn_ready(&mut self, classpath: &str) -> Result<(), Failure> {
        let cfg_path = self.dir.path().join("zoo.cfg");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        std::fs::write(&cfg_path, config(&data, self.ip, self.port))
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        let log = std::fs::File::create(self.log_path()).context("creating the server log")?;
        let java = std::env::var_os("JAVA").unwrap_or_else(|| "java".into());
        let launched = Instant::now();
        let mut cmd = match &self.host {
            Some(h) => h.command(&java),
            None => Command::new(&java),
        };
        let child = cmd
            .args([
                "-Xmx256m",
                "-Xss512k",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
            ])
            .arg("-cp")
            .arg(classpath)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} (install a JRE: `apt-get install -y zookeeperd` brings one)",
                    java.to_string_lossy()
                )
            })?;
        self.child = Some(child);
        let addr = self.addr();
        let mut exited = false;
        let ready = poll_until(ZK_READY_TIMEOUT, "ZooKeeper to serve requests", || {
            let child = self.child.as_mut().context("ZooKeeper was not spawned")?;
            if let Some(status) = child.try_wait().context("checking ZooKeeper")? {
                exited = true;
                bail!("ZooKeeper exited with {status} before it served requests");
            }
            // `ruok` answers before the server serves; `srvr` says so only once it does.
            Ok(four_letter(addr, "srvr")
                .ok()
                .filter(|a| a.starts_with("Zookeeper version"))
                .map(drop))
        });
        match ready {
            Ok(()) => {
                self.startup = launched.elapsed();
                Ok(())
            }
            Err(e) => {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let out = std::fs::read(self.log_path()).unwrap_or_default();
                let from = out.len().saturating_sub(8 << 10);
                let e = e.context(format!(
                    "starting ZooKeeper on port {}\n--- server output (tail) ---\n{}",
                    self.port,
                    String::from_utf8_lossy(out.get(from..).unwrap_or_default())
                ));
                Err(if exited {
                    Failure::Exited(e)
                } else {
                    Failure::Other(e)
                })
            }
        }
    }
}

/// Why one start attempt failed.
enum Failure {
    /// The JVM exited by itself (most likely its port was taken): try another port.
    Exited(anyhow::Error),
    /// Anything else.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.kill9();
        }
    }
}
