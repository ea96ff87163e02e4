//! Background recovery yields to client I/O. Every client read or write that reaches this
//! node's store marks the moment ([`ClientActivity::touch`]); while clients were active
//! within [`QUIET`], the epoch's pass recovers one object at a time and rests after each
//! for as long as it took (up to [`MAX_REST`]), so the disk serves client requests at
//! least half of the time. Once the clients are quiet, it runs at its full `-R` parallelism
//! again. An object a client asks for is not queued at all: its request recovers it first
//! (`recover_now`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Clients idle this long: recovery runs at full speed.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest rest after one object while clients are active.
pub const MAX_REST: Duration = Duration::from_millis(50);

/// When client I/O last reached this node's store.
#[derive(Debug)]
pub struct ClientActivity {
    origin: Instant,
    /// Nanoseconds after `origin`, plus one; 0: never.
    last: AtomicU64,
}

impl Default for ClientActivity {
    fn default() -> Self {
        ClientActivity {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl ClientActivity {
    /// A client request reached the store now.
    pub fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(now.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a client request reached the store within `within`.
    pub fn recent(&self, within: Duration) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let within = u64::try_from(within.as_nanos()).unwrap_or(u64::MAX);
                now.saturating_add(1).saturating_sub(last) <= within
            }
        }
    }
}

/// The rest after recovering one object in `took`, while clients are active.
pub fn rest_after(took: Duration) -> Duration {
    took.min(MAX_REST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_recent_until_quiet() {
        let a = ClientActivity::default();
        assert!(!a.recent(QUIET), "never touched");
        a.touch();
        assert!(a.recent(QUIET));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!a.recent(Duration::from_millis(10)));
        assert!(a.recent(Duration::from_secs(10)));
    }

    #[test]
    fn the_rest_matches_the_work_up_to_a_bound() {
        assert_eq!(
            rest_after(Duration::from_millis(7)),
            Duration::from_millis(7)
        );
        assert_eq!(rest_after(Duration::from_secs(3)), MAX_REST);
    }
}
