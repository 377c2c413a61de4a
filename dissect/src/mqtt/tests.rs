use crate::testkit::{assert_split_invariant, C2S, S2C};
use serde_json::json;

fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        v.push(b);
        if n == 0 {
            break;
        }
    }
    v.extend_from_slice(body);
    v
}

fn s(v: &str) -> Vec<u8> {
    let mut o = (v.len() as u16).to_be_bytes().to_vec();
    o.extend_from_slice(v.as_bytes());
    o
}

#[test]
fn v311_connect_subscribe_and_every_qos() {
    let connect = [&s("MQTT")[..], &[4, 0xc2, 0, 60], &s("sensor-1"), &s("alice"), &s("secret")].concat();
    let m = vec![
        (C2S, pkt(0x10, &connect)),
        (S2C, pkt(0x20, &[0, 0])),
        (C2S, pkt(0x82, &[&[0, 1][..], &s("a/+/b"), &[1], &s("c"), &[2]].concat())),
        (S2C, pkt(0x90, &[0, 1, 1, 0x80])),
        // QoS 0, 1 and 2
        (C2S, [pkt(0x30, &[&s("t/0")[..], b"zero"].concat()), pkt(0x32, &[&s("t/1")[..], &[0, 7], b"one"].concat()), pkt(0x34, &[&s("t/2")[..], &[0, 8], b"two"].concat())].concat()),
        (S2C, [pkt(0x40, &[0, 7]), pkt(0x50, &[0, 8])].concat()),
        (C2S, pkt(0x62, &[0, 8])),
        (S2C, pkt(0x70, &[0, 8])),
        // the broker delivers with QoS 1; the client acknowledges
        (S2C, pkt(0x32, &[&s("a/x/b")[..], &[0, 3], b"hi"].concat())),
        (C2S, pkt(0x40, &[0, 3])),
        (C2S, pkt(0xc0, &[])),
        (S2C, pkt(0xd0, &[])),
        (C2S, pkt(0xe0, &[])),
    ];
    let e = assert_split_invariant(1883, &m);
    let got: Vec<_> = e.iter().map(|x| (x["request"]["method"].as_str().unwrap(), x["request"]["target"].as_str().unwrap_or(""))).collect();
    assert_eq!(got, [("CONNECT", ""), ("SUBSCRIBE", "a/+/b"), ("PUBLISH", "t/0"), ("PUBLISH", "t/1"), ("PUBLISH", "t/2"), ("PUBLISH", "a/x/b"), ("PINGREQ", ""), ("DISCONNECT", "")]);
    assert_eq!(e[0]["request"]["username"], "alice");
    assert!(!serde_json::to_string(&e).unwrap().contains("secret"), "the password is never shown");
    assert_eq!(e[0]["response"]["status"], "Connection Accepted");
    assert_eq!(e[1]["response"]["error"]["reason_code"], 0x80, "a refused topic");
    assert_eq!(e[2]["response"], json!(null));
    assert_eq!(e[2]["request"]["payload"]["text"], "zero");
    assert_eq!(e[3]["response"]["packet_type"], "PUBACK");
    assert_eq!(e[4]["response"]["packet_type"], "PUBCOMP");
    assert_eq!(e[4]["response"]["flow"], json!(["PUBREC", "PUBREL", "PUBCOMP"]));
    assert_eq!(e[5]["src"]["port"], 1883, "the broker published");
    assert_eq!(e[5]["response"]["packet_type"], "PUBACK");
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}

#[test]
fn v5_properties_and_reason_codes() {
    let connect = [&s("MQTT")[..], &[5, 0x02, 0, 30], &[5, 0x11, 0, 0, 0, 60], &s("c5")].concat();
    let m = vec![
        (C2S, pkt(0x10, &connect)),
        (S2C, pkt(0x20, &[0, 0x86, 0])),
    ];
    let e = assert_split_invariant(11883, &m);
    assert_eq!(e[0]["request"]["version"], 5);
    assert_eq!(e[0]["request"]["properties"]["session_expiry_interval"], 60);
    assert_eq!(e[0]["response"]["status"], "Bad User Name or Password");
    assert_eq!(e[0]["response"]["error"]["reason_code"], 0x86);
}
