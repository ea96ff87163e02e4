//! VDI locks on a 3-sheep cluster: a writer holds its VDI (an NBD export that wrote, or a
//! QEMU-driver client's LOCK_VDI); a second writer is refused with VDI_LOCKED (NBD: the
//! write fails with EPERM); the lock dies with the holder's last connection or node;
//! `dog vdi lock list|unlock`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sd_proto::{SdResult, Vid};
use sd_testkit::{Cluster, poll_until, req};

const SETTLE: Duration = Duration::from_secs(60);

/// An interactive `qemu-io` on one NBD connection: commands go in, output lines come out.
struct QemuIo {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl QemuIo {
    fn open(uri: &str) -> QemuIo {
        let mut child = Command::new("qemu-io")
            .args(["-f", "raw", uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qemu-io");
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        QemuIo {
            child,
            stdin,
            lines,
        }
    }

    /// Runs `cmd`; returns the first output line mentioning `wrote`, `read` or an error.
    fn run(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("qemu-io {cmd:?}: no answer: {e}"));
            let l = l.trim_start_matches("qemu-io> ").to_string();
            if l.starts_with("wrote") || l.starts_with("read") || l.contains("failed") {
                return l;
            }
        }
    }
}

impl Drop for QemuIo {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

/// LOCK_VDI of `name` through node `i` (QEMU's open).
fn lock_vdi(c: &Cluster, i: usize, name: &str) -> SdResult {
    c.connect(i)
        .unwrap()
        .call(&req::lock_vdi(), &req::name_field(name))
        .unwrap()
        .result()
}

fn lock_list(c: &Cluster, i: usize) -> Vec<String> {
    let out = c.dog(i, &["vdi", "lock", "list"], None).unwrap();
    out.check_success("dog vdi lock list").unwrap();
    out.stdout_str().lines().map(str::to_string).collect()
}

fn owner_line(c: &Cluster, name: &str, i: usize) -> String {
    format!("{name} | IPv4 ip:127.0.0.1 port:{}", c.sheep(i).port())
}

#[test]
fn second_writer_is_refused_and_locks_die_with_their_holder() {
    let mut c = Cluster::start_nbd(3, &[], &[0, 1]).unwrap();
    c.format(3).unwrap();
    c.dog(0, &["vdi", "create", "v", "16M"], None)
        .unwrap()
        .check_success("dog vdi create")
        .unwrap();
    assert_eq!(lock_list(&c, 2), ["VDI | owner node"]);

    // An NBD writer on node 0 takes the lock with its first write.
    let mut w0 = QemuIo::open(&c.nbd_uri(0, "v"));
    let l = w0.run("write -P 0x11 0 4k");
    assert!(l.starts_with("wrote"), "{l}");
    assert_eq!(
        lock_list(&c, 2),
        ["VDI | owner node".to_string(), owner_line(&c, "v", 0)]
    );
    // A second writer: refused through NBD on node 1 and through LOCK_VDI; reads work.
    let mut w1 = QemuIo::open(&c.nbd_uri(1, "v"));
    let l = w1.run("write -P 0x22 0 4k");
    assert!(l.contains("failed"), "second NBD writer: {l}");
    let l = w1.run("read -P 0x11 0 4k");
    assert!(l.starts_with("read"), "reader: {l}");
    assert_eq!(lock_vdi(&c, 1, "v"), SdResult::VdiLocked);
    assert_eq!(
        lock_vdi(&c, 0, "v"),
        SdResult::VdiLocked,
        "same node, other writer"
    );
    // Deleting a held VDI is refused too.
    let out = c.dog(2, &["vdi", "delete", "v"], None).unwrap();
    assert!(!out.status.success(), "delete of a locked VDI succeeded");
    drop(w1);

    // The writer's last connection closes: the lock goes; a QEMU-driver client takes it.
    drop(w0);
    poll_until(SETTLE, "the NBD writer's lock to be released", || {
        Ok((lock_vdi(&c, 1, "v") == SdResult::Success).then_some(()))
    })
    .unwrap();
    assert_eq!(
        lock_list(&c, 0),
        ["VDI | owner node".to_string(), owner_line(&c, "v", 1)]
    );
    let mut w0 = QemuIo::open(&c.nbd_uri(0, "v"));
    let l = w0.run("write -P 0x33 0 4k");
    assert!(l.contains("failed"), "NBD writer against LOCK_VDI: {l}");
    drop(w0);

    // The holder's node dies: its locks die with it.
    c.kill9(1).unwrap();
    poll_until(SETTLE, "node 1's lock to die with it", || {
        Ok((lock_vdi(&c, 2, "v") == SdResult::Success).then_some(()))
    })
    .unwrap();
    // A forced unlock frees it for the NBD writer on node 0.
    c.dog(0, &["vdi", "lock", "unlock", "v"], None)
        .unwrap()
        .check_success("dog vdi lock unlock")
        .unwrap();
    assert_eq!(lock_list(&c, 0), ["VDI | owner node"]);
    let mut w0 = QemuIo::open(&c.nbd_uri(0, "v"));
    let l = w0.run("write -P 0x44 0 4k");
    assert!(l.starts_with("wrote"), "{l}");
    let l = w0.run("read -P 0x44 0 4k");
    assert!(l.starts_with("read"), "{l}");
    // RELEASE_VDI as QEMU closes: a no-op for a lock it does not hold is still SUCCESS.
    let vid: Vid = Vid::nonzero(
        c.connect(0)
            .unwrap()
            .call_ok(&req::get_vdi_info(), &req::name_field("v"))
            .unwrap()
            .header
            .vdi()
            .vdi_id,
    )
    .unwrap();
    drop(w0);
    poll_until(SETTLE, "the lock list to empty", || {
        Ok((lock_list(&c, 2).len() == 1).then_some(()))
    })
    .unwrap();
    let rsp = c
        .connect(2)
        .unwrap()
        .call(&req::release_vdi(vid), &[])
        .unwrap();
    assert_eq!(rsp.result(), SdResult::Success);
}
