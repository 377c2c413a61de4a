//! Split invariance: the same conversation cut into segments at every point, and in every
//! uniform chunking, gives the same entries as when it is sent whole. Times are the only
//! thing that may differ (each segment is a millisecond later), so they are left out.

use kshark_dissect::testkit::{entries_json, TcpConv, C2S, S2C};
use kshark_dissect::{Config, Dissector, Limits, Timestamp};
use proptest::prelude::*;
use serde_json::Value;

const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 1], 40000);
const SERVER: ([u8; 4], u16) = ([10, 0, 0, 2], 8080);

fn run(frames: &[(u64, Vec<u8>)]) -> Vec<Value> {
    entries_json(frames, Limits::default()).0
}

/// A conversation cut by `cuts_c` (client bytes) and `cuts_s` (server bytes).
fn conversation(req: &[u8], resp: &[u8], cuts_c: &[usize], cuts_s: &[usize], port: u16) -> Vec<Value> {
    let mut c = TcpConv::new(CLIENT, (SERVER.0, port), [0xffff_fff0, 7]);
    c.handshake().send(C2S, req, cuts_c).send(S2C, resp, cuts_s).close();
    run(&c.frames)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// Pipelined requests: Content-Length, chunked with trailers, Expect/100-continue, HEAD;
/// responses: gzip, chunked, 100 then 200, HEAD with a Content-Length and no body, 204.
fn http_streams() -> (Vec<u8>, Vec<u8>) {
    let req = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: h\r\n\r\n\
PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
POST /d HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok\
HEAD /e HTTP/1.1\r\nHost: h\r\n\r\n\
DELETE /f HTTP/1.1\r\nHost: h\r\n\r\n"
        .to_vec();
    let body = gzip(b"{\"compressed\": true}");
    let mut resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    resp.extend_from_slice(&body);
    resp.extend_from_slice(
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n4\r\nnope\r\n0\r\n\r\n\
HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes\
HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n",
    );
    (req, resp)
}

fn dns_tcp_streams() -> (Vec<u8>, Vec<u8>) {
    let q = |id: u8| {
        let mut m = vec![0, 29, 0, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        m
    };
    let r = |id: u8| {
        let mut m = vec![0, 45, 0, id, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        m.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd8\x22");
        m
    };
    ([q(1), q(2), q(3)].concat(), [r(2), r(1), r(3)].concat())
}

fn check_every_split(req: &[u8], resp: &[u8], port: u16, want_entries: usize) {
    let whole = conversation(req, resp, &[], &[], port);
    assert_eq!(whole.len(), want_entries, "{whole:#?}");
    assert!(whole.iter().all(|e| e["anomalies"].as_array().unwrap().is_empty()), "{whole:#?}");
    for at in 1..req.len() {
        assert_eq!(conversation(req, resp, &[at], &[], port), whole, "client stream cut at {at}");
    }
    for at in 1..resp.len() {
        assert_eq!(conversation(req, resp, &[], &[at], port), whole, "server stream cut at {at}");
    }
    for size in 1..=req.len().max(resp.len()) {
        let cuts = |n: usize| vec![size; n / size + 1];
        assert_eq!(conversation(req, resp, &cuts(req.len()), &cuts(resp.len()), port), whole, "chunks of {size}");
    }
}

#[test]
fn http1_every_split_point_and_chunking() {
    let (req, resp) = http_streams();
    check_every_split(&req, &resp, 8080, 6);
}

#[test]
fn dns_tcp_every_split_point_and_chunking() {
    let (req, resp) = dns_tcp_streams();
    check_every_split(&req, &resp, 53, 3);
}

#[test]
fn http1_interleaved_directions() {
    // request, interim response, body, final response: the 100-continue dance in order
    let mut c = TcpConv::new(CLIENT, SERVER, [1, 1]);
    c.handshake()
        .send(C2S, b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", &[])
        .send(S2C, b"HTTP/1.1 100 Continue\r\n\r\n", &[])
        .send(C2S, b"data", &[2])
        .send(S2C, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &[10])
        .close();
    let got = run(&c.frames);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["response"]["status_code"], 200);
    assert_eq!(got[0]["response"]["informational"], serde_json::json!([100, 100]));
    assert_eq!(got[0]["request"]["body"]["text"], "data");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Random chunkings of both directions.
    #[test]
    fn http1_random_chunkings(cuts_c in proptest::collection::vec(1usize..40, 0..30), cuts_s in proptest::collection::vec(1usize..40, 0..30)) {
        let (req, resp) = http_streams();
        let whole = conversation(&req, &resp, &[], &[], 8080);
        prop_assert_eq!(conversation(&req, &resp, &cuts_c, &cuts_s, 8080), whole);
    }
}

#[test]
fn pending_request_cap_reports_the_oldest() {
    // a client that pipelines more requests than the cap, and never gets an answer
    let limits = Limits { max_pending_requests: 4, ..Default::default() };
    let mut c = TcpConv::new(CLIENT, SERVER, [1, 1]);
    c.handshake().send(C2S, &b"GET /x HTTP/1.1\r\n\r\n".repeat(6), &[]);
    let mut d = Dissector::new(Config { limits, ..Config::default() });
    for (ts, f) in &c.frames {
        d.packet(Timestamp(*ts), 1, f);
    }
    let early: Vec<_> = d.drain_entries().collect();
    assert_eq!(early.len(), 2, "the two over the cap come out at once");
    for e in &early {
        assert_eq!(serde_json::to_value(&e.anomalies).unwrap(), serde_json::json!(["no_response", "limit_reached"]));
    }
    d.finish();
    assert_eq!(d.drain_entries().count(), 4);
}
