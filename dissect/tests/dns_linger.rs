//! How long an answered UDP DNS flow is kept: one second after its last answer, to the
//! packet (not at the next once-a-second sweep), and a duplicate answer within it is
//! still known as one.

use kshark_dissect::testkit::{entries_json, udp_frame};
use kshark_dissect::Limits;

const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 1], 40000);
const SERVER: ([u8; 4], u16) = ([10, 0, 0, 53], 53);
const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

fn query(id: u8) -> Vec<u8> {
    let mut m = vec![0, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    udp_frame(CLIENT, SERVER, &m)
}

fn answer(id: u8) -> Vec<u8> {
    let mut m = vec![0, id, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    m.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd8\x22");
    udp_frame(SERVER, CLIENT, &m)
}

/// A packet of another flow, to move capture time along.
fn other(at_ms: u64) -> (u64, Vec<u8>) {
    (T0 + at_ms * MS, udp_frame(([10, 0, 0, 9], 5000 + at_ms as u16), ([10, 0, 0, 8], 9999), b"x"))
}

#[test]
fn an_answered_flow_leaves_a_second_after_its_answer_not_at_the_next_sweep() {
    // the first packet sweeps (at T0), the next sweep is due at T0 + 1 s and then T0 + 2 s
    let mut frames = vec![other(0), (T0 + 100 * MS, query(7)), (T0 + 200 * MS, answer(7)), other(1000), other(1300)];
    let (entries, stats) = entries_json(&frames, Limits::default());
    assert_eq!(entries.len(), 1);
    // the stats are read after `finish`, which ends the rest without counting them expired
    assert_eq!(stats.flows_expired, 1, "the DNS flow was retired at T0 + 1.3 s: {stats:?}");
    // at T0 + 1.1 s it was still there
    frames.truncate(4);
    frames.push(other(1100));
    assert_eq!(entries_json(&frames, Limits::default()).1.flows_expired, 0);
}

#[test]
fn a_flow_with_a_query_pending_is_not_retired() {
    let frames = vec![other(0), (T0 + 100 * MS, query(7)), (T0 + 200 * MS, answer(7)), (T0 + 300 * MS, query(8)), other(1000), other(1400)];
    let (entries, stats) = entries_json(&frames, Limits::default());
    assert_eq!(stats.flows_expired, 0, "{stats:?}");
    // the pending query is reported at the end, unanswered
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["anomalies"], serde_json::json!(["no_response"]));
}

#[test]
fn a_duplicate_answer_within_the_second_is_known_as_one_and_later_is_unpaired() {
    let dup = |at_ms: u64| vec![(T0 + 100 * MS, query(7)), (T0 + 200 * MS, answer(7)), (T0 + at_ms * MS, answer(7)), other(at_ms + 1)];
    let (entries, _) = entries_json(&dup(900), Limits::default());
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(entries[1]["anomalies"], serde_json::json!(["duplicate_response"]));
    // the duplicate's entry has the request, as the answer's question section gives it
    assert_eq!(entries[1]["request"], entries[0]["request"]);
    assert_eq!(entries[1]["request_size"], entries[0]["request_size"]);

    let (late, _) = entries_json(&[dup(1500), vec![other(1600)]].concat(), Limits::default());
    assert_eq!(late.len(), 2, "{late:#?}");
    assert_eq!(late[1]["anomalies"], serde_json::json!(["unpaired_response"]));
}
