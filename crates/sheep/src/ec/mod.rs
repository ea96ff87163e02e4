//! Erasure-coded objects at the gateway (docs/erasure-coding.md): reads gather D strips
//! (decoding when some are missing), writes encode whole blocks and update every holder of
//! the stripe in two phases (prepare, complete), a write some holders lack is resolved
//! from every holder's log, and a holder that lacks its strip gets it rebuilt from D
//! others.
//!
//! The gateway takes an object's lock for each of these ([`EcState::lock`]): one write at a
//! time per object (so every holder's log lists the same writes in the same order), and
//! reads never see a write half-completed by this gateway.

mod check;
mod gather;
mod io;
mod peer;
mod recover;
mod resolve;
pub(crate) mod state;

use std::sync::Arc;

pub use check::check;
pub use io::{create, read, remove, write};
pub(crate) use peer::serve;
pub use recover::recover;

/// How often strip logs are looked at for checkpoints.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// A strip log not written for this long is checkpointed (its strip fdatasynced, the log
/// emptied): logs hold a copy of every write since, so they must not linger.
const CHECKPOINT_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Checkpoints the strip logs of this node that have gone idle, until the node stops.
pub async fn run_checkpointer(sheep: Arc<crate::node::Sheep>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        tokio::select! {
            () = sheep.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let store = sheep.store.clone();
        match crate::disk::blocking(move || store.checkpoint_idle_strips(CHECKPOINT_IDLE)).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(strips = n, "strip logs checkpointed"),
            Err(e) => tracing::warn!(error = %e, "strip log checkpoint failed"),
        }
    }
}
