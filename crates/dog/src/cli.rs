//! Command-line handling: command/subcommand lookup, option parsing and validation in
//! the C `dog`'s order, the NEED_NODELIST/NEED_ARG checks, dispatch and the epilogue
//! (usage on 64, `-T` elapsed time).
//!
//! Parsing is a small getopt work-alike ([`crate::getopt`]) over the per-subcommand
//! option tables in [`crate::table`] rather than clap: the same table must also produce
//! the original's usage text byte for byte, options must take effect in command-line
//! order (`-h` after a bad `-p` is never reached), and every message and exit code is
//! dictated by Sheepdog 1.0. With clap we would have had to suppress all of its output
//! and re-derive this table anyway.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use sd_proto::SD_LISTEN_PORT;

use crate::ctx::{Ctx, Options, Out};
use crate::exit::{Abort, CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_USAGE};
use crate::format::{copy_error, parse_copy};
use crate::getopt::{self, Opt};
use crate::sd_err;
use crate::table::{
    Command, Handler, NEED_ARG, NEED_NODELIST, OPT_INTERVAL, OPT_JSON, OPT_WATCH, OptSpec, SubCmd,
};
use crate::usage;

/// Runs `dog` with `args` (including `argv[0]`); returns the exit code.
pub fn run(args: Vec<OsString>) -> u8 {
    let start = Instant::now();
    let mut out = Out::stdout();
    let code = match run_inner(&args, &mut out, start) {
        Ok(c) | Err(Abort(c)) => c,
    };
    out.flush();
    code
}

fn lossy(s: &OsString) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

fn is_help(s: &str) -> bool {
    matches!(s, "help" | "--help" | "-h")
}

fn run_inner(args: &[OsString], out: &mut Out, start: Instant) -> CmdResult {
    let inv = parse_invocation(args, out)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            sd_err!("failed to start the runtime: {e}");
            Abort(crate::exit::EXIT_SYSFAIL)
        })?;
    let mut ctx = Ctx::new(inv.opts.clone(), inv.addr, std::mem::take(out));
    let result = rt.block_on(execute(&mut ctx, &inv));
    *out = std::mem::take(&mut ctx.out);
    let code = result?;
    if inv.opts.elapsed && code != EXIT_USAGE {
        let text = format!(
            "\nElapsed time: {:.3} seconds\n",
            start.elapsed().as_secs_f64()
        );
        if inv.opts.json {
            // Keep stdout one JSON document.
            crate::ctx::err_block(&text);
        } else {
            out.put(&text);
        }
    }
    Ok(code)
}

/// A parsed command line, ready to run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The command.
    pub cmd: &'static Command,
    /// The subcommand.
    pub sub: &'static SubCmd,
    /// Its options.
    pub opts: Options,
    /// The daemon to talk to.
    pub addr: SocketAddr,
    /// Positional arguments.
    pub positional: Vec<OsString>,
}

