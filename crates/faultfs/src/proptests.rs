//! Property tests of the durability model against a plain oracle: random operations on a
//! few files in two directories, random file and directory syncs, then a power cut. What
//! survives must be exactly what was synced: the names as of each directory's last sync,
//! each holding the data as of its file's last sync (plus its `O_DSYNC` writes), and the
//! image file must carry that same state.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::time::SystemTime;

use nix::errno::Errno;
use proptest::prelude::*;

use crate::data::PAGE_U64;
use crate::image;
use crate::model::{Creator, Ino, Kind, Model};

const NAMES: [&str; 3] = ["a", "b", "c"];
/// Directory 0 is the root, directory 1 is `d` (created and synced before the run).
const DIRS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Create(usize, usize),
    Write {
        dir: usize,
        name: usize,
        offset: u64,
        len: usize,
        seed: u8,
        sync: bool,
    },
    Truncate(usize, usize, u64),
    Allocate(usize, usize, u64, u64),
    Fsync(usize, usize),
    FsyncDir(usize),
    Rename((usize, usize), (usize, usize)),
    Unlink(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let f = (0..DIRS, 0..NAMES.len());
    let off = 0..3 * PAGE_U64 + 100;
    prop_oneof![
        2 => f.clone().prop_map(|(d, n)| Op::Create(d, n)),
        4 => (f.clone(), off.clone(), 1usize..6000, any::<u8>(), any::<bool>()).prop_map(
            |((dir, name), offset, len, seed, sync)| Op::Write { dir, name, offset, len, seed, sync }
        ),
        1 => (f.clone(), off.clone()).prop_map(|((d, n), l)| Op::Truncate(d, n, l)),
        1 => (f.clone(), off.clone(), 1..2 * PAGE_U64).prop_map(|((d, n), o, l)| Op::Allocate(d, n, o, l)),
        3 => f.clone().prop_map(|(d, n)| Op::Fsync(d, n)),
        2 => (0..DIRS).prop_map(Op::FsyncDir),
        2 => (f.clone(), f.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => f.prop_map(|(d, n)| Op::Unlink(d, n)),
    ]
}

/// The oracle: files by identity, plain byte vectors, snapshots at sync points.
#[derive(Debug, Default)]
struct Oracle {
    next: u64,
    names: [BTreeMap<usize, u64>; DIRS],
    content: BTreeMap<u64, Vec<u8>>,
    durable_names: [BTreeMap<usize, u64>; DIRS],
    durable_content: BTreeMap<u64, Vec<u8>>,
}

fn put(v: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let at = usize::try_from(offset).unwrap();
    if v.len() < at + data.len() {
        v.resize(at + data.len(), 0);
    }
    v[at..at + data.len()].copy_from_slice(data);
}

impl Oracle {
    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create(d, n) => {
                if !self.names[d].contains_key(&n) {
                    self.next += 1;
                    self.names[d].insert(n, self.next);
                    self.content.insert(self.next, Vec::new());
                }
            }
            Op::Write {
                dir,
                name,
                offset,
                len,
                seed,
                sync,
            } => {
                if let Some(id) = self.names[dir].get(&name).copied() {
                    let data = bytes(seed, len);
                    put(self.content.get_mut(&id).unwrap(), offset, &data);
                    if sync {
                        put(self.durable_content.entry(id).or_default(), offset, &data);
                    }
                }
            }
            Op::Truncate(d, n, len) => {
                if let Some(id) = self.names[d].get(&n) {
                    self.content
                        .get_mut(id)
                        .unwrap()
                        .resize(usize::try_from(len).unwrap(), 0);
                }
            }
            Op::Allocate(d, n, off, len) => {
                if let Some(id) = self.names[d].get(&n) {
                    let v = self.content.get_mut(id).unwrap();
                    let end = usize::try_from(off + len).unwrap();
                    if v.len() < end {
                        v.resize(end, 0);
                    }
                }
            }
            Op::Fsync(d, n) => {
                if let Some(id) = self.names[d].get(&n) {
                    self.durable_content.insert(*id, self.content[id].clone());
                }
            }
            Op::FsyncDir(d) => {
                self.durable_names[d] = self.names[d].clone();
                for id in self.names[d].values() {
                    self.durable_content.entry(*id).or_default();
                }
            }
            Op::Rename((d, n), (d2, n2)) => {
                if let Some(id) = self.names[d].get(&n).copied()
                    && (d, n) != (d2, n2)
                {
                    self.names[d].remove(&n);
                    self.names[d2].insert(n2, id);
                }
            }
            Op::Unlink(d, n) => {
                self.names[d].remove(&n);
            }
        }
    }
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(u8::try_from(i % 251).unwrap()) | 1)
        .collect()
}

