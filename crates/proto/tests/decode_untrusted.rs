//! Decoders fed untrusted bytes: they never panic, report truncation as `Err(Truncated)` or
//! `Ok(None)`, cap payloads before buffering them, and frame a stream the same way however
//! it is chunked.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sd_proto::cluster::{ClusterInfo, EpochLogRecord, EpochMembers, SheepdogConfig};
use sd_proto::codec::{encode_request, encode_response};
use sd_proto::inode::{
    Inode, InodeHeader, SD_INODE_GREF_OFFSET, SD_INODE_HEADER_SIZE, SD_INODE_SIZE,
};
use sd_proto::node::{NodeId, SD_NODE_SIZE, SdNode};
use sd_proto::oid_list::{OID_SIZE, OidList};
use sd_proto::peer_copy::{PeerCopy, VERSION_SIZE};
use sd_proto::stat::{
    LOGLEVEL_SIZE, LogLevel, RECOVERY_STATE_SIZE, RecoveryState, WRITEBACK_STAT_SIZE, WritebackStat,
};
use sd_proto::store_list::StoreList;
use sd_proto::{
    DecodeError, Epoch, Flags, MAX_REQUEST_PAYLOAD, ObjArgs, Oid, Opcode, RequestDecoder,
    RequestFrame, RequestHeader, ResponseDecoder, ResponseHeader, SD_REQ_SIZE, SdResult,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Splits `bytes` into consecutive chunks whose sizes cycle through `sizes` (all ≥ 1).
fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}

/// Feeds `chunks` into a request decoder, draining frames after each chunk. Also checks
/// that the buffer never holds payload bytes of an oversized request.
fn feed_requests(dec: &mut RequestDecoder, chunks: &[&[u8]]) -> Vec<RequestFrame> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        if dec.is_skipping() {
            assert!(
                buf.is_empty(),
                "payload of an oversized request was buffered"
            );
        }
    }
    out
}

/// Feeds `chunks` into a response decoder until it needs more bytes or fails.
fn feed_responses(
    dec: &mut ResponseDecoder,
    chunks: &[&[u8]],
) -> (Vec<(ResponseHeader, Bytes)>, Option<DecodeError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn request_header() -> impl Strategy<Value = RequestHeader> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(proto_ver, op, flags, epoch, id, data_length, args)| RequestHeader {
                proto_ver,
                opcode: Opcode::from_u8(op),
                flags: Flags(flags),
                epoch: Epoch(epoch),
                id,
                data_length,
                args,
            },
        )
}

/// A request and the payload that goes with it on the wire.
#[derive(Debug, Clone)]
struct WireRequest {
    header: RequestHeader,
    payload: Vec<u8>,
}

impl WireRequest {
    fn encode_into(&self, out: &mut BytesMut) {
        encode_request(&self.header, &self.payload, out);
    }
    /// The frame a decoder refusing payloads above `max` must produce.
    fn expected(&self, max: usize) -> RequestFrame {
        if self.header.has_payload() && self.payload.len() > max {
            RequestFrame::Oversized {
                header: self.header,
            }
        } else {
            RequestFrame::Request {
                header: self.header,
                payload: Bytes::from(self.payload.clone()),
            }
        }
    }
}

/// A request with a consistent `data_length`: WRITE ⇒ payload of that length; otherwise
/// no payload and any reply-buffer size.
fn wire_request(max_payload: usize) -> impl Strategy<Value = WireRequest> {
    (
        request_header(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..=max_payload),
    )
        .prop_map(|(mut header, write, payload)| {
            if write {
                header.flags = Flags(header.flags.0 | Flags::WRITE.0);
                header.data_length = u32::try_from(payload.len()).unwrap();
                WireRequest { header, payload }
            } else {
                header.flags = Flags(header.flags.0 & !Flags::WRITE.0);
                WireRequest {
                    header,
                    payload: Vec::new(),
                }
            }
        })
}

fn encode_all(reqs: &[WireRequest]) -> BytesMut {
    let mut out = BytesMut::new();
    for r in reqs {
        r.encode_into(&mut out);
    }
    out
}

