//! Running the real `dog` binary with a deadline.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
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

    let input = stdin.map(<[u8]>::to_vec).unwrap_or_default();
    let writer = child.stdin.take().map(|mut w| {
        std::thread::spawn(move || {
            // dog may exit without reading everything; a broken pipe is its business.
            let _ = w.write_all(&input);
        })
    });
    let out = child.stdout.take().map(collect);
    let err = child.stderr.take().map(collect);

    let waited = poll_until(DOG_TIMEOUT, "dog to exit", || {
        child.try_wait().context("waiting for dog")
    });
    let status = match waited {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = join_bytes(out);
            let stderr = join_bytes(err);
            return Err(e.context(format!(
                "dog {args:?} hung; stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            )));
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(DogOutput {
        status,
        stdout: join_bytes(out),
        stderr: join_bytes(err),
    })
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn join_bytes(h: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}
