//! A `getopt_long` work-alike over one subcommand's option table: GNU argument
//! permutation, clustered short options, `-pVALUE` / `-p VALUE`, `--long[=VALUE]`,
//! unique long-name prefixes and `--`. Error texts follow glibc's. Long-only options
//! (`OptSpec::short` false) are reached by their long name only.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::table::OptSpec;

/// One parsed option with its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    /// The option letter.
    pub ch: char,
    /// Its argument, when it takes one.
    pub arg: Option<OsString>,
}

/// The outcome of parsing: options in order (stopping at the first error), then the
/// positional arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Options, or the error message (already formatted, without newline) where parsing
    /// stopped.
    pub opts: Vec<Result<Opt, String>>,
    /// Non-option arguments in order.
    pub positional: Vec<OsString>,
}

fn os(b: &[u8]) -> OsString {
    std::ffi::OsStr::from_bytes(b).to_os_string()
}

/// Parses `args` (everything after the subcommand) against `specs`. `prog` prefixes
/// error messages the way glibc uses `argv[0]`.
pub fn parse(prog: &str, args: &[OsString], specs: &[&OptSpec]) -> Parsed {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args.get(i) else { break };
        let bytes = arg.as_bytes();
        i += 1;
        if bytes == b"--" {
            out.positional.extend(args.iter().skip(i).cloned());
            break;
        }
        if let Some(long) = bytes.strip_prefix(b"--") {
            let (name, value) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (long.get(..eq).unwrap_or(long), long.get(eq + 1..)),
                None => (long, None),
            };
            let shown = String::from_utf8_lossy(name);
            let exact = specs.iter().find(|s| s.long.as_bytes() == name);
            let candidates: Vec<&&OptSpec> = specs
                .iter()
                .filter(|s| s.long.as_bytes().starts_with(name))
                .collect();
            let spec = match (exact, candidates.as_slice()) {
                (Some(s), _) => s,
                (None, [one]) => one,
                (None, []) => {
                    out.opts
                        .push(Err(format!("{prog}: unrecognized option '--{shown}'")));
                    return out;
                }
                (None, many) => {
                    let list: Vec<String> =
                        many.iter().map(|s| format!("'--{}'", s.long)).collect();
                    out.opts.push(Err(format!(
                        "{prog}: option '--{shown}' is ambiguous; possibilities: {}",
                        list.join(" ")
                    )));
                    return out;
                }
            };
            let value = match (spec.has_arg, value) {
                (false, None) => None,
                (false, Some(_)) => {
                    out.opts.push(Err(format!(
                        "{prog}: option '--{}' doesn't allow an argument",
                        spec.long
                    )));
                    return out;
                }
                (true, Some(v)) => Some(os(v)),
                (true, None) => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    None => {
                        out.opts.push(Err(format!(
                            "{prog}: option '--{}' requires an argument",
                            spec.long
                        )));
                        return out;
                    }
                },
            };
            out.opts.push(Ok(Opt {
                ch: spec.ch,
                arg: value,
            }));
            continue;
        }
        let Some(cluster) = bytes.strip_prefix(b"-").filter(|c| !c.is_empty()) else {
            out.positional.push(arg.clone());
            continue;
        };
        let mut k = 0;
        while let Some(&b) = cluster.get(k) {
            k += 1;
            let ch = char::from(b);
            let Some(spec) = specs.iter().find(|s| s.short && s.ch == ch && b.is_ascii()) else {
                let shown = if b.is_ascii() {
                    ch.to_string()
                } else {
                    format!("\\{b:o}")
                };
                out.opts
                    .push(Err(format!("{prog}: invalid option -- '{shown}'")));
                return out;
            };
            if !spec.has_arg {
                out.opts.push(Ok(Opt { ch, arg: None }));
                continue;
            }
            let rest = cluster.get(k..).unwrap_or_default();
            let value = if !rest.is_empty() {
                os(rest)
            } else if let Some(next) = args.get(i) {
                i += 1;
                next.clone()
            } else {
                out.opts.push(Err(format!(
                    "{prog}: option requires an argument -- '{ch}'"
                )));
                return out;
            };
            out.opts.push(Ok(Opt {
                ch,
                arg: Some(value),
            }));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Command;

    fn run(args: &[&str], opts: &str) -> Parsed {
        let cmd = Command::find("vdi").unwrap();
        let specs: Vec<&OptSpec> = opts.chars().filter_map(|c| cmd.opt(c)).collect();
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse("dog", &args, &specs)
    }

    fn ok(ch: char, arg: Option<&str>) -> Result<Opt, String> {
        Ok(Opt {
            ch,
            arg: arg.map(OsString::from),
        })
    }

    #[test]
    fn permutes_and_clusters() {
        let p = run(
            &["test", "-Pv", "-c2", "1G", "-p", "7000", "--raw"],
            "PycaphrvzT",
        );
        assert_eq!(
            p.opts,
            vec![
                ok('P', None),
                ok('v', None),
                ok('c', Some("2")),
                ok('p', Some("7000")),
                ok('r', None)
            ]
        );
        assert_eq!(
            p.positional,
            vec![OsString::from("test"), OsString::from("1G")]
        );
    }

    #[test]
    fn long_options_and_prefixes() {
        let p = run(&["--port=7001", "--addr", "::1", "--", "-x"], "aphT");
        assert_eq!(p.opts, vec![ok('p', Some("7001")), ok('a', Some("::1"))]);
        assert_eq!(p.positional, vec![OsString::from("-x")]);
        let p = run(&["--pre"], "PycaphrvzT");
        assert_eq!(p.opts, vec![ok('P', None)]);
    }

    #[test]
    fn errors_like_glibc() {
        assert_eq!(
            run(&["-q"], "aphT").opts,
            vec![Err("dog: invalid option -- 'q'".to_string())]
        );
        assert_eq!(
            run(&["-p"], "aphT").opts,
            vec![Err("dog: option requires an argument -- 'p'".to_string())]
        );
        assert_eq!(
            run(&["--bogus"], "aphT").opts,
            vec![Err("dog: unrecognized option '--bogus'".to_string())]
        );
        assert_eq!(
            run(&["--help=x"], "aphT").opts,
            vec![Err(
                "dog: option '--help' doesn't allow an argument".to_string()
            )]
        );
        // -c belongs to vdi but not to `vdi list`'s letters.
        assert_eq!(
            run(&["-c", "2"], "aprhoT").opts,
            vec![Err("dog: invalid option -- 'c'".to_string())]
        );
        assert_eq!(run(&["-"], "aphT").positional, vec![OsString::from("-")]);
    }
}
