//! Erasure coding for Sheepdog 1.0 objects: the code D:P and its policy byte ([`Ec`]),
//! where every object byte lives ([`Geometry`]), and the Reed-Solomon codec ([`Codec`]).
//!
//! Pure: no I/O, no async runtime; every length comes in checked and every refusal is an
//! [`EcError`].
//!
//! An erasure-coded object of `object_size` bytes is stored as D data strips plus P parity
//! strips of `object_size / D` bytes each, strip `i` on the `i`-th node of the object's
//! placement list. Data is laid out as C sheepdog lays it (512-byte stripes, each split in
//! D units of `512 / D` bytes, unit `i` to data strip `i`), so a run of whole stripes is
//! one contiguous byte range in every strip file.
//!
//! **Invariant:** a *block* (`max(512, 64 * D)` data bytes, `max(512 / D, 64)` bytes of each
//! strip) codes independently of every other block: encoding or decoding a block-aligned
//! sub-range of the strips gives exactly the matching slice of coding the whole strips.
//! This holds because reed-solomon-simd pairs bytes into GF(2^16) elements only inside a
//! 64-byte chunk of a strip, and we never pass it a strip that is not a whole number of
//! chunks. A partial write therefore re-encodes only the blocks it touches.
//!
//! **Boundary:** parity bytes are reed-solomon-simd's, not C sheepdog's; they are part of
//! the disk format and pinned by the `parity_golden` test.
#![forbid(unsafe_code)]

mod codec;
mod error;
mod geometry;
mod policy;

pub use codec::Codec;
pub use error::EcError;
pub use geometry::{CODEC_CHUNK, DataRange, Geometry, STRIPE_SIZE, StripPos, StripRange};
pub use policy::{DATA_STRIPS, Ec, MAX_PARITY};
