//! `-c zookeeper:HOST:PORT[,HOST:PORT...][/CLUSTER_ID][,timeout=MS]`: sheep on any number of
//! hosts form a cluster through a ZooKeeper ensemble (3.6 or newer).
//!
//! **Layout** under the cluster id (`/sheepdog` unless given):
//! - `queue/NNNNNNNNNN`: the ordered log. Persistent sequential znodes, each holding one
//!   `Record::encode()`; appending is creating one. ZooKeeper numbers sequential children
//!   0, 1, 2, ... in creation order and commits them in that order; nothing here ever
//!   deletes one. Every member reads them in that order from 0.
//! - `members/<ip:port>`: one ephemeral znode per live sheep holding its incarnation (u64,
//!   little-endian). ZooKeeper deletes it when the sheep's session ends: at once when the
//!   sheep closes it, `timeout` after the sheep fell silent otherwise (SIGKILL, power cut,
//!   partition).
//!
//! **Reading** does not list the queue: one multi-read fetches the queue's stat and the next
//! [`READ_BATCH`] records by name, an atomic snapshot. A missing record followed by a
//! present one can never appear any more: it was deleted by hand, and is skipped with a
//! warning rather than stalling the cluster (see `read_batch` for longer holes). Deleting
//! records does break the promise that every member sees the same log: a member may have
//! read one before it was deleted. Records that do not decode are skipped the same way on
//! every member. A persistent watch on `queue` wakes the reader; a
//! [`RECHECK_INTERVAL`] tick backs the watches up (ZooKeeper may drop watch events across a
//! reconnection).
//!
//! **Joining**: create our member znode first (replacing one left by our previous
//! incarnation, whose process must be dead since we hold its address), then append our
//! `Join`.
//!
//! **Failure detection**: a persistent watch on `members`. Every member compares the
//! members of the log (joined, not left) with the children of `members`; for each one whose
//! znode is gone it appends `Leave`, guarded: one multi-op *creates and deletes*
//! `members/<ip:port>` and appends the record, so it commits only if no incarnation of that
//! node has a znode at that instant. A restarted sheep creates its znode before it appends
//! its `Join`, so a `Leave` of its previous incarnation is either ordered before that `Join`
//! or refused; it can never land after it. Several members may append the same `Leave`;
//! the fold ignores all but the first. No race is left between a leave and a rejoin. (Two
//! live processes claiming one address, a misconfiguration, fence each other: the one
//! whose znode was replaced reads the other's `Join` and stops.)
//!
//! **Losing the session**: when ZooKeeper expires or closes our session, or we stay
//! disconnected for the session timeout (by then the others count us dead), or the log says
//! we left or another process took our address, the driver stops and closes the record
//! stream; the daemon then stops (`crate::follower::run`). It never goes on with a dead
//! session.
//!
//! **The fence** (`ClusterDriver::current_until`): every round of the reader that reads the
//! queue to its end renews a lease from the instant the round *started* (its request
//! reached the ensemble later, and ZooKeeper restarts a session's expiry clock on every
//! request it receives). The lease lasts [`FENCE_DIVISOR`]ths of the session timeout; the
//! reader runs a round at least every tenth of it. A sheep that cannot read the log
//! (partitioned from ZooKeeper, or the ensemble is down) therefore stops acknowledging
//! writes and serving reads a third of the timeout after its last successful read, while
//! ZooKeeper cannot expire its session, and the others cannot record its `Leave`, before a
//! whole timeout has passed: two thirds of the timeout are left for writes in flight to
//! fail and for clock-rate differences. (The client library itself only declares the
//! connection lost after 2/5 of the timeout without an answer, and ZooKeeper's Java client
//! after 2/3, too late to serve as the fence.) Reconnecting within the same session renews
//! the lease at the next round that reads the log to its end, so the node has seen
//! everything decided while it was away before it acts again. A session that expired
//! stops the driver (below): the node leaves, and rejoins only as a new incarnation whose
//! copies are distrusted.
//!
//! **Appends are idempotent across connection loss**: a create whose answer was lost may or
//! may not have happened. After reconnecting, the appender scans the queue from the
//! position the reader had reached before the create for a record with the very same bytes
//! and creates again only if there is none. (Identical bytes come only from the same
//! `Leave`, `RecoveryDone` or `Shutdown` in the same second, which the fold treats as one.)
//!
//! **Client crate**: `zookeeper-client` (kezhuw), async with a tokio feature, maintained,
//! with what this design needs: multi-ops (the guarded leave), multi-reads (batched
//! snapshot reads), persistent watches, a session-state watcher, and local expiry when the
//! ensemble stays unreachable. `tokio-zookeeper` has neither multi-reads nor persistent
//! watches and sees little maintenance.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use sd_cluster::log::{LogEntry, Record, Saved};
use sd_cluster::{ClusterError, ZkSpec};
use sd_proto::node::{NodeId, SdNode};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zk;

