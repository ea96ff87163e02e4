//! Crash points for tests (only in sheep built with the `failpoints` feature): when the
//! environment variable `SHEEP_CRASH_AT` names a point, the process SIGKILLs itself
//! there, so a test can stop a sheep at an exact step of a multi-step operation (between
//! the cluster-log record of a snapshot and its inode write, in the middle of a delete).
//! `SHEEP_DELAY_AT=POINT:MS` pauses at a point instead (a slow member). In a normal build
//! every point is a no-op.

/// The environment variable naming the point to die at.
pub const ENV: &str = "SHEEP_CRASH_AT";

/// Dies here if `SHEEP_CRASH_AT` names `point`.
#[cfg(feature = "failpoints")]
pub fn crash_point(point: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == point) {
        tracing::warn!(point, "test crash point: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Dies here if `SHEEP_CRASH_AT` names `point` (not in this build).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}

/// Whether `SHEEP_CRASH_AT` names `point`: for a point that must set the scene before it
/// dies (a write sent to one replica only).
#[cfg(feature = "failpoints")]
pub fn armed(point: &str) -> bool {
    std::env::var(ENV).is_ok_and(|v| v == point)
}

/// Whether `SHEEP_CRASH_AT` names `point` (never, in this build).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_point: &str) -> bool {
    false
}

/// The environment variable naming a point to pause at, and for how long:
/// `POINT:MILLISECONDS`.
pub const DELAY_ENV: &str = "SHEEP_DELAY_AT";

/// Pauses here if `SHEEP_DELAY_AT` names `point` (a slow member, made reproducible).
#[cfg(feature = "failpoints")]
pub async fn delay_point(point: &str) {
    let Ok(spec) = std::env::var(DELAY_ENV) else {
        return;
    };
    let Some((name, ms)) = spec.rsplit_once(':') else {
        return;
    };
    if name == point
        && let Ok(ms) = ms.parse::<u64>()
    {
        tracing::warn!(point, ms, "test delay point");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// Pauses here if `SHEEP_DELAY_AT` names `point` (not in this build).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn delay_point(_point: &str) {}
