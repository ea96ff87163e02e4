//! Exit codes (`include/exits.h`) and the early-exit marker.

/// Success.
pub const EXIT_SUCCESS: u8 = 0;
/// The server returned an error, or a bad option value.
pub const EXIT_FAILURE: u8 = 1;
/// Cannot talk to sheep, local I/O error.
pub const EXIT_SYSFAIL: u8 = 2;
/// `vdi setattr -x`: the attribute exists.
pub const EXIT_EXISTS: u8 = 3;
/// Something is missing.
pub const EXIT_MISSING: u8 = 5;
/// Bad command line.
pub const EXIT_USAGE: u8 = 64;

/// The C code's `exit(code)` from deep inside a command: ends the process without the
/// epilogue (no usage text, no elapsed time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort(pub u8);

/// What a command returns: `Ok(code)` like the C functions' return value (64 prints the
/// subcommand usage), or an [`Abort`].
pub type CmdResult = Result<u8, Abort>;
