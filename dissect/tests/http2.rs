//! HTTP/2 and gRPC through the whole dissector: one connection with every frame type the
//! parser handles, the same connection cut at every byte (and in random chunkings) giving
//! the same entries, and hostile connections that must end in anomalies and counters.

use kshark_dissect::testkit::{entries_json, h2_frame as frame, TcpConv, C2S, S2C};
use kshark_dissect::{Limits, Stats};
use proptest::prelude::*;
use serde_json::{json, Value};

const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 1], 40000);
const SERVER: ([u8; 4], u16) = ([10, 0, 0, 2], 50051);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// frame types and flags
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW: u8 = 8;
const CONT: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const PADDED: u8 = 8;
const PRIO: u8 = 0x20;

fn padded(pad: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![pad];
    v.extend_from_slice(body);
    v.extend(std::iter::repeat_n(0, pad as usize));
    v
}

fn grpc_msg(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

struct Enc(loona_hpack::Encoder<'static>);
impl Enc {
    fn block(&mut self, h: &[(&str, &str)]) -> Vec<u8> {
        self.0.encode(h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// One prior-knowledge connection: client bytes and server bytes.
fn connection() -> (Vec<u8>, Vec<u8>) {
    let (mut ce, mut se) = (Enc(loona_hpack::Encoder::new()), Enc(loona_hpack::Encoder::new()));
    let mut c = PREFACE.to_vec();
    c.extend(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0, 0, 4, 0, 0, 0xff, 0xff]));
    // stream 1: GET with a header block over HEADERS (padded, with priority) + CONTINUATION
    let b1 = ce.block(&[(":method", "GET"), (":scheme", "http"), (":path", "/a?q=1"), (":authority", "svc:80"), ("user-agent", "test/1"), ("accept", "*/*")]);
    let (p1, p2) = b1.split_at(b1.len() / 2);
    let mut h = vec![0, 0, 0, 0, 15];
    h.extend_from_slice(p1);
    c.extend(frame(HEADERS, PADDED | PRIO | END_STREAM, 1, &padded(3, &h)));
    c.extend(frame(CONT, END_HEADERS, 1, p2));
    // stream 3: gRPC, two messages, the second across two DATA frames, one padded
    let b3 = ce.block(&[(":method", "POST"), (":scheme", "http"), (":path", "/pkg.Svc/Call"), (":authority", "svc:50051"), ("content-type", "application/grpc"), ("te", "trailers")]);
    c.extend(frame(HEADERS, END_HEADERS, 3, &b3));
    let mut msgs = grpc_msg(b"\x08\x96\x01");
    msgs.extend(grpc_msg(b"\x12\x05hello\x18\x01"));
    let (m1, m2) = msgs.split_at(10);
    c.extend(frame(DATA, PADDED, 3, &padded(5, m1)));
    c.extend(frame(PING, 0, 0, &[1; 8]));
    c.extend(frame(DATA, END_STREAM, 3, m2));
    c.extend(frame(WINDOW, 0, 0, &[0, 1, 0, 0]));
    c.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 7]));
    // stream 5: POST with a body
    let b5 = ce.block(&[(":method", "POST"), (":scheme", "http"), (":path", "/upload"), (":authority", "svc:80"), ("content-type", "text/plain")]);
    c.extend(frame(HEADERS, END_HEADERS, 5, &b5));
    c.extend(frame(DATA, END_STREAM, 5, b"some text"));
    // stream 7: the server refuses it
    let b7 = ce.block(&[(":method", "GET"), (":scheme", "http"), (":path", "/refused"), (":authority", "svc:80")]);
    c.extend(frame(HEADERS, END_HEADERS | END_STREAM, 7, &b7));
    c.extend(frame(SETTINGS, 1, 0, &[]));

    let mut s = frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0x40, 0]);
    s.extend(frame(SETTINGS, 1, 0, &[]));
    // stream 3's response headers first: streams are independent
    s.extend(frame(HEADERS, END_HEADERS, 3, &se.block(&[(":status", "200"), ("content-type", "application/grpc")])));
    // stream 1: a push promise, then the response, gzip
    let mut pp = vec![0, 0, 0, 2];
    pp.extend(se.block(&[(":method", "GET"), (":scheme", "http"), (":path", "/style.css"), (":authority", "svc:80")]));
    s.extend(frame(PUSH, END_HEADERS, 1, &pp));
    let body = gzip(b"{\"ok\": true}");
    let b1 = se.block(&[(":status", "200"), ("content-type", "application/json"), ("content-encoding", "gzip")]);
    s.extend(frame(HEADERS, END_HEADERS, 1, &b1));
    s.extend(frame(DATA, END_STREAM, 1, &body));
    s.extend(frame(DATA, 0, 3, &grpc_msg(b"\x08\x01")));
    s.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &se.block(&[("grpc-status", "3"), ("grpc-message", "bad%20arg")])));
    // the pushed stream's response
    s.extend(frame(HEADERS, END_HEADERS, 2, &se.block(&[(":status", "200"), ("content-type", "text/css")])));
    s.extend(frame(DATA, END_STREAM, 2, b"p{}"));
    // stream 5: 100 then 201
    s.extend(frame(HEADERS, END_HEADERS, 5, &se.block(&[(":status", "100")])));
    s.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &se.block(&[(":status", "201")])));
    s.extend(frame(RST, 0, 7, &[0, 0, 0, 7]));
    s.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 0]));
    (c, s)
}

