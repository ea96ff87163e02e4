//! Metadata files: atomic replace, read back, name checks.

use sd_store::StoreError;
use sd_store::meta::{read_file, write_file_atomic};

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    assert_eq!(read_file(dir, "config").expect("read"), None);
    write_file_atomic(dir, "config", b"first").expect("write");
    assert_eq!(
        read_file(dir, "config").expect("read").as_deref(),
        Some(&b"first"[..])
    );
    write_file_atomic(dir, "config", b"2nd").expect("replace");
    assert_eq!(
        read_file(dir, "config").expect("read").as_deref(),
        Some(&b"2nd"[..])
    );
    assert!(!dir.join("config.tmp").exists());

    write_file_atomic(dir, "epoch/00000001", &[1; 80]).expect("nested");
    assert!(dir.join("epoch").is_dir());
    assert_eq!(
        read_file(dir, "epoch/00000001").expect("read"),
        Some(vec![1; 80])
    );
    assert_eq!(read_file(dir, "epoch/00000002").expect("read"), None);
    write_file_atomic(dir, "empty", &[]).expect("empty");
    assert_eq!(read_file(dir, "empty").expect("read"), Some(vec![]));
}

#[test]
fn rejects_names_outside_the_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("base");
    for bad in ["../x", "/etc/x", "epoch/../../x", ""] {
        let err = write_file_atomic(&dir, bad, b"x").expect_err("write");
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
        let err = read_file(&dir, bad).expect_err("read");
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    assert!(!tmp.path().join("x").exists());
    assert!(!dir.exists(), "a rejected name writes nothing");
}

#[test]
fn stale_tmp_is_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("config.tmp"), b"crashed mid-write, longer").expect("tmp");
    write_file_atomic(tmp.path(), "config", b"ok").expect("write");
    assert_eq!(
        read_file(tmp.path(), "config").expect("read"),
        Some(b"ok".to_vec())
    );
}
