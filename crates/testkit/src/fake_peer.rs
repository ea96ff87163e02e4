//! A scripted fake peer for in-process tests (the model is Crucible's dummy downstairs):
//! a member of a `-c local:PATH` cluster that speaks the real peer protocol, keeps its
//! objects in memory, and answers, stalls, delays, errs or dies on command.
//!
//! - **Membership**: it holds the liveness `flock` on `PATH/members/<ip:port>`, appends its
//!   own `Join` to `PATH/log` (same framing and `log.lock` as the local driver), tails the
//!   log through the pure fold (`sd_cluster::Membership`) and appends `RecoveryDone` for
//!   every epoch it is a member of (unless [`FakePeerConfig::announce_recovery`] is off),
//!   so MAKE_FS and the cluster's stable epoch do not wait on it. It never probes other
//!   members: the real sheep record the leaves.
//! - **Default answers**: CREATE_AND_WRITE_PEER, WRITE_PEER, READ_PEER, REMOVE_PEER,
//!   FETCH_PEER (epoch-checked like a sheep: OLD_NODE_VER / NEW_NODE_VER), GET_OBJ_LIST and
//!   FLUSH_PEER, against an in-memory store of whole objects with versions (the epoch of
//!   the last write). Anything else is INVALID_PARMS.
//! - **Scripts** ([`FakePeer::on`], [`FakePeer::on_times`], [`FakePeer::on_oid`],
//!   [`FakePeer::on_if`]): the newest
//!   matching rule decides what happens to a request: [`Script::Answer`] a result code
//!   (or [`Script::Reply`] arbitrary bytes) without touching the store, [`Script::Stall`]
//!   until [`FakePeer::release`], [`Script::Delay`], or [`Script::Die`].
//! - **Dying** ([`FakePeer::die`], or a [`Script::Die`] rule): the liveness lock is released
//!   and the listener and every connection are closed; the real sheep then append its
//!   `Leave`. A dropped `FakePeer` dies too.
//! - **Observation**: every request is recorded before any script runs
//!   ([`FakePeer::received`]); [`FakePeer::wait_received`] and [`FakePeer::wait_epoch`] wait
//!   for them against a deadline.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use nix::fcntl::{Flock, FlockArg};
use sd_cluster::Membership;
use sd_cluster::log::{LogEntry, Record, Saved};
use sd_cluster::log_file::{self, Frames};
use sd_cluster::membership::Outcome;
use sd_proto::cluster::SheepdogConfig;
use sd_proto::node::{NodeId, SD_DEFAULT_VNODES, SdNode};
use sd_proto::oid_list::OidList;
use sd_proto::peer_copy::PeerCopy;
use sd_proto::{
    Epoch, Flags, MAX_REQUEST_PAYLOAD, Oid, Opcode, RequestDecoder, RequestFrame, RequestHeader,
    ResponseHeader, SdResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often the fake peer reads new records from the cluster log (as the local driver).
const TAIL_INTERVAL: Duration = Duration::from_millis(10);
/// Answers queued per connection before its request tasks wait for the writer.
const ANSWER_QUEUE: usize = 64;
/// Block size shift assumed before the fold knows the cluster's (Sheepdog's default).
const DEFAULT_SHIFT: u8 = 22;

/// What the fake peer does with a request a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Serve it from the in-memory store (the default without a rule).
    Serve,
    /// Answer this result code at once (no payload), leaving the store untouched.
    Answer(SdResult),
    /// Answer SUCCESS at once with exactly these bytes, whatever was asked (a misbehaving
    /// peer: a short or overlong read), leaving the store untouched.
    Reply(Bytes),
    /// Hold it unanswered until [`FakePeer::release`] (then serve it), or until the fake
    /// dies (then it is never answered).
    Stall,
    /// Serve it after this long.
    Delay(Duration),
    /// Leave the cluster and close every connection; the request is never answered.
    Die,
}

