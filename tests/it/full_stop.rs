//! The whole cluster stops and starts again: after `dog cluster shutdown`, after SIGTERM
//! of every sheep (each drains and leaves) and after SIGKILL of every sheep, with the local
//! driver and with a real ZooKeeper. Restarting the nodes brings the cluster back to
//! running once every node of its last epoch has joined, with its epoch history and every
//! byte it acknowledged.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_testkit::zookeeper::ZkServer;
use sd_testkit::{Cluster, SETTLE_TIMEOUT, assert_same_bytes, pattern, random_seed};

use crate::cluster::{dog_read, dog_write, epochs, ok};

/// How long a stop (drain, flush, leave; or the shutdown record) may take.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;
const STATUS_RUNNING: &str = "Cluster status: running";
const STATUS_WAITING: &str = "Cluster status: Waiting for other nodes to join cluster";

/// How the whole cluster goes down.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// `dog cluster shutdown` through one node: every sheep exits by itself.
    Shutdown,
    /// SIGTERM to one sheep after the other (each drains, flushes and leaves).
    Term,
    /// SIGKILL to every sheep.
    Kill,
}

/// `n` sheep through a private ZooKeeper (`Some`) or the private local driver.
fn start(n: usize, zookeeper: bool) -> (Cluster, Option<ZkServer>) {
    if !zookeeper {
        return (Cluster::start(n).unwrap(), None);
    }
    let zk = ZkServer::start().unwrap();
    let spec = format!(
        "zookeeper:{}/full-stop-{:x},timeout=3000",
        zk.connect_string(),
        random_seed()
    );
    (Cluster::start_with(n, &["-c", &spec]).unwrap(), Some(zk))
}

fn stop(c: &mut Cluster, nodes: &[usize], how: Stop) {
    match how {
        Stop::Shutdown => {
            ok(
                c.dog(nodes[0], &["cluster", "shutdown"], None).unwrap(),
                "cluster shutdown",
            );
        }
        Stop::Term => {
            for &i in nodes {
                let pid = c.sheep(i).pid().expect("sheep runs");
                kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGTERM).unwrap();
                c.wait_exit(i, STOP_DEADLINE).unwrap();
            }
            return;
        }
        Stop::Kill => {
            for &i in nodes {
                c.kill9(i).unwrap();
            }
            return;
        }
    }
    for &i in nodes {
        c.wait_exit(i, STOP_DEADLINE).unwrap();
    }
}

/// The first line of `dog cluster info` through node `i`.
fn status(c: &Cluster, i: usize) -> String {
    let out = c.dog(i, &["cluster", "info"], None).unwrap();
    out.stdout_str()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn wait_running(c: &mut Cluster, nodes: &[usize]) {
    for &i in nodes {
        c.poll_until(SETTLE_TIMEOUT, "the cluster running again", |c| {
            Ok(status(c, i).starts_with(STATUS_RUNNING).then_some(()))
        })
        .unwrap();
    }
}

/// 3 sheep, copies=3, 8 MiB written; all stopped by `how`; started again: running, same
/// epoch history (and a newer epoch), every byte readable through every node.
fn stop_everything_then_start(zookeeper: bool, how: Stop) {
    let (mut c, _zk) = start(3, zookeeper);
    c.format(3).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "whole", "64M"], None).unwrap(),
        "vdi create",
    );
    let mut image = pattern(random_seed(), 0, 8 * MIB);
    dog_write(&c, 1, "whole", &image);
    let before = epochs(&c, 0);

    if matches!(how, Stop::Term) {
        // Stopped one after the other; written while only the last one runs, which then
        // alone holds the newest bytes: the cluster must wait for it.
        stop(&mut c, &[0, 1], how);
        image = pattern(random_seed(), 0, 8 * MIB);
        dog_write(&c, 2, "whole", &image);
        stop(&mut c, &[2], how);
    } else {
        stop(&mut c, &[0, 1, 2], how);
    }
    // Two of three back, not the last to stop: nothing is served until the last epoch is
    // complete (after SIGKILL nobody recorded an order, and with copies=3 any node has
    // every object, so there it is not checked).
    c.restart(0).unwrap();
    c.restart(1).unwrap();
    if !matches!(how, Stop::Kill) {
        assert_eq!(status(&c, 0), STATUS_WAITING, "{how:?}, two of three back");
        let read = c
            .dog(0, &["vdi", "read", "whole", "0", "4096"], None)
            .unwrap();
        assert!(!read.status.success(), "a waiting cluster serves no data");
    }
    c.restart(2).unwrap();
    c.wait_members(3).unwrap();
    wait_running(&mut c, &[0, 1, 2]);

    // Newest first.
    let after = epochs(&c, 2);
    assert!(
        after.len() > before.len() && after.ends_with(&before),
        "{how:?}: the epoch history goes on: before {before:?}, after {after:?}"
    );
    for i in 0..3 {
        assert_same_bytes(
            &dog_read(&c, i, "whole", 0, image.len()),
            &image,
            &format!("{how:?}: through node {i} after the restart"),
        );
    }
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
}