fn run_with(frames: &[(u64, Vec<u8>)], limits: Limits) -> (Vec<Value>, Stats) {
    let (mut v, st) = entries_json(frames, limits);
    // entries leave as streams finish, which depends on where segments end: compare by stream
    v.sort_by_key(|e| e["request"]["http2"]["stream_id"].as_u64());
    (v, st)
}

fn conversation(c: &[u8], s: &[u8], cuts_c: &[usize], cuts_s: &[usize]) -> Vec<Value> {
    let mut t = TcpConv::new(CLIENT, SERVER, [1000, 2000]);
    t.handshake().send(C2S, c, cuts_c).send(S2C, s, cuts_s).close();
    run_with(&t.frames, Limits::default()).0
}

fn by_stream(es: &[Value], id: u64) -> &Value {
    es.iter().find(|e| e["request"]["http2"]["stream_id"] == id).unwrap_or_else(|| panic!("no stream {id} in {es:#?}"))
}

#[test]
fn every_frame_type() {
    let (c, s) = connection();
    let es = conversation(&c, &s, &[], &[]);
    assert_eq!(es.len(), 5, "{es:#?}");
    let e1 = by_stream(&es, 1);
    assert_eq!(e1["protocol"], "http");
    assert_eq!(e1["http_version"], "2");
    assert_eq!(e1["request"]["method"], "GET");
    assert_eq!(e1["request"]["path"], "/a");
    assert_eq!(e1["request"]["query_string"], "q=1");
    assert_eq!(e1["request"]["host"], "svc:80");
    assert_eq!(e1["request"]["headers"]["user-agent"], "test/1");
    assert_eq!(e1["response"]["status_code"], 200);
    assert_eq!(e1["response"]["body"]["text"], "{\"ok\": true}");
    assert_eq!(e1["response"]["body"]["encoding"], "gzip");
    assert_eq!(e1["anomalies"], json!([]));
    let e2 = by_stream(&es, 2);
    assert_eq!(e2["request"]["http2"]["promised_on"], 1);
    assert_eq!(e2["request"]["url"], "/style.css");
    assert_eq!(e2["response"]["body"]["text"], "p{}");
    assert_eq!(e2["anomalies"], json!([]));
    let e3 = by_stream(&es, 3);
    assert_eq!(e3["protocol"], "grpc");
    assert_eq!(e3["request"]["service"], "pkg.Svc");
    assert_eq!(e3["request"]["method"], "Call");
    assert_eq!(e3["request"]["messages"].as_array().unwrap().len(), 2);
    assert_eq!(e3["request"]["messages"][0]["fields"], json!([{"field": 1, "wire_type": "varint", "value": 150}]));
    assert_eq!(e3["request"]["messages"][1]["fields"][0]["string"], "hello");
    assert_eq!(e3["response"]["grpc_status"], 3);
    assert_eq!(e3["response"]["grpc_message"], "bad arg");
    assert_eq!(e3["response"]["messages"][0]["size"], 2);
    let e5 = by_stream(&es, 5);
    assert_eq!(e5["request"]["body"]["text"], "some text");
    assert_eq!(e5["response"]["status_code"], 201);
    assert_eq!(e5["response"]["informational"], json!([100]));
    let e7 = by_stream(&es, 7);
    assert_eq!(e7["response"], Value::Null);
    assert_eq!(e7["anomalies"], json!(["no_response", "rst_stream", "h2_refused_stream"]));
    // sizes are the frames' bytes on the wire: HEADERS and DATA with their 9-byte headers
    assert!(e5["request_size"].as_u64().unwrap() > 9 + 9 + 9);
    assert!(e2["response_size"].as_u64().unwrap() > 9 + 9 + 3);
}