/// How a fake peer presents itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePeerConfig {
    /// Failure zone; `None`: the listening port, so fake peers on 127.0.0.1 are in zones of
    /// their own (a real sheep there is in zone 0x0100007f) and replicas spread over them.
    pub zone: Option<u32>,
    /// Vnodes on the ring (0: a gateway-only node that holds no objects).
    pub nr_vnodes: u16,
    /// Append `RecoveryDone` for every epoch this fake is a member of. Off, the cluster
    /// never becomes stable in those epochs (MAKE_FS answers after its own timeout).
    pub announce_recovery: bool,
}

impl Default for FakePeerConfig {
    fn default() -> Self {
        FakePeerConfig {
            zone: None,
            nr_vnodes: SD_DEFAULT_VNODES,
            announce_recovery: true,
        }
    }
}

/// One request the fake peer received, recorded before any script ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its opcode.
    pub opcode: Opcode,
    /// The sender's epoch.
    pub epoch: Epoch,
    /// The object (`obj.oid`).
    pub oid: Oid,
    /// The offset (`obj.offset`).
    pub offset: u64,
    /// Its flags.
    pub flags: Flags,
    /// Its `data_length` (payload length, or reply buffer size).
    pub data_length: u32,
    /// Its payload (empty without the WRITE flag).
    pub payload: Bytes,
}

/// A copy in the fake's store.
#[derive(Debug, Clone)]
struct Copy {
    data: Vec<u8>,
    /// The epoch of its last write (FETCH_PEER's version).
    version: u32,
}

/// Which requests a rule applies to, besides its opcode.
type Predicate = Box<dyn Fn(&Received) -> bool + Send + Sync>;

struct Rule {
    opcode: Opcode,
    when: Predicate,
    /// Requests it still applies to (`None`: all).
    left: Option<usize>,
    script: Script,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("opcode", &self.opcode)
            .field("left", &self.left)
            .field("script", &self.script)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    objects: HashMap<Oid, Copy>,
    rules: Vec<Rule>,
    received: Vec<Received>,
    membership: Membership,
    /// The liveness lock on `members/<ip:port>`; `None` once dead.
    alive: Option<Flock<File>>,
}

#[derive(Debug)]
struct Shared {
    me: SdNode,
    cluster: PathBuf,
    announce_recovery: bool,
    state: Mutex<State>,
    /// Bumped on every received request and applied log record.
    changed: watch::Sender<u64>,
    /// Bumped by [`FakePeer::release`].
    released: watch::Sender<u64>,
    dead: CancellationToken,
}

/// A scripted member of a local cluster. See the module documentation.
#[derive(Debug)]
pub struct FakePeer {
    shared: Arc<Shared>,
}

impl FakePeer {
    /// Joins the local cluster whose shared directory is `cluster` with the default
    /// [`FakePeerConfig`], listening on 127.0.0.1 on a free port.
    pub async fn start(cluster: &Path) -> anyhow::Result<FakePeer> {
        FakePeer::start_with(cluster, FakePeerConfig::default()).await
    }

