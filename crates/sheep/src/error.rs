//! The daemon's error type and its single mapping to wire result codes.

use sd_proto::SdResult;
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
            SheepError::Store(_) => SdResult::Eio,
            SheepError::Task(_) => SdResult::SystemError,
            SheepError::Fenced => SdResult::ClusterError,
        }
    }
}

/// Shorthand for handler results.
pub type SheepResult<T> = Result<T, SheepError>;
