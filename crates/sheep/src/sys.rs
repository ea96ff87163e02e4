//! The node's view of the cluster ([`SysState`]: status, epoch, members, epoch history,
//! placement) and the metadata files that persist it under `DIR` (`config`, `epoch/`).
//! Nothing here reaches the network or another module of the daemon.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sd_cluster::EpochEntry;
use sd_cluster::placement::Ring;
use sd_proto::Epoch;
use sd_proto::cluster::{EpochMembers, NodeStatus, SD_FORMAT_VERSION, SheepdogConfig};
use sd_proto::node::SdNode;
use sd_store::meta;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store or a metadata file could not be read or written.
    #[error(transparent)]
    Store(#[from] sd_store::StoreError),
    /// A metadata file is corrupt.
    #[error("corrupt {what} in {path}")]
    Corrupt {
        /// Which file.
        what: &'static str,
        /// Where.
        path: String,
    },
    /// The store was formatted by an incompatible version.
    #[error("store format version {found:#x}, expected {expected:#x}")]
    Version {
        /// Found.
        found: u16,
        /// Expected.
        expected: u16,
    },
    /// The metrics endpoint (`--metrics`) could not be started.
    #[error("metrics endpoint: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    /// Membership failed.
    #[error(transparent)]
    Cluster(#[from] sd_cluster::ClusterError),
    /// The start-up task panicked.
    #[error("start-up task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The daemon was stopped before it joined.
    #[error("stopped before joining the cluster")]
    Cancelled,
}

/// Cluster-wide state of this node. Read and replaced under a short lock, never held
/// across an await.
#[derive(Debug, Clone)]
pub struct SysState {
    /// Running, waiting, shutting down or killed.
    pub status: NodeStatus,
    /// Current epoch (0 before format).
    pub epoch: Epoch,
    /// The cluster's persistent configuration (ctime 0 = not formatted).
    pub config: SheepdogConfig,
    /// Current members, sorted.
    pub nodes: Vec<SdNode>,
    /// Epoch history, oldest first.
    pub epochs: Vec<EpochEntry>,
    /// Placement of the current epoch.
    pub ring: Arc<Ring>,
    /// The last epoch every member finished recovering (0: none since the format).
    pub stable: Epoch,
}

impl SysState {
    /// The nodes holding `oid`'s `copies` replicas in the current epoch, in placement
    /// order.
    pub fn replica_nids(&self, oid: sd_proto::Oid, copies: usize) -> Vec<sd_proto::node::NodeId> {
        self.ring
            .replicas(oid, copies)
            .iter()
            .map(|n| n.nid)
            .collect()
    }

    /// The cluster default copies/policy/shift.
    pub fn defaults(&self) -> (u8, u8, u8) {
        (
            self.config.copies,
            self.config.copy_policy,
            self.config.block_size_shift,
        )
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sheepdog timestamp (`sec << 32 | nsec`) now.
pub fn now_sd_time() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    sd_proto::cluster::sd_time(d.as_secs(), d.subsec_nanos())
}

/// Name of the epoch file of `e` under the base dir.
pub fn epoch_file(e: Epoch) -> String {
    format!("epoch/{:08}", e.get())
}

pub(crate) fn load_config(dir: &Path) -> Result<SheepdogConfig, StartError> {
    match meta::read_file(dir, "config")? {
        None => Ok(SheepdogConfig {
            version: SD_FORMAT_VERSION,
            ..SheepdogConfig::default()
        }),
        Some(bytes) => {
            let c = SheepdogConfig::decode(&bytes).map_err(|_| StartError::Corrupt {
                what: "config",
                path: dir.join("config").display().to_string(),
            })?;
            if c.version != SD_FORMAT_VERSION {
                return Err(StartError::Version {
                    found: c.version,
                    expected: SD_FORMAT_VERSION,
                });
            }
            Ok(c)
        }
    }
}

/// Persists the cluster config.
pub fn write_config(dir: &Path, c: &SheepdogConfig) -> Result<(), sd_store::StoreError> {
    meta::write_file_atomic(dir, "config", &c.encode())
}

/// Persists one epoch file: the members followed by the 8-byte start time (the layout of
/// [`EpochMembers`], the GET_EPOCH answer).
pub fn write_epoch(dir: &Path, e: &EpochEntry) -> Result<(), sd_store::StoreError> {
    let buf = EpochMembers {
        nodes: e.members.clone(),
        time: e.time,
    }
    .encode();
    meta::write_file_atomic(dir, &epoch_file(e.epoch), &buf)
}

/// The file a clean stop leaves in DIR: every write this node acknowledged is in its
/// store's durable state. Taken away at start; a start that does not find it follows an
/// unclean stop (a crash, a power cut), and the node's copies are suspect until compared
/// with the others (`recovery::state`).
const CLEAN_MARK: &str = "clean";

/// Leaves the clean-stop mark (durably).
pub fn mark_clean(dir: &Path) -> Result<(), sd_store::StoreError> {
    meta::write_file_atomic(dir, CLEAN_MARK, b"")
}

/// Whether the last stop was clean, removing its mark (durably) so that a crash from now
/// on is seen as unclean.
pub(crate) fn take_clean_mark(dir: &Path) -> Result<bool, sd_store::StoreError> {
    let io = |op: &'static str, source| sd_store::StoreError::Io {
        op,
        path: dir.join(CLEAN_MARK),
        source,
    };
    match std::fs::remove_file(dir.join(CLEAN_MARK)) {
        Ok(()) => {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("syncing the directory", e))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("removing the clean-stop mark", e)),
    }
}