fn who() -> Creator {
    Creator {
        perm: 0o644,
        uid: 0,
        gid: 0,
        now: SystemTime::UNIX_EPOCH,
    }
}

const T: SystemTime = SystemTime::UNIX_EPOCH;

/// Applies `op` to the model; errors the oracle also treats as no-ops are fine.
fn apply(m: &mut Model, dirs: [Ino; DIRS], op: &Op) {
    let name = |n: usize| OsStr::new(NAMES[n]);
    let file = |m: &Model, d: usize, n: usize| m.lookup(dirs[d], name(n));
    let r: Result<(), Errno> = match *op {
        Op::Create(d, n) => match m.create(dirs[d], name(n), who()) {
            Err(Errno::EEXIST) => Ok(()),
            r => r.map(drop),
        },
        Op::Write {
            dir,
            name: n,
            offset,
            len,
            seed,
            sync,
        } => file(m, dir, n).and_then(|i| m.write(i, offset, &bytes(seed, len), sync, T)),
        Op::Truncate(d, n, len) => file(m, d, n).and_then(|i| m.set_len(i, len, T)),
        Op::Allocate(d, n, off, len) => file(m, d, n).and_then(|i| m.allocate(i, off, len, T)),
        Op::Fsync(d, n) => file(m, d, n).and_then(|i| m.fsync(i)),
        Op::FsyncDir(d) => m.fsync(dirs[d]),
        Op::Rename((d, n), (d2, n2)) => {
            m.rename((dirs[d], name(n)), (dirs[d2], name(n2)), false, T)
        }
        Op::Unlink(d, n) => m.unlink(dirs[d], name(n), T),
    };
    match r {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => panic!("{op:?}: {e}"),
    }
}

/// The model shows exactly `names` (per directory) holding `content`.
fn check(m: &Model, names: &[BTreeMap<usize, u64>; DIRS], content: &BTreeMap<u64, Vec<u8>>) {
    let root = m.readdir(Ino::ROOT).unwrap();
    let d = root
        .iter()
        .find(|(n, _, _)| n == "d")
        .map(|(_, i, _)| *i)
        .expect("d survives");
    for (k, dir) in [Ino::ROOT, d].into_iter().enumerate() {
        let shown: BTreeMap<String, Vec<u8>> = m
            .readdir(dir)
            .unwrap()
            .into_iter()
            .filter(|(n, _, kind)| !(k == 0 && n == "d" && *kind == Kind::Dir))
            .map(|(n, ino, _)| {
                let size = m.stat(ino).unwrap().size;
                let data = m.read(ino, 0, usize::try_from(size).unwrap()).unwrap();
                (n.into_string().unwrap(), data)
            })
            .collect();
        let want: BTreeMap<String, Vec<u8>> = names[k]
            .iter()
            .map(|(n, id)| (NAMES[*n].to_string(), content[id].clone()))
            .collect();
        prop_assert_eq_ok(&shown, &want, k);
    }
}