    /// Joins the local cluster in `cluster` as `cfg` describes.
    pub async fn start_with(cluster: &Path, cfg: FakePeerConfig) -> anyhow::Result<FakePeer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind fake peer")?;
        let nid = NodeId::from_socket(listener.local_addr().context("fake peer address")?);
        let me = SdNode {
            nid,
            io_addr: [0; 16],
            io_port: 0,
            nr_vnodes: cfg.nr_vnodes,
            zone: cfg.zone.unwrap_or(u32::from(nid.port)),
            space: 0,
        };
        let dir = cluster.to_path_buf();
        let alive = tokio::task::spawn_blocking(move || join(&dir, me))
            .await
            .context("join task")??;
        let shared = Arc::new(Shared {
            me,
            cluster: cluster.to_path_buf(),
            announce_recovery: cfg.announce_recovery,
            state: Mutex::new(State {
                objects: HashMap::new(),
                rules: Vec::new(),
                received: Vec::new(),
                membership: Membership::default(),
                alive: Some(alive),
            }),
            changed: watch::Sender::new(0),
            released: watch::Sender::new(0),
            dead: CancellationToken::new(),
        });
        tokio::spawn(accept(shared.clone(), listener));
        tokio::spawn(tail(shared.clone()));
        Ok(FakePeer { shared })
    }

    /// Its node id (address and port).
    pub fn nid(&self) -> NodeId {
        self.shared.me.nid
    }

    /// The node it joined as.
    pub fn node(&self) -> SdNode {
        self.shared.me
    }

    /// Its view of the current epoch (0 before it applied a format).
    pub fn epoch(&self) -> Epoch {
        self.shared.lock().membership.epoch()
    }

    /// Its view of the current members, sorted by address.
    pub fn members(&self) -> Vec<SdNode> {
        self.shared.lock().membership.members().to_vec()
    }

    /// From now on, every `opcode` request is handled by `script`.
    pub fn on(&self, opcode: Opcode, script: Script) {
        self.shared.add_rule(Rule {
            opcode,
            when: Box::new(|_| true),
            left: None,
            script,
        });
    }

    /// The next `times` `opcode` requests are handled by `script`; later ones as before.
    pub fn on_times(&self, opcode: Opcode, times: usize, script: Script) {
        self.shared.add_rule(Rule {
            opcode,
            when: Box::new(|_| true),
            left: Some(times),
            script,
        });
    }

    /// From now on, every `opcode` request for `oid` is handled by `script`.
    pub fn on_oid(&self, opcode: Opcode, oid: Oid, script: Script) {
        self.on_if(opcode, move |r| r.oid == oid, script);
    }

    /// From now on, every `opcode` request for which `when` holds is handled by `script`
    /// (e.g. only FETCH_PEER requests with room for the data: `|r| r.data_length > 4`).
    pub fn on_if(
        &self,
        opcode: Opcode,
        when: impl Fn(&Received) -> bool + Send + Sync + 'static,
        script: Script,
    ) {
        self.shared.add_rule(Rule {
            opcode,
            when: Box::new(when),
            left: None,
            script,
        });
    }

    /// Drops every rule: requests are served from the store again.
    pub fn clear_scripts(&self) {
        self.shared.lock().rules.clear();
    }

    /// Lets every request stalled so far be served.
    pub fn release(&self) {
        self.shared.released.send_modify(|n| *n += 1);
    }

    /// The `opcode` requests received so far, oldest first.
    pub fn received(&self, opcode: Opcode) -> Vec<Received> {
        self.shared
            .lock()
            .received
            .iter()
            .filter(|r| r.opcode == opcode)
            .cloned()
            .collect()
    }

    /// Every request received so far, oldest first.
    pub fn received_all(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Waits until at least `n` `opcode` requests for `oid` arrived; returns those.
    pub async fn wait_received(
        &self,
        opcode: Opcode,
        oid: Oid,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Received>> {
        let what = format!("{n} {} for {oid} at {}", opcode.name(), self.nid());
        self.wait_until(timeout, &what, || {
            let got: Vec<Received> = self
                .received(opcode)
                .into_iter()
                .filter(|r| r.oid == oid)
                .collect();
            (got.len() >= n).then_some(got)
        })
        .await
    }

    /// Waits until its view of the epoch is at least `epoch`; returns it.
    pub async fn wait_epoch(&self, epoch: Epoch, timeout: Duration) -> anyhow::Result<Epoch> {
        let what = format!("epoch {epoch} at {}", self.nid());
        self.wait_until(timeout, &what, || {
            let e = self.epoch();
            (e >= epoch).then_some(e)
        })
        .await
    }

    /// Calls `probe` whenever the fake received a request or applied a log record (and
    /// once at first), until it returns `Some` or `timeout` passes (an error naming `what`).
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        probe: impl Fn() -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(v) = probe() {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
        }
    }

    /// Its copy of `oid`, whole, if it has one.
    pub fn object(&self, oid: Oid) -> Option<Vec<u8>> {
        self.shared.lock().objects.get(&oid).map(|c| c.data.clone())
    }

    /// Replaces its copy of `oid` with `data` at `version` (the epoch of the last write),
    /// as if it had been written so: a test can make this replica's bytes recognisable.
    pub fn put_object(&self, oid: Oid, data: Vec<u8>, version: Epoch) {
        self.shared.lock().objects.insert(
            oid,
            Copy {
                data,
                version: version.get(),
            },
        );
    }

    /// Dies as a killed sheep would: the liveness lock is released (the real sheep record
    /// its leave), the listener and every connection are closed, stalled requests are
    /// never answered and no more records are appended.
    pub fn die(&self) {
        self.shared.die();
    }

    /// Whether it died.
    pub fn is_dead(&self) -> bool {
        self.shared.dead.is_cancelled()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.shared.die();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_rule(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    fn die(&self) {
        self.dead.cancel();
        // Dropping the lock file releases the flock.
        self.lock().alive = None;
        self.changed.send_modify(|n| *n += 1);
    }

    /// Records `h` and picks its script: the newest matching rule's (used up when counted).
    fn receive(&self, h: &RequestHeader, payload: &Bytes) -> Script {
        let args = h.obj();
        let received = Received {
            opcode: h.opcode,
            epoch: h.epoch,
            oid: args.oid,
            offset: args.offset,
            flags: h.flags,
            data_length: h.data_length,
            payload: payload.clone(),
        };
        let mut st = self.lock();
        let matching =
            st.rules.iter_mut().rev().find(|r| {
                r.opcode == h.opcode && r.left.is_none_or(|n| n > 0) && (r.when)(&received)
            });
        let script = match matching {
            Some(rule) => {
                if let Some(n) = rule.left.as_mut() {
                    *n -= 1;
                }
                rule.script.clone()
            }
            None => Script::Serve,
        };
        st.received.push(received);
        drop(st);
        self.changed.send_modify(|n| *n += 1);
        script
    }

    /// Handles one request as its script says; `None`: it is never answered.
    async fn handle(&self, h: RequestHeader, payload: Bytes) -> Option<(ResponseHeader, Bytes)> {
        match self.receive(&h, &payload) {
            Script::Serve => {}
            Script::Answer(r) => return Some((self.reply(&h, r), Bytes::new())),
            Script::Reply(data) => {
                let mut rsp = self.reply(&h, SdResult::Success);
                rsp.data_length = u32::try_from(data.len()).unwrap_or(0);
                return Some((rsp, data));
            }
            Script::Stall => {
                let mut rx = self.released.subscribe();
                rx.borrow_and_update();
                tokio::select! {
                    () = self.dead.cancelled() => return None,
                    _ = rx.changed() => {}
                }
            }
            Script::Delay(d) => {
                tokio::select! {
                    () = self.dead.cancelled() => return None,
                    () = tokio::time::sleep(d) => {}
                }
            }
            Script::Die => {
                self.die();
                return None;
            }
        }
        if self.dead.is_cancelled() {
            return None;
        }
        Some(self.serve(&h, payload))
    }

    fn reply(&self, h: &RequestHeader, result: SdResult) -> ResponseHeader {
        ResponseHeader::reply_to(h, self.lock().membership.epoch(), result)
    }

    /// The default answer: a sheep's peer operations on the in-memory store.
    fn serve(&self, h: &RequestHeader, payload: Bytes) -> (ResponseHeader, Bytes) {
        let mut st = self.lock();
        let epoch = st.membership.epoch();
        let answer = serve_store(&mut st, h, &payload);
        drop(st);
        let (result, mut data) = match answer {
            Ok(data) => (SdResult::Success, data),
            Err(r) => (r, Vec::new()),
        };
        // Never more than the request's buffer (spec §1).
        data.truncate(usize::try_from(h.data_length).unwrap_or(usize::MAX));
        let mut rsp = ResponseHeader::reply_to(h, epoch, result);
        rsp.data_length = u32::try_from(data.len()).unwrap_or(0);
        (rsp, Bytes::from(data))
    }
}

/// Bounds-checked `offset..offset+len` of an object of `size` bytes.
fn span(offset: u64, len: usize, size: usize) -> Result<std::ops::Range<usize>, SdResult> {
    let start = usize::try_from(offset).map_err(|_| SdResult::InvalidParms)?;
    let end = start.checked_add(len).ok_or(SdResult::InvalidParms)?;
    if end > size {
        return Err(SdResult::InvalidParms);
    }
    Ok(start..end)
}

fn serve_store(st: &mut State, h: &RequestHeader, payload: &[u8]) -> Result<Vec<u8>, SdResult> {
    use Opcode as O;
    let epoch = st.membership.epoch();
    let peer_op = matches!(
        h.opcode,
        O::CreateAndWritePeer | O::WritePeer | O::ReadPeer | O::RemovePeer | O::FetchPeer
    );
    if peer_op {
        if epoch.get() == 0 {
            return Err(SdResult::WaitForFormat);
        }
        if h.epoch < epoch {
            return Err(SdResult::OldNodeVer);
        }
        if h.epoch > epoch {
            return Err(SdResult::NewNodeVer);
        }
    }
    let args = h.obj();
    let oid = args.oid;
    match h.opcode {
        O::CreateAndWritePeer => {
            let shift = match st.membership.config().block_size_shift {
                0 => DEFAULT_SHIFT,
                s => s,
            };
            let size = usize::try_from(oid.object_size(shift)).map_err(|_| SdResult::NoSpace)?;
            let range = span(args.offset, payload.len(), size)?;
            let mut data = vec![0; size];
            data.get_mut(range)
                .ok_or(SdResult::InvalidParms)?
                .copy_from_slice(payload);
            st.objects.insert(
                oid,
                Copy {
                    data,
                    version: h.epoch.get(),
                },
            );
            Ok(Vec::new())
        }
        O::WritePeer => {
            let copy = st.objects.get_mut(&oid).ok_or(SdResult::NoObj)?;
            let range = span(args.offset, payload.len(), copy.data.len())?;
            copy.data
                .get_mut(range)
                .ok_or(SdResult::InvalidParms)?
                .copy_from_slice(payload);
            copy.version = h.epoch.get();
            Ok(Vec::new())
        }
        O::ReadPeer => {
            let copy = st.objects.get(&oid).ok_or(SdResult::NoObj)?;
            let len = usize::try_from(h.data_length).map_err(|_| SdResult::InvalidParms)?;
            let range = span(args.offset, len, copy.data.len())?;
            Ok(copy.data.get(range).ok_or(SdResult::InvalidParms)?.to_vec())
        }
        O::RemovePeer => {
            st.objects.remove(&oid).ok_or(SdResult::NoObj)?;
            Ok(Vec::new())
        }
        O::FetchPeer => {
            let copy = st.objects.get(&oid).ok_or(SdResult::NoObj)?;
            let data = if PeerCopy::fits(h.data_length, copy.data.len() as u64) {
                Bytes::from(copy.data.clone())
            } else {
                Bytes::new()
            };
            Ok(PeerCopy {
                version: copy.version,
                data,
            }
            .encode())
        }
        O::GetObjList => {
            let oids: Vec<Oid> = st.objects.keys().copied().collect();
            let room = usize::try_from(h.data_length).unwrap_or(0);
            if OidList::size(oids.len()) > room {
                return Err(SdResult::BufferSmall);
            }
            Ok(OidList { oids }.encode())
        }
        O::FlushPeer => Ok(Vec::new()),
        _ => Err(SdResult::InvalidParms),
    }
}

async fn accept(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let stream = tokio::select! {
            () = shared.dead.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        tokio::spawn(connection(shared.clone(), stream));
    }
}

/// Reads requests and handles each in its own task (a stalled one holds no other: the
/// sheep pipeline requests on one connection); answers go out in completion order.
async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<BytesMut>(ANSWER_QUEUE);
    let dead = shared.dead.clone();
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                () = dead.cancelled() => return,
                f = rx.recv() => match f {
                    Some(f) => f,
                    None => return,
                },
            };
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let mut buf = BytesMut::new();
    let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
    loop {
        loop {
            let (h, payload) = match dec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(RequestFrame::Request { header, payload })) => (header, payload),
                Ok(Some(RequestFrame::Oversized { header })) => {
                    let rsp = shared.reply(&header, SdResult::InvalidParms);
                    let mut out = BytesMut::new();
                    sd_proto::codec::encode_response(&rsp, &[], &mut out);
                    if tx.send(out).await.is_err() {
                        return;
                    }
                    continue;
                }
                // Garbage on the stream: a sheep would drop the connection too.
                Err(_) => return,
            };
            let shared = shared.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some((rsp, data)) = shared.handle(h, payload).await {
                    let mut out = BytesMut::new();
                    sd_proto::codec::encode_response(&rsp, &data, &mut out);
                    let _ = tx.send(out).await;
                }
            });
        }
        tokio::select! {
            () = shared.dead.cancelled() => return,
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

fn member_file(cluster: &Path, nid: &NodeId) -> PathBuf {
    cluster.join("members").join(nid.to_string())
}

/// Takes the liveness lock and appends our `Join` (blocking).
fn join(cluster: &Path, me: SdNode) -> anyhow::Result<Flock<File>> {
    std::fs::create_dir_all(cluster.join("members"))
        .with_context(|| format!("create {}", cluster.display()))?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(member_file(cluster, &me.nid))
        .context("open member lock")?;
    let alive = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    let saved = Saved {
        config: SheepdogConfig::default(),
        epoch: Epoch(0),
        members: Vec::new(),
    };
    append(
        cluster,
        LogEntry::Join {
            node: me,
            incarnation: rand::random(),
            saved,
        },
    )?;
    Ok(alive)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Appends one record as the local driver does: one write of `u32 len ‖ record` under an
/// exclusive flock on `log.lock` (blocking).
fn append(cluster: &Path, entry: LogEntry) -> anyhow::Result<()> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cluster.join("log.lock"))
        .context("open log.lock")?;
    let _held = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    let frame = log_file::frame(&Record {
        time: now_secs(),
        entry,
    })?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(cluster.join("log"))
        .context("open log")?;
    log.write_all(&frame).context("append log")?;
    Ok(())
}

