//! The daemon's configuration, built by `main` from the command line.

use std::path::PathBuf;

use sd_cluster::DriverSpec;
use sd_store::SyncMode;

/// Everything `sheep::run` needs to know besides its listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base directory: store, epoch log, config, log file.
    pub dir: PathBuf,
    /// Failure zone; `None` derives it from the address.
    pub zone: Option<u32>,
    /// Vnodes of this node (0 = gateway only).
    pub vnodes: u16,
    /// Vnodes were fixed with `-V` rather than derived from disk space ("auto vnodes").
    pub fixed_vnodes: bool,
    /// Membership driver.
    pub cluster: DriverSpec,
    /// How object writes reach the disk.
    pub sync: SyncMode,
    /// Most requests one connection may have in flight.
    pub max_inflight_per_conn: usize,
    /// Address advertised to other sheep instead of the listener's (`-y`).
    pub advertise: Option<std::net::IpAddr>,
}

impl Config {
    /// Defaults for a store in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Config {
            dir,
            zone: None,
            vnodes: sd_proto::node::SD_DEFAULT_VNODES,
            fixed_vnodes: false,
            cluster: DriverSpec::default(),
            sync: SyncMode::Writethrough,
            max_inflight_per_conn: 32,
            advertise: None,
        }
    }
}
