use crate::testkit::{assert_split_invariant, C2S, S2C};
use serde_json::json;

fn frame(t: u8, ch: u16, p: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(&ch.to_be_bytes());
    v.extend_from_slice(&(p.len() as u32).to_be_bytes());
    v.extend_from_slice(p);
    v.push(0xce);
    v
}

fn method(ch: u16, class: u16, m: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&m.to_be_bytes());
    p.extend_from_slice(args);
    frame(1, ch, &p)
}

fn s(v: &str) -> Vec<u8> {
    let mut o = vec![v.len() as u8];
    o.extend_from_slice(v.as_bytes());
    o
}

#[test]
fn connection_channel_publish_with_content_and_a_failed_declare() {
    let start_args = [&[0u8, 9][..], &[0, 0, 0, 0], &[0, 0, 0, 5], b"PLAIN", &[0, 0, 0, 5], b"en_US"].concat();
    let start_ok = [&[0u8, 0, 0, 0][..], &s("PLAIN"), &[0, 0, 0, 12], b"\0guest\0guest", &s("en_US")].concat();
    let publish = [&[0u8, 0][..], &s("orders"), &s("new"), &[0]].concat();
    let header = [&[0u8, 60, 0, 0][..], &5u64.to_be_bytes(), &[0x80, 0], &s("text/plain")].concat();
    let declare = [&[0u8, 0][..], &s("missing"), &[1], &[0, 0, 0, 0]].concat();
    let close = [&404u16.to_be_bytes()[..], &s("NOT_FOUND - no queue 'missing'"), &50u16.to_be_bytes(), &10u16.to_be_bytes()].concat();
    let m = vec![
        (C2S, b"AMQP\x00\x00\x09\x01".to_vec()),
        (S2C, method(0, 10, 10, &start_args)),
        (C2S, method(0, 10, 11, &start_ok)),
        (S2C, method(0, 10, 30, &[0, 0, 0, 2, 0, 0, 0, 60])),
        (C2S, [method(0, 10, 31, &[0, 0, 0, 2, 0, 0, 0, 60]), method(0, 10, 40, &[&s("/")[..], &s(""), &[0]].concat())].concat()),
        (S2C, method(0, 10, 41, &s(""))),
        (C2S, method(1, 20, 10, &s(""))),
        (S2C, method(1, 20, 11, &[0, 0, 0, 0])),
        (C2S, [method(1, 60, 40, &publish), frame(2, 1, &header), frame(3, 1, b"he"), frame(3, 1, b"llo"), frame(8, 0, b"")].concat()),
        (C2S, method(1, 50, 10, &declare)),
        (S2C, method(1, 20, 40, &close)),
        (C2S, method(1, 20, 41, &[])),
    ];
    let e = assert_split_invariant(5672, &m);
    let methods: Vec<_> = e.iter().map(|x| x["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["connection.start", "connection.tune", "connection.open", "channel.open", "basic.publish", "queue.declare", "channel.close"]);
    // the server started the connection: its method's sender is the entry's source
    assert_eq!(e[0]["src"]["port"], 5672);
    assert_eq!(e[0]["response"]["method"], "connection.start-ok");
    assert!(!serde_json::to_string(&e).unwrap().contains("guest"), "credentials are never shown");
    assert_eq!(e[2]["request"]["target"], "/");
    let p = &e[4];
    assert_eq!(p["request"]["target"], "orders/new");
    assert_eq!(p["request"]["body"]["text"], "hello");
    assert_eq!(p["request"]["properties"]["content_type"], "text/plain");
    assert_eq!(p["response"], json!(null));
    assert_eq!(p["anomalies"], json!([]));
    assert_eq!(e[5]["request"]["target"], "missing");
    assert_eq!(e[5]["response"]["status"], "404");
    assert_eq!(e[5]["response"]["error"]["reply_code"], 404);
    assert_eq!(e[6]["response"]["error"]["reply_code"], 404, "the close itself is an error");
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}
