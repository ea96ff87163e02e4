//! `dog vdi setattr [-d] [-x] NAME KEY [VALUE]` and `dog vdi getattr NAME KEY`
//! (dog-cli.md §2, §4.7, §7): VDI attributes through GET_VDI_ATTR (sheepdog-protocol.md §9.4).
//!
//! Both send the 66 320-byte attribute record; setattr asks the server to create or
//! overwrite (CREAT, plus EXCL with `-x`) or to delete (DEL with `-d`), getattr only finds
//! the attribute object and then reads it. Messages and exit codes are Sheepdog 1.0's.

use std::io::Read;

use sd_client::ClientError;
use sd_proto::attr::{SD_MAX_VDI_ATTR_VALUE_LEN, VdiAttr};
use sd_proto::inode::SD_ATTR_OBJ_SIZE;
use sd_proto::{Flags, Oid, SdResult, VdiRsp, Vid, c_str};

use crate::ctx::{Ctx, strerror};
use crate::exit::{
    CmdResult, EXIT_EXISTS, EXIT_FAILURE, EXIT_MISSING, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE,
};
use crate::format::text;
use crate::sd_err;

/// What `pstrcpy` keeps of a string in a 256-byte field: up to the first NUL, at most 255
/// bytes.
fn field(s: &[u8]) -> Vec<u8> {
    let s = c_str(s);
    s.get(..255).unwrap_or(s).to_vec()
}

/// `find_vdi_attr_oid`: GET_VDI_ATTR for `name`/`key` with the `-s` snapshot; the result
/// code on failure (EIO for transport failures, as `dog_exec_req` < 0).
async fn find_attr(
    ctx: &mut Ctx,
    name: &[u8],
    key: &[u8],
    value: &[u8],
    flags: Flags,
) -> Result<(Oid, VdiRsp), SdResult> {
    let a = VdiAttr {
        name: field(name),
        tag: field(&ctx.opts.snapshot_tag),
        ctime: 0,
        snap_id: ctx.opts.snapshot_id,
        key: field(key),
        value: value.to_vec(),
    };
    let snapid = ctx.opts.snapshot_id;
    let Some(c) = ctx.conn().await else {
        return Err(SdResult::Eio);
    };
    match c.get_vdi_attr(&a.encode(), snapid, flags).await {
        Ok(rsp) => Ok((Vid::from_masked(rsp.vdi_id).attr_oid(rsp.attr_id), rsp)),
        Err(ClientError::Result(r)) => Err(r),
        Err(e) => {
            Ctx::report_transport(&e);
            Err(SdResult::Eio)
        }
    }
}

/// The value to set: the argument, or standard input up to 65 536 bytes. Like the C code
/// (`strlen`), the value ends at its first NUL.
fn value_arg(ctx: &mut Ctx, arg: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
    let mut v = match arg {
        Some(a) => a.to_vec(),
        None => {
            let mut buf = Vec::with_capacity(SD_MAX_VDI_ATTR_VALUE_LEN);
            let limit = u64::try_from(SD_MAX_VDI_ATTR_VALUE_LEN).unwrap_or(u64::MAX);
            match ctx.data_in.take() {
                Some(r) => r.take(limit).read_to_end(&mut buf)?,
                None => std::io::stdin().lock().take(limit).read_to_end(&mut buf)?,
            };
            buf
        }
    };
    let len = c_str(&v).len().min(SD_MAX_VDI_ATTR_VALUE_LEN);
    v.truncate(len);
    Ok(v)
}

/// `vdi setattr [-d] [-x] NAME KEY [VALUE]`.
pub async fn setattr(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let Some(&key) = args.get(1) else {
        sd_err!("Please specify the attribute key");
        return Ok(EXIT_USAGE);
    };
    let delete = ctx.opts.delete_key;
    let value = if delete && args.get(2).is_none() {
        Vec::new()
    } else {
        match value_arg(ctx, args.get(2).copied()) {
            Ok(v) => v,
            Err(e) => {
                sd_err!(
                    "Failed to read attribute value from stdin: {}",
                    strerror(&e)
                );
                return Ok(EXIT_SYSFAIL);
            }
        }
    };
    let mut flags = Flags::default();
    if !delete {
        flags = flags | Flags::CREAT;
    }
    if ctx.opts.exclusive {
        flags = flags | Flags::EXCL;
    }
    if delete {
        flags = flags | Flags::DEL;
    }
    let key_text = text(key);
    match find_attr(ctx, name, key, &value, flags).await {
        Ok(_) => Ok(EXIT_SUCCESS),
        Err(SdResult::VdiExist) => {
            sd_err!("The attribute '{key_text}' already exists");
            Ok(EXIT_EXISTS)
        }
        Err(SdResult::NoObj) => {
            sd_err!("Attribute '{key_text}' not found");
            Ok(EXIT_MISSING)
        }
        Err(SdResult::NoVdi) => {
            sd_err!("VDI not found");
            Ok(EXIT_MISSING)
        }
        Err(r) => {
            sd_err!("Failed to set attribute: {}", r.message());
            Ok(EXIT_FAILURE)
        }
    }
}

/// `vdi getattr NAME KEY`: the value's bytes on stdout, nothing else.
pub async fn getattr(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let Some(&key) = args.get(1) else {
        sd_err!("Please specify the attribute key");
        return Ok(EXIT_USAGE);
    };
    let key_text = text(key);
    let oid = match find_attr(ctx, name, key, &[], Flags::default()).await {
        Ok((oid, _)) => oid,
        Err(SdResult::NoObj) => {
            sd_err!("Attribute '{key_text}' not found");
            return Ok(EXIT_MISSING);
        }
        Err(SdResult::NoVdi) => {
            sd_err!("VDI not found");
            return Ok(EXIT_MISSING);
        }
        Err(r) => {
            sd_err!("Failed to find attribute oid: {}", r.message());
            return Ok(EXIT_MISSING);
        }
    };
    let len = u32::try_from(SD_ATTR_OBJ_SIZE).unwrap_or(u32::MAX);
    let record = match ctx.read_object(oid, len, 0, true).await {
        Ok(b) => b,
        Err(r) => {
            sd_err!("Failed to read attribute oid: {}", r.message());
            return Ok(EXIT_SYSFAIL);
        }
    };
    match VdiAttr::decode(&record) {
        Ok(a) => {
            ctx.out.put_bytes(&a.value);
            Ok(EXIT_SUCCESS)
        }
        Err(e) => {
            sd_err!("Failed to read attribute oid: {e}");
            Ok(EXIT_SYSFAIL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_cut_like_pstrcpy() {
        assert_eq!(field(b"key"), b"key");
        assert_eq!(field(b"a\0b"), b"a");
        assert_eq!(field(&[b'x'; 300]).len(), 255);
    }
}
