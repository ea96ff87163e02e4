//! Server tests, one binary: raw-socket protocol tests that assert exact bytes, property
//! tests with random client input, and the real NBD clients (nbdinfo, qemu-img, qemu-io,
//! fio) against an in-memory device.
//!
//! The client tools come from Debian packages `qemu-utils` (qemu-img, qemu-io),
//! `libnbd-bin` (nbdinfo) and `fio`; a missing tool fails its test with that hint.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod clients;
mod garbage;
mod mem;
mod raw;
// The codec tests' message strategies, shared rather than copied (this binary uses some).
#[allow(dead_code)]
#[path = "../codec/strategy.rs"]
mod strategy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sd_nbd::Exports;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every wait in these tests is bounded by this deadline.
const DEADLINE: Duration = Duration::from_secs(30);

/// A server on 127.0.0.1:0 running in the test's runtime.
struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn start<E: Exports>(exports: E) -> Server {
        Self::start_with(exports, sd_nbd::Config::default()).await
    }

    async fn start_with<E: Exports>(exports: E, config: sd_nbd::Config) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(sd_nbd::serve_with(
            listener,
            Arc::new(exports),
            config,
            cancel.clone(),
        ));
        Server { addr, cancel, task }
    }

    fn uri(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.addr)
    }

    /// Cancels and waits for `serve` to return.
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("serve returns after cancel")
            .expect("serve task");
    }
}

/// Bytes from a hex string; whitespace and `|` separators are ignored.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length in {s:?}");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}