/// The records completed by what was appended to `log` since `*pos`.
fn read_new(log: &mut File, pos: &mut u64, frames: &mut Frames) -> anyhow::Result<Vec<Record>> {
    log.seek(SeekFrom::Start(*pos))?;
    let mut chunk = Vec::new();
    log.read_to_end(&mut chunk)?;
    *pos += chunk.len() as u64;
    Ok(frames.push(&chunk)?)
}

/// Follows the cluster log through the membership fold; announces our recovery of every
/// epoch we are a member of, and of every pass of it a VDI copy change starts.
async fn tail(shared: Arc<Shared>) {
    let (mut pos, mut frames) = (0u64, Frames::default());
    let mut log: Option<File> = None;
    let mut tick = tokio::time::interval(TAIL_INTERVAL);
    loop {
        tokio::select! {
            () = shared.dead.cancelled() => return,
            _ = tick.tick() => {}
        }
        if log.is_none() {
            log = File::open(shared.cluster.join("log")).ok();
        }
        let Some(f) = log.as_mut() else { continue };
        let records = match read_new(f, &mut pos, &mut frames) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("fake peer {}: cluster log unreadable: {e:#}", shared.me.nid);
                return;
            }
        };
        if records.is_empty() {
            continue;
        }
        let mut recovered = Vec::new();
        {
            let mut st = shared.lock();
            for r in &records {
                for o in st.membership.apply(r) {
                    match o {
                        Outcome::NewEpoch(e)
                            if e.members.iter().any(|m| m.nid == shared.me.nid) =>
                        {
                            recovered.push((e.epoch, 0));
                        }
                        Outcome::NewPass { epoch, pass }
                            if st.membership.is_member(&shared.me.nid) =>
                        {
                            recovered.push((epoch, pass));
                        }
                        _ => {}
                    }
                }
            }
        }
        shared.changed.send_modify(|n| *n += 1);
        if !shared.announce_recovery {
            continue;
        }
        for (epoch, pass) in recovered {
            if shared.dead.is_cancelled() {
                return;
            }
            let cluster = shared.cluster.clone();
            let nid = shared.me.nid;
            let done = tokio::task::spawn_blocking(move || {
                append(&cluster, LogEntry::RecoveryDone { nid, epoch, pass })
            })
            .await;
            if !matches!(done, Ok(Ok(()))) {
                eprintln!("fake peer {nid}: appending RecoveryDone for {epoch} failed");
            }
        }
    }
}
