//! `dog`: the Sheepdog administration CLI, compatible with Sheepdog 1.0's `dog` in its
//! command tree, output formats and exit codes (shared/spec/dog-cli.md).

#![forbid(unsafe_code)]

mod alter;
mod attr;
mod check;
mod cli;
mod cluster;
mod ctx;
mod exit;
mod format;
mod getopt;
mod json;
mod lock;
mod loglevel;
mod node;
mod object;
mod progress;
mod resize;
mod snapshot;
mod table;
mod track;
mod tree;
mod usage;
mod vdi;
mod vdi_io;
mod watch;

#[cfg(test)]
mod fake_sheep;

fn main() {
    let code = cli::run(std::env::args_os().collect());
    std::process::exit(i32::from(code));
}
