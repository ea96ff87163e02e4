//! Parsing of `sheep -c DRIVER[:ARGS]`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::ClusterError;

/// The cluster driver chosen with `-c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSpec {
    /// `local[:PATH]`: sheep on one host; PATH names the shared state.
    Local {
        /// Shared-state path, when given.
        path: Option<PathBuf>,
    },
    /// `zookeeper:HOST:PORT[,HOST:PORT...][/CLUSTER_ID][,timeout=MS]`.
    Zookeeper(ZkSpec),
}

/// Root znode of a ZooKeeper cluster when `-c zookeeper:` names none (Sheepdog 1.0's).
pub const DEFAULT_ZK_CLUSTER_ID: &str = "/sheepdog";

/// Session timeout asked of ZooKeeper when `-c zookeeper:` gives none (Sheepdog 1.0's 3 s).
pub const DEFAULT_ZK_TIMEOUT: Duration = Duration::from_millis(3000);

/// Longest `timeout=MS` accepted (ZooKeeper's own default ceiling is 20 ticks, 40 s).
const MAX_ZK_TIMEOUT_MS: u64 = 600_000;

/// The arguments of `-c zookeeper:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSpec {
    /// The ensemble, `HOST:PORT` each, in the order given.
    pub servers: Vec<String>,
    /// Absolute path of the znode holding this cluster's state; clusters with different ids
    /// share an ensemble without meeting.
    pub cluster_id: String,
    /// Session timeout to ask for: a sheep silent this long is dead. The server clamps it
    /// to its own bounds (by default 2 to 20 ticks).
    pub timeout: Duration,
}

impl ZkSpec {
    /// The ensemble as a ZooKeeper connect string (`HOST:PORT,HOST:PORT`, no chroot).
    pub fn connect_string(&self) -> String {
        self.servers.join(",")
    }
}

/// `HOST:PORT` with a non-empty host and a non-zero port.
fn valid_server(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && !host.contains(char::is_whitespace)
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// An absolute znode path of plain components (`[A-Za-z0-9._-]+`, never `.` or `..`),
/// outside ZooKeeper's reserved `/zookeeper`.
fn valid_cluster_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix('/') else {
        return false;
    };
    id.len() <= 256
        && rest.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        && rest.split('/').next() != Some("zookeeper")
}

impl FromStr for ZkSpec {
    type Err = &'static str;

    /// Parses what follows `zookeeper:`.
    fn from_str(args: &str) -> Result<Self, Self::Err> {
        let mut servers = Vec::new();
        let mut cluster_id = None;
        let mut timeout = None;
        for item in args.split(',') {
            if let Some(ms) = item.strip_prefix("timeout=") {
                if timeout.is_some() {
                    return Err("timeout= given twice");
                }
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| "timeout=MS needs a number of milliseconds")?;
                if ms == 0 || ms > MAX_ZK_TIMEOUT_MS {
                    return Err("timeout=MS must be between 1 and 600000");
                }
                timeout = Some(Duration::from_millis(ms));
                continue;
            }
            if cluster_id.is_some() || timeout.is_some() {
                return Err("servers must come before /CLUSTER_ID and timeout=");
            }
            let server = match item.split_once('/') {
                Some((server, id)) => {
                    let id = format!("/{id}");
                    if !valid_cluster_id(&id) {
                        return Err("CLUSTER_ID must be a znode path of [A-Za-z0-9._-] components");
                    }
                    cluster_id = Some(id);
                    server
                }
                None => item,
            };
            if !valid_server(server) {
                return Err("each server must be HOST:PORT");
            }
            servers.push(server.to_owned());
        }
        if servers.is_empty() {
            return Err("zookeeper needs HOST:PORT");
        }
        Ok(ZkSpec {
            servers,
            cluster_id: cluster_id.unwrap_or_else(|| DEFAULT_ZK_CLUSTER_ID.to_owned()),
            timeout: timeout.unwrap_or(DEFAULT_ZK_TIMEOUT),
        })
    }
}

impl Default for DriverSpec {
    fn default() -> Self {
        DriverSpec::Local { path: None }
    }
}