/// Records fetched by one multi-read.
pub const READ_BATCH: u64 = 16;
/// Largest record appended or accepted from the queue: safely below ZooKeeper's default
/// request limit (`jute.maxbuffer`, 1 MiB with the path and headers), far above the largest
/// record (a `Join` carrying 6144 nodes, 480 KiB).
pub const MAX_RECORD: usize = 960 << 10;
/// How often the queue and the members are re-read without a watch event (the queue more
/// often with short session timeouts: see [`FENCE_DIVISOR`]).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The fence: a member that has not read the log to its end for `timeout / FENCE_DIVISOR`
/// stops acknowledging writes (see the module documentation).
pub const FENCE_DIVISOR: u32 = 3;
/// Rounds of the reader per session timeout at least, so that one slow round does not
/// fence a healthy member.
const ROUNDS_PER_TIMEOUT: u32 = 10;
/// Attempts at an append that keeps losing its connection.
const APPEND_ATTEMPTS: usize = 5;
/// Attempts at creating our member znode.
const REGISTER_ATTEMPTS: usize = 10;
/// Records buffered between the reader and the membership task.
const CHANNEL: usize = 1024;

fn io_err(what: impl Into<String>) -> impl FnOnce(zk::Error) -> ClusterError {
    let what = what.into();
    move |e| ClusterError::Io {
        what: format!("zookeeper {what}"),
        source: std::io::Error::other(e),
    }
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn sequential() -> zk::CreateOptions<'static> {
    zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

/// Znode paths of one cluster.
#[derive(Debug)]
struct Paths {
    queue: String,
    /// `queue/`: the prefix sequential creates append the number to.
    queue_prefix: String,
    members: String,
}

impl Paths {
    fn new(cluster_id: &str) -> Paths {
        Paths {
            queue: format!("{cluster_id}/queue"),
            queue_prefix: format!("{cluster_id}/queue/"),
            members: format!("{cluster_id}/members"),
        }
    }

    fn record(&self, seq: u64) -> String {
        format!("{}{seq:010}", self.queue_prefix)
    }

    fn member(&self, nid: &NodeId) -> String {
        format!("{}/{}", self.members, member_name(nid))
    }
}

/// The name of a member's znode.
fn member_name(nid: &NodeId) -> String {
    nid.to_string()
}

/// A member of a ZooKeeper cluster.
#[derive(Debug)]
pub struct ZkDriver {
    client: zk::Client,
    paths: Arc<Paths>,
    /// The reader's position: every record below it exists already, so a record this node
    /// creates later gets a number at or above it.
    floor: Arc<AtomicU64>,
    /// Renewed by every reader round that reaches the end of the log.
    lease: Arc<Lease>,
}

/// How long this member's view of the log is known current: renewed by the reader.
#[derive(Debug)]
struct Lease {
    base: std::time::Instant,
    /// Nanoseconds after `base` at which the last complete round of the reader started.
    renewed: AtomicU64,
    term: Duration,
}

impl Lease {
    /// A lease of `term` from now (the session has just been established).
    fn new(term: Duration) -> Lease {
        Lease {
            base: std::time::Instant::now(),
            renewed: AtomicU64::new(0),
            term,
        }
    }

    /// A round that started at `started` read the whole log.
    fn renew(&self, started: std::time::Instant) {
        let nanos = u64::try_from(started.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX);
        self.renewed.fetch_max(nanos, Ordering::AcqRel);
    }

    fn until(&self) -> std::time::Instant {
        let renewed = Duration::from_nanos(self.renewed.load(Ordering::Acquire));
        self.base + renewed + self.term
    }
}

impl ZkDriver {
    /// Connects to the ensemble, registers `me` and appends our `Join`; returns the driver
    /// and the stream of records from the beginning of the log.
    pub async fn start(
        spec: &ZkSpec,
        me: SdNode,
        incarnation: u64,
        saved: Saved,
        cancel: CancellationToken,
    ) -> Result<(ZkDriver, mpsc::Receiver<Record>), ClusterError> {
        let client = connect(spec).await?;
        let lease = Arc::new(Lease::new(client.session_timeout() / FENCE_DIVISOR));
        let paths = Arc::new(Paths::new(&spec.cluster_id));
        for dir in [&paths.queue, &paths.members] {
            client
                .mkdir(dir, &persistent())
                .await
                .map_err(io_err(format!("mkdir {dir}")))?;
        }
        // Watch before reading or writing anything, so no later change goes unnoticed.
        let queue_watch = client
            .watch(&paths.queue, zk::AddWatchMode::Persistent)
            .await
            .map_err(io_err("watch queue"))?;
        let members_watch = client
            .watch(&paths.members, zk::AddWatchMode::Persistent)
            .await
            .map_err(io_err("watch members"))?;
        register(&client, &paths, &me.nid, incarnation).await?;
        let driver = ZkDriver {
            client: client.clone(),
            paths: paths.clone(),
            floor: Arc::new(AtomicU64::new(0)),
            lease: lease.clone(),
        };
        driver
            .append(LogEntry::Join {
                node: me,
                incarnation,
                saved,
            })
            .await?;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let tail = Tail {
            client,
            paths,
            floor: driver.floor.clone(),
            lease,
            tx,
            pos: 0,
            lag: 0,
            view: LogView::new(me.nid, incarnation),
            leave_sent: BTreeSet::new(),
            check_due: true,
            queue_watch,
            members_watch,
        };
        tokio::spawn(tail.run(cancel));
        Ok((driver, rx))
    }

    /// Appends an entry.
    pub async fn append(&self, entry: LogEntry) -> Result<(), ClusterError> {
        let rec = Record {
            time: crate::sys::now_secs(),
            entry,
        };
        append_bytes(&self.client, &self.paths, &self.floor, &rec.encode()).await
    }

    /// The fence: until when our view of the log is known current (see the module
    /// documentation).
    pub fn current_until(&self) -> std::time::Instant {
        self.lease.until()
    }
}

async fn connect(spec: &ZkSpec) -> Result<zk::Client, ClusterError> {
    let servers = spec.connect_string();
    // The client gives up by itself after about one session timeout; this is a backstop.
    let limit = spec.timeout * 3 + Duration::from_secs(10);
    let client = tokio::time::timeout(
        limit,
        zk::Client::connector()
            .with_session_timeout(spec.timeout)
            .connect(&servers),
    )
    .await
    .map_err(|_| io_err(format!("connect to {servers}"))(zk::Error::Timeout))?
    .map_err(io_err(format!("connect to {servers}")))?;
    tracing::info!(
        %servers,
        cluster = %spec.cluster_id,
        session = %client.session_id(),
        timeout = ?client.session_timeout(),
        "connected to ZooKeeper"
    );
    Ok(client)
}

/// Waits until the session is connected again; fails once it has ended or `limit` passed.
async fn wait_connected(client: &zk::Client, limit: Duration) -> Result<(), ClusterError> {
    let mut state = client.state_watcher();
    let deadline = Instant::now() + limit;
    loop {
        match state.peek_state() {
            zk::SessionState::SyncConnected => return Ok(()),
            s if s.is_terminated() => return Err(ClusterError::Closed),
            _ => {}
        }
        if tokio::time::timeout_at(deadline, state.changed())
            .await
            .is_err()
        {
            return Err(io_err("reconnect")(zk::Error::ConnectionLoss));
        }
    }
}

/// Creates our member znode. One left by a previous incarnation (its session not yet
/// expired) is replaced in one multi-op, so nobody ever sees the address without a znode.
async fn register(
    client: &zk::Client,
    paths: &Paths,
    nid: &NodeId,
    incarnation: u64,
) -> Result<(), ClusterError> {
    let path = paths.member(nid);
    let data = incarnation.to_le_bytes();
    for _ in 0..REGISTER_ATTEMPTS {
        match client.create(&path, &data, &ephemeral()).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NodeExists) => {}
            Err(zk::Error::ConnectionLoss) => {
                wait_connected(client, client.session_timeout()).await?;
                continue;
            }
            Err(e) => return Err(io_err(format!("create {path}"))(e)),
        }
        match client.get_data(&path).await {
            // Our own create, whose answer a connection loss swallowed.
            Ok((_, stat)) if stat.ephemeral_owner == client.session_id().0 => return Ok(()),
            Ok((old, stat)) => {
                tracing::info!(
                    node = %nid,
                    previous = ?decode_incarnation(&old),
                    "replacing the member znode of this node's previous incarnation"
                );
                let mut w = client.new_multi_writer();
                w.add_delete(&path, Some(stat.version))
                    .map_err(io_err("multi delete"))?;
                w.add_create(&path, &data, &ephemeral())
                    .map_err(io_err("multi create"))?;
                match w.commit().await {
                    Ok(_) => return Ok(()),
                    Err(e) => tracing::debug!(error = %e, "replacing the member znode: retrying"),
                }
            }
            Err(zk::Error::NoNode) => {}
            Err(zk::Error::ConnectionLoss) => {
                wait_connected(client, client.session_timeout()).await?;
            }
            Err(e) => return Err(io_err(format!("get {path}"))(e)),
        }
    }
    Err(ClusterError::Service(format!(
        "could not create the member znode {path}"
    )))
}

