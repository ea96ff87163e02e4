//! Every message the codec can encode as one [`Msg`], with the [`Decoder`] its receiver
//! would use, so the untrusted-input properties treat all decoders alike; and
//! [`check_outcome`], what a decoder may do with arbitrary bytes.

use bytes::BytesMut;
use proptest::prelude::*;
use sd_nbd::codec::{
    ClientFlags, Cookie, DecodeError, ExportNameReply, Greeting, HandshakeFlags, IHAVEOPT,
    MAX_BLOCK, MAX_ERROR_MESSAGE, MAX_NAME_LEN, NBDMAGIC, OPTION_REPLY_MAGIC, OptionCode,
    OptionReply, REQUEST_MAGIC, RawOption, Reply, ReplyDecoder, RequestDecoder, RequestFrame,
    SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, TransmissionFlags, decode_client_flags,
    encode_client_flags, encode_request,
};

use super::strategy::{bytes_up_to, option_reply, reply, request};

/// One message of either phase, either direction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Msg {
    Greeting(Greeting),
    ClientFlags(ClientFlags),
    Option(RawOption),
    OptionReply(OptionReply),
    ExportName(ExportNameReply),
    Request(RequestFrame),
    Reply(Reply),
}

/// A decoder configured as the receiver of a message configures it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decoder {
    Greeting,
    ClientFlags,
    Option,
    OptionReply,
    ExportName {
        no_zeroes: bool,
    },
    Request {
        max: u32,
    },
    /// A client expecting `read_len` bytes of data in each successful simple reply.
    Reply {
        max: u32,
        read_len: u32,
    },
}

impl Msg {
    /// The bytes on the wire.
    pub(crate) fn encode(&self) -> BytesMut {
        let mut out = BytesMut::new();
        match self {
            Msg::Greeting(g) => g.encode(&mut out),
            Msg::ClientFlags(f) => encode_client_flags(*f, &mut out),
            Msg::Option(o) => o.encode(&mut out),
            Msg::OptionReply(r) => r.encode(&mut out),
            Msg::ExportName(r) => r.encode(&mut out),
            Msg::Request(RequestFrame::Request { header, payload }) => {
                encode_request(header, payload, &mut out)
            }
            Msg::Request(RequestFrame::Oversized { header }) => header.encode(&mut out),
            Msg::Reply(r) => r.encode(&mut out),
        }
        out
    }

    /// The decoder that takes this message off the wire.
    pub(crate) fn decoder(&self) -> Decoder {
        match self {
            Msg::Greeting(_) => Decoder::Greeting,
            Msg::ClientFlags(_) => Decoder::ClientFlags,
            Msg::Option(_) => Decoder::Option,
            Msg::OptionReply(_) => Decoder::OptionReply,
            Msg::ExportName(r) => Decoder::ExportName {
                no_zeroes: r.no_zeroes,
            },
            Msg::Request(_) => Decoder::Request { max: MAX_BLOCK },
            Msg::Reply(r) => Decoder::Reply {
                max: MAX_BLOCK + 8,
                read_len: u32::try_from(r.bulk().len()).expect("small"),
            },
        }
    }

    /// Whether encoding cuts a human-readable string, so that a decoded message need not
    /// come back unchanged from an encode → decode round trip.
    fn truncated_by_encode(&self) -> bool {
        use sd_nbd::codec::{ChunkBody, Info, OptionReplyBody, StructuredChunk};
        match self {
            Msg::OptionReply(OptionReply {
                body: OptionReplyBody::Error { message: s, .. },
                ..
            })
            | Msg::OptionReply(OptionReply {
                body: OptionReplyBody::Info(Info::Name(s) | Info::Description(s)),
                ..
            }) => s.len() > MAX_NAME_LEN,
            Msg::Reply(Reply::Structured(StructuredChunk {
                body: ChunkBody::Error { message, .. } | ChunkBody::ErrorOffset { message, .. },
                ..
            })) => message.len() > MAX_ERROR_MESSAGE,
            _ => false,
        }
    }
}

impl Decoder {
    /// Takes one message off the front of `buf` with a fresh decoder.
    pub(crate) fn decode(self, buf: &mut BytesMut) -> Result<Option<Msg>, DecodeError> {
        Ok(match self {
            Decoder::Greeting => Greeting::decode(buf)?.map(Msg::Greeting),
            Decoder::ClientFlags => decode_client_flags(buf)?.map(Msg::ClientFlags),
            Decoder::Option => RawOption::decode(buf)?.map(Msg::Option),
            Decoder::OptionReply => OptionReply::decode(buf)?.map(Msg::OptionReply),
            Decoder::ExportName { no_zeroes } => {
                ExportNameReply::decode(buf, no_zeroes)?.map(Msg::ExportName)
            }
            Decoder::Request { max } => RequestDecoder::new(max).decode(buf)?.map(Msg::Request),
            Decoder::Reply { max, read_len } => ReplyDecoder::new(max)
                .decode(buf, |_: Cookie| read_len)?
                .map(Msg::Reply),
        })
    }