fn response(max_payload: usize) -> impl Strategy<Value = (ResponseHeader, Vec<u8>)> {
    (
        any::<[u8; 48]>(),
        prop::collection::vec(any::<u8>(), 0..=max_payload),
    )
        .prop_map(|(raw, payload)| {
            let mut h = ResponseHeader::decode(&raw).unwrap();
            h.data_length = u32::try_from(payload.len()).unwrap();
            (h, payload)
        })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..100, 1..12)
}

fn sd_node() -> impl Strategy<Value = SdNode> {
    any::<[u8; SD_NODE_SIZE]>().prop_map(|b| SdNode::decode(&b).unwrap())
}

// ---------------------------------------------------------------------------------------
// Frame decoders on arbitrary bytes
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes, any cap, any chunking: no panic, and the same frames as one-shot decoding.
    #[test]
    fn request_decoder_is_chunking_invariant_on_garbage(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        max in 0usize..256,
        sizes in chunk_sizes(),
    ) {
        let whole = feed_requests(&mut RequestDecoder::new(max), &[&bytes]);
        let parts = chunks(&bytes, &sizes);
        let chunked = feed_requests(&mut RequestDecoder::new(max), &parts);
        prop_assert_eq!(&chunked, &whole);
        let ones: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(&feed_requests(&mut RequestDecoder::new(max), &ones), &whole);
    }

    /// Garbage with a realistic cap: a random `data_length` with WRITE set rarely fits, so this
    /// exercises the Oversized skip with counts up to 4 GiB.
    #[test]
    fn request_decoder_never_panics_with_real_cap(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        sizes in chunk_sizes(),
    ) {
        let parts = chunks(&bytes, &sizes);
        let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
        let frames = feed_requests(&mut dec, &parts);
        prop_assert!(frames.len() <= bytes.len() / SD_REQ_SIZE);
    }

    #[test]
    fn response_decoder_is_chunking_invariant_on_garbage(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        max in 0usize..256,
        sizes in chunk_sizes(),
    ) {
        let whole = feed_responses(&mut ResponseDecoder::new(max), &[&bytes]);
        let parts = chunks(&bytes, &sizes);
        prop_assert_eq!(&feed_responses(&mut ResponseDecoder::new(max), &parts), &whole);
        let ones: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(&feed_responses(&mut ResponseDecoder::new(max), &ones), &whole);
    }

    /// Response headers announcing more than the cap fail before anything is consumed.
    #[test]
    fn response_over_cap_is_an_error_without_consuming(
        raw in any::<[u8; 48]>(),
        max in 0usize..4096,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = ResponseHeader::decode(&raw).unwrap();
        let len = u32::try_from(max).unwrap() + 1 + (h.data_length % 1000);
        h.data_length = len;
        let mut buf = BytesMut::from(&h.encode()[..]);
        buf.extend_from_slice(&tail);
        let before = buf.clone();
        let err = ResponseDecoder::new(max).decode(&mut buf).unwrap_err();
        prop_assert_eq!(err, DecodeError::PayloadTooLarge { len: usize::try_from(len).unwrap(), max });
        prop_assert_eq!(buf, before);
    }
}