fn decode_incarnation(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.try_into().ok()?))
}

/// Appends encoded record bytes, once even across connection losses.
async fn append_bytes(
    client: &zk::Client,
    paths: &Paths,
    floor: &AtomicU64,
    bytes: &[u8],
) -> Result<(), ClusterError> {
    if bytes.len() > MAX_RECORD {
        return Err(ClusterError::Service(format!(
            "record of {} bytes exceeds the {MAX_RECORD}-byte limit",
            bytes.len()
        )));
    }
    let from = floor.load(Ordering::Acquire);
    for _ in 0..APPEND_ATTEMPTS {
        match client
            .create(&paths.queue_prefix, bytes, &sequential())
            .await
        {
            Ok(_) => return Ok(()),
            Err(zk::Error::ConnectionLoss) => {
                wait_connected(client, client.session_timeout()).await?;
                if find_record(client, paths, from, bytes).await? {
                    return Ok(());
                }
            }
            Err(e) => return Err(io_err("append to the queue")(e)),
        }
    }
    Err(io_err("append to the queue")(zk::Error::ConnectionLoss))
}

/// Whether a record with exactly `bytes` sits at or after `from`.
async fn find_record(
    client: &zk::Client,
    paths: &Paths,
    mut from: u64,
    bytes: &[u8],
) -> Result<bool, ClusterError> {
    let mut lag = 0;
    loop {
        match read_batch(client, paths, from, &mut lag)
            .await
            .map_err(io_err("scan the queue"))?
        {
            Batch::Slots(slots) => {
                if slots.iter().any(|(_, data)| data.as_deref() == Some(bytes)) {
                    return Ok(true);
                }
                from = slots.last().map_or(from, |(seq, _)| seq + 1);
            }
            Batch::SkipTo(seq) => from = seq,
            Batch::End => return Ok(false),
        }
    }
}

