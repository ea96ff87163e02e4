//! Object I/O: create, read, write, bounds, remove, list, purge, space, reopen.

use sd_proto::Oid;
use sd_store::{StoreError, SyncMode};

use crate::{new_store, open_at, pattern, prealloc, read_all, read_vec, sparse};

const MODES: [SyncMode; 2] = [SyncMode::Writethrough, SyncMode::Writeback];

#[test]
fn create_then_read_back() {
    for mode in MODES {
        let (_tmp, store) = new_store(mode);
        let oid = Oid::new(0x807c_2b25_0000_0001);
        let data = pattern(oid, 0, 1, 8192);
        store
            .create_and_write(oid, prealloc(8192), 0, &data)
            .expect("create");
        assert!(store.exists(oid));
        assert_eq!(store.object_size(oid).expect("size"), 8192);
        assert_eq!(read_all(&store, oid), data);
        assert_eq!(read_vec(&store, oid, 100, 50), data[100..150]);
        let file = store.dir().join("obj").join("807c2b2500000001");
        assert_eq!(std::fs::read(file).expect("object file"), data);
    }
}

#[test]
fn create_in_middle_zero_fills_the_rest() {
    for spec in [sparse(1 << 20), prealloc(1 << 20)] {
        let (_tmp, store) = new_store(SyncMode::Writethrough);
        let oid = Oid::new(7);
        let offset = 300_000;
        let data = pattern(oid, offset, 1, 5000);
        store
            .create_and_write(oid, spec, offset, &data)
            .expect("create");
        assert_eq!(store.object_size(oid).expect("size"), 1 << 20);
        let all = read_all(&store, oid);
        let (head, rest) = all.split_at(300_000);
        let (mid, tail) = rest.split_at(5000);
        assert!(head.iter().all(|&b| b == 0), "{spec:?}");
        assert_eq!(mid, data, "{spec:?}");
        assert!(tail.iter().all(|&b| b == 0), "{spec:?}");
    }
}

#[test]
fn create_empty_and_zero_sized() {
    let (_tmp, store) = new_store(SyncMode::Writethrough);
    store
        .create_and_write(Oid::new(1), sparse(0), 0, &[])
        .expect("size 0");
    assert_eq!(store.object_size(Oid::new(1)).expect("size"), 0);
    store
        .create_and_write(Oid::new(2), prealloc(0), 0, &[])
        .expect("prealloc 0");
    assert_eq!(store.object_size(Oid::new(2)).expect("size"), 0);
    store
        .create_and_write(Oid::new(3), prealloc(4096), 0, &[])
        .expect("no data");
    assert_eq!(read_all(&store, Oid::new(3)), vec![0; 4096]);
}

#[test]
fn write_at_offset_then_read() {
    for mode in MODES {
        let (_tmp, store) = new_store(mode);
        let oid = Oid::new(0x1234);
        let first = pattern(oid, 0, 1, 65536);
        store
            .create_and_write(oid, prealloc(65536), 0, &first)
            .expect("create");
        let second = pattern(oid, 1000, 2, 3000);
        store.write(oid, 1000, &second).expect("write");
        let mut expect = first.clone();
        expect[1000..4000].copy_from_slice(&second);
        assert_eq!(read_all(&store, oid), expect);
        // Writing right up to the end, and empty writes at the end, are fine.
        let last = pattern(oid, 65000, 3, 536);
        store.write(oid, 65000, &last).expect("write to end");
        store.write(oid, 65536, &[]).expect("empty write at end");
        expect[65000..].copy_from_slice(&last);
        assert_eq!(read_all(&store, oid), expect);
        assert_eq!(store.object_size(oid).expect("size"), 65536);
    }
}

