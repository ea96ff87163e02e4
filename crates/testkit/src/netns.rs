//! [`Net`]: a private network of Linux network namespaces for partition tests, made by the
//! test itself with `ip` (iproute2) and cut with `nft` (nftables). Needs root.
//!
//! Shape: one *hub* namespace holding a bridge; every host is a namespace with one veth
//! whose other end is a port of the bridge, and address `10.231.N.(i+1)/24`. One more veth
//! joins the bridge to the root namespace (`10.231.N.254`), so the test process reaches
//! every host directly (dog, raw sockets, ZooKeeper's four-letter words). Processes run in a
//! host with `ip netns exec NS ...` ([`Host::command`]); `ip` execs the program, so the
//! child's pid is the program's.
//!
//! **Faults** are nftables rules inside one host's namespace (a table `sdfault`, input and
//! output hooks): [`Net::cut`] drops every packet between that host and some addresses,
//! both ways, so TCP sees silence, not resets — what a real partition looks like.
//! [`Net::heal`] deletes the table. (This kernel has no netem; delay would have to be added
//! in user space.)
//!
//! **Names** are unique per test process: `N` is the first subnet number whose lock file
//! (`/tmp/sheepdog-rs-netns/N.lock`, an `flock` the kernel drops when the process dies) this
//! process obtains. Namespaces left behind by a killed test that held `N` are deleted
//! first. Dropping the [`Net`] deletes every namespace it made (which also removes the
//! root namespace's veth), even when the test panics.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};

/// Where the subnet locks live.
const LOCK_DIR: &str = "/tmp/sheepdog-rs-netns";

/// The table the fault rules live in.
const FAULT_TABLE: &str = "sdfault";

/// Hosts per network at most (addresses `.1` to `.253`).
const MAX_HOSTS: usize = 253;

/// One host: a network namespace with one address on the [`Net`].
#[derive(Debug, Clone)]
pub struct Host {
    ns: String,
    ip: Ipv4Addr,
}

impl Host {
    /// The namespace's name.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The host's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// A command that runs `program` inside this host (`ip netns exec NS program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }
}

/// A private network of namespaces; dropping it deletes them all.
#[derive(Debug)]
pub struct Net {
    hub: String,
    root_veth: String,
    hosts: Vec<Host>,
    /// Cut hosts (their namespaces hold a [`FAULT_TABLE`]).
    cut: Vec<bool>,
    // Declared last: released after `Drop` deleted the namespaces.
    _lock: File,
}

/// Runs a command to completion; fails with its stderr unless it succeeded.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (are iproute2 and nftables installed?)"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