/// What one read of the queue found.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    /// Slots from the position read, in order: a record's bytes, or `None` for a slot that
    /// will never be filled (a deleted record).
    Slots(Vec<(u64, Option<Vec<u8>>)>),
    /// Every slot from the position read up to this one will never be filled.
    SkipTo(u64),
    /// Nothing after the position read, yet.
    End,
}

/// Reads up to [`READ_BATCH`] queue slots from `from` as one snapshot.
///
/// ZooKeeper numbers sequential children in creation order and commits them in that order,
/// so a slot still missing once a later one is present will never be filled: it was
/// deleted. Slots after the last present one are not created yet. When the whole batch is missing, the
/// queue's `cversion` (creations plus deletions, never below the next number) says whether
/// records may have been deleted since the reader last found the end (`lag`: how far
/// `cversion` was ahead then); only then is the queue listed to find the next record.
async fn read_batch(
    client: &zk::Client,
    paths: &Paths,
    from: u64,
    lag: &mut u64,
) -> Result<Batch, zk::Error> {
    let mut reader = client.new_multi_reader();
    reader.add_get_data(&paths.queue)?;
    for seq in from..from.saturating_add(READ_BATCH) {
        reader.add_get_data(&paths.record(seq))?;
    }
    let mut results = reader.commit().await?.into_iter();
    let cversion = match results.next() {
        Some(zk::MultiReadResult::Data { stat, .. }) => u64::try_from(stat.cversion).unwrap_or(0),
        Some(zk::MultiReadResult::Error { err }) => return Err(err),
        _ => return Err(zk::Error::UnexpectedError("multi-read answer".into())),
    };
    let mut slots = Vec::new();
    for (seq, r) in (from..).zip(results) {
        match r {
            zk::MultiReadResult::Data { data, .. } => slots.push((seq, Some(data))),
            zk::MultiReadResult::Error {
                err: zk::Error::NoNode,
            } => slots.push((seq, None)),
            zk::MultiReadResult::Error { err } => return Err(err),
            _ => return Err(zk::Error::UnexpectedError("multi-read answer".into())),
        }
    }
    if let Some(last) = slots.iter().rposition(|(_, d)| d.is_some()) {
        slots.truncate(last + 1);
        // A hole before a present record: read it again, now that the later record is known
        // committed, so the verdict never rests on the multi-read being one snapshot.
        for (seq, data) in slots.iter_mut().filter(|(_, d)| d.is_none()) {
            match client.get_data(&paths.record(*seq)).await {
                Ok((d, _)) => *data = Some(d),
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(Batch::Slots(slots));
    }
    let ahead = cversion.saturating_sub(from);
    if ahead <= *lag {
        return Ok(Batch::End);
    }
    let next = client
        .list_children(&paths.queue)
        .await?
        .iter()
        .filter_map(|name| name.parse::<u64>().ok())
        .filter(|seq| *seq >= from)
        .min();
    Ok(match next {
        Some(seq) => Batch::SkipTo(seq),
        None => {
            *lag = ahead;
            Batch::End
        }
    })
}

/// Appends `Leave { nid }` only if no znode of `nid` exists at that instant: a multi-op
/// that creates and deletes `members/<nid>` (failing with `NodeExists` while any
/// incarnation of it is registered) and creates the record. Returns whether it was
/// appended.
async fn append_leave(
    client: &zk::Client,
    paths: &Paths,
    nid: &NodeId,
) -> Result<bool, ClusterError> {
    let rec = Record {
        time: crate::sys::now_secs(),
        entry: LogEntry::Leave { nid: *nid },
    }
    .encode();
    let path = paths.member(nid);
    let mut w = client.new_multi_writer();
    w.add_create(&path, &[], &persistent())
        .map_err(io_err("multi create"))?;
    w.add_delete(&path, None).map_err(io_err("multi delete"))?;
    w.add_create(&paths.queue_prefix, &rec, &sequential())
        .map_err(io_err("multi append"))?;
    match w.commit().await {
        Ok(_) => Ok(true),
        Err(zk::MultiWriteError::OperationFailed {
            index: 0,
            source: zk::Error::NodeExists,
        }) => Ok(false),
        Err(e) => Err(io_err(format!("append the leave of {nid}"))(e.into())),
    }
}

/// What the log says about membership, as far as this driver must know: who is a member
/// (for failure detection) and whether this node is still the one the log knows.
#[derive(Debug)]
pub struct LogView {
    me: NodeId,
    incarnation: u64,
    joined: bool,
    members: BTreeSet<NodeId>,
}

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it.
    Deliver,
    /// Deliver it, then check the members' znodes (a node joined).
    DeliverAndCheck,
    /// Stop: the log says this node left (its znode vanished: our session is gone).
    Evicted,
    /// Stop: another incarnation of this node joined after us.
    Superseded,
}

impl LogView {
    /// The view of a node that has read nothing yet.
    pub fn new(me: NodeId, incarnation: u64) -> LogView {
        LogView {
            me,
            incarnation,
            joined: false,
            members: BTreeSet::new(),
        }
    }

    /// Folds one entry.
    pub fn apply(&mut self, entry: &LogEntry) -> Verdict {
        match entry {
            LogEntry::Join {
                node, incarnation, ..
            } => {
                if node.nid == self.me {
                    if *incarnation == self.incarnation {
                        self.joined = true;
                    } else if self.joined {
                        return Verdict::Superseded;
                    }
                }
                self.members.insert(node.nid);
                Verdict::DeliverAndCheck
            }
            LogEntry::Leave { nid } => {
                if *nid == self.me && self.joined {
                    return Verdict::Evicted;
                }
                self.members.remove(nid);
                Verdict::Deliver
            }
            _ => Verdict::Deliver,
        }
    }

    /// Members other than this node.
    pub fn others(&self) -> impl Iterator<Item = &NodeId> {
        self.members.iter().filter(|n| **n != self.me)
    }
}

/// Why the reader stopped.
enum Stop {
    /// The membership task is gone.
    ReceiverGone,
    /// The session ended (expired, closed, or failed authentication).
    Session(zk::SessionState),
    /// The log or the members' znodes say this node is no longer the member it was.
    Fenced(&'static str),
    /// The log holds this node's leave (its own clean stop, or the others found it dead).
    Left,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::ReceiverGone => f.write_str("records are no longer read"),
            Stop::Session(s) => write!(f, "ZooKeeper session {s}"),
            Stop::Fenced(why) => f.write_str(why),
            Stop::Left => f.write_str("the cluster log says this node left"),
        }
    }
}

