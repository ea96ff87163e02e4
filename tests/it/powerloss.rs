//! Power loss, full disks and I/O errors, on `faultfs` (`crates/faultfs`): a FUSE file
//! system that keeps only what was made durable (fsync of a file for its data, fsync of a
//! directory for its entries, O_DSYNC/RWF_DSYNC writes) when a test cuts its power.
//!
//! First the layer itself (what survives a cut, ENOSPC, EIO), then sheep on it: clusters
//! whose every node loses power at once, in writeback and writethrough mode and during
//! membership changes, a node that runs out of space, and a replica whose reads fail.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use sd_proto::{SdResult, Vid};
use sd_testkit::{
    Cluster, FaultFs, RawClient, SETTLE_TIMEOUT, assert_same_bytes, dir_names, figure, pattern,
    random_seed, req,
};

use crate::common::{
    OBJ_LEN, OBJ_SIZE, assert_everywhere, create_vdi, vdi_with_one_object, wait_recovered,
};

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

// ---- sheep on faultfs ----------------------------------------------------------------

/// Bytes per block of the VDI model: writes are whole blocks, as a guest's are.
const BLOCK: usize = 4096;
/// Blocks per 4 MiB object.
const OBJ_BLOCKS: usize = OBJ_SIZE as usize / BLOCK;
/// Writeback with the background flusher out of the way (10 minutes): only the test's
/// FLUSH_VDIs make data durable.
const WRITEBACK: &[&str] = &["-W", "--writeback-max-age", "600000"];

/// A tiny deterministic generator (SplitMix64) for the random schedule of a test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// What each block of a VDI may hold after a power cut: the generation that is durable
/// (0: zeros), plus the generations written since it became durable (either may survive).
struct VdiModel {
    vid: Vid,
    seed: u64,
    durable: Vec<u64>,
    since: Vec<Vec<u64>>,
    created: BTreeSet<u32>,
    generation: u64,
}

impl VdiModel {
    fn new(vid: Vid, objects: usize, seed: u64) -> VdiModel {
        VdiModel {
            vid,
            seed,
            durable: vec![0; objects * OBJ_BLOCKS],
            since: vec![Vec::new(); objects * OBJ_BLOCKS],
            created: BTreeSet::new(),
            generation: 0,
        }
    }

    fn objects(&self) -> usize {
        self.durable.len() / OBJ_BLOCKS
    }

    /// The bytes of block `b` in generation `g`.
    fn block(&self, g: u64, b: usize) -> Vec<u8> {
        if g == 0 {
            return vec![0; BLOCK];
        }
        pattern(
            self.seed ^ g.wrapping_mul(0x100_0000_01b3),
            (b * BLOCK) as u64,
            BLOCK,
        )
    }

    /// Writes `blocks` blocks at block `first` through `c` (CREATE_AND_WRITE for an object
    /// not created yet, which is durable at once; WRITE_OBJ otherwise). `durable`: the
    /// write is durable when acknowledged (writethrough).
    fn write(&mut self, c: &mut RawClient, first: usize, blocks: usize, durable: bool) {
        self.generation += 1;
        let g = self.generation;
        let mut b = first;
        while b < first + blocks {
            let idx = b / OBJ_BLOCKS;
            let n = (first + blocks - b).min(OBJ_BLOCKS - b % OBJ_BLOCKS);
            let data: Vec<u8> = (b..b + n).flat_map(|k| self.block(g, k)).collect();
            let oid = self.vid.data_oid(idx as u32);
            let offset = ((b % OBJ_BLOCKS) * BLOCK) as u64;
            let create = self.created.insert(idx as u32);
            let h = if create {
                req::create_and_write_obj(oid, offset, data.len() as u32)
            } else {
                req::write_obj(oid, offset, data.len() as u32)
            };
            c.call_ok(&h, &data)
                .unwrap_or_else(|e| panic!("writing {oid} at {offset}: {e:#}"));
            for k in b..b + n {
                if durable || create {
                    self.durable[k] = g;
                    self.since[k].clear();
                } else {
                    self.since[k].push(g);
                }
            }
            if create {
                // The rest of a created object is durable zeros.
                let start = idx * OBJ_BLOCKS;
                for k in (start..start + OBJ_BLOCKS).filter(|k| !(b..b + n).contains(k)) {
                    self.durable[k] = 0;
                    self.since[k].clear();
                }
            }
            b += n;
        }
    }

