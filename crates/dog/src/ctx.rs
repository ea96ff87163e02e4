//! Per-invocation state: parsed options, the target daemon, cached connections, the
//! node list from the NEED_NODELIST prologue, and buffered stdout. Also the C `dog`'s
//! request helpers that print its diagnostics (`dog_read_object`, `find_vdi_name`, ...).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;

use bytes::Bytes;
use sd_client::{ClientError, Connection, WriteOpts};
use sd_proto::node::SdNode;
use sd_proto::{Epoch, Flags, Oid, SdResult, Vid};

use crate::exit::{Abort, EXIT_FAILURE, EXIT_SYSFAIL};

/// Writes one diagnostic line to stderr (the C `sd_err`/`sd_info`).
#[macro_export]
macro_rules! sd_err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// The OS error text without Rust's ` (os error N)` suffix, as `%m` prints it.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s.get(..i).unwrap_or(&s).to_string(),
        _ => s,
    }
}

/// Writes a block of text to stderr.
pub fn err_block(s: &str) {
    let _ = std::io::stderr().write_all(s.as_bytes());
}

/// The message of a failed VDI lookup.
pub fn report_open_failure(name: &[u8], snapid: u32, tag: &[u8], r: SdResult) {
    sd_err!(
        "Failed to open VDI {} (snapshot id: {snapid} snapshot tag: {}): {}",
        crate::format::text(name),
        crate::format::text(tag),
        r.message()
    );
}

/// `ip:port` as dog prints addresses (IPv6 without brackets).
pub fn addr_text(a: SocketAddr) -> String {
    format!("{}:{}", a.ip(), a.port())
}

/// Buffered stdout: fully buffered (4 KiB, like stdio on a pipe) unless stdout is a
/// terminal, where each line is flushed.
pub struct Out {
    w: Box<dyn Write>,
    line_buffered: bool,
    /// Stdout is a terminal.
    tty: bool,
    /// While `Some`, output is collected here instead of written ([`Out::capture`]).
    captured: Option<String>,
    /// The first write error (printf's are ignored, but `--watch` stops on a closed pipe).
    error: Option<std::io::ErrorKind>,
}

impl Default for Out {
    /// A sink, used while the real writer is lent to a [`Ctx`].
    fn default() -> Self {
        Out {
            w: Box::new(std::io::sink()),
            line_buffered: false,
            tty: false,
            captured: None,
            error: None,
        }
    }
}

impl Out {
    /// Standard output.
    pub fn stdout() -> Out {
        let tty = std::io::stdout().is_terminal();
        let w: Box<dyn Write> = match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(std::io::BufWriter::with_capacity(
                4096,
                std::fs::File::from(fd),
            )),
            Err(_) => Box::new(std::io::stdout()),
        };
        Out {
            w,
            line_buffered: tty,
            tty,
            captured: None,
            error: None,
        }
    }

    /// Any writer (tests capture output this way).
    #[cfg(test)]
    pub fn from_writer(w: Box<dyn Write>) -> Out {
        Out {
            w,
            ..Out::default()
        }
    }

    /// Whether stdout is a terminal.
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Writes text (errors are ignored, as `printf`'s are, but remembered).
    pub fn put(&mut self, s: &str) {
        if let Some(c) = self.captured.as_mut() {
            c.push_str(s);
            return;
        }
        let r = self.w.write_all(s.as_bytes());
        self.note(r);
        if self.line_buffered && s.contains('\n') {
            self.flush();
        }
    }

    /// Writes raw bytes (`vdi getattr` prints the value as it is).
    pub fn put_bytes(&mut self, b: &[u8]) {
        let r = self.w.write_all(b);
        self.note(r);
    }

    /// Flushes.
    pub fn flush(&mut self) {
        let r = self.w.flush();
        self.note(r);
    }

    fn note(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e.kind());
        }
    }

    /// The first write or flush error so far.
    pub fn error(&self) -> Option<std::io::ErrorKind> {
        self.error
    }

    /// From now on, collects text instead of writing it, until [`Out::take_captured`].
    pub fn capture(&mut self) {
        self.captured = Some(String::new());
    }

    /// Ends capturing and returns what was collected.
    pub fn take_captured(&mut self) -> String {
        self.captured.take().unwrap_or_default()
    }
}

