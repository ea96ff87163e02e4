//! Usage and help texts (spec dog-cli.md §1), built as strings so tests can compare them
//! with the original's output.

use crate::table::{COMMANDS, Command, SubCmd};

/// The version `dog` reports: the Sheepdog release whose CLI this one reproduces.
pub const DOG_VERSION: &str = "1.0";

/// `printf("  %-24s%s\n", left, right)`.
fn column(left: &str, right: &str) -> String {
    format!("  {left:<24}{right}\n")
}

/// What a subcommand that is not implemented yet adds to its usage text, and to the
/// description of a nested subcommand that is not.
pub const NOT_IMPLEMENTED_MARK: &str = "(not implemented yet)";

/// `dog --version` (a sheepdog-rs addition): the program and package version, as
/// `sheep --version` prints it.
pub fn version() -> String {
    format!("dog {}\n", env!("CARGO_PKG_VERSION"))
}

/// `dog --help`: the command listing (stdout, exit 0). Sheepdog's text, less the
/// subcommands this `dog` does not implement yet ([`SubCmd::is_implemented`]).
pub fn general_usage() -> String {
    let mut s = format!(
        "Sheepdog administrator utility (version {DOG_VERSION})\nUsage: dog <command> <subcommand> [options]\n\nAvailable commands:\n"
    );
    for cmd in COMMANDS {
        for sub in cmd.subs.iter().filter(|s| s.is_implemented()) {
            s.push_str(&column(&format!("{} {}", cmd.name, sub.name), sub.desc));
        }
    }
    s.push_str("\nFor more information, run 'dog <command> <subcommand> --help'.\n");
    s
}

/// The hint printed to stderr for an invalid command or option.
pub const TRY_HELP: &str = "Try 'dog --help' for more information.";

/// The `Available <cmd> commands:` listing (stderr) for a bad or missing subcommand,
/// less the subcommands not implemented yet (for a command with none implemented, a line
/// says so).
pub fn available_subcommands(cmd: &Command) -> String {
    let mut s = format!("Available {} commands:\n", cmd.name);
    let mut any = false;
    for sub in cmd.subs.iter().filter(|s| s.is_implemented()) {
        s.push_str(&format!("  {} {}\n", cmd.name, sub.name));
        any = true;
    }
    if !any {
        s.push_str(&format!("  {NOT_IMPLEMENTED_MARK}\n"));
    }
    s
}

