//! Pure text formatting and number parsing with the exact behaviour of Sheepdog 1.0's
//! `dog` (spec dog-cli.md §4, §6). Nothing here does I/O; times are formatted in a
//! caller-supplied time zone so tests can pin UTC.

use std::fmt::Display;

use chrono::TimeZone;
use sd_proto::SdResult;
use sd_proto::cluster::{EpochLogRecord, flags};
use sd_proto::node::{NodeId, SdNode};
use sd_proto::stat::RecoveryState;

/// Largest copies value (`SD_MAX_COPIES`).
const SD_MAX_COPIES: u32 = 31;
/// Erasure-coding strip limit (`SD_EC_MAX_STRIP`).
const SD_EC_MAX_STRIP: u32 = 16;

/// `strnumber`: decimal bytes in raw mode, else MB/GB/... with one decimal below 10.
pub fn strnumber(size: u64, raw: bool) -> String {
    if raw {
        return size.to_string();
    }
    const UNITS: [&str; 7] = ["MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    // Precision loss above 2^53 bytes is what the C code does too (it divides a double).
    #[allow(clippy::cast_precision_loss)]
    let mut x = size as f64 / 1_048_576.0;
    let mut unit = 0;
    while unit < UNITS.len() - 1 && x >= 1024.0 {
        unit += 1;
        x /= 1024.0;
    }
    let name = UNITS.get(unit).copied().unwrap_or("YB");
    if x >= 10.0 {
        format!("{x:.0} {name}")
    } else {
        format!("{x:.1} {name}")
    }
}

/// Why a size argument was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSize;

/// `option_parse_size`: a `strtod` number followed by at most one of B, K, M, G, T, P
/// (case-insensitive, powers of 1024); the result is truncated to bytes.
///
/// Unlike the C code, negative, NaN and infinite values are rejected rather than
/// converted with undefined behaviour, and hexadecimal floats are not accepted.
pub fn parse_size(s: &str) -> Result<u64, BadSize> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (value, suffix) = if t.is_empty() {
        (0.0, None)
    } else if let Ok(v) = t.parse::<f64>() {
        (v, None)
    } else {
        let mut chars = t.chars();
        let last = chars.next_back().ok_or(BadSize)?;
        let head = chars.as_str();
        let v = if head.is_empty() {
            0.0
        } else {
            head.parse::<f64>().map_err(|_| BadSize)?
        };
        (v, Some(last))
    };
    let shift = match suffix.map(|c| c.to_ascii_uppercase()) {
        None | Some('B') => 0,
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some('P') => 50,
        Some(_) => return Err(BadSize),
    };
    // Powers of two are exact in f64, so this is the C code's repeated `*= 1024`.
    let bytes = value * 2f64.powi(shift);
    if !bytes.is_finite() || (bytes.is_sign_negative() && bytes != 0.0) {
        return Err(BadSize);
    }
    if bytes >= 18_446_744_073_709_551_616.0 {
        return Ok(u64::MAX);
    }
    // In range and non-negative (checked above), so the truncating cast is the C
    // semantics of `(uint64_t)sizef`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

/// `parse_copy`: `N` (1–31) replicas, or `D:P` erasure coding with D ∈ {2,4,8,16} and
/// 1 ≤ P ≤ 15. Returns (copies, copy_policy).
pub fn parse_copy(s: &str) -> Option<(u8, u8)> {
    fn numeric(s: &str) -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(s.parse::<u32>().unwrap_or(u32::MAX))
    }
    let (n1, n2) = match s.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let copy = numeric(n1)?;
    if copy > SD_MAX_COPIES {
        return None;
    }
    let Some(n2) = n2 else {
        return if copy == 0 {
            None
        } else {
            Some((u8::try_from(copy).ok()?, 0))
        };
    };
    let parity = numeric(n2)?;
    if ![2, 4, 8, 16].contains(&copy) || parity == 0 || parity >= SD_EC_MAX_STRIP {
        return None;
    }
    let policy = ((copy / 2) << 4) | parity;
    Some((
        u8::try_from(copy + parity).ok()?,
        u8::try_from(policy).ok()?,
    ))
}

/// The `-c` error text (multi-line, printed to stderr).
pub fn copy_error(arg: &str) -> String {
    format!(
        "Invalid parameter {arg}\n\
         To create replicated vdi, set -c x\n  x(1 to {SD_MAX_COPIES})   - number of replicated copies\n\
         To create erasure coded vdi, set -c x:y\n  x(2,4,8,16)  - number of data strips\n  \
         y(1 to 15)   - number of parity strips"
    )
}