    /// A FLUSH_VDI succeeded: everything written is durable.
    fn flushed(&mut self) {
        for (d, s) in self.durable.iter_mut().zip(&mut self.since) {
            if let Some(last) = s.last() {
                *d = *last;
            }
            s.clear();
        }
    }

    /// `bytes` (object `idx`, as `what` read it) hold, block by block, the durable
    /// generation or one written since; returns how many blocks hold a newer one.
    fn check_object(&self, idx: usize, bytes: &[u8], what: &str) -> usize {
        assert_eq!(bytes.len(), OBJ_SIZE as usize, "{what}: object size");
        let mut newer = 0;
        for (j, got) in bytes.chunks(BLOCK).enumerate() {
            let b = idx * OBJ_BLOCKS + j;
            if got == self.block(self.durable[b], b).as_slice() {
                continue;
            }
            let hit = self.since[b]
                .iter()
                .any(|g| got == self.block(*g, b).as_slice());
            assert!(
                hit,
                "{what}: block {j} of object {idx} holds neither its durable generation {} nor \
                 one written since ({:?}); first bytes {:02x?}",
                self.durable[b],
                self.since[b],
                &got[..16]
            );
            newer += 1;
        }
        newer
    }
}

/// FLUSH_VDI of `vid` through node `i`.
fn flush(c: &Cluster, i: usize, vid: Vid) {
    c.connect(i)
        .unwrap()
        .call_ok(&req::flush_vdi(vid), &[])
        .unwrap_or_else(|e| panic!("FLUSH_VDI through node {i}: {e:#}"));
}

/// Waits until the restarted cluster runs (every node is a member and data is served).
fn wait_running(c: &mut Cluster) {
    c.wait_members(c.len()).unwrap();
    c.poll_until(SETTLE_TIMEOUT, "the cluster to run again", |c| {
        let out = c.dog(0, &["cluster", "info"], None)?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .starts_with("Cluster status: running")
            .then_some(()))
    })
    .unwrap();
}

/// After a power cut and restart: every object the model created is on every node, whole
/// (no half-created object under its real name, no temporary file left), and each copy
/// and each read through each gateway holds durable or newer data, block by block.
fn check_after_cut(c: &mut Cluster, m: &VdiModel, test: &str) {
    wait_running(c);
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    wait_recovered(c);
    for i in 0..c.len() {
        // Temporary files of creates the cut interrupted were removed at start-up, and
        // recovery has finished its own.
        let names = dir_names(&c.dir(i).join("obj")).unwrap();
        assert!(
            names.iter().all(|n| !n.contains(".tmp")),
            "node {i} kept temporary files: {names:?}"
        );
        let on_disk = c.objects_on_disk(i).unwrap();
        for idx in &m.created {
            assert!(
                on_disk.contains(&m.vid.data_oid(*idx)),
                "node {i} lost created object {idx}: {on_disk:?}"
            );
        }
    }
    let mut newer = 0;
    for idx in 0..m.objects() {
        let oid = m.vid.data_oid(idx as u32);
        if !m.created.contains(&(idx as u32)) {
            continue;
        }
        for i in 0..c.len() {
            let file = c.read_object(i, oid).unwrap();
            newer += m.check_object(idx, &file, &format!("node {i}'s file of {oid}"));
            let rsp = c
                .connect(i)
                .unwrap()
                .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
                .unwrap_or_else(|e| panic!("READ_OBJ {oid} through node {i}: {e:#}"));
            m.check_object(idx, &rsp.payload, &format!("{oid} read through node {i}"));
        }
    }
    let pending = m.since.iter().filter(|s| !s.is_empty()).count();
    // Each created object was compared as every node's file and through every gateway.
    let verified = m.created.len() as u64 * OBJ_SIZE * 2 * c.len() as u64;
    figure(
        test,
        format_args!(
            "power cut on {} nodes; {} MiB verified; {pending} blocks not yet durable at the \
             cut, {newer} of their copies ({}x) came back newer",
            c.len(),
            verified >> 20,
            c.len()
        ),
    );
    c.check_replicas_identical().unwrap();
}

