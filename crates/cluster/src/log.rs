//! Entries of the cluster's ordered log and their byte encoding. Both drivers store and
//! deliver these bytes; every member folds the same sequence (see [`crate::Membership`]).

use sd_proto::cluster::{SD_CONFIG_SIZE, SheepdogConfig};
use sd_proto::node::{NodeId, SD_MAX_NODES, SD_NODE_SIZE, SdNode};
use sd_proto::{DecodeError, Epoch, Reader};

/// Most bytes a notification may carry.
pub const MAX_NOTIFY: usize = 64 << 10;

/// What a (re)joining node brings from its own disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Its cluster config (ctime 0: never formatted).
    pub config: SheepdogConfig,
    /// Its latest epoch.
    pub epoch: Epoch,
    /// Members of that epoch.
    pub members: Vec<SdNode>,
}

/// One entry of the ordered log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A node joined (or restarted).
    Join {
        /// The node.
        node: SdNode,
        /// A number unique to this run of the node's process, so it recognises its own
        /// join when replaying the log.
        incarnation: u64,
        /// Its persisted state.
        saved: Saved,
    },
    /// A node left or was found dead. Ignored if it is not a member.
    Leave {
        /// The node.
        nid: NodeId,
    },
    /// The cluster was formatted.
    Format {
        /// The new config.
        config: SheepdogConfig,
    },
    /// The cluster shuts down.
    Shutdown,
    /// `nid` finished recovering `epoch`, in the epoch's recovery pass `pass`.
    RecoveryDone {
        /// The node.
        nid: NodeId,
        /// The epoch it recovered.
        epoch: Epoch,
        /// Which recovery pass of the epoch: 0 for the pass the epoch began with, `n` after
        /// the epoch's `n`-th copy change (`Membership::pass`). Encoded as kind 5 when 0
        /// (the layout binaries before copy changes wrote), else as kind 7.
        pass: u32,
    },
    /// An opaque cluster-wide notification from `from` (VDI operations, locks).
    Notify {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: Vec<u8>,
    },
}

/// A log entry with its position and the time it was appended (so every member derives
/// identical epoch timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unix seconds when appended.
    pub time: u64,
    /// The entry.
    pub entry: LogEntry,
}

fn put_nid(out: &mut Vec<u8>, nid: &NodeId) {
    out.extend_from_slice(&nid.addr);
    out.extend_from_slice(&nid.port.to_le_bytes());
}

fn put_nodes(out: &mut Vec<u8>, nodes: &[SdNode]) {
    let n = u32::try_from(nodes.len().min(SD_MAX_NODES)).unwrap_or(0);
    out.extend_from_slice(&n.to_le_bytes());
    for node in nodes.iter().take(SD_MAX_NODES) {
        node.encode_into(out);
    }
}

impl Record {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.time.to_le_bytes());
        match &self.entry {
            LogEntry::Join {
                node,
                incarnation,
                saved,
            } => {
                out.push(1);
                node.encode_into(&mut out);
                out.extend_from_slice(&incarnation.to_le_bytes());
                out.extend_from_slice(&saved.config.encode());
                out.extend_from_slice(&saved.epoch.get().to_le_bytes());
                put_nodes(&mut out, &saved.members);
            }
            LogEntry::Leave { nid } => {
                out.push(2);
                put_nid(&mut out, nid);
            }
            LogEntry::Format { config } => {
                out.push(3);
                out.extend_from_slice(&config.encode());
            }
            LogEntry::Shutdown => out.push(4),
            LogEntry::RecoveryDone { nid, epoch, pass } => {
                out.push(if *pass == 0 { 5 } else { 7 });
                put_nid(&mut out, nid);
                out.extend_from_slice(&epoch.get().to_le_bytes());
                if *pass != 0 {
                    out.extend_from_slice(&pass.to_le_bytes());
                }
            }
            LogEntry::Notify { from, msg } => {
                out.push(6);
                put_nid(&mut out, from);
                let len = u32::try_from(msg.len().min(MAX_NOTIFY)).unwrap_or(0);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(msg.get(..msg.len().min(MAX_NOTIFY)).unwrap_or_default());
            }
        }
        out
    }

    /// Decodes one record occupying all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader::new(buf);
        let time = r.u64()?;
        let entry = match r.u8()? {
            1 => {
                let node = SdNode::decode(r.bytes(SD_NODE_SIZE)?)?;
                let incarnation = r.u64()?;
                let config = SheepdogConfig::decode(r.bytes(SD_CONFIG_SIZE)?)?;
                let epoch = Epoch(r.u32()?);
                let members = nodes(&mut r)?;
                LogEntry::Join {
                    node,
                    incarnation,
                    saved: Saved {
                        config,
                        epoch,
                        members,
                    },
                }
            }
            2 => LogEntry::Leave { nid: nid(&mut r)? },
            3 => LogEntry::Format {
                config: SheepdogConfig::decode(r.bytes(SD_CONFIG_SIZE)?)?,
            },
            4 => LogEntry::Shutdown,
            5 => LogEntry::RecoveryDone {
                nid: nid(&mut r)?,
                epoch: Epoch(r.u32()?),
                pass: 0,
            },
            7 => LogEntry::RecoveryDone {
                nid: nid(&mut r)?,
                epoch: Epoch(r.u32()?),
                pass: r.u32()?,
            },
            6 => {
                let from = nid(&mut r)?;
                let len = usize::try_from(r.u32()?).map_err(|_| DecodeError::Truncated)?;
                if len > MAX_NOTIFY {
                    return Err(DecodeError::PayloadTooLarge {
                        len,
                        max: MAX_NOTIFY,
                    });
                }
                LogEntry::Notify {
                    from,
                    msg: r.bytes(len)?.to_vec(),
                }
            }
            k => {
                return Err(DecodeError::BadLength {
                    what: "log entry kind",
                    len: usize::from(k),
                });
            }
        };
        if !r.is_empty() {
            return Err(DecodeError::BadLength {
                what: "trailing log bytes",
                len: r.remaining(),
            });
        }
        Ok(Record { time, entry })
    }
}

fn nid(r: &mut Reader<'_>) -> Result<NodeId, DecodeError> {
    let addr = r.array()?;
    let port = r.u16()?;
    Ok(NodeId { addr, port })
}

fn nodes(r: &mut Reader<'_>) -> Result<Vec<SdNode>, DecodeError> {
    let n = usize::try_from(r.u32()?).map_err(|_| DecodeError::Truncated)?;
    if n > SD_MAX_NODES {
        return Err(DecodeError::BadLength {
            what: "log node count",
            len: n,
        });
    }
    let bytes = r.bytes(n * SD_NODE_SIZE)?;
    SdNode::decode_list(bytes, n)
}
