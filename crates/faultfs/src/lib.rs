//! faultfs: a FUSE file system for crash tests, in the LazyFS model.
//!
//! It keeps the whole file system in memory as two states (see [`model`]): the live state
//! the mount shows, and the durable state a power cut leaves, which changes only through
//! `fsync`/`fdatasync` of a file, `O_DSYNC` writes, and `fsync` of a directory (for its
//! entries). A power cut ([`control::Command::Cut`]) drops the live state, saves the
//! durable one to the image file ([`image`]) and unmounts; mounting the image again shows
//! the disk as the cut left it. It can also run out of space at a chosen capacity and fail
//! reads of chosen files with `EIO`.
//!
//! The binary: `faultfs [--control SOCKET] [--die-with-parent] IMAGE MOUNTPOINT` (the
//! socket defaults to `IMAGE.ctl` and is bound once the mount is ready).

#![forbid(unsafe_code)]

pub mod control;
pub mod data;
pub mod fuse;
pub mod image;
pub mod model;

#[cfg(test)]
mod proptests;
