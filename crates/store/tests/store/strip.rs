//! Erasure-coded strips: create, prepare/complete/discard, reads see complete writes only,
//! the log across a restart (pending writes come back pending, complete writes are applied
//! again after a lost page cache), names on disk.

use std::os::unix::fs::FileExt;

use sd_proto::Oid;
use sd_store::{StoreError, StripId, StripWrite, SyncMode};

use super::{new_store, open_at, pattern};

const SIZE: u64 = 1 << 20;

fn id(index: u8) -> StripId {
    StripId::new(Oid::new(0x0012_3456_0000_0007), index).expect("index in range")
}

fn read(store: &sd_store::Store, id: StripId, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    store.read_strip(id, offset, &mut buf).expect("read strip");
    buf
}

fn write(wid: u64, offset: u64, data: &[u8]) -> StripWrite<'_> {
    StripWrite {
        wid,
        epoch: 3,
        offset,
        data,
    }
}

#[test]
fn create_names_and_reads_back() {
    for sync in [SyncMode::Writethrough, SyncMode::Writeback] {
        let (tmp, store) = new_store(sync);
        let data = pattern(id(2).oid, 4096, 1, 8192);
        store
            .create_strip(id(2), SIZE, 4096, &data, 5)
            .expect("create");
        let obj = tmp.path().join("obj");
        assert!(obj.join("0012345600000007_2").is_file());
        assert!(obj.join("0012345600000007_2.log").is_file());
        assert_eq!(
            std::fs::metadata(obj.join("0012345600000007_2"))
                .expect("stat")
                .len(),
            SIZE
        );
        assert_eq!(read(&store, id(2), 4096, 8192), data);
        assert_eq!(read(&store, id(2), 0, 4096), vec![0; 4096]);
        assert_eq!(store.strip_size(id(2)).expect("size"), SIZE);
        assert_eq!(store.strip_log(id(2)).expect("log").version, 5);
        assert!(store.strip_exists(id(2)));
        assert!(!store.strip_exists(id(3)));
        // Strips are not objects.
        assert_eq!(store.list().expect("list"), Vec::<Oid>::new());
        assert_eq!(store.list_strips().expect("list"), vec![id(2)]);
        assert!(matches!(
            store.read_strip(id(2), SIZE - 10, &mut [0; 11]),
            Err(StoreError::StripOutOfBounds { .. })
        ));
        assert!(matches!(
            store.create_strip(id(4), SIZE, SIZE - 1, b"ab", 1),
            Err(StoreError::StripOutOfBounds { .. })
        ));
        assert!(!store.strip_exists(id(4)));
        assert!(matches!(
            store.read_strip(id(3), 0, &mut [0; 1]),
            Err(StoreError::NoStrip(_))
        ));
    }
}

#[test]
fn a_prepared_write_shows_only_once_complete() {
    let (_tmp, store) = new_store(SyncMode::Writethrough);
    store.create_strip(id(0), SIZE, 0, &[], 1).expect("create");
    let new = pattern(id(0).oid, 512, 2, 1024);
    store
        .prepare_strip(id(0), write(7, 512, &new))
        .expect("prepare");
    // The strip file is untouched, and the read says a write is pending.
    let mut buf = vec![0; 1024];
    let pending = store.read_strip(id(0), 512, &mut buf).expect("read");
    assert_eq!(buf, vec![0; 1024]);
    let p = pending.expect("pending");
    assert_eq!((p.wid, p.epoch, p.offset, p.len), (7, 3, 512, 1024));
    assert!(p.age.is_some());
    // The same prepare again is fine; another one is refused while 7 is pending.
    store
        .prepare_strip(id(0), write(7, 512, &new))
        .expect("same again");
    assert!(matches!(
        store.prepare_strip(id(0), write(8, 0, b"x")),
        Err(StoreError::StripInDoubt { wid: 7, .. })
    ));
    assert!(matches!(
        store.complete_strip(id(0), 8),
        Err(StoreError::UnknownWrite { wid: 8, .. })
    ));
    store.complete_strip(id(0), 7).expect("complete");
    store.complete_strip(id(0), 7).expect("complete twice");
    assert_eq!(read(&store, id(0), 512, 1024), new);
    let log = store.strip_log(id(0)).expect("log");
    assert_eq!(log.pending, None);
    assert!(log.has_complete(7));
    assert_eq!(log.latest_complete(), 7);
    assert_eq!(log.version, 3);
    assert!(matches!(
        store.discard_strip_write(id(0), 7),
        Err(StoreError::WriteComplete { wid: 7, .. })
    ));
    // Out of the strip: refused, nothing logged.
    assert!(matches!(
        store.prepare_strip(id(0), write(9, SIZE - 1, b"ab")),
        Err(StoreError::StripOutOfBounds { .. })
    ));
    assert_eq!(store.strip_log(id(0)).expect("log").pending, None);
}

