//! Request validation as a pure function: a decoded request header plus the export's
//! limits becomes either an [`Op`] for the device or the [`BlockError`] to answer with.

use bytes::Bytes;

use crate::codec::{CmdFlags, CmdType, MAX_BLOCK, RequestHeader};
use crate::dev::BlockError;

/// What the connection knows about its export when it checks a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Export size in bytes.
    pub size: u64,
    /// Writes are refused.
    pub read_only: bool,
    /// Structured replies were negotiated (so `NBD_CMD_FLAG_DF` is allowed on READ).
    pub structured: bool,
}

/// A validated request, ready for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Read `len` (1..=MAX_BLOCK) bytes, in range.
    Read { offset: u64, len: u32 },
    /// Write `data` (1..=MAX_BLOCK bytes), in range.
    Write { offset: u64, data: Bytes, fua: bool },
    /// Flush.
    Flush,
    /// Trim a non-empty in-range extent; flush afterwards if `fua`.
    Trim { offset: u64, len: u32, fua: bool },
    /// Zero a non-empty in-range extent; flush afterwards if `fua`.
    WriteZeroes {
        offset: u64,
        len: u32,
        no_hole: bool,
        fua: bool,
    },
    /// A zero-length READ (answered with no data), WRITE, TRIM or WRITE_ZEROES at an
    /// offset within the export: succeeds without touching the device.
    Nothing,
}