// ---------------------------------------------------------------------------------------
// Valid streams split at random points
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_stream_splits_decode_to_the_same_requests(
        reqs in prop::collection::vec(wire_request(300), 0..12),
        sizes in chunk_sizes(),
    ) {
        let wire = encode_all(&reqs);
        let want: Vec<RequestFrame> = reqs.iter().map(|r| r.expected(MAX_REQUEST_PAYLOAD)).collect();
        let parts = chunks(&wire, &sizes);
        let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
        prop_assert_eq!(feed_requests(&mut dec, &parts), want);
        prop_assert!(!dec.is_skipping());
    }

    /// With a small cap some requests are oversized: each yields `Oversized`, its payload is
    /// skipped exactly, and the following requests decode unchanged, even one byte at a time.
    #[test]
    fn oversized_requests_are_skipped_exactly(
        reqs in prop::collection::vec(wire_request(200), 1..10),
        max in 0usize..100,
        sizes in chunk_sizes(),
    ) {
        let wire = encode_all(&reqs);
        let want: Vec<RequestFrame> = reqs.iter().map(|r| r.expected(max)).collect();
        let parts = chunks(&wire, &sizes);
        prop_assert_eq!(&feed_requests(&mut RequestDecoder::new(max), &parts), &want);
        let ones: Vec<&[u8]> = wire.chunks(1).collect();
        let mut dec = RequestDecoder::new(max);
        prop_assert_eq!(&feed_requests(&mut dec, &ones), &want);
        prop_assert!(!dec.is_skipping());
    }

    #[test]
    fn response_stream_splits_decode_to_the_same_responses(
        rsps in prop::collection::vec(response(300), 0..12),
        sizes in chunk_sizes(),
    ) {
        let mut wire = BytesMut::new();
        for (h, p) in &rsps {
            encode_response(h, p, &mut wire);
        }
        let want: Vec<(ResponseHeader, Bytes)> =
            rsps.iter().map(|(h, p)| (*h, Bytes::from(p.clone()))).collect();
        let parts = chunks(&wire, &sizes);
        let (got, err) = feed_responses(&mut ResponseDecoder::new(300), &parts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, want);
    }

    /// A strict prefix of a valid frame is `Ok(None)` and leaves the buffer untouched.
    #[test]
    fn truncated_frames_wait_for_more(
        req in wire_request(300),
        rsp in response(300),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = BytesMut::new();
        req.encode_into(&mut wire);
        let n = cut.index(wire.len());
        let mut buf = BytesMut::from(&wire[..n]);
        prop_assert_eq!(RequestDecoder::new(MAX_REQUEST_PAYLOAD).decode(&mut buf), Ok(None));
        prop_assert_eq!(&buf[..], &wire[..n]);

        let mut wire = BytesMut::new();
        encode_response(&rsp.0, &rsp.1, &mut wire);
        let n = cut.index(wire.len());
        let mut buf = BytesMut::from(&wire[..n]);
        prop_assert_eq!(ResponseDecoder::new(300).decode(&mut buf), Ok(None));
        prop_assert_eq!(&buf[..], &wire[..n]);
    }
}

// ---------------------------------------------------------------------------------------
// Oversized requests at the real cap
// ---------------------------------------------------------------------------------------

fn read_obj(id: u32) -> RequestHeader {
    let mut h = RequestHeader::new(Opcode::ReadObj).with_obj(ObjArgs {
        oid: Oid::new(0x807c_2b25_0000_0000),
        offset: 4096,
        ..ObjArgs::default()
    });
    h.id = id;
    h.data_length = 4096;
    h
}

/// An oversized WRITE whose payload is made of valid-looking request headers, so a skip
/// that is off by any amount would surface as spurious frames.
fn oversized_then_read(len: u32) -> (RequestHeader, BytesMut) {
    let mut big = RequestHeader::new(Opcode::WriteObj);
    big.flags = Flags::WRITE;
    big.id = 1;
    big.data_length = len;
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&big.encode());
    let decoy = read_obj(0xbad).encode();
    let len = usize::try_from(len).unwrap();
    while wire.len() < SD_REQ_SIZE + len {
        let room = SD_REQ_SIZE + len - wire.len();
        wire.extend_from_slice(&decoy[..room.min(decoy.len())]);
    }
    wire.extend_from_slice(&read_obj(2).encode());
    (big, wire)
}

#[test]
fn oversized_request_one_byte_at_a_time() {
    let len = u32::try_from(MAX_REQUEST_PAYLOAD).unwrap() + 1;
    let (big, wire) = oversized_then_read(len);
    let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for (i, b) in wire.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            frames.push((i, f));
        }
        assert!(dec.decode(&mut buf).unwrap().is_none());
        // Never more than one header's worth buffered; capacity never grows toward the payload.
        assert!(buf.len() < SD_REQ_SIZE);
        assert!(buf.capacity() < 64 << 10, "capacity {}", buf.capacity());
        let skip_end = SD_REQ_SIZE - 1 + usize::try_from(len).unwrap();
        let skipping_expected = i >= SD_REQ_SIZE - 1 && i < skip_end;
        assert_eq!(dec.is_skipping(), skipping_expected, "at byte {i}");
    }
    assert_eq!(
        frames,
        vec![
            (SD_REQ_SIZE - 1, RequestFrame::Oversized { header: big }),
            (
                wire.len() - 1,
                RequestFrame::Request {
                    header: read_obj(2),
                    payload: Bytes::new()
                }
            ),
        ]
    );
    assert!(buf.is_empty());
}

