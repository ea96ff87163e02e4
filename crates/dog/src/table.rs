//! The command tree of Sheepdog 1.0's `dog` (spec dog-cli.md §3): commands, subcommands,
//! their option letters, argument text and descriptions. One static table drives option
//! parsing, usage text and dispatch.

/// One option: letter, long name, whether it takes an argument, help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptSpec {
    /// Short letter, or for a long-only option its identity (like `getopt_long`'s `val`
    /// above 255): one of the `OPT_*` constants, never typed on a command line.
    pub ch: char,
    /// `-ch` works on the command line (false for long-only options).
    pub short: bool,
    /// Long name.
    pub long: &'static str,
    /// Takes an argument.
    pub has_arg: bool,
    /// Help text (may contain an embedded, pre-indented newline).
    pub desc: &'static str,
}

const fn opt(ch: char, long: &'static str, has_arg: bool, desc: &'static str) -> OptSpec {
    OptSpec {
        ch,
        short: true,
        long,
        has_arg,
        desc,
    }
}

/// A long-only option (a sheepdog-rs extension: Sheepdog's letters are all taken).
const fn long_only(ch: char, long: &'static str, has_arg: bool, desc: &'static str) -> OptSpec {
    OptSpec {
        ch,
        short: false,
        long,
        has_arg,
        desc,
    }
}

/// Identity of `--json`.
pub const OPT_JSON: char = '\u{e000}';
/// Identity of `--watch`.
pub const OPT_WATCH: char = '\u{e001}';
/// Identity of `--interval SECS`.
pub const OPT_INTERVAL: char = '\u{e002}';

const JSON: OptSpec = long_only(
    OPT_JSON,
    "json",
    false,
    "print one JSON document (docs/json-output.md)",
);
const WATCH: OptSpec = long_only(
    OPT_WATCH,
    "watch",
    false,
    "refresh until interrupted (every second, or --interval)",
);
const INTERVAL: OptSpec = long_only(
    OPT_INTERVAL,
    "interval",
    true,
    "seconds between refreshes with --watch (default 1)",
);

/// The extensions of list/info commands.
const JSON_OPTS: &[OptSpec] = &[JSON];
/// The extensions of commands that can refresh live.
const WATCH_OPTS: &[OptSpec] = &[JSON, WATCH, INTERVAL];

/// Options every command knows (looked up before the command's own).
pub const COMMON_OPTS: &[OptSpec] = &[
    opt(
        'a',
        "address",
        true,
        "specify the daemon address (default: localhost)",
    ),
    opt('p', "port", true, "specify the daemon port"),
    opt(
        'r',
        "raw",
        false,
        "raw output mode: omit headers, separate fields with\n                          single spaces and print all sizes in decimal bytes",
    ),
    opt('v', "verbose", false, "print more information than default"),
    opt('h', "help", false, "display this help and exit"),
    opt('T', "time", false, "show elapsed time"),
];

const VDI_OPTS: &[OptSpec] = &[
    opt('P', "prealloc", false, "preallocate all the data objects"),
    opt('n', "no-share", false, "share nothing with its parent"),
    opt('i', "index", true, "specify the index of data objects"),
    opt('s', "snapshot", true, "specify a snapshot id or tag name"),
    opt('x', "exclusive", false, "write in an exclusive mode"),
    opt('d', "delete", false, "delete a key"),
    opt('w', "writeback", false, "use writeback mode"),
    opt('c', "copies", true, "specify the data redundancy level"),
    opt(
        'F',
        "from",
        true,
        "create a differential backup from the snapshot",
    ),
    opt('f', "force", false, "do operation forcibly"),
    opt('y', "hyper", false, "create a hyper volume"),
    opt(
        'o',
        "oid",
        true,
        "specify the object id of the tracking object",
    ),
    opt(
        'e',
        "exist",
        false,
        "only check objects exist or not,\n                          neither comparing nor repairing",
    ),
    opt(
        'z',
        "block_size_shift",
        true,
        "specify the bit shift num for data object size",
    ),
    opt(
        'R',
        "reduce-identical-snapshots",
        false,
        "do not create snapshot if working VDI doesn't have its own objects",
    ),
];

const NODE_OPTS: &[OptSpec] = &[
    opt('A', "all", false, "show md information of all the nodes"),
    opt(
        'P',
        "progress",
        false,
        "show progress of recovery in the node",
    ),
    opt('w', "watch", false, "watch the stat every second"),
    opt('l', "local", false, "issue request to local node"),
    opt('f', "force", false, "ignore the confirmation"),
];

