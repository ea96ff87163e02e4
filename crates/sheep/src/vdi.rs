//! Building the VDI table (`sd_cluster::VdiTable`) from the inode objects on this node's
//! disk: a restarted cluster's view of the VDIs created before its log began.

use sd_cluster::{VdiEntry, VdiTable};
use sd_proto::inode::InodeHeader;

/// Builds a table from the inode objects in `store` (a node's own view before the cluster
/// log says otherwise).
pub fn load_local(store: &sd_store::Store) -> Result<VdiTable, sd_store::StoreError> {
    let mut table = VdiTable::default();
    for oid in store.list()? {
        if !oid.is_inode() {
            continue;
        }
        let mut buf = vec![0u8; sd_proto::inode::SD_INODE_HEADER_SIZE];
        store.read(oid, 0, &mut buf)?;
        match InodeHeader::decode(&buf) {
            Ok(h) if h.vdi_id == oid.vid().get() => {
                table.insert(oid.vid(), VdiEntry::from_header(&h))
            }
            _ => tracing::warn!(%oid, "ignoring inode object with an inconsistent header"),
        }
    }
    Ok(table)
}
