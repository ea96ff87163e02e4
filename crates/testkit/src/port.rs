//! Free TCP ports on the loopback interface.
//!
//! Ports are drawn at random below the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), never from it: the kernel hands ephemeral
//! ports to every outgoing connection, so a port of that range that was free a moment ago
//! is soon the local end of some test's client socket, and the daemon given it fails to
//! bind (seen about once a suite run with many tests in parallel).

use std::net::{Ipv4Addr, TcpListener};

use anyhow::Context;

/// Lowest port handed out.
const LOW: u16 = 10_000;
/// Where the kernel's ephemeral range starts when /proc does not say.
const EPHEMERAL_DEFAULT: u16 = 32_768;
/// Random draws before falling back to a kernel-chosen port.
const ATTEMPTS: usize = 200;

/// First port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_DEFAULT)
}

/// A port that was free a moment ago, outside the ephemeral range where possible. Another
/// process may still take it before the caller binds it; [`crate::Sheep`] retries with a
/// new port when the daemon fails to bind.
pub fn free_port() -> anyhow::Result<u16> {
    let high = ephemeral_start();
    if high > LOW + 1000 {
        for _ in 0..ATTEMPTS {
            let port = rand::random_range(LOW..high);
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(l.local_addr().context("local_addr")?.port())
}