#[test]
fn every_cut_gives_the_same_entries() {
    let (c, s) = connection();
    let whole = conversation(&c, &s, &[], &[]);
    for at in 1..c.len() {
        assert_eq!(conversation(&c, &s, &[at], &[]), whole, "client bytes cut at {at}");
    }
    for at in 1..s.len() {
        assert_eq!(conversation(&c, &s, &[], &[at]), whole, "server bytes cut at {at}");
    }
    for n in [1, 2, 3, 7, 9, 10, 64] {
        assert_eq!(conversation(&c, &s, &vec![n; c.len() / n + 1], &vec![n; s.len() / n + 1]), whole, "chunks of {n}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_chunkings(cc in proptest::collection::vec(1usize..40, 1..30), cs in proptest::collection::vec(1usize..40, 1..30)) {
        let (c, s) = connection();
        prop_assert_eq!(conversation(&c, &s, &cc, &cs), conversation(&c, &s, &[], &[]));
    }

    /// Garbage after a preface, and frames of random bytes: never a panic, every counter sane.
    #[test]
    fn garbage_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..600), cut in 1usize..50) {
        let mut c = PREFACE.to_vec();
        c.extend_from_slice(&junk);
        let mut t = TcpConv::new(CLIENT, SERVER, [1, 2]);
        t.handshake().send(C2S, &c, &[cut]).send(S2C, &junk, &[cut]).close();
        let _ = run_with(&t.frames, Limits::default());
    }
}

fn hostile(c: &[u8], s: &[u8], limits: Limits) -> (Vec<Value>, Stats) {
    let mut t = TcpConv::new(CLIENT, SERVER, [1000, 2000]);
    t.handshake().send(C2S, c, &vec![1400; c.len() / 1400 + 1]).send(S2C, s, &vec![1400; s.len() / 1400 + 1]).close();
    run_with(&t.frames, limits)
}

fn get(stream: u32, enc: &mut Enc, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut h: Vec<(&str, &str)> = vec![(":method", "GET"), (":scheme", "http"), (":path", "/x"), (":authority", "h")];
    h.extend_from_slice(extra);
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &enc.block(&h))
}

#[test]
fn headers_bomb_is_capped() {
    // one 3000-byte header inserted once, then referenced 4000 times: 12 MB decoded
    let mut enc = Enc(loona_hpack::Encoder::new());
    let big = "b".repeat(3000);
    let mut c = PREFACE.to_vec();
    let mut block = enc.block(&[(":method", "GET"), (":scheme", "http"), (":path", "/bomb"), ("x-big", &big)]);
    block.extend(std::iter::repeat_n(0xbe, 4000));
    c.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    c.extend(get(3, &mut enc, &[]));
    let limits = Limits { max_decoded_headers: 64 << 10, ..Limits::default() };
    let (es, st) = hostile(&c, &frame(SETTINGS, 0, 0, &[]), limits);
    let e = by_stream(&es, 1);
    assert!(e["anomalies"].as_array().unwrap().contains(&json!("limit_reached")), "{e:#}");
    assert!(e["request"]["headers"]["x-big"].as_str().unwrap().len() < 70_000);
    assert_eq!(e["request"]["url"], "/bomb");
    // the connection goes on
    assert_eq!(by_stream(&es, 3)["request"]["url"], "/x");
    assert_eq!(st.pending_overflows, 0);
}

