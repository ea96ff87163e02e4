//! `--watch` (sheepdog-rs extension) for `node recovery` and `cluster info`: the command
//! runs again every `--interval` seconds (1 by default) until SIGINT. On a terminal each
//! refresh redraws the screen in place; otherwise refreshes are appended (with `--json`,
//! one document per line: JSON Lines).
//!
//! Ending: SIGINT (at any point, also in the middle of a refresh) and a closed stdout
//! (EPIPE: Rust ignores SIGPIPE, so a write fails instead) exit 0; a refresh that fails
//! (the cluster went away) prints what it printed and exits with its code, as a single run
//! would.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::ctx::Ctx;
use crate::exit::{Abort, CmdResult, EXIT_SUCCESS, EXIT_SYSFAIL};
use crate::sd_err;

/// The refresh period without `--interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Cursor to the top-left corner.
const HOME: &str = "\x1b[H";
/// Clear to the end of the line.
const CLEAR_EOL: &str = "\x1b[K";
/// Clear to the end of the screen.
const CLEAR_EOS: &str = "\x1b[J";

/// What is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// `node recovery [info]`.
    NodeRecovery,
    /// `cluster info`.
    ClusterInfo,
}

/// One run of the watched command.
async fn refresh(ctx: &mut Ctx, what: Watched) -> CmdResult {
    match what {
        Watched::NodeRecovery => crate::node::recovery(ctx).await,
        Watched::ClusterInfo => {
            // The prologue again: the epoch (and so the records asked for) moves.
            ctx.update_node_list().await?;
            crate::cluster::info(ctx).await
        }
    }
}

/// `frame` drawn over the previous one: from the top-left corner, each line cleared to
/// its end, and whatever the previous frame left below cleared.
pub fn redraw(frame: &str) -> String {
    let mut s = String::with_capacity(frame.len() + 64);
    s.push_str(HOME);
    for line in frame.lines() {
        s.push_str(line);
        s.push_str(CLEAR_EOL);
        s.push('\n');
    }
    s.push_str(CLEAR_EOS);
    s
}

/// Runs `what` until interrupted.
pub async fn run(ctx: &mut Ctx, what: Watched) -> CmdResult {
    // Installed once, before the first refresh, so no SIGINT is ever lost between two
    // waits (and none kills the process without its output flushed).
    let mut sigint = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            sd_err!("failed to handle SIGINT: {e}");
            return Ok(EXIT_SYSFAIL);
        }
    };
    let interval = ctx.opts.interval.unwrap_or(DEFAULT_INTERVAL);
    let in_place = ctx.out.is_tty() && !ctx.opts.json;
    loop {
        ctx.out.capture();
        let result = tokio::select! {
            r = refresh(ctx, what) => r,
            _ = sigint.recv() => Err(Abort(EXIT_SUCCESS)),
        };
        let frame = ctx.out.take_captured();
        if result == Err(Abort(EXIT_SUCCESS)) {
            return result;
        }
        if in_place && result == Ok(EXIT_SUCCESS) {
            ctx.put(&redraw(&frame));
        } else {
            ctx.put(&frame);
        }
        ctx.out.flush();
        if result != Ok(EXIT_SUCCESS) {
            return result;
        }
        match ctx.out.error() {
            None => {}
            Some(ErrorKind::BrokenPipe) => return Ok(EXIT_SUCCESS),
            Some(kind) => {
                sd_err!("failed to write the output: {kind}");
                return Ok(EXIT_SYSFAIL);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = sigint.recv() => return Ok(EXIT_SUCCESS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redraw_clears_what_the_last_frame_left() {
        assert_eq!(
            redraw("a\nbc\n"),
            "\x1b[Ha\x1b[K\nbc\x1b[K\n\x1b[J".to_string()
        );
        assert_eq!(redraw(""), "\x1b[H\x1b[J");
    }
}
