//! `dog vdi resize NAME SIZE` (dog-cli.md §7): grows a VDI by rewriting the 4664-byte
//! inode header with the new `vdi_size`. Shrinking is refused, as in Sheepdog 1.0.

use sd_client::WriteOpts;
use sd_proto::Flags;
use sd_proto::inode::{InodeHeader, SD_INODE_HEADER_SIZE, SD_MAX_VDI_SIZE};

use crate::ctx::{Ctx, WriteKind};
use crate::exit::{CmdResult, EXIT_FAILURE, EXIT_SUCCESS, EXIT_USAGE};
use crate::sd_err;
use crate::vdi::{object_size, size_arg};

/// Indexes of a normal (non-hyper) inode.
const OLD_MAX_DATA_OBJS: u64 = 1 << 20;
/// Offset of `vdi_size` in the inode header.
const VDI_SIZE_OFFSET: usize = 536;

/// Why a new size is refused: the message, and the exit code is always 64.
pub fn check_new_size(hdr: &InodeHeader, new_size: u64) -> Result<(), String> {
    if hdr.store_policy == 0 {
        let max = object_size(hdr.block_size_shift)
            .unwrap_or(0)
            .saturating_mul(OLD_MAX_DATA_OBJS);
        if new_size > max {
            return Err(format!(
                "New VDI size is too large. This volume's max size is {max}"
            ));
        }
    } else if new_size > SD_MAX_VDI_SIZE {
        // (Sic: Sheepdog's message lacks the full stop here.)
        return Err(format!(
            "New VDI size is too large This volume's max size is {SD_MAX_VDI_SIZE}"
        ));
    }
    if new_size < hdr.vdi_size {
        return Err("Shrinking VDIs is not implemented".into());
    }
    Ok(())
}

/// `vdi resize NAME SIZE`.
pub async fn resize(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(&name) = args.first() else {
        return Ok(EXIT_USAGE);
    };
    let Some(size_text) = args.get(1) else {
        sd_err!("Please specify the new size for the VDI");
        return Ok(EXIT_USAGE);
    };
    let Some(new_size) = size_arg(size_text) else {
        return Ok(EXIT_USAGE);
    };
    let len = u32::try_from(SD_INODE_HEADER_SIZE).unwrap_or(u32::MAX);
    let (vid, head) = match ctx.read_vdi_obj(name, 0, b"", len).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Ok(hdr) = InodeHeader::decode(&head) else {
        sd_err!("Failed to read a vdi {}", crate::format::text(name));
        return Ok(EXIT_FAILURE);
    };
    if let Err(msg) = check_new_size(&hdr, new_size) {
        sd_err!("{msg}");
        return Ok(EXIT_USAGE);
    }
    // The header as read, with only the size changed.
    let mut head = head.to_vec();
    head.resize(SD_INODE_HEADER_SIZE, 0);
    if let Some(f) = head.get_mut(VDI_SIZE_OFFSET..VDI_SIZE_OFFSET + 8) {
        f.copy_from_slice(&new_size.to_le_bytes());
    }
    let opts = WriteOpts {
        copies: hdr.nr_copies,
        copy_policy: hdr.copy_policy,
        flags: Flags::DIRECT,
    };
    if ctx
        .write_object(WriteKind::Overwrite, vid.inode_oid(), None, 0, &head, opts)
        .await
        .is_err()
    {
        sd_err!("Failed to update an inode header");
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_checks_follow_sheepdog() {
        let hdr = InodeHeader {
            vdi_size: 100 << 20,
            block_size_shift: 22,
            ..InodeHeader::default()
        };
        assert_eq!(check_new_size(&hdr, 200 << 20), Ok(()));
        assert_eq!(check_new_size(&hdr, 100 << 20), Ok(()));
        assert_eq!(
            check_new_size(&hdr, 50 << 20),
            Err("Shrinking VDIs is not implemented".into())
        );
        assert_eq!(check_new_size(&hdr, 4 << 40), Ok(()));
        assert_eq!(
            check_new_size(&hdr, (4 << 40) + 1),
            Err("New VDI size is too large. This volume's max size is 4398046511104".into())
        );
        let small = InodeHeader {
            block_size_shift: 20,
            ..hdr.clone()
        };
        assert!(check_new_size(&small, 2 << 40).is_err());
        let hyper = InodeHeader {
            store_policy: 1,
            ..hdr
        };
        assert_eq!(check_new_size(&hyper, 1 << 50), Ok(()));
        assert!(check_new_size(&hyper, SD_MAX_VDI_SIZE + 1).is_err());
    }
}
