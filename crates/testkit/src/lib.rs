//! Process harness for sheepdog-rs tests.
//!
//! Finds the built `sheep` and `dog` binaries ([`bin_path`]), starts real daemons in
//! temporary directories on free ports ([`Sheep`]) or as a cluster sharing a private
//! `-c local:PATH` ([`Cluster`]), SIGKILLs and restarts them, runs `dog`
//! with a deadline ([`dog`]), speaks the wire protocol on raw sockets ([`RawClient`],
//! [`req`]) and derives the bytes tests write from a seed and an offset ([`pattern`]).
//! [`FaultFs`] puts a node's base directory on a `faultfs` mount whose power a test can cut
//! ([`Cluster::start_on_faultfs`], [`Cluster::power_cut`]). [`netns::Net`] runs sheep and
//! ZooKeeper in network namespaces whose links a test cuts ([`Cluster::start_on_net`]).
//! For in-process tests, [`fake_peer::FakePeer`] is a scripted member of a `-c local`
//! cluster that speaks the peer protocol (answers, stalls, errs or dies on command).
//!
//! Every wait in here polls against a deadline ([`poll_until`]); nothing sleeps for a fixed
//! time, and nothing can block forever: sockets carry read/write timeouts and child
//! processes are killed when their deadline passes or their handle drops.
//!
//! The binaries are not built by this crate: run `cargo build --workspace --bins` first, or
//! point `SHEEPDOG_BIN_DIR` at a directory holding them.

#![forbid(unsafe_code)]

mod bins;
mod cluster;
mod dog;
pub mod fake_peer;
mod faultfs;
mod figure;
mod fsutil;
pub mod netns;
mod pattern;
mod poll;
mod port;
mod raw;
pub mod req;
mod sheep;
pub mod thrash;
pub mod zookeeper;

pub use bins::{BIN_DIR_ENV, bin_dir, bin_path};
pub use cluster::{Cluster, NET_SHEEP_PORT, Placement, QUARANTINE_DIR, SETTLE_TIMEOUT};
pub use dog::{DOG_TIMEOUT, DogChild, DogOutput, dog, spawn_dog, spawn_dog_lines};
pub use faultfs::{FAULTFS_TIMEOUT, FaultFs, FaultFsStat};
pub use figure::{FIGURE_PREFIX, figure};
pub use fsutil::dir_names;
pub use pattern::{assert_same_bytes, pattern, random_seed};
pub use poll::poll_until;
pub use port::free_port;
pub use raw::{IO_TIMEOUT, MAX_RESPONSE_PAYLOAD, RawClient, Response};
pub use sheep::{READY_TIMEOUT, Sheep};