/// Options of the current invocation.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-r`.
    pub raw: bool,
    /// `-v`.
    pub verbose: bool,
    /// `-T`.
    pub elapsed: bool,
    /// `-P` (vdi).
    pub prealloc: bool,
    /// `-s`: snapshot id (0 = by tag or current).
    pub snapshot_id: u32,
    /// `-s`: snapshot tag.
    pub snapshot_tag: Vec<u8>,
    /// `-c`: copies (0 = default).
    pub copies: u8,
    /// `-c`: copy policy.
    pub copy_policy: u8,
    /// `-y`: 1 for a hyper volume.
    pub store_policy: u8,
    /// `-z` (0 = default).
    pub block_size_shift: u8,
    /// `-w`.
    pub writeback: bool,
    /// `-f`.
    pub force: bool,
    /// `-o` (vdi list).
    pub oid: Option<u64>,
    /// `-b` (cluster format).
    pub store: Vec<u8>,
    /// `-t`.
    pub strict: bool,
    /// `-l`.
    pub use_lock: bool,
    /// `-R` (cluster format).
    pub recycle_vid: bool,
    /// `-F` (cluster format).
    pub avoid_diskfull: bool,
    /// `-V`.
    pub fixed_vnodes: bool,
    /// `-d` (cluster info).
    pub diff: bool,
    /// `-l` (node kill): the daemon given by `-a`/`-p`.
    pub local: bool,
    /// `-i` (vdi object): a data object index.
    pub index: Option<u64>,
    /// `-n` (vdi clone): copy every object, share nothing with the snapshot.
    pub no_share: bool,
    /// `-R` (vdi snapshot): skip the snapshot if the working VDI owns no object.
    pub reduce_identical: bool,
    /// `-x` (vdi setattr): fail if the key exists.
    pub exclusive: bool,
    /// `-d` (vdi setattr): delete the key.
    pub delete_key: bool,
    /// `-e` (vdi check): only test that every copy exists.
    pub exist_only: bool,
    /// `--json`: one JSON document instead of text (docs/json-output.md).
    pub json: bool,
    /// `--watch` (or `--interval`): refresh until interrupted.
    pub watch: bool,
    /// `--interval SECS`: time between refreshes (default 1 s).
    pub interval: Option<std::time::Duration>,
}

/// Whether a write creates the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// CREATE_AND_WRITE_OBJ.
    Create,
    /// WRITE_OBJ.
    Overwrite,
}

/// Everything a command needs.
pub struct Ctx {
    /// Options.
    pub opts: Options,
    /// The daemon given by -a/-p.
    pub addr: SocketAddr,
    /// Stdout.
    pub out: Out,
    /// Nodes from the prologue, sorted by address then port.
    pub nodes: Vec<SdNode>,
    /// Epoch from the prologue's STAT_CLUSTER.
    pub epoch: Epoch,
    /// Where `vdi write` reads data (standard input when `None`).
    pub data_in: Option<Box<dyn std::io::Read + Send>>,
    /// Where `vdi read` writes data (standard output when `None`).
    pub data_out: Option<Box<dyn Write + Send>>,
    conns: HashMap<SocketAddr, Connection>,
}

impl Ctx {
    /// A context for `addr`.
    pub fn new(opts: Options, addr: SocketAddr, out: Out) -> Self {
        Ctx {
            opts,
            addr,
            out,
            nodes: Vec::new(),
            epoch: Epoch(0),
            data_in: None,
            data_out: None,
            conns: HashMap::new(),
        }
    }

    /// Writes text to stdout.
    pub fn put(&mut self, s: &str) {
        self.out.put(s);
    }

    /// Writes a header (a table heading, a "Looking for ..." line) that requests which
    /// can fail follow, and flushes it: a failure's message on stderr then comes after the
    /// header's complete line whether stdout is a terminal or a pipe shared with stderr
    /// (`2>&1`), as the C `dog` shows it on a terminal.
    pub fn put_header(&mut self, s: &str) {
        self.out.put(s);
        self.out.flush();
    }

    /// With `-v`: the id of a VDI just made, as `LABEL: ID` (`-r`: the id alone).
    pub fn put_new_vid(&mut self, label: &str, vid: impl std::fmt::LowerHex) {
        if !self.opts.verbose {
            return;
        }
        if self.opts.raw {
            self.put(&format!("{vid:x}\n"));
        } else {
            self.put(&format!("{label}: {vid:x}\n"));
        }
    }

