//! [`Cluster`]: several real `sheep` daemons forming one cluster through a private
//! `-c local:PATH` directory, with the placement the vnode ring prescribes and waits for
//! membership and recovery to settle, judged from the object files on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sd_cluster::placement::Ring;
use sd_proto::node::{NodeId, SD_DEFAULT_VNODES, SdNode};
use sd_proto::{Epoch, Oid};

use crate::netns::Host;
use crate::sheep::Nbd;
use crate::{DogOutput, FaultFs, RawClient, Sheep, dir_names, poll_until, req};

/// A generous bound for membership changes and recovery in tests (debug builds, 2 cores).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The port of every node of [`Cluster::start_on_net`] (each has its own address).
pub const NET_SHEEP_PORT: u16 = 7000;

/// How often settle and membership waits look again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The directory inside `DIR/obj` where a sheep moves copies a failed writeback sync lost.
pub const QUARANTINE_DIR: &str = ".quarantine";

/// Misplaced objects quoted in a timeout message.
const QUOTE_MAX: usize = 20;

/// One member of a [`Cluster`].
#[derive(Debug)]
struct Member {
    sheep: Sheep,
    zone: u32,
    /// The `faultfs` mount under the base directory, for clusters on
    /// [`Cluster::start_on_faultfs`]. Declared after `sheep`: unmounted after the kill.
    disk: Option<FaultFs>,
}

/// Where the nodes' base directories live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disks {
    /// Plain directories of the temporary root.
    Plain,
    /// One `faultfs` mount per node (image `ROOT/nodeI.img`).
    FaultFs,
}

/// N `sheep -f -p PORT -b 127.0.0.1 -z ZONE -c local:PATH DIR` daemons sharing one private
/// cluster directory `PATH`. Each node has its own base directory and free port, kept
/// across [`Cluster::kill9`] and [`Cluster::restart`]. Dropping the cluster SIGKILLs every
/// daemon, then removes all directories.
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
    // Declared last: removed only after every daemon was killed.
    root: tempfile::TempDir,
}

/// Who holds which object: oid → node indexes.
pub type Placement = BTreeMap<Oid, BTreeSet<usize>>;

impl Cluster {
    /// Starts `n` sheep in zones `0..n` and waits until each of them sees all `n` members.
    pub fn start(n: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with(n, &[])
    }

    /// [`Cluster::start`] with `extra` arguments for every sheep (such as `-W`, or a
    /// `-c zookeeper:...` driver instead of the private local one), kept across
    /// [`Cluster::restart`].
    pub fn start_with(n: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        let zones: Vec<u32> = (0..n)
            .map(|i| u32::try_from(i).context("too many nodes"))
            .collect::<anyhow::Result<_>>()?;
        Cluster::start_zones_with(&zones, extra)
    }

    /// Starts one sheep per entry of `zones` (node `i` in zone `zones[i]`) and waits until
    /// each of them sees all members.
    pub fn start_zones(zones: &[u32]) -> anyhow::Result<Cluster> {
        Cluster::start_zones_with(zones, &[])
    }

    /// [`Cluster::start_zones`] with `extra` arguments for every sheep.
    pub fn start_zones_with(zones: &[u32], extra: &[&str]) -> anyhow::Result<Cluster> {
        Cluster::start_inner(zones, extra, &[], Disks::Plain, &[])
    }

    /// [`Cluster::start_with`] with node `i` running inside `hosts[i]`'s network namespace
    /// on the host's address, port [`NET_SHEEP_PORT`] (see [`crate::netns`]); `extra`
    /// names the driver (`-c zookeeper:...` with a server the nodes can reach).
    pub fn start_on_net(hosts: &[Host], extra: &[&str]) -> anyhow::Result<Cluster> {
        let zones: Vec<u32> = (0..hosts.len())
            .map(|i| u32::try_from(i).context("too many nodes"))
            .collect::<anyhow::Result<_>>()?;
        Cluster::start_inner(&zones, extra, &[], Disks::Plain, hosts)
    }

    /// [`Cluster::start_with`] with every node's base directory on its own `faultfs` mount
    /// (`crates/faultfs`), so a test can cut the power of a node's disk
    /// ([`Cluster::power_cut`]), limit its capacity or fail its reads ([`Cluster::disk`]).
    pub fn start_on_faultfs(n: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        let zones: Vec<u32> = (0..n)
            .map(|i| u32::try_from(i).context("too many nodes"))
            .collect::<anyhow::Result<_>>()?;
        Cluster::start_inner(&zones, extra, &[], Disks::FaultFs, &[])
    }