/// Checks one request. `payload` is `None` for a WRITE the decoder refused as oversized
/// (its data was discarded). DISC never reaches this function.
///
/// Order of checks: unknown type and flags (`EINVAL`), writes to a read-only export
/// (`EPERM`), READ/WRITE above [`MAX_BLOCK`] (`EINVAL`), then the range: past the end is
/// `ENOSPC` for WRITE and WRITE_ZEROES, `EINVAL` for READ and TRIM. TRIM and
/// WRITE_ZEROES carry no payload and are not limited by the maximum block size.
pub(crate) fn check(
    header: &RequestHeader,
    payload: Option<Bytes>,
    limits: Limits,
) -> Result<Op, BlockError> {
    let allowed = match header.ty {
        CmdType::Read if limits.structured => CmdFlags::FUA | CmdFlags::DF,
        CmdType::Read | CmdType::Write | CmdType::Flush | CmdType::Trim => CmdFlags::FUA,
        CmdType::WriteZeroes => CmdFlags::FUA | CmdFlags::NO_HOLE,
        CmdType::Disc | CmdType::Unknown(_) => return Err(BlockError::Invalid),
    };
    if header.flags.without(allowed) != CmdFlags::NONE {
        return Err(BlockError::Invalid);
    }
    let fua = header.flags.contains(CmdFlags::FUA);
    let writes = matches!(
        header.ty,
        CmdType::Write | CmdType::Trim | CmdType::WriteZeroes
    );
    if writes && limits.read_only {
        return Err(BlockError::ReadOnly);
    }
    if header.ty == CmdType::Flush {
        // Offset and length are reserved (zero); a non-zero value is tolerated.
        return Ok(Op::Flush);
    }
    if matches!(header.ty, CmdType::Read | CmdType::Write) && header.length > MAX_BLOCK {
        return Err(BlockError::Invalid);
    }
    let in_range = header
        .offset
        .checked_add(u64::from(header.length))
        .is_some_and(|end| end <= limits.size);
    if !in_range {
        return Err(match header.ty {
            CmdType::Write | CmdType::WriteZeroes => BlockError::NoSpace,
            _ => BlockError::Invalid,
        });
    }
    if header.length == 0 {
        return Ok(Op::Nothing);
    }
    let (offset, len) = (header.offset, header.length);
    Ok(match header.ty {
        CmdType::Read => Op::Read { offset, len },
        CmdType::Write => Op::Write {
            offset,
            // An oversized WRITE was refused above (length > MAX_BLOCK), so the decoder
            // delivered the payload; an absent one is treated as invalid all the same.
            data: payload.ok_or(BlockError::Invalid)?,
            fua,
        },
        CmdType::Trim => Op::Trim { offset, len, fua },
        CmdType::WriteZeroes => Op::WriteZeroes {
            offset,
            len,
            no_hole: header.flags.contains(CmdFlags::NO_HOLE),
            fua,
        },
        CmdType::Flush | CmdType::Disc | CmdType::Unknown(_) => return Err(BlockError::Invalid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Cookie;

    const SIZE: u64 = 1 << 20;

    fn hdr(ty: CmdType, flags: CmdFlags, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            ty,
            cookie: Cookie(7),
            offset,
            length,
        }
    }

    /// Runs `check` on a request against a 1 MiB export and renders the outcome.
    fn run(h: RequestHeader, read_only: bool, structured: bool) -> String {
        let payload = (h.ty == CmdType::Write && h.length <= MAX_BLOCK)
            .then(|| Bytes::from(vec![0u8; usize::try_from(h.length).expect("small")]));
        let limits = Limits {
            size: SIZE,
            read_only,
            structured,
        };
        match check(&h, payload, limits) {
            Ok(Op::Write { offset, data, fua }) => {
                format!(
                    "Write {{ offset: {offset}, len: {}, fua: {fua} }}",
                    data.len()
                )
            }
            Ok(op) => format!("{op:?}"),
            Err(e) => format!("{:?}", e.errno()),
        }
    }

    #[test]
    fn table() {
        use CmdType::*;
        let none = CmdFlags::NONE;
        let fua = CmdFlags::FUA;
        let cases: &[(RequestHeader, bool, bool, &str)] = &[
            (
                hdr(Read, none, 0, 4096),
                false,
                false,
                "Read { offset: 0, len: 4096 }",
            ),
            (
                hdr(Read, fua, 0, 512),
                false,
                false,
                "Read { offset: 0, len: 512 }",
            ),
            (hdr(Read, CmdFlags::DF, 0, 512), false, false, "Errno(22)"),
            (
                hdr(Read, CmdFlags::DF, 0, 512),
                false,
                true,
                "Read { offset: 0, len: 512 }",
            ),
            (hdr(Read, none, SIZE - 1, 2), false, false, "Errno(22)"),
            (hdr(Read, none, u64::MAX, 2), false, false, "Errno(22)"),
            (hdr(Read, none, SIZE, 0), false, false, "Nothing"),
            (hdr(Read, none, SIZE + 1, 0), false, false, "Errno(22)"),
            (hdr(Read, none, 0, MAX_BLOCK + 1), false, false, "Errno(22)"),
            (
                hdr(Read, none, 0, 1),
                true,
                false,
                "Read { offset: 0, len: 1 }",
            ),
            (
                hdr(Write, fua, 4096, 8),
                false,
                false,
                "Write { offset: 4096, len: 8, fua: true }",
            ),
            (hdr(Write, none, SIZE - 4, 8), false, false, "Errno(28)"),
            (hdr(Write, none, 0, 8), true, false, "Errno(1)"),
            (hdr(Write, none, 0, 0), false, false, "Nothing"),
            (
                hdr(Write, none, 0, MAX_BLOCK + 1),
                false,
                false,
                "Errno(22)",
            ),
            (
                hdr(Write, CmdFlags::NO_HOLE, 0, 8),
                false,
                false,
                "Errno(22)",
            ),
            (hdr(Flush, none, 0, 0), false, false, "Flush"),
            (hdr(Flush, none, 0, 0), true, false, "Flush"),
            (hdr(Flush, fua, 99, 5), false, false, "Flush"),
            (
                hdr(Trim, fua, 0, 4096),
                false,
                false,
                "Trim { offset: 0, len: 4096, fua: true }",
            ),
            (hdr(Trim, none, SIZE, 1), false, false, "Errno(22)"),
            (hdr(Trim, none, 0, 1), true, false, "Errno(1)"),
            (
                hdr(WriteZeroes, CmdFlags::NO_HOLE, 0, u32::MAX),
                false,
                false,
                "Errno(28)",
            ),
            (
                hdr(WriteZeroes, CmdFlags::NO_HOLE, 0, 1 << 19),
                false,
                false,
                "WriteZeroes { offset: 0, len: 524288, no_hole: true, fua: false }",
            ),
            (
                hdr(WriteZeroes, CmdFlags::FAST_ZERO, 0, 1),
                false,
                false,
                "Errno(22)",
            ),
            (hdr(Unknown(5), none, 0, 0), false, false, "Errno(22)"),
            (hdr(Unknown(7), none, 0, 512), false, false, "Errno(22)"),
            (hdr(Read, CmdFlags(0x8000), 0, 1), false, false, "Errno(22)"),
        ];
        for (h, ro, structured, expect) in cases {
            assert_eq!(
                run(*h, *ro, *structured),
                *expect,
                "{h:?} ro={ro} sr={structured}"
            );
        }
    }

    #[test]
    fn oversized_write_payload_is_invalid() {
        let h = hdr(CmdType::Write, CmdFlags::NONE, 0, 8);
        let limits = Limits {
            size: SIZE,
            read_only: false,
            structured: false,
        };
        let err = check(&h, None, limits).expect_err("no payload");
        assert_eq!(err.errno(), crate::codec::Errno::EINVAL);
    }

    proptest::proptest! {
        /// Any header against any export: `check` never panics, and what it lets through
        /// is in range, within the block limit, allowed by the flags and the export mode;
        /// what it refuses gets the errno the protocol asks for.
        #[test]
        fn any_header_is_validated(
            flags in proptest::prelude::any::<u16>(),
            ty in 0u16..8,
            offset in proptest::prop_oneof![0u64..4096, SIZE - 4096..SIZE + 4096, proptest::prelude::any::<u64>()],
            length in proptest::prop_oneof![0u32..4096, MAX_BLOCK - 1..MAX_BLOCK + 2, proptest::prelude::any::<u32>()],
            read_only in proptest::prelude::any::<bool>(),
            structured in proptest::prelude::any::<bool>(),
            oversized in proptest::prelude::any::<bool>(),
        ) {
            let h = hdr(CmdType::from_u16(ty), CmdFlags(flags), offset, length);
            // The decoder delivers a WRITE payload unless it refused it as oversized.
            let payload = (h.ty == CmdType::Write && !oversized && length <= 4096)
                .then(|| Bytes::from(vec![0u8; usize::try_from(length).expect("small")]));
            let limits = Limits { size: SIZE, read_only, structured };
            let in_range = offset.checked_add(u64::from(length)).is_some_and(|end| end <= SIZE);
            let writes = matches!(h.ty, CmdType::Write | CmdType::Trim | CmdType::WriteZeroes);
            match check(&h, payload.clone(), limits) {
                Ok(Op::Read { offset: o, len }) => {
                    proptest::prop_assert_eq!(h.ty, CmdType::Read);
                    proptest::prop_assert!((o, len) == (offset, length) && in_range);
                    proptest::prop_assert!((1..=MAX_BLOCK).contains(&len));
                    proptest::prop_assert!(structured || !h.flags.contains(CmdFlags::DF));
                }
                Ok(Op::Write { offset: o, data, fua }) => {
                    proptest::prop_assert_eq!(h.ty, CmdType::Write);
                    proptest::prop_assert!(o == offset && in_range && !read_only);
                    proptest::prop_assert_eq!(data.len() as u64, u64::from(length));
                    proptest::prop_assert_eq!(fua, h.flags.contains(CmdFlags::FUA));
                }
                Ok(Op::Trim { offset: o, len, .. } | Op::WriteZeroes { offset: o, len, .. }) => {
                    proptest::prop_assert!(matches!(h.ty, CmdType::Trim | CmdType::WriteZeroes));
                    proptest::prop_assert!((o, len) == (offset, length) && len >= 1);
                    proptest::prop_assert!(in_range && !read_only);
                }
                Ok(Op::Flush) => proptest::prop_assert_eq!(h.ty, CmdType::Flush),
                Ok(Op::Nothing) => {
                    proptest::prop_assert!(length == 0 && offset <= SIZE);
                    proptest::prop_assert!(!(writes && read_only));
                }
                Err(BlockError::ReadOnly) => proptest::prop_assert!(writes && read_only),
                Err(BlockError::NoSpace) => {
                    proptest::prop_assert!(matches!(h.ty, CmdType::Write | CmdType::WriteZeroes));
                    proptest::prop_assert!(!in_range);
                }
                Err(BlockError::Invalid) => {
                    // Unknown type or flag, an over-long READ/WRITE, a READ or TRIM out of
                    // range, or a WRITE whose payload was discarded.
                    let allowed = match h.ty {
                        CmdType::Read if structured => CmdFlags::FUA | CmdFlags::DF,
                        CmdType::Read | CmdType::Write | CmdType::Flush | CmdType::Trim => CmdFlags::FUA,
                        CmdType::WriteZeroes => CmdFlags::FUA | CmdFlags::NO_HOLE,
                        CmdType::Disc | CmdType::Unknown(_) => CmdFlags::NONE,
                    };
                    let bad_type = matches!(h.ty, CmdType::Disc | CmdType::Unknown(_));
                    let bad_flags = h.flags.without(allowed) != CmdFlags::NONE;
                    let too_long = matches!(h.ty, CmdType::Read | CmdType::Write) && length > MAX_BLOCK;
                    let out_of_range = matches!(h.ty, CmdType::Read | CmdType::Trim) && !in_range;
                    let no_payload = h.ty == CmdType::Write && payload.is_none() && length > 0;
                    proptest::prop_assert!(bad_type || bad_flags || too_long || out_of_range || no_payload);
                }
                Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
            }
        }
    }
}
