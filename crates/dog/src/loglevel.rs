//! `dog node log level set|get|list` (spec dog-cli.md §3.2: SET_LOGLEVEL / GET_LOGLEVEL,
//! levels emerg … debug = 0..7).

use sd_proto::stat::LogLevel;
use sd_proto::{Opcode, RequestHeader, SdResult};

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE};
use crate::sd_err;

/// Sheepdog's level names, indexed by level.
const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// `node log level ...`; `args` starts after `log`.
pub async fn log(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    match args {
        [b"level", b"set", level, ..] => set(ctx, &String::from_utf8_lossy(level)).await,
        [b"level", b"get", ..] => get(ctx).await,
        [b"level", b"list", ..] => {
            ctx.put(&listing());
            Ok(EXIT_SUCCESS)
        }
        _ => Ok(EXIT_USAGE),
    }
}

fn listing() -> String {
    LEVELS
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}\t({i})\n"))
        .collect()
}

async fn set(ctx: &mut Ctx, name: &str) -> CmdResult {
    let Some(level) = LEVELS.iter().position(|n| *n == name) else {
        sd_err!("invalid loglevel: {name}");
        sd_err!("available loglevels:");
        eprint!("{}", listing());
        return Ok(EXIT_FAILURE);
    };
    let level = i32::try_from(level).unwrap_or(6);
    let mut h = RequestHeader::new(Opcode::SetLoglevel);
    h.flags = sd_proto::Flags::WRITE;
    h.data_length = 4;
    call(ctx, h, &LogLevel(level).encode())
        .await
        .map(|_| EXIT_SUCCESS)
}

async fn get(ctx: &mut Ctx) -> CmdResult {
    let mut h = RequestHeader::new(Opcode::GetLoglevel);
    h.data_length = 4;
    let data = call(ctx, h, &[]).await?;
    let level = LogLevel::decode(&data).map_or(-1, |l| l.0);
    let name = usize::try_from(level)
        .ok()
        .and_then(|i| LEVELS.get(i))
        .copied()
        .unwrap_or("unknown loglevel");
    ctx.put(&format!("{name} ({level})\n"));
    Ok(EXIT_SUCCESS)
}

/// Sends `h` to the node given by -a/-p; the reply's data, or the exit code.
async fn call(
    ctx: &mut Ctx,
    h: RequestHeader,
    payload: &[u8],
) -> Result<Vec<u8>, crate::exit::Abort> {
    let Some(c) = ctx.conn().await else {
        return Err(crate::exit::Abort(EXIT_SYSFAIL));
    };
    match c.call(h, payload).await {
        Ok((rsp, data)) if rsp.result == SdResult::Success => Ok(data.to_vec()),
        Ok(_) => {
            sd_err!("Failed to execute request");
            Err(crate::exit::Abort(EXIT_FAILURE))
        }
        Err(e) => {
            Ctx::report_transport(&e);
            Err(crate::exit::Abort(EXIT_SYSFAIL))
        }
    }
}
