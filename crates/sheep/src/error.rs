//! The daemon's error type and its single mapping to wire result codes.

use sd_proto::{Epoch, SdResult};
use sd_store::StoreError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SheepError {
    /// A protocol-level answer (bad parameters, no such VDI, ...).
    #[error("{0}")]
    Result(SdResult),
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This node is fenced: cut off from the membership service for long enough that the
    /// others may count it dead, it acknowledges nothing (`Sheep::fenced`).
    #[error("fenced: this node's view of the cluster is not known to be current")]
    Fenced,
    /// The gateway could not reach a replica, or it did not answer in time; the replica set
    /// is about to move, so the gateway retries in a newer epoch.
    #[error(transparent)]
    Peer(#[from] crate::peer::PeerError),
    /// The gateway gave up: the cluster did not settle on an epoch within its deadline.
    #[error("the cluster did not settle after epoch {0}")]
    Unsettled(Epoch),
    /// An NBD export moved to its VDI's new vid while a write waited: the write starts
    /// over on the new vid.
    #[error("the export moved to a new vid")]
    Retargeted,
    /// A peer answered SUCCESS with data that cannot be what was asked (a read of the
    /// wrong length, a recovered copy of the wrong size): that replica is treated as
    /// failed, and another is asked.
    #[error("{node} answered {got} bytes where {want} were asked")]
    BadAnswer {
        /// The peer.
        node: sd_proto::node::NodeId,
        /// Bytes it sent.
        got: usize,
        /// Bytes it had to send.
        want: u64,
    },
    /// Recovery of an object cannot finish now (a member that may hold the newest copy
    /// did not answer, or the newest copy could not be fetched): try again later.
    #[error("recovery must wait for a member")]
    RecoverLater,
    /// A blocking store task panicked or was cancelled.
    #[error("store task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<SdResult> for SheepError {
    fn from(r: SdResult) -> Self {
        SheepError::Result(r)
    }
}

impl SheepError {
    /// The result code a client sees. This is the only place errors become wire codes.
    pub fn result(&self) -> SdResult {
        match self {
            SheepError::Result(r) => *r,
            SheepError::Store(StoreError::NoObject(_)) => SdResult::NoObj,
            SheepError::Store(StoreError::OutOfBounds { .. }) => SdResult::InvalidParms,
            SheepError::Store(StoreError::NoSpace { .. }) => SdResult::NoSpace,
            SheepError::Store(StoreError::NoStrip(_)) => SdResult::NoObj,
            SheepError::Store(StoreError::StripOutOfBounds { .. }) => SdResult::InvalidParms,
            SheepError::Store(StoreError::StripInDoubt { .. }) => SdResult::InDoubt,
            SheepError::Store(
                StoreError::UnknownWrite { .. } | StoreError::WriteComplete { .. },
            ) => SdResult::InDoubt,
            SheepError::Store(_) => SdResult::Eio,
            SheepError::Task(_) => SdResult::SystemError,
            SheepError::Fenced => SdResult::ClusterError,
            SheepError::Peer(_) | SheepError::Unsettled(_) => SdResult::NetworkError,
            SheepError::Retargeted => SdResult::Readonly,
            SheepError::BadAnswer { .. } => SdResult::Eio,
            SheepError::RecoverLater => SdResult::Again,
        }
    }
}

/// Shorthand for handler results.
pub type SheepResult<T> = Result<T, SheepError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerError;
    use sd_proto::node::NodeId;

    #[track_caller]
    fn check(e: SheepError, expect: SdResult) {
        assert_eq!(e.result(), expect, "{e}");
    }

    #[test]
    fn decisions_map_to_wire_codes() {
        check(SdResult::NoVdi.into(), SdResult::NoVdi);
        check(SheepError::Fenced, SdResult::ClusterError);
        check(
            PeerError::Timeout(NodeId::default()).into(),
            SdResult::NetworkError,
        );
        check(SheepError::Unsettled(Epoch(3)), SdResult::NetworkError);
        check(SheepError::Retargeted, SdResult::Readonly);
        check(SheepError::RecoverLater, SdResult::Again);
        check(
            SheepError::BadAnswer {
                node: NodeId::default(),
                got: 5,
                want: 4096,
            },
            SdResult::Eio,
        );
        check(
            StoreError::InvalidName { name: "x".into() }.into(),
            SdResult::Eio,
        );
    }
}
