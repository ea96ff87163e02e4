//! Random operation sequences agree byte for byte with an in-memory model.

use std::collections::HashMap;

use proptest::prelude::*;
use sd_proto::Oid;
use sd_store::{CreateSpec, Store, StoreError, SyncMode};

use crate::{open_at, pattern};

const OIDS: [u64; 4] = [0, 0x807c_2b25_0000_0000, 0x00fd_0000_0000_0001, u64::MAX];
const MAX_SIZE: u64 = 64 << 10;
const MAX_LEN: usize = 8 << 10;

#[derive(Debug, Clone)]
enum Op {
    Create {
        oid: usize,
        size: u64,
        sparse: bool,
        at: Offset,
        len: usize,
    },
    Write {
        oid: usize,
        at: Offset,
        len: usize,
    },
    Read {
        oid: usize,
        at: Offset,
        len: usize,
    },
    Remove {
        oid: usize,
    },
    Reopen,
}

/// Where in (or past) the object a request starts.
#[derive(Debug, Clone, Copy)]
enum Offset {
    /// `raw % (size + 64)`: mostly inside, sometimes just past the end.
    Near(u64),
    /// So large that `offset + len` may overflow.
    Huge(u64),
}

impl Offset {
    fn resolve(self, size: u64) -> u64 {
        match self {
            Offset::Near(raw) => raw % (size + 64),
            Offset::Huge(back) => u64::MAX - back,
        }
    }
}

fn offset() -> impl Strategy<Value = Offset> {
    prop_oneof![
        20 => any::<u64>().prop_map(Offset::Near),
        1 => (0..16_u64).prop_map(Offset::Huge),
    ]
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), 0..=4096_u64, 0..=MAX_SIZE, Just(MAX_SIZE)]
}

fn op() -> impl Strategy<Value = Op> {
    let oid = 0..OIDS.len();
    prop_oneof![
        3 => (oid.clone(), size(), any::<bool>(), offset(), 0..=MAX_LEN)
            .prop_map(|(oid, size, sparse, at, len)| Op::Create { oid, size, sparse, at, len }),
        4 => (oid.clone(), offset(), 0..=MAX_LEN).prop_map(|(oid, at, len)| Op::Write { oid, at, len }),
        4 => (oid.clone(), offset(), 0..=MAX_LEN).prop_map(|(oid, at, len)| Op::Read { oid, at, len }),
        1 => oid.prop_map(|oid| Op::Remove { oid }),
        1 => Just(Op::Reopen),
    ]
}

fn in_bounds(offset: u64, len: usize, size: u64) -> bool {
    offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= size)
}

/// Applies `op` to the store and to the model and checks they agree.
fn step(store: &Store, model: &mut HashMap<Oid, Vec<u8>>, op: &Op, generation: u64) {
    match *op {
        Op::Create {
            oid,
            size,
            sparse,
            at,
            len,
        } => {
            let oid = Oid::new(OIDS[oid]);
            let offset = at.resolve(size);
            let data = pattern(oid, offset, generation, len);
            let r = store.create_and_write(oid, CreateSpec { size, sparse }, offset, &data);
            if in_bounds(offset, len, size) {
                r.expect("create in bounds");
                let mut obj = vec![0; size as usize];
                obj[offset as usize..][..len].copy_from_slice(&data);
                model.insert(oid, obj);
            } else {
                assert!(matches!(r, Err(StoreError::OutOfBounds { .. })), "{r:?}");
            }
        }
        Op::Write { oid, at, len } => {
            let oid = Oid::new(OIDS[oid]);
            let size = model.get(&oid).map_or(0, |o| o.len() as u64);
            let offset = at.resolve(size);
            let data = pattern(oid, offset, generation, len);
            let r = store.write(oid, offset, &data);
            match model.get_mut(&oid) {
                None => assert!(
                    matches!(r, Err(StoreError::NoObject(o)) if o == oid),
                    "{r:?}"
                ),
                Some(obj) if in_bounds(offset, len, size) => {
                    r.expect("write in bounds");
                    obj[offset as usize..][..len].copy_from_slice(&data);
                }
                Some(_) => assert!(matches!(r, Err(StoreError::OutOfBounds { .. })), "{r:?}"),
            }
        }
        Op::Read { oid, at, len } => {
            let oid = Oid::new(OIDS[oid]);
            let size = model.get(&oid).map_or(0, |o| o.len() as u64);
            let offset = at.resolve(size);
            let mut buf = vec![0xEE; len];
            let r = store.read(oid, offset, &mut buf);
            match model.get(&oid) {
                None => assert!(
                    matches!(r, Err(StoreError::NoObject(o)) if o == oid),
                    "{r:?}"
                ),
                Some(obj) if in_bounds(offset, len, size) => {
                    r.expect("read in bounds");
                    assert!(
                        buf == obj[offset as usize..][..len],
                        "read {oid} at {offset}+{len}"
                    );
                }
                Some(_) => assert!(matches!(r, Err(StoreError::OutOfBounds { .. })), "{r:?}"),
            }
        }
        Op::Remove { oid } => {
            let oid = Oid::new(OIDS[oid]);
            let r = store.remove(oid);
            match model.remove(&oid) {
                None => assert!(
                    matches!(r, Err(StoreError::NoObject(o)) if o == oid),
                    "{r:?}"
                ),
                Some(_) => r.expect("remove"),
            }
        }
        Op::Reopen => {}
    }
}

/// The whole store equals the model.
fn check_all(store: &Store, model: &HashMap<Oid, Vec<u8>>) {
    let mut oids: Vec<Oid> = model.keys().copied().collect();
    oids.sort();
    assert_eq!(store.list().expect("list"), oids);
    for (oid, obj) in model {
        assert_eq!(store.object_size(*oid).expect("size"), obj.len() as u64);
        let mut buf = vec![0xEE; obj.len()];
        store.read(*oid, 0, &mut buf).expect("read all");
        assert!(&buf == obj, "contents of {oid}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_model(ops in proptest::collection::vec(op(), 1..40)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = open_at(tmp.path(), SyncMode::Writeback);
        let mut model = HashMap::new();
        for (generation, op) in (0_u64..).zip(&ops) {
            if let Op::Reopen = op {
                drop(store);
                store = open_at(tmp.path(), SyncMode::Writeback);
                check_all(&store, &model);
            }
            step(&store, &mut model, op, generation);
        }
        check_all(&store, &model);
    }
}
