//! Usage and help texts (spec dog-cli.md §1), built as strings so tests can compare them
//! with the original's output.

use crate::table::{COMMANDS, Command, SubCmd};

/// The version `dog` reports: the Sheepdog release whose CLI this one reproduces.
pub const DOG_VERSION: &str = "1.0";

/// `printf("  %-24s%s\n", left, right)`.
fn column(left: &str, right: &str) -> String {
    format!("  {left:<24}{right}\n")
}

/// `dog --help`: the full command listing (stdout, exit 0).
pub fn general_usage() -> String {
    let mut s = format!(
        "Sheepdog administrator utility (version {DOG_VERSION})\nUsage: dog <command> <subcommand> [options]\n\nAvailable commands:\n"
    );
    for cmd in COMMANDS {
        for sub in cmd.subs {
            s.push_str(&column(&format!("{} {}", cmd.name, sub.name), sub.desc));
        }
    }
    s.push_str("\nFor more information, run 'dog <command> <subcommand> --help'.\n");
    s
}

/// The hint printed to stderr for an invalid command or option.
pub const TRY_HELP: &str = "Try 'dog --help' for more information.";

/// The `Available <cmd> commands:` listing (stderr) for a bad or missing subcommand.
pub fn available_subcommands(cmd: &Command) -> String {
    let mut s = format!("Available {} commands:\n", cmd.name);
    for sub in cmd.subs {
        s.push_str(&format!("  {} {}\n", cmd.name, sub.name));
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
            s.push_str(&column(x.name, x.desc));
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

    #[test]
    fn general_usage_matches_sample() {
        assert_eq!(general_usage(), sample("dog -h"));
    }

    #[test]
    fn available_listings_match_samples() {
        for c in ["vdi", "node", "cluster"] {
            assert_eq!(
                available_subcommands(Command::find(c).unwrap()),
                sample(&format!("dog {c}"))
            );
        }
    }

    #[test]
    fn subcommand_usages_match_samples() {
        let create = sample("dog vdi create c 5T");
        let block = &create[create.find("Usage:").unwrap()..];
        assert_eq!(usage_of("vdi", "create"), block);

        let resize = sample("dog vdi resize a 50M");
        let block = &resize[resize.find("Usage:").unwrap()..];
        assert_eq!(usage_of("vdi", "resize"), block);

        // Sheepdog's text plus the sheepdog-rs extension `--json`, last on both lists.
        let object = sample("dog vdi object test -i 0")
            .replace(" [-T] <vdiname>", " [-T] [--json] <vdiname>")
            + "      --json              print one JSON document (docs/json-output.md)\n";
        assert_eq!(usage_of("vdi", "object"), object);
        assert_eq!(
            usage_of("cluster", "snapshot"),
            sample("dog cluster snapshot")
        );
    }
}
