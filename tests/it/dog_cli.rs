//! End-to-end through the real `dog`: format, create, write and read back across a SIGKILL,
//! list and delete, with the object files checked on disk.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use sd_proto::hash::sd_hash_vdi;
use sd_proto::{Oid, SdResult};
use sd_testkit::{DogOutput, Sheep, assert_same_bytes, pattern, req};

use crate::common::{OBJ_SIZE, assert_dir_clean, stored_objects};

/// `dog vdi list` header (dog-cli.md §4.1).
const LIST_HEADER: &str = "  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift";

/// 16 MiB at an offset that is not sector- or object-aligned: objects 2..=6 of the VDI.
const WRITE_OFFSET: u64 = 2 * OBJ_SIZE + 12_345;
const WRITE_LEN: usize = 16 << 20;

fn ok(out: DogOutput, what: &str) -> DogOutput {
    out.check_success(what).unwrap();
    out
}

fn stdout_lines(out: &DogOutput) -> Vec<String> {
    out.stdout_str().lines().map(str::to_string).collect()
}

/// `dog vdi read test OFFSET LEN`, which must print exactly `expected`.
fn assert_dog_reads(sheep: &Sheep, offset: u64, expected: &[u8], what: &str) {
    let (off, len) = (offset.to_string(), expected.len().to_string());
    let out = ok(
        sheep
            .dog(&["vdi", "read", "test", &off, &len], None)
            .unwrap(),
        what,
    );
    assert_same_bytes(&out.stdout, expected, what);
}

/// The normal `vdi list` row of a fresh working VDI "test" of 1 GiB with 5 objects written,
/// minus the creation time, which is checked for shape: `(before time, after time)`.
fn expected_row_parts(vid: u32) -> (String, String) {
    // "%c %-8s %5d %7s %7s %7s %s  %7x %6s %13s %3u"
    let before = format!(
        "{} {:<8} {:>5} {:>7} {:>7} {:>7} ",
        ' ', "test", 0, "1.0 GB", "20 MB", "0.0 MB"
    );
    let after = format!("  {:>7x} {:>6} {:>13} {:>3}", vid, "3", "", 22);
    (before, after)
}

fn assert_list_row(row: &str, vid: u32) {
    let (before, after) = expected_row_parts(vid);
    assert!(
        row.starts_with(&before) && row.ends_with(&after),
        "vdi list row\n  {row:?}\nexpected\n  {before:?} + YYYY-MM-DD HH:MM + {after:?}"
    );
    let time = &row[before.len()..row.len() - after.len()];
    let shape_ok = time.len() == 16
        && time.char_indices().all(|(i, ch)| match i {
            4 | 7 => ch == '-',
            10 => ch == ' ',
            13 => ch == ':',
            _ => ch.is_ascii_digit(),
        });
    assert!(shape_ok, "creation time {time:?} is not YYYY-MM-DD HH:MM");
}

