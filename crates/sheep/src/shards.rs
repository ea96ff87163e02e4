//! The daemon's threads. A request costs least when every task it wakes runs on the thread
//! that woke it: a wake-up that crosses threads costs a context switch or two, several
//! times the work of a page-cache write. So the daemon runs `threads` single-threaded
//! tokio runtimes (shards) and serves each connection wholly on one of them: its reader,
//! its requests, its writer, and the connections to other sheep those requests use
//! (`peer::PeerPool` keeps one set per shard). Accepted connections are dealt to the shards
//! in turn. Only blocking store calls leave a shard (`disk`), to its runtime's blocking
//! pool.
//!
//! Shard 0 is the runtime [`crate::run`] was called on (the membership, recovery and
//! flusher tasks live there too); [`Shards::start`] adds the others, one thread each.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// The shard the calling thread serves (0 on any thread that is not a shard's).
pub fn current() -> usize {
    SHARD.with(Cell::get)
}

/// The runtimes connections are dealt to. Dropping it stops the shards' threads (after
/// their tasks are cancelled: every connection watches the daemon's cancel token).
#[derive(Debug)]
pub struct Shards {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Shards {
    /// Shard 0 on the calling runtime plus `threads - 1` shards on threads of their own.
    pub fn start(threads: usize) -> std::io::Result<Shards> {
        let stop = CancellationToken::new();
        let mut handles = vec![Handle::current()];
        for index in 1..threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("sheep-io{index}"))
                .build()?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("sheep-shard{index}"))
                .spawn(move || {
                    SHARD.with(|s| s.set(index));
                    rt.block_on(stop.cancelled());
                    // Blocking store calls still running finish on their own threads.
                    rt.shutdown_background();
                })?;
        }
        Ok(Shards {
            handles,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// The runtimes, shard 0 first.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// The runtime the next accepted connection goes to.
    pub fn next(&self) -> Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        // `handles` is never empty, so `i` is in range.
        self.handles.get(i).cloned().unwrap_or_else(Handle::current)
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
