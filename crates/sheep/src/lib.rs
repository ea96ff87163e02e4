//! The `sheep` daemon as a library: [`run`] serves a bound listener until cancelled, so
//! tests can start nodes on port 0 in-process and the binary stays a thin shell.

pub mod config;
mod disk;
mod drain;
pub mod driver;
mod ec;
mod error;
pub mod failpoint;
mod fanout;
mod follower;
mod gateway;
mod inode;
mod lifecycle;
pub mod logging;
mod metrics;
mod nbd;
mod node;
mod ops;
mod peer;
mod propose;
mod reclaim;
mod reconcile;
mod recovery;
mod replica;
mod sampler;
mod scrub;
mod server;
mod shards;
mod strip;
mod sys;
mod vdi;
mod volume;
mod writeback;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use sys::StartError;

/// Starts a node on `listener` and serves until `cancel` fires or a SHUTDOWN request
/// arrives.
pub async fn run(
    listener: TcpListener,
    cfg: Config,
    cancel: CancellationToken,
) -> Result<(), StartError> {
    run_with_nbd(listener, None, cfg, cancel).await
}

/// [`run`], also serving the cluster's VDIs over NBD on `nbd`.
pub async fn run_with_nbd(
    listener: TcpListener,
    nbd: Option<TcpListener>,
    cfg: Config,
    cancel: CancellationToken,
) -> Result<(), StartError> {
    run_until_stopped(listener, nbd, cfg, CancellationToken::new(), cancel).await
}

/// How long a stopped node waits for its clean stop's last steps (a second signal, which
/// stops at once, waits at most this for a flush in progress).
const STOPPER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// [`run_with_nbd`], stopping cleanly ([`lifecycle::stop`]) once `stop` fires; `cancel` still
/// stops at once.
pub async fn run_until_stopped(
    listener: TcpListener,
    nbd: Option<TcpListener>,
    cfg: Config,
    stop: CancellationToken,
    cancel: CancellationToken,
) -> Result<(), StartError> {
    let addr = listener.local_addr().map_err(|source| {
        StartError::Store(sd_store::StoreError::Io {
            op: "local_addr",
            path: cfg.dir.clone(),
            source,
        })
    })?;
    let metrics = cfg.metrics;
    let shards = shards::Shards::start(cfg.threads).map_err(|source| {
        StartError::Store(sd_store::StoreError::Io {
            op: "starting threads",
            path: cfg.dir.clone(),
            source,
        })
    })?;
    let sheep = lifecycle::start(cfg, addr, cancel.clone()).await?;
    tracing::info!(%addr, threads = shards.handles().len(), "sheep listening");
    if let Some(m) = metrics {
        metrics::install(m)?;
        tracing::info!(addr = %m, "serving metrics");
        tokio::spawn(sampler::run_sampler(sheep.clone()));
    }
    if let Some(nbd) = nbd {
        let exports = std::sync::Arc::new(nbd::VdiExports::new(sheep.clone()));
        if let Ok(a) = nbd.local_addr() {
            tracing::info!(addr = %a, "serving NBD");
        }
        // The daemon's connection and per-connection request limits apply to NBD clients
        // too (each NBD connection also holds at most 64 MiB of READ/WRITE data).
        let limits = sheep.cfg.limits;
        let config = sd_nbd::Config {
            max_connections: limits.max_connections,
            max_in_flight: limits.max_inflight,
            runtimes: shards.handles().to_vec(),
            ..sd_nbd::Config::default()
        };
        tokio::spawn(sd_nbd::serve_with(nbd, exports, config, cancel.clone()));
    }
    let stopper = {
        let sheep = sheep.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = stop.cancelled() => lifecycle::stop(&sheep).await,
            }
        })
    };
    server::serve(listener, sheep, &shards, cancel).await;
    // A clean stop may end the node from inside (a driver stops on reading our leave)
    // before the stop's last step ran: let it finish, so its log says it left.
    if tokio::time::timeout(STOPPER_WAIT, stopper).await.is_err() {
        tracing::warn!("the clean stop did not finish in time");
    }
    tracing::info!("sheep stopped");
    Ok(())
}
