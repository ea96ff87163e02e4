//! [`FaultFs`]: a `faultfs` mount (the workspace's crash-test file system, `crates/faultfs`)
//! under a sheep's base directory: cut its power, mount what survived again, limit its
//! capacity, make reads of a file fail.
//!
//! The `faultfs` process runs with `--die-with-parent`: it cuts the power and unmounts when
//! the thread that started it exits, so a test that dies leaves no mount behind. Start
//! mounts from the test's own thread.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{bin_path, poll_until};

/// How long mounting (or exiting after a cut) may take.
pub const FAULTFS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one control command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What `faultfs` reports about itself (the `stat` command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultFsStat {
    /// Bytes of file data allocated.
    pub used: u64,
    /// The capacity limit, if any.
    pub capacity: Option<u64>,
    /// FUSE_FSYNC requests served.
    pub fsyncs: u64,
    /// FUSE_FSYNCDIR requests served.
    pub fsyncdirs: u64,
    /// FUSE_WRITE requests served.
    pub writes: u64,
    /// Writes that were durable by themselves (`O_DSYNC` or `RWF_DSYNC`).
    pub sync_writes: u64,
}

/// A `faultfs IMAGE MOUNTPOINT` process, or (after [`FaultFs::cut`]) its image awaiting
/// [`FaultFs::remount`]. Dropping it cuts the power and unmounts.
#[derive(Debug)]
pub struct FaultFs {
    child: Option<Child>,
    image: PathBuf,
    mountpoint: PathBuf,
    control: PathBuf,
}

impl FaultFs {
    /// Mounts `image` (a missing image is an empty file system) at the existing directory
    /// `mountpoint`, and waits until it serves. The control socket is `IMAGE.ctl`.
    pub fn mount(image: &Path, mountpoint: &Path) -> anyhow::Result<FaultFs> {
        let image = std::path::absolute(image)?;
        let mut control = image.clone().into_os_string();
        control.push(".ctl");
        let mut fs = FaultFs {
            child: None,
            image,
            mountpoint: std::path::absolute(mountpoint)?,
            control: PathBuf::from(control),
        };
        fs.spawn()?;
        Ok(fs)
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The image file holding the durable state after a cut.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// True while the file system is mounted (its process runs).
    pub fn is_mounted(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        ensure!(!self.is_mounted(), "faultfs is mounted already");
        let bin = bin_path("faultfs")?;
        let mut child = Command::new(&bin)
            .arg("--control")
            .arg(&self.control)
            .arg("--die-with-parent")
            .arg(&self.image)
            .arg(&self.mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let ready = poll_until(
            FAULTFS_TIMEOUT,
            "faultfs to serve its control socket",
            || {
                if let Some(status) = child.try_wait()? {
                    bail!("faultfs exited with {status} before it was mounted");
                }
                // The socket is bound only once the mount is ready.
                Ok(UnixStream::connect(&self.control).ok().map(drop))
            },
        );
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.context(format!("mounting {}", self.mountpoint.display())));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Sends one control command (`faultfs::control`); returns the detail of its `ok`.
    pub fn command(&self, line: &str) -> anyhow::Result<String> {
        let mut s = UnixStream::connect(&self.control)
            .with_context(|| format!("connecting to {}", self.control.display()))?;
        s.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        s.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        BufReader::new(s)
            .read_line(&mut answer)
            .with_context(|| format!("faultfs answering {line:?}"))?;
        let answer = answer.trim_end();
        match answer.strip_prefix("ok") {
            Some(detail) => Ok(detail.trim_start().to_string()),
            None => bail!("faultfs {line:?}: {answer:?}"),
        }
    }

    /// Cuts the power: everything not made durable is lost, the image keeps the rest, and
    /// the file system is unmounted. Stop whatever uses it first (SIGKILL the sheep).
    pub fn cut(&mut self) -> anyhow::Result<()> {
        self.end("cut")
    }

    /// Unmounts cleanly: everything is made durable first.
    pub fn unmount(&mut self) -> anyhow::Result<()> {
        self.end("unmount")
    }

    fn end(&mut self, how: &str) -> anyhow::Result<()> {
        ensure!(self.is_mounted(), "faultfs is not mounted");
        self.command(how)?;
        let mut child = self.child.take().context("faultfs is not running")?;
        let status = poll_until(FAULTFS_TIMEOUT, "faultfs to exit", || Ok(child.try_wait()?))?;
        ensure!(status.success(), "faultfs ended with {status} after {how}");
        Ok(())
    }

    /// Mounts the image again (after [`FaultFs::cut`] or [`FaultFs::unmount`]): the disk
    /// as the power cut left it.
    pub fn remount(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// Writes that would allocate file data past `bytes` in total fail with ENOSPC
    /// (`None`: no limit).
    pub fn set_capacity(&self, bytes: Option<u64>) -> anyhow::Result<()> {
        let arg = bytes.map_or_else(|| "off".to_string(), |b| b.to_string());
        self.command(&format!("capacity {arg}")).map(drop)
    }

    /// Reads of the file at `path` (relative to the mount point) fail with EIO (`on`), or
    /// work again.
    pub fn set_eio(&self, path: &str, on: bool) -> anyhow::Result<()> {
        let cmd = if on { "eio" } else { "eio-clear" };
        self.command(&format!("{cmd} {path}")).map(drop)
    }

    /// Usage and request counters.
    pub fn stat(&self) -> anyhow::Result<FaultFsStat> {
        let detail = self.command("stat")?;
        let mut s = FaultFsStat::default();
        for field in detail.split_whitespace() {
            let (k, v) = field.split_once('=').context("stat field")?;
            let n = || v.parse::<u64>().with_context(|| format!("stat {k}={v}"));
            match k {
                "used" => s.used = n()?,
                "capacity" if v == "off" => s.capacity = None,
                "capacity" => s.capacity = Some(n()?),
                "fsyncs" => s.fsyncs = n()?,
                "fsyncdirs" => s.fsyncdirs = n()?,
                "writes" => s.writes = n()?,
                "sync_writes" => s.sync_writes = n()?,
                _ => {}
            }
        }
        Ok(s)
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM is a power cut; the process unmounts and exits.
        if let Ok(pid) = i32::try_from(child.id())
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let exited = poll_until(FAULTFS_TIMEOUT, "faultfs to exit", || Ok(child.try_wait()?));
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
