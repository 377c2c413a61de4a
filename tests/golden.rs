//! Golden tests: a handful of real captures in, NDJSON out, compared with reviewed
//! snapshots (`tests/snapshots`). Everything in an entry read from a file is determined by
//! the file (times are the packets' times, ids and connection ids derive from them), so
//! nothing needs filtering. Bodies are capped at 96 bytes to keep the snapshots readable.

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
