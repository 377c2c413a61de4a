//! `kshark read` as a user runs it: formats, standard input, exit codes, and hostile input
//! that must give a one-line error or an entry with anomalies, never a panic.

mod common;
use common::{corpus, kshark, ndjson, stderr, stdout};
use kshark_dissect::testkit::{pcap_bytes, udp_frame, TcpConv, C2S, S2C};
use std::io::Write;
use std::process::{Command, Stdio};

fn write_tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn no_panic(o: &std::process::Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked") && !e.contains("RUST_BACKTRACE"), "{e}");
    assert!(e.lines().count() <= 3, "messages are one line each: {e}");
}

/// A pcap of one HTTP exchange on port 80: handshake, request, response, close.
fn http_exchange(req: &[u8], resp: &[u8]) -> Vec<u8> {
    let mut c = TcpConv::new(([10, 0, 0, 1], 50000), ([10, 0, 0, 2], 80), [1, 1]);
    c.handshake().send(C2S, req, &[]).send(S2C, resp, &[]).close();
    pcap_bytes(1, &c.frames)
}

fn read_ndjson(bytes: &[u8]) -> Vec<serde_json::Value> {
    let f = write_tmp(bytes);
    let o = kshark(&["read", f.path().to_str().unwrap(), "--format", "ndjson"]);
    no_panic(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    ndjson(&o)
}

#[test]
fn help_has_examples() {
    for args in [&["--help"][..], &["read", "--help"]] {
        let o = kshark(args);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Examples:"), "{}", stdout(&o));
    }
}

#[test]
fn not_a_capture_is_exit_2_with_one_line() {
    let f = write_tmp(b"this is a text file, not a capture\n");
    let o = kshark(&["read", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    no_panic(&o);
    assert!(stderr(&o).contains("not a pcap or pcapng file"), "{}", stderr(&o));
    let empty = write_tmp(b"");
    let o = kshark(&["read", empty.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    let o = kshark(&["read", "/nonexistent/x.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot open"), "{}", stderr(&o));
    let o = kshark(&["read", "--format", "xml", "x.pcap"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn unsupported_link_type_is_exit_2() {
    // 802.11 (105): frames kshark cannot take apart
    let f = write_tmp(&pcap_bytes(105, &[(1, vec![0; 60])]));
    let o = kshark(&["read", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("link-layer type 105"), "{}", stderr(&o));
}

#[test]
fn truncated_capture_keeps_what_was_read() {
    let mut bytes = std::fs::read(common::corpus().join("pcaps/zeek_http_pipelined-requests.pcap")).unwrap();
    let whole = read_ndjson(&bytes).len();
    bytes.truncate(bytes.len() * 2 / 3 + 7);
    let f = write_tmp(&bytes);
    let o = kshark(&["read", f.path().to_str().unwrap(), "--format", "ndjson"]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("ends inside a packet"), "{}", stderr(&o));
    let got = ndjson(&o);
    assert!(!got.is_empty() && got.len() <= whole);
}

#[test]
fn standard_input_and_every_format() {
    let path = common::corpus().join("pcaps/zeek_http_get.pcap");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kshark"))
        .args(["read", "-", "--format", "ndjson"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(&path).unwrap()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(ndjson(&o).len(), 1);
    // HAR: one document, the entry inside with its status
    let o = kshark(&["read", path.to_str().unwrap(), "--format", "har"]);
    let har: serde_json::Value = serde_json::from_slice(&o.stdout).expect("HAR is JSON");
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["entries"][0]["response"]["status"], 200);
    assert_eq!(har["log"]["entries"][0]["request"]["url"], "http://bro.org/download/CHANGES.bro-aux.txt");
    // table: a header and a row; --output writes a file
    let out = tempfile::NamedTempFile::new().unwrap();
    let o = kshark(&["read", path.to_str().unwrap(), "--format", "table", "--output", out.path().to_str().unwrap()]);
    assert!(o.status.success());
    let t = std::fs::read_to_string(out.path()).unwrap();
    assert_eq!(t.lines().count(), 2);
    assert!(t.contains("/download/CHANGES.bro-aux.txt") && t.contains("200"), "{t}");
}

#[test]
fn protocols_found_by_content_not_port() {
    let mut frames = Vec::new();
    // HTTP on the SSH port
    let mut c = TcpConv::new(([10, 0, 0, 1], 50000), ([10, 0, 0, 2], 22), [1, 1]);
    c.handshake().send(C2S, b"GET /odd-port HTTP/1.1\r\nHost: x\r\n\r\n", &[]).send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", &[]).close();
    frames.extend(c.frames);
    // garbage on the HTTP port
    let mut g = TcpConv::new(([10, 0, 0, 3], 50001), ([10, 0, 0, 2], 80), [1, 1]);
    g.handshake().send(C2S, &(0..3000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>(), &[1000, 1000]).close();
    frames.extend(g.frames);
    // DNS on port 8053
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x09catalogue\x09sock-shop\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01");
    frames.push((2_000_000_000, udp_frame(([10, 0, 0, 1], 40000), ([10, 0, 0, 53], 8053), &q)));
    let got = read_ndjson(&pcap_bytes(1, &frames));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0]["request"]["path"], "/odd-port");
    assert_eq!(got[0]["dst"]["port"], 22);
    assert_eq!(got[1]["protocol"], "dns");
    assert_eq!(got[1]["request"]["questions"][0]["name"], "catalogue.sock-shop.svc.cluster.local");
    assert_eq!(got[1]["anomalies"], serde_json::json!(["no_response"]));
}

#[test]
fn hostile_dns_names_are_malformed_entries() {
    let mut frames = Vec::new();
    // a response whose answer name points at itself (a compression loop)
    let mut r = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    r.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    r.extend_from_slice(b"\xc0\x1d\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04");
    frames.push((1, udp_frame(([10, 0, 0, 53], 53), ([10, 0, 0, 1], 40000), &r)));
    // a query with a name far over 255 bytes, and labels claiming more bytes than there are
    let mut q = vec![0x55, 0x55, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..6 {
        q.push(63);
        q.extend_from_slice(&[b'a'; 63]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    frames.push((2, udp_frame(([10, 0, 0, 1], 40001), ([10, 0, 0, 53], 53), &q)));
    frames.push((3, udp_frame(([10, 0, 0, 1], 40002), ([10, 0, 0, 53], 53), &[0x66, 0x66, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a'])));
    let got = read_ndjson(&pcap_bytes(1, &frames));
    assert_eq!(got.len(), 3, "{got:#?}");
    for e in &got {
        assert!(e["anomalies"].as_array().unwrap().contains(&"malformed".into()), "{e:#}");
    }
    assert_eq!(got[0]["response"]["questions"][0]["name"], "example.com");
}

#[test]
fn chunk_size_of_2_pow_64_is_malformed() {
    let got = read_ndjson(&http_exchange(
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n10000000000000000\r\nxxxx",
    ));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["response"]["status_code"], 200);
    assert_eq!(got[0]["response"]["body"]["text"], "abcd");
    assert!(got[0]["anomalies"].as_array().unwrap().contains(&"malformed".into()), "{:#}", got[0]);
    // and the largest size that fits is simply a body that never ends
    let got = read_ndjson(&http_exchange(
        b"GET /huge HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nxxxx",
    ));
    assert_eq!(got[0]["anomalies"], serde_json::json!(["truncated"]));
}

#[test]
fn captured_escapes_never_reach_the_terminal_table() {
    let f = write_tmp(&http_exchange(
        b"GET /\x1b]0;owned\x07\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ));
    let o = kshark(&["read", f.path().to_str().unwrap(), "--format", "table"]);
    assert!(o.status.success());
    assert!(!o.stdout.iter().any(|&b| b == 0x1b || b == 0x07), "{:?}", stdout(&o));
    assert!(stdout(&o).contains("\\x1b]0;owned"), "{}", stdout(&o));
}

#[test]
fn read_with_an_inventory_names_both_ends() {
    let cap = write_tmp(&http_exchange(b"GET /catalogue HTTP/1.1\r\nHost: catalogue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    let pod = |name: &str, ip: &str, rs: &str| {
        serde_json::json!({"kind": "Pod", "metadata": {"name": name, "namespace": "shop", "labels": {"name": rs.split('-').next().unwrap()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "u", "controller": true}]},
            "spec": {"nodeName": "node-1", "containers": []}, "status": {"podIP": ip}})
    };
    let inv = serde_json::json!({"kind": "List", "items": [
        pod("front-end-7d9f-abcde", "10.0.0.1", "front-end-7d9f"),
        pod("catalogue-5bd9-fghij", "10.0.0.2", "catalogue-5bd9"),
        // the ReplicaSet names its Deployment (no pod-template-hash guessing needed)
        {"kind": "ReplicaSet", "metadata": {"name": "catalogue-5bd9", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "catalogue", "uid": "d", "controller": true}]}, "spec": {"selector": {}}},
        {"kind": "Service", "metadata": {"name": "catalogue", "namespace": "shop"}, "spec": {"selector": {"name": "catalogue"}, "clusterIP": "10.96.0.7"}},
    ]});
    let inv_file = write_tmp(inv.to_string().as_bytes());
    let o = kshark(&["read", cap.path().to_str().unwrap(), "--format", "ndjson", "--inventory", inv_file.path().to_str().unwrap()]);
    no_panic(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = &ndjson(&o)[0];
    assert_eq!(e["src"]["name"], "front-end-7d9f-abcde");
    assert_eq!(e["src"]["namespace"], "shop");
    assert_eq!(e["src"]["pod"]["node"], "node-1");
    assert_eq!(e["dst"]["name"], "catalogue-5bd9-fghij");
    assert_eq!(e["dst"]["pod"]["workload"], serde_json::json!({"kind": "Deployment", "name": "catalogue"}));
    assert_eq!(e["dst"]["service"], serde_json::json!({"name": "catalogue", "namespace": "shop"}));
    // the client backs no Service
    assert!(e["src"]["service"].is_null());
    // without --inventory nothing is named
    let plain = read_ndjson(&std::fs::read(cap.path()).unwrap());
    assert_eq!(plain[0]["src"]["name"], "10.0.0.1");
    // a bad inventory is one line, exit 2
    let bad = write_tmp(b"{\"items\": [{\"kind\": \"Pod\", \"metadata\": {\"name\": 5}}]}");
    let o = kshark(&["read", cap.path().to_str().unwrap(), "--inventory", bad.path().to_str().unwrap()]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("item 0 (Pod)"), "{}", stderr(&o));
}

/// `read --filter` keeps exactly the entries the filter matches (checked against the
/// same condition on the unfiltered output), and a bad filter is exit 2 with its position.
#[test]
fn read_filter_keeps_what_matches_and_a_bad_one_says_where() {
    let pcap = common::corpus().join("pcaps/zeek_http_pipelined-requests.pcap");
    let p = pcap.to_str().unwrap();
    let all = common::ndjson(&common::kshark(&["read", p, "--format", "ndjson"]));
    let want: Vec<&serde_json::Value> = all.iter().filter(|e| e["request"]["path"].as_str().is_some_and(|x| x.ends_with(".css") || x.ends_with(".js"))).collect();
    assert!(!want.is_empty() && want.len() < all.len(), "the capture would not tell");
    let o = common::kshark(&["read", p, "--format", "ndjson", "--filter", "http && (path.endsWith('.css') || path.endsWith('.js'))"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let got = common::ndjson(&o);
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    let o = common::kshark(&["read", p, "--filter", "http && status_code = 200"]);
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(err.contains("position 20") && err.contains("=="), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    no_panic(&o);
}

#[test]
fn secrets_are_masked_by_default_and_redact_says_what() {
    let p = corpus().join("pcaps/sv_http-brotli-ce.pcap");
    let p = p.to_str().unwrap();
    let masked = kshark(&["read", p, "--format", "ndjson"]);
    assert!(masked.status.success(), "{}", stderr(&masked));
    let out = stdout(&masked);
    assert!(!out.contains("NID=511=M4s6") && out.contains("NID=[redacted 175]"), "the cookie is not masked");
    let plain = kshark(&["read", p, "--format", "ndjson", "--redact", "none"]);
    assert!(stdout(&plain).contains("NID=511=M4s6"), "--redact none masked something");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("redact");
    std::fs::write(&rules, "header user-agent\n").unwrap();
    let own = stdout(&kshark(&["read", p, "--format", "ndjson", "--redact", rules.to_str().unwrap()]));
    assert!(own.contains("NID=511=M4s6") && own.contains("\"user-agent\":\"[redacted"), "the file's rules were not what was masked");
    let bad = kshark(&["read", p, "--redact", "/nonexistent/rules"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("say none, default, or a file"), "{}", stderr(&bad));
}
