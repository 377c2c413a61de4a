//! Golden tests: a handful of real captures in, NDJSON out, compared with reviewed
//! snapshots (`tests/snapshots`). Everything in an entry read from a file is determined by
//! the file (times are the packets' times, ids and connection ids derive from them), so
//! nothing needs filtering. Bodies are capped at 96 bytes to keep the snapshots readable;
//! the L7 captures (one per protocol of ../shared/corpus-l7) keep their first 12 entries.

mod common;

fn golden(name: &str) {
    let path = common::corpus().join("pcaps").join(name);
    let out = common::kshark(&["read", path.to_str().unwrap(), "--format", "ndjson", "--max-body", "96", "--node", "golden"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let pretty: Vec<String> = common::ndjson(&out).iter().map(|v| serde_json::to_string_pretty(v).unwrap()).collect();
    insta::assert_snapshot!(name, pretty.join("\n"));
}

#[test]
fn pipelined_gzip() {
    golden("zeek_http_pipelined-requests.pcap");
}

#[test]
fn brotli_chunked() {
    golden("sv_http-brotli-ce.pcap");
}

#[test]
fn fast_open_data_in_syn() {
    golden("zeek_tcp_tcp-fast-open.pcap");
}

#[test]
fn lost_segments_become_anomalies() {
    golden("zeek_http_zero-length-bodies-with-drops.pcap");
}

#[test]
fn dns_https_record() {
    golden("zeek_dns-https.pcap");
}

#[test]
fn dns_naptr_over_ipv6() {
    golden("zeek_dns_naptr.pcap");
}

#[test]
fn dns_duplicate_response() {
    golden("zeek_dns-two-responses.pcap");
}

#[test]
fn http_09() {
    golden("zeek_http_http_09.pcap");
}

#[test]
fn h2c_upgrade_becomes_stream_1() {
    golden("sv_http2-keywords2.pcap");
}

#[test]
fn grpc_through_a_connect_tunnel_and_direct() {
    golden("sv_http2-errorcode.pcap");
}

#[test]
fn grpc_cart_with_bin_metadata() {
    golden("deepflow_h2c_ascii.pcap");
}

#[test]
fn http2_continuation_frames() {
    golden("sv_http2-continuation.pcap");
}

/// The same for the L7 corpus (`../shared/corpus-l7`): one capture per protocol.
fn golden_l7(name: &str) {
    let path = common::corpus().join("../corpus-l7/pcaps").join(name);
    assert!(path.exists(), "{} is missing: the L7 corpus is read from ../shared/corpus-l7", path.display());
    let out = common::kshark(&["read", path.to_str().unwrap(), "--format", "ndjson", "--max-body", "96", "--node", "golden"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let pretty: Vec<String> = common::ndjson(&out).iter().take(12).map(|v| serde_json::to_string_pretty(v).unwrap()).collect();
    insta::assert_snapshot!(name, pretty.join("\n"));
}

#[test]
fn l7_redis() {
    golden_l7("zeek_pop3_redis-50-pings.pcap");
}

#[test]
fn l7_postgresql_errors() {
    golden_l7("zeek_postgresql_psql-insert-fail-drop-fail.pcap");
}

#[test]
fn l7_mysql_statement() {
    golden_l7("deepflow_mysql_mysql-statement-id.pcap");
}

#[test]
fn l7_kafka_fetch() {
    golden_l7("deepflow_kafka_01-fetch-v12-ok.pcap");
}

#[test]
fn l7_amqp_error() {
    golden_l7("deepflow_amqp_amqp-error.pcap");
}

#[test]
fn l7_mongodb() {
    golden_l7("deepflow_mongo_mongo-msg.pcap");
}

#[test]
fn l7_mqtt() {
    golden_l7("deepflow_mqtt_mqtt_roundtrip.pcap");
}

#[test]
fn l7_websocket_compressed() {
    golden_l7("sv_websocket-compressed.pcap");
}
