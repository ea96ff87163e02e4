//! [`EcError`]: everything the erasure-coding crate can refuse, one variant per decision.

/// Why an erasure-coding call was refused.
///
/// Every variant is a caller mistake or a configuration the cluster must reject, except
/// [`EcError::TooFewStrips`] (a degraded object that cannot be read or rebuilt now) and
/// [`EcError::Codec`] (the Reed-Solomon library refused input we validated; a bug).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EcError {
    /// The data/parity strip counts are not an erasure code Sheepdog 1.0 supports: data
    /// strips must be 2, 4, 8 or 16 and parity strips 1..=15.
    #[error(
        "unsupported erasure code {data}:{parity} \
         (data strips must be 2, 4, 8 or 16, parity strips 1..=15)"
    )]
    BadPolicy {
        /// Requested number of data strips.
        data: u32,
        /// Requested number of parity strips.
        parity: u32,
    },

    /// The object size is not a non-zero multiple of the code's block (or does not fit in
    /// memory on this platform).
    #[error("object size {object_size} is not a non-zero multiple of the {block}-byte EC block")]
    BadObjectSize {
        /// The object size asked for.
        object_size: u64,
        /// Object data bytes per codec block ([`crate::Geometry::block_data_bytes`]).
        block: u64,
    },

    /// A data range is empty.
    #[error("empty data range at offset {offset}")]
    EmptyRange {
        /// Offset of the empty range.
        offset: u64,
    },

    /// A data range reaches past the end of the object (or overflows `u64`).
    #[error("data range {offset}+{len} is outside the {object_size}-byte object")]
    OutOfRange {
        /// Start of the range, in object bytes.
        offset: u64,
        /// Length of the range, in object bytes.
        len: u64,
        /// Size of the object.
        object_size: u64,
    },

    /// A data range that must be block aligned is not (e.g. one built for another
    /// geometry).
    #[error("data range {offset}+{len} is not aligned to the {block}-byte EC block")]
    Misaligned {
        /// Start of the range, in object bytes.
        offset: u64,
        /// Length of the range, in object bytes.
        len: u64,
        /// Object data bytes per codec block.
        block: u64,
    },

    /// The wrong number of strips was passed (data strips to `encode`/`join`, all strips to
    /// `reconstruct`).
    #[error("expected {expected} strips, got {got}")]
    WrongStripCount {
        /// Number of strips the call needs.
        expected: usize,
        /// Number of strips passed.
        got: usize,
    },

    /// A buffer does not have the length the call needs (object data for `split`, a strip
    /// for `join`, or a strip whose length differs from the first strip's).
    #[error("expected a buffer of {expected} bytes, got {got}")]
    BadLength {
        /// Length the call needs.
        expected: usize,
        /// Length passed.
        got: usize,
    },

    /// The strip length is not a non-zero multiple of the per-strip block size, so the
    /// strips cannot be coded independently of their neighbours.
    #[error("strip length {len} is not a non-zero multiple of the {block}-byte strip block")]
    StripLength {
        /// Length of the strips passed.
        len: usize,
        /// Strip bytes per codec block ([`crate::Geometry::block_strip_bytes`]).
        block: u64,
    },

    /// Fewer strips survive than there are data strips: the object cannot be decoded.
    #[error("only {present} strips present, {needed} needed to decode")]
    TooFewStrips {
        /// Number of strips present.
        present: usize,
        /// Number of strips needed (the data strip count).
        needed: usize,
    },

    /// The Reed-Solomon library reported success but did not restore this missing data
    /// strip. A bug (here or in the library), like [`EcError::Codec`].
    #[error("reed-solomon decoder did not restore data strip {strip}")]
    Unrestored {
        /// Index of the data strip left missing.
        strip: usize,
    },

    /// The Reed-Solomon library refused the input. Our own checks run first, so this
    /// indicates a bug in this crate rather than bad input.
    #[error("reed-solomon codec failed")]
    Codec(#[source] reed_solomon_simd::Error),
}
