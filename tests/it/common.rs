//! Shared fixture: a formatted single-node cluster holding one VDI with one data object of
//! known bytes, and the health check every bad-input test ends with.

use std::collections::BTreeSet;

use sd_proto::{Oid, SdResult, Vid};
use sd_testkit::{
    Cluster, RawClient, SETTLE_TIMEOUT, Sheep, assert_same_bytes, dir_names, pattern, random_seed,
    req,
};

/// Name of the fixture's VDI; `sd_hash_vdi("test")` is 0x7c2b25.
pub const VDI_NAME: &str = "test";
/// The fixture VDI's size.
pub const VDI_SIZE: u64 = 64 << 20;
/// Default object size (block_size_shift 22).
pub const OBJ_SIZE: u64 = 4 << 20;
/// `OBJ_SIZE` as a request length.
pub const OBJ_LEN: u32 = 4 << 20;
/// Seed of the fixture object's contents.
pub const SEED: u64 = 0x5eed_0b1e_c700_0000;

/// Entries a sheep may create in its base directory.
pub const DIR_ENTRIES: [&str; 6] = ["clean", "config", "epoch", "lock", "obj", "sheep.log"];

/// A formatted daemon with VDI [`VDI_NAME`] whose data object 0 starts out holding
/// `pattern(SEED, 0, OBJ_SIZE)`.
pub struct Fixture {
    pub sheep: Sheep,
    pub vid: Vid,
    /// Every object the store must hold (and nothing else).
    pub objects: BTreeSet<Oid>,
    /// What data object 0 must hold.
    pub contents: Vec<u8>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_args(&[])
    }

    /// [`Fixture::new`] with `extra` sheep arguments (limits, timeouts).
    pub fn with_args(extra: &[&str]) -> Fixture {
        let sheep = Sheep::start_temp(extra).expect("start sheep");
        sheep.format().expect("format");
        let mut c = sheep.connect().expect("connect");
        let vid = create_vdi(&mut c, VDI_NAME, VDI_SIZE);
        assert_eq!(vid.get(), 0x7c2b25, "vid of {VDI_NAME:?}");
        let data = vid.data_oid(0);
        let contents = pattern(SEED, 0, OBJ_SIZE as usize);
        c.call_ok(&req::create_and_write_obj(data, 0, OBJ_LEN), &contents)
            .expect("write the fixture object");
        Fixture {
            sheep,
            vid,
            objects: BTreeSet::from([vid.inode_oid(), data]),
            contents,
        }
    }

    /// WRITE_OBJ `data` at `offset` of data object 0 on `c`, and expect it from now on.
    pub fn write(&mut self, c: &mut RawClient, offset: u64, data: &[u8]) {
        let len = u32::try_from(data.len()).unwrap();
        c.call_ok(&req::write_obj(self.data_oid(), offset, len), data)
            .expect("WRITE_OBJ");
        let at = usize::try_from(offset).unwrap();
        self.contents[at..at + data.len()].copy_from_slice(data);
    }

    /// The fixture's data object.
    pub fn data_oid(&self) -> Oid {
        self.vid.data_oid(0)
    }

    pub fn connect(&self) -> RawClient {
        self.sheep.connect().expect("connect")
    }

    /// A READ_OBJ on `c` returns the fixture object's expected bytes at `offset`.
    pub fn assert_reads_back(&self, c: &mut RawClient, offset: u64, len: u32) {
        let rsp = c
            .call(&req::read_obj(self.data_oid(), offset, len), &[])
            .expect("READ_OBJ");
        assert_eq!(rsp.result(), SdResult::Success, "READ_OBJ at {offset}");
        let at = usize::try_from(offset).unwrap();
        assert_same_bytes(
            &rsp.payload,
            &self.contents[at..at + len as usize],
            "fixture object",
        );
    }

    /// After a bad input: the daemon still runs, a new connection gets a correct answer,
    /// the whole fixture object is intact, and nothing appeared on disk.
    pub fn assert_healthy(&mut self) {
        let mut c = self.connect();
        self.assert_healthy_on(&mut c);
    }

    /// [`Fixture::assert_healthy`] through the connection `c`.
    pub fn assert_healthy_on(&mut self, c: &mut RawClient) {
        self.sheep.check_alive().expect("sheep died");
        self.assert_reads_back(c, 0, OBJ_LEN);
        assert_dir_clean(&self.sheep);
        assert_eq!(
            stored_objects(&self.sheep),
            self.objects,
            "objects in DIR/obj"
        );
        self.sheep.check_alive().expect("sheep died");
    }
}

