//! The NBD export (`sheep --nbd ADDR:PORT`) driven by real NBD clients against a 3-sheep
//! cluster: qemu-img convert/compare/info, qemu-io patterns with FUA, discard and write
//! zeroes, nbdinfo's flags, a fio verify run, FLUSH on one connection covering another's
//! writeback data across a SIGKILL of the other copies, an unknown export, and snapshot
//! exports. What the clients wrote is checked byte for byte through `dog vdi read` on
//! another node.
//!
//! Needs qemu-utils (qemu-img, qemu-io), libnbd-bin (nbdinfo) and fio.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_proto::Vid;
use sd_proto::stat::WritebackStat;
use sd_testkit::{Cluster, assert_same_bytes, pattern, poll_until, random_seed, req};

use crate::common::{OBJ_LEN, OBJ_SIZE};

const MIB: u64 = 1 << 20;
/// How long one client tool run may take (the whole test is stopped after 2 minutes).
const TOOL_TIMEOUT: Duration = Duration::from_secs(100);
/// Writeback with the background flusher out of the way (10 minutes), so that only an NBD
/// FLUSH makes the data durable.
const WB_NO_AUTO_FLUSH: &[&str] = &["-W", "--writeback-max-age", "600000"];

/// What a client tool run produced.
struct ToolOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl ToolOutput {
    /// Panics with everything the tool said unless it exited 0; returns stdout.
    #[track_caller]
    fn ok(self, what: &str) -> String {
        assert!(
            self.status.success(),
            "{what}: {}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }
}

/// Reads a pipe to its end on a thread.
fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Spawns `program ARGS` with stdin on `stdin`, stdout and stderr piped; a missing tool
/// fails with an install hint.
fn spawn(program: &str, args: &[&str], stdin: Stdio, cwd: Option<&Path>) -> Child {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let package = match program {
                "nbdinfo" => "libnbd-bin",
                "fio" => "fio",
                _ => "qemu-utils",
            };
            panic!("{program} is not installed (apt-get install -y {package})")
        }
        Err(e) => panic!("spawning {program}: {e}"),
    }
}

