//! `dog ... --json` and `--watch` (docs/json-output.md) against real sheep: every document
//! parses and carries the values the cluster really has, cross-checked with the text and
//! `-r` outputs; `--watch` refreshes, follows membership and recovery, and ends cleanly on
//! SIGINT and with Sheepdog's exit code when its sheep goes away.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sd_proto::Vid;
use sd_proto::hash::sd_hash_vdi;
use sd_testkit::{Cluster, DogChild, DogOutput, Sheep, pattern, req};
use serde_json::Value;

use crate::common::OBJ_SIZE;

/// How long a `--watch` test waits for the next refresh.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

fn ok(out: DogOutput, what: &str) -> DogOutput {
    out.check_success(what).unwrap();
    out
}

/// Runs `dog ARGS --json` against `sheep` and parses its stdout: one document, one line.
fn json(sheep: &Sheep, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(sheep.dog(&all, None).unwrap(), &format!("dog {all:?}"));
    let text = out.stdout_str();
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "dog {all:?} --json printed more than one line: {text:?}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("dog {all:?}: {e}: {text:?}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not an unsigned number"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `vdi list --json` entry of `name` with `kind`.
fn entry<'a>(vdis: &'a [Value], name: &str, kind: &str) -> &'a Value {
    vdis.iter()
        .find(|v| v["name"] == name && v["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} {name} in {vdis:?}"))
}

