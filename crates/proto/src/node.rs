//! Node identities and the 80-byte `sd_node` record (spec §11.1).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::{Reader, Writer};
use crate::{DecodeError, hash};

/// Size of an `sd_node` on the wire and in epoch files.
pub const SD_NODE_SIZE: usize = 80;
/// Most nodes a cluster can have (and the node-list buffer `dog` offers).
pub const SD_MAX_NODES: usize = 6144;
/// Default number of vnodes per node.
pub const SD_DEFAULT_VNODES: u16 = 128;

/// A node's address: 16 address bytes (IPv4 as 12 zero bytes + 4) and a port.
/// Ordered as Sheepdog orders nodes: address bytes, then port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId {
    /// Address bytes.
    pub addr: [u8; 16],
    /// TCP port.
    pub port: u16,
}

impl NodeId {
    /// From a socket address (IPv4 stored IPv4-compatible, not mapped).
    pub fn from_socket(sa: SocketAddr) -> Self {
        let addr = match sa.ip() {
            IpAddr::V4(v4) => {
                let mut a = [0u8; 16];
                let [_, _, _, _, _, _, _, _, _, _, _, _, a12, a13, a14, a15] = &mut a;
                let [b0, b1, b2, b3] = v4.octets();
                (*a12, *a13, *a14, *a15) = (b0, b1, b2, b3);
                a
            }
            IpAddr::V6(v6) => v6.octets(),
        };
        NodeId {
            addr,
            port: sa.port(),
        }
    }

    /// The IP address, IPv4 when bytes 0..12 are zero and byte 12 is not.
    pub fn ip(&self) -> IpAddr {
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            a8,
            a9,
            a10,
            a11,
            a12,
            a13,
            a14,
            a15,
        ] = self.addr;
        let v4 = [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] == [0; 12] && a12 != 0;
        if v4 {
            IpAddr::V4(Ipv4Addr::new(a12, a13, a14, a15))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        }
    }

    /// As a socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }

    /// The default zone: address bytes 12..16 read as a little-endian u32.
    pub fn default_zone(&self) -> u32 {
        let [.., a12, a13, a14, a15] = self.addr;
        u32::from_le_bytes([a12, a13, a14, a15])
    }

    /// The seed of this node's vnode chain: `sd_hash(addr ‖ port)`.
    pub fn vnode_seed(&self) -> u64 {
        let mut b = [0u8; 18];
        for (o, i) in b
            .iter_mut()
            .zip(self.addr.iter().chain(&self.port.to_le_bytes()))
        {
            *o = *i;
        }
        hash::sd_hash(&b)
    }
}

impl fmt::Display for NodeId {
    /// `ip:port`, IPv6 without brackets as `dog` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip(), self.port)
    }
}

/// A cluster member as carried in node lists and epoch logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SdNode {
    /// Address and port.
    pub nid: NodeId,
    /// Separate I/O address, zero when unused.
    pub io_addr: [u8; 16],
    /// Separate I/O port.
    pub io_port: u16,
    /// Vnodes (0 = gateway only).
    pub nr_vnodes: u16,
    /// Failure zone.
    pub zone: u32,
    /// Disk space contributed.
    pub space: u64,
}

impl SdNode {
    /// Decodes 80 bytes (the leading rb_node pointers are ignored).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        r.skip(24)?;
        let addr = r.array()?;
        let port = r.u16()?;
        let io_addr = r.array()?;
        let io_port = r.u16()?;
        r.skip(4)?;
        let nr_vnodes = r.u16()?;
        r.skip(2)?;
        let zone = r.u32()?;
        let space = r.u64()?;
        Ok(SdNode {
            nid: NodeId { addr, port },
            io_addr,
            io_port,
            nr_vnodes,
            zone,
            space,
        })
    }

    /// Appends the 80-byte encoding (rb_node zeroed).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer::with_capacity(SD_NODE_SIZE);
        w.zeros(24)
            .bytes(&self.nid.addr)
            .u16(self.nid.port)
            .bytes(&self.io_addr)
            .u16(self.io_port)
            .zeros(4)
            .u16(self.nr_vnodes)
            .zeros(2)
            .u32(self.zone)
            .u64(self.space);
        out.extend_from_slice(&w.buf);
    }

    /// Decodes a packed array of `n` nodes.
    pub fn decode_list(buf: &[u8], n: usize) -> Result<Vec<SdNode>, DecodeError> {
        let mut out = Vec::with_capacity(n.min(SD_MAX_NODES));
        for i in 0..n {
            let start = i.checked_mul(SD_NODE_SIZE).ok_or(DecodeError::Truncated)?;
            let end = start
                .checked_add(SD_NODE_SIZE)
                .ok_or(DecodeError::Truncated)?;
            let chunk = buf.get(start..end).ok_or(DecodeError::Truncated)?;
            out.push(SdNode::decode(chunk)?);
        }
        Ok(out)
    }

    /// Encodes a packed array.
    pub fn encode_list(nodes: &[SdNode]) -> Vec<u8> {
        let mut out = Vec::with_capacity(nodes.len() * SD_NODE_SIZE);
        for n in nodes {
            n.encode_into(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnode_seed_matches_spec() {
        let n = NodeId::from_socket("127.0.0.1:7000".parse().unwrap());
        assert_eq!(n.vnode_seed(), 0x9cb3_d6dd_0a4c_0f9f);
        let p1 = hash::sd_hash_next(n.vnode_seed());
        assert_eq!(p1, 0x3af2_cba6_e538_cdf3);
        assert_eq!(hash::sd_hash_next(p1), 0xfd38_432f_d111_924b);
        assert_eq!(n.default_zone(), 16_777_343);
        assert_eq!(n.to_string(), "127.0.0.1:7000");
    }
}