const CLUSTER_OPTS: &[OptSpec] = &[
    opt('b', "store", true, "specify backend store"),
    opt(
        'c',
        "copies",
        true,
        "specify the default data redundancy (number of copies)",
    ),
    opt('f', "force", false, "do not prompt for confirmation"),
    opt(
        'F',
        "avoid-diskfull",
        false,
        "skip recovery if recovery process can cause disk full",
    ),
    opt('l', "lock", false, "Lock vdi to exclude multiple users"),
    opt(
        'm',
        "multithread",
        false,
        "use multi-thread for 'cluster snapshot save'",
    ),
    opt('R', "recyclevid", false, "enable recycling of VID"),
    opt(
        't',
        "strict",
        false,
        "do not serve write request if number of nodes is not sufficient",
    ),
    opt(
        'z',
        "block_size_shift",
        true,
        "specify the shift num of default data object size",
    ),
    opt(
        'V',
        "fixedvnodes",
        false,
        "disable automatic vnodes calculation",
    ),
    opt(
        'd',
        "diff",
        false,
        "just output the changes between the two adjacent epoches",
    ),
];

const UPGRADE_OPTS: &[OptSpec] = &[opt(
    'o',
    "orig-version",
    true,
    "specify original version of file format",
)];

const BENCHMARK_OPTS: &[OptSpec] = &[
    opt('w', "workqueue", true, "specify workqueue type"),
    opt('f', "file", true, "specify file name"),
    opt('t', "total", true, "specify total size of benchmark"),
    opt('n', "nr-threads", true, "specify number of threads"),
];

/// Subcommand flag: send GET_NODE_LIST + STAT_CLUSTER before running.
pub const NEED_NODELIST: u8 = 1;
/// Subcommand flag: at least one positional argument is required.
pub const NEED_ARG: u8 = 2;

/// What a subcommand runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `vdi create`.
    VdiCreate,
    /// `vdi delete`.
    VdiDelete,
    /// `vdi list`.
    VdiList,
    /// `vdi snapshot`.
    VdiSnapshot,
    /// `vdi clone`.
    VdiClone,
    /// `vdi rollback`.
    VdiRollback,
    /// `vdi tree`.
    VdiTree,
    /// `vdi lock list|unlock`.
    VdiLock,
    /// `vdi read`.
    VdiRead,
    /// `vdi write`.
    VdiWrite,
    /// `node list`.
    NodeList,
    /// `node info`.
    NodeInfo,
    /// `node kill`.
    NodeKill,
    /// `vdi object location|map`.
    VdiObject,
    /// `node recovery [info]`.
    NodeRecovery,
    /// `node log level set|get|list`.
    NodeLog,
    /// `cluster info`.
    ClusterInfo,
    /// `cluster format`.
    ClusterFormat,
    /// `cluster shutdown`.
    ClusterShutdown,
    /// `vdi track`.
    VdiTrack,
    /// `vdi setattr`.
    VdiSetattr,
    /// `vdi getattr`.
    VdiGetattr,
    /// `vdi resize`.
    VdiResize,
    /// `vdi check`.
    VdiCheck,
    /// `cluster check`.
    ClusterCheck,
    /// `vdi alter-copy`.
    VdiAlterCopy,
    /// `cluster alter-copy`.
    ClusterAlterCopy,
    /// Listed for compatibility, not implemented by this `dog` yet.
    NotImplemented,
}

/// A nested subcommand (e.g. `vdi object location`), listed in usage text.
#[derive(Debug, Clone, Copy)]
pub struct SubSub {
    /// Name.
    pub name: &'static str,
    /// Description.
    pub desc: &'static str,
    /// False for one this `dog` accepts but does not implement yet: its usage line is
    /// marked (`node recovery set-throttle`, `vdi object dump-inode`).
    pub implemented: bool,
}

/// One subcommand.
#[derive(Debug, Clone, Copy)]
pub struct SubCmd {
    /// Name.
    pub name: &'static str,
    /// Argument text for usage.
    pub arg: Option<&'static str>,
    /// Accepted option letters, in usage order.
    pub opts: &'static str,
    /// Description.
    pub desc: &'static str,
    /// `NEED_*` bits.
    pub flags: u8,
    /// Nested subcommands.
    pub subsub: &'static [SubSub],
    /// What runs.
    pub handler: Handler,
    /// Long-only options (sheepdog-rs extensions), after the letters in usage order.
    pub long_opts: &'static [OptSpec],
}