/// Random 4 KiB..1 MiB writes into a VDI, a FLUSH_VDI at random points (writeback) or
/// none (writethrough), then every node loses power; returns the model to check against.
fn write_then_cut(c: &mut Cluster, writeback: bool, seed: u64) -> VdiModel {
    const OBJECTS: usize = 6;
    const WRITES: usize = 24;
    let mut rng = Rng(seed);
    c.format(3).unwrap();
    let vid = create_vdi(
        &mut c.connect(0).unwrap(),
        "powerloss",
        (OBJECTS as u64) * OBJ_SIZE,
    );
    let mut m = VdiModel::new(vid, OBJECTS, seed);
    let total = OBJECTS * OBJ_BLOCKS;
    let mut flushes = 0;
    // One gateway, as for a VM: a flush covers the writes its gateway acknowledged.
    let gw = rng.range(0, c.len() - 1);
    let mut client = c.connect(gw).unwrap();
    for w in 0..WRITES {
        let blocks = rng.range(1, 256);
        let first = rng.range(0, total - blocks);
        m.write(&mut client, first, blocks, !writeback);
        // Flush at random, never in the last few writes, so a cut always loses some.
        if writeback && w < WRITES - 4 && rng.range(0, 3) == 0 {
            flush(c, gw, vid);
            m.flushed();
            flushes += 1;
        }
    }
    eprintln!(
        "{WRITES} writes through node {gw}, {flushes} flushes, {} objects created",
        m.created.len()
    );
    drop(client);
    let t = std::time::Instant::now();
    c.power_cut(&[0, 1, 2]).unwrap();
    for i in 0..c.len() {
        c.restart(i).unwrap();
    }
    eprintln!("power cut and restart of every node: {:.2?}", t.elapsed());
    m
}

#[test]
fn writeback_power_cut_keeps_what_was_flushed() {
    let mut c = Cluster::start_on_faultfs(3, WRITEBACK).unwrap();
    let m = write_then_cut(&mut c, true, random_seed());
    check_after_cut(&mut c, &m, "writeback_power_cut_keeps_what_was_flushed");
}

#[test]
fn writethrough_power_cut_keeps_every_acknowledged_write() {
    let mut c = Cluster::start_on_faultfs(3, &[]).unwrap();
    let m = write_then_cut(&mut c, false, random_seed());
    check_after_cut(
        &mut c,
        &m,
        "writethrough_power_cut_keeps_every_acknowledged_write",
    );
}

