//! ALTER_VDI_COPY (0xC0) and ALTER_CLUSTER_COPY (0xBF), as in Sheepdog 1.0: replication
//! counts only (copy policy 0). Both are decided in the log, so every member applies them
//! at the same point: `ClusterMsg::AlterVdiCopy` changes the VDI table's count and starts
//! another recovery pass of the epoch, which moves the VDI's objects
//! (`recovery::copies`); `ClusterMsg::AlterClusterCopy` changes the cluster config's
//! default, which every member saves. The answer comes once this node applied the record;
//! the objects move afterwards (`dog node recovery` shows the pass).
//!
//! Only a standalone VDI changes its count (no parent, nothing descended from it), as the
//! C `dog` requires: its objects are its own, so none is left shared with a VDI of another
//! count. `dog` rewrites the inode header's `nr_copies` before sending ALTER_VDI_COPY.

use sd_cluster::ClusterMsg;
use sd_cluster::vdi_fold::valid_copies;
use sd_proto::{RequestHeader, SdResult, Vid};

use crate::error::SheepResult;
use crate::node::Sheep;
use crate::ops::Reply;

/// ALTER_VDI_COPY: `vdi_state.new_vid`'s objects get `vdi_state.copies` replicas.
/// INVALID_PARMS for a copy policy, a count out of range, or a VDI that is erasure coded
/// or not standalone; NO_VDI if there is no such live VDI.
pub(super) async fn vdi_copies(sheep: &Sheep, req: &RequestHeader) -> SheepResult<Reply> {
    let a = req.vdi_state();
    let copies = a.copies;
    if a.copy_policy != 0 || !valid_copies(copies) {
        return Err(SdResult::InvalidParms.into());
    }
    let vid = Vid::nonzero(a.new_vid).ok_or(SdResult::InvalidParms)?;
    let old = {
        let t = sheep.vdis();
        let e = t
            .get(vid)
            .filter(|_| t.is_live(vid))
            .ok_or(SdResult::NoVdi)?;
        if e.copy_policy != 0 || !t.is_standalone(vid) {
            return Err(SdResult::InvalidParms.into());
        }
        e.nr_copies
    };
    if old == copies {
        return Ok(Reply::ok());
    }
    // The fold checks again in log order (a snapshot may come first).
    sheep
        .submit(|token| ClusterMsg::AlterVdiCopy { token, vid, copies })
        .await?;
    tracing::info!(%vid, old, copies, "VDI copies changed; its objects move");
    Ok(Reply::ok())
}

/// ALTER_CLUSTER_COPY: the default copies of VDIs created from now on become
/// `cluster.copies`. INVALID_PARMS for a copy policy, a count out of range, or an erasure
/// coded cluster.
pub(super) async fn cluster_copies(sheep: &Sheep, req: &RequestHeader) -> SheepResult<Reply> {
    let a = req.cluster();
    if a.copy_policy != 0 || !valid_copies(a.copies) {
        return Err(SdResult::InvalidParms.into());
    }
    let old = {
        let sys = sheep.sys();
        if sys.config.copy_policy != 0 {
            return Err(SdResult::InvalidParms.into());
        }
        sys.config.copies
    };
    if old == a.copies {
        return Ok(Reply::ok());
    }
    sheep
        .submit(|token| ClusterMsg::AlterClusterCopy {
            token,
            copies: a.copies,
        })
        .await?;
    // The membership fold applies it to the config, which is saved before this record's
    // answer (`follower`); it ignores it only if the cluster changed meanwhile (a format).
    if sheep.sys().config.copies != a.copies {
        return Err(SdResult::InvalidParms.into());
    }
    tracing::info!(old, copies = a.copies, "cluster default copies changed");
    Ok(Reply::ok())
}
