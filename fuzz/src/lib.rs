//! Helpers shared by the fuzz targets: [`chunked`] feeds a byte stream to a streaming
//! decoder in pieces and checks that the pieces do not change the outcome; [`nbd`] holds
//! the NBD option checks used by more than one target.

pub mod chunked;
pub mod nbd;
