//! The VDI attribute object `sheepdog_vdi_attr` (spec §9.4) and the attribute id that
//! GET_VDI_ATTR starts probing from.
//!
//! Layout (66 320 bytes): name[256] @0, tag[256] @256, u64 ctime @512, u32 snap_id @520,
//! u32 value_len @524, key[256] @528, value[65 536] @784.

use crate::DecodeError;
use crate::hash::{FNV1A_64_INIT, fnv1a_64};
use crate::inode::{SD_ATTR_OBJ_SIZE, SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN};
use crate::wire::{Reader, Writer, c_str};

/// Length of the key field (NUL included).
pub const SD_MAX_VDI_ATTR_KEY_LEN: usize = 256;
/// Largest attribute value.
pub const SD_MAX_VDI_ATTR_VALUE_LEN: usize = 65_536;
/// Everything before the value: what identifies an attribute.
pub const SD_ATTR_HEADER_SIZE: usize = SD_ATTR_OBJ_SIZE - SD_MAX_VDI_ATTR_VALUE_LEN;

/// Offset of `ctime`.
pub const ATTR_CTIME_OFFSET: usize = SD_MAX_VDI_LEN + SD_MAX_VDI_TAG_LEN;
/// Offset of `snap_id`.
const SNAP_ID_OFFSET: usize = ATTR_CTIME_OFFSET + 8;
/// Offset of `key`.
const KEY_OFFSET: usize = SNAP_ID_OFFSET + 8;

/// One attribute record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VdiAttr {
    /// VDI name (without NUL padding).
    pub name: Vec<u8>,
    /// Snapshot tag.
    pub tag: Vec<u8>,
    /// The VDI's creation time (the server fills it in).
    pub ctime: u64,
    /// Snapshot id the attribute belongs to (0 = the working VDI).
    pub snap_id: u32,
    /// Key (without NUL padding).
    pub key: Vec<u8>,
    /// Value: `value_len` bytes.
    pub value: Vec<u8>,
}

impl VdiAttr {
    /// Decodes a record from `buf`: at least the 784-byte header, then `value_len` bytes
    /// of value (which must be present and at most 65 536).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let name = c_str(r.bytes(SD_MAX_VDI_LEN)?).to_vec();
        let tag = c_str(r.bytes(SD_MAX_VDI_TAG_LEN)?).to_vec();
        let ctime = r.u64()?;
        let snap_id = r.u32()?;
        let value_len = r.u32()?;
        let key = c_str(r.bytes(SD_MAX_VDI_ATTR_KEY_LEN)?).to_vec();
        let len = usize::try_from(value_len).map_err(|_| DecodeError::Truncated)?;
        if len > SD_MAX_VDI_ATTR_VALUE_LEN {
            return Err(DecodeError::BadLength {
                what: "attribute value_len",
                len,
            });
        }
        let value = r.bytes(len)?.to_vec();
        Ok(VdiAttr {
            name,
            tag,
            ctime,
            snap_id,
            key,
            value,
        })
    }

    /// Decodes only the 784-byte header of `buf` (the value is left empty and
    /// `value_len` is not checked): what the server compares while probing.
    pub fn decode_header(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let name = c_str(r.bytes(SD_MAX_VDI_LEN)?).to_vec();
        let tag = c_str(r.bytes(SD_MAX_VDI_TAG_LEN)?).to_vec();
        let ctime = r.u64()?;
        let snap_id = r.u32()?;
        r.skip(4)?;
        let key = c_str(r.bytes(SD_MAX_VDI_ATTR_KEY_LEN)?).to_vec();
        Ok(VdiAttr {
            name,
            tag,
            ctime,
            snap_id,
            key,
            value: Vec::new(),
        })
    }

    /// Encodes the full 66 320-byte record. Name, tag and key end at their first NUL and
    /// are truncated to their 256-byte fields (a client that wants them NUL-terminated, as
    /// `pstrcpy` does, passes at most 255 bytes); the value is truncated to 65 536 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let value = self
            .value
            .get(..SD_MAX_VDI_ATTR_VALUE_LEN)
            .unwrap_or(&self.value);
        let value_len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        let mut w = Writer::with_capacity(SD_ATTR_OBJ_SIZE);
        w.fixed_str(c_str(&self.name), SD_MAX_VDI_LEN)
            .fixed_str(c_str(&self.tag), SD_MAX_VDI_TAG_LEN)
            .u64(self.ctime)
            .u32(self.snap_id)
            .u32(value_len)
            .fixed_str(c_str(&self.key), SD_MAX_VDI_ATTR_KEY_LEN)
            .bytes(value)
            .zeros(SD_MAX_VDI_ATTR_VALUE_LEN - value.len());
        w.buf
    }

    /// The attribute id of this record (see [`attr_id`]).
    pub fn attr_id(&self) -> u32 {
        // The encoded header always has the full 784 bytes.
        attr_id(&self.encode()).unwrap_or(0)
    }

    /// Whether `other` names the same attribute: name, tag and key compared as C strings,
    /// snapshot ids equal (the server's match rule).
    pub fn same_key(&self, other: &VdiAttr) -> bool {
        self.name == other.name
            && self.tag == other.tag
            && self.snap_id == other.snap_id
            && self.key == other.key
    }
}

