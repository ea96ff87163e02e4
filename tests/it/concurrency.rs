//! Many clients with many requests in flight each: every request gets exactly one answer,
//! matched by its id, with the right bytes. Answers may arrive out of order.

use std::collections::BTreeMap;

use sd_proto::{Oid, SdResult};
use sd_testkit::{assert_same_bytes, pattern, req};

use crate::common::{Fixture, create_vdi};

const CLIENTS: u32 = 16;
const REQUESTS: u32 = 50;
/// Each client's object starts with this much pre-written data that its reads target.
const PREFILL: u32 = 64 << 10;
const IO: u32 = 4096;

/// What one pipelined request expects back.
enum Expect {
    /// A READ_OBJ: these bytes.
    Read(Vec<u8>),
    /// A WRITE_OBJ: success (its bytes are read back afterwards).
    Write,
}

fn seed(client: u32) -> u64 {
    0xc0c0_0000 + u64::from(client)
}

#[test]
fn many_pipelined_clients_get_their_own_answers() {
    let mut fx = Fixture::new();
    let mut setup = fx.connect();
    let vid = create_vdi(&mut setup, "busy", 1 << 30);
    fx.objects.insert(vid.inode_oid());
    for client in 0..CLIENTS {
        let oid = vid.data_oid(client);
        setup
            .call_ok(
                &req::create_and_write_obj(oid, 0, PREFILL),
                &pattern(seed(client), 0, PREFILL as usize),
            )
            .unwrap();
        fx.objects.insert(oid);
    }

    let out_of_order: u32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let fx = &fx;
                s.spawn(move || run_client(fx, client, vid.data_oid(client)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!(
        "{out_of_order} of {} answers arrived out of order",
        CLIENTS * REQUESTS
    );
    fx.assert_healthy();
}

/// Pipelines [`REQUESTS`] requests from one thread while another reads the answers; returns
/// how many answers arrived after the answer to a later request.
fn run_client(fx: &Fixture, client: u32, oid: Oid) -> u32 {
    let mut tx = fx.connect();
    let mut rx = tx.try_clone().unwrap();
    let mut expect = BTreeMap::new();
    let mut requests = Vec::new();
    for i in 0..REQUESTS {
        let id = client * 1000 + i + 1;
        let (mut h, payload, e) = if i % 2 == 0 {
            let offset = u64::from(i * 1024 % (PREFILL - IO));
            let h = req::read_obj(oid, offset, IO);
            (
                h,
                vec![],
                Expect::Read(pattern(seed(client), offset, IO as usize)),
            )
        } else {
            let offset = u64::from(PREFILL + i * IO);
            let data = pattern(seed(client), offset, IO as usize);
            (req::write_obj(oid, offset, IO), data, Expect::Write)
        };
        h.id = id;
        expect.insert(id, (h, e));
        requests.push((h, payload));
    }

    let sender = std::thread::spawn(move || {
        for (h, payload) in &requests {
            tx.send(h, payload).unwrap();
        }
        tx
    });
    let mut answered = Vec::new();
    for _ in 0..REQUESTS {
        let rsp = rx.recv().unwrap();
        let id = rsp.header.id;
        let (h, e) = expect
            .remove(&id)
            .unwrap_or_else(|| panic!("client {client}: unexpected or repeated answer id {id}"));
        assert_eq!(
            rsp.header.opcode, h.opcode,
            "client {client} id {id}: opcode echo"
        );
        assert_eq!(
            rsp.result(),
            SdResult::Success,
            "client {client} id {id}: {:?}",
            h.opcode
        );
        match e {
            Expect::Read(bytes) => assert_same_bytes(&rsp.payload, &bytes, "pipelined read"),
            Expect::Write => assert!(rsp.payload.is_empty()),
        }
        answered.push(id);
    }
    let _tx = sender.join().unwrap();
    assert!(
        expect.is_empty(),
        "client {client}: unanswered {:?}",
        expect.keys()
    );
    // An answer is out of order when a later request was answered before it.
    let mut latest = 0;
    let overtaken = answered
        .iter()
        .filter(|&&id| {
            let late = id < latest;
            latest = latest.max(id);
            late
        })
        .count();

    // Every pipelined write landed where it was aimed.
    for i in (1..REQUESTS).step_by(2) {
        let offset = u64::from(PREFILL + i * IO);
        let rsp = rx.call_ok(&req::read_obj(oid, offset, IO), &[]).unwrap();
        assert_same_bytes(
            &rsp.payload,
            &pattern(seed(client), offset, IO as usize),
            "pipelined write read back",
        );
    }
    u32::try_from(overtaken).unwrap()
}