/// The reader: delivers the queue in order and appends the leaves of dead members.
struct Tail {
    client: zk::Client,
    paths: Arc<Paths>,
    floor: Arc<AtomicU64>,
    lease: Arc<Lease>,
    tx: mpsc::Sender<Record>,
    /// Next sequence number to read.
    pos: u64,
    /// How far the queue's `cversion` was ahead of `pos` when the reader last found the end.
    lag: u64,
    view: LogView,
    /// Members whose leave we appended and have not yet read back.
    leave_sent: BTreeSet<NodeId>,
    /// The members' znodes must be compared with the log.
    check_due: bool,
    queue_watch: zk::PersistentWatcher,
    members_watch: zk::PersistentWatcher,
}

/// The end of the session, if `ev` announces it.
fn session_end(ev: &zk::WatchedEvent) -> Option<Stop> {
    (ev.event_type == zk::EventType::Session && ev.session_state.is_terminated())
        .then_some(Stop::Session(ev.session_state))
}

impl Tail {
    async fn run(mut self, cancel: CancellationToken) {
        let stop = cancel.child_token();
        tokio::spawn(guard_session(self.client.clone(), stop.clone()));
        tokio::select! {
            () = stop.cancelled() => {}
            why = self.follow() => match why {
                Stop::ReceiverGone => tracing::debug!("cluster records no longer read"),
                // Expected after a clean stop announced our leave; the membership task says
                // which it was.
                Stop::Left => tracing::warn!("ZooKeeper driver stopped: the log holds this node's leave"),
                why => tracing::error!(%why, "ZooKeeper driver stopped: this node leaves the cluster"),
            },
        }
        stop.cancel();
        // Dropping `self.tx` ends the record stream.
    }

