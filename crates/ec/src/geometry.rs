//! [`Geometry`]: where each byte of an erasure-coded object lives, and the block-aligned
//! ranges that can be coded on their own.
//!
//! C sheepdog's layout: object data is cut in 512-byte stripes; within a stripe data strip
//! `i` holds bytes `[i*u, (i+1)*u)` with the strip unit `u = 512 / D`. So object offset `o`
//! is in strip `(o % 512) / u` at strip offset `(o / 512) * u + o % u`, and a run of whole
//! stripes `[s0, s1)` is the single strip range `[s0*u, s1*u)` in every strip file.
//!
//! reed-solomon-simd codes 64-byte chunks of each strip independently, so the unit of
//! independent coding (a *block*) is `max(u, 64)` strip bytes = `max(512, 64*D)` data bytes.

use crate::codec::Codec;
use crate::{Ec, EcError};

/// Object data bytes per stripe (C sheepdog's `SD_EC_DATA_STRIPE_SIZE`).
pub const STRIPE_SIZE: u64 = 512;

/// Strip bytes that reed-solomon-simd codes together: parity at strip offset `j` depends
/// only on the data strips' bytes in the same 64-byte chunk (`j / 64`).
pub const CODEC_CHUNK: u64 = 64;

impl Ec {
    /// Strip unit `u`: bytes of one stripe that land in each data strip (`512 / D`).
    pub(crate) fn unit(&self) -> u64 {
        STRIPE_SIZE / u64::from(self.data())
    }

    /// Strip bytes per block: `max(u, 64)`.
    pub(crate) fn block_strip_bytes(&self) -> u64 {
        self.unit().max(CODEC_CHUNK)
    }
}

/// An erasure code applied to objects of one size.
///
/// **Invariant:** `object_size` is a non-zero multiple of [`Geometry::block_data_bytes`]
/// and fits in `usize`, so every range inside the object can be held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    ec: Ec,
    object_size: u64,
}

/// A block-aligned range of object data, made by [`Geometry::align`],
/// [`Geometry::range`] or [`Geometry::whole`].
///
/// **Invariant:** non-empty, and start and end are multiples of the block size of the
/// code it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataRange {
    offset: u64,
    len: u64,
    data: u8,
}

/// The byte range that a [`DataRange`] occupies in every strip file (data and parity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StripRange {
    /// Offset in the strip file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Where one object byte is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StripPos {
    /// Data strip index (position in the object's placement list), `< D`.
    pub strip: usize,
    /// Offset in that strip file.
    pub offset: u64,
}

impl DataRange {
    /// First object byte of the range.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of object bytes (a non-zero multiple of the block size).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a `DataRange` is never empty (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the last object byte of the range.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }

    /// The contiguous range this data occupies in every strip file.
    pub fn strip_range(&self) -> StripRange {
        // Whole stripes: stripe s starts at object offset 512*s and at strip offset
        // s*u = s*512/D, i.e. strip offset = object offset / D.
        let d = u64::from(self.data);
        StripRange {
            offset: self.offset / d,
            len: self.len / d,
        }
    }
}

impl StripRange {
    /// One past the last strip byte of the range.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Converts a length or offset bounded by the object size to `usize`.
fn to_usize(v: u64) -> usize {
    // Geometry::new checks that object_size fits in usize, and callers only pass values
    // at most object_size.
    usize::try_from(v).expect("bounded by object_size, which Geometry::new checked fits usize")
}

impl Geometry {
    /// An `ec` geometry for objects of `object_size` bytes: a non-zero multiple of
    /// [`Geometry::block_data_bytes`] (Sheepdog's 1 MiB..=2 GiB powers of two all are).
    pub fn new(ec: Ec, object_size: u64) -> Result<Geometry, EcError> {
        let block = ec.block_strip_bytes() * u64::from(ec.data());
        if object_size == 0
            || !object_size.is_multiple_of(block)
            || usize::try_from(object_size).is_err()
        {
            return Err(EcError::BadObjectSize { object_size, block });
        }
        Ok(Geometry { ec, object_size })
    }

    /// The erasure code.
    pub fn ec(&self) -> Ec {
        self.ec
    }

    /// Size of the whole object, in data bytes.
    pub fn object_size(&self) -> u64 {
        self.object_size
    }

    /// Size of each strip file (data and parity): `object_size / D`.
    pub fn strip_size(&self) -> u64 {
        self.object_size / u64::from(self.ec.data())
    }

    /// Strip unit `u = 512 / D`: bytes of each stripe stored in each data strip.
    pub fn unit(&self) -> u64 {
        self.ec.unit()
    }

    /// Strip bytes per block: `max(u, 64)`.
    pub fn block_strip_bytes(&self) -> u64 {
        self.ec.block_strip_bytes()
    }

    /// Object data bytes per block: `max(512, 64 * D)`. A block can be encoded, decoded
    /// and rewritten without touching its neighbours.
    pub fn block_data_bytes(&self) -> u64 {
        self.block_strip_bytes() * u64::from(self.ec.data())
    }

    /// The whole object as a data range.
    pub fn whole(&self) -> DataRange {
        DataRange {
            offset: 0,
            len: self.object_size,
            data: self.ec.data(),
        }
    }