#[test]
fn a_cluster_shut_down_starts_again() {
    stop_everything_then_start(false, Stop::Shutdown);
}

#[test]
fn a_cluster_shut_down_starts_again_zookeeper() {
    stop_everything_then_start(true, Stop::Shutdown);
}

#[test]
fn a_cluster_stopped_by_sigterm_starts_again() {
    stop_everything_then_start(false, Stop::Term);
}

#[test]
fn a_cluster_stopped_by_sigterm_starts_again_zookeeper() {
    stop_everything_then_start(true, Stop::Term);
}

#[test]
fn a_cluster_killed_starts_again() {
    stop_everything_then_start(false, Stop::Kill);
}

#[test]
fn a_cluster_killed_starts_again_zookeeper() {
    stop_everything_then_start(true, Stop::Kill);
}

/// A node is down (SIGKILL, its leave recorded) when the cluster is shut down; then all
/// four start, the one that was down first: the cluster waits for the three of its last
/// epoch, then runs with all four, and the returning node gets its copies back.
fn shutdown_with_a_node_down(zookeeper: bool) {
    let (mut c, _zk) = start(4, zookeeper);
    c.format(3).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "whole", "64M"], None).unwrap(),
        "vdi create",
    );
    let image = pattern(random_seed(), 0, 8 * MIB);
    dog_write(&c, 0, "whole", &image[..4 * MIB]);
    c.kill9(3).unwrap();
    c.wait_members(3).unwrap();
    // Written while node 3 is away: only the three others have it.
    dog_write(&c, 1, "whole", &image);

    stop(&mut c, &[0, 1, 2], Stop::Shutdown);
    for i in [3, 0, 1] {
        c.restart(i).unwrap();
    }
    assert_eq!(status(&c, 3), STATUS_WAITING);
    c.restart(2).unwrap();
    c.wait_members(4).unwrap();
    wait_running(&mut c, &[0, 1, 2, 3]);
    for i in 0..4 {
        assert_same_bytes(
            &dog_read(&c, i, "whole", 0, image.len()),
            &image,
            &format!("through node {i} after the restart"),
        );
    }
    c.wait_settled(3, SETTLE_TIMEOUT).unwrap();
    c.check_replicas_identical().unwrap();
}

#[test]
fn a_shutdown_while_a_node_is_down_starts_again() {
    shutdown_with_a_node_down(false);
}

#[test]
fn a_shutdown_while_a_node_is_down_starts_again_zookeeper() {
    shutdown_with_a_node_down(true);
}

/// Node 1 misses a write while away, returns, and has not finished recovering (recovery
/// throttled) when every node is SIGKILLed. Started first, it must not run alone on its
/// stale copies: the last complete view (nodes 0 and 2) held the only copies of the newest
/// bytes. Once one of those is back, the newest bytes read back through node 1.
#[test]
fn a_node_still_recovering_when_all_die_waits_for_the_holders() {
    let mut c = Cluster::start_with(3, &["-R", "max=1,interval=60000"]).unwrap();
    c.format(3).unwrap();
    ok(
        c.dog(0, &["vdi", "create", "whole", "64M"], None).unwrap(),
        "vdi create",
    );
    dog_write(&c, 0, "whole", &pattern(random_seed(), 0, 8 * MIB));
    c.kill9(1).unwrap();
    c.wait_members(2).unwrap();
    let newest = pattern(random_seed(), 0, 8 * MIB);
    dog_write(&c, 0, "whole", &newest);
    // Nodes 0 and 2 finished recovering the epoch without node 1: a complete view.
    c.poll_until(SETTLE_TIMEOUT, "recovery without node 1", |c| {
        let done = [0, 2].iter().all(|&i| {
            c.dog(i, &["node", "recovery", "-r"], None)
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
        });
        Ok(done.then_some(()))
    })
    .unwrap();
    c.restart(1).unwrap();
    c.wait_members(3).unwrap();
    for i in 0..3 {
        c.kill9(i).unwrap();
    }

    c.restart(1).unwrap();
    assert_eq!(status(&c, 1), STATUS_WAITING, "node 1 alone");
    let read = c
        .dog(1, &["vdi", "read", "whole", "0", "4096"], None)
        .unwrap();
    assert!(!read.status.success(), "a waiting cluster serves no data");
    c.restart(2).unwrap();
    wait_running(&mut c, &[1, 2]);
    assert_same_bytes(
        &dog_read(&c, 1, "whole", 0, newest.len()),
        &newest,
        "through node 1",
    );
}
