//! `-c local[:PATH]`: sheep on one host form a cluster through a shared directory.
//!
//! - `PATH/log`: the ordered log, frames of `u32 length ‖ record`, appended with one
//!   `write` under an exclusive `flock` on `PATH/log.lock`. Every member tails it.
//! - `PATH/members/<ip:port>`: each sheep holds an exclusive `flock` on its file while it
//!   lives; the kernel drops it when the process dies, SIGKILL included. Members probe each
//!   other's locks; whoever obtains a dead member's lock appends its `Leave` *while holding
//!   it*, so a restarting sheep (which must take its lock before it appends its `Join`) is
//!   always ordered after its own `Leave`. Duplicate leaves are ignored by the fold.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};
use sd_cluster::ClusterError;
use sd_cluster::log::{LogEntry, Record, Saved};
use sd_cluster::log_file::{self, Frames};
use sd_proto::node::{NodeId, SdNode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the log is tailed.
const TAIL_INTERVAL: Duration = Duration::from_millis(10);
/// How often members' liveness locks are probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(300);

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// A member of a local cluster.
#[derive(Debug)]
pub struct LocalDriver {
    path: Arc<PathBuf>,
    /// Our liveness lock, held for the life of the process.
    _alive: Arc<File>,
}

fn member_file(path: &Path, nid: &NodeId) -> PathBuf {
    path.join("members").join(nid.to_string())
}

/// Appends one record under the log lock.
fn append_blocking(path: &Path, rec: &Record) -> Result<(), ClusterError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join("log.lock"))
        .map_err(io_err("log.lock"))?;
    flock(&lock, FlockOperation::LockExclusive).map_err(|e| ClusterError::Io {
        what: "flock log.lock".into(),
        source: e.into(),
    })?;
    let frame = log_file::frame(rec).map_err(|e| ClusterError::Service(e.to_string()))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path.join("log"))
        .map_err(io_err("log"))?;
    // One write of the whole frame: readers never see it torn by another appender.
    log.write_all(&frame).map_err(io_err("append log"))?;
    Ok(())
}

fn now() -> u64 {
    crate::sys::now_secs()
}

impl LocalDriver {
    /// Joins the cluster in `path`.
    pub async fn start(
        path: PathBuf,
        me: SdNode,
        incarnation: u64,
        saved: Saved,
        cancel: CancellationToken,
    ) -> Result<(LocalDriver, mpsc::Receiver<Record>), ClusterError> {
        let p = path.clone();
        let alive = tokio::task::spawn_blocking(move || -> Result<File, ClusterError> {
            std::fs::create_dir_all(p.join("members")).map_err(io_err(p.display().to_string()))?;
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(member_file(&p, &me.nid))
                .map_err(io_err("member lock"))?;
            // Blocks while a prober holds it to record our previous incarnation's death.
            flock(&f, FlockOperation::LockExclusive).map_err(|e| ClusterError::Io {
                what: "flock member".into(),
                source: e.into(),
            })?;
            // Record the deaths nobody was alive to notice (a whole cluster that went down)
            // before our join, so the cluster we join knows who is really there.
            for nid in logged_members(&p)? {
                if nid != me.nid {
                    probe(&p, &nid)?;
                }
            }
            append_blocking(
                &p,
                &Record {
                    time: now(),
                    entry: LogEntry::Join {
                        node: me,
                        incarnation,
                        saved,
                    },
                },
            )?;
            Ok(f)
        })
        .await
        .map_err(|e| ClusterError::Service(e.to_string()))??;
        let path = Arc::new(path);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(tail(path.clone(), me.nid, tx, cancel));
        Ok((
            LocalDriver {
                path,
                _alive: Arc::new(alive),
            },
            rx,
        ))
    }

    /// Appends an entry.
    pub async fn append(&self, entry: LogEntry) -> Result<(), ClusterError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || append_blocking(&path, &Record { time: now(), entry }))
            .await
            .map_err(|e| ClusterError::Service(e.to_string()))?
    }
}

/// Reads the records completed by what was appended to `log` since `*pos`.
fn read_new(log: &mut File, pos: &mut u64, frames: &mut Frames) -> std::io::Result<Vec<Record>> {
    log.seek(SeekFrom::Start(*pos))?;
    let mut chunk = Vec::new();
    log.read_to_end(&mut chunk)?;
    *pos += chunk.len() as u64;
    frames
        .push(&chunk)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The members the log records so far (joined and not left).
fn logged_members(path: &Path) -> Result<BTreeSet<NodeId>, ClusterError> {
    let mut members = BTreeSet::new();
    let Ok(mut log) = File::open(path.join("log")) else {
        return Ok(members);
    };
    let (mut pos, mut frames) = (0u64, Frames::default());
    for r in read_new(&mut log, &mut pos, &mut frames).map_err(io_err("read log"))? {
        match r.entry {
            LogEntry::Join { node, .. } => {
                members.insert(node.nid);
            }
            LogEntry::Leave { nid } => {
                members.remove(&nid);
            }
            _ => {}
        }
    }
    Ok(members)
}

/// Probes a member's liveness lock; if its owner is dead, records its leave while holding it.
fn probe(path: &Path, nid: &NodeId) -> Result<(), ClusterError> {
    let Ok(f) = OpenOptions::new().write(true).open(member_file(path, nid)) else {
        return Ok(());
    };
    if flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok() {
        tracing::info!(node = %nid, "member's liveness lock is free: recording its leave");
        append_blocking(
            path,
            &Record {
                time: now(),
                entry: LogEntry::Leave { nid: *nid },
            },
        )?;
        // Dropping `f` releases the lock for the node's next incarnation.
    }
    Ok(())
}

async fn tail(path: Arc<PathBuf>, me: NodeId, tx: mpsc::Sender<Record>, cancel: CancellationToken) {
    let mut pos = 0u64;
    let mut frames = Frames::default();
    let mut members: BTreeSet<NodeId> = BTreeSet::new();
    let mut tick = tokio::time::interval(TAIL_INTERVAL);
    let mut last_probe = tokio::time::Instant::now();
    let mut log: Option<File> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if log.is_none() {
            log = File::open(path.join("log")).ok();
        }
        let Some(f) = log.as_mut() else { continue };
        let records = match read_new(f, &mut pos, &mut frames) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cluster log unreadable; stopping the driver");
                return;
            }
        };
        for r in records {
            match &r.entry {
                LogEntry::Join { node, .. } => {
                    members.insert(node.nid);
                }
                LogEntry::Leave { nid } => {
                    members.remove(nid);
                }
                _ => {}
            }
            if tx.send(r).await.is_err() {
                return;
            }
        }
        if last_probe.elapsed() >= PROBE_INTERVAL {
            last_probe = tokio::time::Instant::now();
            let others: Vec<NodeId> = members.iter().filter(|n| **n != me).copied().collect();
            let p = path.clone();
            let res = tokio::task::spawn_blocking(move || {
                for nid in others {
                    probe(&p, &nid)?;
                }
                Ok::<_, ClusterError>(())
            })
            .await;
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "liveness probe failed");
            }
        }
    }
}