/// Finds the subcommand and applies its options in command-line order, printing what
/// the original prints; `Err` carries the exit code when nothing is left to run.
pub fn parse_invocation(args: &[OsString], out: &mut Out) -> Result<Invocation, Abort> {
    let prog = args.first().map(lossy).unwrap_or_else(|| "dog".into());
    let Some(cmd_name) = args.get(1).map(lossy) else {
        out.put(&usage::general_usage());
        return Err(Abort(EXIT_SUCCESS));
    };
    if cmd_name == "--version" {
        // sheepdog-rs: the C dog has no --version; this prints it as `sheep --version` does.
        out.put(&usage::version());
        return Err(Abort(EXIT_SUCCESS));
    }
    let Some(cmd) = Command::find(&cmd_name) else {
        if is_help(&cmd_name) {
            out.put(&usage::general_usage());
            return Err(Abort(EXIT_SUCCESS));
        }
        sd_err!("Invalid command '{cmd_name}'");
        sd_err!("{}", usage::TRY_HELP);
        return Err(Abort(EXIT_USAGE));
    };
    let sub_name = args.get(2).map(lossy);
    let Some(sub) = sub_name.as_deref().and_then(|s| cmd.sub(s)) else {
        if let Some(s) = sub_name.as_deref().filter(|s| !is_help(s)) {
            sd_err!("Invalid command '{cmd_name} {s}'");
        }
        crate::ctx::err_block(&usage::available_subcommands(cmd));
        return Err(Abort(EXIT_USAGE));
    };

    let mut opts = Options::default();
    let mut host: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port = SD_LISTEN_PORT;
    if let Some(env) = std::env::var_os("SHEEPDOG_DOG_ADDR") {
        host = parse_addr(&lossy(&env)).ok_or(Abort(EXIT_FAILURE))?;
    }
    if let Some(env) = std::env::var_os("SHEEPDOG_DOG_PORT") {
        port = parse_port(&lossy(&env)).ok_or(Abort(EXIT_USAGE))?;
    }

    let specs: Vec<&OptSpec> = cmd.sub_opts(sub);
    let parsed = getopt::parse(&prog, args.get(3..).unwrap_or_default(), &specs);
    for item in parsed.opts {
        match item {
            Err(msg) => {
                sd_err!("{msg}");
                sd_err!("{}", usage::TRY_HELP);
                return Err(Abort(EXIT_USAGE));
            }
            Ok(Opt { ch: 'h', .. }) => {
                out.put(&usage::subcommand_usage(cmd, sub));
                return Err(Abort(EXIT_SUCCESS));
            }
            Ok(Opt { ch: 'a', arg }) => {
                host = parse_addr(&arg.as_ref().map(lossy).unwrap_or_default())
                    .ok_or(Abort(EXIT_FAILURE))?;
            }
            Ok(Opt { ch: 'p', arg }) => {
                port = parse_port(&arg.as_ref().map(lossy).unwrap_or_default())
                    .ok_or(Abort(EXIT_USAGE))?;
            }
            Ok(o) => apply_opt(cmd, &mut opts, &o)?,
        }
    }
    Ok(Invocation {
        cmd,
        sub,
        opts,
        addr: SocketAddr::new(host, port),
        positional: parsed.positional,
    })
}

/// Runs a parsed invocation: the NEED_NODELIST prologue, the NEED_ARG check, the
/// command, and the usage text when it returns 64.
pub async fn execute(ctx: &mut Ctx, inv: &Invocation) -> CmdResult {
    let (cmd, sub) = (inv.cmd, inv.sub);
    if sub.flags & NEED_NODELIST != 0 {
        ctx.update_node_list().await?;
    }
    if sub.flags & NEED_ARG != 0 && inv.positional.is_empty() {
        ctx.put(&usage::subcommand_usage(cmd, sub));
        return Err(Abort(EXIT_USAGE));
    }
    let code = dispatch(ctx, cmd, sub, &inv.positional).await?;
    if code == EXIT_USAGE {
        ctx.put(&usage::subcommand_usage(cmd, sub));
    }
    Ok(code)
}

