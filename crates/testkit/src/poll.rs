//! Waiting for a condition against a deadline instead of sleeping for a guessed time.

use std::time::{Duration, Instant};

use anyhow::bail;

/// Calls `probe` until it returns `Ok(Some(_))`, backing off from 1 ms to 50 ms between
/// attempts. Fails with the last probe error (or "not yet") once `timeout` has passed, or
/// at once if `probe` returns `Err` — a probe reports a condition that can never become
/// true (such as a dead child process) that way.
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
