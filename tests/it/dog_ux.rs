//! First-use behaviour of the real `dog` (issue 13): `--version`, a `--help` without the
//! subcommands that are not implemented yet, and headers that end their line before the
//! error of the request after them (stdout and stderr on one pipe, as `2>&1` gives).

use std::io::{Read, Seek};
use std::process::{Command, Stdio};

use sd_testkit::{DOG_TIMEOUT, Sheep, bin_path, poll_until};

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
    for hidden in [
        "vdi check",
        "vdi backup",
        "node md",
        "node stat",
        "cluster check",
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
             cluster format\n  cluster shutdown\n"
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
    let (code, usage) = dog_merged(&["cluster", "check", "-h"]);
    assert_eq!(code, Some(0));
    assert!(
        usage.starts_with("Usage: dog cluster check [-a address] [-p port] [-h] [-T]\n")
            && usage.ends_with("Note: this dog does not implement 'dog cluster check' yet.\n"),
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
