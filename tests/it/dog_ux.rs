//! First-use behaviour of the real `dog` (issue 13): `--version`, a `--help` without the
//! subcommands that are not implemented yet, headers that end their line before the error
//! of the request after them (stdout and stderr on one pipe, as `2>&1` gives), and what
//! `cluster info` says while the cluster waits for nodes of its last epoch.

use std::io::{Read, Seek};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_testkit::{Cluster, DOG_TIMEOUT, SETTLE_TIMEOUT, Sheep, bin_path, poll_until};

/// `dog ARGS` with stdout and stderr on one file, so the result shows the order in which
/// the two streams were written; killed after [`DOG_TIMEOUT`]. Returns (exit code, text).
fn dog_merged(args: &[&str]) -> (Option<i32>, String) {
    let mut file = tempfile::tempfile().unwrap();
    let mut child = Command::new(bin_path("dog").unwrap())
        .args(args)
        .env_remove("SHEEPDOG_DOG_ADDR")
        .env_remove("SHEEPDOG_DOG_PORT")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file.try_clone().unwrap())
        .spawn()
        .unwrap();
    let status = poll_until(DOG_TIMEOUT, &format!("dog {args:?} to exit"), || {
        Ok(child.try_wait()?)
    });
    let status = status.unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{e:#}")
    });
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    (status.code(), text)
}

/// `dog ARGS -p PORT`, merged as [`dog_merged`].
fn dog_merged_at(port: u16, args: &[&str]) -> (Option<i32>, String) {
    let port = port.to_string();
    let mut all = args.to_vec();
    all.extend(["-p", port.as_str()]);
    dog_merged(&all)
}