#[test]
fn oversized_request_in_one_buffer_and_in_large_chunks() {
    let len = u32::try_from(MAX_REQUEST_PAYLOAD).unwrap() + 4097;
    let (big, wire) = oversized_then_read(len);
    let want = vec![
        RequestFrame::Oversized { header: big },
        RequestFrame::Request {
            header: read_obj(2),
            payload: Bytes::new(),
        },
    ];
    for size in [wire.len(), 65_536, 4095, 47, 49] {
        let parts: Vec<&[u8]> = wire.chunks(size).collect();
        let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
        assert_eq!(feed_requests(&mut dec, &parts), want, "chunk size {size}");
        assert!(!dec.is_skipping());
    }
}

#[test]
fn oversized_is_reported_before_any_payload_arrives() {
    let mut h = RequestHeader::new(Opcode::CreateAndWriteObj);
    h.flags = Flags::WRITE;
    h.data_length = u32::MAX;
    let mut buf = BytesMut::from(&h.encode()[..]);
    let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(RequestFrame::Oversized { header: h }))
    );
    assert!(dec.is_skipping());
    assert!(buf.is_empty());
    assert!(buf.capacity() < 64 << 10);
    // Skipping 4 GiB: feed 1 MiB, still skipping, nothing buffered.
    buf.extend_from_slice(&vec![0u8; 1 << 20]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert!(buf.is_empty());
    assert!(dec.is_skipping());
}

#[test]
fn payload_at_the_cap_is_accepted() {
    let mut h = RequestHeader::new(Opcode::WriteObj);
    h.flags = Flags::WRITE;
    h.data_length = u32::try_from(MAX_REQUEST_PAYLOAD).unwrap();
    let payload: Vec<u8> = (0..MAX_REQUEST_PAYLOAD)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let mut wire = BytesMut::new();
    encode_request(&h, &payload, &mut wire);
    let mut buf = BytesMut::new();
    let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
    let mut got = None;
    for c in wire.chunks(100_000) {
        buf.extend_from_slice(c);
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            got = Some(f);
        }
    }
    assert_eq!(
        got,
        Some(RequestFrame::Request {
            header: h,
            payload: Bytes::from(payload)
        })
    );
}

#[test]
fn non_write_request_ignores_data_length() {
    // Without WRITE, data_length is the reply buffer size: nothing is read or skipped.
    let mut h = RequestHeader::new(Opcode::ReadVdis);
    h.data_length = u32::MAX;
    let mut buf = BytesMut::from(&h.encode()[..]);
    buf.extend_from_slice(&read_obj(3).encode());
    let mut dec = RequestDecoder::new(MAX_REQUEST_PAYLOAD);
    let frames = feed_requests(&mut dec, &[&buf.split()[..]]);
    assert_eq!(frames.len(), 2);
    assert!(!dec.is_skipping());
}

// ---------------------------------------------------------------------------------------
// Record decoders
// ---------------------------------------------------------------------------------------