    /// [`Cluster::start_with`], where the nodes listed in `exporters` also serve NBD, each
    /// on its own free loopback port (kept across [`Cluster::restart`]; see
    /// [`Cluster::nbd_uri`]). The others run with `--nbd off`; `extra` must not name
    /// `--nbd` itself.
    pub fn start_nbd(n: usize, extra: &[&str], exporters: &[usize]) -> anyhow::Result<Cluster> {
        ensure!(
            !extra.iter().any(|a| a.starts_with("--nbd")),
            "start_nbd chooses the NBD addresses itself, but extra says {extra:?}"
        );
        ensure!(
            exporters.iter().all(|i| *i < n),
            "exporters {exporters:?} outside a cluster of {n}"
        );
        let zones: Vec<u32> = (0..n)
            .map(|i| u32::try_from(i).context("too many nodes"))
            .collect::<anyhow::Result<_>>()?;
        Cluster::start_inner(&zones, extra, exporters, Disks::Plain, &[])
    }

    fn start_inner(
        zones: &[u32],
        extra: &[&str],
        exporters: &[usize],
        disks: Disks,
        hosts: &[Host],
    ) -> anyhow::Result<Cluster> {
        let root = tempfile::Builder::new()
            .prefix("sheepdog-cluster-it-")
            .tempdir()
            .context("creating a temporary directory")?;
        let path = root.path().join("cluster");
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut spec = String::from("local:");
        spec.push_str(path.to_str().context("temporary path is not UTF-8")?);
        let mut c = Cluster {
            members: Vec::with_capacity(zones.len()),
            root,
        };
        let started = Instant::now();
        for (i, zone) in zones.iter().enumerate() {
            let dir = c.root.path().join(format!("node{i}"));
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let disk = match disks {
                Disks::Plain => None,
                Disks::FaultFs => {
                    let image = c.root.path().join(format!("node{i}.img"));
                    Some(FaultFs::mount(&image, &dir).with_context(|| format!("node {i}'s disk"))?)
                }
            };
            let z = zone.to_string();
            let mut args = vec!["-z", z.as_str()];
            // `extra` may name its own driver (e.g. `-c zookeeper:...`).
            if !extra.iter().any(|a| *a == "-c" || *a == "--cluster") {
                args.extend(["-c", spec.as_str()]);
            }
            args.extend_from_slice(extra);
            let nbd = if exporters.contains(&i) {
                Nbd::FreePort
            } else {
                Nbd::Off
            };
            let sheep = match hosts.get(i) {
                Some(h) => Sheep::start_on(h, &dir, NET_SHEEP_PORT, &args),
                None => Sheep::start_free_port(dir, &args, None, nbd),
            }
            .with_context(|| format!("starting node {i} (zone {zone})"))?;
            c.members.push(Member {
                sheep,
                zone: *zone,
                disk,
            });
        }
        c.wait_members(zones.len())?;
        eprintln!(
            "cluster of {} started in {:.2?} (ports {:?}, NBD {:?})",
            zones.len(),
            started.elapsed(),
            c.members.iter().map(|m| m.sheep.port()).collect::<Vec<_>>(),
            c.members
                .iter()
                .filter_map(|m| m.sheep.nbd_addr())
                .collect::<Vec<_>>()
        );
        Ok(c)
    }

    /// Number of nodes, live or killed.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for a cluster of no nodes.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The shared cluster directory (`PATH` of `-c local:PATH`).
    pub fn path(&self) -> PathBuf {
        self.root.path().join("cluster")
    }

    /// Node `i`; a bad index is a bug in the test, reported as a panic at its call.
    #[track_caller]
    fn m(&self, i: usize) -> &Member {
        let n = self.members.len();
        self.members
            .get(i)
            .unwrap_or_else(|| panic!("no node {i} in a cluster of {n}"))
    }

    #[track_caller]
    fn m_mut(&mut self, i: usize) -> &mut Member {
        let n = self.members.len();
        self.members
            .get_mut(i)
            .unwrap_or_else(|| panic!("no node {i} in a cluster of {n}"))
    }