    /// The magic number(s) a message for this decoder starts with (nothing for the
    /// fixed-size messages without one); `simple` picks the reply kind.
    pub(crate) fn magic(self, simple: bool) -> Vec<u8> {
        match self {
            Decoder::Greeting => [NBDMAGIC.to_be_bytes(), IHAVEOPT.to_be_bytes()].concat(),
            Decoder::Option => IHAVEOPT.to_be_bytes().to_vec(),
            Decoder::OptionReply => OPTION_REPLY_MAGIC.to_be_bytes().to_vec(),
            Decoder::Request { .. } => REQUEST_MAGIC.to_be_bytes().to_vec(),
            Decoder::Reply { .. } if simple => SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec(),
            Decoder::Reply { .. } => STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec(),
            Decoder::ClientFlags | Decoder::ExportName { .. } => Vec::new(),
        }
    }

    /// Whether `e` is an error this decoder is documented to return.
    fn may_fail_with(self, e: &DecodeError) -> bool {
        match self {
            // Fixed-size fields only: nothing to refuse.
            Decoder::ClientFlags | Decoder::ExportName { .. } => false,
            Decoder::Greeting | Decoder::Request { .. } => {
                matches!(e, DecodeError::BadMagic { .. })
            }
            Decoder::Option => matches!(
                e,
                DecodeError::BadMagic { .. } | DecodeError::TooLarge { .. }
            ),
            Decoder::OptionReply => true,
            Decoder::Reply { .. } => !matches!(e, DecodeError::NotUtf8 { .. }),
        }
    }

    /// Whether an error leaves the buffer as it was. Only the reply decoder consumes a
    /// structured chunk before finding its body malformed (the connection ends either way).
    fn error_consumes_nothing(self) -> bool {
        !matches!(self, Decoder::Reply { .. })
    }
}

/// Any message, each field arbitrary.
pub(crate) fn message() -> impl Strategy<Value = Msg> {
    prop_oneof![
        any::<u16>().prop_map(|f| Msg::Greeting(Greeting {
            flags: HandshakeFlags(f)
        })),
        any::<u32>().prop_map(|f| Msg::ClientFlags(ClientFlags(f))),
        (any::<u32>(), bytes_up_to(300)).prop_map(|(code, data)| Msg::Option(RawOption {
            code: OptionCode::from_u32(code),
            data
        })),
        option_reply().prop_map(Msg::OptionReply),
        (any::<u64>(), any::<u16>(), any::<bool>()).prop_map(|(size, f, no_zeroes)| {
            Msg::ExportName(ExportNameReply {
                size,
                flags: TransmissionFlags(f),
                no_zeroes,
            })
        }),
        request()
            .prop_map(|(header, payload)| Msg::Request(RequestFrame::Request { header, payload })),
        reply().prop_map(Msg::Reply),
    ]
}

/// Any decoder, with caps small enough that their limits are reached by short inputs.
pub(crate) fn decoder() -> impl Strategy<Value = Decoder> {
    prop_oneof![
        Just(Decoder::Greeting),
        Just(Decoder::ClientFlags),
        Just(Decoder::Option),
        Just(Decoder::OptionReply),
        any::<bool>().prop_map(|no_zeroes| Decoder::ExportName { no_zeroes }),
        prop_oneof![Just(0u32), Just(16), Just(MAX_BLOCK)].prop_map(|max| Decoder::Request { max }),
        (prop_oneof![Just(0u32), Just(16), Just(MAX_BLOCK)], 0u32..64)
            .prop_map(|(max, read_len)| Decoder::Reply { max, read_len }),
    ]
}

/// Runs `dec` once on `input` and checks that the outcome is clean:
/// - `Ok(None)` consumed nothing;
/// - `Ok(Some(m))` consumed a prefix, leaving the rest as it was, and `m` re-encodes to
///   bytes that decode to `m` again;
/// - an error is one the decoder documents, and (but for the reply decoder) consumed
///   nothing.
///
/// Returns the outcome.
pub(crate) fn check_outcome(dec: Decoder, input: &[u8]) -> Result<Option<Msg>, DecodeError> {
    let mut buf = BytesMut::from(input);
    let got = dec.decode(&mut buf);
    match &got {
        Ok(None) => assert_eq!(&buf[..], input, "Ok(None) consumed bytes"),
        Ok(Some(m)) => {
            let used = input.len() - buf.len();
            assert!(used > 0, "a message from no bytes");
            assert_eq!(&buf[..], &input[used..], "the rest was changed");
            let mut wire = m.encode();
            let again = dec.decode(&mut wire);
            assert!(wire.is_empty(), "{m:?} re-encodes to more than one message");
            if !m.truncated_by_encode() {
                assert_eq!(again.as_ref(), Ok(&Some(m.clone())), "re-encoded {m:?}");
            }
        }
        Err(e) => {
            assert!(dec.may_fail_with(e), "{dec:?} returned {e:?}");
            if dec.error_consumes_nothing() {
                assert_eq!(&buf[..], input, "an error consumed bytes");
            }
        }
    }
    got
}
