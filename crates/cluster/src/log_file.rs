//! The local driver's log file (`-c local:PATH`, the file `PATH/log`): every record framed
//! as `u32 length (little-endian) ‖ Record::encode()`, appended whole with one `write`, so a
//! reader sees a frame either whole or cut at its end (the rest arrives later). Pure: the
//! framing, and the reassembly of records from what a reader has read so far; opening,
//! locking, appending and tailing the file are the driver's.
//!
//! **Boundary:** a persisted format, read by later binaries: the framing never changes.

use sd_proto::DecodeError;

use crate::log::Record;

/// Largest record accepted in the log (a frame announcing more is corruption).
pub const MAX_RECORD: usize = 4 << 20;

/// Why a frame cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A record larger than [`MAX_RECORD`] (announced by a frame, or to be appended).
    #[error("log record of {0} bytes, over the {MAX_RECORD}-byte limit")]
    Oversized(usize),
    /// A whole frame whose record does not decode.
    #[error("malformed log record: {0}")]
    Record(#[from] DecodeError),
}

/// The frame of `rec`, to append with one write.
pub fn frame(rec: &Record) -> Result<Vec<u8>, FrameError> {
    let body = rec.encode();
    let len = u32::try_from(body.len())
        .ok()
        .filter(|_| body.len() <= MAX_RECORD)
        .ok_or(FrameError::Oversized(body.len()))?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reassembles records from the bytes of the log as they are read, in order; the start of
/// a frame whose end has not been read yet waits for the next bytes.
#[derive(Debug, Default)]
pub struct Frames {
    pending: Vec<u8>,
}

impl Frames {
    /// Takes the next bytes read from the log and returns the records they complete. After
    /// an error the log is corrupt from that frame on; the reader must stop.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Record>, FrameError> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut used = 0;
        while let Some(head) = self.pending.get(used..used + 4) {
            let mut l = [0u8; 4];
            l.copy_from_slice(head);
            let len = u32::from_le_bytes(l) as usize;
            if len > MAX_RECORD {
                return Err(FrameError::Oversized(len));
            }
            let Some(body) = self.pending.get(used + 4..used + 4 + len) else {
                break;
            };
            out.push(Record::decode(body)?);
            used += 4 + len;
        }
        self.pending.drain(..used);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::log::LogEntry;
    use proptest::prelude::*;
    use sd_proto::Epoch;
    use sd_proto::node::NodeId;

    fn rec(n: u32) -> Record {
        Record {
            time: u64::from(n),
            entry: LogEntry::RecoveryDone {
                nid: NodeId::from_socket("127.0.0.1:7000".parse().unwrap()),
                epoch: Epoch(n),
                pass: 0,
            },
        }
    }

    #[test]
    fn a_frame_is_the_length_then_the_record() {
        let r = rec(3);
        let f = frame(&r).unwrap();
        let body = r.encode();
        assert_eq!(f[..4], u32::try_from(body.len()).unwrap().to_le_bytes());
        assert_eq!(f[4..], body[..]);
    }

    #[test]
    fn oversized_frames_are_refused_before_waiting_for_them() {
        let mut frames = Frames::default();
        let huge = u32::try_from(MAX_RECORD + 1).unwrap().to_le_bytes();
        assert!(matches!(
            frames.push(&huge),
            Err(FrameError::Oversized(n)) if n == MAX_RECORD + 1
        ));
    }

    #[test]
    fn a_whole_frame_that_does_not_decode_is_an_error() {
        let mut frames = Frames::default();
        let mut bad = 3u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0xff; 3]);
        assert!(matches!(frames.push(&bad), Err(FrameError::Record(_))));
    }

    proptest! {
        /// However the log's bytes are cut into reads, the same records come out, in order,
        /// each once, and a frame cut short waits for its rest.
        #[test]
        fn records_survive_any_cut_of_the_reads(
            n in 1u32..12,
            cuts in proptest::collection::vec(0usize..400, 0..20),
        ) {
            let records: Vec<Record> = (0..n).map(rec).collect();
            let log: Vec<u8> = records.iter().flat_map(|r| frame(r).unwrap()).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(log.len())).collect();
            cuts.push(log.len());
            cuts.sort_unstable();
            let mut frames = Frames::default();
            let (mut got, mut at) = (Vec::new(), 0);
            for c in cuts {
                got.extend(frames.push(&log[at..c]).unwrap());
                at = c;
            }
            prop_assert_eq!(got, records);
        }
    }
}
