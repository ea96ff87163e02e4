//! The state gauges of `--metrics`: epoch, members, dirty bytes, recovery progress and
//! rate, objects and disk space, refreshed every [`SAMPLE_INTERVAL`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::disk::blocking;
use crate::metrics::{
    DIRTY_BYTES, DISK_FREE, DISK_USED, EPOCH, FANOUT_QUEUED, NODES, OBJECTS, RECOVERY_DONE,
    RECOVERY_LEFT, RECOVERY_RATE,
};
use crate::node::Sheep;

/// How often [`run_sampler`] refreshes the gauges.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// The store is walked for its object count and disk usage (a stat per object file) at
/// most once per this many times the last walk took, so that on a large store the walk
/// costs at most about 1% of one core.
const SPACE_WALK_SPACING: u32 = 100;

/// Refreshes the state gauges every [`SAMPLE_INTERVAL`] until the daemon stops.
pub async fn run_sampler(sheep: Arc<Sheep>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Instant, u64)> = None;
    let mut next_walk = Instant::now();
    loop {
        tokio::select! {
            () = sheep.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (epoch, nodes) = {
            let sys = sheep.sys();
            (sys.epoch.0, sys.nodes.len())
        };
        metrics::gauge!(EPOCH).set(f64::from(epoch));
        metrics::gauge!(NODES).set(nodes as f64);
        metrics::gauge!(DIRTY_BYTES).set(sheep.store.dirty_bytes() as f64);
        metrics::gauge!(FANOUT_QUEUED).set(sheep.fanout.queued() as f64);
        let p = sheep.recovery.progress();
        let left = if p.active {
            p.total.saturating_sub(p.done)
        } else {
            0
        };
        metrics::gauge!(RECOVERY_DONE).set(p.done as f64);
        metrics::gauge!(RECOVERY_LEFT).set(left as f64);
        let now = Instant::now();
        let rate = match last {
            Some((t, done)) if p.done >= done => {
                (p.done - done) as f64 / now.duration_since(t).as_secs_f64().max(1e-3)
            }
            _ => 0.0,
        };
        last = Some((now, p.done));
        metrics::gauge!(RECOVERY_RATE).set(rate);
        if now < next_walk {
            continue;
        }
        let store = sheep.store.clone();
        let walk = Instant::now();
        let space = blocking(move || store.space()).await;
        next_walk = Instant::now() + walk.elapsed() * SPACE_WALK_SPACING;
        match space {
            Ok(space) => {
                metrics::gauge!(OBJECTS).set(space.objects as f64);
                metrics::gauge!(DISK_USED).set(space.used as f64);
                metrics::gauge!(DISK_FREE).set(space.free as f64);
            }
            Err(e) => tracing::debug!(error = %e, "sampling store space failed"),
        }
    }
}