/// `hash_vdi_attr`: FNV-1a 64 over the raw fixed-size fields name[256] ‖ tag[256] ‖
/// snap_id (4 bytes LE) ‖ key[256] of an encoded record (padding bytes included), masked to
/// 32 bits. `Truncated` if `record` is shorter than the header.
pub fn attr_id(record: &[u8]) -> Result<u32, DecodeError> {
    let field = |at: usize, len: usize| record.get(at..at + len).ok_or(DecodeError::Truncated);
    let mut h = fnv1a_64(field(0, SD_MAX_VDI_LEN)?, FNV1A_64_INIT);
    h = fnv1a_64(field(SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN)?, h);
    h = fnv1a_64(field(SNAP_ID_OFFSET, 4)?, h);
    h = fnv1a_64(field(KEY_OFFSET, SD_MAX_VDI_ATTR_KEY_LEN)?, h);
    Ok(u32::try_from(h & 0xFFFF_FFFF).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_spec() {
        assert_eq!(SD_ATTR_HEADER_SIZE, 784);
        assert_eq!(ATTR_CTIME_OFFSET, 512);
        assert_eq!(KEY_OFFSET, 528);
        let a = VdiAttr {
            name: b"test".to_vec(),
            tag: b"snap".to_vec(),
            ctime: 0x0102_0304_0506_0708,
            snap_id: 7,
            key: b"key1".to_vec(),
            value: b"value1".to_vec(),
        };
        let b = a.encode();
        assert_eq!(b.len(), SD_ATTR_OBJ_SIZE);
        assert_eq!(&b[..5], b"test\0");
        assert_eq!(&b[256..261], b"snap\0");
        assert_eq!(b[512..520], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(b[520..524], 7u32.to_le_bytes());
        assert_eq!(b[524..528], 6u32.to_le_bytes());
        assert_eq!(&b[528..533], b"key1\0");
        assert_eq!(&b[784..791], b"value1\0");
        assert_eq!(VdiAttr::decode(&b).unwrap(), a);
        // A header-only record (older dogs) decodes with an empty value.
        let mut head = b[..SD_ATTR_HEADER_SIZE].to_vec();
        head[524..528].copy_from_slice(&0u32.to_le_bytes());
        assert!(VdiAttr::decode(&head).unwrap().value.is_empty());
        assert_eq!(VdiAttr::decode(&b[..783]), Err(DecodeError::Truncated));
    }

    #[test]
    fn attr_id_is_fnv_over_the_fixed_fields() {
        let a = VdiAttr {
            name: b"test".to_vec(),
            key: b"k".to_vec(),
            ..VdiAttr::default()
        };
        // Computed independently: FNV-1a 64 over the 772 bytes, low 32 bits.
        let mut bytes = vec![0u8; 772];
        bytes[..4].copy_from_slice(b"test");
        bytes[516] = b'k';
        let want = u32::try_from(fnv1a_64(&bytes, FNV1A_64_INIT) & 0xFFFF_FFFF).unwrap();
        assert_eq!(a.attr_id(), want);
        // The value, value_len and ctime do not take part.
        let b = VdiAttr {
            ctime: 5,
            value: b"x".to_vec(),
            ..a.clone()
        };
        assert_eq!(a.attr_id(), b.attr_id());
        let c = VdiAttr {
            snap_id: 1,
            ..a.clone()
        };
        assert_ne!(a.attr_id(), c.attr_id());
        assert_eq!(attr_id(&[0u8; 100]), Err(DecodeError::Truncated));
    }

    #[test]
    fn oversized_value_len_is_refused() {
        let mut b = VdiAttr::default().encode();
        b[524..528].copy_from_slice(&65_537u32.to_le_bytes());
        assert!(matches!(
            VdiAttr::decode(&b),
            Err(DecodeError::BadLength { .. })
        ));
        // The header alone still decodes (the server compares keys of any stored record).
        assert_eq!(VdiAttr::decode_header(&b), Ok(VdiAttr::default()));
    }
}