/// Removes every epoch file (cluster format), durably.
pub fn remove_epochs(dir: &Path) -> std::io::Result<()> {
    let d = dir.join("epoch");
    match std::fs::read_dir(&d) {
        Ok(rd) => {
            for ent in rd {
                std::fs::remove_file(ent?.path())?;
            }
            // Durable before the new format's config is written: a power cut must not
            // bring the old format's epochs back beside it.
            std::fs::File::open(&d)?.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn load_epochs(dir: &Path) -> Result<Vec<EpochEntry>, StartError> {
    let d = dir.join("epoch");
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(_) => return Ok(out),
    };
    let mut numbers: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name().to_str().and_then(|n| {
                (n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok())
                    .flatten()
            })
        })
        .collect();
    numbers.sort_unstable();
    for n in numbers {
        let epoch = Epoch(n);
        let corrupt = || StartError::Corrupt {
            what: "epoch file",
            path: d.join(format!("{n:08}")).display().to_string(),
        };
        let bytes = meta::read_file(dir, &epoch_file(epoch))?.ok_or_else(corrupt)?;
        let EpochMembers { nodes, time } = EpochMembers::decode(&bytes).map_err(|_| corrupt())?;
        out.push(EpochEntry {
            epoch,
            time,
            members: nodes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use sd_proto::node::NodeId;

    /// `epoch/%08u` (spec §11.4) of epoch 3 with one member, 127.0.0.1:7000 (128 vnodes,
    /// 1 GiB), begun at 3 000 000 000: the sd_node, then the u64 time.
    fn golden() -> Vec<u8> {
        let mut g = vec![0u8; 88];
        g[36..40].copy_from_slice(&[127, 0, 0, 1]); // IPv4 in the last 4 address bytes
        g[40..42].copy_from_slice(&[0x58, 0x1b]); // port 7000
        g[64..66].copy_from_slice(&[0x80, 0x00]); // nr_vnodes 128
        g[68..72].copy_from_slice(&[0x7f, 0x00, 0x00, 0x01]); // zone
        g[72..80].copy_from_slice(&[0, 0, 0, 0x40, 0, 0, 0, 0]); // space 1 GiB
        g[80..88].copy_from_slice(&[0x00, 0x5e, 0xd0, 0xb2, 0, 0, 0, 0]); // time
        g
    }

    fn entry() -> EpochEntry {
        let nid = NodeId::from_socket("127.0.0.1:7000".parse().unwrap());
        EpochEntry {
            epoch: Epoch(3),
            time: 3_000_000_000,
            members: vec![SdNode {
                nid,
                io_addr: [0; 16],
                io_port: 0,
                nr_vnodes: 128,
                zone: nid.default_zone(),
                space: 1 << 30,
            }],
        }
    }

    #[test]
    fn epoch_file_bytes_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        write_epoch(dir.path(), &entry()).unwrap();
        let bytes = std::fs::read(dir.path().join("epoch/00000003")).unwrap();
        assert_eq!(bytes, golden());
    }

    #[test]
    fn epoch_files_of_existing_stores_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("epoch")).unwrap();
        std::fs::write(dir.path().join("epoch/00000003"), golden()).unwrap();
        // No members (a file of the time alone) loads too.
        std::fs::write(dir.path().join("epoch/00000004"), 7u64.to_le_bytes()).unwrap();
        let loaded = load_epochs(dir.path()).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0], entry());
        assert_eq!((loaded[1].epoch, loaded[1].time), (Epoch(4), 7));
        assert!(loaded[1].members.is_empty());
    }

    #[test]
    fn cut_epoch_files_are_corrupt() {
        for len in [0, 7, 87, 89] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("epoch")).unwrap();
            let mut g = golden();
            g.resize(len, 0);
            std::fs::write(dir.path().join("epoch/00000003"), g).unwrap();
            assert!(
                matches!(
                    load_epochs(dir.path()),
                    Err(StartError::Corrupt {
                        what: "epoch file",
                        ..
                    })
                ),
                "{len} bytes"
            );
        }
    }
}