impl FromStr for DriverSpec {
    type Err = ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, args) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        match (name, args) {
            ("local", None) => Ok(DriverSpec::Local { path: None }),
            ("local", Some("")) => Err(ClusterError::BadSpec {
                spec: s.to_owned(),
                reason: "empty path after 'local:'",
            }),
            ("local", Some(p)) => Ok(DriverSpec::Local {
                path: Some(PathBuf::from(p)),
            }),
            ("zookeeper", Some(a)) if !a.is_empty() => a
                .parse()
                .map(DriverSpec::Zookeeper)
                .map_err(|reason| ClusterError::BadSpec {
                    spec: s.to_owned(),
                    reason,
                }),
            ("zookeeper", _) => Err(ClusterError::BadSpec {
                spec: s.to_owned(),
                reason: "zookeeper needs HOST:PORT",
            }),
            _ => Err(ClusterError::BadSpec {
                spec: s.to_owned(),
                reason: "unknown driver (expected local or zookeeper)",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_driver_specs() {
        assert_eq!(
            "local".parse::<DriverSpec>().unwrap(),
            DriverSpec::Local { path: None }
        );
        assert_eq!(
            "local:/tmp/x".parse::<DriverSpec>().unwrap(),
            DriverSpec::Local {
                path: Some("/tmp/x".into())
            }
        );
        assert!(matches!(
            "zookeeper:127.0.0.1:2181".parse::<DriverSpec>().unwrap(),
            DriverSpec::Zookeeper(_)
        ));
        assert!("corosync".parse::<DriverSpec>().is_err());
        assert!("local:".parse::<DriverSpec>().is_err());
        assert!("zookeeper".parse::<DriverSpec>().is_err());
        assert!("zookeeper:".parse::<DriverSpec>().is_err());
        assert!("zookeeper:nohost".parse::<DriverSpec>().is_err());
    }

    fn zk(servers: &[&str], id: &str, ms: u64) -> Result<ZkSpec, &'static str> {
        Ok(ZkSpec {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            cluster_id: id.to_owned(),
            timeout: Duration::from_millis(ms),
        })
    }

    #[test]
    fn parses_zookeeper_args() {
        let check = |args: &str, want: Result<ZkSpec, &'static str>| {
            assert_eq!(args.parse::<ZkSpec>(), want, "{args:?}");
        };
        check("127.0.0.1:2181", zk(&["127.0.0.1:2181"], "/sheepdog", 3000));
        check(
            "10.0.0.1:2181,10.0.0.2:2182",
            zk(&["10.0.0.1:2181", "10.0.0.2:2182"], "/sheepdog", 3000),
        );
        check(
            "127.0.0.1:2181/test-xyz",
            zk(&["127.0.0.1:2181"], "/test-xyz", 3000),
        );
        check(
            "a:1,b:2/clusters/c_1.v2,timeout=2000",
            zk(&["a:1", "b:2"], "/clusters/c_1.v2", 2000),
        );
        check(
            "zk.example:2181,timeout=500",
            zk(&["zk.example:2181"], "/sheepdog", 500),
        );
        check("[::1]:2181", zk(&["[::1]:2181"], "/sheepdog", 3000));

        let bad = [
            "",
            "host",
            ":2181",
            "host:",
            "host:0",
            "host:70000",
            "host:2181,",
            "host:2181/",
            "host:2181/a//b",
            "host:2181/a/",
            "host:2181/a/../b",
            "host:2181/zookeeper",
            "host:2181/a b",
            "host:2181/x,other:2181",
            "host:2181,timeout=",
            "host:2181,timeout=0",
            "host:2181,timeout=abc",
            "host:2181,timeout=1,timeout=2",
            "host:2181,timeout=1000,other:2181",
            "timeout=1000",
        ];
        for args in bad {
            assert!(
                args.parse::<ZkSpec>().is_err(),
                "{args:?} should be refused"
            );
        }
        assert_eq!(
            zk(&["a:1", "b:2"], "/x", 1).unwrap().connect_string(),
            "a:1,b:2"
        );
    }
}
