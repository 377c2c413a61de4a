//! Real HTTP/2 and gRPC peers on loopback, recorded with tcpdump, read back by kshark.
//!
//! - HTTP/2: Debian's `nghttpd` (server) and `nghttp` (client), prior knowledge, three
//!   concurrent streams on one connection (a page, a 100 kB file, a 404) and a POST.
//! - gRPC: Python `grpcio` (tests/peers/grpc_peer.py, from the venv that scripts/setup.sh
//!   makes), unary, client-, server- and bidirectional streaming, a failing call, and
//!   gzip-compressed messages; read with and without `--proto tests/peers/echo.proto`.
//!
//! They need root (tcpdump on `lo`), tcpdump, nghttp2's tools and the venv; when one is
//! missing they fail and say which (`sudo bash scripts/setup.sh` installs them all).

mod common;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};


use common::peer::{free_port, need, read, wait_port, Tcpdump};
use common::Kill as Killed;

fn venv_python() -> PathBuf {
    common::peer::venv_python("grpc")
}

#[test]
fn http2_nghttp_to_nghttpd() {
    let (nghttp, nghttpd) = (need("nghttp"), need("nghttpd"));
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "<h1>kshark</h1>\n").unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.path().join("big.bin"), &big).unwrap();
    std::fs::write(root.path().join("post.json"), "{\"a\": 1}\n").unwrap();
    let port = free_port();
    let cap = Tcpdump::start(&format!("tcp port {port}"));
    let _server = Killed(
        Command::new(nghttpd)
            .args(["--no-tls", "-d", root.path().to_str().unwrap(), &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nghttpd"),
    );
    wait_port(port);
    let base = format!("http://127.0.0.1:{port}");
    let st = Command::new(&nghttp)
        .args(["-n", &format!("{base}/index.html"), &format!("{base}/big.bin"), &format!("{base}/missing?x=1")])
        .status()
        .unwrap();
    assert!(st.success(), "nghttp failed");
    let st = Command::new(&nghttp).args(["-n", "-d", root.path().join("post.json").to_str().unwrap(), &format!("{base}/index.html")]).status().unwrap();
    assert!(st.success(), "nghttp POST failed");
    let (pcap, _keep) = cap.stop();
    let entries: Vec<Value> = read(&pcap, &[]).into_iter().filter(|e| e["dst"]["port"] == json!(port)).collect();
    let find = |m: &str, url: &str| {
        entries
            .iter()
            .find(|e| e["request"]["method"] == json!(m) && e["request"]["url"] == json!(url))
            .unwrap_or_else(|| panic!("no entry for {m} {url} in {entries:#?}"))
    };
    for e in &entries {
        assert_eq!(e["http_version"], "2");
        assert_eq!(e["protocol"], "http");
        assert_eq!(e["anomalies"], json!([]), "{e:#}");
        assert_eq!(e["request"]["host"], json!(format!("127.0.0.1:{port}")));
        assert!(e["elapsed_time"].as_u64().is_some());
    }
    assert_eq!(entries.len(), 4, "{entries:#?}");
    let idx = find("GET", "/index.html");
    assert_eq!(idx["response"]["status_code"], 200);
    assert_eq!(idx["response"]["body"]["text"], "<h1>kshark</h1>\n");
    let b = find("GET", "/big.bin");
    assert_eq!(b["response"]["body"]["size"], 100_000);
    assert!(b["response_size"].as_u64().unwrap() > 100_000);
    let m = find("GET", "/missing?x=1");
    assert_eq!(m["response"]["status_code"], 404);
    assert_eq!(m["request"]["path"], "/missing");
    assert_eq!(m["request"]["query_string"], "x=1");
    // the three GETs were concurrent streams on one connection
    assert_eq!(idx["conn_id"], b["conn_id"]);
    assert_eq!(idx["conn_id"], m["conn_id"]);
    let ids: std::collections::BTreeSet<u64> = [idx, b, m].iter().map(|e| e["request"]["http2"]["stream_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    let p = find("POST", "/index.html");
    assert_eq!(p["request"]["body"]["text"], "{\"a\": 1}\n");
    assert_ne!(p["conn_id"], idx["conn_id"]);
}

#[test]
fn grpc_python_peers() {
    let py = venv_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/grpc_peer.py");
    let port = free_port();
    let cap = Tcpdump::start(&format!("tcp port {port}"));
    let out = Command::new(py).arg(&script).arg(port.to_string()).output().expect("run grpc_peer.py");
    assert!(out.status.success(), "grpc_peer.py failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT_FOUND"), "{}", String::from_utf8_lossy(&out.stdout));
    let (pcap, _keep) = cap.stop();

    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/echo.proto");
    let typed = read(&pcap, &["--proto", proto.to_str().unwrap()]);
    let call = |entries: &[Value], m: &str| -> Value {
        entries
            .iter()
            .find(|e| e["request"]["method"] == json!(m))
            .unwrap_or_else(|| panic!("no {m} call in {entries:#?}"))
            .clone()
    };
    assert_eq!(typed.len(), 5, "{typed:#?}");
    let jsons = |e: &Value, side: &str| -> Vec<Value> {
        e[side]["messages"].as_array().unwrap().iter().map(|m| m["json"].clone()).collect()
    };
    for e in &typed {
        assert_eq!(e["protocol"], "grpc");
        assert_eq!(e["http_version"], "2");
        assert_eq!(e["request"]["service"], "kshark.test.Echo");
        assert_eq!(e["request"]["path"], json!(format!("/kshark.test.Echo/{}", e["request"]["method"].as_str().unwrap())));
        assert_eq!(e["response"]["status_code"], 200);
        assert_eq!(e["anomalies"], json!([]), "{e:#}");
    }
    let u = call(&typed, "Unary");
    assert_eq!(u["response"]["grpc_status"], 0);
    assert_eq!(jsons(&u, "request"), vec![json!({"text": "hello 0", "n": 7})]);
    assert_eq!(jsons(&u, "response"), vec![json!({"text": "echo hello 0", "seq": 7})]);
    assert_eq!(u["request"]["messages"][0]["message_type"], "kshark.test.Req");
    let c = call(&typed, "ClientStream");
    assert_eq!(jsons(&c, "request").len(), 3);
    assert_eq!(jsons(&c, "response"), vec![json!({"text": "a+b+c", "seq": 3})]);
    let s = call(&typed, "ServerStream");
    let replies = s["response"]["messages"].as_array().unwrap();
    assert_eq!(replies.len(), 3);
    assert_eq!(s["response"]["headers"]["grpc-encoding"], "gzip");
    for (i, m) in replies.iter().enumerate() {
        assert_eq!(m["compressed"], true, "the server compresses its replies");
        assert_eq!(m["json"]["text"], json!(format!("tick #{i} {}", "x".repeat(40))));
    }
    let b = call(&typed, "Bidi");
    assert_eq!(jsons(&b, "request"), vec![json!({"text": "ping", "n": 1}), json!({"text": "pong", "n": 2})]);
    assert_eq!(jsons(&b, "response"), vec![json!({"text": "PING", "seq": 1}), json!({"text": "PONG", "seq": 2})]);
    let f = call(&typed, "Fail");
    assert_eq!(f["response"]["grpc_status"], 5);
    assert_eq!(f["response"]["grpc_message"], "no such thing: café");
    assert_eq!(f["response"]["messages"], json!([]));
    // all five calls shared one connection
    assert!(typed.iter().all(|e| e["conn_id"] == u["conn_id"]));

    // without the schema: the wire view
    let raw = read(&pcap, &[]);
    let u = call(&raw, "Unary");
    assert_eq!(
        u["request"]["messages"][0]["fields"],
        json!([{"field": 1, "wire_type": "len", "string": "hello 0"}, {"field": 2, "wire_type": "varint", "value": 7}])
    );
    let s = call(&raw, "ServerStream");
    assert_eq!(s["response"]["messages"][2]["fields"][1], json!({"field": 2, "wire_type": "varint", "value": 2}));
}