/// `dog cluster info` as node `i` prints it (status, creation time, epoch history).
fn cluster_info(c: &Cluster, i: usize) -> String {
    let out = c.dog(i, &["cluster", "info"], None).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Restarts every node after a cut and waits until they agree on members and epoch and
/// print the same cluster info (status, format and epoch history).
fn restart_and_agree(c: &mut Cluster, what: &str) {
    for i in 0..c.len() {
        c.restart(i)
            .unwrap_or_else(|e| panic!("{what}: node {i} does not start: {e:#}"));
    }
    let epoch = c.wait_members(c.len()).unwrap();
    let mut last = Vec::new();
    let info = c
        .poll_until(
            SETTLE_TIMEOUT,
            "every node to print the same cluster info",
            |c| {
                let infos: Vec<String> = (0..c.len()).map(|i| cluster_info(c, i)).collect();
                let agreed = infos.windows(2).all(|w| w[0] == w[1]);
                let first = infos[0].clone();
                last = infos;
                Ok(agreed.then_some(first))
            },
        )
        .unwrap_or_else(|e| panic!("{what}: {e:#}; the last infos:\n{}", last.join("\n---\n")));
    let status = info.lines().next().unwrap_or_default();
    eprintln!("{what}: every node back at epoch {}: {status}", epoch.0);
}

#[test]
fn epoch_log_and_config_survive_cuts_during_their_update() {
    let mut rng = Rng(random_seed());
    let mut c = Cluster::start_on_faultfs(3, &[]).unwrap();
    // A cut while the format is applied (config written, store purged, first epoch
    // written): the delay picks the point of the cut, from before the request reaches the
    // node to after every node applied it.
    let mut formatted = false;
    for round in 0..3 {
        let mut raw = c.connect(0).unwrap();
        raw.send(&req::make_fs(1, 3), req::STORE_PLAIN).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(rng.range(0, 20_000) as u64));
        c.power_cut(&[0, 1, 2]).unwrap();
        drop(raw);
        restart_and_agree(&mut c, &format!("cut during format {round}"));
        formatted = cluster_info(&c, 0).starts_with("Cluster status: running");
    }
    if !formatted {
        c.format(3).unwrap();
    }
    // Cuts during membership changes: a node leaves (the others write a new epoch), or
    // comes back (everyone writes one).
    for round in 0..4 {
        let victim = rng.range(0, 2);
        c.kill9(victim).unwrap();
        if round % 2 == 1 {
            c.restart(victim).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_micros(rng.range(0, 20_000) as u64));
        c.power_cut(&[0, 1, 2]).unwrap();
        restart_and_agree(&mut c, &format!("cut during membership change {round}"));
    }
    // Still formatted, and usable.
    wait_running(&mut c);
    let vid = create_vdi(&mut c.connect(1).unwrap(), "after", OBJ_SIZE);
    let data = pattern(7, 0, BLOCK);
    c.connect(2)
        .unwrap()
        .call_ok(
            &req::create_and_write_obj(vid.data_oid(0), 0, BLOCK as u32),
            &data,
        )
        .unwrap();
    let rsp = c
        .connect(0)
        .unwrap()
        .call_ok(&req::read_obj(vid.data_oid(0), 0, BLOCK as u32), &[])
        .unwrap();
    assert_eq!(rsp.payload, data);
    figure(
        "epoch_log_and_config_survive_cuts_during_their_update",
        "7 power cuts of 3 nodes (3 during a format, 4 during membership changes); every \
         node restarted and agreed after each",
    );
}

#[test]
fn a_full_disk_refuses_new_objects_with_no_space_and_recovers_when_freed() {
    const VICTIM: usize = 1;
    let seed = random_seed();
    let mut c = Cluster::start_on_faultfs(3, &[]).unwrap();
    c.format(3).unwrap();
    let vid = create_vdi(&mut c.connect(0).unwrap(), "full", 4 * OBJ_SIZE);
    let (kept, scratch, new) = (vid.data_oid(0), vid.data_oid(1), vid.data_oid(2));
    let image = pattern(seed, 0, OBJ_SIZE as usize);
    let mut gw = c.connect(0).unwrap();
    for oid in [kept, scratch] {
        gw.call_ok(&req::create_and_write_obj(oid, 0, OBJ_LEN), &image)
            .unwrap();
    }
    // Room for a few more blocks on the victim, not for another object.
    let used = c.disk(VICTIM).stat().unwrap().used;
    c.disk(VICTIM)
        .set_capacity(Some(used + 16 * BLOCK as u64))
        .unwrap();

    let data = pattern(seed ^ 1, 0, OBJ_SIZE as usize);
    for via in [0, VICTIM] {
        let rsp = c
            .connect(via)
            .unwrap()
            .call(&req::create_and_write_obj(new, 0, OBJ_LEN), &data)
            .unwrap();
        assert_eq!(
            rsp.result(),
            SdResult::NoSpace,
            "creating an object through node {via} with node {VICTIM}'s disk full"
        );
    }
    // Overwrites of existing objects allocate nothing and still work.
    let block = pattern(seed ^ 2, 8192, BLOCK);
    gw.call_ok(&req::write_obj(kept, 8192, BLOCK as u32), &block)
        .unwrap();
    let mut want = image.clone();
    want[8192..8192 + BLOCK].copy_from_slice(&block);
    // Nothing written before is harmed, and the failed create left nothing on the victim.
    for i in 0..c.len() {
        assert_same_bytes(
            &c.read_object(i, kept).unwrap(),
            &want,
            &format!("node {i}'s {kept}"),
        );
        assert_same_bytes(
            &c.read_object(i, scratch).unwrap(),
            &image,
            &format!("node {i}'s {scratch}"),
        );
    }
    let names = dir_names(&c.dir(VICTIM).join("obj")).unwrap();
    assert!(
        !names.iter().any(|n| n.contains(".tmp")) && !c.object_path(VICTIM, new).exists(),
        "node {VICTIM} after the failed create: {names:?}"
    );

    // Free space: remove the scratch object. Its space comes back once the victim closed
    // it, and the create succeeds.
    gw.call_ok(&req::remove_obj(scratch), &[]).unwrap();
    let t = std::time::Instant::now();
    c.poll_until(SETTLE_TIMEOUT, "the create to fit again", |c| {
        let rsp = c
            .connect(0)?
            .call(&req::create_and_write_obj(new, 0, OBJ_LEN), &data)?;
        match rsp.result() {
            SdResult::Success => Ok(Some(())),
            SdResult::NoSpace => Ok(None),
            r => panic!("create after freeing space: {r}"),
        }
    })
    .unwrap();
    eprintln!("create succeeded {:.2?} after the remove", t.elapsed());
    for i in 0..c.len() {
        assert_same_bytes(
            &c.read_object(i, new).unwrap(),
            &data,
            &format!("node {i}'s {new}"),
        );
        assert_same_bytes(
            &c.read_object(i, kept).unwrap(),
            &want,
            &format!("node {i}'s {kept}"),
        );
    }
    c.check_replicas_identical().unwrap();
}