/// Runs `program ARGS` (in `cwd`) to completion, killing it after [`TOOL_TIMEOUT`].
fn tool_in(program: &str, args: &[&str], cwd: Option<&Path>) -> ToolOutput {
    let t = Instant::now();
    let mut child = spawn(program, args, Stdio::null(), cwd);
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let waited = poll_until(TOOL_TIMEOUT, program, || Ok(child.try_wait()?));
    let status = match waited {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{program} {args:?}: {e:#}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    eprintln!(
        "{program} {}: {status} in {:.2?}",
        args.join(" "),
        t.elapsed()
    );
    ToolOutput {
        status,
        stdout,
        stderr,
    }
}

fn tool(program: &str, args: &[&str]) -> ToolOutput {
    tool_in(program, args, None)
}

/// `qemu-io -f raw -c CMD... URI` (one connection for the whole script).
fn qemu_io(uri: &str, script: &[&str]) -> ToolOutput {
    let mut args = vec!["-f", "raw"];
    for cmd in script {
        args.extend(["-c", cmd]);
    }
    args.push(uri);
    tool("qemu-io", &args)
}

/// Panics unless a qemu-io run succeeded with no failed command (qemu-io reports a failed
/// `read -P` as "Pattern verification failed" and a failed request as "... failed: ...").
#[track_caller]
fn assert_qemu_io_ok(out: ToolOutput, what: &str) -> String {
    let stdout = out.ok(what);
    assert!(
        !stdout.contains("fail") && !stdout.contains("error"),
        "{what}: {stdout}"
    );
    stdout
}

/// The JSON text with all whitespace removed, for substring checks.
fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A formatted 3-sheep cluster (copies=3, `extra` for every node) whose node 0 exports
/// NBD, holding VDI `name` of `size` bytes created with `dog vdi create`. Returns the
/// cluster and the export's URI.
fn nbd_cluster(extra: &[&str], name: &str, size: u64) -> (Cluster, String) {
    nbd_cluster_copies(extra, name, size, "3")
}

/// [`nbd_cluster`] with the VDI created `-c copies` (`N` or an erasure code `D:P`).
fn nbd_cluster_copies(extra: &[&str], name: &str, size: u64, copies: &str) -> (Cluster, String) {
    let mut c = Cluster::start_nbd(3, extra, &[0]).unwrap();
    c.format(3).unwrap();
    c.dog(
        0,
        &["vdi", "create", "-c", copies, name, &size.to_string()],
        None,
    )
    .unwrap()
    .check_success("dog vdi create")
    .unwrap();
    let uri = c.nbd_uri(0, name);
    (c, uri)
}

/// Whether node `i` stores `oid`: a whole copy, or a strip of it.
fn holds(c: &Cluster, i: usize, oid: sd_proto::Oid) -> bool {
    c.object_path(i, oid).exists() || c.strips_on_disk(i).unwrap().iter().any(|(o, _)| *o == oid)
}

/// The vid of working VDI `name` (GET_VDI_INFO through node `i`).
fn vid_of(c: &Cluster, i: usize, name: &str) -> Vid {
    let rsp = c
        .connect(i)
        .unwrap()
        .call_ok(&req::get_vdi_info(), &req::name_field(name))
        .unwrap();
    rsp.header.vdi().vid().expect("GET_VDI_INFO vid in range")
}

/// `dog vdi read NAME OFFSET LEN` through node `i` returns exactly `expected`.
#[track_caller]
fn assert_dog_reads(c: &Cluster, i: usize, name: &str, offset: u64, expected: &[u8], what: &str) {
    let (off, len) = (offset.to_string(), expected.len().to_string());
    let out = c.dog(i, &["vdi", "read", name, &off, &len], None).unwrap();
    out.check_success(what).unwrap();
    assert_same_bytes(&out.stdout, expected, what);
}

/// Dirty objects of `vid` on node `i` (STAT_WRITEBACK).
fn dirty_objects(c: &Cluster, i: usize, vid: Vid) -> u64 {
    let rsp = c
        .connect(i)
        .unwrap()
        .call_ok(&req::stat_writeback(vid), &[])
        .unwrap_or_else(|e| panic!("STAT_WRITEBACK on node {i}: {e:#}"));
    WritebackStat::decode(&rsp.payload).unwrap().dirty_objects
}

/// Converts a length in the VDI to an index into a test image.
fn at(v: u64) -> usize {
    usize::try_from(v).unwrap()
}

#[test]
fn qemu_img_convert_and_compare() {
    let t0 = Instant::now();
    const SIZE: u64 = 256 * MIB;
    let (mut c, uri) = nbd_cluster(&[], "img", SIZE);

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let t = Instant::now();
    let image = pattern(random_seed(), 0, at(SIZE));
    std::fs::write(&src, &image).unwrap();
    eprintln!("256 MiB source image made in {:.2?}", t.elapsed());
    let src = src.to_str().unwrap();

    let info = tool("qemu-img", &["info", "-f", "raw", &uri]).ok("qemu-img info");
    assert!(
        info.contains("virtual size: 256 MiB (268435456 bytes)"),
        "{info}"
    );
    let t = Instant::now();
    tool(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", src, &uri],
    )
    .ok("qemu-img convert");
    eprintln!(
        "qemu-img convert of 256 MiB over NBD (copies=3): {:.2?}",
        t.elapsed()
    );
    let cmp = tool(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "raw", src, &uri],
    )
    .ok("qemu-img compare");
    assert!(cmp.contains("Images are identical"), "{cmp}");

    // The same bytes through another gateway, over object boundaries and unaligned.
    for (i, offset, len) in [
        (1, 0, MIB),
        (2, 3 * OBJ_SIZE - 12_345, 2 * OBJ_SIZE + 777),
        (1, SIZE - OBJ_SIZE - 1, OBJ_SIZE + 1),
    ] {
        let want = &image[at(offset)..at(offset + len)];
        assert_dog_reads(
            &c,
            i,
            "img",
            offset,
            want,
            &format!("dog vdi read img {offset} {len} through node {i}"),
        );
    }
    c.sheep_mut(0).check_alive().unwrap();
    eprintln!("qemu_img_convert_and_compare: {:.2?}", t0.elapsed());
}