/// One command (`vdi`, `node`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// Name.
    pub name: &'static str,
    /// Subcommands in listing order.
    pub subs: &'static [SubCmd],
    /// The command's own options.
    pub options: &'static [OptSpec],
}

const fn sub(
    name: &'static str,
    arg: Option<&'static str>,
    opts: &'static str,
    desc: &'static str,
    flags: u8,
    handler: Handler,
) -> SubCmd {
    SubCmd {
        name,
        arg,
        opts,
        desc,
        flags,
        subsub: &[],
        handler,
        long_opts: &[],
    }
}

const fn nested(
    name: &'static str,
    arg: Option<&'static str>,
    opts: &'static str,
    desc: &'static str,
    flags: u8,
    subsub: &'static [SubSub],
) -> SubCmd {
    SubCmd {
        name,
        arg,
        opts,
        desc,
        flags,
        subsub,
        handler: Handler::NotImplemented,
        long_opts: &[],
    }
}

const fn ss(name: &'static str, desc: &'static str) -> SubSub {
    SubSub {
        name,
        desc,
        implemented: true,
    }
}

/// A nested subcommand of an implemented subcommand that is not implemented yet.
const fn ss_ni(name: &'static str, desc: &'static str) -> SubSub {
    SubSub {
        name,
        desc,
        implemented: false,
    }
}

use Handler::NotImplemented as NI;

const VDI_SUBS: &[SubCmd] = &[
    SubCmd {
        long_opts: JSON_OPTS,
        ..sub(
            "check",
            Some("<vdiname>"),
            "seaphT",
            "check and repair image's consistency",
            NEED_NODELIST | NEED_ARG,
            Handler::VdiCheck,
        )
    },
    sub(
        "create",
        Some("<vdiname> <size>"),
        "PycaphrvzT",
        "create an image",
        NEED_NODELIST | NEED_ARG,
        Handler::VdiCreate,
    ),
    sub(
        "snapshot",
        Some("<vdiname>"),
        "saphrvTR",
        "create a snapshot",
        NEED_ARG,
        Handler::VdiSnapshot,
    ),
    sub(
        "clone",
        Some("<src vdi> <dst vdi>"),
        "sPnaphrvT",
        "clone an image",
        NEED_ARG,
        Handler::VdiClone,
    ),
    sub(
        "delete",
        Some("<vdiname>"),
        "saphT",
        "delete an image",
        NEED_ARG,
        Handler::VdiDelete,
    ),
    sub(
        "rollback",
        Some("<vdiname>"),
        "saphfrvT",
        "rollback to a snapshot",
        NEED_ARG,
        Handler::VdiRollback,
    ),
    SubCmd {
        long_opts: JSON_OPTS,
        ..sub(
            "list",
            Some("[vdiname]"),
            "aprhoT",
            "list images",
            0,
            Handler::VdiList,
        )
    },
    SubCmd {
        long_opts: JSON_OPTS,
        ..sub(
            "tree",
            None,
            "aphT",
            "show images in tree view format",
            0,
            Handler::VdiTree,
        )
    },
    sub(
        "graph",
        None,
        "aphT",
        "show images in Graphviz dot format",
        0,
        NI,
    ),
    SubCmd {
        handler: Handler::VdiObject,
        long_opts: JSON_OPTS,
        ..nested(
            "object",
            Some("<vdiname>"),
            "isaphT",
            "show object information in the image",
            NEED_ARG,
            &[
                ss("location", "show object location information"),
                ss("map", "show object map information"),
                ss_ni("dump-inode", "dump inode information"),
            ],
        )
    },
    SubCmd {
        long_opts: JSON_OPTS,
        ..sub(
            "track",
            Some("<vdiname>"),
            "isaphoT",
            "show the object epoch trace in the image",
            NEED_NODELIST | NEED_ARG,
            Handler::VdiTrack,
        )
    },
    sub(
        "setattr",
        Some("<vdiname> <key> [value]"),
        "dxaphT",
        "set a VDI attribute",
        NEED_ARG,
        Handler::VdiSetattr,
    ),
    sub(
        "getattr",
        Some("<vdiname> <key>"),
        "aphT",
        "get a VDI attribute",
        NEED_ARG,
        Handler::VdiGetattr,
    ),
    sub(
        "resize",
        Some("<vdiname> <new size>"),
        "aphT",
        "resize an image",
        NEED_ARG,
        Handler::VdiResize,
    ),
    sub(
        "read",
        Some("<vdiname> [<offset> [<len>]]"),
        "saphT",
        "read data from an image",
        NEED_ARG,
        Handler::VdiRead,
    ),
    sub(
        "write",
        Some("<vdiname> [<offset> [<len>]]"),
        "apwhT",
        "write data to an image",
        NEED_ARG,
        Handler::VdiWrite,
    ),
    sub(
        "backup",
        Some("<vdiname>"),
        "sFaphT",
        "create an incremental backup between two snapshots and outputs to STDOUT",
        NEED_NODELIST | NEED_ARG,
        NI,
    ),
    sub(
        "restore",
        Some("<vdiname>"),
        "saphT",
        "restore snapshot images from a backup provided in STDIN",
        NEED_NODELIST | NEED_ARG,
        NI,
    ),
    sub(
        "alter-copy",
        Some("<vdiname>"),
        "caphTf",
        "set the vdi's redundancy level",
        NEED_NODELIST | NEED_ARG,
        Handler::VdiAlterCopy,
    ),
    SubCmd {
        handler: Handler::VdiLock,
        long_opts: JSON_OPTS,
        ..nested(
            "lock",
            None,
            "aphT",
            "See 'dog vdi lock' for more information",
            NEED_ARG,
            &[
                ss("list", "list locked VDIs"),
                ss("unlock", "unlock locked VDI forcibly"),
            ],
        )
    },
];

