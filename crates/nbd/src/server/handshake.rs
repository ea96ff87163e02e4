//! Fixed-newstyle option haggling, server side: greeting, client flags, then options
//! until an export is chosen (`NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`) or the client leaves.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use super::{ConnError, FrameReader, Negotiated};
use crate::codec::{
    ClientFlags, ExportNameReply, Greeting, HandshakeFlags, Info, InfoRequest, InfoType, MAX_BLOCK,
    MIN_BLOCK, NbdOption, OptionCode, OptionReply, OptionReplyBody, PREFERRED_BLOCK, RawOption,
    RepError, TransmissionFlags, decode_client_flags,
};
use crate::dev::{BlockDev, Exports};

/// The transmission flags for an export.
pub(crate) fn transmission_flags(read_only: bool, structured: bool) -> TransmissionFlags {
    let mut flags = TransmissionFlags::HAS_FLAGS
        | TransmissionFlags::SEND_FLUSH
        | TransmissionFlags::CAN_MULTI_CONN;
    flags = if read_only {
        flags | TransmissionFlags::READ_ONLY
    } else {
        flags
            | TransmissionFlags::SEND_FUA
            | TransmissionFlags::SEND_TRIM
            | TransmissionFlags::SEND_WRITE_ZEROES
    };
    if structured {
        flags = flags | TransmissionFlags::SEND_DF;
    }
    flags
}

/// Runs the handshake. `Ok(None)`: the client aborted or went away before choosing.
pub(crate) async fn negotiate<E: Exports>(
    rd: &mut FrameReader,
    wr: &mut OwnedWriteHalf,
    exports: &E,
) -> Result<Option<Negotiated>, ConnError> {
    let mut out = BytesMut::new();
    Greeting {
        flags: HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES,
    }
    .encode(&mut out);
    wr.write_all(&out).await?;
    out.clear();

    let Some(client) = rd.next(decode_client_flags).await? else {
        return Ok(None);
    };
    if client.unknown_bits() != 0 {
        return Err(ConnError::UnknownClientFlags(client.0));
    }
    let no_zeroes = client.contains(ClientFlags::NO_ZEROES);
    let mut structured = false;

    loop {
        let Some(raw) = rd.next(RawOption::decode).await? else {
            return Ok(None);
        };
        let reply = |body| OptionReply {
            option: raw.code,
            body,
        };
        let option = match NbdOption::parse(&raw) {
            Ok(option) => option,
            Err(e) if raw.code == OptionCode::ExportName => {
                return Err(ConnError::BadExportName(e));
            }
            Err(e) => {
                tracing::debug!(option = ?raw.code, error = %e, "invalid option");
                reply(OptionReplyBody::Error {
                    kind: RepError::Invalid,
                    message: e.to_string(),
                })
                .encode(&mut out);
                wr.write_all(&out).await?;
                out.clear();
                continue;
            }
        };
        tracing::debug!(?option, "option");
        let mut chosen = None;
        match option {
            NbdOption::ExportName(name) => {
                let dev = exports
                    .lookup(&name)
                    .await
                    .map_err(ConnError::ExportRefused)?;
                let (size, read_only) = (dev.size(), dev.read_only());
                ExportNameReply {
                    size,
                    flags: transmission_flags(read_only, structured),
                    no_zeroes,
                }
                .encode(&mut out);
                chosen = Some(Negotiated {
                    dev,
                    name,
                    size,
                    read_only,
                    structured,
                });
            }
            NbdOption::Abort => {
                reply(OptionReplyBody::Ack).encode(&mut out);
                // The client may already have closed; its ACK is best effort.
                let _ = wr.write_all(&out).await;
                return Ok(None);
            }
            NbdOption::List => match exports.list().await {
                Ok(names) => {
                    for name in names {
                        reply(OptionReplyBody::Server {
                            name,
                            details: String::new(),
                        })
                        .encode(&mut out);
                    }
                    reply(OptionReplyBody::Ack).encode(&mut out);
                }
                Err(e) => reply(OptionReplyBody::Error {
                    kind: e.rep_error(),
                    message: e.to_string(),
                })
                .encode(&mut out),
            },
            NbdOption::Info(req) | NbdOption::Go(req) => {
                let go = raw.code == OptionCode::Go;
                match exports.lookup(&req.name).await {
                    Ok(dev) => {
                        let (size, read_only) = (dev.size(), dev.read_only());
                        for info in infos(&req, dev.as_ref(), size, read_only, structured) {
                            reply(OptionReplyBody::Info(info)).encode(&mut out);
                        }
                        reply(OptionReplyBody::Ack).encode(&mut out);
                        if go {
                            chosen = Some(Negotiated {
                                dev,
                                name: req.name,
                                size,
                                read_only,
                                structured,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::debug!(export = %req.name, error = %e, "export lookup");
                        reply(OptionReplyBody::Error {
                            kind: e.rep_error(),
                            message: format!("{e}: {:?}", req.name),
                        })
                        .encode(&mut out);
                    }
                }
            }
            NbdOption::StructuredReply => {
                structured = true;
                reply(OptionReplyBody::Ack).encode(&mut out);
            }
            NbdOption::Unsupported(code) => reply(OptionReplyBody::Error {
                kind: RepError::Unsup,
                message: format!("option {} is not supported", code.to_u32()),
            })
            .encode(&mut out),
        }
        wr.write_all(&out).await?;
        out.clear();
        if chosen.is_some() {
            return Ok(chosen);
        }
    }
}

/// The `NBD_REP_INFO` replies for an `NBD_OPT_INFO` / `NBD_OPT_GO`: always the export
/// size and flags, then each other requested item once (unknown items are ignored).
fn infos(
    req: &InfoRequest,
    dev: &dyn BlockDev,
    size: u64,
    read_only: bool,
    structured: bool,
) -> Vec<Info> {
    let mut out = vec![Info::Export {
        size,
        flags: transmission_flags(read_only, structured),
    }];
    // Up to 32k items may be requested; each known one is answered once, in the order
    // of its first request.
    let (mut name, mut description, mut block_size) = (false, false, false);
    for item in &req.items {
        match item {
            InfoType::Name if !name => {
                name = true;
                out.push(Info::Name(req.name.clone()));
            }
            InfoType::Description if !description => {
                description = true;
                if let Some(text) = dev.description() {
                    out.push(Info::Description(text));
                }
            }
            InfoType::BlockSize if !block_size => {
                block_size = true;
                out.push(Info::BlockSize {
                    min: MIN_BLOCK,
                    preferred: PREFERRED_BLOCK,
                    max: MAX_BLOCK,
                });
            }
            _ => {}
        }
    }
    out
}