    async fn follow(&mut self) -> Stop {
        let round = RECHECK_INTERVAL.min(self.client.session_timeout() / ROUNDS_PER_TIMEOUT);
        let mut tick = tokio::time::interval(round);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checked = Instant::now();
        loop {
            let started = std::time::Instant::now();
            match self.catch_up().await {
                Ok(Some(stop)) => return stop,
                Ok(None) => self.lease.renew(started),
                Err(e) => tracing::debug!(error = %e, "reading the cluster log failed; retrying"),
            }
            if self.check_due {
                match self.check_members().await {
                    Ok(Some(stop)) => return stop,
                    Ok(None) => self.check_due = false,
                    Err(e) => tracing::debug!(error = %e, "checking members failed; retrying"),
                }
            }
            tokio::select! {
                ev = self.queue_watch.changed() => if let Some(s) = session_end(&ev) { return s },
                ev = self.members_watch.changed() => {
                    self.check_due = true;
                    if let Some(s) = session_end(&ev) { return s }
                }
                _ = tick.tick() => if checked.elapsed() >= RECHECK_INTERVAL {
                    checked = Instant::now();
                    self.check_due = true;
                },
            }
            // Fold whatever else is pending into this round.
            while let Some(ev) = self.queue_watch.changed().now_or_never() {
                if let Some(s) = session_end(&ev) {
                    return s;
                }
            }
            while let Some(ev) = self.members_watch.changed().now_or_never() {
                self.check_due = true;
                if let Some(s) = session_end(&ev) {
                    return s;
                }
            }
        }
    }

    /// Reads and delivers records until the end of the queue.
    async fn catch_up(&mut self) -> Result<Option<Stop>, zk::Error> {
        loop {
            match read_batch(&self.client, &self.paths, self.pos, &mut self.lag).await? {
                Batch::Slots(slots) => {
                    let at_end = (slots.len() as u64) < READ_BATCH;
                    for (seq, data) in slots {
                        self.pos = seq + 1;
                        self.floor.store(self.pos, Ordering::Release);
                        if let Some(stop) = self.deliver(seq, data).await {
                            return Ok(Some(stop));
                        }
                    }
                    if at_end {
                        return Ok(None);
                    }
                }
                Batch::SkipTo(seq) => {
                    tracing::warn!(
                        from = self.pos,
                        to = seq,
                        "cluster log records were deleted: skipping them"
                    );
                    self.pos = seq;
                    self.floor.store(self.pos, Ordering::Release);
                }
                Batch::End => return Ok(None),
            }
        }
    }

