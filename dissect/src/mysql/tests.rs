use super::wire::cap;
use crate::testkit::{assert_split_invariant, conversation, TcpConv, C2S, S2C};
use serde_json::json;
use std::io::Write;

fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

fn greeting(caps: u32) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(b"8.0.32\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(&[1; 8]);
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(0xff);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&[2; 13]);
    p.extend_from_slice(b"mysql_native_password\0");
    pkt(0, &p)
}

fn login(caps: u32) -> Vec<u8> {
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(0xff);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"root\0");
    p.push(20);
    p.extend_from_slice(&[3; 20]);
    p.extend_from_slice(b"shop\0mysql_native_password\0");
    pkt(1, &p)
}

fn coldef(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "shop", "t", "t", name, name] {
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    }
    p.extend_from_slice(&[0x0c, 0x21, 0, 0x20, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
    p
}

const CAPS: u32 = cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH | cap::CONNECT_WITH_DB;
const EOF: &[u8] = b"\xfe\x00\x00\x02\x00";
const OK: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00";

fn start(caps: u32) -> Vec<(usize, Vec<u8>)> {
    vec![(S2C, greeting(caps)), (C2S, login(caps)), (S2C, pkt(2, OK))]
}

#[test]
fn login_queries_errors_and_prepared_statements() {
    let mut m = start(CAPS);
    m.push((C2S, pkt(0, b"\x03SELECT id, name FROM users")));
    m.push((S2C, [pkt(1, b"\x02"), pkt(2, &coldef("id")), pkt(3, &coldef("name")), pkt(4, EOF), pkt(5, b"\x011\x01a"), pkt(6, b"\x012\x01b"), pkt(7, EOF)].concat()));
    m.push((C2S, pkt(0, b"\x03SELECT * FROM nope")));
    m.push((S2C, pkt(1, b"\xff\x7a\x04#42S02Table 'shop.nope' doesn't exist")));
    m.push((C2S, pkt(0, b"\x16SELECT name FROM items WHERE id = ?")));
    m.push((S2C, [pkt(1, b"\x00\x01\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00"), pkt(2, &coldef("?")), pkt(3, EOF), pkt(4, &coldef("name")), pkt(5, EOF)].concat()));
    m.push((C2S, pkt(0, b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\x07\x00\x00\x00\x00\x00\x00\x00")));
    m.push((S2C, [pkt(1, b"\x01"), pkt(2, &coldef("name")), pkt(3, EOF), pkt(4, b"\x00\x00\x03pen"), pkt(5, EOF)].concat()));
    m.push((C2S, pkt(0, b"\x19\x01\x00\x00\x00")));
    m.push((C2S, pkt(0, b"\x01")));
    let e = assert_split_invariant(3306, &m);
    let methods: Vec<_> = e.iter().map(|x| x["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["Login", "COM_QUERY", "COM_QUERY", "COM_STMT_PREPARE", "COM_STMT_EXECUTE", "COM_STMT_CLOSE", "COM_QUIT"]);
    assert_eq!(e[0]["request"]["user"], "root");
    assert_eq!(e[0]["request"]["target"], "shop");
    assert_eq!(e[0]["response"]["server_version"], "8.0.32");
    assert_eq!(e[1]["request"]["target"], "users");
    assert_eq!(e[1]["response"]["rows"], 2);
    assert_eq!(e[1]["response"]["columns"], json!(["id", "name"]));
    assert_eq!(e[2]["response"]["status"], "1146");
    assert_eq!(e[2]["response"]["error"], json!({"code": 1146, "sql_state": "42S02", "message": "Table 'shop.nope' doesn't exist"}));
    assert_eq!(e[3]["response"]["statement_id"], 1);
    assert_eq!(e[4]["request"]["query"], "SELECT name FROM items WHERE id = ?");
    assert_eq!(e[4]["request"]["target"], "items");
    assert_eq!(e[4]["response"]["rows"], 1);
    assert_eq!(e[5]["response"], json!(null));
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}

#[test]
fn deprecated_eof_and_more_results() {
    let caps = CAPS | cap::DEPRECATE_EOF;
    let mut m = start(caps);
    m.push((C2S, pkt(0, b"\x03CALL two()")));
    // two result sets: the first's end says more follow (status 0x0008), then an OK
    let end_more = b"\xfe\x00\x00\x0a\x00\x00\x00";
    let end = b"\xfe\x00\x00\x02\x00\x00\x00";
    m.push((S2C, [pkt(1, b"\x01"), pkt(2, &coldef("a")), pkt(3, b"\x011"), pkt(4, end_more), pkt(5, b"\x01"), pkt(6, &coldef("b")), pkt(7, b"\x012"), pkt(8, end)].concat()));
    m.push((C2S, pkt(0, b"\x0e")));
    m.push((S2C, pkt(1, OK)));
    let e = assert_split_invariant(3306, &m);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[1]["response"]["rows"], 2);
    assert_eq!(e[2]["request"]["method"], "COM_PING");
    assert_eq!(e[2]["response"]["status"], "OK");
}

#[test]
fn a_payload_over_16_mb_is_joined_and_kept_in_part() {
    let mut q = b"\x03INSERT INTO big VALUES ('".to_vec();
    q.resize(17 << 20, b'x');
    q.extend_from_slice(b"')");
    let mut wire = pkt(0, &q[..0xff_ffff]);
    wire[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
    wire.extend_from_slice(&pkt(1, &q[0xff_ffff..]));
    let mut c = TcpConv::new(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], 3306), [1000, 5000]);
    c.handshake();
    for (dir, m) in start(CAPS) {
        c.send(dir, &m, &[]);
    }
    c.send(C2S, &wire, &[60000; 400]);
    c.send(S2C, &pkt(2, b"\x00\x01\x00\x02\x00\x00\x00"), &[]);
    c.close();
    let (e, st) = crate::testkit::entries_json(&c.frames, crate::Limits::default());
    assert_eq!(e.len(), 2, "{st:?}");
    assert_eq!(e[1]["request"]["target"], "big");
    assert_eq!(e[1]["request"]["query"]["truncated"], true);
    assert_eq!(e[1]["request"]["query"]["size"], q.len() - 1, "the whole query's size");
    assert_eq!(e[1]["request"]["query"]["text"].as_str().unwrap().len(), (64 << 10) - 1, "what is kept of it: the payload's first max_body bytes");
    assert_eq!(e[1]["request_size"], q.len() as u64 + 4);
    assert_eq!(e[1]["response"]["affected_rows"], 1);
    assert_eq!((st.pending_overflows, st.l7_malformed), (0, 0));
}

#[test]
fn compressed_packets_are_unwrapped_and_inflated() {
    let caps = CAPS | cap::COMPRESS;
    let mut m = start(caps);
    let wrap = |seq: u8, inner: &[u8], deflate: bool| {
        let (body, ulen) = if deflate {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(inner).unwrap();
            (z.finish().unwrap(), inner.len())
        } else {
            (inner.to_vec(), 0)
        };
        let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(&(ulen as u32).to_le_bytes()[..3]);
        v.extend_from_slice(&body);
        v
    };
    m.push((C2S, wrap(0, &pkt(0, b"\x03SELECT 1"), false)));
    let rs = [pkt(1, b"\x01"), pkt(2, &coldef("1")), pkt(3, EOF), pkt(4, b"\x011"), pkt(5, EOF)].concat();
    // the reply inflated from two compressed packets, cut inside a MySQL packet
    m.push((S2C, [wrap(1, &rs[..10], true), wrap(2, &rs[10..], true)].concat()));
    let (e, st) = conversation(3306, &m, 0);
    assert_eq!(e.len(), 2, "{e:?} {st:?}");
    assert_eq!(e[1]["request"]["query"], "SELECT 1");
    assert_eq!(e[1]["response"]["rows"], 1);
    assert_eq!(st.l7_malformed, 0);
}

#[test]
fn tls_after_the_ssl_request_is_left_alone() {
    let caps = CAPS | cap::SSL;
    let mut ssl = caps.to_le_bytes().to_vec();
    ssl.extend_from_slice(&(1u32 << 24).to_le_bytes());
    ssl.push(0xff);
    ssl.extend_from_slice(&[0; 23]);
    let m = vec![(S2C, greeting(caps)), (C2S, pkt(1, &ssl)), (C2S, b"\x16\x03\x01\x00\x05hello".to_vec())];
    let (e, st) = conversation(3306, &m, 0);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["request"]["ssl"], true);
    assert_eq!(e[0]["response"]["status"], "tls");
    assert_eq!((st.l7_malformed, st.parse_desyncs), (0, 0));
}