#[test]
fn qemu_io_patterns_fua_discard_zero() {
    qemu_io_patterns("3");
}

/// The same on an erasure-coded VDI (2:1 on the 3 nodes: each holds one strip of every
/// object).
#[test]
fn qemu_io_patterns_fua_discard_zero_erasure_coded() {
    qemu_io_patterns("2:1");
}

fn qemu_io_patterns(copies: &str) {
    let t0 = Instant::now();
    const SIZE: u64 = 64 * MIB;
    let (mut c, uri) = nbd_cluster_copies(&[], "pat", SIZE, copies);
    let vid = vid_of(&c, 0, "pat");
    // Objects 1 ([4M, 8M)) and 4 ([16M, 20M)) are written whole, then freed whole: object
    // 1 by a discard, object 4 by write -z.
    let writes = [
        "write -P 0xab 0 64k",
        "read -P 0xab 0 64k",
        "write -f -P 0xcd 64k 64k",
        "read -P 0xcd 64k 64k",
        "write -P 0xee 4M 4M",
        "read -P 0xee 4M 4M",
        "write -P 0x22 8M 1M",
        "write -P 0x11 12M 64k",
        "write -P 0x33 16M 4M",
        "read -P 0x33 16M 4M",
        "flush",
    ];
    let t = Instant::now();
    assert_qemu_io_ok(qemu_io(&uri, &writes), "qemu-io writes");
    eprintln!("qemu-io writes: {:.2?}", t.elapsed());
    for obj in [1u32, 4] {
        let oid = vid.data_oid(obj);
        for i in 0..3 {
            assert!(
                holds(&c, i, oid),
                "node {i} lacks {oid} (object {obj} of {vid}) after it was written"
            );
        }
    }
    let frees = [
        "discard 4M 4M",
        "read -P 0 4M 4M",
        "discard 8320k 256k",
        "read -P 0x22 8M 128k",
        "read -P 0 8320k 256k",
        "read -P 0x22 8576k 640k",
        "write -z 12M 32k",
        "read -P 0 12M 32k",
        "read -P 0x11 12320k 32k",
        "write -z 16M 4M",
        "read -P 0 16M 4M",
        "write -P 0x77 1000001 3333",
        "read -P 0x77 1000001 3333",
        "write -f -P 0x5a 24572k 8k",
        "read -P 0x5a 24572k 8k",
        "flush",
    ];
    let t = Instant::now();
    assert_qemu_io_ok(qemu_io(&uri, &frees), "qemu-io discard and zero");
    eprintln!("qemu-io discard and zero: {:.2?}", t.elapsed());

    // The same bytes through another gateway, for the first 32 MiB (which hold every write).
    let mut want = vec![0u8; at(32 * MIB)];
    let mut fill = |off: u64, len: u64, b: u8| want[at(off)..at(off + len)].fill(b);
    fill(0, 64 << 10, 0xab);
    fill(64 << 10, 64 << 10, 0xcd);
    fill(8 * MIB, MIB, 0x22);
    fill(8320 << 10, 256 << 10, 0);
    fill(12 * MIB, 64 << 10, 0x11);
    fill(12 * MIB, 32 << 10, 0);
    fill(1_000_001, 3333, 0x77);
    fill(24572 << 10, 8 << 10, 0x5a);
    assert_dog_reads(
        &c,
        1,
        "pat",
        0,
        &want,
        "dog vdi read pat 0 32M through node 1",
    );
    // A fresh connection agrees, through the exporting node.
    assert_qemu_io_ok(
        qemu_io(
            &uri,
            &[
                "read -P 0 4M 4M",
                "read -P 0 16M 4M",
                "read -P 0xcd 64k 64k",
                "read -P 0x5a 24572k 8k",
            ],
        ),
        "qemu-io read-back",
    );

    // The wholly discarded / zeroed objects are no longer in the VDI: dog reads them as
    // zeros through another node, and no node keeps their files.
    for obj in [1u32, 4] {
        let off = u64::from(obj) * OBJ_SIZE;
        assert_dog_reads(
            &c,
            2,
            "pat",
            off,
            &vec![0; OBJ_LEN as usize],
            &format!("object {obj} through node 2"),
        );
        let oid = vid.data_oid(obj);
        // Clearing the index entry removes the object before the request is answered.
        let kept: Vec<usize> = (0..3).filter(|i| holds(&c, *i, oid)).collect();
        assert!(
            kept.is_empty(),
            "{oid} (object {obj} of {vid}, freed by NBD discard/zero) still on nodes {kept:?}"
        );
    }
    c.sheep_mut(0).check_alive().unwrap();
    eprintln!("qemu_io_patterns (-c {copies}): {:.2?}", t0.elapsed());
}