    async fn deliver(&mut self, seq: u64, data: Option<Vec<u8>>) -> Option<Stop> {
        let Some(data) = data else {
            tracing::warn!(seq, "cluster log record {seq} was deleted: skipping it");
            return None;
        };
        if data.len() > MAX_RECORD {
            tracing::warn!(
                seq,
                len = data.len(),
                "oversized cluster log record: skipping it"
            );
            return None;
        }
        let rec = match Record::decode(&data) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(seq, error = %e, "undecodable cluster log record: skipping it");
                return None;
            }
        };
        match self.view.apply(&rec.entry) {
            Verdict::Deliver => {}
            Verdict::DeliverAndCheck => {
                // Check the joiner's znode at the next round (it may be dead already).
                self.check_due = true;
                if let LogEntry::Join { node, .. } = &rec.entry {
                    self.leave_sent.remove(&node.nid);
                }
            }
            Verdict::Evicted => return Some(Stop::Left),
            Verdict::Superseded => {
                return Some(Stop::Fenced(
                    "another process joined with this node's address",
                ));
            }
        }
        if let LogEntry::Leave { nid } = &rec.entry {
            self.leave_sent.remove(nid);
        }
        if self.tx.send(rec).await.is_err() {
            return Some(Stop::ReceiverGone);
        }
        None
    }

    /// Appends the leave of every member of the log whose znode is gone; stops if ours is.
    async fn check_members(&mut self) -> Result<Option<Stop>, ClusterError> {
        let children: BTreeSet<String> = self
            .client
            .list_children(&self.paths.members)
            .await
            .map_err(io_err("list members"))?
            .into_iter()
            .collect();
        if self.view.joined && !children.contains(&member_name(&self.view.me)) {
            return Ok(Some(Stop::Fenced("this node's member znode is gone")));
        }
        let gone: Vec<NodeId> = self
            .view
            .others()
            .filter(|n| !children.contains(&member_name(n)) && !self.leave_sent.contains(n))
            .copied()
            .collect();
        for nid in gone {
            if append_leave(&self.client, &self.paths, &nid).await? {
                tracing::info!(node = %nid, "member's ZooKeeper session ended: recorded its leave");
                self.leave_sent.insert(nid);
            }
        }
        Ok(None)
    }
}

