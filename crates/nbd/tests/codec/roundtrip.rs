//! Proptest round trips: every message decodes to what was encoded, also when the bytes
//! arrive split at arbitrary points.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sd_nbd::codec::{
    ClientFlags, CmdFlags, CmdType, Cookie, ExportNameReply, Greeting, HandshakeFlags, NbdOption,
    OptionCode, OptionReply, RawOption, Reply, ReplyDecoder, RequestDecoder, RequestFrame,
    RequestHeader, TransmissionFlags, decode_client_flags, encode_client_flags, encode_request,
};

use super::strategy::{bytes_up_to, feed, nbd_option, option_reply, reply, request};

proptest! {
    #[test]
    fn greeting_and_client_flags(flags in any::<u16>(), client in any::<u32>()) {
        let g = Greeting { flags: HandshakeFlags(flags) };
        let mut buf = BytesMut::new();
        g.encode(&mut buf);
        encode_client_flags(ClientFlags(client), &mut buf);
        prop_assert_eq!(Greeting::decode(&mut buf), Ok(Some(g)));
        prop_assert_eq!(decode_client_flags(&mut buf), Ok(Some(ClientFlags(client))));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn raw_option(code in any::<u32>(), data in bytes_up_to(2000), cuts in proptest::collection::vec(1usize..40, 1..5)) {
        let raw = RawOption { code: OptionCode::from_u32(code), data };
        let mut wire = BytesMut::new();
        raw.encode(&mut wire);
        raw.encode(&mut wire);
        let got = feed(&wire, &cuts, |b| RawOption::decode(b).expect("valid"));
        prop_assert_eq!(got, vec![raw.clone(), raw]);
    }

    #[test]
    fn option(opt in nbd_option()) {
        let mut wire = BytesMut::new();
        opt.to_raw().encode(&mut wire);
        let raw = RawOption::decode(&mut wire).expect("valid").expect("complete");
        prop_assert_eq!(NbdOption::parse(&raw), Ok(opt));
    }

    #[test]
    fn option_reply_roundtrip(replies in proptest::collection::vec(option_reply(), 1..4), cuts in proptest::collection::vec(1usize..40, 1..5)) {
        let mut wire = BytesMut::new();
        for r in &replies {
            r.encode(&mut wire);
        }
        let got = feed(&wire, &cuts, |b| OptionReply::decode(b).expect("valid"));
        prop_assert_eq!(got, replies);
    }

    #[test]
    fn export_name_reply(size in any::<u64>(), flags in any::<u16>(), no_zeroes in any::<bool>()) {
        let r = ExportNameReply { size, flags: TransmissionFlags(flags), no_zeroes };
        let mut wire = BytesMut::new();
        r.encode(&mut wire);
        prop_assert_eq!(wire.len(), if no_zeroes { 10 } else { 134 });
        prop_assert_eq!(ExportNameReply::decode(&mut wire, no_zeroes), Ok(Some(r)));
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn requests(reqs in proptest::collection::vec(request(), 1..6), cuts in proptest::collection::vec(1usize..64, 1..5)) {
        let mut wire = BytesMut::new();
        for (h, data) in &reqs {
            encode_request(h, data, &mut wire);
        }
        let mut dec = RequestDecoder::new(1 << 20);
        let got = feed(&wire, &cuts, |b| dec.decode(b).expect("valid"));
        let want: Vec<RequestFrame> = reqs
            .into_iter()
            .map(|(header, payload)| RequestFrame::Request { header, payload })
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn replies(replies in proptest::collection::vec(reply(), 1..6), cuts in proptest::collection::vec(1usize..64, 1..5)) {
        let mut wire = BytesMut::new();
        for r in &replies {
            r.encode(&mut wire);
        }
        // The client knows how much data each simple reply carries: look it up by cookie
        // (the first matching reply; cookies from `any::<u64>()` do not collide in practice).
        let lens: Vec<(Cookie, u32)> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Simple { cookie, data, .. } => Some((*cookie, u32::try_from(data.len()).expect("small"))),
                Reply::Structured(_) => None,
            })
            .collect();
        let dec = ReplyDecoder::new(1 << 20);
        let got = feed(&wire, &cuts, |b| {
            dec.decode(b, |c| lens.iter().find(|(k, _)| *k == c).map_or(0, |(_, n)| *n)).expect("valid")
        });
        prop_assert_eq!(got, replies);
    }

    #[test]
    fn oversized_write_is_skipped(extra in 1u32..5000, cuts in proptest::collection::vec(1usize..2000, 1..5)) {
        let max = 1000;
        let big = RequestHeader { flags: CmdFlags::NONE, ty: CmdType::Write, cookie: Cookie(1), offset: 0, length: max + extra };
        let small = RequestHeader { flags: CmdFlags::NONE, ty: CmdType::Read, cookie: Cookie(2), offset: 0, length: 1 };
        let mut wire = BytesMut::new();
        encode_request(&big, &vec![0x5a; usize::try_from(max + extra).expect("small")], &mut wire);
        encode_request(&small, &[], &mut wire);
        let mut dec = RequestDecoder::new(max);
        let got = feed(&wire, &cuts, |b| dec.decode(b).expect("valid"));
        prop_assert_eq!(got, vec![
            RequestFrame::Oversized { header: big },
            RequestFrame::Request { header: small, payload: Bytes::new() },
        ]);
    }
}