fn assert_raw_list_row(row: &str, vid: u32) {
    // "= test 0 1073741824 20971520 0 <unix secs> 7c2b25 3  22": the empty tag gives two
    // consecutive spaces.
    let prefix = "= test 0 1073741824 20971520 0 ";
    let suffix = format!(" {vid:x} 3  22");
    assert!(
        row.starts_with(prefix) && row.ends_with(&suffix),
        "vdi list -r row {row:?}, expected {prefix:?} + secs + {suffix:?}"
    );
    let secs: u64 = row[prefix.len()..row.len() - suffix.len()]
        .parse()
        .unwrap_or_else(|_| panic!("creation time in {row:?} is not Unix seconds"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        secs <= now && now - secs < 3600,
        "creation time {secs} is not recent (now {now})"
    );
}

#[test]
fn vdi_write_read_survives_sigkill_then_list_and_delete() {
    let mut sheep = Sheep::start_temp(&[]).unwrap();
    let out = ok(
        sheep.dog(&["cluster", "format"], None).unwrap(),
        "cluster format",
    );
    assert!(
        out.stdout_str().contains("using backend plain store"),
        "cluster format said {:?}",
        out.stdout_str()
    );
    ok(
        sheep.dog(&["vdi", "create", "test", "1G"], None).unwrap(),
        "vdi create",
    );
    let vid = sd_hash_vdi(b"test");
    assert_eq!(vid.get(), 0x7c2b25);

    let seed = sd_testkit::random_seed();
    let data = pattern(seed, WRITE_OFFSET, WRITE_LEN);
    let (off, len) = (WRITE_OFFSET.to_string(), WRITE_LEN.to_string());
    ok(
        sheep
            .dog(&["vdi", "write", "test", &off, &len], Some(&data))
            .unwrap(),
        "vdi write",
    );

    // Exactly the inode and the five data objects the range touches, named by oid.
    let first = u32::try_from(WRITE_OFFSET / OBJ_SIZE).unwrap();
    let last = u32::try_from((WRITE_OFFSET + WRITE_LEN as u64 - 1) / OBJ_SIZE).unwrap();
    assert_eq!((first, last), (2, 6));
    let data_oids: BTreeSet<Oid> = (first..=last).map(|i| vid.data_oid(i)).collect();
    let mut expected_objects = data_oids.clone();
    expected_objects.insert(vid.inode_oid());
    assert_eq!(
        stored_objects(&sheep),
        expected_objects,
        "DIR/obj after write"
    );
    assert!(
        sheep.dir().join("obj/007c2b2500000002").is_file(),
        "object files are named by the oid in 16 lowercase hex digits"
    );
    // The plain store keeps an object's bytes as they are: object 3 is wholly inside the range.
    let on_disk = std::fs::read(sheep.dir().join(format!("obj/{}", vid.data_oid(3)))).unwrap();
    assert_same_bytes(
        &on_disk,
        &pattern(seed, 3 * OBJ_SIZE, OBJ_SIZE as usize),
        "DIR/obj/007c2b2500000003",
    );

    // Read back with a margin on both sides: unwritten bytes read as zeros.
    let margin = 4096usize;
    let mut framed = vec![0u8; margin];
    framed.extend_from_slice(&data);
    framed.extend(std::iter::repeat_n(0u8, margin));
    let framed_at = WRITE_OFFSET - margin as u64;
    assert_dog_reads(&sheep, WRITE_OFFSET, &data, "vdi read");
    assert_dog_reads(&sheep, framed_at, &framed, "vdi read with margins");

    // Power cut, restart on the same directory and port, read again.
    let status = sheep.kill9().unwrap();
    assert!(!status.success(), "sheep survived SIGKILL: {status}");
    sheep.restart().unwrap();
    assert_dog_reads(
        &sheep,
        framed_at,
        &framed,
        "vdi read after SIGKILL and restart",
    );

    // vdi list: the documented header and columns.
    let out = ok(sheep.dog(&["vdi", "list"], None).unwrap(), "vdi list");
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 2, "vdi list output: {:?}", out.stdout_str());
    assert_eq!(lines[0], LIST_HEADER, "vdi list header");
    assert_list_row(&lines[1], vid.get());
    let out = ok(
        sheep.dog(&["vdi", "list", "-r"], None).unwrap(),
        "vdi list -r",
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "vdi list -r output: {:?}", out.stdout_str());
    assert_raw_list_row(&lines[0], vid.get());

    // delete: gone from the list, its data objects gone from the disk.
    let out = ok(
        sheep.dog(&["vdi", "delete", "test"], None).unwrap(),
        "vdi delete",
    );
    assert!(
        out.stdout.is_empty(),
        "vdi delete printed {:?}",
        out.stdout_str()
    );
    let out = ok(
        sheep.dog(&["vdi", "list"], None).unwrap(),
        "vdi list after delete",
    );
    assert_eq!(stdout_lines(&out), [LIST_HEADER], "vdi list after delete");
    let out = ok(
        sheep.dog(&["vdi", "list", "-r"], None).unwrap(),
        "vdi list -r",
    );
    assert!(
        out.stdout.is_empty(),
        "vdi list -r after delete: {:?}",
        out.stdout_str()
    );
    let left = stored_objects(&sheep);
    let leaked: Vec<&Oid> = left.intersection(&data_oids).collect();
    assert!(
        leaked.is_empty(),
        "data objects left after delete: {leaked:?}"
    );
    // Only the wiped inode may remain (Sheepdog keeps it, with an empty name).
    assert!(
        left.iter().all(|o| *o == vid.inode_oid()),
        "unexpected objects after delete: {left:?}"
    );
    let rsp = sheep
        .connect()
        .unwrap()
        .call(&req::get_vdi_info(), &req::name_field("test"))
        .unwrap();
    assert_eq!(rsp.result(), SdResult::NoVdi, "the name is free again");

    sheep.check_alive().unwrap();
    assert_dir_clean(&sheep);
}