#[test]
fn nbdinfo_flags() {
    const SIZE: u64 = 96 * MIB;
    let (c, uri) = nbd_cluster(&[], "flags", SIZE);
    let json = squeeze(&tool("nbdinfo", &["--json", &uri]).ok("nbdinfo --json"));
    for want in [
        "\"export-name\":\"flags\"".to_string(),
        format!("\"export-size\":{SIZE}"),
        "\"is_read_only\":false".into(),
        "\"can_flush\":true".into(),
        "\"can_fua\":true".into(),
        "\"can_trim\":true".into(),
        "\"can_zero\":true".into(),
        "\"can_multi_conn\":true".into(),
    ] {
        assert!(json.contains(&want), "{want} not in {json}");
    }
    // The export list names the VDI.
    let list =
        squeeze(&tool("nbdinfo", &["--list", "--json", &c.nbd_uri(0, "")]).ok("nbdinfo --list"));
    assert!(list.contains("\"export-name\":\"flags\""), "{list}");
}

#[test]
fn fio_verify() {
    let t0 = Instant::now();
    let (mut c, uri) = nbd_cluster(&[], "fio", 64 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let uri_arg = format!("--uri={uri}");
    let out = tool_in(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &uri_arg,
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=32",
            "--size=64M",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--randrepeat=0",
            "--verify_state_save=0",
            "--output-format=json",
        ],
        Some(dir.path()),
    );
    let stdout = out.ok("fio");
    let json = squeeze(&stdout);
    // One job; its error and every per-direction error count are 0.
    let errors: Vec<&str> = json
        .match_indices("\"error\":")
        .map(|(k, _)| &json[k..(k + 12).min(json.len())])
        .collect();
    assert!(!errors.is_empty(), "no error field in fio's JSON: {stdout}");
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("\"error\":0,") || e.starts_with("\"error\":0}")),
        "fio reported errors {errors:?}: {stdout}"
    );
    // Both passes moved all 64 MiB: the writes, then the verifying reads.
    let bytes = format!("\"io_bytes\":{}", 64 * MIB);
    assert_eq!(
        json.matches(&bytes).count(),
        2,
        "want 64 MiB written and 64 MiB verified: {stdout}"
    );
    c.sheep_mut(0).check_alive().unwrap();
    eprintln!("fio_verify: {:.2?}", t0.elapsed());
}

/// An interactive `qemu-io` process: one NBD connection held open across commands.
struct QemuIo {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
    seen: usize,
}

/// qemu-io's prompt, printed when it is ready for the next command.
const PROMPT: &str = "qemu-io> ";

impl QemuIo {
    /// Starts `qemu-io ARGS URI` and waits for its first prompt (the export is open).
    fn open(args: &[&str], uri: &str) -> QemuIo {
        let mut all = args.to_vec();
        all.push(uri);
        let mut child = spawn("qemu-io", &all, Stdio::piped(), None);
        let stdin = child.stdin.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    out.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let mut q = QemuIo {
            child,
            stdin,
            out,
            seen: 0,
        };
        let first = q.until_prompt("qemu-io to open the export");
        assert!(first.is_empty(), "qemu-io said {first:?} on opening {uri}");
        q
    }

