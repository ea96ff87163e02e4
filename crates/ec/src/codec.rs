//! [`Codec`]: Reed-Solomon encoding of parity strips and reconstruction of lost strips,
//! over `reed-solomon-simd` (GF(2^16), Leopard). Parity bytes are NOT compatible with C
//! sheepdog's (ISA-L / zfec); they are pinned by a golden test so that a library upgrade
//! cannot silently change what is on disk.

use std::fmt;

use reed_solomon_simd::{EncoderResult, ReedSolomonDecoder, ReedSolomonEncoder};

use crate::{Ec, EcError};

/// An encoder/decoder for one [`Ec`], keeping the library's working memory between calls.
///
/// Strips passed to it must all have the same length, a non-zero multiple of the code's
/// per-strip block (`max(512 / D, 64)` bytes); each block is coded independently, so a
/// block-aligned sub-range of the strips codes to the same slice of the parity.
pub struct Codec {
    ec: Ec,
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("ec", &self.ec)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec for `ec`; working memory is allocated on first use.
    pub fn new(ec: Ec) -> Codec {
        Codec {
            ec,
            encoder: None,
            decoder: None,
        }
    }

    /// The erasure code.
    pub fn ec(&self) -> Ec {
        self.ec
    }

    /// The P parity strips of D equal-length data strips.
    pub fn encode(&mut self, data_strips: &[impl AsRef<[u8]>]) -> Result<Vec<Vec<u8>>, EcError> {
        let result = self.run_encoder(data_strips)?;
        Ok(result.recovery_iter().map(<[u8]>::to_vec).collect())
    }

    /// Like [`Codec::encode`], but writes the parity into `parity`: P buffers as long as
    /// the data strips (saves allocating, and page-faulting, fresh strips on every call).
    pub fn encode_into(
        &mut self,
        data_strips: &[impl AsRef<[u8]>],
        parity: &mut [impl AsMut<[u8]>],
    ) -> Result<(), EcError> {
        let p = self.ec.parity_count();
        if parity.len() != p {
            return Err(EcError::WrongStripCount {
                expected: p,
                got: parity.len(),
            });
        }
        let len = common_len(data_strips.iter().map(AsRef::as_ref))?.unwrap_or(0);
        if let Some(bad) = parity
            .iter_mut()
            .map(|s| s.as_mut().len())
            .find(|&l| l != len)
        {
            return Err(EcError::BadLength {
                expected: len,
                got: bad,
            });
        }
        let result = self.run_encoder(data_strips)?;
        for (out, strip) in parity.iter_mut().zip(result.recovery_iter()) {
            // Both are `len` bytes: checked above and by `run_encoder`.
            out.as_mut().copy_from_slice(strip);
        }
        Ok(())
    }