/// NEW_VDI `name` of `size` bytes; panics unless it succeeds.
pub fn create_vdi(c: &mut RawClient, name: &str, size: u64) -> Vid {
    let rsp = c
        .call_ok(&req::new_vdi(size), &req::name_field(name))
        .expect("NEW_VDI");
    rsp.header
        .vdi()
        .vid()
        .expect("NEW_VDI returned a vid out of range")
}

/// A one-object VDI `name` (through node 0) whose object is written whole with a random
/// pattern: that object and its bytes.
pub fn vdi_with_one_object(c: &Cluster, name: &str) -> (Oid, Vec<u8>) {
    let mut gw = c.connect(0).expect("connect to node 0");
    let oid = create_vdi(&mut gw, name, OBJ_SIZE).data_oid(0);
    let image = pattern(random_seed(), 0, OBJ_SIZE as usize);
    gw.call_ok(&req::create_and_write_obj(oid, 0, OBJ_LEN), &image)
        .expect("CREATE_AND_WRITE_OBJ");
    (oid, image)
}

/// The oids stored in `DIR/obj`; panics on any entry that is not an object file name
/// (16 lowercase hex digits).
pub fn stored_objects(sheep: &Sheep) -> BTreeSet<Oid> {
    let names = dir_names(&sheep.dir().join("obj")).expect("list DIR/obj");
    names
        .iter()
        .map(|n| {
            let ok = n.len() == 16 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            assert!(ok, "unexpected entry DIR/obj/{n} (all: {names:?})");
            Oid::new(u64::from_str_radix(n, 16).expect("hex"))
        })
        .collect()
}

/// The base directory holds only what a sheep creates, and the temporary root around it
/// holds only the base directory.
pub fn assert_dir_clean(sheep: &Sheep) {
    let names = dir_names(sheep.dir()).expect("list DIR");
    let extra: Vec<&String> = names
        .iter()
        .filter(|n| !DIR_ENTRIES.contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected entries in DIR: {extra:?} (all: {names:?})"
    );
    if let Some(root) = sheep.root() {
        let outside = dir_names(root).expect("list the temporary root");
        assert_eq!(
            outside,
            BTreeSet::from(["dir".to_string()]),
            "files created next to DIR"
        );
    }
}

/// Waits until no node reports recovery in progress.
pub fn wait_recovered(c: &mut Cluster) {
    c.poll_until(SETTLE_TIMEOUT, "recovery to finish", |c| {
        let out = c.dog(0, &["node", "recovery", "-r"], None)?;
        out.check_success("dog node recovery")?;
        Ok(out.stdout.is_empty().then_some(()))
    })
    .unwrap();
}

/// Every copy on disk and every read through every gateway is `want`.
pub fn assert_everywhere(c: &Cluster, oid: Oid, want: &[u8]) {
    c.check_replicas_identical().unwrap();
    for i in c.live() {
        assert_same_bytes(
            &c.read_object(i, oid).unwrap(),
            want,
            &format!("node {i}'s copy"),
        );
        let rsp = c
            .connect(i)
            .unwrap()
            .call_ok(&req::read_obj(oid, 0, OBJ_LEN), &[])
            .unwrap();
        assert_same_bytes(&rsp.payload, want, &format!("read through node {i}"));
    }
}