const NODE_SUBS: &[SubCmd] = &[
    sub(
        "kill",
        Some("<node id>"),
        "aprhlT",
        "kill node",
        NEED_NODELIST,
        Handler::NodeKill,
    ),
    SubCmd {
        long_opts: JSON_OPTS,
        ..sub(
            "list",
            None,
            "aprhT",
            "list nodes",
            NEED_NODELIST,
            Handler::NodeList,
        )
    },
    SubCmd {
        long_opts: JSON_OPTS,
        ..sub(
            "info",
            None,
            "aprhT",
            "show information about each node",
            NEED_NODELIST,
            Handler::NodeInfo,
        )
    },
    SubCmd {
        handler: Handler::NodeRecovery,
        long_opts: WATCH_OPTS,
        ..nested(
            "recovery",
            Some("<max> <interval>"),
            "aphPrT",
            "show recovery information or set/get recovery speed throttling of nodes",
            0,
            &[
                ss("info", "show recovery information of nodes (default)"),
                ss_ni("set-throttle", "set new throttling"),
                ss_ni("get-throttle", "get current throttling"),
            ],
        )
    },
    nested(
        "md",
        Some("[disks]"),
        "aprAfhT",
        "See 'dog node md' for more information",
        NEED_ARG,
        &[
            ss("info", "show multi-disk information"),
            ss("plug", "plug more disk(s) into node"),
            ss("unplug", "unplug disk(s) from node"),
        ],
    ),
    sub(
        "stat",
        None,
        "aprwhT",
        "show stat information about the node",
        0,
        NI,
    ),
    SubCmd {
        handler: Handler::NodeLog,
        ..nested(
            "log",
            None,
            "aphT",
            "show or set log level of the node",
            NEED_ARG,
            &[ss("level", "manipulate loglevel")],
        )
    },
    nested(
        "vnodes",
        None,
        "aph",
        "set new vnodes",
        NEED_ARG,
        &[ss("set", "set new vnodes")],
    ),
    sub(
        "format",
        Some("<dir of sheep> <store>"),
        "aphT",
        "initialize store format of the node",
        NEED_ARG,
        NI,
    ),
];

