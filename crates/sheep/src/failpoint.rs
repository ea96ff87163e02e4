//! Crash points for tests (only in sheep built with the `failpoints` feature): when the
//! environment variable `SHEEP_CRASH_AT` names a point, the process SIGKILLs itself
//! there, so a test can stop a sheep at an exact step of a multi-step operation (between
//! the cluster-log record of a snapshot and its inode write, in the middle of a delete).
//! In a normal build every point is a no-op.

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