/// Decodes `bytes` with every record decoder; where one succeeds, re-encoding and decoding
/// again must give the same value.
fn decode_everything(bytes: &[u8], n: usize, slots: usize) {
    let _ = RequestHeader::decode(bytes);
    let _ = ResponseHeader::decode(bytes);
    if let Ok(node) = SdNode::decode(bytes) {
        let mut b = Vec::new();
        node.encode_into(&mut b);
        assert_eq!(SdNode::decode(&b).unwrap(), node);
    }
    if let Ok(list) = SdNode::decode_list(bytes, n) {
        assert_eq!(list.len(), n);
        assert_eq!(
            SdNode::decode_list(&SdNode::encode_list(&list), n).unwrap(),
            list
        );
    }
    if let Ok(h) = InodeHeader::decode(bytes) {
        assert_eq!(InodeHeader::decode(&h.encode()).unwrap(), h);
    }
    if let Ok(c) = SheepdogConfig::decode(bytes) {
        assert_eq!(SheepdogConfig::decode(&c.encode()).unwrap(), c);
    }
    if let Ok(r) = EpochLogRecord::decode(bytes, slots) {
        assert_eq!(EpochLogRecord::decode(&r.encode(slots), slots).unwrap(), r);
    }
    if let Ok(ci) = ClusterInfo::decode(bytes) {
        assert_eq!(ClusterInfo::decode(&ci.encode()).unwrap(), ci);
    }
    if let Ok(st) = RecoveryState::decode(bytes) {
        assert_eq!(RecoveryState::decode(&st.encode()).unwrap(), st);
    }
    if let Ok(st) = WritebackStat::decode(bytes) {
        assert_eq!(WritebackStat::decode(&st.encode()).unwrap(), st);
    }
    if let Ok(l) = LogLevel::decode(bytes) {
        assert_eq!(LogLevel::decode(&l.encode()).unwrap(), l);
    }
    if let Ok(l) = OidList::decode(bytes) {
        assert_eq!(OidList::decode(&l.encode()).unwrap(), l);
    }
    if let Ok(e) = EpochMembers::decode(bytes) {
        assert_eq!(EpochMembers::decode(&e.encode()).unwrap(), e);
    }
    if let Ok(c) = PeerCopy::decode(Bytes::copy_from_slice(bytes)) {
        assert_eq!(PeerCopy::decode(c.encode().into()).unwrap(), c);
    }
    let l = StoreList::decode(bytes);
    assert_eq!(StoreList::decode(&l.encode()), l);
    assert!(Inode::decode(bytes).is_err() || bytes.len() >= SD_INODE_GREF_OFFSET);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn record_decoders_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..1200),
        n in prop_oneof![0usize..16, any::<usize>()],
        slots in prop_oneof![0usize..16, any::<usize>()],
    ) {
        decode_everything(&bytes, n, slots);
    }

    /// Garbage that gets past the count checks: a random 48-byte prefix with a small count.
    #[test]
    fn record_decoders_on_plausible_counts(
        head in any::<[u8; 48]>(),
        count in 0u8..6,
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut ci = head.to_vec();
        ci[2..4].copy_from_slice(&i16::from(count).to_le_bytes());
        ci.extend_from_slice(&body);
        decode_everything(&ci, usize::from(count), usize::from(count));
        let mut el = head.to_vec();
        el[20..24].copy_from_slice(&u32::from(count).to_le_bytes());
        el.extend_from_slice(&body);
        decode_everything(&el, usize::from(count), usize::from(count) + 1);
    }
}