#[test]
fn a_discarded_write_never_shows() {
    let (_tmp, store) = new_store(SyncMode::Writethrough);
    let old = pattern(id(1).oid, 0, 1, 4096);
    store.create_strip(id(1), SIZE, 0, &old, 1).expect("create");
    store
        .prepare_strip(id(1), write(5, 0, &[0xAB; 4096]))
        .expect("prepare");
    store.discard_strip_write(id(1), 5).expect("discard");
    store.discard_strip_write(id(1), 5).expect("discard twice");
    assert_eq!(read(&store, id(1), 0, 4096), old);
    assert_eq!(store.strip_log(id(1)).expect("log").pending, None);
    // The next write goes where the discarded one was, and survives a restart.
    let new = pattern(id(1).oid, 0, 2, 4096);
    store
        .prepare_strip(id(1), write(6, 0, &new))
        .expect("prepare");
    store.complete_strip(id(1), 6).expect("complete");
    assert_eq!(read(&store, id(1), 0, 4096), new);
}

#[test]
fn restart_keeps_pending_writes_pending_and_complete_ones_applied() {
    let (tmp, store) = new_store(SyncMode::Writethrough);
    store.create_strip(id(3), SIZE, 0, &[], 1).expect("create");
    let a = pattern(id(3).oid, 0, 1, 2048);
    let b = pattern(id(3).oid, 1024, 2, 2048);
    let c = pattern(id(3).oid, 8192, 3, 512);
    store
        .prepare_strip(id(3), write(1, 0, &a))
        .expect("prepare a");
    store.complete_strip(id(3), 1).expect("complete a");
    store
        .prepare_strip(id(3), write(2, 1024, &b))
        .expect("prepare b");
    store.complete_strip(id(3), 2).expect("complete b");
    store
        .prepare_strip(id(3), write(3, 8192, &c))
        .expect("prepare c");
    drop(store);
    // A power cut lost the page cache: the strip file never got a and b.
    let base = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp.path().join("obj/0012345600000007_3"))
        .expect("open strip file");
    base.write_all_at(&[0; 4096], 0)
        .expect("undo the page cache");
    drop(base);

    let store = open_at(tmp.path(), SyncMode::Writethrough);
    let mut expect = a.clone();
    expect.resize(1024, 0);
    expect.extend_from_slice(&b);
    assert_eq!(read(&store, id(3), 0, 3072), expect, "a then b, in order");
    let log = store.strip_log(id(3)).expect("log");
    let p = log.pending.expect("c is still pending");
    assert_eq!((p.wid, p.offset, p.len, p.age), (3, 8192, 512, None));
    assert_eq!(log.latest_complete(), 2);
    assert_eq!(read(&store, id(3), 8192, 512), vec![0; 512]);
    store.complete_strip(id(3), 3).expect("resolved: complete");
    assert_eq!(read(&store, id(3), 8192, 512), c);
}