#[test]
fn vdi_commands_json_carry_the_real_values() {
    let sheep = Sheep::start_temp(&[]).unwrap();
    ok(sheep.dog(&["cluster", "format"], None).unwrap(), "format");
    ok(
        sheep.dog(&["vdi", "create", "alpha", "1G"], None).unwrap(),
        "create alpha",
    );
    ok(
        sheep.dog(&["vdi", "create", "beta", "20M"], None).unwrap(),
        "create beta",
    );
    let data = pattern(sd_testkit::random_seed(), 0, 2 * OBJ_SIZE as usize);
    ok(
        sheep
            .dog(&["vdi", "write", "alpha", "0", "8M"], Some(&data))
            .unwrap(),
        "write alpha",
    );
    ok(
        sheep
            .dog(&["vdi", "snapshot", "-s", "snap1", "alpha"], None)
            .unwrap(),
        "snapshot alpha",
    );

    // vdi list: names, kinds, sizes, usage, parents.
    let list = json(&sheep, &["vdi", "list"]);
    let vdis = list["vdis"].as_array().unwrap();
    assert_eq!(vdis.len(), 3, "{list}");
    let snap = entry(vdis, "alpha", "snapshot");
    let alpha = entry(vdis, "alpha", "working");
    let beta = entry(vdis, "beta", "working");
    let snap_vid = u(&snap["vid"]);
    assert_eq!(snap_vid, u64::from(sd_hash_vdi(b"alpha").get()));
    assert_eq!(
        (u(&snap["snap_id"]), snap["tag"].as_str().unwrap()),
        (1, "snap1")
    );
    assert_eq!(u(&snap["size_bytes"]), 1 << 30);
    assert_eq!(u(&snap["used_bytes"]), 2 * OBJ_SIZE);
    assert_eq!(u(&snap["shared_bytes"]), 0);
    assert_eq!(u(&alpha["used_bytes"]), 0);
    assert_eq!(u(&alpha["shared_bytes"]), 2 * OBJ_SIZE);
    assert_eq!(u(&alpha["parent_vid"]), snap_vid);
    assert_eq!(u(&alpha["snap_id"]), 0);
    assert_eq!(u(&beta["size_bytes"]), 20 << 20);
    assert_eq!(u(&beta["vid"]), u64::from(sd_hash_vdi(b"beta").get()));
    for v in vdis {
        let ctime = u(&v["ctime"]);
        assert!(ctime <= now() && now() - ctime < 3600, "{v}");
        assert_eq!(u(&v["block_size_shift"]), 22);
        assert!(v["ctime_rfc3339"].as_str().unwrap().ends_with('Z'), "{v}");
    }
    // The same values as `-r` (whose output is unchanged, see dog_cli.rs): per VDI
    // "kind name snapid size used shared ctime vid copies tag shift".
    let raw = ok(sheep.dog(&["vdi", "list", "-r"], None).unwrap(), "list -r");
    let raw_rows: Vec<Vec<String>> = raw
        .stdout_str()
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(raw_rows.len(), vdis.len());
    for (row, v) in raw_rows.iter().zip(vdis) {
        let fields = [
            &v["name"].as_str().unwrap().to_string(),
            &v["snap_id"].to_string(),
            &v["size_bytes"].to_string(),
            &v["used_bytes"].to_string(),
            &v["shared_bytes"].to_string(),
            &v["ctime"].to_string(),
            &format!("{:x}", u(&v["vid"])),
            &v["redundancy"].as_str().unwrap().to_string(),
            &v["tag"].as_str().unwrap().to_string(),
            &v["block_size_shift"].to_string(),
        ];
        let want: Vec<&String> = fields.into_iter().collect();
        let got: Vec<&String> = row.iter().skip(1).collect();
        assert_eq!(got, want, "vdi list -r row vs --json {v}");
    }

    // vdi tree: alpha's snapshot with the working VDI under it; beta alone.
    let tree = json(&sheep, &["vdi", "tree"]);
    let trees = tree["trees"].as_array().unwrap();
    assert_eq!(trees.len(), 2, "{tree}");
    let t = trees.iter().find(|t| t["name"] == "alpha").unwrap();
    assert_eq!(u(&t["vid"]), snap_vid);
    assert_eq!(t["snapshot"], true);
    assert_eq!(t["children"][0]["vid"], alpha["vid"]);
    assert_eq!(t["children"][0]["snapshot"], false);
    assert_eq!(t["children"][0]["children"], Value::Array(vec![]));

    // vdi object map: the two objects written, owned by the snapshot.
    let map = json(&sheep, &["vdi", "object", "map", "alpha"]);
    assert_eq!(map["vid"], alpha["vid"]);
    let owner = Vid::new(u32::try_from(snap_vid).unwrap()).unwrap();
    let objects: Vec<(u64, u64, String)> = map["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                u(&o["index"]),
                u(&o["vid"]),
                o["oid"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        objects,
        vec![
            (0, snap_vid, owner.data_oid(0).to_string()),
            (1, snap_vid, owner.data_oid(1).to_string())
        ]
    );

    // vdi object location: the one node has it, and the ring places it there.
    let addr = format!("127.0.0.1:{}", sheep.port());
    let loc = json(&sheep, &["vdi", "object", "location", "-i", "1", "alpha"]);
    assert_eq!(loc["oid"], owner.data_oid(1).to_string());
    assert_eq!(
        (u(&loc["index"]), &loc["allocated"]),
        (1, &Value::Bool(true))
    );
    assert_eq!(loc["nodes"][0]["addr"], addr.as_str());
    assert_eq!(u(&loc["nodes"][0]["port"]), u64::from(sheep.port()));
    assert_eq!(loc["nodes"][0]["has_object"], true);
    assert_eq!(loc["placement"], serde_json::json!([addr]));
    let hole = json(&sheep, &["vdi", "object", "location", "-i", "9", "alpha"]);
    assert_eq!(
        (&hole["allocated"], &hole["oid"]),
        (&Value::Bool(false), &Value::Null)
    );

    // vdi track: the same object through every epoch (one).
    let track = json(&sheep, &["vdi", "track", "-i", "1", "alpha"]);
    assert_eq!(track["oid"], owner.data_oid(1).to_string());
    assert_eq!(
        track["epochs"],
        serde_json::json!([{"epoch": 1, "locations": [addr]}])
    );

    // vdi lock list: empty, then the VDI a LOCK_VDI took, owned by this gateway.
    assert_eq!(
        json(&sheep, &["vdi", "lock", "list"]),
        serde_json::json!({"locks": []})
    );
    let rsp = sheep
        .connect()
        .unwrap()
        .call(&req::lock_vdi(), &req::name_field("beta"))
        .unwrap();
    assert!(rsp.result().is_success(), "{:?}", rsp.result());
    let locks = json(&sheep, &["vdi", "lock", "list"]);
    assert_eq!(
        locks,
        serde_json::json!({"locks": [{
            "name": "beta", "vid": beta["vid"], "owner_addr": addr,
            "owner_ip": "127.0.0.1", "owner_port": sheep.port()
        }]})
    );

    // Commands without --json refuse it like any unknown option.
    let out = sheep
        .dog(&["vdi", "create", "x", "1M", "--json"], None)
        .unwrap();
    assert_eq!(out.code(), Some(64), "{}", out.stderr_str());
    assert!(out.stderr_str().contains("unrecognized option '--json'"));
}

#[test]
fn node_and_cluster_json_match_the_cluster() {
    let mut c = Cluster::start(3).unwrap();
    c.format(2).unwrap();
    let (epoch, _) = c.members_seen_by(0).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "v", "100M"], None).unwrap(),
        "create",
    );

    let nodes = json(c.sheep(1), &["node", "list"]);
    let listed: Vec<(u64, u64, u64)> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (u(&n["id"]), u(&n["port"]), u(&n["zone"])))
        .collect();
    let mut want: Vec<(u16, u32)> = (0..3).map(|i| (c.sheep(i).port(), c.zone(i))).collect();
    want.sort_unstable();
    let want: Vec<(u64, u64, u64)> = want
        .iter()
        .enumerate()
        .map(|(i, (p, z))| (i as u64, u64::from(*p), u64::from(*z)))
        .collect();
    assert_eq!(listed, want, "{nodes}");

    let info = json(c.sheep(0), &["node", "info"]);
    let per_node = info["nodes"].as_array().unwrap();
    assert_eq!(per_node.len(), 3, "{info}");
    for key in ["size_bytes", "used_bytes", "avail_bytes"] {
        let sum: u64 = per_node.iter().map(|n| u(&n[key])).sum();
        assert_eq!(u(&info["total"][key]), sum, "{key}: {info}");
    }
    for n in per_node {
        assert_eq!(
            u(&n["size_bytes"]),
            u(&n["used_bytes"]) + u(&n["avail_bytes"])
        );
    }
    assert_eq!(u(&info["vdi_size_bytes"]), 100 << 20);

    let ci = json(c.sheep(2), &["cluster", "info"]);
    assert_eq!(ci["status"], "running", "{ci}");
    assert_eq!(ci["status_message"], "running, auto-recovery enabled");
    assert_eq!(u(&ci["epoch"]), u64::from(epoch.0));
    assert_eq!(u(&ci["copies"]), 2);
    assert_eq!(ci["store"], "plain");
    let newest = &ci["epochs"][0];
    assert_eq!(u(&newest["epoch"]), u64::from(epoch.0));
    assert_eq!(newest["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(ci["epochs"].as_array().unwrap().len(), epoch.0 as usize);

    let rec = json(c.sheep(0), &["node", "recovery"]);
    assert_eq!(u(&rec["epoch"]), u64::from(epoch.0));
    let rec_nodes = rec["nodes"].as_array().unwrap();
    assert_eq!(rec_nodes.len(), 3, "{rec}");
    for n in rec_nodes {
        assert!(n["in_recovery"].is_boolean(), "{n}");
        assert!(u(&n["objects_done"]) <= u(&n["objects_total"]), "{n}");
        assert!(n["progress_percent"].as_f64().is_some(), "{n}");
    }
}

/// Reads `--watch --json` lines until `pred` holds for one (each must parse).
fn watch_until(dog: &mut DogChild, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LINE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = dog
            .next_line(left)
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        let doc: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if pred(&doc) {
            return doc;
        }
    }
}