    /// Waits for the next prompt; returns what qemu-io printed before it.
    fn until_prompt(&mut self, what: &str) -> String {
        let seen = self.seen;
        let got = poll_until(TOOL_TIMEOUT, what, || {
            let out = self.out.lock().unwrap();
            let text = String::from_utf8_lossy(&out[seen..]).into_owned();
            if let Some(k) = text.find(PROMPT) {
                return Ok(Some((k, text)));
            }
            if let Some(status) = self.child.try_wait()? {
                let e = std::io::Error::other(format!("qemu-io exited with {status}: {text}"));
                return Err(e.into());
            }
            Ok(None)
        });
        let (k, text) = got.unwrap_or_else(|e| panic!("{e:#}"));
        self.seen = seen + k + PROMPT.len();
        text[..k].to_string()
    }

    /// Runs one command; panics unless its output contains `expect`.
    #[track_caller]
    fn run(&mut self, cmd: &str, expect: &str) -> String {
        let t = Instant::now();
        writeln!(self.stdin, "{cmd}").unwrap();
        let out = self.until_prompt(cmd);
        eprintln!("qemu-io (held open) {cmd}: {:.2?}", t.elapsed());
        assert!(
            out.contains(expect) && !out.contains("fail"),
            "qemu-io {cmd}: {out:?}, want {expect:?}"
        );
        out
    }
}

impl Drop for QemuIo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_connections_flush_then_sigkill() {
    let t0 = Instant::now();
    const SIZE: u64 = 32 * MIB;
    const FIRST: u64 = 16 * MIB;
    let (second_off, second_len) = (2 * MIB + 4321, 12 * MIB);
    let (mut c, uri) = nbd_cluster(WB_NO_AUTO_FLUSH, "wb", SIZE);
    let vid = vid_of(&c, 0, "wb");

    let seed = random_seed();
    let first = pattern(seed, 0, at(FIRST));
    let second = pattern(seed ^ 1, second_off, at(second_len));
    let mut image = vec![0u8; at(SIZE)];
    image[..at(FIRST)].copy_from_slice(&first);
    image[at(second_off)..at(second_off + second_len)].copy_from_slice(&second);
    let dir = tempfile::tempdir().unwrap();
    let (first_f, second_f, image_f) = (
        dir.path().join("first"),
        dir.path().join("second"),
        dir.path().join("image"),
    );
    std::fs::write(&first_f, &first).unwrap();
    std::fs::write(&second_f, &second).unwrap();
    std::fs::write(&image_f, &image).unwrap();

    // Connection A, with QEMU's flushes off (cache=unsafe): it writes objects 0..4 (new
    // objects, created durably), then overwrites part of each (dirty in writeback mode),
    // and stays open.
    let mut a = QemuIo::open(&["-t", "unsafe", "-f", "raw"], &uri);
    a.run(
        &format!("write -s {} 0 {FIRST}", first_f.display()),
        &format!("wrote {FIRST}/{FIRST} bytes at offset 0"),
    );
    a.run(
        &format!("write -s {} {second_off} {second_len}", second_f.display()),
        &format!("wrote {second_len}/{second_len} bytes at offset {second_off}"),
    );
    // Every replica holds the four overwritten data objects dirty (and the inode, whose
    // index entries were written, may count too).
    let before: Vec<u64> = (0..3).map(|i| dirty_objects(&c, i, vid)).collect();
    eprintln!("dirty objects of {vid} before the flush: {before:?}");
    for (i, d) in before.iter().enumerate() {
        assert!(
            *d >= 4,
            "node {i}: {d} dirty objects of {vid} before any flush"
        );
    }

    // Connection B only flushes (CAN_MULTI_CONN: it covers A's writes).
    assert_qemu_io_ok(
        qemu_io(&uri, &["flush"]),
        "qemu-io flush on a second connection",
    );
    let after: Vec<u64> = (0..3).map(|i| dirty_objects(&c, i, vid)).collect();
    assert_eq!(
        after,
        vec![0, 0, 0],
        "dirty objects of {vid} after B's flush"
    );