#[test]
fn a_16_mb_frame_is_passed_over() {
    let mut enc = Enc(loona_hpack::Encoder::new());
    let mut c = PREFACE.to_vec();
    // x-id goes into the dynamic table (its name is not in the static one)
    c.extend(get(1, &mut enc, &[("x-id", "7")]));
    // a HEADERS frame declaring 16 MB, and its 16 MB
    let mut huge = frame(HEADERS, END_HEADERS, 3, &[]);
    huge[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
    c.extend(huge);
    c.extend(std::iter::repeat_n(0x41, 0xff_ffff));
    c.extend(get(5, &mut enc, &[("x-id", "7")]));
    let (es, st) = hostile(&c, &frame(SETTINGS, 0, 0, &[]), Limits::default());
    assert_eq!(st.h2_frames_skipped, 1);
    assert!(st.h2_frame_errors >= 1, "over the peer's 16 KiB frame size");
    assert_eq!(st.pending_overflows, 0, "nothing of it was buffered");
    assert_eq!(by_stream(&es, 1)["request"]["url"], "/x");
    // the skipped block took HPACK state with it: stream 5 decodes what it can, and says so
    let e5 = by_stream(&es, 5);
    assert_eq!(e5["request"]["method"], "GET");
    assert!(e5["anomalies"].as_array().unwrap().contains(&json!("hpack_desync")), "{e5:#}");
    assert_eq!(e5["request"]["url"], "/x");
    assert_eq!(e5["request"]["unresolved_headers"], json!([{"index": 62, "value": null}]));
}

#[test]
fn endless_continuation_stops_at_the_cap() {
    let mut enc = Enc(loona_hpack::Encoder::new());
    let mut c = PREFACE.to_vec();
    let block = enc.block(&[(":method", "GET"), (":scheme", "http"), (":path", "/cont")]);
    c.extend(frame(HEADERS, 0, 1, &block));
    for _ in 0..400 {
        c.extend(frame(CONT, 0, 1, &[0x40; 4096]));
    }
    let limits = Limits { max_header_block: 64 << 10, ..Limits::default() };
    let (es, st) = hostile(&c, &[], limits);
    assert_eq!(st.h2_frames_skipped, 1);
    assert_eq!(st.pending_overflows, 0);
    // the stream never got its headers; nothing is made up
    assert!(es.iter().all(|e| e["request"]["url"] != "/cont"));
    assert_eq!(st.h2_frames, 401);
}

#[test]
fn huffman_that_never_ends() {
    let mut c = PREFACE.to_vec();
    // :method GET, then a literal whose Huffman value is all ones (EOS padding > 7 bits)
    c.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x82, 0x84, 0x86, 0x00, 0x81, b'a', 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    let (es, st) = hostile(&c, &[], Limits::default());
    assert_eq!(st.hpack_errors, 1);
    let e = by_stream(&es, 1);
    assert_eq!(e["request"]["method"], "GET");
    assert!(e["anomalies"].as_array().unwrap().contains(&json!("malformed")));
}

#[test]
fn goaway_and_mid_connection_join() {
    let (c, s) = connection();
    // the same connection seen from its second half: no preface, no handshake
    let at = |b: &[u8]| b.windows(9).position(|w| w[3] == HEADERS && w[4] == END_HEADERS && w[5..9] == [0, 0, 0, 5]).unwrap();
    let (cut_c, cut_s) = (at(&c), at(&s));
    let mut t = TcpConv::new(CLIENT, SERVER, [1000, 2000]);
    t.send(C2S, &c[cut_c..], &[]).send(S2C, &s[cut_s..], &[]);
    let (es, _) = run_with(&t.frames, Limits::default());
    let e5 = by_stream(&es, 5);
    assert_eq!(e5["request"]["method"], "POST");
    assert_eq!(e5["response"]["status_code"], 201);
    assert_eq!(e5["request"]["body"]["text"], "some text");
    // the goaway's last stream is 7: a stream above it is reported as never processed
    let mut c2 = PREFACE.to_vec();
    let mut enc = Enc(loona_hpack::Encoder::new());
    c2.extend(get(1, &mut enc, &[]));
    c2.extend(get(3, &mut enc, &[]));
    let mut senc = Enc(loona_hpack::Encoder::new());
    let mut s2 = frame(HEADERS, END_HEADERS | END_STREAM, 1, &senc.block(&[(":status", "200")]));
    s2.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 2]));
    let (es, _) = hostile(&c2, &s2, Limits::default());
    assert_eq!(by_stream(&es, 1)["anomalies"], json!([]));
    assert_eq!(by_stream(&es, 3)["anomalies"], json!(["no_response", "goaway", "h2_internal_error"]));
}