async fn dispatch(ctx: &mut Ctx, cmd: &Command, sub: &SubCmd, args: &[OsString]) -> CmdResult {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match sub.handler {
        Handler::VdiCreate => crate::vdi::create(ctx, &args).await,
        Handler::VdiDelete => crate::vdi::delete(ctx, &args).await,
        Handler::VdiList => crate::vdi::list(ctx, &args).await,
        Handler::VdiSnapshot => crate::snapshot::snapshot(ctx, &args).await,
        Handler::VdiClone => crate::snapshot::clone(ctx, &args).await,
        Handler::VdiRollback => crate::snapshot::rollback(ctx, &args).await,
        Handler::VdiTree => crate::tree::tree(ctx).await,
        Handler::VdiLock => match args.first().copied() {
            Some(b"list") => crate::lock::list(ctx).await,
            Some(b"unlock") => crate::lock::unlock(ctx, &args).await,
            _ => {
                ctx.put(&usage::subcommand_usage(cmd, sub));
                Err(Abort(EXIT_FAILURE))
            }
        },
        Handler::VdiRead => crate::vdi_io::read(ctx, &args).await,
        Handler::VdiWrite => crate::vdi_io::write(ctx, &args).await,
        Handler::NodeList => crate::node::list(ctx),
        Handler::NodeInfo => crate::node::info(ctx).await,
        Handler::NodeKill => crate::node::kill(ctx, &args).await,
        Handler::VdiObject => {
            // As the C dog: a missing or unknown sub-subcommand prints usage, exit 1.
            let known = args
                .first()
                .is_some_and(|a| sub.subsub.iter().any(|s| s.name.as_bytes() == *a));
            if !known {
                ctx.put(&usage::subcommand_usage(cmd, sub));
                return Err(Abort(EXIT_FAILURE));
            }
            crate::object::object(ctx, &args).await
        }
        Handler::NodeRecovery => match args.first().copied() {
            None | Some(b"info") if ctx.opts.watch => {
                crate::watch::run(ctx, crate::watch::Watched::NodeRecovery).await
            }
            None | Some(b"info") => crate::node::recovery(ctx).await,
            Some(b"set-throttle" | b"get-throttle") => {
                sd_err!("dog node recovery throttling is not implemented yet");
                Ok(EXIT_FAILURE)
            }
            Some(_) => Ok(EXIT_USAGE),
        },
        Handler::NodeLog => crate::loglevel::log(ctx, &args).await,
        Handler::ClusterInfo if ctx.opts.watch => {
            crate::watch::run(ctx, crate::watch::Watched::ClusterInfo).await
        }
        Handler::ClusterInfo => crate::cluster::info(ctx).await,
        Handler::ClusterFormat => crate::cluster::format(ctx).await,
        Handler::ClusterShutdown => crate::cluster::shutdown(ctx).await,
        Handler::VdiTrack => crate::track::track(ctx, &args).await,
        Handler::VdiSetattr => crate::attr::setattr(ctx, &args).await,
        Handler::VdiGetattr => crate::attr::getattr(ctx, &args).await,
        Handler::VdiResize => crate::resize::resize(ctx, &args).await,
        Handler::VdiCheck => crate::check::vdi_check(ctx, &args).await,
        Handler::ClusterCheck => crate::check::cluster_check(ctx).await,
        Handler::VdiAlterCopy => crate::alter::vdi_alter_copy(ctx, &args).await,
        Handler::ClusterAlterCopy => crate::alter::cluster_alter_copy(ctx).await,
        Handler::NotImplemented => {
            if !sub.subsub.is_empty() {
                let first = args
                    .first()
                    .map(|a| String::from_utf8_lossy(a).into_owned());
                if !sub.subsub.iter().any(|s| Some(s.name) == first.as_deref()) {
                    ctx.put(&usage::subcommand_usage(cmd, sub));
                    return Err(Abort(EXIT_FAILURE));
                }
            }
            sd_err!("dog {} {} is not implemented yet", cmd.name, sub.name);
            Ok(EXIT_FAILURE)
        }
    }
}

/// `str_to_addr`: an IPv4/IPv6 literal or a resolvable host name.
fn parse_addr(s: &str) -> Option<IpAddr> {
    let ip = s.parse::<IpAddr>().ok().or_else(|| {
        (s, 0u16)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .map(|sa| sa.ip())
    });
    if ip.is_none() {
        sd_err!("Invalid ip address {s}");
    }
    ip
}

/// A port: digits only, 1–65535.
fn parse_port(s: &str) -> Option<u16> {
    let p = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u16>().ok().filter(|p| *p != 0)
    } else {
        None
    };
    if p.is_none() {
        sd_err!("Invalid port number '{s}'");
    }
    p
}