/// Cancels `stop` when the session ends, or when it stays disconnected for the session
/// timeout: by then the ensemble has expired it, or will as soon as it hears from us, and
/// the other members have recorded our leave.
async fn guard_session(client: zk::Client, stop: CancellationToken) {
    let mut state = client.state_watcher();
    let timeout = client.session_timeout();
    let mut since: Option<Instant> = None;
    loop {
        match state.peek_state() {
            s if s.is_terminated() => {
                tracing::error!(state = %s, "ZooKeeper session ended");
                stop.cancel();
                return;
            }
            zk::SessionState::Disconnected => {
                since.get_or_insert_with(Instant::now);
            }
            _ => since = None,
        }
        let expiry = since.map(|t| t + timeout);
        tokio::select! {
            () = stop.cancelled() => return,
            _ = state.changed() => {}
            () = async {
                match expiry {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::error!(?timeout, "disconnected from ZooKeeper for the whole session timeout");
                stop.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use sd_cluster::log::Saved;
    use sd_proto::Epoch;
    use sd_proto::cluster::SheepdogConfig;
    use sd_testkit::zookeeper::ZkServer;

    fn nid(port: u16) -> NodeId {
        NodeId::from_socket(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn join(port: u16, incarnation: u64) -> LogEntry {
        LogEntry::Join {
            node: SdNode {
                nid: nid(port),
                ..SdNode::default()
            },
            incarnation,
            saved: Saved {
                config: SheepdogConfig::default(),
                epoch: Epoch(0),
                members: Vec::new(),
            },
        }
    }

    fn leave(port: u16) -> LogEntry {
        LogEntry::Leave { nid: nid(port) }
    }

    #[test]
    fn log_view_tracks_members_and_fences_this_node() {
        use Verdict::*;
        // (entries, verdicts, other members after)
        let cases: Vec<(Vec<LogEntry>, Vec<Verdict>, Vec<u16>)> = vec![
            // History before our join: our earlier incarnations come and go freely.
            (
                vec![join(1, 7), join(2, 1), leave(1), join(1, 8), join(1, 9)],
                vec![
                    DeliverAndCheck,
                    DeliverAndCheck,
                    Deliver,
                    DeliverAndCheck,
                    DeliverAndCheck,
                ],
                vec![2],
            ),
            // After our join, a leave of ours means our session is gone.
            (
                vec![join(1, 9), join(2, 1), leave(2), leave(1)],
                vec![DeliverAndCheck, DeliverAndCheck, Deliver, Evicted],
                vec![],
            ),
            // ... and another incarnation joining means another process took our address.
            (
                vec![join(1, 9), join(1, 10)],
                vec![DeliverAndCheck, Superseded],
                vec![],
            ),
            // Leaves of non-members and other entries change nothing.
            (
                vec![leave(3), LogEntry::Shutdown, join(3, 1)],
                vec![Deliver, Deliver, DeliverAndCheck],
                vec![3],
            ),
        ];
        for (entries, want, others) in cases {
            let mut v = LogView::new(nid(1), 9);
            let got: Vec<Verdict> = entries.iter().map(|e| v.apply(e)).collect();
            assert_eq!(got, want, "{entries:?}");
            let got: Vec<NodeId> = v.others().copied().collect();
            let want: Vec<NodeId> = others.into_iter().map(nid).collect();
            assert_eq!(got, want, "{entries:?}");
        }
    }

    async fn setup(server: &ZkServer, cluster: &str) -> (ZkSpec, Paths) {
        let spec: ZkSpec = format!("{}/{cluster},timeout=2000", server.connect_string())
            .parse()
            .unwrap();
        let paths = Paths::new(&spec.cluster_id);
        let c = connect(&spec).await.unwrap();
        for dir in [&paths.queue, &paths.members] {
            c.mkdir(dir, &persistent()).await.unwrap();
        }
        (spec, paths)
    }

    async fn poll(what: &str, mut f: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leave_is_appended_only_while_no_incarnation_is_registered() {
        let server = ZkServer::start().unwrap();
        let (spec, paths) = setup(&server, "guard").await;
        let observer = connect(&spec).await.unwrap();
        // A restarted node registers (creates its znode) before it appends its join: from
        // then on, a leave decided on an older look at the members is refused.
        let node = connect(&spec).await.unwrap();
        register(&node, &paths, &nid(9), 2).await.unwrap();
        assert!(!append_leave(&observer, &paths, &nid(9)).await.unwrap());
        let mut lag = 0;
        assert_eq!(
            read_batch(&observer, &paths, 0, &mut lag).await.unwrap(),
            Batch::End
        );
        // Once its session is gone, the leave goes in.
        drop(node);
        poll("the znode to go", async || {
            observer
                .list_children(&paths.members)
                .await
                .unwrap()
                .is_empty()
        })
        .await;
        assert!(append_leave(&observer, &paths, &nid(9)).await.unwrap());
        let Batch::Slots(slots) = read_batch(&observer, &paths, 0, &mut lag).await.unwrap() else {
            panic!("no record")
        };
        assert_eq!(slots.len(), 1);
        let rec = Record::decode(slots[0].1.as_deref().unwrap()).unwrap();
        assert_eq!(rec.entry, leave(9));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn register_replaces_a_previous_incarnation_at_once() {
        let server = ZkServer::start().unwrap();
        let (spec, paths) = setup(&server, "replace").await;
        let old = connect(&spec).await.unwrap();
        register(&old, &paths, &nid(9), 1).await.unwrap();
        let new = connect(&spec).await.unwrap();
        let t = Instant::now();
        register(&new, &paths, &nid(9), 2).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let (data, stat) = new.get_data(&paths.member(&nid(9))).await.unwrap();
        assert_eq!(decode_incarnation(&data), Some(2));
        // Owned by the new session, so the old one's expiry will not delete it.
        assert_eq!(stat.ephemeral_owner, new.session_id().0);
        // Registering again in the same session is a no-op.
        register(&new, &paths, &nid(9), 2).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_records_are_found_by_their_bytes() {
        let server = ZkServer::start().unwrap();
        let (spec, paths) = setup(&server, "find").await;
        let c = connect(&spec).await.unwrap();
        let floor = AtomicU64::new(0);
        for i in 0..40u8 {
            append_bytes(&c, &paths, &floor, &[i]).await.unwrap();
        }
        assert!(find_record(&c, &paths, 0, &[39]).await.unwrap());
        assert!(find_record(&c, &paths, 20, &[25]).await.unwrap());
        assert!(!find_record(&c, &paths, 20, &[5]).await.unwrap());
        assert!(!find_record(&c, &paths, 0, &[40]).await.unwrap());
        let too_big = vec![0; MAX_RECORD + 1];
        assert!(append_bytes(&c, &paths, &floor, &too_big).await.is_err());
    }

    #[test]
    fn the_lease_runs_from_the_start_of_the_last_complete_round() {
        let term = Duration::from_secs(1);
        let lease = Lease::new(term);
        let base = lease.base;
        assert_eq!(lease.until(), base + term);
        let later = base + Duration::from_millis(300);
        lease.renew(later);
        assert_eq!(lease.until(), later + term);
        // A round that started earlier but finished later never moves the fence back.
        lease.renew(base + Duration::from_millis(100));
        assert_eq!(lease.until(), later + term);
    }

    #[test]
    fn paths_follow_the_layout() {
        let p = Paths::new("/sheepdog");
        assert_eq!(p.record(0), "/sheepdog/queue/0000000000");
        assert_eq!(p.record(1234), "/sheepdog/queue/0000001234");
        assert_eq!(p.member(&nid(7000)), "/sheepdog/members/127.0.0.1:7000");
        assert_eq!(p.queue_prefix, "/sheepdog/queue/");
    }
}
