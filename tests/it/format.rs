//! `dog cluster format` followed at once by `dog vdi create`, as users script it: the
//! format answers only once every member serves the new format, and a member that has not
//! yet applied an epoch asks its peers to retry, so the create (through the same node or
//! another) never meets a member still between "formatted" and "running". A slow member
//! is made reproducible with the delay point `format:before_running` (a sheep built with
//! the `failpoints` feature pauses there).

use sd_testkit::Cluster;

use crate::cluster::ok;

/// Formats, each followed at once by a create.
const ROUNDS: usize = 6;
/// How long the slow members pause between applying the format and serving it.
const SLOW: &str = "format:before_running:400";

#[test]
fn a_create_right_after_a_format_succeeds_with_slow_members() {
    let mut c = Cluster::start(3).unwrap();
    for i in [1, 2] {
        c.set_env(i, "SHEEP_DELAY_AT", Some(SLOW));
        c.kill9(i).unwrap();
        c.restart(i).unwrap();
    }
    c.wait_members(3).unwrap();
    for round in 0..ROUNDS {
        // The format goes through node 0 (not slow); the create alternates between node 0
        // (whose peers are slow) and a slow member itself.
        let via = if round % 2 == 0 { 0 } else { 1 + round / 2 % 2 };
        ok(
            c.dog(0, &["cluster", "format", "-c", "3", "-f"], None)
                .unwrap(),
            &format!("round {round}: cluster format"),
        );
        ok(
            c.dog(via, &["vdi", "create", "-P", "bar", "16M"], None)
                .unwrap(),
            &format!("round {round}: vdi create through node {via}"),
        );
        let list = ok(
            c.dog(via, &["vdi", "list", "-r"], None).unwrap(),
            "vdi list",
        );
        assert!(
            list.stdout_str().contains(" bar "),
            "round {round}: {}",
            list.stdout_str()
        );
    }
}
