//! Cluster membership behind one trait, [`ClusterDriver`], and the `-c` driver spec.
//!
//! Every member must see joins, leaves and notifications in the same total order; all
//! cluster-wide state (epochs, the VDI bitmap) is derived from that stream. This issue ships
//! the single-node `local` driver; the multi-sheep `local:PATH` and `zookeeper` drivers plug in
//! behind the same trait.

pub mod log;
pub mod membership;
pub mod placement;
mod single;
mod spec;

pub use membership::{EpochEntry, Membership, Outcome, Status};
pub use single::SingleNode;
pub use spec::DriverSpec;

use std::future::Future;

use sd_proto::node::SdNode;

/// One membership event, delivered to every member in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node joined (including this one, first).
    Joined(SdNode),
    /// A node left or died.
    Left(SdNode),
    /// A cluster-wide notification (format, VDI create/delete, lock, shutdown).
    Notification(Vec<u8>),
}

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
    /// The driver is known but not available in this build.
    #[error("cluster driver {0:?} is not supported yet")]
    Unsupported(String),
    /// The driver has shut down.
    #[error("cluster driver closed")]
    Closed,
}

/// A membership service: ordered join/leave/notification events.
pub trait ClusterDriver: Send {
    /// Joins the cluster as `me`; returns the members including `me`, sorted.
    fn join(
        &mut self,
        me: SdNode,
    ) -> impl Future<Output = Result<Vec<SdNode>, ClusterError>> + Send;
    /// Broadcasts a notification; it comes back through [`ClusterDriver::next_event`] in
    /// total order on every member, including this one.
    fn notify(&mut self, msg: Vec<u8>) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// The next event.
    fn next_event(&mut self) -> impl Future<Output = Result<Event, ClusterError>> + Send;
}