proptest! {
    /// STAT_RECOVERY, STAT_WRITEBACK, GET_LOGLEVEL, GET_EPOCH, GET_OBJ_LIST, FETCH_PEER and
    /// GET_STORE_LIST answers: any bytes decode or fail without a panic; a short answer is
    /// `Truncated` (a cut object list or node `BadLength`), a long fixed-size one is read
    /// from its first bytes; a FETCH_PEER answer's data is the rest after the version; any
    /// text is a store list (its names hold no space or NUL).
    #[test]
    fn stat_answer_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..260)) {
        match RecoveryState::decode(&bytes) {
            Ok(st) => {
                prop_assert!(bytes.len() >= RECOVERY_STATE_SIZE);
                let enc = st.encode();
                prop_assert_eq!(enc[0], u8::from(bytes[0] != 0));
                prop_assert_eq!(&enc[4..], &bytes[4..RECOVERY_STATE_SIZE]);
            }
            Err(e) => {
                prop_assert!(bytes.len() < RECOVERY_STATE_SIZE);
                prop_assert_eq!(e, DecodeError::Truncated);
            }
        }
        match WritebackStat::decode(&bytes) {
            Ok(st) => prop_assert_eq!(&st.encode()[..], &bytes[..WRITEBACK_STAT_SIZE]),
            Err(e) => {
                prop_assert!(bytes.len() < WRITEBACK_STAT_SIZE);
                prop_assert_eq!(e, DecodeError::Truncated);
            }
        }
        match LogLevel::decode(&bytes) {
            Ok(l) => prop_assert_eq!(&l.encode()[..], &bytes[..LOGLEVEL_SIZE]),
            Err(e) => {
                prop_assert!(bytes.len() < LOGLEVEL_SIZE);
                prop_assert_eq!(e, DecodeError::Truncated);
            }
        }
        match EpochMembers::decode(&bytes) {
            Ok(e) => {
                prop_assert_eq!(EpochMembers::size(e.nodes.len()), bytes.len());
                prop_assert_eq!(EpochMembers::decode(&e.encode()).unwrap(), e);
            }
            Err(DecodeError::Truncated) => prop_assert!(bytes.len() < 8),
            Err(DecodeError::BadLength { len, .. }) => {
                prop_assert_eq!(len, bytes.len());
                prop_assert!(!(len - 8).is_multiple_of(SD_NODE_SIZE));
            }
            Err(e) => prop_assert!(false, "{:?}", e),
        }
        match PeerCopy::decode(Bytes::copy_from_slice(&bytes)) {
            Ok(c) => {
                prop_assert_eq!(&c.version.to_le_bytes()[..], &bytes[..VERSION_SIZE]);
                prop_assert_eq!(&c.data[..], &bytes[VERSION_SIZE..]);
            }
            Err(e) => {
                prop_assert!(bytes.len() < VERSION_SIZE);
                prop_assert_eq!(e, DecodeError::Truncated);
            }
        }
        let stores = StoreList::decode(&bytes);
        for n in &stores.names {
            prop_assert!(!n.is_empty() && !n.contains(&b' ') && !n.contains(&0));
        }
        prop_assert!(stores.encode().len() <= bytes.len() + 2);
        match OidList::decode(&bytes) {
            Ok(l) => prop_assert_eq!(l.encode(), bytes),
            Err(e) => {
                prop_assert!(!bytes.len().is_multiple_of(OID_SIZE));
                let bad_length = matches!(e, DecodeError::BadLength { .. });
                prop_assert!(bad_length, "{:?}", e);
            }
        }
    }
}

/// Every strict prefix of `enc` fails with `Truncated`.
fn all_prefixes_truncated<T: std::fmt::Debug>(
    enc: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    for n in 0..enc.len() {
        assert_eq!(
            decode(&enc[..n]).unwrap_err(),
            DecodeError::Truncated,
            "prefix {n}"
        );
    }
}

proptest! {
    #[test]
    fn truncated_records_are_errors(
        node in sd_node(),
        nodes in prop::collection::vec(sd_node(), 0..4),
        extra in 0usize..3,
        hdr in any::<[u8; 48]>(),
    ) {
        all_prefixes_truncated(&hdr, RequestHeader::decode);
        all_prefixes_truncated(&hdr, ResponseHeader::decode);

        let mut b = Vec::new();
        node.encode_into(&mut b);
        all_prefixes_truncated(&b, SdNode::decode);

        let list = SdNode::encode_list(&nodes);
        all_prefixes_truncated(&list, |b| SdNode::decode_list(b, nodes.len()));

        let cfg = SheepdogConfig { store: b"plain".to_vec(), ..SheepdogConfig::default() };
        all_prefixes_truncated(&cfg.encode(), SheepdogConfig::decode);

        all_prefixes_truncated(&RecoveryState::default().encode(), RecoveryState::decode);
        all_prefixes_truncated(&WritebackStat::default().encode(), WritebackStat::decode);
        all_prefixes_truncated(&LogLevel::default().encode(), LogLevel::decode);

        let rec = EpochLogRecord { nodes: nodes.clone(), ..EpochLogRecord::default() };
        let slots = nodes.len() + extra;
        all_prefixes_truncated(&rec.encode(slots), |b| EpochLogRecord::decode(b, slots));

        // ClusterInfo needs the 48-byte head and nr_nodes records; the rest of the
        // 491 568 bytes may be absent.
        let ci = ClusterInfo { nodes: nodes.clone(), ..ClusterInfo::default() };
        let enc = ci.encode();
        let need = 48 + nodes.len() * SD_NODE_SIZE;
        all_prefixes_truncated(&enc[..need], ClusterInfo::decode);
        prop_assert_eq!(ClusterInfo::decode(&enc[..need]).unwrap(), ci);
    }
}

