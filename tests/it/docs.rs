//! docs/operations.md, run: every shell block marked `<!-- doctest: ROLE[, STEP[, interrupt]] -->`
//! runs in order under `bash -euo pipefail` against a private ZooKeeper, each "host" on
//! 127.0.0.1 with its own free ports and directory, and the test checks what each step must
//! have achieved (a formatted 3-node cluster, a VDI read back over NBD, a crashed node
//! replaced and a wiped disk refilled until every object has 3 copies again, the metrics).
//! docs/sheep.service must equal the guide's unit block; its ExecStart and ExecReload run.
//! Every metric name of crates/sheep/src/metrics.rs must have a row in the guide's table.
//!
//! Roles: `vars` (the variable names the test must provide), `host N [M...]` (once per
//! host, with that host's variables), `admin` (host 1's variables), `unit`, `skip (WHY)`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use sd_testkit::zookeeper::ZkServer;
use sd_testkit::{bin_dir, dog, free_port, poll_until};

use crate::metrics::{scrape, value};

const GUIDE: &str = include_str!("../../docs/operations.md");
const UNIT: &str = include_str!("../../docs/sheep.service");
const METRICS_RS: &str = include_str!("../../crates/sheep/src/metrics.rs");

/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long membership, recovery or a sampled gauge may take to follow.
const SETTLE: Duration = Duration::from_secs(30);
/// Variables every block may use (the guide's `vars` block must define exactly these).
const VARS: [&str; 7] = [
    "HOST_IP",
    "PORT",
    "ZONE",
    "ZK",
    "DIR",
    "NBD_PORT",
    "METRICS_PORT",
];

/// What a marked block is run as.
#[derive(Debug, Clone, PartialEq)]
enum Role {
    Vars,
    Hosts(Vec<usize>),
    Admin,
    Unit,
    Skip,
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the marker, for messages.
    line: usize,
    role: Role,
    step: String,
    interrupt: bool,
    text: String,
}

/// Parses the marked blocks; fails on an unmarked `sh` block or a malformed marker.
fn parse(md: &str) -> Vec<Block> {
    let lines: Vec<&str> = md.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        if l == "```sh" {
            panic!("line {}: a sh block without a doctest marker", i + 1);
        }
        let Some(spec) = l
            .strip_prefix("<!-- doctest:")
            .and_then(|s| s.strip_suffix("-->"))
        else {
            i += 1;
            continue;
        };
        let line = i + 1;
        let spec = spec.trim();
        let (role, step, interrupt) = if let Some(why) = spec.strip_prefix("skip") {
            let why = why.trim();
            assert!(
                why.starts_with('(') && why.ends_with(')') && why.len() > 10,
                "line {line}: a skip must say why: {spec}"
            );
            (Role::Skip, String::new(), false)
        } else {
            let mut parts = spec.split(',').map(str::trim);
            let role = parts.next().unwrap();
            let role = match role.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["vars"] => Role::Vars,
                ["admin"] => Role::Admin,
                ["unit"] => Role::Unit,
                ["host", ns @ ..] if !ns.is_empty() => {
                    Role::Hosts(ns.iter().map(|n| n.parse().unwrap()).collect())
                }
                _ => panic!("line {line}: unknown doctest role {role:?}"),
            };
            let step = parts.next().unwrap_or_default().to_owned();
            let interrupt = match parts.next() {
                None => false,
                Some("interrupt") => true,
                Some(f) => panic!("line {line}: unknown doctest flag {f:?}"),
            };
            (role, step, interrupt)
        };
        let fence = lines.get(i + 1).map(|f| f.trim()).unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "line {line}: the marker must precede a code block"
        );
        let end = (i + 2..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or_else(|| panic!("line {line}: unterminated code block"));
        let text = lines[i + 2..end].join("\n") + "\n";
        blocks.push(Block {
            line,
            role,
            step,
            interrupt,
            text,
        });
        i = end + 1;
    }
    blocks
}

/// One "host": its variables.
struct Host {
    dir: PathBuf,
    port: u16,
    nbd_port: u16,
    metrics_port: u16,
    zone: u32,
}

impl Host {
    fn pid_file(&self) -> PathBuf {
        self.dir.join("sheep.pid")
    }
    fn metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", self.metrics_port)
    }
}