/// `"%d"` copies, or `"%d:%d"` data:parity for an erasure-coded policy.
pub fn redundancy(copies: u8, policy: u8) -> String {
    if policy > 0 {
        format!("{}:{}", u32::from(policy >> 4) * 2, policy & 0x0f)
    } else {
        copies.to_string()
    }
}

/// Formats Unix seconds with a strftime-style pattern in `tz`.
pub fn fmt_time<Tz: TimeZone>(tz: &Tz, secs: u64, pattern: &str) -> String
where
    Tz::Offset: Display,
{
    match i64::try_from(secs)
        .ok()
        .and_then(|s| tz.timestamp_opt(s, 0).single())
    {
        Some(t) => t.format(pattern).to_string(),
        None => secs.to_string(),
    }
}

/// Pads `s` on the right to `width` bytes (`%-Ns`).
fn pad_right(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(s.len())))
}

/// Pads `s` on the left to `width` bytes (`%Ns`).
fn pad_left(s: &str, width: usize) -> String {
    format!("{}{s}", " ".repeat(width.saturating_sub(s.len())))
}

/// Lossy text of a C string field.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One row of `dog vdi list`.
#[derive(Debug, Clone)]
pub struct VdiRow<'a> {
    /// The inode is a snapshot.
    pub snapshot: bool,
    /// The inode is a clone (snap_id 1 with a parent).
    pub clone: bool,
    /// Name bytes.
    pub name: &'a [u8],
    /// Snapshot id (0 for a working VDI).
    pub snapid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Bytes in objects this VDI owns.
    pub used: u64,
    /// Bytes in objects shared with ancestors.
    pub shared: u64,
    /// Creation time, Unix seconds.
    pub ctime: u64,
    /// VDI id.
    pub vid: u32,
    /// Copies.
    pub copies: u8,
    /// Copy policy.
    pub copy_policy: u8,
    /// Tag bytes.
    pub tag: &'a [u8],
    /// Block size shift.
    pub block_size_shift: u8,
}

/// The header line of `dog vdi list` (omitted in raw mode).
pub const VDI_LIST_HEADER: &str = "  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift\n";

/// Formats one `dog vdi list` row, newline included.
pub fn format_vdi_list_row<Tz: TimeZone>(row: &VdiRow<'_>, raw: bool, tz: &Tz) -> String
where
    Tz::Offset: Display,
{
    let red = redundancy(row.copies, row.copy_policy);
    let tag = text(row.tag);
    if raw {
        let kind = if row.snapshot {
            's'
        } else if row.clone {
            'c'
        } else {
            '='
        };
        let mut name = String::new();
        for c in text(row.name).chars() {
            if matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\\') {
                name.push('\\');
            }
            name.push(c);
        }
        format!(
            "{kind} {name} {} {} {} {} {} {:x} {red} {tag} {}\n",
            row.snapid,
            strnumber(row.size, true),
            strnumber(row.used, true),
            strnumber(row.shared, true),
            row.ctime,
            row.vid,
            row.block_size_shift
        )
    } else {
        let kind = if row.snapshot {
            's'
        } else if row.clone {
            'c'
        } else {
            ' '
        };
        format!(
            "{kind} {} {:>5} {} {} {} {}  {:>7x} {} {} {:>3}\n",
            pad_right(&text(row.name), 8),
            row.snapid,
            pad_left(&strnumber(row.size, false), 7),
            pad_left(&strnumber(row.used, false), 7),
            pad_left(&strnumber(row.shared, false), 7),
            fmt_time(tz, row.ctime, "%Y-%m-%d %H:%M"),
            row.vid,
            pad_left(&red, 6),
            pad_left(&tag, 13),
            row.block_size_shift
        )
    }
}

/// The header line of `dog node list`.
pub const NODE_LIST_HEADER: &str = "  Id   Host:Port         V-Nodes       Zone\n";

/// One `dog node list` row.
pub fn format_node_list_row(idx: usize, node: &SdNode, raw: bool) -> String {
    let host = node.nid.to_string();
    if raw {
        format!("{idx} {host} {} {}\n", node.nr_vnodes, node.zone)
    } else {
        format!(
            "{idx:>4}   {}\t{:>2}{:>11}\n",
            pad_right(&host, 20),
            node.nr_vnodes,
            node.zone
        )
    }
}