/// Applies one command-specific option, validating it like the C parsers (which exit on
/// bad values).
fn apply_opt(cmd: &Command, o: &mut Options, opt: &Opt) -> Result<(), Abort> {
    let arg = opt.arg.as_ref().map(lossy).unwrap_or_default();
    let raw_arg = opt
        .arg
        .as_ref()
        .map(|a| a.as_bytes().to_vec())
        .unwrap_or_default();
    match (cmd.name, opt.ch) {
        (_, 'r') => o.raw = true,
        (_, 'v') => o.verbose = true,
        (_, 'T') => o.elapsed = true,
        (_, 'f') => o.force = true,
        (_, 'c') => {
            let Some((copies, policy)) = parse_copy(&arg) else {
                sd_err!("{}", copy_error(&arg));
                return Err(Abort(EXIT_FAILURE));
            };
            o.copies = copies;
            o.copy_policy = policy;
        }
        (_, 'z') => {
            let shift = atoi(&arg);
            if shift > 31 {
                sd_err!("Object Size is limited to 2^31. Please set shift bit lower than 31");
                return Err(Abort(EXIT_FAILURE));
            }
            if shift < 20 {
                sd_err!("Object Size is larger than 2^20. Please set shift bit larger than 20");
                return Err(Abort(EXIT_FAILURE));
            }
            if cmd.name == "vdi" && o.store_policy == 1 {
                sd_err!("Don't specify both -y and -z options, please");
                return Err(Abort(EXIT_FAILURE));
            }
            o.block_size_shift = u8::try_from(shift).unwrap_or(0);
        }
        ("vdi", 'P') => o.prealloc = true,
        ("vdi", 'y') => {
            o.store_policy = 1;
            if o.block_size_shift != 0 {
                sd_err!("Don't specify both -y and -z options, please");
                return Err(Abort(EXIT_FAILURE));
            }
        }
        ("vdi", 's') => match arg.parse::<i64>() {
            Ok(0) => {
                sd_err!("The snapshot id must be larger than zero");
                return Err(Abort(EXIT_FAILURE));
            }
            Ok(n) if n > 0 && u32::try_from(n).is_ok() => {
                o.snapshot_id = u32::try_from(n).unwrap_or(0);
                o.snapshot_tag.clear();
            }
            _ => {
                o.snapshot_id = 0;
                o.snapshot_tag = raw_arg.into_iter().take(255).collect();
            }
        },
        ("vdi", 'w') => o.writeback = true,
        ("vdi", 'n') => o.no_share = true,
        ("vdi", 'R') => o.reduce_identical = true,
        ("vdi", 'x') => o.exclusive = true,
        ("vdi", 'd') => o.delete_key = true,
        ("vdi", 'e') => o.exist_only = true,
        ("vdi", 'o') => {
            let hex = arg
                .trim_start()
                .trim_start_matches("0x")
                .trim_start_matches("0X");
            let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
            match u64::from_str_radix(&digits, 16) {
                Ok(v) => o.oid = Some(v),
                Err(_) => {
                    sd_err!("object id must be a hex integer");
                    return Err(Abort(EXIT_FAILURE));
                }
            }
        }
        ("cluster", 'b') => o.store = raw_arg.into_iter().take(15).collect(),
        ("cluster", 't') => o.strict = true,
        ("cluster", 'l') => o.use_lock = true,
        ("cluster", 'R') => o.recycle_vid = true,
        ("cluster", 'F') => o.avoid_diskfull = true,
        ("cluster", 'V') => o.fixed_vnodes = true,
        ("cluster", 'd') => o.diff = true,
        ("node", 'l') => o.local = true,
        (_, OPT_JSON) => o.json = true,
        (_, OPT_WATCH) => o.watch = true,
        (_, OPT_INTERVAL) => {
            let secs = arg.trim().parse::<f64>().ok().filter(|s| *s > 0.0);
            let Some(d) = secs.and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()) else {
                sd_err!("Invalid interval '{arg}': a positive number of seconds is expected");
                return Err(Abort(EXIT_USAGE));
            };
            o.interval = Some(d);
            o.watch = true;
        }
        ("vdi", 'i') => {
            let t = arg.trim();
            let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => t.parse::<u64>().ok(),
            };
            let Some(v) = v else {
                sd_err!("Invalid index {arg}");
                return Err(Abort(EXIT_FAILURE));
            };
            o.index = Some(v);
        }
        // Options of commands this dog does not implement are accepted and ignored.
        _ => {}
    }
    Ok(())
}

/// C `atoi`: optional whitespace and sign, then leading digits; 0 if none.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    let digits: String = t
        .chars()
        .take_while(char::is_ascii_digit)
        .take(18)
        .collect();
    let v = digits.parse::<i64>().unwrap_or(0);
    if neg { -v } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_atoi() {
        assert_eq!(parse_port("7000"), Some(7000));
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port("70a"), None);
        assert_eq!(atoi("22"), 22);
        assert_eq!(atoi(" 21x"), 21);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("-3"), -3);
    }
}
