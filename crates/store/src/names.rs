//! File names inside `DIR/obj`: derived from an [`Oid`] (and a strip index) only, and
//! parsed back.

use std::ffi::OsStr;

use sd_proto::Oid;

use crate::strip::StripId;

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

/// The file name of strip `id` (`%016lx_%d`, as Sheepdog names erasure-coded strips).
pub(crate) fn strip_name(id: StripId) -> String {
    format!("{:016x}_{}", id.oid.get(), id.index)
}

/// The file name of strip `id`'s log (see `strip`).
pub(crate) fn strip_log_name(id: StripId) -> String {
    format!("{:016x}_{}.log", id.oid.get(), id.index)
}

/// The name of a temporary file for creating strip `id` (`log`: its log).
pub(crate) fn strip_tmp_name(id: StripId, log: bool, pid: u32, seq: u64) -> String {
    let what = if log { ".log" } else { "" };
    format!("{:016x}_{}{what}.tmp.{pid}.{seq}", id.oid.get(), id.index)
}

/// Splits `<oid>_<index>` off the front of `name`: the strip and the rest of the name.
fn split_strip(name: &[u8]) -> Option<(StripId, &[u8])> {
    let (head, rest) = name.split_at_checked(OID_HEX_LEN)?;
    let oid = parse_hex16(head)?;
    let rest = rest.strip_prefix(b"_")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, tail) = rest.split_at_checked(digits)?;
    // Canonical decimal only ("07" is not strip 7), so a name maps to one strip.
    if num.is_empty() || num.len() > 2 || (num.len() > 1 && num.first() == Some(&b'0')) {
        return None;
    }
    let index: u8 = std::str::from_utf8(num).ok()?.parse().ok()?;
    Some((StripId::new(oid, index)?, tail))
}

/// The strip named by a strip file name (`<oid>_<index>`), else `None`.
pub(crate) fn parse_strip_name(name: &OsStr) -> Option<StripId> {
    match split_strip(name.as_encoded_bytes())? {
        (id, b"") => Some(id),
        _ => None,
    }
}

/// The strip whose log this file name is (`<oid>_<index>.log`), else `None`.
pub(crate) fn parse_strip_log_name(name: &OsStr) -> Option<StripId> {
    match split_strip(name.as_encoded_bytes())? {
        (id, b".log") => Some(id),
        _ => None,
    }
}

/// True for a temporary file of a create: `<oid>.tmp` (left by C sheep) or `<oid>.tmp.*`,
/// and the same after a strip's `<oid>_<index>` or `<oid>_<index>.log`.
pub(crate) fn is_tmp_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    let rest = match split_strip(bytes) {
        Some((_, tail)) => tail.strip_prefix(b".log").unwrap_or(tail),
        None => {
            let Some((head, rest)) = bytes.split_at_checked(OID_HEX_LEN) else {
                return false;
            };
            if parse_hex16(head).is_none() {
                return false;
            }
            rest
        }
    };
    rest == b".tmp" || rest.starts_with(b".tmp.")
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
    fn strip_names_round_trip() {
        for (raw, index) in [(0, 0), (0x807c_2b25_0000_0001, 5), (u64::MAX, 30)] {
            let id = StripId::new(Oid::new(raw), index).expect("index in range");
            let name = strip_name(id);
            assert_eq!(parse_strip_name(OsStr::new(&name)), Some(id));
            assert_eq!(parse_object_name(OsStr::new(&name)), None);
            let log = strip_log_name(id);
            assert_eq!(parse_strip_log_name(OsStr::new(&log)), Some(id));
            assert_eq!(parse_strip_name(OsStr::new(&log)), None);
            for tmp in [
                strip_tmp_name(id, false, 3, 4),
                strip_tmp_name(id, true, 3, 4),
            ] {
                assert!(is_tmp_name(OsStr::new(&tmp)), "{tmp}");
                assert_eq!(parse_strip_name(OsStr::new(&tmp)), None);
                assert_eq!(parse_strip_log_name(OsStr::new(&tmp)), None);
            }
            assert!(!is_tmp_name(OsStr::new(&name)));
            assert!(!is_tmp_name(OsStr::new(&log)));
        }
        assert_eq!(
            strip_name(StripId::new(Oid::new(0x807c_2b25_0000_0001), 2).expect("in range")),
            "807c2b2500000001_2"
        );
        for junk in [
            "807c2b2500000001_",
            "807c2b2500000001_07",
            "807c2b2500000001_31",
            "807c2b2500000001_100",
            "807c2b2500000001_1x",
            "807c2b2500000001_-1",
            "807c2b2500000001_1.log.x",
        ] {
            assert_eq!(parse_strip_name(OsStr::new(junk)), None, "{junk}");
            assert_eq!(parse_strip_log_name(OsStr::new(junk)), None, "{junk}");
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
