//! The thrasher (`sd_testkit::thrash`): random SIGKILLs and restarts of a 5-sheep, copies=3
//! cluster (at most two down at a time) under a verifying client, in writethrough and in
//! writeback mode. `THRASH_SECS=N` runs longer, `THRASH_SEED=S` replays a seed's choices.

use sd_testkit::thrash::{self, ThrashConfig};

/// Seconds of faults per mode by default: bounded for CI.
const DEFAULT_SECS: u64 = 25;

fn thrash(writeback: bool) {
    let cfg = ThrashConfig::from_env(writeback, DEFAULT_SECS).unwrap();
    let report = thrash::run(&cfg).unwrap_or_else(|e| {
        panic!(
            "thrash failed (replay with {}={:#018x}): {e:?}",
            thrash::THRASH_SEED_ENV,
            cfg.seed
        )
    });
    assert!(report.kills > 0, "no fault was injected: {report:?}");
    assert!(
        report.client.checked.guaranteed > 0 && report.final_check.guaranteed > 0,
        "nothing was verified: {report:?}"
    );
    if writeback {
        assert!(report.client.flushes > 0, "no flush: {report:?}");
    }
}

#[test]
fn thrash_writethrough_acknowledged_writes_survive() {
    thrash(false);
}

#[test]
fn thrash_writeback_flushed_writes_survive() {
    thrash(true);
}
