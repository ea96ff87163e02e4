//! Real NBD clients against the server: nbdinfo (libnbd), qemu-img, qemu-io and fio
//! (ioengine=nbd), with byte-exact checks of the in-memory device afterwards.

use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::mem::{MemDev, MemExports};
use super::{DEADLINE, Server};

const SIZE: usize = 16 << 20;

/// Runs a client tool with the test deadline; a missing tool fails with an install hint.
async fn tool(program: &str, args: &[&str]) -> Output {
    tool_in(program, args, None).await
}

/// [`tool`] with a working directory (for tools that leave files behind).
async fn tool_in(program: &str, args: &[&str], dir: Option<&std::path::Path>) -> Output {
    let package = match program {
        "nbdinfo" => "libnbd-bin",
        "fio" => "fio",
        _ => "qemu-utils",
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    match tokio::time::timeout(DEADLINE, cmd.output()).await {
        Err(_) => panic!("{program} {args:?} did not finish within {DEADLINE:?}"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{program} is not installed (apt-get install -y {package})")
        }
        Ok(Err(e)) => panic!("{program}: {e}"),
        Ok(Ok(out)) => out,
    }
}

/// Asserts success and returns stdout.
fn ok(program: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The pattern byte at `i` for the test with seed `seed` (not a multiple of block sizes, so
/// misplaced blocks show).
fn pattern(seed: u64, i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
    (x >> 29) as u8
}

fn one_disk() -> (Arc<MemDev>, MemExports) {
    let dev = MemDev::new(SIZE);
    let exports = MemExports::default()
        .with("disk", Arc::clone(&dev))
        .with("ro", MemDev::read_only(vec![7; 1 << 20]));
    (dev, exports)
}

/// The JSON text with all whitespace removed, for substring checks.
fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_shows_size_flags_and_exports() {
    let (_dev, exports) = one_disk();
    let server = Server::start(exports).await;

    let json = squeeze(&ok(
        "nbdinfo",
        &tool("nbdinfo", &["--json", &server.uri("disk")]).await,
    ));
    for want in [
        "\"export-name\":\"disk\"",
        "\"description\":\"in-memorytestdevice\"",
        "\"export-size\":16777216",
        "\"is_read_only\":false",
        "\"can_flush\":true",
        "\"can_fua\":true",
        "\"can_trim\":true",
        "\"can_zero\":true",
        "\"can_multi_conn\":true",
        "\"can_df\":true",
        "\"block_size_minimum\":1",
        "\"block_size_preferred\":4096",
        "\"block_size_maximum\":33554432",
    ] {
        assert!(json.contains(want), "{want} not in {json}");
    }

    let json = squeeze(&ok(
        "nbdinfo",
        &tool("nbdinfo", &["--json", &server.uri("ro")]).await,
    ));
    for want in [
        "\"export-size\":1048576",
        "\"is_read_only\":true",
        "\"can_trim\":false",
    ] {
        assert!(json.contains(want), "{want} not in {json}");
    }

    let list = ok(
        "nbdinfo",
        &tool("nbdinfo", &["--list", "--json", &server.uri("")]).await,
    );
    let list = squeeze(&list);
    assert!(list.contains("\"export-name\":\"disk\""), "{list}");
    assert!(list.contains("\"export-name\":\"ro\""), "{list}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_export_is_a_clean_error() {
    let (_dev, exports) = one_disk();
    let server = Server::start(exports).await;
    let out = tool("nbdinfo", &[&server.uri("nope")]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    let out = tool("qemu-img", &["info", "-f", "raw", &server.uri("nope")]).await;
    assert!(!out.status.success());
    // qemu shows the server's NBD_REP_ERR_UNKNOWN message.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such export: \"nope\""), "{stderr}");
    // The server is unaffected.
    let info = ok(
        "qemu-img",
        &tool("qemu-img", &["info", "-f", "raw", &server.uri("disk")]).await,
    );
    assert!(info.contains("16 MiB (16777216 bytes)"), "{info}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_write_read_fua_discard_zero() {
    let (dev, exports) = one_disk();
    let server = Server::start(exports).await;
    let uri = server.uri("disk");
    let script = [
        "write -P 0xab 0 64k",
        "read -P 0xab 0 64k",
        "write -f -P 0xcd 64k 64k",
        "read -P 0xcd 64k 64k",
        "write -P 0xee 192k 64k",
        "discard 192k 64k",
        "write -P 0x11 256k 64k",
        "write -z 256k 32k",
        "read -P 0 256k 32k",
        "read -P 0x11 288k 32k",
        "write -P 0x77 1000001 3333",
        "read -P 0x77 1000001 3333",
        "flush",
    ];
    let mut args = vec!["-f", "raw"];
    for cmd in &script {
        args.extend(["-c", cmd]);
    }
    args.push(&uri);
    let out = ok("qemu-io", &tool("qemu-io", &args).await);
    assert!(!out.contains("fail") && !out.contains("error"), "{out}");

    assert_eq!(dev.snapshot(0, 64 << 10), vec![0xab; 64 << 10]);
    assert_eq!(dev.snapshot(64 << 10, 64 << 10), vec![0xcd; 64 << 10]);
    assert_eq!(dev.snapshot(256 << 10, 32 << 10), vec![0; 32 << 10]);
    assert_eq!(dev.snapshot(288 << 10, 32 << 10), vec![0x11; 32 << 10]);
    assert_eq!(dev.snapshot(1_000_001, 3333), vec![0x77; 3333]);
    assert_eq!(dev.snapshot(1_000_000, 1), [0]);
    assert_eq!(dev.snapshot(1_003_334, 1), [0]);
    let counts = &dev.counts;
    assert!(
        counts.fua_writes.load(Ordering::Relaxed) >= 1,
        "FUA write reached the device"
    );
    assert!(
        counts.trims.load(Ordering::Relaxed) >= 1,
        "discard became TRIM"
    );
    assert!(
        counts.zeroes.load(Ordering::Relaxed) >= 1,
        "write -z became WRITE_ZEROES"
    );
    assert!(
        counts.flushes.load(Ordering::Relaxed) >= 1,
        "flush reached the device"
    );

    // The read-only export: qemu-io reads it, and will not open it for writing (it sees
    // NBD_FLAG_READ_ONLY; the EPERM answer to writes is covered by the raw tests).
    let ro = server.uri("ro");
    ok(
        "qemu-io",
        &tool("qemu-io", &["-r", "-f", "raw", "-c", "read -P 7 0 1M", &ro]).await,
    );
    let out = tool("qemu-io", &["-f", "raw", "-c", "write 0 4k", &ro]).await;
    assert!(
        !out.status.success(),
        "qemu-io opened a read-only export for writing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_convert_then_compare() {
    let (dev, exports) = one_disk();
    let server = Server::start(exports).await;
    let uri = server.uri("disk");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.img");
    let image: Vec<u8> = (0..SIZE).map(|i| pattern(42, i)).collect();
    std::fs::write(&src, &image).expect("write image");
    let src = src.to_str().expect("utf-8 path");

    let info = ok(
        "qemu-img",
        &tool("qemu-img", &["info", "-f", "raw", &uri]).await,
    );
    assert!(
        info.contains("virtual size: 16 MiB (16777216 bytes)"),
        "{info}"
    );
    ok(
        "qemu-img",
        &tool(
            "qemu-img",
            &["convert", "-n", "-f", "raw", "-O", "raw", src, &uri],
        )
        .await,
    );
    let cmp = ok(
        "qemu-img",
        &tool(
            "qemu-img",
            &["compare", "-f", "raw", "-F", "raw", src, &uri],
        )
        .await,
    );
    assert!(cmp.contains("Images are identical"), "{cmp}");
    assert!(
        dev.snapshot(0, SIZE) == image,
        "device content differs from the image"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fio_verify_over_two_connections() {
    let (dev, exports) = one_disk();
    let server = Server::start(exports).await;
    let uri = format!("--uri={}", server.uri("disk"));
    // Two jobs (two NBD connections) on disjoint 4 MiB halves of the first 8 MiB, QD16,
    // random 4k writes with a FLUSH every 16, then read back and verified by checksum.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tool_in(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &uri,
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=16",
            "--size=4M",
            "--numjobs=2",
            "--offset_increment=4M",
            "--fsync=16",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--randrepeat=0",
            "--verify_state_save=0",
        ],
        Some(dir.path()),
    )
    .await;
    let stdout = ok("fio", &out);
    assert!(stdout.contains("err= 0"), "{stdout}");
    assert!(
        dev.counts.flushes.load(Ordering::Relaxed) >= 2,
        "fsync became FLUSH"
    );
    // fio writes every block of both regions (no blocks were left unwritten).
    let written = dev.snapshot(0, 8 << 20);
    assert!(
        written.chunks(4096).all(|b| b.iter().any(|x| *x != 0)),
        "every 4k block was written"
    );
    server.stop().await;
}