#[test]
fn truncated_inode_header_and_inode() {
    let h = InodeHeader {
        name: b"vm1".to_vec(),
        ..InodeHeader::default()
    };
    let enc = h.encode();
    // Fields end at 572; the remaining header bytes are unused.
    all_prefixes_truncated(&enc[..572], InodeHeader::decode);
    for n in [572, 1000, SD_INODE_HEADER_SIZE] {
        assert_eq!(InodeHeader::decode(&enc[..n]).unwrap(), h);
    }

    let mut inode = Inode::new(h);
    inode.data_vdi_id[9] = 0xc59887;
    let full = inode.encode();
    for n in [
        0,
        100,
        571,
        572,
        SD_INODE_HEADER_SIZE,
        SD_INODE_GREF_OFFSET - 1,
    ] {
        assert_eq!(
            Inode::decode(&full[..n]).unwrap_err(),
            DecodeError::Truncated,
            "{n}"
        );
    }
    assert!(Inode::decode(&full).unwrap() == inode);
    // Exactly the old (≤ v0.8) size decodes with gref[] zeroed; a v1.0 inode cut inside
    // gref[] is truncated.
    let mut with_gref = inode.clone();
    with_gref.gref[0].count = 5;
    let enc = with_gref.encode();
    assert_eq!(
        Inode::decode(&enc[..SD_INODE_SIZE - 1]).unwrap_err(),
        DecodeError::Truncated
    );
    let old = Inode::decode(&enc[..SD_INODE_GREF_OFFSET]).unwrap();
    assert_eq!(old.gref[0].count, 0);
    assert!(old.data_vdi_id == inode.data_vdi_id);
}

#[test]
fn node_list_count_overflow_is_an_error() {
    let b = vec![0u8; 160];
    assert_eq!(
        SdNode::decode_list(&b, usize::MAX).unwrap_err(),
        DecodeError::Truncated
    );
    assert_eq!(
        SdNode::decode_list(&b, usize::MAX / SD_NODE_SIZE + 1).unwrap_err(),
        DecodeError::Truncated
    );
    assert_eq!(SdNode::decode_list(&b, 2).unwrap().len(), 2);
}

#[test]
fn epoch_log_huge_slot_count_is_an_error() {
    let rec = EpochLogRecord {
        nodes: vec![SdNode {
            nid: NodeId::from_socket("127.0.0.1:7000".parse().unwrap()),
            ..SdNode::default()
        }],
        ..EpochLogRecord::default()
    };
    let enc = rec.encode(1);
    for slots in [
        2,
        usize::MAX / SD_NODE_SIZE,
        usize::MAX / SD_NODE_SIZE + 1,
        usize::MAX,
    ] {
        assert!(
            EpochLogRecord::decode(&enc, slots).is_err(),
            "slots {slots}"
        );
    }
    // nr_nodes larger than the slot count is a BadLength, not a panic.
    assert!(matches!(
        EpochLogRecord::decode(&enc, 0),
        Err(DecodeError::BadLength { .. })
    ));
}

#[test]
fn error_results_survive_framing() {
    let req = read_obj(11);
    let rsp = ResponseHeader::reply_to(&req, Epoch(9), SdResult::NoObj);
    let mut wire = BytesMut::new();
    encode_response(&rsp, &[], &mut wire);
    let (h, p) = ResponseDecoder::new(0).decode(&mut wire).unwrap().unwrap();
    assert_eq!(h.result, SdResult::NoObj);
    assert_eq!(h.id, 11);
    assert!(p.is_empty());
}