/// `dog <cmd> <sub> -h`: the subcommand usage block (stdout).
pub fn subcommand_usage(cmd: &Command, sub: &SubCmd) -> String {
    let mut s = format!("Usage: dog {} {}", cmd.name, sub.name);
    match sub.subsub {
        [] => {}
        [only] => {
            s.push(' ');
            s.push_str(only.name);
        }
        many => {
            let names: Vec<&str> = many.iter().map(|x| x.name).collect();
            s.push_str(&format!(" {{{}}}", names.join("|")));
        }
    }
    let opts = cmd.sub_opts(sub);
    for o in &opts {
        let name = if o.short {
            format!("-{}", o.ch)
        } else {
            format!("--{}", o.long)
        };
        if o.has_arg {
            s.push_str(&format!(" [{name} {}]", o.long));
        } else {
            s.push_str(&format!(" [{name}]"));
        }
    }
    if let Some(arg) = sub.arg {
        s.push(' ');
        s.push_str(arg);
    }
    s.push('\n');
    if !sub.subsub.is_empty() {
        s.push_str("Available subcommands:\n");
        for x in sub.subsub {
            if x.implemented {
                s.push_str(&column(x.name, x.desc));
            } else {
                s.push_str(&column(
                    x.name,
                    &format!("{} {NOT_IMPLEMENTED_MARK}", x.desc),
                ));
            }
        }
    }
    s.push_str("Options:\n");
    for o in &opts {
        let left = if o.short {
            format!("-{}, --{}", o.ch, o.long)
        } else {
            format!("    --{}", o.long)
        };
        s.push_str(&column(&left, o.desc));
    }
    if !sub.is_implemented() {
        s.push_str(&format!(
            "Note: this dog does not implement 'dog {} {}' yet.\n",
            cmd.name, sub.name
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = include_str!("../testdata/usage-samples.txt");

    /// The block of the samples file that follows `===== $ <cmd>` up to the exit line.
    fn sample(cmd: &str) -> String {
        let marker = format!("===== $ {cmd}\n");
        let start = SAMPLES.find(&marker).expect("sample present") + marker.len();
        let end = start + SAMPLES[start..].find("----- exit code").unwrap();
        SAMPLES[start..end].to_string()
    }

    fn usage_of(cmd: &str, sub: &str) -> String {
        let c = Command::find(cmd).unwrap();
        subcommand_usage(c, c.sub(sub).unwrap())
    }

    /// The subcommands this dog lists: all of Sheepdog's but those not implemented yet.
    const HIDDEN: &[&str] = &[
        "vdi graph",
        "vdi backup",
        "vdi restore",
        "node md",
        "node stat",
        "node vnodes",
        "node format",
        "cluster snapshot",
        "cluster recover",
        "cluster reweight",
        "upgrade inode-convert",
        "upgrade epoch-convert",
        "upgrade config-convert",
        "upgrade object-location",
        "benchmark io",
    ];

    /// `text` without the lines naming a hidden subcommand (`  vdi check ...`).
    fn without_hidden(text: &str) -> String {
        text.split_inclusive('\n')
            .filter(|l| {
                !HIDDEN.iter().any(|h| {
                    l.strip_prefix("  ")
                        .and_then(|r| r.strip_prefix(h))
                        .is_some_and(|r| r.starts_with([' ', '\n']))
                })
            })
            .collect()
    }

    #[test]
    fn hidden_subcommands_are_those_not_implemented() {
        let mut not_implemented = Vec::new();
        for cmd in COMMANDS {
            for sub in cmd.subs.iter().filter(|s| !s.is_implemented()) {
                not_implemented.push(format!("{} {}", cmd.name, sub.name));
            }
        }
        assert_eq!(not_implemented, HIDDEN);
    }

    #[test]
    fn general_usage_matches_sample_less_hidden() {
        let usage = general_usage();
        assert_eq!(usage, without_hidden(&sample("dog -h")));
        for h in HIDDEN {
            assert!(!usage.contains(&format!("  {h} ")), "{h} is listed");
        }
        assert!(usage.contains("  vdi create              create an image\n"));
    }

    #[test]
    fn available_listings_match_samples_less_hidden() {
        for c in ["vdi", "node", "cluster"] {
            assert_eq!(
                available_subcommands(Command::find(c).unwrap()),
                without_hidden(&sample(&format!("dog {c}")))
            );
        }
        assert_eq!(
            available_subcommands(Command::find("upgrade").unwrap()),
            "Available upgrade commands:\n  (not implemented yet)\n"
        );
    }

    #[test]
    fn version_is_the_package_version() {
        assert_eq!(version(), format!("dog {}\n", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn subcommand_usages_match_samples() {
        let create = sample("dog vdi create c 5T");
        let block = &create[create.find("Usage:").unwrap()..];
        assert_eq!(usage_of("vdi", "create"), block);

        let resize = sample("dog vdi resize a 50M");
        let block = &resize[resize.find("Usage:").unwrap()..];
        assert_eq!(usage_of("vdi", "resize"), block);

        // Sheepdog's text plus the sheepdog-rs extension `--json`, last on both lists, and
        // the mark on `dump-inode`, not implemented yet.
        let object = sample("dog vdi object test -i 0")
            .replace(" [-T] <vdiname>", " [-T] [--json] <vdiname>")
            .replace(
                "dump inode information\n",
                "dump inode information (not implemented yet)\n",
            )
            + "      --json              print one JSON document (docs/json-output.md)\n";
        assert_eq!(usage_of("vdi", "object"), object);
        // A subcommand not implemented yet: Sheepdog's usage, then a note that says so.
        assert_eq!(
            usage_of("cluster", "snapshot"),
            sample("dog cluster snapshot")
                + "Note: this dog does not implement 'dog cluster snapshot' yet.\n"
        );
        // Nested subcommands not implemented yet are marked.
        let recovery = usage_of("node", "recovery");
        assert!(
            recovery
                .contains("  set-throttle            set new throttling (not implemented yet)\n"),
            "{recovery}"
        );
        assert!(
            recovery.contains(
                "  info                    show recovery information of nodes (default)\n"
            )
        );
    }
}
