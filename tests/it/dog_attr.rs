//! VDI attributes end to end: `dog vdi setattr/getattr` against a real sheep (create,
//! overwrite, `-x`, `-d`, values from stdin, missing keys and VDIs with Sheepdog's messages
//! and exit codes), the attribute objects on disk, GET_VDI_ATTR's reply fields and bad
//! requests, and concurrent exclusive creates through one gateway.

use sd_proto::attr::{SD_MAX_VDI_ATTR_VALUE_LEN, VdiAttr};
use sd_proto::hash::sd_hash_vdi;
use sd_proto::inode::SD_ATTR_OBJ_SIZE;
use sd_proto::{Flags, Oid, SdResult};
use sd_testkit::{DogOutput, Sheep, assert_same_bytes, pattern, req};

use crate::common::stored_objects;

fn formatted_with_vdi(name: &str) -> Sheep {
    let sheep = Sheep::start_temp(&[]).unwrap();
    sheep.format().unwrap();
    let out = sheep.dog(&["vdi", "create", name, "100M"], None).unwrap();
    out.check_success("vdi create").unwrap();
    sheep
}

/// Exit code, stdout and stderr of a run, for one-line comparisons.
fn outcome(out: &DogOutput) -> (Option<i32>, String, String) {
    (out.code(), out.stdout_str(), out.stderr_str())
}

fn setattr(sheep: &Sheep, args: &[&str], stdin: Option<&[u8]>) -> DogOutput {
    let mut all = vec!["vdi", "setattr"];
    all.extend_from_slice(args);
    sheep.dog(&all, stdin).unwrap()
}

fn getattr(sheep: &Sheep, name: &str, key: &str) -> DogOutput {
    sheep.dog(&["vdi", "getattr", name, key], None).unwrap()
}

/// `getattr` succeeds and prints exactly `value` (no newline).
fn assert_value(sheep: &Sheep, name: &str, key: &str, value: &[u8]) {
    let out = getattr(sheep, name, key);
    out.check_success(&format!("getattr {name} {key}")).unwrap();
    assert_same_bytes(&out.stdout, value, &format!("getattr {name} {key}"));
    assert!(out.stderr.is_empty(), "getattr said {:?}", out.stderr_str());
}

const OK: (Option<i32>, &str, &str) = (Some(0), "", "");

fn assert_outcome(out: &DogOutput, want: (Option<i32>, &str, &str), what: &str) {
    let (code, stdout, stderr) = outcome(out);
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        want,
        "{what}: exit code, stdout, stderr"
    );
}

/// The attribute object that `name`/`key` occupies when no other attribute collides.
fn first_slot(name: &str, key: &str) -> Oid {
    let a = VdiAttr {
        name: name.into(),
        key: key.into(),
        ..VdiAttr::default()
    };
    sd_hash_vdi(name.as_bytes()).attr_oid(a.attr_id())
}