/// Sends SIGINT and checks that dog exits 0 with every line a JSON document.
fn interrupt_cleanly(dog: DogChild) {
    dog.interrupt().unwrap();
    let out = dog.wait().unwrap();
    assert_eq!(out.code(), Some(0), "after SIGINT: {}", out.stderr_str());
    for line in out.stdout_str().lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }
}

#[test]
fn cluster_info_watch_follows_a_node_leaving() {
    let mut c = Cluster::start(3).unwrap();
    c.format(2).unwrap();
    let (epoch, _) = c.members_seen_by(0).unwrap();
    let args = ["cluster", "info", "--watch", "--json", "--interval", "0.2"];
    let mut dog = c.sheep(0).spawn_dog_lines(&args).unwrap();
    for _ in 0..2 {
        let doc = watch_until(&mut dog, "a refresh", |_| true);
        assert_eq!(u(&doc["epoch"]), u64::from(epoch.0), "{doc}");
    }
    c.kill9(2).unwrap();
    let doc = watch_until(&mut dog, "the leave's epoch", |d| {
        u(&d["epoch"]) > u64::from(epoch.0)
    });
    assert_eq!(
        doc["epochs"][0]["nodes"].as_array().unwrap().len(),
        2,
        "{doc}"
    );
    assert_eq!(
        doc["epochs"][1]["nodes"].as_array().unwrap().len(),
        3,
        "{doc}"
    );
    interrupt_cleanly(dog);
}

