//! Parsing of `sheep -c DRIVER[:ARGS]`.

use std::path::PathBuf;
use std::str::FromStr;

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
    Zookeeper {
        /// Everything after `zookeeper:`.
        args: String,
    },
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
            ("zookeeper", Some(a)) if !a.is_empty() => {
                Ok(DriverSpec::Zookeeper { args: a.to_owned() })
            }
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
            DriverSpec::Zookeeper { .. }
        ));
        assert!("corosync".parse::<DriverSpec>().is_err());
        assert!("local:".parse::<DriverSpec>().is_err());
        assert!("zookeeper".parse::<DriverSpec>().is_err());
    }
}
