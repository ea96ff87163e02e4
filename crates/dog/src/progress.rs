//! Progress bars for long `dog` work (`vdi read`, `vdi write`, the copy of `vdi clone -n`
//! or `-P`, `vdi check`), drawn with `indicatif` on stderr, and only when someone is
//! watching: scripts and tests, which capture dog's output through pipes, never see one.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a command writes to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Messages (or nothing): `vdi write`.
    Text,
    /// The data itself: `vdi read`.
    Data,
}

/// Whether to draw a bar. The bar goes to stderr, so stderr must be a terminal. A command
/// whose stdout carries text must have that on a terminal too (as Sheepdog's dog, which
/// only drew its bar on a tty stdout). `vdi read` writes the image to stdout, so it draws
/// only when stdout is *not* a terminal: raw bytes on the screen would tear the bar apart.
pub fn enabled(stdout_tty: bool, stderr_tty: bool, stdout: Stdout) -> bool {
    stderr_tty
        && match stdout {
            Stdout::Text => stdout_tty,
            Stdout::Data => !stdout_tty,
        }
}

/// A bar over `total` bytes, or nothing when [`enabled`] says no.
#[derive(Debug)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for a command that writes `stdout`, deciding from the real terminals.
    pub fn new(total: u64, stdout: Stdout) -> Progress {
        let on = enabled(
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
            stdout,
        );
        if !on {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        // Sheepdog's look: percentage, a `=`/`>` bar, done / total.
        let style = ProgressStyle::with_template(
            "{percent:>3} % [{wide_bar}] {bytes} / {total_bytes} ({binary_bytes_per_sec}, {eta})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress(Some(bar))
    }

    /// A bar over `total` objects (`vdi check`), for a command whose stdout carries text.
    pub fn objects(total: u64) -> Progress {
        let on = enabled(
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
            Stdout::Text,
        );
        if !on {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{percent:>3} % [{wide_bar}] {pos} / {len}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress(Some(bar))
    }

    /// Runs `f` (which prints lines) with the bar hidden, so the lines do not tear it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// `n` more bytes done.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Leaves the completed bar on the screen.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish();
        }
    }

    /// Leaves the bar where it stopped (the command failed).
    pub fn abandon(&self) {
        if let Some(b) = &self.0 {
            b.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_only_for_a_watcher() {
        // (stdout tty, stderr tty, what stdout carries) -> drawn
        let table = [
            (true, true, Stdout::Text, true),
            (false, true, Stdout::Text, false),
            (true, false, Stdout::Text, false),
            (false, false, Stdout::Text, false),
            (false, true, Stdout::Data, true),
            (true, true, Stdout::Data, false),
            (false, false, Stdout::Data, false),
            (true, false, Stdout::Data, false),
        ];
        for (out, err, kind, want) in table {
            assert_eq!(enabled(out, err, kind), want, "{out} {err} {kind:?}");
        }
    }
}