#[test]
fn checkpoints_empty_the_log_and_keep_the_last_write() {
    let (tmp, store) = new_store(SyncMode::Writethrough);
    store.create_strip(id(4), SIZE, 0, &[], 1).expect("create");
    let log_path = tmp.path().join("obj/0012345600000007_4.log");
    let mut last = Vec::new();
    // Enough writes for the log to checkpoint itself at least once.
    for wid in 1..=100u64 {
        last = pattern(id(4).oid, wid * 512, wid, 512);
        store
            .prepare_strip(id(4), write(wid, wid * 512, &last))
            .expect("prepare");
        store.complete_strip(id(4), wid).expect("complete");
    }
    assert!(std::fs::metadata(&log_path).expect("stat").len() < 64 * 600);
    assert_eq!(
        store
            .checkpoint_idle_strips(std::time::Duration::ZERO)
            .expect("checkpoint"),
        1
    );
    assert_eq!(std::fs::metadata(&log_path).expect("stat").len(), 32);
    let log = store.strip_log(id(4)).expect("log");
    assert_eq!((log.last_wid, log.latest_complete()), (100, 100));
    assert!(log.has_complete(100));
    assert_eq!(read(&store, id(4), 100 * 512, 512), last);
    drop(store);
    let store = open_at(tmp.path(), SyncMode::Writethrough);
    for wid in 1..=100u64 {
        assert_eq!(
            read(&store, id(4), wid * 512, 512),
            pattern(id(4).oid, wid * 512, wid, 512)
        );
    }
    assert_eq!(store.strip_log(id(4)).expect("log").last_wid, 100);
}

#[test]
fn records_of_an_old_generation_or_torn_ones_end_the_log() {
    let (tmp, store) = new_store(SyncMode::Writethrough);
    store.create_strip(id(5), SIZE, 0, &[], 1).expect("create");
    store
        .prepare_strip(id(5), write(1, 0, &[1; 512]))
        .expect("prepare");
    store.complete_strip(id(5), 1).expect("complete");
    store
        .prepare_strip(id(5), write(2, 512, &[2; 512]))
        .expect("prepare");
    drop(store);
    // Tear the last record: its data is cut short.
    let log_path = tmp.path().join("obj/0012345600000007_5.log");
    let len = std::fs::metadata(&log_path).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log_path)
        .and_then(|f| f.set_len(len - 100))
        .expect("tear");
    let store = open_at(tmp.path(), SyncMode::Writethrough);
    let log = store.strip_log(id(5)).expect("log");
    // Write 1 is the last record left: it comes back pending (resolution decides).
    assert_eq!(log.pending.map(|p| p.wid), Some(1));
    assert_eq!(read(&store, id(5), 512, 512), vec![0; 512]);
}

#[test]
fn create_replaces_and_remove_removes() {
    let (tmp, store) = new_store(SyncMode::Writeback);
    store
        .create_strip(id(6), SIZE, 0, &[7; 100], 1)
        .expect("create");
    store
        .prepare_strip(id(6), write(1, 0, &[8; 100]))
        .expect("prepare");
    store
        .create_strip(id(6), SIZE, 0, &[9; 100], 2)
        .expect("replace");
    assert_eq!(read(&store, id(6), 0, 100), vec![9; 100]);
    assert_eq!(store.strip_log(id(6)).expect("log").pending, None);
    store.remove_strip(id(6)).expect("remove");
    assert!(matches!(
        store.remove_strip(id(6)),
        Err(StoreError::NoStrip(_))
    ));
    assert!(!tmp.path().join("obj/0012345600000007_6").exists());
    assert!(!tmp.path().join("obj/0012345600000007_6.log").exists());
    assert!(matches!(
        store.prepare_strip(id(6), write(2, 0, b"x")),
        Err(StoreError::NoStrip(_))
    ));
    // Format removes strips and their logs too.
    store.create_strip(id(6), SIZE, 0, &[], 1).expect("create");
    store.purge().expect("purge");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("obj"))
            .expect("ls")
            .count(),
        0
    );
}