/// A tap that starts on a long-lived gRPC channel joins after the HPACK table was built:
/// the calls' headers are references into a table never seen. A POST whose DATA is exactly
/// gRPC's length-prefixed messages and whose response ends in trailers is still a gRPC
/// call, its messages decoded; a plain POST joined the same way stays HTTP.
#[test]
fn a_grpc_call_joined_mid_connection_is_still_grpc() {
    let (mut ce, mut se) = (Enc(loona_hpack::Encoder::new()), Enc(loona_hpack::Encoder::new()));
    let req = [(":method", "POST"), (":scheme", "http"), (":path", "/pay.Payment/Authorise"), (":authority", "payment:50051"), ("content-type", "application/grpc"), ("te", "trailers")];
    let (mut c, mut s) = (PREFACE.to_vec(), Vec::new());
    let mut cuts = (0, 0);
    for id in [1u32, 3, 5] {
        if id == 3 {
            cuts = (c.len(), s.len());
        }
        if id == 5 {
            // not gRPC: a POST of text whose response has no trailers
            c.extend(frame(HEADERS, END_HEADERS, id, &ce.block(&[(":method", "POST"), (":scheme", "http"), (":path", "/upload"), (":authority", "payment:50051")])));
            c.extend(frame(DATA, END_STREAM, id, b"\x00\x00\x00\x00\x09not grpc?"));
            s.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &se.block(&[(":status", "204")])));
            continue;
        }
        // the joined call's header blocks name only the static table (POST, http, 200)
        // and entries of the unseen dynamic one (62 and up): no content-type, no path
        let (qh, rh) = if id == 3 { (vec![0x83, 0x86, 0xbe, 0xbf, 0xc0, 0xc1], vec![0x88, 0xc2]) } else { (ce.block(&req), se.block(&[(":status", "200"), ("content-type", "application/grpc")])) };
        c.extend(frame(HEADERS, END_HEADERS, id, &qh));
        c.extend(frame(DATA, END_STREAM, id, &grpc_msg(b"\x0a\x03abc\x11\x00\x00\x00\x00\x00\x80\x40\x40")));
        s.extend(frame(HEADERS, END_HEADERS, id, &rh));
        s.extend(frame(DATA, 0, id, &grpc_msg(b"\x08\x01\x12\x12Payment authorised")));
        // the joined call's trailers, too, only name entries of the unseen table (62, 63)
        let trailers = if id == 3 { vec![0xbe, 0xbf] } else { se.block(&[("grpc-status", "0"), ("grpc-message", "")]) };
        s.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &trailers));
    }
    let mut t = TcpConv::new(CLIENT, SERVER, [1000, 2000]);
    t.send(C2S, &c[cuts.0..], &[]).send(S2C, &s[cuts.1..], &[]);
    let (es, _) = run_with(&t.frames, Limits::default());
    let e3 = es.iter().find(|e| e["protocol"] == "grpc").unwrap_or_else(|| panic!("no gRPC entry: {es:#?}"));
    assert!(e3["anomalies"].as_array().unwrap().contains(&json!("hpack_desync")), "{e3:#}");
    let sent = &e3["request"]["messages"][0];
    assert_eq!(sent["size"], 14, "{e3:#}");
    assert!(sent.get("fields").is_some() || sent.get("json").is_some(), "the message is not decoded: {e3:#}");
    let answer = e3["response"]["messages"][0].to_string();
    assert!(answer.contains("Payment authorised"), "{e3:#}");
    // the plain POST after it is not taken for gRPC
    let plain: Vec<&Value> = es.iter().filter(|e| e["protocol"] == "http").collect();
    assert_eq!(plain.len(), 1, "{es:#?}");
    assert_eq!(plain[0]["response"]["status_code"], 204);
}