#[test]
fn an_unreadable_copy_is_served_from_another_replica_and_replaced() {
    const VICTIM: usize = 2;
    let mut c = Cluster::start_on_faultfs(3, &[]).unwrap();
    c.format(3).unwrap();
    let (oid, image) = vdi_with_one_object(&c, "eio");
    c.disk(VICTIM).set_eio(&format!("obj/{oid}"), true).unwrap();
    assert!(
        c.read_object(VICTIM, oid).is_err(),
        "node {VICTIM}'s copy reads with EIO"
    );

    // Through the victim, whose own copy it tries first: served from another replica.
    let rsp = c
        .connect(VICTIM)
        .unwrap()
        .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
        .unwrap();
    assert_same_bytes(
        &rsp.payload,
        &image,
        &format!("{oid} read through node {VICTIM}"),
    );

    // The bad copy is moved aside and replaced by a good one.
    let t = std::time::Instant::now();
    c.poll_until(SETTLE_TIMEOUT, "the unreadable copy to be replaced", |c| {
        Ok(c.read_object(VICTIM, oid).ok().filter(|b| *b == image))
    })
    .unwrap();
    eprintln!("unreadable copy replaced in {:.2?}", t.elapsed());
    let moved = dir_names(&c.quarantine_dir(VICTIM)).unwrap();
    assert!(
        moved.iter().any(|n| n.starts_with(&oid.to_string())),
        "the bad copy is kept aside: {moved:?}"
    );
    let rsp = c
        .connect(VICTIM)
        .unwrap()
        .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
        .unwrap();
    assert_same_bytes(&rsp.payload, &image, "read after the repair");
    c.check_replicas_identical().unwrap();
}

/// Writeback: a node loses power alone, with a write it acknowledged still in its page
/// cache. A flush through another gateway then succeeds on the live replicas, so the write
/// is durable and must be served by every replica. When the node comes back, its copy (as
/// old as the write, in the same epoch) is brought up to date, not kept.
#[test]
fn a_node_cut_alone_catches_up_on_writes_flushed_without_it() {
    let mut c = Cluster::start_on_faultfs(3, WRITEBACK).unwrap();
    c.format(3).unwrap();
    let (oid, mut image) = vdi_with_one_object(&c, "cut-alone");
    let seed = random_seed();
    let new = pattern(seed, 4096, 8192);
    image[4096..4096 + 8192].copy_from_slice(&new);
    let mut gw = c.connect(1).unwrap();
    gw.call_ok(&req::write_obj(oid, 4096, 8192), &new).unwrap();
    c.power_cut(&[0]).unwrap();
    assert_ne!(
        c.read_object(0, oid).unwrap(),
        image,
        "the cut kept node 0's unflushed write"
    );
    c.wait_members(2).unwrap();
    flush(&c, 1, oid.vid());
    c.restart(0).unwrap();
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    wait_recovered(&mut c);
    assert_everywhere(&c, oid, &image);
}
