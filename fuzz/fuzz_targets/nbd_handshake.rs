//! Fuzz target: the server side of NBD option haggling over arbitrary bytes, fed in
//! chunks: the client flags, then option requests (`RawOption::decode`), each parsed by
//! `NbdOption::parse`. Checks that nothing panics, that framing does not depend on the
//! chunking, that no option payload above the cap is buffered, and that parsed options
//! re-encode to the data that was sent.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sd_fuzz::chunked::{StreamDecoder, same_however_chunked};
use sd_fuzz::nbd::parse_and_check;
use sd_nbd::codec::{
    ClientFlags, DecodeError, MAX_OPTION_PAYLOAD, NbdOption, OptionError, RawOption,
    decode_client_flags, encode_client_flags,
};

/// Option request header: magic, option, length.
const OPTION_HEADER_LEN: usize = 16;

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the chunk sizes; the rest is what the client sends after the greeting.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    same_however_chunked(Handshake::default, stream, seed, OPTION_HEADER_LEN);
});

/// What the server takes off the wire during the handshake.
#[derive(Debug, PartialEq)]
enum Frame {
    Flags(ClientFlags),
    Option(RawOption, Result<NbdOption, OptionError>),
}

/// The server's handshake reader: client flags first, then options.
#[derive(Default)]
struct Handshake {
    flags_seen: bool,
}

impl StreamDecoder for Handshake {
    type Frame = Frame;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if !self.flags_seen {
            let flags = decode_client_flags(buf)?;
            self.flags_seen = flags.is_some();
            return Ok(flags.map(Frame::Flags));
        }
        let Some(raw) = RawOption::decode(buf)? else {
            return Ok(None);
        };
        let parsed = parse_and_check(&raw);
        Ok(Some(Frame::Option(raw, parsed)))
    }

    fn check_frame(&self, frame: &Frame) {
        let mut wire = BytesMut::new();
        match frame {
            Frame::Flags(flags) => {
                encode_client_flags(*flags, &mut wire);
                assert_eq!(decode_client_flags(&mut wire), Ok(Some(*flags)));
            }
            Frame::Option(raw, _) => {
                assert!(raw.data.len() <= MAX_OPTION_PAYLOAD as usize);
                raw.encode(&mut wire);
                assert_eq!(
                    RawOption::decode(&mut wire).as_ref(),
                    Ok(&Some(raw.clone()))
                );
            }
        }
        assert!(wire.is_empty());
    }

    fn check_error(&self, e: &DecodeError, before: &[u8], after: &[u8]) {
        assert!(
            matches!(
                e,
                DecodeError::BadMagic { .. } | DecodeError::TooLarge { .. }
            ),
            "{e:?}"
        );
        assert_eq!(before, after, "an error consumed bytes");
    }

    fn check_drained(&self, buf: &BytesMut) {
        // Less than one complete option is left.
        assert!(buf.len() < OPTION_HEADER_LEN + MAX_OPTION_PAYLOAD as usize);
    }
}
