//! Power loss, full disks and I/O errors, on `faultfs` (`crates/faultfs`): a FUSE file
//! system that keeps only what was made durable (fsync of a file for its data, fsync of a
//! directory for its entries, O_DSYNC/RWF_DSYNC writes) when a test cuts its power.
//!
//! First the layer itself (what survives a cut, ENOSPC, EIO), then sheep on it: clusters
//! whose every node loses power at once, in writeback and writethrough mode and during
//! membership changes, a node that runs out of space, and a replica whose reads fail.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use sd_testkit::{FaultFs, dir_names};

/// fsyncs a directory (its entries become durable).
fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn create(path: &Path, custom_flags: i32) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(custom_flags)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn faultfs_keeps_exactly_what_was_synced() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut fs = FaultFs::mount(&tmp.path().join("disk.img"), &mnt).unwrap();
    let obj = mnt.join("obj");
    std::fs::create_dir(&obj).unwrap();
    sync_dir(&mnt);

    // Written, never synced: the name survives (the directory is synced below), the data
    // does not.
    create(&obj.join("plain"), 0).write_all(b"lost").unwrap();
    // O_DSYNC descriptor, RWF_DSYNC write, fdatasync: durable without anything else.
    let dsync = nix::fcntl::OFlag::O_DSYNC.bits();
    create(&obj.join("o_dsync"), dsync)
        .write_all(b"kept 1")
        .unwrap();
    let f = create(&obj.join("rwf_dsync"), 0);
    let n = rustix::io::pwritev2(
        &f,
        &[IoSlice::new(b"kept 2")],
        0,
        rustix::io::ReadWriteFlags::DSYNC,
    )
    .unwrap();
    assert_eq!(n, 6);
    let f = create(&obj.join("fdatasync"), 0);
    f.write_all_at(b"kept 3", 0).unwrap();
    f.sync_data().unwrap();
    // A write after the sync is lost again.
    f.write_all_at(b"!", 6).unwrap();
    drop(f);
    let before = fs.stat().unwrap();
    sync_dir(&obj);
    // Created and synced after the directory sync: its name is lost, so the file is.
    let f = create(&obj.join("unnamed"), 0);
    f.write_all_at(b"orphan", 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    // A rename after the directory sync is lost too.
    std::fs::rename(obj.join("o_dsync"), obj.join("renamed")).unwrap();

    // The kernel sends O_DSYNC and RWF_DSYNC writes as flagged FUSE writes, with no
    // FUSE_FSYNC after them: faultfs must (and does) make such writes durable itself.
    assert_eq!(before.sync_writes, 2, "{before:?}");
    assert_eq!(before.fsyncs, 1, "only the fdatasync: {before:?}");

    fs.cut().unwrap();
    assert!(
        dir_names(&mnt).unwrap().is_empty(),
        "the mount point is empty after the cut"
    );
    fs.remount().unwrap();
    assert_eq!(
        dir_names(&obj).unwrap(),
        ["fdatasync", "o_dsync", "plain", "rwf_dsync"]
            .map(String::from)
            .into(),
    );
    assert_eq!(read(&obj.join("plain")), b"");
    assert_eq!(read(&obj.join("o_dsync")), b"kept 1");
    assert_eq!(read(&obj.join("rwf_dsync")), b"kept 2");
    assert_eq!(read(&obj.join("fdatasync")), b"kept 3");

    // A clean unmount keeps everything.
    std::fs::write(obj.join("late"), b"all of it").unwrap();
    fs.unmount().unwrap();
    fs.remount().unwrap();
    assert_eq!(read(&obj.join("late")), b"all of it");
}

#[test]
fn faultfs_runs_out_of_space_and_fails_reads_on_command() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let fs = FaultFs::mount(&tmp.path().join("disk.img"), &mnt).unwrap();
    std::fs::write(mnt.join("a"), vec![7u8; 8192]).unwrap();
    fs.set_capacity(Some(3 * 4096)).unwrap();
    let f = create(&mnt.join("b"), 0);
    f.write_all_at(&[1; 4096], 0).unwrap();
    let e = f.write_all_at(&[1; 4096], 4096).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
    let vfs = nix::sys::statvfs::statvfs(&mnt).unwrap();
    assert_eq!(vfs.blocks_available(), 0);
    // Overwriting allocated data still works; freeing space lets new data in.
    f.write_all_at(&[2; 4096], 0).unwrap();
    std::fs::remove_file(mnt.join("a")).unwrap();
    f.write_all_at(&[3; 4096], 4096).unwrap();
    std::fs::write(mnt.join("c"), b"c").unwrap();
    assert_eq!(fs.stat().unwrap().used, 3 * 4096);
    let e = std::fs::write(mnt.join("d"), b"d").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
    fs.set_capacity(None).unwrap();
    std::fs::write(mnt.join("d"), b"d").unwrap();

    fs.set_eio("b", true).unwrap();
    let e = std::fs::read(mnt.join("b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::EIO), "{e}");
    // Other files read fine, and writes to the failing one still work.
    assert_eq!(read(&mnt.join("c")), b"c");
    f.write_all_at(&[4; 1], 0).unwrap();
    fs.set_eio("b", false).unwrap();
    assert_eq!(read(&mnt.join("b"))[..2], [4, 2]);
}
