//! Free TCP ports on the loopback interface.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::Context;

/// A port that was free a moment ago: binds `127.0.0.1:0`, reads the port and closes the
/// socket. Another process may take it before the caller binds it; [`crate::Sheep`] retries
/// with a new port when the daemon fails to bind.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(l.local_addr().context("local_addr")?.port())
}