fn prop_assert_eq_ok(
    shown: &BTreeMap<String, Vec<u8>>,
    want: &BTreeMap<String, Vec<u8>>,
    dir: usize,
) {
    let names = |m: &BTreeMap<String, Vec<u8>>| {
        m.iter()
            .map(|(n, v)| (n.clone(), v.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(shown),
        names(want),
        "names and sizes in directory {dir}"
    );
    for (n, v) in want {
        assert!(shown[n] == *v, "contents of {n} in directory {dir}");
    }
}

/// A model with the durable directory `d` in its root.
fn setup() -> (Model, [Ino; DIRS]) {
    let mut m = Model::new(T);
    let d = m.mkdir(Ino::ROOT, OsStr::new("d"), who()).unwrap();
    m.fsync(Ino::ROOT).unwrap();
    (m, [Ino::ROOT, d])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn what_survives_a_cut_is_exactly_what_was_synced(ops in prop::collection::vec(op(), 0..40)) {
        let (mut m, dirs) = setup();
        let mut o = Oracle::default();
        for op in &ops {
            apply(&mut m, dirs, op);
            o.apply(op);
        }
        check(&m, &o.names, &o.content);
        let crashed = m.crash();
        check(&crashed, &o.durable_names, &o.durable_content);

        let mut bytes = Vec::new();
        image::encode(&m, &mut bytes).unwrap();
        let loaded = image::decode(&mut bytes.as_slice()).unwrap();
        check(&loaded, &o.durable_names, &o.durable_content);

        // A clean unmount keeps everything.
        let mut synced = m.clone();
        synced.sync_all();
        check(&synced.crash(), &o.names, &o.content);
    }

    #[test]
    fn a_bad_image_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut with_magic = b"FAULTFS\x01".to_vec();
        with_magic.extend(&bytes);
        for b in [bytes, with_magic] {
            let _ = image::decode(&mut b.as_slice());
        }
    }
}

#[test]
fn capacity_refuses_allocation_past_it_and_unlink_frees() {
    let (mut m, _) = setup();
    let a = m.create(Ino::ROOT, OsStr::new("a"), who()).unwrap();
    m.set_capacity(Some(3 * PAGE_U64));
    m.write(a, 0, &[1; 4096], false, T).unwrap();
    m.allocate(a, PAGE_U64, 2 * PAGE_U64, T).unwrap();
    assert_eq!(m.used(), 3 * PAGE_U64);
    // Overwrites of allocated pages still work; new pages do not.
    m.write(a, 100, &[2; 8000], false, T).unwrap();
    assert_eq!(m.write(a, 3 * PAGE_U64, &[3], false, T), Err(Errno::ENOSPC));
    let b = m.create(Ino::ROOT, OsStr::new("b"), who()).unwrap();
    assert_eq!(m.allocate(b, 0, 1, T), Err(Errno::ENOSPC));
    assert_eq!(
        m.stat(a).unwrap().size,
        3 * PAGE_U64,
        "the failed write wrote nothing"
    );
    // An open file keeps its space after unlink until it is closed.
    let fh = m.open(a, false).unwrap();
    m.unlink(Ino::ROOT, OsStr::new("a"), T).unwrap();
    assert_eq!(m.used(), 3 * PAGE_U64);
    m.release(fh);
    assert_eq!(m.used(), 0);
    m.write(b, 0, &[4; 4096], false, T).unwrap();
}

#[test]
fn injected_read_errors_hit_one_file_until_cleared() {
    let (mut m, _) = setup();
    let a = m.create(Ino::ROOT, OsStr::new("a"), who()).unwrap();
    let b = m.create(Ino::ROOT, OsStr::new("b"), who()).unwrap();
    m.write(a, 0, b"x", false, T).unwrap();
    let ino = m.resolve(std::path::Path::new("a")).unwrap();
    assert_eq!(ino, a);
    m.set_eio(a, true).unwrap();
    assert_eq!(m.read(a, 0, 1), Err(Errno::EIO));
    assert_eq!(m.read(b, 0, 1), Ok(Vec::new()));
    m.write(a, 0, b"y", false, T).unwrap();
    m.set_eio(a, false).unwrap();
    assert_eq!(m.read(a, 0, 1), Ok(b"y".to_vec()));
}

#[test]
fn atomic_replace_survives_only_with_the_directory_sync() {
    // The store's create: write a temporary file, fsync it, rename it over the name.
    let (mut m, _) = setup();
    let old = m.create(Ino::ROOT, OsStr::new("obj"), who()).unwrap();
    m.write(old, 0, b"old", false, T).unwrap();
    m.fsync(old).unwrap();
    m.fsync(Ino::ROOT).unwrap();
    let tmp = m.create(Ino::ROOT, OsStr::new("obj.tmp"), who()).unwrap();
    m.write(tmp, 0, b"new", false, T).unwrap();
    m.fsync(tmp).unwrap();
    m.rename(
        (Ino::ROOT, OsStr::new("obj.tmp")),
        (Ino::ROOT, OsStr::new("obj")),
        false,
        T,
    )
    .unwrap();
    let read = |m: &Model| {
        let i = m.lookup(Ino::ROOT, OsStr::new("obj")).unwrap();
        let names: Vec<_> = m
            .readdir(Ino::ROOT)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        (m.read(i, 0, 10).unwrap(), names)
    };
    let (data, names) = read(&m.crash());
    assert_eq!(data, b"old".to_vec(), "the rename was not durable");
    assert_eq!(names, ["d", "obj"], "nor the temporary file's name");
    m.fsync(Ino::ROOT).unwrap();
    let (data, names) = read(&m.crash());
    assert_eq!(data, b"new".to_vec());
    assert_eq!(names, ["d", "obj"]);
}