/// Kills every sheep the blocks started (found through the hosts' pid files, and checked to
/// be a sheep of that directory), and the unit's sheep, even when the test panics.
struct Guard {
    dirs: Vec<PathBuf>,
    unit: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.unit {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            if let Some(pid) = pid_of(d) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The pid in `DIR/sheep.pid` if that process is a sheep serving `DIR`.
fn pid_of(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("sheep.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (cmdline.contains("sheep") && cmdline.contains(&*dir.to_string_lossy())).then_some(pid)
}

/// What a block printed.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn drain(r: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let h = std::thread::spawn(move || {
        let mut r = r;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, h)
}

/// After a failure to bind: who holds `ports` (`ss -tanp`), for the failure message. A
/// port was taken between `free_port` and the bind a few times, by a holder not found yet.
fn port_holders(stderr: &str, ports: &[u16]) -> String {
    if !stderr.contains("Address already in use") {
        return String::new();
    }
    let Ok(ss) = Command::new("ss").arg("-tanp").output() else {
        return String::new();
    };
    let ss = String::from_utf8_lossy(&ss.stdout);
    let holders: Vec<&str> = ss
        .lines()
        .filter(|l| ports.iter().any(|p| l.contains(&format!(":{p} "))))
        .collect();
    format!("\nsockets on ports {ports:?}:\n{}", holders.join("\n"))
}

/// Runs `text` with `bash -euo pipefail` and `env`; an `interrupt` block gets SIGINT (to its
/// process group) once it printed a line, as an operator's Ctrl-C.
fn run(text: &str, env: &BTreeMap<&str, String>, interrupt: bool) -> Ran {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{text}"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if interrupt {
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    let mut child = cmd.spawn().unwrap();
    let (out, out_h) = drain(child.stdout.take().unwrap());
    let (err, err_h) = drain(child.stderr.take().unwrap());
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    if interrupt {
        poll_until(BLOCK_TIMEOUT, "the block's first line", || {
            anyhow::ensure!(child.try_wait()?.is_none(), "ended before its interrupt");
            Ok(out.lock().unwrap().contains(&b'\n').then_some(()))
        })
        .unwrap();
        killpg(pgid, Signal::SIGINT).unwrap();
    }
    let status = poll_until(BLOCK_TIMEOUT, "the block to finish", || {
        Ok(child.try_wait()?)
    });
    let status = status.unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{e:#}\n{text}");
    });
    out_h.join().unwrap();
    err_h.join().unwrap();
    let text_of =
        |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    Ran {
        status,
        stdout: text_of(&out),
        stderr: text_of(&err),
    }
}

/// Members host `h`'s sheep reports (`dog node list --json`).
fn members(h: &Host) -> anyhow::Result<usize> {
    let port = h.port.to_string();
    let out = dog(&["node", "list", "--json", "-p", &port], None)?;
    out.check_success("dog node list --json")?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(doc["nodes"].as_array().map_or(0, Vec::len))
}

fn wait_members(h: &Host, n: usize) {
    poll_until(
        SETTLE,
        &format!("{n} members seen by port {}", h.port),
        || Ok((members(h).ok() == Some(n)).then_some(())),
    )
    .unwrap();
}

fn wait_pid(h: &Host) -> i32 {
    poll_until(SETTLE, "the sheep's pid file", || Ok(pid_of(&h.dir))).unwrap()
}

/// Waits until the sheep of `h` has exited (its `DIR/lock` is free) and its pid file is gone.
fn wait_stopped(h: &Host) {
    poll_until(SETTLE, "the sheep to exit", || {
        Ok((!h.pid_file().exists()).then_some(()))
    })
    .unwrap();
}