#[test]
fn setattr_getattr_create_overwrite_exclusive_delete() {
    let sheep = formatted_with_vdi("vm");

    assert_outcome(&setattr(&sheep, &["vm", "key1", "value1"], None), OK, "set");
    assert_value(&sheep, "vm", "key1", b"value1");

    // The record sits in the first slot of the hashed vid, as Sheepdog lays it out.
    let slot = first_slot("vm", "key1");
    let on_disk = std::fs::read(sheep.dir().join(format!("obj/{slot}"))).unwrap();
    assert_eq!(on_disk.len(), SD_ATTR_OBJ_SIZE, "attribute object size");
    let rec = VdiAttr::decode(&on_disk).unwrap();
    assert_eq!(
        (
            rec.name.as_slice(),
            rec.key.as_slice(),
            rec.value.as_slice()
        ),
        (&b"vm"[..], &b"key1"[..], &b"value1"[..])
    );
    assert_ne!(rec.ctime, 0, "the server fills in the VDI's creation time");

    // Overwrite.
    assert_outcome(
        &setattr(&sheep, &["vm", "key1", "v2"], None),
        OK,
        "overwrite",
    );
    assert_value(&sheep, "vm", "key1", b"v2");

    // -x refuses an existing key and leaves it alone; it creates a new one.
    assert_outcome(
        &setattr(&sheep, &["-x", "vm", "key1", "other"], None),
        (Some(3), "", "The attribute 'key1' already exists\n"),
        "setattr -x of an existing key",
    );
    assert_value(&sheep, "vm", "key1", b"v2");
    assert_outcome(
        &setattr(&sheep, &["vm", "-x", "key2", "fresh"], None),
        OK,
        "-x new",
    );
    assert_value(&sheep, "vm", "key2", b"fresh");

    // The value from stdin when omitted: up to 64 KiB, ending at the first NUL.
    let mut blob: Vec<u8> = pattern(0xa77, 0, SD_MAX_VDI_ATTR_VALUE_LEN)
        .into_iter()
        .map(|b| b | 1)
        .collect();
    assert_outcome(
        &setattr(&sheep, &["vm", "blob"], Some(&blob)),
        OK,
        "from stdin",
    );
    assert_value(&sheep, "vm", "blob", &blob);
    blob[1000] = 0;
    assert_outcome(
        &setattr(&sheep, &["vm", "blob"], Some(&blob)),
        OK,
        "with a NUL",
    );
    assert_value(&sheep, "vm", "blob", &blob[..1000]);

    // -d deletes; afterwards the key is missing, for getattr and for another -d.
    assert_outcome(&setattr(&sheep, &["-d", "vm", "key1"], None), OK, "delete");
    let missing = (Some(5), "", "Attribute 'key1' not found\n");
    assert_outcome(&getattr(&sheep, "vm", "key1"), missing, "getattr after -d");
    assert_outcome(
        &setattr(&sheep, &["-d", "vm", "key1"], None),
        missing,
        "second -d",
    );
    assert_value(&sheep, "vm", "key2", b"fresh");

    // The deleted slot keeps its object with an empty name, so setting the key again
    // probes on to the next attribute id.
    let deleted =
        VdiAttr::decode(&std::fs::read(sheep.dir().join(format!("obj/{slot}"))).unwrap()).unwrap();
    assert!(deleted.name.is_empty(), "deleted record {deleted:?}");
    assert_outcome(
        &setattr(&sheep, &["vm", "key1", "again"], None),
        OK,
        "set again",
    );
    assert_value(&sheep, "vm", "key1", b"again");
    let next = sd_hash_vdi(b"vm").attr_oid(slot.index().wrapping_add(1));
    let rec =
        VdiAttr::decode(&std::fs::read(sheep.dir().join(format!("obj/{next}"))).unwrap()).unwrap();
    assert_eq!(rec.value, b"again");

    // Missing keys and VDIs.
    assert_outcome(
        &getattr(&sheep, "vm", "nokey"),
        (Some(5), "", "Attribute 'nokey' not found\n"),
        "getattr of a missing key",
    );
    assert_outcome(
        &getattr(&sheep, "nosuch", "key1"),
        (Some(5), "", "VDI not found\n"),
        "getattr of a missing VDI",
    );
    assert_outcome(
        &setattr(&sheep, &["nosuch", "k", "v"], None),
        (Some(5), "", "VDI not found\n"),
        "setattr on a missing VDI",
    );
    let out = sheep.dog(&["vdi", "getattr", "vm"], None).unwrap();
    assert_eq!(out.code(), Some(64), "getattr without a key");
    assert!(
        out.stderr_str()
            .starts_with("Please specify the attribute key\n"),
        "{:?}",
        out.stderr_str()
    );

    // Attribute objects only: the inode plus key1 (deleted and again), key2, blob.
    let attr_objects = stored_objects(&sheep)
        .into_iter()
        .filter(|o| o.kind() == sd_proto::ObjectKind::Attr)
        .count();
    assert_eq!(attr_objects, 4, "attribute objects on disk");
}

