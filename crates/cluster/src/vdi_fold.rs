//! The VDI fold: [`apply`] changes a [`VdiTable`] by one [`ClusterMsg`] of the log. Every
//! member applies the same records in the same order to identical tables, so they agree on
//! every vid allocated, every snapshot marked, every lock held, and on each record's
//! answer (which only the submitter delivers).

use sd_proto::node::NodeId;
use sd_proto::{SdResult, Vid};

use crate::vdi_log::ClusterMsg;
use crate::vdi_table::{LockOwner, VdiEntry, VdiTable};

/// What applying a [`ClusterMsg`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The VDI created, deleted, settled, locked or unlocked (vid 0 for a barrier).
    pub vid: Vid,
    /// When the record was appended (Unix seconds).
    pub time: u64,
}

/// Applies `msg`, appended by `from` at `time` (Unix seconds, from the log), to `table`
/// exactly as every other member does. An error is the record's answer (the table is then
/// unchanged): NO_VDI, VDI_EXIST, FULL_VDI, BASE_VDI_READ, VDI_LOCKED or INVALID_PARMS.
///
/// `AlterClusterCopy` changes the cluster config, not the table ([`crate::Membership`]
/// folds it); here it is only answered: INVALID_PARMS for a count out of range, which
/// the membership fold ignores alike.
pub fn apply(
    table: &mut VdiTable,
    msg: &ClusterMsg,
    from: NodeId,
    time: u64,
) -> Result<Applied, SdResult> {
    match msg {
        ClusterMsg::NewVdi {
            name,
            size,
            copies,
            shift,
            copy_policy,
            base,
            snapshot_of,
            tag,
            ..
        } => {
            if base.is_some_and(|b| !table.is_live(b)) {
                return Err(SdResult::BaseVdiRead);
            }
            let (vid, snap_id) = match snapshot_of {
                // A snapshot: the working VDI it names must still be the working VDI.
                Some(w) => {
                    match table.lookup(name, b"", 0) {
                        Ok(f) if f.vid == *w => {}
                        _ => return Err(SdResult::NoVdi),
                    }
                    let vid = table.free_vid(name).ok_or(SdResult::FullVdi)?;
                    let snap_id = table.get(*w).map_or(1, |e| e.snap_id.saturating_add(1));
                    table.mark_snapshot(*w, tag);
                    (vid, snap_id)
                }
                None => {
                    let miss = match table.lookup(name, b"", 0) {
                        Ok(_) => return Err(SdResult::VdiExist),
                        Err(m) => m,
                    };
                    match (miss.result, miss.free) {
                        (SdResult::NoVdi, Some(v)) => (v, miss.next_snap_id),
                        (SdResult::NoVdi | SdResult::FullVdi, _) => return Err(SdResult::FullVdi),
                        (other, _) => return Err(other),
                    }
                }
            };
            table.insert(
                vid,
                VdiEntry {
                    name: name.clone(),
                    tag: Vec::new(),
                    snap_id,
                    snapshot: false,
                    nr_copies: *copies,
                    copy_policy: *copy_policy,
                    block_size_shift: *shift,
                    vdi_size: *size,
                    parent: *base,
                    create_time: sd_proto::cluster::sd_time(time, 0),
                    snapshot_of: *snapshot_of,
                },
            );
            table.mark_unsettled(vid, from);
            if let Some(w) = snapshot_of {
                table.move_lock(*w, vid);
            }
            Ok(Applied { vid, time })
        }
        ClusterMsg::DelVdi { vid, .. } => {
            if !table.is_live(*vid) {
                return Err(SdResult::NoVdi);
            }
            if table.lock_owner(*vid).is_some() {
                // A writer holds it: deleting would pull the disk from under it.
                return Err(SdResult::VdiLocked);
            }
            table.mark_deleted(*vid);
            table.mark_unsettled(*vid, from);
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Settled { vid, .. } => {
            table.settle(*vid);
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Lock { vid, holder, .. } => {
            if !table.is_live(*vid) {
                return Err(SdResult::NoVdi);
            }
            table.lock(
                *vid,
                LockOwner {
                    node: from,
                    holder: *holder,
                },
            )?;
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Unlock { vid, holder, .. } => {
            let owner = (*holder != 0).then_some(LockOwner {
                node: from,
                holder: *holder,
            });
            table.unlock(*vid, owner);
            Ok(Applied { vid: *vid, time })
        }
        ClusterMsg::Barrier { .. } => Ok(Applied {
            vid: Vid::default(),
            time,
        }),
        ClusterMsg::AlterClusterCopy { copies, .. } => {
            if !valid_copies(*copies) {
                return Err(SdResult::InvalidParms);
            }
            Ok(Applied {
                vid: Vid::default(),
                time,
            })
        }
        ClusterMsg::AlterVdiCopy { vid, copies, .. } => {
            if !valid_copies(*copies) {
                return Err(SdResult::InvalidParms);
            }
            let Some(e) = table.get(*vid).filter(|_| table.is_live(*vid)) else {
                return Err(SdResult::NoVdi);
            };
            // Replication only; and a VDI sharing objects with another would leave them
            // with the other's count (as Sheepdog, only a standalone VDI may change).
            if e.copy_policy != 0 || !table.is_standalone(*vid) {
                return Err(SdResult::InvalidParms);
            }
            table.set_copies(*vid, *copies);
            Ok(Applied { vid: *vid, time })
        }
    }
}

/// A replication count a copy change may set: 1 to `SD_MAX_COPIES`.
pub fn valid_copies(copies: u8) -> bool {
    (1..=sd_proto::cluster::SD_MAX_COPIES).contains(&copies)
}
