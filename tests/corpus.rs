//! Every capture in the shared corpus through `kshark read`, graded by the shared
//! `score.py` against tshark's reading: no failed capture, no schema error, and at least 99%
//! of tshark's HTTP/1.x requests and statuses, HTTP/2 streams and statuses, gRPC calls,
//! statuses and grpc-statuses, and DNS messages matched. tshark was told where HTTP/2 runs
//! (`-d tcp.port==N,http2`); kshark finds it by content.
//!
//! Where kshark reads more than tshark (extras, not failures), checked by hand against the
//! source projects' expectations in `expected/`:
//! - zeek_http_http_09.pcap: three HTTP/0.9 exchanges tshark does not decode; Zeek's
//!   http-09 baseline lists the same three.
//! - zeek_http_http-desync-request-response-5.pcap: the first request is answered by three
//!   responses; two are `unpaired_response` entries, as Zeek's baseline has them.
//! - zeek_http_zero-length-bodies-with-drops.pcap: a response whose request was lost in
//!   capture is kept as an `unpaired_response` entry.
//! - arkime_http2-nghttp2.pcap: the stream the server promised (PUSH_PROMISE for
//!   /stylesheets/screen.css) is an entry of its own; tshark lists the promise, not a request.
//! - sv_http2-errorcode.pcap: the HTTP/1.1 CONNECT that opens the proxy tunnel is an entry.
//! - sv_dns-over-http2.pcap: stream 7 is reset by the client (CANCEL) while its response is
//!   in flight; the response is still paired with it, as tshark shows it.

mod common;
use std::process::Command;

#[test]
fn corpus_matches_tshark() {
    let corpus = common::corpus();
    let score = corpus.join("../tools/score.py");
    let bin = env!("CARGO_BIN_EXE_kshark");
    let out = Command::new("python3")
        .arg(&score)
        .args(["--oracle", corpus.join("oracle").to_str().unwrap()])
        .args(["--pcaps", corpus.join("pcaps").to_str().unwrap()])
        .args(["--run", &format!("{bin} read {{}} --format ndjson")])
        .args(["--jobs", "2", "--json"])
        .output()
        .expect("python3 runs score.py");
    assert!(out.status.success(), "score.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("score.py --json output");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(r["failed_captures"], serde_json::json!([]), "captures kshark failed on");
    assert_eq!(r["schema_errors"], 0, "entries that break the schema");
    let counts = &r["totals"]["counts"];
    for cat in ["http1_req", "http1_status", "h2_req", "h2_status", "grpc_req", "grpc_status", "grpc_grpc_status", "dns_q", "dns_r"] {
        let (m, n) = (counts[cat]["matched"].as_u64().unwrap(), counts[cat]["expected"].as_u64().unwrap());
        eprintln!("{cat}: {m}/{n}");
        assert!(n > 0, "{cat}: the oracle has no rows: wrong corpus?");
        assert!(m * 100 >= n * 99, "{cat}: only {m} of {n} of tshark's rows matched (need 99%)");
    }
    // and the corpus is all there: every capture graded
    let graded = r["captures"].as_array().unwrap().len();
    assert!(graded >= 90, "only {graded} captures graded");
}
