//! Helpers shared by the fuzz targets: [`chunked`] feeds a byte stream to a streaming
//! decoder in pieces and checks that the pieces do not change the outcome.

pub mod chunked;
