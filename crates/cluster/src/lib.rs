//! Cluster membership: the ordered log every member folds ([`log`], [`membership`]), its
//! VDI records and the VDI table they fold into ([`vdi_log`], [`vdi_fold`],
//! [`vdi_table`]), object placement ([`placement`]), the `-c` driver spec, and the
//! [`ClusterDriver`] trait the drivers implement.
//!
//! Every member sees joins, leaves and notifications in the same total order; all
//! cluster-wide state (members, epochs, status, the VDI table) is a deterministic fold of
//! that order. This crate is pure: drivers, which need I/O, live in the daemon.

pub mod check;
pub mod log;
pub mod log_file;
pub mod membership;
pub mod placement;
pub mod recovery;
mod spec;
pub mod vdi_fold;
pub mod vdi_log;
pub mod vdi_table;

pub use membership::{EpochEntry, Membership, Outcome, Status};
pub use spec::{DEFAULT_ZK_CLUSTER_ID, DEFAULT_ZK_TIMEOUT, DriverSpec, ZkSpec};
pub use vdi_fold::Applied;
pub use vdi_log::{ClusterMsg, MsgDecodeError};
pub use vdi_table::{LockOwner, VdiEntry, VdiTable};

use std::future::Future;
use std::time::Instant;

use log::LogEntry;

/// Why a driver failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The driver spec could not be parsed.
    #[error("invalid cluster driver spec {spec:?}: {reason}")]
    BadSpec {
        /// The text given to `-c`.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The shared state could not be read or written.
    #[error("cluster driver I/O on {what}")]
    Io {
        /// What was being accessed.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The coordination service failed.
    #[error("cluster service: {0}")]
    Service(String),
    /// The driver has shut down.
    #[error("cluster driver closed")]
    Closed,
}

/// A membership service: an append-only log, totally ordered and delivered to every member
/// from its beginning, plus failure detection (a dead member's `Leave` is appended by the
/// driver). Each driver delivers records through a channel it returns when it starts.
pub trait ClusterDriver: Send + Sync + 'static {
    /// Appends `entry` to the log; it is delivered to every member, this one included.
    fn append(&self, entry: LogEntry) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Until when this member's view of the log is known to be current: the fence. Past
    /// this instant the member may already be counted dead by the others (a partition
    /// from the membership service), so it must neither acknowledge writes nor serve
    /// reads until the instant moves forward again. `None`: always current (the driver
    /// cannot lose the log while this process lives).
    fn current_until(&self) -> Option<Instant> {
        None
    }
}