/// Takes the first free subnet number.
fn lock_subnet() -> anyhow::Result<(u8, File)> {
    std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
    for n in 0..=u8::MAX {
        let path = Path::new(LOCK_DIR).join(format!("{n}.lock"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => return Ok((n, f)),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
    bail!("all 256 test subnets are in use")
}

/// The namespaces that exist now.
fn namespaces() -> anyhow::Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("running `ip netns list` (is iproute2 installed?)")?;
    ensure!(
        out.status.success(),
        "`ip netns list` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

impl Net {
    /// Makes a network of `hosts` hosts. Fails (with the command's own error) where
    /// namespaces cannot be made: not root, no iproute2, a kernel without veth or bridges.
    pub fn new(hosts: usize) -> anyhow::Result<Net> {
        ensure!(
            (1..=MAX_HOSTS).contains(&hosts),
            "{hosts} hosts: 1 to {MAX_HOSTS}"
        );
        let (n, lock) = lock_subnet()?;
        let prefix = format!("sdt{n}");
        // Left behind by a test that held this subnet and was killed before its drop.
        for ns in namespaces()? {
            if ns == format!("{prefix}h")
                || ns
                    .strip_prefix(&format!("{prefix}n"))
                    .is_some_and(|i| i.parse::<usize>().is_ok())
            {
                ip(&["netns", "del", &ns])?;
            }
        }
        let mut net = Net {
            hub: format!("{prefix}h"),
            root_veth: format!("{prefix}r"),
            hosts: Vec::with_capacity(hosts),
            cut: vec![false; hosts],
            _lock: lock,
        };
        // From here on, `Drop` cleans up whatever was made.
        let hub = net.hub.clone();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        // A veth left in the root namespace by a killed test (its hub is gone, so it
        // should be too; deleting is harmless if it is not there).
        let _ = ip(&["link", "del", &net.root_veth]);
        let root = net.root_veth.clone();
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ])?;
        ip(&["addr", "add", &format!("10.231.{n}.254/24"), "dev", &root])?;
        ip(&["link", "set", &root, "up"])?;
        ip(&["-n", &hub, "link", "set", "up0", "master", "br0", "up"])?;
        for i in 0..hosts {
            let ns = format!("{prefix}n{i}");
            let last = u8::try_from(i + 1).context("host number")?;
            let host_ip = Ipv4Addr::new(10, 231, n, last);
            ip(&["netns", "add", &ns])?;
            net.hosts.push(Host {
                ns: ns.clone(),
                ip: host_ip,
            });
            let port = format!("v{i}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{host_ip}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
        }
        Ok(net)
    }

    /// Host `i`. Panics if there is none (a test bug).
    #[track_caller]
    pub fn host(&self, i: usize) -> &Host {
        let n = self.hosts.len();
        self.hosts
            .get(i)
            .unwrap_or_else(|| panic!("no host {i} in a network of {n}"))
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True for a network without hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Drops every packet between host `i` and `peers`, both ways, with nftables rules in
    /// host `i`'s namespace (added to those of earlier cuts). The test process (the root
    /// namespace) still reaches host `i` unless its address is among `peers`.
    pub fn cut(&mut self, i: usize, peers: &[Ipv4Addr]) -> anyhow::Result<()> {
        let host = self.host(i).clone();
        if !self.cut.get(i).copied().unwrap_or(false) {
            let table = format!(
                "table inet {FAULT_TABLE} {{\n\
                 \tchain out {{ type filter hook output priority 0; policy accept; }}\n\
                 \tchain in {{ type filter hook input priority 0; policy accept; }}\n\
                 }}\n"
            );
            nft(&host, &["-f", "-"], Some(&table))?;
            if let Some(c) = self.cut.get_mut(i) {
                *c = true;
            }
        }
        for p in peers {
            let p = p.to_string();
            for (chain, dir) in [("out", "daddr"), ("in", "saddr")] {
                nft(
                    &host,
                    &[
                        "add",
                        "rule",
                        "inet",
                        FAULT_TABLE,
                        chain,
                        "ip",
                        dir,
                        &p,
                        "drop",
                    ],
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Splits the network: every host of `side` is cut from every host of `other`.
    pub fn partition(&mut self, side: &[usize], other: &[usize]) -> anyhow::Result<()> {
        let others: Vec<Ipv4Addr> = other.iter().map(|i| self.host(*i).ip()).collect();
        for &i in side {
            self.cut(i, &others)?;
        }
        Ok(())
    }

    /// Removes every cut of host `i`.
    pub fn heal(&mut self, i: usize) -> anyhow::Result<()> {
        if self.cut.get(i).copied().unwrap_or(false) {
            let host = self.host(i).clone();
            nft(&host, &["delete", "table", "inet", FAULT_TABLE], None)?;
            if let Some(c) = self.cut.get_mut(i) {
                *c = false;
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.hosts.len() {
            self.heal(i)?;
        }
        Ok(())
    }
}

/// Runs `nft ARGS` in `host`, with `stdin` as its input.
fn nft(host: &Host, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = host.command("nft");
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {cmd:?} (is nftables installed?)"))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default().as_bytes())
            .context("writing nft's input")?;
    }
    let out = child.wait_with_output().context("waiting for nft")?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            if let Err(e) = ip(&["netns", "del", &h.ns]) {
                eprintln!("removing namespace {}: {e:#}", h.ns);
            }
        }
        // Deleting the hub destroys its veth ends, and with them the root namespace's.
        if let Err(e) = ip(&["netns", "del", &self.hub]) {
            eprintln!("removing namespace {}: {e:#}", self.hub);
        }
    }
}
