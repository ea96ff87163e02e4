//! The 1428-byte `vdi_state` record of GET_VDI_COPIES (spec §9.6): a VDI's redundancy and
//! lock state, as `dog vdi lock list` reads it.

use crate::node::NodeId;
use crate::wire::{Reader, Writer};
use crate::{DecodeError, Vid};

/// Size of one record.
pub const VDI_STATE_SIZE: usize = 1428;
/// Participant slots of a record (shared locks, unused here).
const NR_PARTICIPANTS: usize = 31;
/// Size of a `node_id` inside the record.
const NODE_ID_SIZE: usize = 40;

/// `lock_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds the VDI.
    Unlocked,
    /// One writer holds it.
    Locked,
    /// Shared (iSCSI multipath; not used by sheepdog-rs).
    Shared,
}

impl LockState {
    fn to_u32(self) -> u32 {
        match self {
            LockState::Unlocked => 1,
            LockState::Locked => 2,
            LockState::Shared => 3,
        }
    }

    fn from_u32(v: u32) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(LockState::Unlocked),
            2 => Ok(LockState::Locked),
            3 => Ok(LockState::Shared),
            other => Err(DecodeError::BadLength {
                what: "lock_state",
                len: usize::try_from(other).unwrap_or(usize::MAX),
            }),
        }
    }
}

/// One `vdi_state` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiState {
    /// The VDI.
    pub vid: Vid,
    /// Redundancy.
    pub nr_copies: u8,
    /// A snapshot.
    pub snapshot: bool,
    /// Deleted.
    pub deleted: bool,
    /// Copy policy.
    pub copy_policy: u8,
    /// log2 of the object size.
    pub block_size_shift: u8,
    /// Parent vid (0: none).
    pub parent_vid: u32,
    /// Lock state.
    pub lock_state: LockState,
    /// The node holding the lock (zero when unlocked).
    pub lock_owner: NodeId,
}

impl VdiState {
    /// The wire bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer::with_capacity(VDI_STATE_SIZE);
        w.u32(self.vid.get())
            .u8(self.nr_copies)
            .u8(u8::from(self.snapshot))
            .u8(u8::from(self.deleted))
            .u8(self.copy_policy)
            .u8(self.block_size_shift)
            .zeros(3)
            .u32(self.parent_vid)
            .u32(self.lock_state.to_u32())
            .bytes(&self.lock_owner.addr)
            .u16(self.lock_owner.port)
            .zeros(NODE_ID_SIZE - 18)
            .u32(0)
            .zeros(4 * NR_PARTICIPANTS + NODE_ID_SIZE * NR_PARTICIPANTS);
        debug_assert_eq!(w.buf.len(), VDI_STATE_SIZE);
        out.extend_from_slice(&w.buf);
    }

    /// Decodes one record.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let raw = r.u32()?;
        let vid = Vid::new(raw).ok_or(DecodeError::BadLength {
            what: "vid",
            len: usize::try_from(raw).unwrap_or(usize::MAX),
        })?;
        let nr_copies = r.u8()?;
        let snapshot = r.u8()? != 0;
        let deleted = r.u8()? != 0;
        let copy_policy = r.u8()?;
        let block_size_shift = r.u8()?;
        r.skip(3)?;
        let parent_vid = r.u32()?;
        let lock_state = LockState::from_u32(r.u32()?)?;
        let addr = r.array()?;
        let port = r.u16()?;
        r.skip(VDI_STATE_SIZE - 38)?;
        Ok(VdiState {
            vid,
            nr_copies,
            snapshot,
            deleted,
            copy_policy,
            block_size_shift,
            parent_vid,
            lock_state,
            lock_owner: NodeId { addr, port },
        })
    }

    /// Decodes every whole record of `buf`.
    pub fn decode_all(buf: &[u8]) -> Result<Vec<Self>, DecodeError> {
        buf.chunks(VDI_STATE_SIZE)
            .filter(|c| c.len() == VDI_STATE_SIZE)
            .map(VdiState::decode)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(vid in 0u32..(1 << 24), copies: u8, snap: bool, del: bool,
                       shift: u8, parent: u32, st in 1u32..=3, addr: [u8; 16], port: u16) {
            let s = VdiState {
                vid: Vid::new(vid).unwrap(),
                nr_copies: copies,
                snapshot: snap,
                deleted: del,
                copy_policy: 0,
                block_size_shift: shift,
                parent_vid: parent,
                lock_state: LockState::from_u32(st).unwrap(),
                lock_owner: NodeId { addr, port },
            };
            let mut b = Vec::new();
            s.encode_into(&mut b);
            prop_assert_eq!(b.len(), VDI_STATE_SIZE);
            prop_assert_eq!(&b[16..20], &st.to_le_bytes()[..]);
            prop_assert_eq!(VdiState::decode(&b).unwrap(), s);
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = VdiState::decode_all(&b);
        }
    }
}