    /// The cached connection to `addr`, connecting if needed. Like the C `dog`, which
    /// tries its connection cache and then a fresh socket, a refused connect is tried
    /// twice and reported each time.
    pub async fn conn_at(&mut self, addr: SocketAddr) -> Option<&mut Connection> {
        match self.conns.entry(addr) {
            Entry::Occupied(o) => Some(o.into_mut()),
            Entry::Vacant(v) => {
                for _ in 0..2 {
                    match Connection::connect(addr).await {
                        Ok(c) => return Some(v.insert(c)),
                        Err(ClientError::Connect { source, .. }) => {
                            sd_err!(
                                "failed to connect to {}: {}",
                                addr_text(addr),
                                strerror(&source)
                            );
                        }
                        Err(e) => sd_err!("failed to connect to {}: {e}", addr_text(addr)),
                    }
                }
                None
            }
        }
    }

    /// Forgets the cached connection to `addr` (after a transport failure, so that the
    /// next request connects again).
    pub fn forget_conn(&mut self, addr: SocketAddr) {
        self.conns.remove(&addr);
    }

    /// Writes `doc` as one line of compact JSON (`--json`).
    pub fn put_json<T: serde::Serialize>(&mut self, doc: &T) {
        match serde_json::to_string(doc) {
            Ok(mut line) => {
                line.push('\n');
                self.put(&line);
            }
            // Our documents hold only strings, numbers, booleans and sequences.
            Err(e) => sd_err!("failed to encode JSON: {e}"),
        }
    }

    /// The connection to the -a/-p daemon.
    pub async fn conn(&mut self) -> Option<&mut Connection> {
        self.conn_at(self.addr).await
    }

    /// Reports a transport failure (connect failures were reported already).
    pub fn report_transport(e: &ClientError) {
        match e {
            ClientError::Connect { .. } => {}
            ClientError::Io(io) => sd_err!("failed to exchange a request: {}", strerror(io)),
            other => sd_err!("{other}"),
        }
    }

    /// `dog_read_object`: READ_OBJ with the C messages; the error is the result code
    /// (EIO for transport failures).
    pub async fn read_object(
        &mut self,
        oid: Oid,
        len: u32,
        offset: u64,
        direct: bool,
    ) -> Result<Bytes, SdResult> {
        let flags = if direct {
            Flags::DIRECT
        } else {
            Flags::default()
        };
        let Some(c) = self.conn().await else {
            sd_err!("Failed to read object {:x}", oid.get());
            return Err(SdResult::Eio);
        };
        match c.read_obj_with(oid, offset, len, flags).await {
            Ok(b) => Ok(b),
            Err(ClientError::Result(r)) => {
                sd_err!("Failed to read object {:x} {}", oid.get(), r.message());
                Err(r)
            }
            Err(e) => {
                Self::report_transport(&e);
                sd_err!("Failed to read object {:x}", oid.get());
                Err(SdResult::Eio)
            }
        }
    }

    /// `dog_write_object`: CREATE_AND_WRITE_OBJ or WRITE_OBJ with the C messages.
    pub async fn write_object(
        &mut self,
        kind: WriteKind,
        oid: Oid,
        cow: Option<Oid>,
        offset: u64,
        data: &[u8],
        opts: WriteOpts,
    ) -> Result<(), SdResult> {
        let Some(c) = self.conn().await else {
            sd_err!("Failed to write object {:x}", oid.get());
            return Err(SdResult::Eio);
        };
        let r = match kind {
            WriteKind::Create => c.create_and_write_obj(oid, cow, offset, data, opts).await,
            WriteKind::Overwrite => c.write_obj(oid, offset, data, opts).await,
        };
        match r {
            Ok(()) => Ok(()),
            Err(ClientError::Result(r)) => {
                sd_err!("Failed to write object {:x}: {}", oid.get(), r.message());
                Err(r)
            }
            Err(e) => {
                Self::report_transport(&e);
                sd_err!("Failed to write object {:x}", oid.get());
                Err(SdResult::Eio)
            }
        }
    }

    /// Points `data_vdi_id[idx]` of `vid`'s inode at `vid` (after creating its object): the
    /// 4-byte inode write `dog` sends after every create.
    pub async fn set_index_entry(
        &mut self,
        vid: Vid,
        idx: u32,
        opts: WriteOpts,
    ) -> Result<(), SdResult> {
        let entry = vid.get().to_le_bytes();
        self.write_object(
            WriteKind::Overwrite,
            vid.inode_oid(),
            None,
            sd_proto::inode::data_index_offset(idx),
            &entry,
            opts,
        )
        .await
    }

