//! File names inside `DIR/obj`: derived from an [`Oid`] only, and parsed back.

use std::ffi::OsStr;

use sd_proto::Oid;

/// The object directory below the base directory.
pub(crate) const OBJ_DIR: &str = "obj";

/// Width of an object file name: 16 lowercase hex digits.
const OID_HEX_LEN: usize = 16;

/// The file name of object `oid` (`%016lx`).
pub(crate) fn object_name(oid: Oid) -> String {
    format!("{:016x}", oid.get())
}

/// The name of a temporary file for creating `oid`; `pid` and `seq` keep concurrent
/// creates of the same oid apart.
pub(crate) fn tmp_name(oid: Oid, pid: u32, seq: u64) -> String {
    format!("{:016x}.tmp.{pid}.{seq}", oid.get())
}

/// The name of the partial copy of `oid` (see `partial`).
pub(crate) fn partial_name(oid: Oid) -> String {
    format!("{:016x}.partial", oid.get())
}

/// The oid of a partial copy's file name, else `None`.
pub(crate) fn parse_partial_name(name: &OsStr) -> Option<Oid> {
    let (head, rest) = name.as_encoded_bytes().split_at_checked(OID_HEX_LEN)?;
    if rest != b".partial" {
        return None;
    }
    parse_hex16(head)
}

fn parse_hex16(s: &[u8]) -> Option<Oid> {
    if s.len() != OID_HEX_LEN || !s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let s = std::str::from_utf8(s).ok()?;
    u64::from_str_radix(s, 16).ok().map(Oid::new)
}

/// The oid named by an object file name: exactly 16 lowercase hex digits, else `None`.
pub(crate) fn parse_object_name(name: &OsStr) -> Option<Oid> {
    parse_hex16(name.as_encoded_bytes())
}

/// True for a temporary file of a create: `<oid>.tmp` (left by C sheep) or `<oid>.tmp.*`.
pub(crate) fn is_tmp_name(name: &OsStr) -> bool {
    let Some((head, rest)) = name.as_encoded_bytes().split_at_checked(OID_HEX_LEN) else {
        return false;
    };
    parse_hex16(head).is_some() && (rest == b".tmp" || rest.starts_with(b".tmp."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_round_trip() {
        for raw in [0, 1, 0x807c_2b25_0000_0000, u64::MAX] {
            let oid = Oid::new(raw);
            let name = object_name(oid);
            assert_eq!(name.len(), 16);
            assert_eq!(parse_object_name(OsStr::new(&name)), Some(oid));
            assert!(is_tmp_name(OsStr::new(&tmp_name(oid, 7, 9))));
            assert_eq!(parse_object_name(OsStr::new(&tmp_name(oid, 7, 9))), None);
            assert_eq!(
                parse_partial_name(OsStr::new(&partial_name(oid))),
                Some(oid)
            );
            assert_eq!(parse_object_name(OsStr::new(&partial_name(oid))), None);
            assert!(!is_tmp_name(OsStr::new(&partial_name(oid))));
        }
        assert_eq!(
            object_name(Oid::new(0x807c_2b25_0000_0000)),
            "807c2b2500000000"
        );
    }

    #[test]
    fn junk_is_not_an_object() {
        for junk in [
            "foo",
            "",
            "807C2B2500000000",
            "807c2b250000000",
            "807c2b25000000000",
            "+07c2b2500000000",
            " 07c2b2500000000",
            "807c2b2500000000.tmp",
            "807c2b2500000000_1",
            ".stale",
        ] {
            assert_eq!(parse_object_name(OsStr::new(junk)), None, "{junk:?}");
        }
    }

    #[test]
    fn tmp_names() {
        assert!(is_tmp_name(OsStr::new("807c2b2500000000.tmp")));
        assert!(is_tmp_name(OsStr::new("807c2b2500000000.tmp.x")));
        assert!(!is_tmp_name(OsStr::new("807c2b2500000000.tmpx")));
        assert!(!is_tmp_name(OsStr::new("807c2b2500000000")));
        assert!(!is_tmp_name(OsStr::new("config.tmp")));
        assert!(!is_tmp_name(OsStr::new("xyz")));
    }
}