/// The objects in `DIR/obj`.
fn objects(h: &Host) -> BTreeSet<String> {
    sd_testkit::dir_names(&h.dir.join("obj"))
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.len() == 16 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// Waits until the `hosts` (the three members) hold the same objects, at least `min` of
/// them: with copies=3 on three zones every object is on every node.
fn wait_three_copies(hosts: [&Host; 3], min: usize) -> BTreeSet<String> {
    poll_until(SETTLE, "every object on all three nodes", || {
        let sets = hosts.map(objects);
        Ok(
            (sets[0].len() >= min && sets[0] == sets[1] && sets[1] == sets[2])
                .then(|| sets[0].clone()),
        )
    })
    .unwrap()
}

/// qemu-io `read -P` of the VDI through host `h`'s NBD export.
fn check_nbd(h: &Host, reads: &[&str]) {
    let uri = format!("nbd://127.0.0.1:{}/vm1", h.nbd_port);
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", "-r"]);
    for r in reads {
        cmd.args(["-c", r]);
    }
    let out = cmd.arg(&uri).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("failed"),
        "qemu-io {uri}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The unit's `KEY=` value.
fn unit_value<'a>(key: &str) -> &'a str {
    UNIT.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("docs/sheep.service has no {key}="))
}

#[test]
fn operations_guide_runs() {
    let blocks = parse(GUIDE);
    let skips = blocks.iter().filter(|b| b.role == Role::Skip).count();
    assert!(skips <= 5, "{skips} skipped blocks: keep them few");
    let steps: BTreeSet<&str> = blocks.iter().map(|b| b.step.as_str()).collect();
    for s in [
        "start",
        "format",
        "vdi",
        "stop",
        "writeback",
        "writeback-io",
        "failed",
        "replace",
        "watch",
        "recovered",
        "disk-stop",
        "disk-start",
        "loglevel",
        "sighup",
        "metrics",
    ] {
        assert!(steps.contains(s), "the guide lost step {s:?}");
    }

    let zk = ZkServer::start().unwrap();
    let root = tempfile::Builder::new()
        .prefix("sheepdog-docs-")
        .tempdir()
        .unwrap();
    // Hosts 1-3 deploy, 4 replaces 3 (in its zone), 5 runs the systemd unit's command.
    let hosts: Vec<Host> = [1, 2, 3, 3, 4]
        .iter()
        .enumerate()
        .map(|(i, &zone)| Host {
            dir: root.path().join(format!("host{}", i + 1)),
            port: free_port().unwrap(),
            nbd_port: free_port().unwrap(),
            metrics_port: free_port().unwrap(),
            zone,
        })
        .collect();
    let mut guard = Guard {
        dirs: hosts.iter().map(|h| h.dir.clone()).collect(),
        unit: None,
    };
    let path = format!(
        "{}:{}",
        bin_dir().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = |h: &Host| -> BTreeMap<&str, String> {
        BTreeMap::from([
            ("HOST_IP", "127.0.0.1".to_owned()),
            ("PORT", h.port.to_string()),
            ("ZONE", h.zone.to_string()),
            ("ZK", zk.connect_string()),
            ("DIR", h.dir.display().to_string()),
            ("NBD_PORT", h.nbd_port.to_string()),
            ("METRICS_PORT", h.metrics_port.to_string()),
            ("PATH", path.clone()),
        ])
    };
    let [h1, h2, h3, h4, h5] = [0, 1, 2, 3, 4].map(|i| &hosts[i]);

    for b in &blocks {
        let at = format!("docs/operations.md:{} ({})", b.line, b.step);
        let runs: Vec<&Host> = match &b.role {
            Role::Skip => continue,
            Role::Vars => {
                let names: BTreeSet<&str> = b
                    .text
                    .lines()
                    .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
                    .collect();
                assert_eq!(names, BTreeSet::from(VARS), "{at}");
                continue;
            }
            Role::Unit => {
                assert_eq!(
                    b.text, UNIT,
                    "{at}: docs/sheep.service differs from the guide"
                );
                continue;
            }
            Role::Admin => vec![h1],
            Role::Hosts(ns) => ns.iter().map(|n| &hosts[n - 1]).collect(),
        };
        // Before the step: what the operator waits for, or the failure the step is about.
        match b.step.as_str() {
            "format" => wait_members(h1, 3),
            "failed" => {
                // Host 3 crashes (a power cut as far as the cluster can tell).
                let pid = wait_pid(h3);
                kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
                wait_members(h1, 2);
            }
            "disk-start" => {
                // The new, empty file system on DIR.
                std::fs::remove_dir_all(&h2.dir).unwrap();
                std::fs::create_dir_all(h2.dir.join("lost+found")).unwrap();
            }
            "metrics" => {
                poll_until(SETTLE, "the sampled gauges", || {
                    let m = scrape(&h1.metrics_addr())?;
                    Ok((value(&m, "sheep_cluster_nodes") == 3.0
                        // format, host 1 left and back, host 3 died, host 4 came,
                        // host 2 left and back with its new disk.
                        && value(&m, "sheep_epoch") == 7.0)
                        .then_some(()))
                })
                .unwrap();
            }
            _ => {}
        }
        for h in runs {
            eprintln!("running {at} for port {}", h.port);
            let r = run(&b.text, &env(h), b.interrupt);
            assert!(
                r.status.success(),
                "{at} on port {} failed with {}\nstdout:\n{}\nstderr:\n{}{}",
                h.port,
                r.status,
                r.stdout,
                r.stderr,
                port_holders(&r.stderr, &[h.port, h.nbd_port, h.metrics_port])
            );
            let out = r.stdout;
            // After the step: what it must have achieved.
            match b.step.as_str() {
                "start" | "disk-start" => {
                    wait_pid(h);
                }
                "writeback" | "replace" => {
                    wait_pid(h);
                    wait_members(h1, 3);
                }
                "format" => {
                    assert!(out.contains("Cluster status: running"), "{at}: {out}");
                    let epoch1 = out.lines().find(|l| l.contains(" 1 [")).unwrap_or_default();
                    for p in [h1.port, h2.port, h3.port] {
                        assert!(epoch1.contains(&format!("127.0.0.1:{p}")), "{at}: {out}");
                    }
                }
                "vdi" => {
                    assert!(out.contains("vm1"), "{at}: {out}");
                    assert!(out.contains("read 4194304/4194304 bytes"), "{at}: {out}");
                }
                "stop" | "disk-stop" => {
                    wait_stopped(h);
                    let log = std::fs::read_to_string(h.dir.join("sheep.log")).unwrap();
                    assert!(
                        log.contains("stopping cleanly")
                            && log.contains("left the cluster")
                            && log.contains("sheep stopped")
                            && !log.contains("ERROR"),
                        "{at}: {log}"
                    );
                    wait_members(other_than(h, h1, h2), 2);
                }
                "writeback-io" => {
                    assert!(
                        out.contains(&format!("127.0.0.1:{} writeback", h1.port))
                            && out.contains(&format!("127.0.0.1:{} writethrough", h2.port)),
                        "{at}: {out}"
                    );
                    assert!(out.contains("wrote 1048576/1048576 bytes at offset 5242880"));
                }
                "failed" => {
                    assert!(!out.contains(&format!(":{}", h3.port)), "{at}: {out}");
                }
                "watch" => assert!(out.contains("Nodes In Recovery"), "{at}: {out}"),
                "recovered" => {
                    // Every object (the inode, data objects 0 and 1) has 3 copies again,
                    // one on the replacement, and reads back through it.
                    wait_members(h1, 3);
                    wait_three_copies([h1, h2, h4], 3);
                    check_nbd(
                        h4,
                        &[
                            "read -P 0x5a 0 4M",
                            "read -P 0xa5 4M 1M",
                            "read -P 0xa6 5M 1M",
                        ],
                    );
                }
                "loglevel" => assert!(out.contains("debug (7)"), "{at}: {out}"),
                "sighup" => {
                    poll_until(SETTLE, "a new sheep.log", || {
                        Ok(h.dir.join("sheep.log").exists().then_some(()))
                    })
                    .unwrap();
                }
                "metrics" => {
                    assert!(out.contains("sheep_epoch "), "{at}: {out}");
                    assert!(out.contains("sheep_cluster_nodes 3\n"), "{at}: {out}");
                }
                _ => {}
            }
            if b.step == "disk-start" {
                // The wiped store is refilled: three copies of everything again.
                wait_members(h1, 3);
                let objs = wait_three_copies([h1, h2, h4], 3);
                assert!(!objs.is_empty());
                check_nbd(h2, &["read -P 0x5a 0 4M", "read -P 0xa6 5M 1M"]);
            }
        }
    }

    // The systemd unit: ExecStart (with /etc/default/sheep's variables) starts a sheep that
    // joins; ExecReload reopens its log; KillSignal stops it cleanly within TimeoutStopSec.
    let exec = unit_value("ExecStart");
    let exec = exec
        .strip_prefix("/usr/local/bin/sheep ")
        .expect("ExecStart runs /usr/local/bin/sheep");
    assert!(
        exec.split_whitespace().any(|a| a == "-f"),
        "Type=simple needs -f"
    );
    assert_eq!(unit_value("Type"), "simple");
    assert_eq!(unit_value("KillSignal"), "SIGTERM");
    std::fs::create_dir_all(&h5.dir).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("exec sheep {exec}"))
        .envs(env(h5))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    guard.unit = Some(cmd.spawn().unwrap());
    wait_members(h1, 4);
    let main_pid = guard.unit.as_ref().unwrap().id().to_string();
    let reload = unit_value("ExecReload").replace("$MAINPID", &main_pid);
    std::fs::rename(h5.dir.join("sheep.log"), h5.dir.join("sheep.log.old")).unwrap();
    let r = run(&reload, &env(h5), false);
    assert!(r.status.success(), "ExecReload: {}", r.stderr);
    poll_until(SETTLE, "ExecReload to reopen the log", || {
        Ok(h5.dir.join("sheep.log").exists().then_some(()))
    })
    .unwrap();
    let stop_timeout: u64 = unit_value("TimeoutStopSec").parse().unwrap();
    let unit = guard.unit.as_mut().unwrap();
    kill(
        Pid::from_raw(i32::try_from(unit.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = poll_until(
        Duration::from_secs(stop_timeout).min(SETTLE),
        "the unit's sheep to stop",
        || Ok(unit.try_wait()?),
    )
    .unwrap();
    assert!(status.success(), "the unit's sheep exited with {status}");
    guard.unit = None;
    wait_members(h1, 3);
}

/// A live host other than `h` to ask about the membership.
fn other_than<'a>(h: &Host, h1: &'a Host, h2: &'a Host) -> &'a Host {
    if h.port == h1.port { h2 } else { h1 }
}

#[test]
fn guide_documents_every_metric() {
    let names: Vec<&str> = METRICS_RS
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"sheep_"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(names.len() >= 16, "{names:?}");
    for n in names {
        assert!(
            GUIDE.contains(&format!("| `{n}` |")),
            "docs/operations.md's metrics table lacks {n}"
        );
    }
}
