//! Node state answers: the `recovery_state` of STAT_RECOVERY (0x97, spec §6.2), the
//! sheepdog-rs STAT_WRITEBACK (0xF0) counters and the log level of GET_LOGLEVEL /
//! SET_LOGLEVEL. Encoded by the sheep that answers, decoded by dog and the tests, each in
//! one place.

use crate::DecodeError;
use crate::wire::{Reader, Writer};

/// Size of the STAT_RECOVERY answer (`struct recovery_state`).
pub const RECOVERY_STATE_SIZE: usize = 24;
/// Size of the STAT_WRITEBACK answer: five little-endian u64.
pub const WRITEBACK_STAT_SIZE: usize = 40;

/// The `state` field of `recovery_state`: the phase of the recovery in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryPhase {
    /// 0: listing the objects to recover.
    PrepareList,
    /// 1: recovering objects (what sheepdog-rs always reports).
    #[default]
    RecoverObj,
    /// 2: announcing that this node finished.
    NotifyCompletion,
    /// Any other value.
    Unknown(u32),
}

impl RecoveryPhase {
    /// Wire value.
    pub const fn as_u32(self) -> u32 {
        match self {
            RecoveryPhase::PrepareList => 0,
            RecoveryPhase::RecoverObj => 1,
            RecoveryPhase::NotifyCompletion => 2,
            RecoveryPhase::Unknown(v) => v,
        }
    }

    /// From the wire value.
    pub const fn from_u32(v: u32) -> RecoveryPhase {
        match v {
            0 => RecoveryPhase::PrepareList,
            1 => RecoveryPhase::RecoverObj,
            2 => RecoveryPhase::NotifyCompletion,
            v => RecoveryPhase::Unknown(v),
        }
    }
}

/// The STAT_RECOVERY answer (24 bytes, spec §6.2): u8 in_recovery @0, 3 bytes padding,
/// u32 state @4, u64 nr_finished @8, u64 nr_total @16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryState {
    /// The node is recovering (any non-zero byte on the wire).
    pub in_recovery: bool,
    /// The recovery phase.
    pub phase: RecoveryPhase,
    /// Objects recovered.
    pub nr_finished: u64,
    /// Objects to recover.
    pub nr_total: u64,
}

impl RecoveryState {
    /// Encodes the 24-byte record (padding zero).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(RECOVERY_STATE_SIZE);
        w.u8(u8::from(self.in_recovery))
            .zeros(3)
            .u32(self.phase.as_u32())
            .u64(self.nr_finished)
            .u64(self.nr_total);
        w.buf
    }

    /// Decodes the record from the front of `buf` (bytes after the first 24 are ignored;
    /// the padding is not checked).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let in_recovery = r.u8()? != 0;
        r.skip(3)?;
        Ok(RecoveryState {
            in_recovery,
            phase: RecoveryPhase::from_u32(r.u32()?),
            nr_finished: r.u64()?,
            nr_total: r.u64()?,
        })
    }
}

/// The STAT_WRITEBACK answer (sheepdog-rs extension, 40 bytes): one node's writeback
/// counters, five little-endian u64 in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WritebackStat {
    /// Dirty objects of the VDI asked about.
    pub dirty_objects: u64,
    /// Dirty bytes of the whole node.
    pub dirty_bytes: u64,
    /// FLUSH_PEER requests served, in total.
    pub peer_flushes: u64,
    /// FLUSH_PEER requests served for the VDI asked about.
    pub peer_flushes_vdi: u64,
    /// Copies of the VDI asked about lost to a failed sync and not yet rebuilt.
    pub lost_objects: u64,
}

impl WritebackStat {
    /// Encodes the 40-byte record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(WRITEBACK_STAT_SIZE);
        w.u64(self.dirty_objects)
            .u64(self.dirty_bytes)
            .u64(self.peer_flushes)
            .u64(self.peer_flushes_vdi)
            .u64(self.lost_objects);
        w.buf
    }

    /// Decodes the record from the front of `buf` (bytes after the first 40 are ignored).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(WritebackStat {
            dirty_objects: r.u64()?,
            dirty_bytes: r.u64()?,
            peer_flushes: r.u64()?,
            peer_flushes_vdi: r.u64()?,
            lost_objects: r.u64()?,
        })
    }
}

/// Size of the GET_LOGLEVEL answer and of the SET_LOGLEVEL payload.
pub const LOGLEVEL_SIZE: usize = 4;

/// A log level as GET_LOGLEVEL answers and SET_LOGLEVEL carries it (spec §6.2): an i32,
/// 0 emerg … 7 debug. Not range-checked here: the sheep refuses what it does not know,
/// dog prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogLevel(pub i32);

impl LogLevel {
    /// Encodes the 4-byte little-endian value.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(LOGLEVEL_SIZE);
        w.i32(self.0);
        w.buf
    }

    /// Decodes the value from the front of `buf` (later bytes are ignored).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Ok(LogLevel(Reader::new(buf).i32()?))
    }
}