    /// Node `i`'s daemon handle. Panics if there is no node `i` (a test bug).
    pub fn sheep(&self, i: usize) -> &Sheep {
        &self.m(i).sheep
    }

    /// Node `i`'s daemon handle, mutable. Panics if there is no node `i` (a test bug).
    pub fn sheep_mut(&mut self, i: usize) -> &mut Sheep {
        &mut self.m_mut(i).sheep
    }

    /// Node `i`'s zone. Panics if there is no node `i` (a test bug).
    pub fn zone(&self, i: usize) -> u32 {
        self.m(i).zone
    }

    /// Node `i` as the cluster describes it (address, default vnodes, zone): what the
    /// placement of the ring is computed from. Panics if there is no node `i`.
    pub fn sd_node(&self, i: usize) -> SdNode {
        let m = self.m(i);
        SdNode {
            nid: NodeId::from_socket(m.sheep.addr()),
            nr_vnodes: SD_DEFAULT_VNODES,
            zone: m.zone,
            ..SdNode::default()
        }
    }

    /// The nodes the test has not killed (running, or started and since crashed).
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.m(*i).sheep.pid().is_some())
            .collect()
    }

    /// SIGKILLs node `i` (and reaps it). Its directory and port stay for [`Cluster::restart`].
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        let status = self
            .m_mut(i)
            .sheep
            .kill9()
            .with_context(|| format!("SIGKILL node {i}"))?;
        ensure!(!status.success(), "node {i} survived SIGKILL: {status}");
        Ok(())
    }

    /// Waits up to `timeout` for node `i` to exit by itself (it lost its membership) and
    /// reaps it; it is no longer live, and [`Cluster::restart`] starts it again.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        self.m_mut(i)
            .sheep
            .wait_exit(timeout)
            .with_context(|| format!("node {i}"))
            .map(drop)
    }

    /// Node `i`'s `faultfs` disk. Panics if the cluster was not started on faultfs (a test
    /// bug).
    #[track_caller]
    pub fn disk(&self, i: usize) -> &FaultFs {
        self.m(i)
            .disk
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} has no faultfs disk"))
    }

    /// Cuts the power of `nodes`: SIGKILLs every one of them that runs, then cuts each
    /// one's disk (what was not made durable is lost) and mounts what survived again. The
    /// sheep stay down until [`Cluster::restart`].
    pub fn power_cut(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        for &i in nodes {
            if self.m(i).sheep.pid().is_some() {
                self.kill9(i)?;
            }
        }
        for &i in nodes {
            let disk = self
                .m_mut(i)
                .disk
                .as_mut()
                .with_context(|| format!("node {i} has no faultfs disk"))?;
            disk.cut()
                .with_context(|| format!("cutting node {i}'s disk"))?;
        }
        for &i in nodes {
            if let Some(disk) = self.m_mut(i).disk.as_mut() {
                disk.remount()
                    .with_context(|| format!("remounting node {i}'s disk"))?;
            }
        }
        Ok(())
    }

    /// Starts node `i` again on its directory, port and zone; returns once it answers
    /// requests (it has joined). Does not wait for the other members to see it.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.m_mut(i)
            .sheep
            .restart()
            .with_context(|| format!("restarting node {i}"))
    }

    /// Sets (`Some`) or clears (`None`) an environment variable of node `i`, effective at
    /// its next [`Cluster::restart`].
    pub fn set_env(&mut self, i: usize, key: &str, value: Option<&str>) {
        self.m_mut(i).sheep.set_env(key, value);
    }

    /// `nbd://127.0.0.1:PORT/EXPORT` on node `i`, which must have been started as an
    /// exporter by [`Cluster::start_nbd`]; anything else is a test bug, reported as a panic.
    #[track_caller]
    pub fn nbd_uri(&self, i: usize, export: &str) -> String {
        self.m(i)
            .sheep
            .nbd_uri(export)
            .unwrap_or_else(|e| panic!("node {i}: {e:#}"))
    }

    /// Runs `dog ARGS -p PORT` against node `i`.
    pub fn dog(&self, i: usize, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<DogOutput> {
        self.m(i).sheep.dog(args, stdin)
    }

    /// A new raw protocol connection to node `i`.
    pub fn connect(&self, i: usize) -> anyhow::Result<RawClient> {
        self.m(i).sheep.connect()
    }

    /// `dog cluster format -c COPIES` through the first live node (no confirmation is
    /// answered: with fewer zones than copies dog would ask and the format fails), then
    /// waits until every live node has applied it.
    pub fn format(&mut self, copies: u8) -> anyhow::Result<()> {
        let first = *self.live().first().context("no live node")?;
        let c = copies.to_string();
        let out = self.dog(first, &["cluster", "format", "-c", &c], None)?;
        out.check_success("dog cluster format")?;
        ensure!(
            out.stdout_str().contains("using backend plain store"),
            "dog cluster format said {:?} / {:?}",
            out.stdout_str(),
            out.stderr_str()
        );
        let n = self.live().len();
        let epoch = self.wait_members(n)?;
        ensure!(epoch.0 >= 1, "formatted cluster still at epoch {epoch:?}");
        Ok(())
    }

    /// The base directory of node `i`.
    pub fn dir(&self, i: usize) -> &Path {
        self.m(i).sheep.dir()
    }

    /// The file holding `oid` on node `i` (whether or not it exists).
    pub fn object_path(&self, i: usize, oid: Oid) -> PathBuf {
        self.dir(i).join("obj").join(oid.to_string())
    }

    /// Where node `i` moves object copies a failed writeback sync lost
    /// (`DIR/obj/.quarantine`); not an object store.
    pub fn quarantine_dir(&self, i: usize) -> PathBuf {
        self.dir(i).join("obj").join(QUARANTINE_DIR)
    }

    /// The objects stored in node `i`'s `DIR/obj` (16 hex digits each; names containing
    /// ".tmp" are creations in progress and skipped, and so are [`QUARANTINE_DIR`] and
    /// partial copies, `<oid>.partial`, which recovery has not merged yet). Fails on any
    /// other entry.
    pub fn objects_on_disk(&self, i: usize) -> anyhow::Result<BTreeSet<Oid>> {
        let obj = self.m(i).sheep.dir().join("obj");
        if !obj.exists() {
            return Ok(BTreeSet::new());
        }
        let mut out = BTreeSet::new();
        for name in dir_names(&obj)? {
            if name.contains(".tmp")
                || name == QUARANTINE_DIR
                || name.ends_with(".partial")
                || parse_strip(&name).is_some()
            {
                continue;
            }
            let hex =
                name.len() == 16 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            ensure!(hex, "unexpected entry {}/{name}", obj.display());
            let v = u64::from_str_radix(&name, 16).with_context(|| format!("parsing {name}"))?;
            out.insert(Oid::new(v));
        }
        Ok(out)
    }

    /// The erasure-coded strips (object, strip index) stored in node `i`'s `DIR/obj`
    /// (files `<oid>_<index>`; their logs `<oid>_<index>.log` are not strips).
    pub fn strips_on_disk(&self, i: usize) -> anyhow::Result<BTreeSet<(Oid, u8)>> {
        let obj = self.m(i).sheep.dir().join("obj");
        if !obj.exists() {
            return Ok(BTreeSet::new());
        }
        Ok(dir_names(&obj)?
            .iter()
            .filter_map(|n| parse_strip(n))
            .filter(|(_, _, log)| !log)
            .map(|(oid, index, _)| (oid, index))
            .collect())
    }

    /// The bytes of strip `index` of `oid` on node `i`.
    pub fn read_strip(&self, i: usize, oid: Oid, index: u8) -> anyhow::Result<Vec<u8>> {
        let p = self.dir(i).join("obj").join(format!("{oid}_{index}"));
        std::fs::read(&p).with_context(|| format!("reading node {i}'s {}", p.display()))
    }

    /// The bytes of `oid`'s file on node `i`.
    pub fn read_object(&self, i: usize, oid: Oid) -> anyhow::Result<Vec<u8>> {
        let p = self.object_path(i, oid);
        std::fs::read(&p).with_context(|| format!("reading node {i}'s {}", p.display()))
    }

    /// The nodes (indexes) the ring of the members `nodes` places `oid` on with `copies`
    /// replicas, primary first.
    pub fn placement(&self, oid: Oid, nodes: &[usize], copies: usize) -> Vec<usize> {
        let members: Vec<SdNode> = nodes.iter().map(|i| self.sd_node(*i)).collect();
        Ring::new(&members)
            .replicas(oid, copies)
            .iter()
            .filter_map(|n| {
                nodes
                    .iter()
                    .copied()
                    .find(|i| self.sd_node(*i).nid == n.nid)
            })
            .collect()
    }

    /// Who holds which object among `nodes`, from the files on disk.
    pub fn actual_placement(&self, nodes: &[usize]) -> anyhow::Result<Placement> {
        let mut out = Placement::new();
        for &i in nodes {
            for oid in self.objects_on_disk(i)? {
                out.entry(oid).or_default().insert(i);
            }
        }
        Ok(out)
    }

    /// Where every object found on the disks of `nodes` belongs when `nodes` are the
    /// members and objects have `copies` replicas.
    pub fn expected_placement(&self, nodes: &[usize], copies: usize) -> anyhow::Result<Placement> {
        let members: Vec<SdNode> = nodes.iter().map(|i| self.sd_node(*i)).collect();
        let ring = Ring::new(&members);
        let index: BTreeMap<NodeId, usize> = nodes
            .iter()
            .zip(&members)
            .map(|(i, n)| (n.nid, *i))
            .collect();
        let mut out = Placement::new();
        for oid in self.actual_placement(nodes)?.into_keys() {
            let holders = ring
                .replicas(oid, copies)
                .iter()
                .filter_map(|n| index.get(&n.nid).copied())
                .collect();
            out.insert(oid, holders);
        }
        Ok(out)
    }

    /// The epoch and members node `i` reports (GET_NODE_LIST).
    pub fn members_seen_by(&self, i: usize) -> anyhow::Result<(Epoch, Vec<SdNode>)> {
        let mut c = self.connect(i)?;
        let rsp = c.call_ok(&req::get_node_list(), &[])?;
        let n = usize::try_from(rsp.header.node().nr_nodes).context("node count")?;
        let nodes = SdNode::decode_list(&rsp.payload, n).context("decoding the node list")?;
        Ok((rsp.header.epoch, nodes))
    }

    /// Whether every live node reports exactly the live nodes (address, vnodes and zone)
    /// at one common epoch: `Ok(Some(epoch))`, or `Ok(None)` with why not in `why`.
    fn membership_agreed(&mut self, why: &mut String) -> anyhow::Result<Option<Epoch>> {
        why.clear();
        let live = self.live();
        let want: BTreeSet<(NodeId, u16, u32)> = live
            .iter()
            .map(|i| {
                let n = self.sd_node(*i);
                (n.nid, n.nr_vnodes, n.zone)
            })
            .collect();
        let mut epochs = BTreeSet::new();
        for &i in &live {
            self.m_mut(i).sheep.check_alive()?;
            match self.members_seen_by(i) {
                Ok((epoch, nodes)) => {
                    let seen: BTreeSet<(NodeId, u16, u32)> =
                        nodes.iter().map(|n| (n.nid, n.nr_vnodes, n.zone)).collect();
                    if seen != want {
                        let ports: Vec<u16> = nodes.iter().map(|n| n.nid.port).collect();
                        let _ = writeln!(why, "node {i} (epoch {}) sees ports {ports:?}", epoch.0);
                    }
                    epochs.insert(epoch);
                }
                Err(e) => {
                    let _ = writeln!(why, "node {i}: {e:#}");
                }
            }
        }
        if !why.is_empty() {
            let ports: Vec<u16> = live.iter().map(|i| self.m(*i).sheep.port()).collect();
            let _ = writeln!(why, "live nodes {live:?} are on ports {ports:?}");
            return Ok(None);
        }
        if epochs.len() > 1 {
            let _ = writeln!(why, "live nodes disagree on the epoch: {epochs:?}");
            return Ok(None);
        }
        Ok(epochs.into_iter().next())
    }

    /// Waits (up to [`SETTLE_TIMEOUT`]) until each of the `n` live nodes reports exactly
    /// the live nodes as members, all at the same epoch; returns that epoch.
    pub fn wait_members(&mut self, n: usize) -> anyhow::Result<Epoch> {
        let live = self.live();
        ensure!(
            live.len() == n,
            "waiting for {n} members, but the live nodes are {live:?}"
        );
        let started = Instant::now();
        let deadline = started + SETTLE_TIMEOUT;
        let mut why = String::new();
        loop {
            if let Some(epoch) = self.membership_agreed(&mut why)? {
                eprintln!(
                    "wait_members({n}): {:.2?} (epoch {})",
                    started.elapsed(),
                    epoch.0
                );
                return Ok(epoch);
            }
            if Instant::now() >= deadline {
                bail!("{n} members not agreed after {SETTLE_TIMEOUT:?}:\n{why}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits up to `timeout` until the live nodes agree on their membership (as
    /// [`Cluster::wait_members`]) and every object stored on any of them is stored on
    /// exactly the live nodes the ring of the live membership places it on with `copies`
    /// replicas — no copy missing, none left where it does not belong. Prints and returns
    /// how long that took; on timeout the error lists the misplaced objects.
    pub fn wait_settled(&mut self, copies: usize, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut why = String::new();
        loop {
            if self.membership_agreed(&mut why)?.is_some() {
                let live = self.live();
                let actual = self.actual_placement(&live)?;
                let expected = self.expected_placement(&live, copies)?;
                why = misplaced(&actual, &expected, &|i| self.m(i).zone);
                if why.is_empty() {
                    let waited = started.elapsed();
                    eprintln!(
                        "wait_settled(copies={copies}) over nodes {live:?}: {waited:.2?} ({} objects)",
                        actual.len()
                    );
                    return Ok(waited);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "not settled after {timeout:?} (copies={copies}, live nodes {:?}):\n{why}",
                    self.live()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Fails unless, for every object on the live nodes, all holders' files are
    /// byte-identical.
    pub fn check_replicas_identical(&self) -> anyhow::Result<()> {
        let actual = self.actual_placement(&self.live())?;
        let mut differ = Vec::new();
        for (oid, holders) in &actual {
            let mut first: Option<(usize, Vec<u8>)> = None;
            for &i in holders {
                let bytes = self.read_object(i, *oid)?;
                match &first {
                    None => first = Some((i, bytes)),
                    Some((j, b)) if *b != bytes => {
                        differ.push(format!(
                            "{oid}: node {j} ({} bytes) and node {i} ({} bytes) differ",
                            b.len(),
                            bytes.len()
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        ensure!(
            differ.is_empty(),
            "replicas differ on disk:\n{}",
            differ.join("\n")
        );
        Ok(())
    }

    /// Polls `probe` until it returns `Ok(Some(_))`, failing at once if a live node died.
    pub fn poll_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&Cluster) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        poll_until(timeout, what, || {
            for i in self.live() {
                self.m_mut(i).sheep.check_alive()?;
            }
            probe(self)
        })
    }
}

/// The differences between who holds objects and who should, one line per object (at
/// most [`QUOTE_MAX`]) plus totals; empty when they agree.
fn misplaced(actual: &Placement, expected: &Placement, zone: &dyn Fn(usize) -> u32) -> String {
    let mut lines = Vec::new();
    let (mut missing, mut extra) = (0usize, 0usize);
    for (oid, want) in expected {
        let have = actual.get(oid).cloned().unwrap_or_default();
        if have == *want {
            continue;
        }
        missing += want.difference(&have).count();
        extra += have.difference(want).count();
        let zones: Vec<u32> = have.iter().map(|i| zone(*i)).collect();
        lines.push(format!(
            "  {oid}: on nodes {have:?} (zones {zones:?}), placed on {want:?}; missing on {:?}, extra on {:?}",
            want.difference(&have).collect::<Vec<_>>(),
            have.difference(want).collect::<Vec<_>>()
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    let total = lines.len();
    lines.truncate(QUOTE_MAX);
    format!(
        "{total} of {} objects misplaced ({missing} copies missing, {extra} extra):\n{}{}",
        expected.len(),
        lines.join("\n"),
        if total > QUOTE_MAX { "\n  ..." } else { "" }
    )
}

/// `<oid>_<index>` or `<oid>_<index>.log`: the object, the index and whether it is the log.
fn parse_strip(name: &str) -> Option<(Oid, u8, bool)> {
    let (hex, rest) = name.split_at_checked(16)?;
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let rest = rest.strip_prefix('_')?;
    let (num, log) = match rest.strip_suffix(".log") {
        Some(n) => (n, true),
        None => (rest, false),
    };
    let index: u8 = num.parse().ok()?;
    Some((Oid::new(u64::from_str_radix(hex, 16).ok()?), index, log))
}
