//! Crash recovery: leftovers of an interrupted create never show up as objects.

use sd_proto::Oid;
use sd_store::SyncMode;

use crate::{open_at, pattern, read_all, sparse};

#[test]
fn open_removes_leftover_tmp_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kept = Oid::new(0x42);
    let data = pattern(kept, 0, 1, 64);
    {
        let store = open_at(tmp.path(), SyncMode::Writethrough);
        store
            .create_and_write(kept, sparse(64), 0, &data)
            .expect("create");
    }
    // A crash after the temporary file was written but before the rename, both in our
    // naming and in C sheep's (`<oid>.tmp`), including one for an existing object.
    let obj = tmp.path().join("obj");
    let leftovers = [
        "807c2b2500000001.tmp.x",
        "807c2b2500000002.tmp",
        "0000000000000042.tmp.9.3",
    ];
    for name in leftovers {
        std::fs::write(obj.join(name), b"half written").expect("leftover");
    }
    std::fs::write(obj.join("unrelated.tmp"), b"not ours").expect("junk");

    let store = open_at(tmp.path(), SyncMode::Writethrough);
    for name in leftovers {
        assert!(!obj.join(name).exists(), "{name} survived open");
    }
    assert!(
        obj.join("unrelated.tmp").exists(),
        "only <oid>.tmp* files are removed"
    );
    assert!(!store.exists(Oid::new(0x807c_2b25_0000_0001)));
    assert_eq!(store.list().expect("list"), [kept]);
    assert_eq!(read_all(&store, kept), data);
}

#[test]
fn open_creates_the_object_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("new").join("sheep");
    let store = open_at(&base, SyncMode::Writeback);
    assert!(base.join("obj").is_dir());
    assert_eq!(store.list().expect("list"), []);
}

#[test]
fn failed_create_leaves_no_tmp_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open_at(tmp.path(), SyncMode::Writethrough);
    let oid = Oid::new(5);
    // A directory in the way makes the final rename fail.
    std::fs::create_dir(tmp.path().join("obj").join(format!("{oid}"))).expect("dir");
    std::fs::write(
        tmp.path().join("obj").join(format!("{oid}")).join("f"),
        b"x",
    )
    .expect("f");
    store
        .create_and_write(oid, sparse(16), 0, &[1; 16])
        .expect_err("rename over a non-empty directory fails");
    let names: Vec<_> = std::fs::read_dir(tmp.path().join("obj"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(format!("{oid}"))]);
}