#[test]
fn get_vdi_attr_reply_and_bad_requests() {
    let sheep = formatted_with_vdi("vm");
    let mut c = sheep.connect().unwrap();
    let rec = VdiAttr {
        name: b"vm".to_vec(),
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..VdiAttr::default()
    };
    let rsp = c
        .call_ok(&req::get_vdi_attr(Flags::CREAT), &rec.encode())
        .unwrap();
    let v = rsp.header.vdi();
    assert_eq!(
        v.vdi_id,
        sd_hash_vdi(b"vm").get(),
        "vdi_id is the name's hash"
    );
    assert_eq!(v.attr_id, rec.attr_id());
    assert_eq!(v.copies, 3, "the copies of the VDI at the hashed vid");
    assert!(rsp.payload.is_empty());

    // Lookups without CREAT find it; EXCL refuses it; other names and tags do not exist.
    let rsp = c.call_ok(&req::get_vdi_attr(Flags::default()), &rec.encode());
    assert_eq!(rsp.unwrap().header.vdi().attr_id, rec.attr_id());
    let rsp = c
        .call(
            &req::get_vdi_attr(Flags::CREAT | Flags::EXCL),
            &rec.encode(),
        )
        .unwrap();
    assert_eq!(rsp.result(), SdResult::VdiExist);
    let other = VdiAttr {
        name: b"nosuch".to_vec(),
        ..rec.clone()
    };
    let rsp = c.call(&req::get_vdi_attr(Flags::CREAT), &other.encode());
    assert_eq!(rsp.unwrap().result(), SdResult::NoVdi);
    let tagged = VdiAttr {
        tag: b"nosuchtag".to_vec(),
        ..rec.clone()
    };
    let rsp = c.call(&req::get_vdi_attr(Flags::CREAT), &tagged.encode());
    assert_eq!(rsp.unwrap().result(), SdResult::NoTag);

    // Malformed: short record, empty name, no payload.
    let mut short = req::get_vdi_attr(Flags::CREAT);
    short.data_length = 100;
    let rsp = c.call(&short, &rec.encode()[..100]).unwrap();
    assert_eq!(rsp.result(), SdResult::InvalidParms, "a 100-byte record");
    let unnamed = VdiAttr {
        name: Vec::new(),
        ..rec.clone()
    };
    let rsp = c.call(&req::get_vdi_attr(Flags::CREAT), &unnamed.encode());
    assert_eq!(rsp.unwrap().result(), SdResult::InvalidParms, "empty name");
    let mut no_payload = req::get_vdi_attr(Flags::CREAT);
    no_payload.flags = Flags::CREAT;
    let rsp = c.call(&no_payload, &[]).unwrap();
    assert_eq!(rsp.result(), SdResult::InvalidParms, "no WRITE flag");
    sheep_still_serves(&sheep);
}

fn sheep_still_serves(sheep: &Sheep) {
    assert_value(sheep, "vm", "k", b"v");
}

/// Eight `setattr -x` of one new key at once through the same sheep: attribute operations
/// of a gateway run one at a time, so exactly one creates the key and the others see it.
#[test]
fn concurrent_exclusive_setattr_has_one_winner() {
    let sheep = formatted_with_vdi("vm");
    let values: Vec<String> = (0..8).map(|i| format!("value-{i}")).collect();
    let children: Vec<_> = values
        .iter()
        .map(|v| {
            sheep
                .spawn_dog(&["vdi", "setattr", "-x", "vm", "race", v])
                .unwrap()
        })
        .collect();
    let outs: Vec<DogOutput> = children.into_iter().map(|c| c.wait().unwrap()).collect();
    let winners: Vec<usize> = (0..outs.len())
        .filter(|i| outs[*i].code() == Some(0))
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "winners: {:?}",
        outs.iter().map(outcome).collect::<Vec<_>>()
    );
    for (i, out) in outs.iter().enumerate() {
        if i != winners[0] {
            assert_outcome(
                out,
                (Some(3), "", "The attribute 'race' already exists\n"),
                "a losing setattr -x",
            );
        }
    }
    assert_value(&sheep, "vm", "race", values[winners[0]].as_bytes());
}