#[test]
fn node_recovery_watch_shows_progress_until_done() {
    // One object per half second: recovery lasts long enough to be seen.
    let mut c = Cluster::start_with(3, &["-R", "max=1,interval=500"]).unwrap();
    c.format(2).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "v", "64M"], None).unwrap(),
        "create",
    );
    let data = pattern(sd_testkit::random_seed(), 0, 48 << 20);
    ok(
        c.dog(0, &["vdi", "write", "v", "0", "48M"], Some(&data))
            .unwrap(),
        "write",
    );
    let args = ["node", "recovery", "--watch", "--json", "--interval", "0.1"];
    let mut dog = c.sheep(0).spawn_dog_lines(&args).unwrap();
    for _ in 0..2 {
        let doc = watch_until(&mut dog, "a refresh", |_| true);
        assert_eq!(doc["nodes"].as_array().unwrap().len(), 3, "{doc}");
    }
    c.kill9(2).unwrap();
    let recovering = |d: &Value| {
        d["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["in_recovery"] == true && u(&n["objects_total"]) > 0)
    };
    let doc = watch_until(&mut dog, "a node in recovery", recovering);
    for n in doc["nodes"].as_array().unwrap() {
        let (done, total) = (u(&n["objects_done"]), u(&n["objects_total"]));
        assert!(done <= total, "{n}");
        let pct = n["progress_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pct), "{n}");
    }
    watch_until(&mut dog, "recovery to finish", |d| {
        let nodes = d["nodes"].as_array().unwrap();
        nodes.len() == 2 && nodes.iter().all(|n| n["in_recovery"] == false)
    });
    interrupt_cleanly(dog);
}

#[test]
fn watch_exits_with_sysfail_when_its_sheep_goes_away() {
    let mut sheep = Sheep::start_temp(&[]).unwrap();
    ok(sheep.dog(&["cluster", "format"], None).unwrap(), "format");
    // Text mode, stdout a pipe: refreshes are appended.
    let mut dog = sheep
        .spawn_dog_lines(&["cluster", "info", "--watch", "--interval", "0.2"])
        .unwrap();
    let mut refreshes = 0;
    while refreshes < 2 {
        let line = dog.next_line(LINE_TIMEOUT).unwrap();
        if line.starts_with("Cluster status: running") {
            refreshes += 1;
        }
    }
    sheep.kill9().unwrap();
    let out = dog.wait().unwrap();
    assert_eq!(out.code(), Some(2), "stderr: {}", out.stderr_str());
    assert!(
        out.stderr_str().contains("Failed to get node list"),
        "{}",
        out.stderr_str()
    );
}
