//! `faultfs [--control SOCKET] [--die-with-parent] IMAGE MOUNTPOINT`: mounts the image's
//! durable state at MOUNTPOINT and serves the control protocol (`faultfs::control`) on
//! SOCKET until a `cut` or `unmount` command, SIGTERM/SIGINT (a power cut), or an unmount
//! from outside (a clean unmount).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use faultfs::control::{self, Command};
use faultfs::fuse::{FaultFs, Shared};
use faultfs::image;
use nix::sys::signal::{SigSet, Signal};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "faultfs",
    about = "FUSE file system that loses unsynced data at a power cut"
)]
struct Args {
    /// The image file holding the durable state (created at the first cut or unmount).
    image: PathBuf,
    /// Where to mount.
    mountpoint: PathBuf,
    /// The control socket (default: IMAGE.ctl).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Cut the power when the parent process exits (so a killed test leaves no mount).
    #[arg(long)]
    die_with_parent: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Every thread inherits this mask, so only the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().context("blocking signals")?;
    if args.die_with_parent {
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("prctl(PR_SET_PDEATHSIG)")?;
    }
    let mountpoint = args
        .mountpoint
        .canonicalize()
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    let control_path = args.control.clone().unwrap_or_else(|| {
        let mut p = args.image.clone().into_os_string();
        p.push(".ctl");
        PathBuf::from(p)
    });
    match std::fs::remove_file(&control_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", control_path.display())),
    }

    let model = image::load(&args.image)?;
    let shared = Shared::new(model);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("faultfs".into()),
        fuser::MountOption::Subtype("faultfs".into()),
    ];
    config.n_threads = Some(2);
    let session = fuser::Session::new(FaultFs::new(shared.clone()), &mountpoint, &config)
        .with_context(|| format!("mounting {}", mountpoint.display()))?
        .spawn()
        .context("starting the FUSE session")?;

    let ctx = Arc::new(Ctx {
        shared,
        image: args.image.clone(),
        mountpoint: mountpoint.clone(),
        finished: Mutex::new(false),
    });
    // Unmounted from outside: a clean unmount.
    let on_end = ctx.clone();
    std::thread::spawn(move || {
        let result = session.join();
        if let Err(e) = result {
            eprintln!("faultfs: session ended: {e}");
        }
        // After a cut or unmount command the session ends too; that command exits.
        if on_end.finish(false) {
            std::process::exit(0);
        }
    });

    let listener = UnixListener::bind(&control_path)
        .with_context(|| format!("binding {}", control_path.display()))?;
    let serve = ctx.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            serve.serve(conn);
        }
    });
    eprintln!(
        "faultfs: {} mounted at {}, control {}",
        args.image.display(),
        mountpoint.display(),
        control_path.display()
    );

    let sig = signals.wait().context("waiting for signals")?;
    eprintln!("faultfs: {sig}: power cut");
    if ctx.finish(true) {
        return Ok(());
    }
    // A command is finishing and exits.
    loop {
        std::thread::park();
    }
}

/// What the control thread and the signal handler act on.
struct Ctx {
    shared: Arc<Shared>,
    image: PathBuf,
    mountpoint: PathBuf,
    /// The file system has been ended (only the first cut or unmount counts).
    finished: Mutex<bool>,
}

impl Ctx {
    /// Answers the commands of one control connection.
    fn serve(&self, conn: UnixStream) {
        let Ok(read) = conn.try_clone() else {
            return;
        };
        let mut out = conn;
        for line in BufReader::new(read).lines() {
            let Ok(line) = line else {
                return;
            };
            let answer = match control::parse(&line) {
                Ok(Command::Cut) => {
                    self.finish(true);
                    let _ = out.write_all(b"ok\n");
                    std::process::exit(0);
                }
                Ok(Command::Unmount) => {
                    self.finish(false);
                    let _ = out.write_all(b"ok\n");
                    std::process::exit(0);
                }
                Ok(cmd) => self.apply(cmd),
                Err(e) => Err(e),
            };
            let line = match answer {
                Ok(detail) if detail.is_empty() => "ok\n".to_string(),
                Ok(detail) => format!("ok {detail}\n"),
                Err(e) => format!("err {e}\n"),
            };
            if out.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn apply(&self, cmd: Command) -> Result<String, String> {
        let mut m = self.shared.lock();
        match cmd {
            Command::Sync => m.sync_all(),
            Command::Capacity(c) => m.set_capacity(c),
            Command::Eio(p) => {
                let ino = m.resolve(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                m.set_eio(ino, true).map_err(|e| e.to_string())?;
            }
            Command::EioClear(Some(p)) => {
                let ino = m.resolve(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                m.set_eio(ino, false).map_err(|e| e.to_string())?;
            }
            Command::EioClear(None) => m.clear_eio(),
            Command::Stat => {
                let c = &self.shared.counters;
                let cap = m.capacity().map_or("off".to_string(), |c| c.to_string());
                return Ok(format!(
                    "used={} capacity={cap} fsyncs={} fsyncdirs={} writes={} sync_writes={}",
                    m.used(),
                    c.fsyncs.load(Ordering::Relaxed),
                    c.fsyncdirs.load(Ordering::Relaxed),
                    c.writes.load(Ordering::Relaxed),
                    c.sync_writes.load(Ordering::Relaxed),
                ));
            }
            Command::Cut | Command::Unmount => return Err("handled by the caller".into()),
        }
        Ok(String::new())
    }

    /// Ends the file system: `cut` keeps only the durable state, else everything is made
    /// durable first; the result is saved and the mount detached. Requests that arrive
    /// from now on fail with EIO. False if it had been ended already.
    fn finish(&self, cut: bool) -> bool {
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        if *finished {
            return false;
        }
        *finished = true;
        {
            let mut m = self.shared.cut();
            if !cut {
                m.sync_all();
            }
            if let Err(e) = image::save(&m, &self.image) {
                eprintln!("faultfs: saving the image: {e:#}");
            }
        }
        detach(&self.mountpoint);
        true
    }
}

/// Lazily unmounts `mountpoint` (the kernel lets go of it once no one uses it).
fn detach(mountpoint: &Path) {
    if let Err(e) = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
        // Not root: the setuid helper can do it.
        let ok = std::process::Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("faultfs: unmounting {}: {e}", mountpoint.display());
        }
    }
}