    /// The exact range `[offset, offset + len)`, which must already be block aligned.
    pub fn range(&self, offset: u64, len: u64) -> Result<DataRange, EcError> {
        self.check_inside(offset, len)?;
        let block = self.block_data_bytes();
        if !offset.is_multiple_of(block) || !len.is_multiple_of(block) {
            return Err(EcError::Misaligned { offset, len, block });
        }
        Ok(DataRange {
            offset,
            len,
            data: self.ec.data(),
        })
    }

    /// The smallest block-aligned range covering `[offset, offset + len)`: what a request
    /// for those bytes must read (and, for a write, re-encode).
    pub fn align(&self, offset: u64, len: u64) -> Result<DataRange, EcError> {
        let end = self.check_inside(offset, len)?;
        let block = self.block_data_bytes();
        // end <= object_size, a multiple of block: rounding up stays inside the object.
        let start = offset - offset % block;
        let end = end.div_ceil(block) * block;
        Ok(DataRange {
            offset: start,
            len: end - start,
            data: self.ec.data(),
        })
    }

    /// Where object byte `offset` is stored.
    pub fn locate(&self, offset: u64) -> Result<StripPos, EcError> {
        self.check_inside(offset, 1)?;
        let unit = self.unit();
        let within = offset % STRIPE_SIZE;
        Ok(StripPos {
            strip: to_usize(within / unit),
            offset: (offset / STRIPE_SIZE) * unit + offset % unit,
        })
    }

    /// De-interleaves `data` (exactly `range.len()` object bytes) into D data-strip buffers
    /// of `range.strip_range().len` bytes each.
    pub fn split(&self, range: DataRange, data: &[u8]) -> Result<Vec<Vec<u8>>, EcError> {
        let range = self.recheck(range)?;
        let expected = to_usize(range.len());
        if data.len() != expected {
            return Err(EcError::BadLength {
                expected,
                got: data.len(),
            });
        }
        let unit = to_usize(self.unit());
        let strip_len = to_usize(range.strip_range().len);
        let mut strips: Vec<Vec<u8>> = (0..self.ec.data_count())
            .map(|_| Vec::with_capacity(strip_len))
            .collect();
        for stripe in data.chunks_exact(to_usize(STRIPE_SIZE)) {
            for (piece, strip) in stripe.chunks_exact(unit).zip(strips.iter_mut()) {
                strip.extend_from_slice(piece);
            }
        }
        Ok(strips)
    }

    /// Interleaves D data strips (each `range.strip_range().len` bytes) back into
    /// `range.len()` bytes of object data: the inverse of [`Geometry::split`].
    pub fn join(&self, range: DataRange, strips: &[impl AsRef<[u8]>]) -> Result<Vec<u8>, EcError> {
        let range = self.recheck(range)?;
        let d = self.ec.data_count();
        if strips.len() != d {
            return Err(EcError::WrongStripCount {
                expected: d,
                got: strips.len(),
            });
        }
        let strip_len = to_usize(range.strip_range().len);
        if let Some(bad) = strips.iter().find(|s| s.as_ref().len() != strip_len) {
            return Err(EcError::BadLength {
                expected: strip_len,
                got: bad.as_ref().len(),
            });
        }
        let unit = to_usize(self.unit());
        let mut pieces: Vec<_> = strips
            .iter()
            .map(|s| s.as_ref().chunks_exact(unit))
            .collect();
        let mut data = Vec::with_capacity(to_usize(range.len()));
        for _ in 0..strip_len / unit {
            for piece in pieces.iter_mut().filter_map(Iterator::next) {
                data.extend_from_slice(piece);
            }
        }
        Ok(data)
    }

    /// The P parity strips of D equal-length data strips (length a non-zero multiple of
    /// [`Geometry::block_strip_bytes`]). Builds a fresh [`Codec`]; keep one around with
    /// [`Geometry::codec`] to reuse its working memory.
    pub fn encode(&self, data_strips: &[impl AsRef<[u8]>]) -> Result<Vec<Vec<u8>>, EcError> {
        self.codec().encode(data_strips)
    }

    /// Fills every `None` among the D + P strips (data and parity) from at least D present
    /// ones; see [`Codec::reconstruct`]. Builds a fresh [`Codec`].
    pub fn reconstruct(&self, strips: &mut [Option<Vec<u8>>]) -> Result<(), EcError> {
        self.codec().reconstruct(strips)
    }

    /// A reusable encoder/decoder for this geometry's code.
    pub fn codec(&self) -> Codec {
        Codec::new(self.ec)
    }

    /// Checks that `[offset, offset + len)` is a non-empty range inside the object and
    /// returns its end.
    fn check_inside(&self, offset: u64, len: u64) -> Result<u64, EcError> {
        if len == 0 {
            return Err(EcError::EmptyRange { offset });
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.object_size => Ok(end),
            _ => Err(EcError::OutOfRange {
                offset,
                len,
                object_size: self.object_size,
            }),
        }
    }

    /// Re-validates a range made by another geometry against this one.
    fn recheck(&self, range: DataRange) -> Result<DataRange, EcError> {
        self.range(range.offset, range.len)
    }
}

#[cfg(test)]
#[path = "geometry_tests.rs"]
mod tests;