/// Recovery progress in percent (0 when there is nothing to recover).
pub fn recovery_percent(st: &RecoveryState) -> f64 {
    if st.nr_total == 0 {
        0.0
    } else {
        st.nr_finished as f64 * 100.0 / st.nr_total as f64
    }
}

/// One `dog node recovery` row: `"%4d   %-20s%5d%11d%11.1f%%"`, raw `"%d %s %d %d %lu %lu"`.
pub fn format_recovery_row(idx: usize, node: &SdNode, st: &RecoveryState, raw: bool) -> String {
    let host = node.nid.to_string();
    if raw {
        format!(
            "{idx} {host} {} {} {} {}\n",
            node.nr_vnodes, node.zone, st.nr_finished, st.nr_total
        )
    } else {
        let pct = recovery_percent(st);
        format!(
            "{idx:>4}   {}{:>5}{:>11}{:>11.1}%\n",
            pad_right(&host, 20),
            node.nr_vnodes,
            node.zone,
            pct
        )
    }
}

/// The header line of `dog node info`.
pub const NODE_INFO_HEADER: &str = "Id\tSize\tUsed\tAvail\tUse%\n";

/// Integer percentage used, truncated like `(int)(x * 100)`; 0 for an empty store.
pub fn percent_used(size: u64, free: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let used = u128::from(size.saturating_sub(free));
    u64::try_from(used * 100 / u128::from(size)).unwrap_or(0)
}

/// One `dog node info` row.
pub fn format_node_info_row(idx: usize, size: u64, free: u64, raw: bool) -> String {
    let used = size.saturating_sub(free);
    let pct = percent_used(size, free);
    if raw {
        format!(
            "{idx} {} {} {} {pct}%\n",
            strnumber(size, true),
            strnumber(used, true),
            strnumber(free, true)
        )
    } else {
        format!(
            "{idx:>2}\t{}\t{}\t{}\t{pct:>3}%\n",
            strnumber(size, false),
            strnumber(used, false),
            strnumber(free, false)
        )
    }
}

/// The `Total` lines of `dog node info`.
pub fn format_node_info_total(size: u64, free: u64, vdi_total: u64, raw: bool) -> String {
    let used = size.saturating_sub(free);
    let pct = percent_used(size, free);
    if raw {
        format!(
            "Total {} {} {} {pct}% {}\n",
            strnumber(size, true),
            strnumber(used, true),
            strnumber(free, true),
            strnumber(vdi_total, true)
        )
    } else {
        format!(
            "Total\t{}\t{}\t{}\t{pct:>3}%\n\nTotal virtual image size\t{}\n",
            strnumber(size, false),
            strnumber(used, false),
            strnumber(free, false),
            strnumber(vdi_total, false)
        )
    }
}

/// `text` with `line` inserted after the first line starting with `prefix` (unchanged if
/// there is none).
pub fn insert_after_line(text: &str, prefix: &str, line: &str) -> String {
    let mut out = String::with_capacity(text.len() + line.len());
    let mut done = false;
    for l in text.split_inclusive('\n') {
        out.push_str(l);
        if !done && l.starts_with(prefix) {
            out.push_str(line);
            done = true;
        }
    }
    out
}

/// What `dog cluster info` shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterInfoView {
    /// `-r`.
    pub raw: bool,
    /// `-v`.
    pub verbose: bool,
    /// `-d`.
    pub diff: bool,
}