    /// Validates D equal-length data strips and encodes them.
    fn run_encoder(
        &mut self,
        data_strips: &[impl AsRef<[u8]>],
    ) -> Result<EncoderResult<'_>, EcError> {
        let d = self.ec.data_count();
        if data_strips.len() != d {
            return Err(EcError::WrongStripCount {
                expected: d,
                got: data_strips.len(),
            });
        }
        let len = common_len(data_strips.iter().map(AsRef::as_ref))?.unwrap_or(0);
        self.check_len(len)?;
        let encoder = self.encoder(len)?;
        for strip in data_strips {
            encoder.add_original_shard(strip).map_err(EcError::Codec)?;
        }
        encoder.encode().map_err(EcError::Codec)
    }

    /// Fills in every `None` entry of `strips` (length D + P: data strips then parity
    /// strips, in placement order) from the present ones, which must number at least D
    /// and all have the same length. Used for degraded reads (missing data strips) and for
    /// rebuilding a lost strip (data or parity). On error `strips` is left unchanged.
    pub fn reconstruct(&mut self, strips: &mut [Option<Vec<u8>>]) -> Result<(), EcError> {
        let (d, n) = (self.ec.data_count(), self.ec.total_count());
        if strips.len() != n {
            return Err(EcError::WrongStripCount {
                expected: n,
                got: strips.len(),
            });
        }
        let present = strips.iter().flatten().count();
        if present < d {
            return Err(EcError::TooFewStrips { present, needed: d });
        }
        let len = common_len(strips.iter().flatten().map(Vec::as_slice))?.unwrap_or(0);
        self.check_len(len)?;
        if present == n {
            return Ok(());
        }

        // `strips.len() == n > d`, so the split point is in bounds.
        let (data, parity) = strips.split_at_mut(d);
        let restored = self.restore_data(data, parity, len)?;
        let recomputed = if parity.iter().any(Option::is_none) {
            let mut fresh = restored.iter().map(Vec::as_slice);
            let full: Vec<&[u8]> = data
                .iter()
                .filter_map(|s| s.as_deref().or_else(|| fresh.next()))
                .collect();
            self.encode(&full)?
        } else {
            Vec::new()
        };

        // Nothing can fail from here on: fill the gaps.
        let empty_data = data.iter_mut().filter(|s| s.is_none());
        for (slot, strip) in empty_data.zip(restored) {
            *slot = Some(strip);
        }
        for (slot, strip) in parity.iter_mut().zip(recomputed) {
            if slot.is_none() {
                *slot = Some(strip);
            }
        }
        Ok(())
    }

    /// The missing data strips, in index order (empty when none is missing).
    fn restore_data(
        &mut self,
        data: &[Option<Vec<u8>>],
        parity: &[Option<Vec<u8>>],
        len: usize,
    ) -> Result<Vec<Vec<u8>>, EcError> {
        let missing = data.iter().filter(|s| s.is_none()).count();
        if missing == 0 {
            return Ok(Vec::new());
        }
        let decoder = self.decoder(len)?;
        for (i, strip) in data.iter().enumerate() {
            if let Some(strip) = strip {
                decoder
                    .add_original_shard(i, strip)
                    .map_err(EcError::Codec)?;
            }
        }
        // Exactly as many parity strips as data strips are missing: the decoder needs D
        // shards in all, and each extra one is only copied for nothing.
        let parity_present = parity
            .iter()
            .enumerate()
            .filter_map(|(j, s)| s.as_ref().map(|s| (j, s)));
        for (j, strip) in parity_present.take(missing) {
            decoder
                .add_recovery_shard(j, strip)
                .map_err(EcError::Codec)?;
        }
        let result = decoder.decode().map_err(EcError::Codec)?;
        let mut restored = Vec::with_capacity(missing);
        for (i, slot) in data.iter().enumerate() {
            if slot.is_none() {
                let strip = result
                    .restored_original(i)
                    .ok_or(EcError::Unrestored { strip: i })?;
                restored.push(strip.to_vec());
            }
        }
        Ok(restored)
    }

    /// Checks a strip length: non-zero and a whole number of blocks.
    fn check_len(&self, len: usize) -> Result<(), EcError> {
        let block = self.ec.block_strip_bytes();
        let whole_blocks = u64::try_from(len).is_ok_and(|l| l.is_multiple_of(block));
        if len == 0 || !whole_blocks {
            return Err(EcError::StripLength { len, block });
        }
        Ok(())
    }

    /// The encoder, reset for strips of `len` bytes.
    fn encoder(&mut self, len: usize) -> Result<&mut ReedSolomonEncoder, EcError> {
        let (d, p) = (self.ec.data_count(), self.ec.parity_count());
        let encoder = match self.encoder.take() {
            Some(mut e) => {
                e.reset(d, p, len).map_err(EcError::Codec)?;
                e
            }
            None => ReedSolomonEncoder::new(d, p, len).map_err(EcError::Codec)?,
        };
        Ok(self.encoder.insert(encoder))
    }

    /// The decoder, reset for strips of `len` bytes.
    fn decoder(&mut self, len: usize) -> Result<&mut ReedSolomonDecoder, EcError> {
        let (d, p) = (self.ec.data_count(), self.ec.parity_count());
        let decoder = match self.decoder.take() {
            Some(mut e) => {
                e.reset(d, p, len).map_err(EcError::Codec)?;
                e
            }
            None => ReedSolomonDecoder::new(d, p, len).map_err(EcError::Codec)?,
        };
        Ok(self.decoder.insert(decoder))
    }
}

/// The length shared by all `strips` (`None` if there are none), or `BadLength` naming
/// the first strip that differs from the first one.
fn common_len<'a>(mut strips: impl Iterator<Item = &'a [u8]>) -> Result<Option<usize>, EcError> {
    let Some(first) = strips.next() else {
        return Ok(None);
    };
    let expected = first.len();
    match strips.find(|s| s.len() != expected) {
        Some(bad) => Err(EcError::BadLength {
            expected,
            got: bad.len(),
        }),
        None => Ok(Some(expected)),
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
