use crate::testkit::{assert_split_invariant, C2S, S2C};
use serde_json::json;

fn sized(b: &[u8]) -> Vec<u8> {
    [&(b.len() as i32).to_be_bytes()[..], b].concat()
}

fn s(v: &str) -> Vec<u8> {
    [&(v.len() as i16).to_be_bytes()[..], v.as_bytes()].concat()
}

/// A record batch (magic 2) announcing `n` records.
fn batch(n: i32) -> Vec<u8> {
    let mut b = vec![0u8; 61];
    b[8..12].copy_from_slice(&49i32.to_be_bytes());
    b[16] = 2;
    b[57..61].copy_from_slice(&n.to_be_bytes());
    b
}

#[test]
fn produce_v2_and_metadata_pair_by_correlation_id() {
    let records = [batch(3), batch(2)].concat();
    let produce = [&0i16.to_be_bytes()[..], &2i16.to_be_bytes(), &7i32.to_be_bytes(), &s("app"), &1i16.to_be_bytes(), &1000i32.to_be_bytes(), &1i32.to_be_bytes(), &s("orders"), &1i32.to_be_bytes(), &0i32.to_be_bytes(), &(records.len() as i32).to_be_bytes(), &records].concat();
    let metadata = [&3i16.to_be_bytes()[..], &1i16.to_be_bytes(), &8i32.to_be_bytes(), &s("app"), &1i32.to_be_bytes(), &s("nope")].concat();
    // Produce v2's response: one topic, one partition with error 0, then throttle time
    let produced = [&7i32.to_be_bytes()[..], &1i32.to_be_bytes(), &s("orders"), &1i32.to_be_bytes(), &0i32.to_be_bytes(), &0i16.to_be_bytes(), &5i64.to_be_bytes(), &(-1i64).to_be_bytes(), &0i32.to_be_bytes()].concat();
    // Metadata v1: no brokers, controller, one topic with UNKNOWN_TOPIC_OR_PARTITION
    let meta = [&8i32.to_be_bytes()[..], &0i32.to_be_bytes(), &1i32.to_be_bytes(), &1i32.to_be_bytes(), &3i16.to_be_bytes(), &s("nope"), &[0], &0i32.to_be_bytes()].concat();
    let m = vec![(C2S, [sized(&produce), sized(&metadata)].concat()), (S2C, [sized(&meta), sized(&produced)].concat())];
    let e = assert_split_invariant(9092, &m);
    assert_eq!(e.len(), 2, "{e:?}");
    let p = e.iter().find(|x| x["request"]["method"] == "Produce").unwrap();
    assert_eq!(p["request"]["target"], "orders");
    assert_eq!(p["request"]["topics"], json!([{"name": "orders", "partitions": 1, "records": 5}]));
    assert_eq!(p["response"]["error_code"], 0);
    assert_eq!(p["response"]["status"], "NONE");
    let md = e.iter().find(|x| x["request"]["method"] == "Metadata").unwrap();
    assert_eq!(md["request"]["target"], "nope");
    assert_eq!(md["response"]["error_code"], 3);
    assert_eq!(md["response"]["status"], "UNKNOWN_TOPIC_OR_PARTITION");
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}

#[test]
fn flexible_api_versions_and_acks_zero() {
    // ApiVersions v3: header v2 (tagged fields), body with compact strings; response header v0
    let req = [&18i16.to_be_bytes()[..], &3i16.to_be_bytes(), &2i32.to_be_bytes(), &s("admin"), &[0], &[4], b"abc", &[4], b"3.0", &[0]].concat();
    let resp = [&2i32.to_be_bytes()[..], &35i16.to_be_bytes(), &[1], &0i32.to_be_bytes(), &[0]].concat();
    // a Produce with acks 0 has no response
    let p0 = [&0i16.to_be_bytes()[..], &2i16.to_be_bytes(), &9i32.to_be_bytes(), &s("app"), &0i16.to_be_bytes(), &1000i32.to_be_bytes(), &0i32.to_be_bytes()].concat();
    let m = vec![(C2S, sized(&req)), (S2C, sized(&resp)), (C2S, sized(&p0))];
    let e = assert_split_invariant(19092, &m);
    assert_eq!(e[0]["request"]["method"], "ApiVersions");
    assert_eq!(e[0]["request"]["client_id"], "admin");
    assert_eq!(e[0]["response"]["status"], "UNSUPPORTED_VERSION");
    assert_eq!(e[1]["request"]["acks"], 0);
    assert_eq!(e[1]["response"], json!(null));
    assert_eq!(e[1]["anomalies"], json!([]));
}
