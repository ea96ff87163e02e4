//! Running the real `dog` binary with a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{bin_path, poll_until};

/// How long one `dog` invocation may run before it is killed (dog retries I/O forever).
pub const DOG_TIMEOUT: Duration = Duration::from_secs(60);

/// What a `dog` run produced.
#[derive(Debug, Clone)]
pub struct DogOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout (binary for `vdi read`).
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl DogOutput {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as text (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (lossy).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Fails with the command's output unless it exited 0.
    pub fn check_success(&self, what: &str) -> anyhow::Result<&Self> {
        if !self.status.success() {
            bail!(
                "{what}: dog exited with {}\nstdout: {}\nstderr: {}",
                self.status,
                self.stdout_str(),
                self.stderr_str()
            );
        }
        Ok(self)
    }
}

/// Runs `dog ARGS` with `stdin` (or an empty stdin), capturing both output streams; kills it
/// after [`DOG_TIMEOUT`]. Set `-p PORT` in `args` (or use [`crate::Sheep::dog`]).
pub fn dog(args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<DogOutput> {
    let mut child = spawn_dog(args)?;
    let input = stdin.map(<[u8]>::to_vec).unwrap_or_default();
    let writer = child.take_stdin().map(|mut w| {
        std::thread::spawn(move || {
            // dog may exit without reading everything; a broken pipe is its business.
            let _ = w.write_all(&input);
        })
    });
    let out = child.wait();
    if let Some(w) = writer {
        let _ = w.join();
    }
    out
}

/// Starts `dog ARGS` with its stdin on a pipe the caller feeds (see
/// [`DogChild::take_stdin`]), so a test can stream data into `dog vdi write` and act while
/// dog is in the middle of it. Set `-p PORT` in `args` (or use [`crate::Sheep::spawn_dog`]).
pub fn spawn_dog(args: &[&str]) -> anyhow::Result<DogChild> {
    spawn(args, false)
}

/// Starts `dog ARGS` like [`spawn_dog`], and also hands each line of its stdout to
/// [`DogChild::next_line`] as it is printed (for `--watch`). Set `-p PORT` in `args` (or use
/// [`crate::Sheep::spawn_dog_lines`]).
pub fn spawn_dog_lines(args: &[&str]) -> anyhow::Result<DogChild> {
    spawn(args, true)
}

fn spawn(args: &[&str], lines: bool) -> anyhow::Result<DogChild> {
    let bin = bin_path("dog")?;
    let mut child = Command::new(&bin)
        .args(args)
        .env_remove("SHEEPDOG_DOG_ADDR")
        .env_remove("SHEEPDOG_DOG_PORT")
        .env_remove("SHEEPDOG_DOG_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let stdin = child.stdin.take();
    let (tx, rx) = if lines {
        let (tx, rx) = mpsc::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let out = child.stdout.take().map(|r| collect_lines(r, tx));
    let err = child.stderr.take().map(collect);
    Ok(DogChild {
        child,
        args: args.iter().map(|a| (*a).to_string()).collect(),
        stdin,
        out,
        err,
        lines: rx,
    })
}

/// A running `dog` started by [`spawn_dog`]. Dropping it kills dog.
#[derive(Debug)]
pub struct DogChild {
    child: Child,
    args: Vec<String>,
    stdin: Option<ChildStdin>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    lines: Option<Receiver<String>>,
}

impl DogChild {
    /// The write end of dog's stdin (once). Dropping it is end-of-file for dog.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The next line dog prints (without its newline), waiting up to `timeout`; only for a
    /// dog started by [`spawn_dog_lines`]. Fails on timeout or when dog closed stdout.
    pub fn next_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let Some(rx) = self.lines.as_ref() else {
            bail!("dog {:?} was not started with spawn_dog_lines", self.args);
        };
        match rx.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                bail!("dog {:?} printed no line within {timeout:?}", self.args)
            }
            Err(RecvTimeoutError::Disconnected) => {
                bail!("dog {:?} closed its stdout", self.args)
            }
        }
    }

    /// Sends SIGINT (Ctrl-C) to dog.
    pub fn interrupt(&self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGINT)
            .context("sending SIGINT to dog")
    }

    /// True while dog runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes stdin (if still held) and waits up to [`DOG_TIMEOUT`] for dog to exit,
    /// killing it and failing with what it printed if it does not.
    pub fn wait(mut self) -> anyhow::Result<DogOutput> {
        drop(self.stdin.take());
        let waited = poll_until(DOG_TIMEOUT, "dog to exit", || {
            self.child.try_wait().context("waiting for dog")
        });
        let status = match waited {
            Ok(status) => status,
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stdout = join_bytes(self.out.take());
                let stderr = join_bytes(self.err.take());
                return Err(e.context(format!(
                    "dog {:?} hung; stdout: {}\nstderr: {}",
                    self.args,
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                )));
            }
        };
        Ok(DogOutput {
            status,
            stdout: join_bytes(self.out.take()),
            stderr: join_bytes(self.err.take()),
        })
    }
}

impl Drop for DogChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Like [`collect`], also sending each complete line to `tx` (when given).
fn collect_lines(r: impl Read + Send + 'static, tx: Option<Sender<String>>) -> JoinHandle<Vec<u8>> {
    let Some(tx) = tx else {
        return collect(r);
    };
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            let start = buf.len();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = buf.get(start..).unwrap_or_default();
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    // The receiver may be gone; the bytes are still collected.
                    let _ = tx.send(String::from_utf8_lossy(line).into_owned());
                }
            }
        }
        buf
    })
}

fn join_bytes(h: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}
