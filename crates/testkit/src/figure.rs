//! Figures a reliability test reports (faults injected, bytes verified, ...), printed as
//! `figure: TEST: TEXT` lines on stderr so that `scripts/reliability-report.sh` can gather
//! them from a `--no-capture` run into docs/reliability.md.

use std::fmt::Display;

/// The line prefix `scripts/reliability-report.sh` looks for.
pub const FIGURE_PREFIX: &str = "figure: ";

/// Prints one figure of test `test`.
pub fn figure(test: &str, text: impl Display) {
    eprintln!("{FIGURE_PREFIX}{test}: {text}");
}
