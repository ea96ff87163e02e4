//! Daemon start-up refusals the harness must surface: a taken port and a base directory
//! already in use both make `sheep` exit, and the error quotes what it said.

use std::net::{Ipv4Addr, TcpListener};

use sd_testkit::Sheep;

#[test]
fn sheep_on_a_taken_port_exits_with_its_reason() {
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = holder.local_addr().unwrap().port();
    let root = tempfile::tempdir().unwrap();
    let err = Sheep::start(&root.path().join("dir"), port, &[]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("exited"), "not reported as an exit: {msg}");
    assert!(
        msg.contains(&format!("binding 127.0.0.1:{port}")),
        "no reason quoted: {msg}"
    );
    drop(holder);
}

#[test]
fn second_sheep_on_the_same_dir_is_refused() {
    let mut first = Sheep::start_temp(&[]).unwrap();
    let port = sd_testkit::free_port().unwrap();
    let err = Sheep::start(first.dir(), port, &[]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("another sheep is using"),
        "no reason quoted: {msg}"
    );
    // The first one is unaffected.
    first.check_alive().unwrap();
    let mut c = first.connect().unwrap();
    c.call_ok(&sd_testkit::req::get_node_list(), &[]).unwrap();
}
