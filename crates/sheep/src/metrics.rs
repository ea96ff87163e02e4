//! Prometheus metrics (`sheep --metrics ADDR:PORT`, off by default).
//!
//! Recording goes through the `metrics` facade: without `--metrics` no recorder is
//! installed and every call below is a no-op. With it, `metrics-exporter-prometheus`
//! serves the text format over HTTP on ADDR:PORT (any path), and `sampler` sets the gauges
//! that describe state rather than events (epoch, dirty bytes, recovery, objects, disk).
//!
//! Every name is listed in docs/operations.md ("Metrics"); they are part of the interface.

use std::net::SocketAddr;
use std::time::Instant;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Requests served, by `protocol` (`sheepdog`, `nbd`), `op` and `result` (`ok`, `error`).
pub const REQUESTS: &str = "sheep_requests_total";
/// Request latency in seconds, by `protocol` and `op`.
pub const REQUEST_SECONDS: &str = "sheep_request_duration_seconds";
/// Client data bytes read, by `protocol` (Sheepdog READ_OBJ replies, NBD READ).
pub const READ_BYTES: &str = "sheep_read_bytes_total";
/// Client data bytes written, by `protocol` (Sheepdog WRITE_OBJ / CREATE_AND_WRITE_OBJ, NBD
/// WRITE).
pub const WRITTEN_BYTES: &str = "sheep_written_bytes_total";
/// Writeback: bytes written to this node's store and not yet durable.
pub const DIRTY_BYTES: &str = "sheep_writeback_dirty_bytes";
/// Writeback flush latency in seconds, by `side`: `gateway` (a FLUSH_VDI, waiting for
/// every FLUSH_PEER) or `peer` (making one VDI's dirty objects durable here).
pub const FLUSH_SECONDS: &str = "sheep_flush_duration_seconds";
/// Nodes one FLUSH_VDI sent FLUSH_PEER to (0: nothing was dirty).
pub const FLUSH_FANOUT: &str = "sheep_flush_peer_fanout";
/// Objects this node recovered (all epochs); its `rate()` is the recovery rate.
pub const RECOVERED: &str = "sheep_recovery_objects_recovered_total";
/// Seconds a client read or write on this node waited for its object's recovery, by `op`
/// (`read`, `write`).
pub const RECOVERY_WAIT_SECONDS: &str = "sheep_recovery_client_wait_seconds";
/// Objects the scrub compared across their replicas.
pub const SCRUBBED: &str = "sheep_scrub_objects_total";
/// Objects the scrub found with a copy missing or different.
pub const SCRUB_MISMATCHES: &str = "sheep_scrub_mismatches_total";
/// Copies the scrub repaired.
pub const SCRUB_REPAIRED: &str = "sheep_scrub_repaired_total";
/// Objects a failed write fan-out may have left different that were checked (`fanout`).
pub const RECONCILED: &str = "sheep_fanout_objects_checked_total";
/// Copies replaced to make an object's copies identical after a failed fan-out.
pub const RECONCILE_REPAIRED: &str = "sheep_fanout_repaired_total";
/// Objects waiting to be checked after a failed fan-out.
pub const FANOUT_QUEUED: &str = "sheep_fanout_queued_objects";
/// Seconds the recovery pass spent on each object (fetch, write, bookkeeping).
pub const RECOVERY_OBJECT_SECONDS: &str = "sheep_recovery_object_seconds";
/// Seconds the recovery pass rested after an object for the clients (`recovery::yielding`).
pub const RECOVERY_REST_SECONDS: &str = "sheep_recovery_rest_seconds";
/// Objects of the current epoch's recovery done on this node.
pub const RECOVERY_DONE: &str = "sheep_recovery_objects_done";
/// Objects of the current epoch's recovery left on this node.
pub const RECOVERY_LEFT: &str = "sheep_recovery_objects_left";
/// Objects recovered per second over the last sample interval.
pub const RECOVERY_RATE: &str = "sheep_recovery_objects_per_second";
/// The cluster epoch this node is at.
pub const EPOCH: &str = "sheep_epoch";
/// Members of the cluster as this node sees them.
pub const NODES: &str = "sheep_cluster_nodes";
/// Object files in this node's store.
pub const OBJECTS: &str = "sheep_objects";
/// Bytes allocated to object files.
pub const DISK_USED: &str = "sheep_disk_used_bytes";
/// Bytes still available on the store's file system.
pub const DISK_FREE: &str = "sheep_disk_free_bytes";