const CLUSTER_SUBS: &[SubCmd] = &[
    SubCmd {
        long_opts: WATCH_OPTS,
        ..sub(
            "info",
            None,
            "aprhvTd",
            "show cluster information",
            NEED_NODELIST,
            Handler::ClusterInfo,
        )
    },
    sub(
        "format",
        None,
        "bcltaphzTVRfF",
        "create a Sheepdog store",
        NEED_NODELIST,
        Handler::ClusterFormat,
    ),
    sub(
        "shutdown",
        None,
        "aphT",
        "stop Sheepdog",
        0,
        Handler::ClusterShutdown,
    ),
    nested(
        "snapshot",
        Some("<tag|idx> <path> [vdi1] [vdi2] ..."),
        "aphTm",
        "snapshot/restore the cluster",
        NEED_ARG,
        &[
            ss("save", "save snapshot to localpath"),
            ss("list", "list snapshot of localpath"),
            ss("load", "load snapshot from localpath"),
            ss("show", "show vdi list from snapshot"),
        ],
    ),
    nested(
        "recover",
        None,
        "afphT",
        "See 'dog cluster recover' for more information",
        NEED_ARG,
        &[
            ss("force", "force recover cluster immediately"),
            ss(
                "enable",
                "enable automatic recovery and run once recover if necessary",
            ),
            ss("disable", "disable automatic recovery"),
        ],
    ),
    sub("reweight", None, "aphT", "reweight the cluster", 0, NI),
    SubCmd {
        long_opts: JSON_OPTS,
        ..sub(
            "check",
            None,
            "aphT",
            "check and repair cluster",
            NEED_NODELIST,
            Handler::ClusterCheck,
        )
    },
    sub(
        "alter-copy",
        None,
        "aphTcf",
        "set the cluster's redundancy level",
        NEED_NODELIST,
        Handler::ClusterAlterCopy,
    ),
];

const UPGRADE_SUBS: &[SubCmd] = &[
    sub(
        "inode-convert",
        Some("<path of inode file> <path of new inode file>"),
        "hTo",
        "upgrade inode object file",
        NEED_ARG,
        NI,
    ),
    sub(
        "epoch-convert",
        Some("<path of epoch log file> <path of new epoch log file>"),
        "hTo",
        "upgrade epoch log file",
        NEED_ARG,
        NI,
    ),
    sub(
        "config-convert",
        Some("<path of config file> <path of new config file>"),
        "hTo",
        "upgrade config file",
        NEED_ARG,
        NI,
    ),
    sub(
        "object-location",
        Some("<oid>"),
        "aphTo",
        "print object location",
        NEED_NODELIST | NEED_ARG,
        NI,
    ),
];

const BENCHMARK_SUBS: &[SubCmd] = &[sub(
    "io",
    Some("<vdiname>"),
    "wftnaphT",
    "benchmark I/O performance",
    NEED_ARG,
    NI,
)];

/// Every command, in listing order.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "vdi",
        subs: VDI_SUBS,
        options: VDI_OPTS,
    },
    Command {
        name: "node",
        subs: NODE_SUBS,
        options: NODE_OPTS,
    },
    Command {
        name: "cluster",
        subs: CLUSTER_SUBS,
        options: CLUSTER_OPTS,
    },
    Command {
        name: "upgrade",
        subs: UPGRADE_SUBS,
        options: UPGRADE_OPTS,
    },
    Command {
        name: "benchmark",
        subs: BENCHMARK_SUBS,
        options: BENCHMARK_OPTS,
    },
];

impl SubCmd {
    /// False for the subcommands listed for compatibility that this `dog` does not
    /// implement yet: `dog --help` and the `Available ... commands` listings leave them
    /// out; they still parse and print "not implemented yet".
    pub fn is_implemented(&self) -> bool {
        self.handler != Handler::NotImplemented
    }
}

impl Command {
    /// Finds a command by name.
    pub fn find(name: &str) -> Option<&'static Command> {
        COMMANDS.iter().find(|c| c.name == name)
    }

    /// Finds a subcommand by name.
    pub fn sub(&self, name: &str) -> Option<&'static SubCmd> {
        self.subs.iter().find(|s| s.name == name)
    }

    /// The spec of option letter `ch`: common options first, then the command's.
    pub fn opt(&self, ch: char) -> Option<&'static OptSpec> {
        COMMON_OPTS
            .iter()
            .chain(self.options.iter())
            .find(|o| o.ch == ch)
    }

    /// The specs of `sub`'s option letters, in its order, then its long-only options.
    pub fn sub_opts<'a>(&self, sub: &'a SubCmd) -> Vec<&'a OptSpec> {
        sub.opts
            .chars()
            .filter_map(|c| self.opt(c))
            .chain(sub.long_opts.iter())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_letter_resolves() {
        for cmd in COMMANDS {
            for s in cmd.subs {
                assert_eq!(
                    cmd.sub_opts(s).len(),
                    s.opts.chars().count() + s.long_opts.len(),
                    "{} {}",
                    cmd.name,
                    s.name
                );
            }
        }
    }
}