    // A power cut of both other copies; the survivor (the exporter) serves everything.
    c.kill9(1).unwrap();
    c.kill9(2).unwrap();
    let cmp = tool(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            image_f.to_str().unwrap(),
            &uri,
        ],
    )
    .ok("qemu-img compare through the survivor");
    assert!(cmp.contains("Images are identical"), "{cmp}");
    // Connection A, open across the kills, still reads.
    a.run(
        &format!("read -P 0 {FIRST} {}", SIZE - FIRST),
        &format!("read {}/{} bytes", SIZE - FIRST, SIZE - FIRST),
    );
    assert_dog_reads(
        &c,
        0,
        "wb",
        0,
        &image,
        "dog vdi read wb through the survivor",
    );
    c.sheep_mut(0).check_alive().unwrap();
    eprintln!("two_connections_flush_then_sigkill: {:.2?}", t0.elapsed());
}

#[test]
fn unknown_export_is_refused() {
    let (mut c, uri) = nbd_cluster(&[], "known", 16 * MIB);
    let nope = c.nbd_uri(0, "nope");
    let out = tool("nbdinfo", &[&nope]);
    assert!(!out.status.success(), "nbdinfo {nope}: {}", out.stdout);
    assert!(
        out.stderr.contains("export: nope") || out.stderr.contains("\"nope\""),
        "nbdinfo does not name the export: {}",
        out.stderr
    );
    // qemu shows the server's NBD_REP_ERR_UNKNOWN message.
    let out = tool("qemu-img", &["info", "-f", "raw", &nope]);
    assert!(
        !out.status.success(),
        "qemu-img info {nope}: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("no such export: \"nope\""),
        "{}",
        out.stderr
    );
    // The sheep still serves, the real export and the cluster.
    c.sheep_mut(0).check_alive().unwrap();
    let json = squeeze(&tool("nbdinfo", &["--json", &uri]).ok("nbdinfo known"));
    assert!(
        json.contains(&format!("\"export-size\":{}", 16 * MIB)),
        "{json}"
    );
    c.dog(0, &["vdi", "list"], None)
        .unwrap()
        .check_success("dog vdi list")
        .unwrap();
}

#[test]
fn snapshot_export_refuses_writes() {
    let (mut c, uri) = nbd_cluster(&[], "snap", 16 * MIB);
    assert_qemu_io_ok(
        qemu_io(&uri, &["write -P 0x5a 0 1M", "flush"]),
        "qemu-io write before the snapshot",
    );
    c.dog(0, &["vdi", "snapshot", "snap"], None)
        .unwrap()
        .check_success("dog vdi snapshot")
        .unwrap();
    let snap_uri = c.nbd_uri(0, "snap@1");
    // The working VDI moves on (the export follows it to its new vid); the snapshot keeps
    // the old bytes, read-only.
    assert_qemu_io_ok(
        qemu_io(&uri, &["write -P 0xa5 0 64k", "read -P 0xa5 0 64k"]),
        "qemu-io write after the snapshot",
    );
    let json = squeeze(&tool("nbdinfo", &["--json", &snap_uri]).ok("nbdinfo snap@1"));
    assert!(json.contains("\"is_read_only\":true"), "{json}");
    assert_qemu_io_ok(
        tool(
            "qemu-io",
            &["-r", "-f", "raw", "-c", "read -P 0x5a 0 1M", &snap_uri],
        ),
        "qemu-io read snap@1",
    );
    let out = tool("qemu-io", &["-f", "raw", "-c", "write 0 4k", &snap_uri]);
    assert!(
        !out.status.success() || out.stdout.contains("fail"),
        "qemu-io wrote to snap@1: {}",
        out.stdout
    );
    assert_dog_reads(&c, 1, "snap", 0, &[0xa5; 64 << 10], "working VDI after");
    // The working VDI still holds what was written before, past the new write.
    assert_dog_reads(
        &c,
        2,
        "snap",
        64 << 10,
        &[0x5a; (1 << 20) - (64 << 10)],
        "working VDI through node 2",
    );
    c.sheep_mut(0).check_alive().unwrap();
}