/// Latency buckets, 50 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// FLUSH_PEER fan-out buckets, in nodes.
const FANOUT_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0];

/// The client protocol a request came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Sheepdog 1.0 wire protocol (clients and other sheep).
    Sheepdog,
    /// NBD.
    Nbd,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Sheepdog => "sheepdog",
            Protocol::Nbd => "nbd",
        }
    }
}

/// Installs the Prometheus recorder and its HTTP listener on `addr`; call inside the runtime.
pub fn install(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(FLUSH_FANOUT.into()), FANOUT_BUCKETS)?
        .install()
}

/// Records one served request.
pub fn request(protocol: Protocol, op: &'static str, started: Instant, ok: bool) {
    let p = protocol.label();
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(REQUESTS, "protocol" => p, "op" => op, "result" => result).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "protocol" => p, "op" => op)
        .record(started.elapsed().as_secs_f64());
}

/// Records client data bytes read.
pub fn read_bytes(protocol: Protocol, n: usize) {
    metrics::counter!(READ_BYTES, "protocol" => protocol.label()).increment(n as u64);
}

/// Records client data bytes written.
pub fn written_bytes(protocol: Protocol, n: usize) {
    metrics::counter!(WRITTEN_BYTES, "protocol" => protocol.label()).increment(n as u64);
}

/// Records a gateway's FLUSH_VDI: its fan-out and, when it sent any, its latency.
pub fn gateway_flush(fanout: usize, started: Instant) {
    metrics::histogram!(FLUSH_FANOUT).record(fanout as f64);
    if fanout > 0 {
        metrics::histogram!(FLUSH_SECONDS, "side" => "gateway")
            .record(started.elapsed().as_secs_f64());
    }
}

/// Records a peer's flush of one VDI's dirty objects.
pub fn peer_flush(started: Instant) {
    metrics::histogram!(FLUSH_SECONDS, "side" => "peer").record(started.elapsed().as_secs_f64());
}

/// Records a client read or write that waited for its object's recovery.
pub fn recovery_wait(op: &'static str, started: Instant) {
    metrics::histogram!(RECOVERY_WAIT_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
}

/// Records one object scrubbed: whether its copies disagreed, and how many were repaired.
pub fn scrubbed(mismatch: bool, repaired: usize) {
    metrics::counter!(SCRUBBED).increment(1);
    if mismatch {
        metrics::counter!(SCRUB_MISMATCHES).increment(1);
    }
    metrics::counter!(SCRUB_REPAIRED).increment(repaired as u64);
}

/// Records one object checked after a failed fan-out, and how many copies were replaced.
pub fn reconciled(repaired: usize) {
    metrics::counter!(RECONCILED).increment(1);
    metrics::counter!(RECONCILE_REPAIRED).increment(repaired as u64);
}

/// Records the recovery pass's time on one object, and the rest it took after it (clients
/// active; `None`: they were not).
pub fn recovery_pace(object: std::time::Duration, rest: Option<std::time::Duration>) {
    metrics::histogram!(RECOVERY_OBJECT_SECONDS).record(object.as_secs_f64());
    if let Some(rest) = rest {
        metrics::histogram!(RECOVERY_REST_SECONDS).record(rest.as_secs_f64());
    }
}

/// Records one object recovered.
pub fn recovered() {
    metrics::counter!(RECOVERED).increment(1);
}
