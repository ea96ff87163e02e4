//! Result codes carried in every response (spec §7), with Sheepdog's `sd_strerror` texts.

macro_rules! results {
    ($($(#[$doc:meta])* $name:ident = $val:expr, $text:expr;)*) => {
        /// A response result code. Unknown values are kept.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SdResult {
            $($(#[$doc])* $name,)*
            /// A code this implementation does not know.
            Unknown(u32),
        }

        impl SdResult {
            /// All known codes.
            pub const ALL: &'static [SdResult] = &[$(SdResult::$name,)*];

            /// Decodes a raw code.
            pub const fn from_u32(v: u32) -> SdResult {
                match v {
                    $($val => SdResult::$name,)*
                    other => SdResult::Unknown(other),
                }
            }

            /// The raw code.
            pub const fn as_u32(self) -> u32 {
                match self {
                    $(SdResult::$name => $val,)*
                    SdResult::Unknown(v) => v,
                }
            }

            /// The message Sheepdog's `sd_strerror` prints for this code.
            pub fn message(self) -> std::borrow::Cow<'static, str> {
                match self {
                    $(SdResult::$name => std::borrow::Cow::Borrowed($text),)*
                    SdResult::Unknown(v) => std::borrow::Cow::Owned(format!("Invalid error code {v:x}")),
                }
            }
        }
    };
}

results! {
    /// Success.
    Success = 0x00, "Success";
    /// Unknown error.
    UnknownError = 0x01, "Unknown error";
    /// No object found.
    NoObj = 0x02, "No object found";
    /// I/O error.
    Eio = 0x03, "I/O error";
    /// VDI exists already.
    VdiExist = 0x04, "VDI exists already";
    /// Invalid parameters.
    InvalidParms = 0x05, "Invalid parameters";
    /// System error.
    SystemError = 0x06, "System error";
    /// VDI is already locked.
    VdiLocked = 0x07, "VDI is already locked";
    /// No VDI found.
    NoVdi = 0x08, "No VDI found";
    /// No base VDI found.
    NoBaseVdi = 0x09, "No base VDI found";
    /// Failed to read from requested VDI.
    VdiRead = 0x0A, "Failed to read from requested VDI";
    /// Failed to write to requested VDI.
    VdiWrite = 0x0B, "Failed to write to requested VDI";
    /// Failed to read from base VDI.
    BaseVdiRead = 0x0C, "Failed to read from base VDI";
    /// Failed to write to base VDI.
    BaseVdiWrite = 0x0D, "Failed to write to base VDI";
    /// Failed to find requested tag.
    NoTag = 0x0E, "Failed to find requested tag";
    /// System is still booting.
    Startup = 0x0F, "System is still booting";
    /// VDI is not locked.
    VdiNotLocked = 0x10, "VDI is not locked";
    /// System is shutting down.
    Shutdown = 0x11, "System is shutting down";
    /// Out of memory on server.
    NoMem = 0x12, "Out of memory on server";
    /// Maximum number of VDIs reached.
    FullVdi = 0x13, "Maximum number of VDIs reached";
    /// Protocol version mismatch.
    VerMismatch = 0x14, "Protocol version mismatch";
    /// Server has no space for new objects.
    NoSpace = 0x15, "Server has no space for new objects";
    /// Waiting for cluster to be formatted.
    WaitForFormat = 0x16, "Waiting for cluster to be formatted";
    /// Waiting for other nodes to join cluster.
    WaitForJoin = 0x17, "Waiting for other nodes to join cluster";
    /// Node has failed to join cluster.
    JoinFailed = 0x18, "Node has failed to join cluster";
    /// IO has halted.
    Halt = 0x19, "IO has halted as there are not enough living nodes";
    /// Object is read-only.
    Readonly = 0x1A, "Object is read-only";
    /// Inode object is invalidated.
    InodeInvalidated = 0x1D, "Inode object is invalidated";
    /// Request has an old epoch.
    OldNodeVer = 0x81, "Request has an old epoch";
    /// Request has a new epoch.
    NewNodeVer = 0x82, "Request has a new epoch";
    /// Cluster has not been formatted.
    NotFormatted = 0x83, "Cluster has not been formatted";
    /// Creation times differ.
    InvalidCtime = 0x84, "Creation times differ";
    /// Invalid epoch.
    InvalidEpoch = 0x85, "Invalid epoch";
    /// Network error between sheep.
    NetworkError = 0x86, "Network error between sheep";
    /// No cache object found.
    NoCache = 0x87, "No cache object found";
    /// The buffer is too small.
    BufferSmall = 0x88, "The buffer is too small";
    /// Cannot force recover.
    ForceRecover = 0x89, "Cluster is running/halted and cannot be force recovered";
    /// Targeted backend store is not found.
    NoStore = 0x8A, "Targeted backend store is not found";
    /// Operation is not supported.
    NoSupport = 0x8B, "Operation is not supported";
    /// Targeted node is in recovery.
    NodeInRecovery = 0x8C, "Targeted node is in recovery";
    /// Node is killed.
    Killed = 0x8D, "Node is killed";
    /// Object ID exists already.
    OidExist = 0x8E, "Object ID exists already";
    /// Ask to try again.
    Again = 0x8F, "Ask to try again";
    /// Object may be stale.
    StaleObj = 0x90, "Object may be stale";
    /// Cluster driver error.
    ClusterError = 0x91, "Cluster driver error";
    /// VDI is not empty.
    VdiNotEmpty = 0x92, "VDI is not empty";
    /// Not found.
    NotFound = 0x93, "Cannot find requested vdi";
    /// Incomplete.
    Incomplete = 0x94, "Incomplete request";
    /// Collecting cluster info.
    CollectingCinfo = 0x95, "Sheep is collecting cluster information";
    /// Targeted node is gateway mode.
    GatewayMode = 0x97, "Targeted node is gateway mode";
    /// Invalid cluster vnodes strategy.
    InvalidVnodesStrategy = 0x98, "Invalid cluster vnodes strategy";
    /// No checkpoint entry.
    NoCheckpointEntry = 0x99, "No checkpoint entry";
    /// sheepdog-rs extension, between sheep: an erasure-coded strip holds a write that is
    /// neither complete nor dropped; the stripe must be resolved first.
    InDoubt = 0xF0, "A write to the object is in doubt";
}

impl SdResult {
    /// True for [`SdResult::Success`].
    pub const fn is_success(self) -> bool {
        matches!(self, SdResult::Success)
    }
}

impl std::fmt::Display for SdResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in SdResult::ALL {
            assert_eq!(SdResult::from_u32(r.as_u32()), *r);
        }
        assert_eq!(SdResult::from_u32(0x1234), SdResult::Unknown(0x1234));
        assert_eq!(SdResult::NoVdi.message(), "No VDI found");
        assert_eq!(SdResult::from_u32(0x16), SdResult::WaitForFormat);
    }
}
