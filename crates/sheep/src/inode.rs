//! Reading inode objects through the gateway: the header, the data index, and the bytes of
//! a fresh inode. The layer that VDI work (`volume`, `reclaim`, `reconcile`) and the NBD
//! export read VDIs through.

use bytes::Bytes;
use sd_proto::inode::{
    InodeHeader, SD_INODE_HEADER_SIZE, SD_INODE_SIZE, data_index_offset, decode_index,
};
use sd_proto::{SdResult, Vid};

use crate::error::{SheepError, SheepResult};
use crate::gateway;
use crate::node::Sheep;

/// Reads the header of `vid`'s inode.
pub async fn read_header(sheep: &Sheep, vid: Vid) -> SheepResult<InodeHeader> {
    let copies = sheep.copies_of(vid.inode_oid(), 0);
    let len = u32::try_from(SD_INODE_HEADER_SIZE)
        .map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let head = gateway::read(sheep, vid.inode_oid(), 0, len, copies).await?;
    InodeHeader::decode(&head).map_err(|_| SheepError::Result(SdResult::VdiRead))
}

/// Reads the first `n` entries of `vid`'s `data_vdi_id[]`.
pub async fn read_index(sheep: &Sheep, vid: Vid, n: u64) -> SheepResult<Vec<u32>> {
    let n = n.min(sd_proto::inode::SD_INODE_DATA_INDEX as u64);
    if n == 0 {
        return Ok(Vec::new());
    }
    let copies = sheep.copies_of(vid.inode_oid(), 0);
    let len = u32::try_from(n * 4).map_err(|_| SheepError::Result(SdResult::InvalidParms))?;
    let raw = gateway::read(sheep, vid.inode_oid(), data_index_offset(0), len, copies).await?;
    Ok(decode_index(&raw))
}

/// The header and index bytes of an inode, trimmed after the last allocated entry (the
/// inode object is sparse: the rest reads as zeros).
pub fn inode_bytes(header: &InodeHeader, index: &[u32]) -> Bytes {
    let used = index.iter().rposition(|e| *e != 0).map_or(0, |i| i + 1);
    let mut out = header.encode();
    out.resize(SD_INODE_HEADER_SIZE, 0);
    out.reserve(used * 4);
    for e in index.iter().take(used) {
        out.extend_from_slice(&e.to_le_bytes());
    }
    debug_assert!(out.len() <= SD_INODE_SIZE);
    Bytes::from(out)
}