#[test]
fn out_of_bounds_is_rejected_and_changes_nothing() {
    let (_tmp, store) = new_store(SyncMode::Writethrough);
    let oid = Oid::new(9);
    let data = pattern(oid, 0, 1, 4096);
    store
        .create_and_write(oid, sparse(4096), 0, &data)
        .expect("create");
    let file = store.dir().join("obj").join(format!("{oid}"));
    let cases: [(u64, usize); 5] = [
        (4097, 0),          // offset past the end
        (5000, 10),         // offset past the end, with data
        (4000, 97),         // offset + len past the end
        (u64::MAX, 1),      // offset + len overflows
        (u64::MAX - 5, 10), // offset + len overflows
    ];
    for (offset, len) in cases {
        let junk = vec![0xAB; len];
        let err = store
            .write(oid, offset, &junk)
            .expect_err("write out of bounds");
        assert!(
            matches!(err, StoreError::OutOfBounds { oid: o, offset: off, len: l, size: 4096 }
                if o == oid && off == offset && l == len as u64),
            "write {offset}+{len}: {err:?}"
        );
        let mut buf = vec![0; len];
        let err = store
            .read(oid, offset, &mut buf)
            .expect_err("read out of bounds");
        assert!(
            matches!(err, StoreError::OutOfBounds { .. }),
            "read {offset}+{len}: {err:?}"
        );
        assert!(buf.iter().all(|&b| b == 0));
    }
    assert_eq!(std::fs::read(&file).expect("file"), data);
    assert_eq!(store.object_size(oid).expect("size"), 4096);
}

