//! `sheep --metrics`: a Prometheus scrape of a running writeback sheep moves as Sheepdog
//! and NBD I/O happens (request counts, bytes, dirty bytes, flush fan-out, objects, epoch).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use sd_testkit::{Cluster, free_port, pattern, poll_until, random_seed, req};

use crate::common::{OBJ_LEN, OBJ_SIZE, create_vdi};

/// How long a gauge may take to follow (the sampler runs every 2 s).
const SAMPLED: Duration = Duration::from_secs(15);

/// One scrape: `name{labels}` (as printed) → value.
pub(crate) fn scrape(addr: &str) -> anyhow::Result<HashMap<String, f64>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP header end in {text:?}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "{head}"
    );
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

/// The value of `key` in the scrape, 0 when absent (a counter never incremented).
pub(crate) fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// Polls the scrape until `ok` holds for it.
fn until(
    addr: &str,
    what: &str,
    ok: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    poll_until(SAMPLED, what, || {
        let m = scrape(addr)?;
        Ok(ok(&m).then_some(m))
    })
    .unwrap()
}

#[test]
fn metrics_move_with_sheepdog_and_nbd_io() {
    let addr = format!("127.0.0.1:{}", free_port().unwrap());
    let mut c = Cluster::start_nbd(
        1,
        &["-W", "--writeback-max-age", "600000", "--metrics", &addr],
        &[0],
    )
    .unwrap();
    c.format(1).unwrap();
    let m0 = until(&addr, "the epoch gauge", |m| value(m, "sheep_epoch") == 1.0);
    assert_eq!(value(&m0, "sheep_cluster_nodes"), 1.0);
    assert_eq!(value(&m0, "sheep_writeback_dirty_bytes"), 0.0);

    // Sheepdog protocol: a data object created (durable at once: creates are crash-safe),
    // overwritten (dirty in writeback mode), read and flushed.
    let mut raw = c.connect(0).unwrap();
    let vid = create_vdi(&mut raw, "m", 4 * OBJ_SIZE);
    let data = pattern(random_seed(), 0, OBJ_SIZE as usize);
    raw.call_ok(
        &req::create_and_write_obj(vid.data_oid(0), 0, OBJ_LEN),
        &data,
    )
    .unwrap();
    raw.call_ok(&req::write_obj(vid.data_oid(0), 0, OBJ_LEN), &data)
        .unwrap();
    let m1 = until(&addr, "dirty bytes to show the overwrite", |m| {
        value(m, "sheep_writeback_dirty_bytes") >= OBJ_SIZE as f64
    });
    let write_ok =
        r#"sheep_requests_total{protocol="sheepdog",op="CreateAndWriteObj",result="ok"}"#;
    assert_eq!(value(&m1, write_ok), 1.0);
    let overwrite_ok = r#"sheep_requests_total{protocol="sheepdog",op="WriteObj",result="ok"}"#;
    assert_eq!(value(&m1, overwrite_ok), 1.0);
    assert_eq!(
        value(&m1, r#"sheep_written_bytes_total{protocol="sheepdog"}"#),
        2.0 * OBJ_SIZE as f64
    );
    let rsp = raw
        .call_ok(&req::read_obj(vid.data_oid(0), 0, OBJ_LEN), &[])
        .unwrap();
    assert_eq!(rsp.payload, data);
    raw.call_ok(&req::flush_vdi(vid), &[]).unwrap();
    let m2 = until(&addr, "the flush to empty the dirty bytes", |m| {
        value(m, "sheep_writeback_dirty_bytes") == 0.0 && value(m, "sheep_objects") >= 2.0
    });
    assert_eq!(
        value(&m2, r#"sheep_read_bytes_total{protocol="sheepdog"}"#),
        OBJ_SIZE as f64
    );
    // One FLUSH_VDI that reached one node (this one).
    assert_eq!(value(&m2, "sheep_flush_peer_fanout_count"), 1.0);
    assert_eq!(value(&m2, "sheep_flush_peer_fanout_sum"), 1.0);
    assert!(value(&m2, r#"sheep_flush_duration_seconds_count{side="gateway"}"#) >= 1.0);
    assert!(value(&m2, "sheep_disk_used_bytes") >= OBJ_SIZE as f64);
    let latency = r#"sheep_request_duration_seconds_count{protocol="sheepdog",op="ReadObj"}"#;
    assert!(value(&m2, latency) >= 1.0, "{m2:?}");

    // NBD: 1 MiB written and read back through qemu-io, then flushed.
    let uri = c.nbd_uri(0, "m");
    let out = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 4M 1M",
            "-c",
            "read -P 0x5a 4M 1M",
        ])
        .args(["-c", "flush", &uri])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m3 = until(&addr, "NBD counters", |m| {
        value(m, r#"sheep_written_bytes_total{protocol="nbd"}"#) >= (1 << 20) as f64
    });
    assert!(value(&m3, r#"sheep_read_bytes_total{protocol="nbd"}"#) >= (1 << 20) as f64);
    assert!(
        value(
            &m3,
            r#"sheep_requests_total{protocol="nbd",op="write",result="ok"}"#
        ) >= 1.0
    );
    assert!(
        value(
            &m3,
            r#"sheep_requests_total{protocol="nbd",op="flush",result="ok"}"#
        ) >= 1.0
    );
    assert!(value(&m3, "sheep_flush_peer_fanout_count") >= 2.0);
    // A request refused shows as an error.
    let bad = raw
        .call(&req::read_obj(vid.data_oid(3), 0, 4096), &[])
        .unwrap();
    assert_ne!(bad.header.result, sd_proto::SdResult::Success);
    let m4 = scrape(&addr).unwrap();
    assert!(
        value(
            &m4,
            r#"sheep_requests_total{protocol="sheepdog",op="ReadObj",result="error"}"#
        ) >= 1.0
    );
}
