//! Fuzz target: the client side of the NBD handshake over arbitrary bytes, fed in chunks:
//! the server greeting (optional), then either option replies (`OptionReply::decode`) or
//! the reply to `NBD_OPT_EXPORT_NAME` (short or padded). Checks that nothing panics, that
//! framing does not depend on the chunking, and that what decodes re-encodes to an equal
//! message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sd_fuzz::chunked::{StreamDecoder, same_however_chunked};
use sd_nbd::codec::{
    DecodeError, ExportNameReply, Greeting, Info, MAX_NAME_LEN, MAX_OPTION_PAYLOAD, OptionReply,
    OptionReplyBody,
};

/// Option reply header: magic, option, reply type, length.
const REPLY_HEADER_LEN: usize = 20;

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the chunk sizes, byte 1 what the stream holds (bits 0-1: option
    // replies or the short or padded EXPORT_NAME reply; bit 2: whether the greeting comes
    // first, so the fuzzer need not find its two magics to reach the replies); the rest
    // is what the server sends.
    let Some((&[seed, mode], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let after = match mode & 3 {
        1 => State::ExportName { no_zeroes: true },
        2 => State::ExportName { no_zeroes: false },
        _ => State::Options,
    };
    let state = if mode & 4 == 0 {
        State::Greeting
    } else {
        after
    };
    same_however_chunked(
        || ClientHandshake { state, after },
        stream,
        seed,
        REPLY_HEADER_LEN,
    );
});

/// What the client reads next.
#[derive(Clone, Copy, PartialEq)]
enum State {
    /// The server greeting.
    Greeting,
    /// Replies to the options it sends.
    Options,
    /// The answer to `NBD_OPT_EXPORT_NAME`: export size and flags.
    ExportName { no_zeroes: bool },
    /// Transmission, which this target does not decode.
    Done,
}

#[derive(Debug, PartialEq)]
enum Frame {
    Greeting(Greeting),
    Reply(OptionReply),
    ExportName(ExportNameReply),
}

struct ClientHandshake {
    state: State,
    /// The state after the greeting.
    after: State,
}

impl StreamDecoder for ClientHandshake {
    type Frame = Frame;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match self.state {
            State::Greeting => {
                let greeting = Greeting::decode(buf)?;
                if greeting.is_some() {
                    self.state = self.after;
                }
                Ok(greeting.map(Frame::Greeting))
            }
            State::Options => Ok(OptionReply::decode(buf)?.map(Frame::Reply)),
            State::ExportName { no_zeroes } => {
                let reply = ExportNameReply::decode(buf, no_zeroes)?;
                if reply.is_some() {
                    self.state = State::Done;
                }
                Ok(reply.map(Frame::ExportName))
            }
            State::Done => Ok(None),
        }
    }

    fn check_frame(&self, frame: &Frame) {
        let mut wire = BytesMut::new();
        match frame {
            Frame::Greeting(g) => {
                g.encode(&mut wire);
                assert_eq!(Greeting::decode(&mut wire), Ok(Some(*g)));
            }
            Frame::ExportName(r) => {
                r.encode(&mut wire);
                assert_eq!(
                    ExportNameReply::decode(&mut wire, r.no_zeroes),
                    Ok(Some(*r))
                );
            }
            Frame::Reply(r) => {
                r.encode(&mut wire);
                let again = OptionReply::decode(&mut wire)
                    .expect("a re-encoded reply decodes")
                    .expect("a re-encoded reply is complete");
                if truncated_by_encode(r) {
                    // Over-long human-readable strings are cut when encoded; after that the
                    // message is stable.
                    let mut wire2 = BytesMut::new();
                    again.encode(&mut wire2);
                    assert_eq!(OptionReply::decode(&mut wire2), Ok(Some(again)));
                } else {
                    assert_eq!(&again, r);
                }
            }
        }
        assert!(wire.is_empty());
    }

    fn check_error(&self, e: &DecodeError, before: &[u8], after: &[u8]) {
        if let DecodeError::TooLarge { len, .. } = e {
            assert!(*len > u64::from(MAX_OPTION_PAYLOAD));
        }
        assert_eq!(before, after, "an error consumed bytes");
    }

    fn check_drained(&self, buf: &BytesMut) {
        if self.state != State::Done {
            // Less than one complete message is left.
            assert!(buf.len() < REPLY_HEADER_LEN + MAX_OPTION_PAYLOAD as usize);
        }
    }
}

/// Whether encoding `r` cuts a string to [`MAX_NAME_LEN`] bytes.
fn truncated_by_encode(r: &OptionReply) -> bool {
    match &r.body {
        OptionReplyBody::Error { message, .. } => message.len() > MAX_NAME_LEN,
        OptionReplyBody::Info(Info::Name(s) | Info::Description(s)) => s.len() > MAX_NAME_LEN,
        _ => false,
    }
}