#[test]
fn version_and_a_help_without_unimplemented_subcommands() {
    let version = format!("dog {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(dog_merged(&["--version"]), (Some(0), version));

    let (code, help) = dog_merged(&["--help"]);
    assert_eq!(code, Some(0), "{help}");
    for shown in ["vdi create", "vdi list", "node list", "cluster info"] {
        assert!(help.contains(&format!("\n  {shown} ")), "{shown}:\n{help}");
    }
    for shown in ["vdi check", "cluster check"] {
        assert!(help.contains(&format!("\n  {shown} ")), "{shown}:\n{help}");
    }
    for hidden in [
        "vdi backup",
        "node md",
        "node stat",
        "cluster snapshot",
        "upgrade ",
        "benchmark ",
    ] {
        assert!(
            !help.contains(&format!("\n  {hidden}")),
            "{hidden} listed:\n{help}"
        );
    }

    // The listing of a command (on a bad subcommand) leaves them out too.
    let (code, listing) = dog_merged(&["cluster", "nosuch"]);
    assert_eq!(
        (code, listing.as_str()),
        (
            Some(64),
            "Invalid command 'cluster nosuch'\nAvailable cluster commands:\n  cluster info\n  \
             cluster format\n  cluster shutdown\n  cluster check\n  cluster alter-copy\n"
        )
    );

    // Still parsed: they say they are not implemented, exit 1 as before.
    assert_eq!(
        dog_merged(&["vdi", "graph"]),
        (Some(1), "dog vdi graph is not implemented yet\n".into())
    );
    assert_eq!(
        dog_merged(&["upgrade", "epoch-convert", "a", "b"]),
        (
            Some(1),
            "dog upgrade epoch-convert is not implemented yet\n".into()
        )
    );
    let (code, usage) = dog_merged(&["cluster", "reweight", "-h"]);
    assert_eq!(code, Some(0));
    assert!(
        usage.starts_with("Usage: dog cluster reweight [-a address] [-p port] [-h] [-T]\n")
            && usage.ends_with("Note: this dog does not implement 'dog cluster reweight' yet.\n"),
        "{usage}"
    );
}

/// Every header printed before a request that then fails comes out whole, before the
/// failure's message, even when stdout is a pipe (where stdout is block-buffered).
#[test]
fn headers_end_their_line_before_the_error_that_follows() {
    let sheep = Sheep::start_temp(&[]).unwrap();
    let port = sheep.port();
    // Unformatted: STAT_SHEEP and READ_VDIS fail after the header.
    assert_eq!(
        dog_merged_at(port, &["node", "info"]),
        (
            Some(2),
            "Id\tSize\tUsed\tAvail\tUse%\nResponse's result: Waiting for cluster to be \
             formatted\nCannot get information from any nodes\n"
                .into()
        )
    );
    assert_eq!(
        dog_merged_at(port, &["cluster", "format", "-b", "nosuch"]),
        (
            Some(2),
            "using backend nosuch store\nFormat failed: Targeted backend store is not found\n\
             Available stores:\n---------------------------------------\nplain \n"
                .into()
        )
    );
}

/// A cluster whose nodes all died comes back with one of them: `cluster info` prints
/// Sheepdog's status line, then which node of the last epoch it waits for and how to
/// start a fresh cluster instead; `vdi list` prints its header, then the failures. Once
/// the other node is back, the extra lines are gone.
#[test]
fn cluster_info_names_the_nodes_a_waiting_cluster_waits_for() {
    let mut c = Cluster::start(2).unwrap();
    // copies=1: the restarted node records the other's leave (its liveness lock is free)
    // and waits because `copies` nodes of the last epoch are gone. (With copies=2 it runs
    // alone today: the daemon's fold takes it for a member that never left.)
    c.format(1).unwrap();
    c.dog(0, &["vdi", "create", "v", "8M"], None)
        .unwrap()
        .check_success("vdi create")
        .unwrap();
    let (p0, p1) = (c.sheep(0).port(), c.sheep(1).port());
    // Both stop at the same instant (SIGSTOP, then SIGKILL): neither sees the other leave,
    // so the last epoch holds both.
    for i in 0..2 {
        let pid = i32::try_from(c.sheep(i).pid().unwrap()).unwrap();
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    }
    c.kill9(0).unwrap();
    c.kill9(1).unwrap();
    c.restart(0).unwrap();

    let (code, info) = dog_merged_at(p0, &["cluster", "info"]);
    assert_eq!(code, Some(0), "{info}");
    let lines: Vec<&str> = info.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "Cluster status: Waiting for other nodes to join cluster",
            &format!("Waiting for nodes of epoch 1 to join: 127.0.0.1:{p1}"),
            "Hint: sheep started with the default '-c local' share the cluster state in \
             /tmp/sheepdog-rs-local with every such sheep on this host; start them with \
             '-c local:PATH' and a new PATH for a fresh cluster.",
            "",
        ],
        "{info}"
    );
    // The rest is Sheepdog's: the creation time and the epoch table.
    assert!(lines[4].starts_with("Cluster created at "), "{info}");
    assert_eq!(
        lines[5..7],
        ["", "Epoch Time           Version [Host:Port:V-Nodes,,,]"],
        "{info}"
    );
    assert!(
        lines[7].contains("      1 [")
            && lines[7].contains(&format!("127.0.0.1:{p0}:128"))
            && lines[7].contains(&format!("127.0.0.1:{p1}:128"))
            && lines.len() == 8,
        "{info}"
    );

    // -v: after the status block; -r: Sheepdog's lines only.
    let (_, verbose) = dog_merged_at(p0, &["cluster", "info", "-v"]);
    let v: Vec<&str> = verbose.lines().collect();
    assert!(v[3].starts_with("Cluster store modes: "), "{verbose}");
    assert_eq!(v[4..6], lines[1..3], "{verbose}");
    assert!(v[6].starts_with("Cluster created at "), "{verbose}");
    let (_, raw) = dog_merged_at(p0, &["cluster", "info", "-r"]);
    assert!(
        raw.starts_with("Waiting for other nodes to join cluster\n\n") && !raw.contains("Hint"),
        "{raw}"
    );
    // --json: the awaited nodes as addresses.
    let out = c.dog(0, &["cluster", "info", "--json"], None).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "waiting_for_join", "{doc}");
    assert_eq!(
        doc["waiting_for"],
        serde_json::json!([{"addr": format!("127.0.0.1:{p1}"), "ip": "127.0.0.1", "port": p1}]),
        "{doc}"
    );

    // The inode read fails after the header (which Sheepdog reports and skips).
    let (code, list) = dog_merged_at(p0, &["vdi", "list"]);
    assert_eq!(
        (code, list.as_str()),
        (
            Some(0),
            "  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   \
             Block Size Shift\nFailed to read object 8002060900000000 Waiting for other \
             nodes to join cluster\nFailed to read inode header\n"
        )
    );

    c.restart(1).unwrap();
    let running = c
        .poll_until(SETTLE_TIMEOUT, "the cluster to run again", |c| {
            let out = c.dog(0, &["cluster", "info"], None)?;
            Ok(out
                .stdout_str()
                .starts_with("Cluster status: running")
                .then(|| out.stdout_str()))
        })
        .unwrap();
    assert!(
        !running.contains("Waiting for nodes") && !running.contains("Hint"),
        "{running}"
    );
    let out = c.dog(0, &["cluster", "info", "--json"], None).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["waiting_for"], serde_json::json!([]), "{doc}");
}