#[test]
fn create_out_of_bounds_creates_nothing() {
    let (_tmp, store) = new_store(SyncMode::Writethrough);
    let oid = Oid::new(10);
    let err = store
        .create_and_write(oid, prealloc(100), 90, &[1; 11])
        .expect_err("too long");
    assert!(
        matches!(
            err,
            StoreError::OutOfBounds {
                size: 100,
                len: 11,
                offset: 90,
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .create_and_write(oid, sparse(100), u64::MAX, &[1])
        .expect_err("overflow");
    assert!(matches!(err, StoreError::OutOfBounds { .. }), "{err:?}");
    assert!(!store.exists(oid));
    assert_eq!(
        std::fs::read_dir(store.dir().join("obj"))
            .expect("dir")
            .count(),
        0
    );
}

#[test]
fn missing_object_is_no_object() {
    let (_tmp, store) = new_store(SyncMode::Writethrough);
    let oid = Oid::new(11);
    let err = store.write(oid, 0, &[1]).expect_err("write");
    assert!(
        matches!(err, StoreError::NoObject(o) if o == oid),
        "{err:?}"
    );
    let err = store.read(oid, 0, &mut [0]).expect_err("read");
    assert!(
        matches!(err, StoreError::NoObject(o) if o == oid),
        "{err:?}"
    );
    assert!(matches!(
        store.object_size(oid),
        Err(StoreError::NoObject(_))
    ));
    assert!(matches!(store.remove(oid), Err(StoreError::NoObject(_))));
    assert!(matches!(
        store.sync_object(oid),
        Err(StoreError::NoObject(_))
    ));
    assert!(!store.exists(oid));
    // A write must not create the object.
    assert!(!store.dir().join("obj").join(format!("{oid}")).exists());
}

#[test]
fn remove_deletes_the_object() {
    for mode in MODES {
        let (_tmp, store) = new_store(mode);
        let (a, b) = (Oid::new(1), Oid::new(2));
        store
            .create_and_write(a, sparse(10), 0, b"0123456789")
            .expect("a");
        store
            .create_and_write(b, sparse(10), 0, b"abcdefghij")
            .expect("b");
        store.remove(a).expect("remove");
        assert!(!store.exists(a));
        assert_eq!(store.list().expect("list"), [b]);
        assert_eq!(read_all(&store, b), b"abcdefghij");
        assert_eq!(store.dir_needs_sync(), mode == SyncMode::Writeback);
        store.sync_dir().expect("sync_dir");
        assert!(!store.dir_needs_sync());
    }
}

#[test]
fn list_is_sorted_and_ignores_junk() {
    let (tmp, store) = new_store(SyncMode::Writeback);
    let oids = [
        0xffff_ffff_ffff_ffff,
        0x807c_2b25_0000_0000,
        0,
        0x00fd_0000_0000_0003,
    ];
    for raw in oids {
        store
            .create_and_write(Oid::new(raw), sparse(1), 0, &[1])
            .expect("create");
    }
    let obj = tmp.path().join("obj");
    for junk in [
        "foo",
        "807C2B2500000001",
        "807c2b2500000002.tmp.x",
        "807c2b2500000003_1",
        "0123",
    ] {
        std::fs::write(obj.join(junk), b"junk").expect("junk file");
    }
    std::fs::create_dir(obj.join("0000000000000005")).expect("dir named like an oid");
    std::fs::create_dir(obj.join(".stale")).expect("stale dir");
    let mut expect: Vec<Oid> = oids.into_iter().map(Oid::new).collect();
    expect.sort();
    assert_eq!(store.list().expect("list"), expect);
}

#[test]
fn objects_persist_across_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let oid = Oid::new(0x0080_0000_0000_0042);
    let data = pattern(oid, 512, 4, 2048);
    {
        let store = open_at(tmp.path(), SyncMode::Writethrough);
        store
            .create_and_write(oid, prealloc(4096), 512, &data)
            .expect("create");
        store.write(oid, 0, b"head").expect("write");
    }
    let store = open_at(tmp.path(), SyncMode::Writeback);
    assert_eq!(store.list().expect("list"), [oid]);
    let mut expect = vec![0; 4096];
    expect[..4].copy_from_slice(b"head");
    expect[512..2560].copy_from_slice(&data);
    assert_eq!(read_all(&store, oid), expect);
    assert_eq!(store.sync_mode(), SyncMode::Writeback);
    assert_eq!(store.dir(), tmp.path());
}

#[test]
fn create_replaces_an_existing_object() {
    let (_tmp, store) = new_store(SyncMode::Writethrough);
    let oid = Oid::new(0x55);
    store
        .create_and_write(oid, prealloc(8192), 0, &pattern(oid, 0, 1, 8192))
        .expect("first");
    let second = pattern(oid, 100, 2, 10);
    store
        .create_and_write(oid, sparse(1024), 100, &second)
        .expect("second");
    let mut expect = vec![0; 1024];
    expect[100..110].copy_from_slice(&second);
    assert_eq!(read_all(&store, oid), expect);
    assert_eq!(store.list().expect("list"), [oid]);
    assert_eq!(
        std::fs::read_dir(store.dir().join("obj"))
            .expect("dir")
            .count(),
        1
    );
}

#[test]
fn purge_removes_every_object() {
    let (tmp, store) = new_store(SyncMode::Writethrough);
    for raw in 1..=5 {
        store
            .create_and_write(Oid::new(raw), sparse(100), 0, &[7; 100])
            .expect("create");
    }
    let obj = tmp.path().join("obj");
    std::fs::write(obj.join("0000000000000009.tmp.1"), b"partial").expect("tmp");
    std::fs::write(obj.join("notes"), b"keep").expect("junk");
    store.purge().expect("purge");
    assert_eq!(store.list().expect("list"), []);
    assert!(!obj.join("0000000000000009.tmp.1").exists());
    assert!(obj.join("notes").exists(), "purge removes objects only");
    store
        .create_and_write(Oid::new(1), sparse(1), 0, &[1])
        .expect("usable after purge");
}

#[test]
fn space_used_grows_after_preallocated_create() {
    let (_tmp, store) = new_store(SyncMode::Writeback);
    let before = store.space().expect("space");
    assert_eq!(before.used, 0);
    assert!(before.free > 0);
    let size = 4 << 20;
    store
        .create_and_write(Oid::new(1), prealloc(size), 0, b"x")
        .expect("create");
    let after = store.space().expect("space");
    assert!(after.used >= size, "used {} < {size}", after.used);
    // A sparse object of the same size allocates (almost) nothing.
    store
        .create_and_write(Oid::new(2), sparse(size), 0, b"x")
        .expect("create");
    let sparse_used = store.space().expect("space").used - after.used;
    assert!(sparse_used < size / 2, "sparse object uses {sparse_used}");
}

#[test]
fn sync_calls_succeed() {
    let (_tmp, store) = new_store(SyncMode::Writeback);
    let oid = Oid::new(3);
    store
        .create_and_write(oid, sparse(10), 0, &[1; 10])
        .expect("create");
    store.write(oid, 0, &[2; 5]).expect("write");
    store.sync_object(oid).expect("sync_object");
    store.sync_dir().expect("sync_dir");
}

#[test]
fn concurrent_creates_of_one_oid_do_not_collide() {
    let (_tmp, store) = new_store(SyncMode::Writeback);
    let oid = Oid::new(0x77);
    std::thread::scope(|s| {
        for generation in 0..8_u64 {
            let store = &store;
            s.spawn(move || {
                let data = pattern(oid, 0, generation, 4096);
                store
                    .create_and_write(oid, prealloc(4096), 0, &data)
                    .expect("create");
            });
        }
    });
    let got = read_all(&store, oid);
    assert!(
        (0..8).any(|g| got == pattern(oid, 0, g, 4096)),
        "the object is one whole generation"
    );
    assert_eq!(
        std::fs::read_dir(store.dir().join("obj"))
            .expect("dir")
            .count(),
        1
    );
}

/// A copy's version (the epoch of its last write) is set by a versioned create and by
/// `set_version`, kept with the file across a reopen, and gone with the object.
#[test]
fn versions_travel_with_the_copy() {
    for mode in MODES {
        let (tmp, store) = new_store(mode);
        let oid = Oid::new(0x807c_2b25_0000_0002);
        let data = pattern(oid, 0, 1, 4096);
        store
            .create_versioned(oid, prealloc(4096), 0, &data, 7)
            .expect("create");
        assert_eq!(store.version(oid).expect("version"), 7);
        store.write(oid, 0, &data).expect("write");
        store.set_version(oid, 9).expect("set");
        assert_eq!(store.version(oid).expect("version"), 9);
        drop(store);
        let store = open_at(tmp.path(), mode);
        assert_eq!(store.version(oid).expect("version after reopen"), 9);
        // An unversioned create (and a missing object) reads as unknown / absent.
        store
            .create_and_write(oid, prealloc(4096), 0, &data)
            .expect("recreate");
        assert_eq!(store.version(oid).expect("version"), 0);
        store.remove(oid).expect("remove");
        assert!(matches!(store.version(oid), Err(StoreError::NoObject(_))));
    }
}

/// A bulk read (a copy on its way to another node) sees exactly what `read` sees: whole
/// objects, an object whose size is not a multiple of the block size (an inode), data
/// written since the create and still only in the page cache (writeback), and the same
/// errors for a range past the end or a missing object.
#[test]
fn bulk_reads_see_what_reads_see() {
    for mode in MODES {
        let (_tmp, store) = new_store(mode);
        let data_oid = Oid::new(0x00a1_0000_0000_0003);
        let size = 4 << 20;
        let data = pattern(data_oid, 0, 1, size);
        store
            .create_and_write(data_oid, sparse(size as u64), 0, &data)
            .expect("create");
        let later = pattern(data_oid, 1_000_000, 2, 70_000);
        store.write(data_oid, 1_000_000, &later).expect("write");
        let mut expect = data.clone();
        expect[1_000_000..1_070_000].copy_from_slice(&later);
        let mut bulk = vec![0xEE; size];
        store.read_bulk(data_oid, 0, &mut bulk).expect("bulk read");
        assert!(bulk == expect, "{mode:?}: whole object");
        let mut part = vec![0xEE; 300_000];
        store
            .read_bulk(data_oid, 8192, &mut part)
            .expect("bulk part");
        assert!(
            part[..] == expect[8192..308_192],
            "{mode:?}: from an offset"
        );

        let inode = Oid::new(0x80a1_0000_0000_0000);
        let odd = 4_198_976;
        let idata = pattern(inode, 0, 1, odd);
        store
            .create_and_write(inode, prealloc(odd as u64), 0, &idata)
            .expect("create inode");
        let mut ibulk = vec![0xEE; odd];
        store.read_bulk(inode, 0, &mut ibulk).expect("bulk inode");
        assert!(ibulk == idata, "{mode:?}: odd-sized object");

        let mut past = vec![0; 128 << 10];
        assert!(matches!(
            store.read_bulk(data_oid, (4 << 20) - 4096, &mut past),
            Err(StoreError::OutOfBounds { .. })
        ));
        assert!(matches!(
            store.read_bulk(Oid::new(0x00a1_0000_0000_0099), 0, &mut past),
            Err(StoreError::NoObject(_))
        ));
    }
}
