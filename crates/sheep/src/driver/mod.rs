//! Cluster drivers: the ordered log and failure detection behind `sd_cluster::ClusterDriver`.
//! They live in the daemon because they do I/O; the fold they feed is pure (`sd_cluster`).

pub mod local;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

use std::path::PathBuf;
use std::time::Instant;

use sd_cluster::log::{LogEntry, Record, Saved};
use sd_cluster::{ClusterDriver, ClusterError, DriverSpec};
use sd_proto::node::SdNode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Shared state directory of `-c local` when no PATH is given (Sheepdog 1.0 used
/// /tmp/sheepdog_shm).
pub const DEFAULT_LOCAL_PATH: &str = "/tmp/sheepdog-rs-local";

/// Where the cluster state of `spec` lives, and how to start a separate cluster instead:
/// for an operator whose sheep joined a cluster an earlier run left behind.
pub fn describe(spec: &DriverSpec) -> String {
    match spec {
        DriverSpec::Local { path } => {
            let path = path
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCAL_PATH));
            format!(
                "cluster state in {} (-c local); start with -c local:NEWPATH for a new cluster",
                path.display()
            )
        }
        DriverSpec::Zookeeper(zk) => format!(
            "cluster state in ZooKeeper {} under {}; another cluster id starts a new cluster",
            zk.connect_string(),
            zk.cluster_id
        ),
    }
}

/// The driver chosen with `-c`.
#[derive(Debug)]
pub enum Driver {
    /// Several sheep on one host, sharing a directory.
    Local(local::LocalDriver),
    /// Sheep on any hosts, through a ZooKeeper ensemble.
    #[cfg(feature = "zookeeper")]
    Zookeeper(zookeeper::ZkDriver),
}

impl ClusterDriver for Driver {
    async fn append(&self, entry: LogEntry) -> Result<(), ClusterError> {
        match self {
            Driver::Local(d) => d.append(entry).await,
            #[cfg(feature = "zookeeper")]
            Driver::Zookeeper(d) => d.append(entry).await,
        }
    }

    fn current_until(&self) -> Option<Instant> {
        match self {
            Driver::Local(_) => None,
            #[cfg(feature = "zookeeper")]
            Driver::Zookeeper(d) => Some(d.current_until()),
        }
    }
}

/// Starts the driver of `spec` as `me`, appends our `Join` and returns the driver and the
/// stream of records from the beginning of the log.
pub async fn start(
    spec: &DriverSpec,
    me: SdNode,
    incarnation: u64,
    saved: Saved,
    cancel: CancellationToken,
) -> Result<(Driver, mpsc::Receiver<Record>), ClusterError> {
    match spec {
        DriverSpec::Local { path } => {
            let path = path
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCAL_PATH));
            let (d, rx) = local::LocalDriver::start(path, me, incarnation, saved, cancel).await?;
            Ok((Driver::Local(d), rx))
        }
        #[cfg(feature = "zookeeper")]
        DriverSpec::Zookeeper(zk) => {
            let (d, rx) = zookeeper::ZkDriver::start(zk, me, incarnation, saved, cancel).await?;
            Ok((Driver::Zookeeper(d), rx))
        }
        #[cfg(not(feature = "zookeeper"))]
        DriverSpec::Zookeeper(_) => Err(ClusterError::Service(
            "this sheep was built without the `zookeeper` feature".into(),
        )),
    }
}