    /// `find_vdi_name`: GET_VDI_INFO; transport failures become EIO.
    pub async fn find_vdi(
        &mut self,
        name: &[u8],
        snapid: u32,
        tag: &[u8],
    ) -> Result<Vid, SdResult> {
        let Some(c) = self.conn().await else {
            return Err(SdResult::Eio);
        };
        match c.get_vdi_info(name, tag, snapid).await {
            Ok(v) => v.vid().ok_or(SdResult::NoVdi),
            Err(ClientError::Result(r)) => Err(r),
            Err(e) => {
                Self::report_transport(&e);
                Err(SdResult::Eio)
            }
        }
    }

    /// `read_vdi_obj`: looks the VDI up and reads the first `size` bytes of its inode
    /// (DIRECT). Failures are reported and become EXIT_FAILURE.
    pub async fn read_vdi_obj(
        &mut self,
        name: &[u8],
        snapid: u32,
        tag: &[u8],
        size: u32,
    ) -> Result<(Vid, Bytes), u8> {
        let vid = match self.find_vdi(name, snapid, tag).await {
            Ok(v) => v,
            Err(r) => {
                report_open_failure(name, snapid, tag, r);
                return Err(EXIT_FAILURE);
            }
        };
        match self.read_object(vid.inode_oid(), size, 0, true).await {
            Ok(b) => Ok((vid, b)),
            Err(_) => {
                let name = crate::format::text(name);
                if snapid != 0 {
                    sd_err!("Failed to read a snapshot {name}:{snapid}");
                } else if !tag.is_empty() {
                    sd_err!(
                        "Failed to read a snapshot {name}:{}",
                        crate::format::text(tag)
                    );
                } else {
                    sd_err!("Failed to read a vdi {name}");
                }
                Err(EXIT_FAILURE)
            }
        }
    }

    /// The NEED_NODELIST prologue: GET_NODE_LIST, then STAT_CLUSTER (48-byte buffer) for
    /// the epoch.
    pub async fn update_node_list(&mut self) -> Result<(), Abort> {
        const FAILED: &str = "Failed to get node list";
        let Some(c) = self.conn().await else {
            sd_err!("{FAILED}");
            return Err(Abort(EXIT_SYSFAIL));
        };
        let mut nodes = match c.get_node_list().await {
            Ok(n) => n,
            Err(ClientError::Result(r)) => {
                sd_err!("Failed to update node list: {}", r.message());
                sd_err!("{FAILED}");
                return Err(Abort(EXIT_SYSFAIL));
            }
            Err(e) => {
                Self::report_transport(&e);
                sd_err!("{FAILED}");
                return Err(Abort(EXIT_SYSFAIL));
            }
        };
        if nodes.is_empty() {
            sd_err!("There are no active sheep daemons");
            return Err(Abort(EXIT_FAILURE));
        }
        nodes.sort_by_key(|n| n.nid);
        match c.stat_cluster(0, 1).await {
            Ok(st) => self.epoch = st.epoch,
            Err(e) => {
                Self::report_transport(&e);
                sd_err!("{FAILED}");
                return Err(Abort(EXIT_SYSFAIL));
            }
        }
        self.nodes = nodes;
        Ok(())
    }

    /// Number of distinct zones among the nodes.
    pub fn zones(&self) -> usize {
        let mut z: Vec<u32> = self.nodes.iter().map(|n| n.zone).collect();
        z.sort_unstable();
        z.dedup();
        z.len()
    }

    /// `confirm()`: prints `msg`, reads up to 7 characters of a line from stdin; anything
    /// not starting with "yes" (case-insensitive) ends the program successfully.
    pub fn confirm(&mut self, msg: &str) -> Result<(), Abort> {
        use std::io::Read;
        self.put(msg);
        self.out.flush();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        let mut stdin = std::io::stdin().lock();
        while answer.len() < 7 {
            match stdin.read(&mut byte) {
                Ok(1) => {
                    answer.push(byte[0]);
                    if byte[0] == b'\n' {
                        break;
                    }
                }
                _ => break,
            }
        }
        let yes = answer.len() >= 3
            && answer
                .get(..3)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"yes"));
        if yes {
            Ok(())
        } else {
            Err(Abort(crate::exit::EXIT_SUCCESS))
        }
    }
}