fn node_list_text(rec: &EpochLogRecord) -> String {
    rec.nodes
        .iter()
        .map(|n| format!("{}:{}", n.nid, n.nr_vnodes))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `+ip:port` for nodes of `a` missing from `b` (the C code restarts the separator for
/// each sign, which this reproduces).
fn node_diff(a: &EpochLogRecord, b: &EpochLogRecord, sign: char) -> String {
    let missing: Vec<&NodeId> = a
        .nodes
        .iter()
        .map(|n| &n.nid)
        .filter(|id| !b.nodes.iter().any(|m| m.nid == **id))
        .collect();
    missing
        .iter()
        .map(|id| format!("{sign}{id}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The whole `dog cluster info` output. `records` are newest first.
pub fn format_cluster_info<Tz: TimeZone>(
    status: SdResult,
    records: &[EpochLogRecord],
    view: ClusterInfoView,
    tz: &Tz,
) -> String
where
    Tz::Offset: Display,
{
    let mut out = String::new();
    let first = records.first();
    if !view.raw {
        out.push_str("Cluster status: ");
    }
    if status.is_success() {
        let disabled = first.is_some_and(|r| r.disable_recovery != 0);
        out.push_str(&format!(
            "running, auto-recovery {}\n",
            if disabled { "disabled" } else { "enabled" }
        ));
    } else {
        out.push_str(&format!("{}\n", status.message()));
    }
    let rec_flags = first.map_or(0, |r| r.flags);
    if view.verbose {
        if !view.raw {
            out.push_str("Cluster store: ");
        }
        if status.is_success() {
            let (drv, copies, policy) = first.map_or((String::new(), 0, 0), |r| {
                (text(&r.drv_name), r.nr_copies, r.copy_policy)
            });
            out.push_str(&format!(
                "{drv} with {} redundancy policy\n",
                redundancy(copies, policy)
            ));
            if !view.raw {
                out.push_str("Cluster vnodes strategy: ");
            }
            out.push_str(if rec_flags & flags::AUTO_VNODES != 0 {
                "auto\n"
            } else {
                "fixed\n"
            });
        } else {
            out.push_str(&format!("{}\n", status.message()));
        }
        if !view.raw {
            out.push_str("Cluster vnode mode: ");
        }
        out.push_str(if rec_flags & flags::DISKMODE != 0 {
            "disk\n"
        } else {
            "node\n"
        });
    } else {
        out.push('\n');
    }
    if !view.raw
        && let Some(first) = first
    {
        // ctime(3) text ends in a newline, so an empty line follows.
        out.push_str(&format!(
            "Cluster created at {}\n\n",
            fmt_time(tz, first.ctime >> 32, "%a %b %e %H:%M:%S %Y")
        ));
        out.push_str("Epoch Time           Version [Host:Port:V-Nodes,,,]\n");
    }
    for (i, rec) in records.iter().enumerate() {
        if view.raw {
            out.push_str(&format!("{} {}", rec.time, rec.epoch.get()));
        } else {
            out.push_str(&format!(
                "{} {:>6}",
                fmt_time(tz, rec.time, "%Y-%m-%d %H:%M:%S"),
                rec.epoch.get()
            ));
        }
        out.push_str(" [");
        if view.diff {
            match records.get(i + 1) {
                None => out.push_str("formated"),
                Some(older) => {
                    out.push_str(&node_diff(rec, older, '+'));
                    out.push_str(&node_diff(older, rec, '-'));
                }
            }
        } else {
            out.push_str(&node_list_text(rec));
        }
        out.push_str("]\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sd_proto::Epoch;

    #[test]
    fn strnumber_matches_spec_examples() {
        for (bytes, want) in [
            (0, "0.0 MB"),
            (4 << 20, "4.0 MB"),
            (10 << 30, "10 GB"),
            (3 << 29, "1.5 GB"),
            (1023 << 20, "1023 MB"),
            (500 << 10, "0.5 MB"),
            (12 << 20, "12 MB"),
            (3 << 40, "3.0 TB"),
            (4 << 40, "4.0 TB"),
            (16 << 50, "16 PB"),
            (100, "0.0 MB"),
            (u64::MAX, "16 EB"),
        ] {
            assert_eq!(strnumber(bytes, false), want, "{bytes}");
        }
        assert_eq!(strnumber(12_582_912, true), "12582912");
    }

    #[test]
    fn parse_size_like_option_parse_size() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("1P"), Ok(1 << 50));
        assert_eq!(parse_size("16B"), Ok(16));
        assert_eq!(parse_size("1e3"), Ok(1000));
        assert_eq!(parse_size("K"), Ok(0));
        assert_eq!(parse_size(""), Ok(0));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("4194300"), Ok(4_194_300));
        assert_eq!(parse_size("1GB"), Err(BadSize));
        assert_eq!(parse_size("1X"), Err(BadSize));
        assert_eq!(parse_size("abc"), Err(BadSize));
        assert_eq!(parse_size("-1"), Err(BadSize));
        assert_eq!(parse_size("1e400"), Err(BadSize));
    }

    #[test]
    fn parse_copy_accepts_replicas_and_erasure_codes() {
        assert_eq!(parse_copy("3"), Some((3, 0)));
        assert_eq!(parse_copy("31"), Some((31, 0)));
        assert_eq!(parse_copy("4:2"), Some((6, 0x22)));
        assert_eq!(parse_copy("16:15"), Some((31, 0x8f)));
        assert_eq!(parse_copy("2:1"), Some((3, 0x11)));
        for bad in ["0", "32", "3:1", "4:0", "4:16", "x", "", "4:", ":2", "1.5"] {
            assert_eq!(parse_copy(bad), None, "{bad}");
        }
        assert_eq!(redundancy(6, 0x22), "4:2");
        assert_eq!(redundancy(2, 0), "2");
    }

    fn row<'a>(name: &'a [u8], tag: &'a [u8]) -> VdiRow<'a> {
        VdiRow {
            snapshot: false,
            clone: false,
            name,
            snapid: 0,
            size: 1 << 30,
            used: 0,
            shared: 0,
            ctime: 1_795_564_263, // 2026-11-24 23:51:03 UTC
            vid: 0x7c2b25,
            copies: 2,
            copy_policy: 0,
            tag,
            block_size_shift: 22,
        }
    }

    #[test]
    fn vdi_list_rows_match_samples() {
        let r = row(b"test", b"");
        assert_eq!(
            format_vdi_list_row(&r, false, &Utc),
            "  test         0  1.0 GB  0.0 MB  0.0 MB 2026-11-24 23:51   7c2b25      2                22\n"
        );
        let s = VdiRow {
            snapshot: true,
            snapid: 1,
            used: 12 << 20,
            ..row(b"test", b"snap1")
        };
        assert_eq!(
            format_vdi_list_row(&s, false, &Utc),
            "s test         1  1.0 GB   12 MB  0.0 MB 2026-11-24 23:51   7c2b25      2         snap1  22\n"
        );
        let c = VdiRow {
            clone: true,
            shared: 12 << 20,
            vid: 0x93b9e2,
            ..row(b"testclone", b"")
        };
        assert_eq!(
            format_vdi_list_row(&c, false, &Utc),
            "c testclone     0  1.0 GB  0.0 MB   12 MB 2026-11-24 23:51   93b9e2      2                22\n"
        );
        let d = VdiRow {
            size: 20 << 20,
            vid: 0x1e773,
            copies: 3,
            ..row(b"d", b"")
        };
        assert_eq!(
            format_vdi_list_row(&d, false, &Utc),
            "  d            0   20 MB  0.0 MB  0.0 MB 2026-11-24 23:51    1e773      3                22\n"
        );
    }

    #[test]
    fn vdi_list_raw_rows_match_samples() {
        let p = VdiRow {
            size: 16 << 20,
            used: 16 << 20,
            ctime: 1_795_564_287,
            vid: 0x795207,
            ..row(b"prealloc", b"")
        };
        assert_eq!(
            format_vdi_list_row(&p, true, &Utc),
            "= prealloc 0 16777216 16777216 0 1795564287 795207 2  22\n"
        );
        let s = VdiRow {
            snapshot: true,
            snapid: 1,
            used: 12_582_912,
            ..row(b"test", b"snap1")
        };
        assert_eq!(
            format_vdi_list_row(&s, true, &Utc),
            "s test 1 1073741824 12582912 0 1795564263 7c2b25 2 snap1 22\n"
        );
        let e = row(b"a b\\c", b"");
        assert!(format_vdi_list_row(&e, true, &Utc).starts_with("= a\\ b\\\\c 0 "));
    }

    fn node(port: u16, zone: u32) -> SdNode {
        SdNode {
            nid: NodeId::from_socket(format!("127.0.0.1:{port}").parse().unwrap()),
            nr_vnodes: 128,
            zone,
            ..SdNode::default()
        }
    }

    #[test]
    fn node_rows_match_samples() {
        assert_eq!(
            format_node_list_row(0, &node(7000, 0), false),
            "   0   127.0.0.1:7000      \t128          0\n"
        );
        assert_eq!(
            format_node_list_row(1, &node(7001, 16_777_343), false),
            "   1   127.0.0.1:7001      \t128   16777343\n"
        );
        assert_eq!(
            format_node_list_row(2, &node(7002, 2), true),
            "2 127.0.0.1:7002 128 2\n"
        );
        let gb79 = 79u64 << 30;
        assert_eq!(
            format_node_info_row(0, gb79, gb79, false),
            " 0\t79 GB\t0.0 MB\t79 GB\t  0%\n"
        );
        assert_eq!(
            format_node_info_row(1, gb79, gb79 - (8 << 20), false),
            " 1\t79 GB\t8.0 MB\t79 GB\t  0%\n"
        );
        assert_eq!(
            format_node_info_total(3 * gb79, 3 * gb79 - (24 << 20), 1 << 30, false),
            "Total\t237 GB\t24 MB\t237 GB\t  0%\n\nTotal virtual image size\t1.0 GB\n"
        );
        assert_eq!(format_node_info_row(0, 100, 50, true), "0 100 50 50 50%\n");
        assert_eq!(percent_used(0, 0), 0);
        assert_eq!(percent_used(3, 0), 100);
    }

    fn record(epoch: u32, time: u64, ports: &[u16]) -> EpochLogRecord {
        EpochLogRecord {
            ctime: 1_795_564_260 << 32,
            time,
            epoch: Epoch(epoch),
            nr_copies: 2,
            flags: flags::AUTO_VNODES,
            drv_name: b"plain".to_vec(),
            nodes: ports.iter().map(|p| node(*p, 0)).collect(),
            ..EpochLogRecord::default()
        }
    }

    #[test]
    fn cluster_info_matches_samples() {
        let recs = vec![
            record(2, 1_795_564_293, &[7000, 7002]),
            record(1, 1_795_564_262, &[7000, 7001, 7002]),
        ];
        let got = format_cluster_info(SdResult::Success, &recs, ClusterInfoView::default(), &Utc);
        assert_eq!(
            got,
            "Cluster status: running, auto-recovery enabled\n\
             \n\
             Cluster created at Tue Nov 24 23:51:00 2026\n\
             \n\
             Epoch Time           Version [Host:Port:V-Nodes,,,]\n\
             2026-11-24 23:51:33      2 [127.0.0.1:7000:128, 127.0.0.1:7002:128]\n\
             2026-11-24 23:51:02      1 [127.0.0.1:7000:128, 127.0.0.1:7001:128, 127.0.0.1:7002:128]\n"
        );
        let verbose = ClusterInfoView {
            verbose: true,
            ..ClusterInfoView::default()
        };
        let got = format_cluster_info(SdResult::Success, &recs[1..], verbose, &Utc);
        assert!(got.starts_with(
            "Cluster status: running, auto-recovery enabled\n\
             Cluster store: plain with 2 redundancy policy\n\
             Cluster vnodes strategy: auto\n\
             Cluster vnode mode: node\n\
             Cluster created at Tue Nov 24 23:51:00 2026\n\n"
        ));
        let diff = ClusterInfoView {
            diff: true,
            ..ClusterInfoView::default()
        };
        let got = format_cluster_info(SdResult::Success, &recs, diff, &Utc);
        assert!(got.ends_with(
            "2026-11-24 23:51:33      2 [-127.0.0.1:7001]\n\
             2026-11-24 23:51:02      1 [formated]\n"
        ));
        let raw = ClusterInfoView {
            raw: true,
            ..ClusterInfoView::default()
        };
        assert_eq!(
            format_cluster_info(SdResult::Success, &recs[1..], raw, &Utc),
            "running, auto-recovery enabled\n\n1795564262 1 [127.0.0.1:7000:128, 127.0.0.1:7001:128, 127.0.0.1:7002:128]\n"
        );
    }

    #[test]
    fn cluster_info_unformatted() {
        assert_eq!(
            format_cluster_info(
                SdResult::WaitForFormat,
                &[],
                ClusterInfoView::default(),
                &Utc
            ),
            "Cluster status: Waiting for cluster to be formatted\n\n"
        );
    }

    #[test]
    fn recovery_rows() {
        let node = SdNode {
            nid: sd_proto::node::NodeId::from_socket("127.0.0.1:7001".parse().unwrap()),
            nr_vnodes: 128,
            zone: 1,
            ..SdNode::default()
        };
        let st = RecoveryState {
            in_recovery: true,
            nr_finished: 1,
            nr_total: 3,
            ..RecoveryState::default()
        };
        assert_eq!(
            format_recovery_row(1, &node, &st, false),
            "   1   127.0.0.1:7001        128          1       33.3%\n"
        );
        assert_eq!(
            format_recovery_row(1, &node, &st, true),
            "1 127.0.0.1:7001 128 1 1 3\n"
        );
        let mut b = vec![1u8, 0, 0, 0, 1, 0, 0, 0];
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(
            RecoveryState::decode(&b).ok(),
            Some(RecoveryState {
                in_recovery: true,
                phase: sd_proto::stat::RecoveryPhase::RecoverObj,
                nr_finished: 5,
                nr_total: 9
            })
        );
    }
}
