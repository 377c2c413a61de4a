//! gRPC and HTTP/2 in the shared corpus, beyond what score.py grades:
//! - typed messages with `--proto` against the values tshark decoded (`oracle/*.protobuf.txt`);
//! - every HTTP/2 and gRPC record of DeepFlow's own expectations (`expected/deepflow/`),
//!   mid-connection captures included: stream id, path, status, grpc-status;
//! - `--proto` given a folder, a file, a descriptor set, or something broken.

mod common;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

fn read(pcap: &str, extra: &[&str]) -> Vec<Value> {
    let c = common::corpus();
    let path = c.join("pcaps").join(pcap);
    let mut args = vec!["read", path.to_str().unwrap(), "--format", "ndjson"];
    args.extend_from_slice(extra);
    let o = common::kshark(&args);
    assert!(o.status.success(), "{pcap}: {}", common::stderr(&o));
    common::ndjson(&o)
}

/// Leaf values of tshark's protobuf tree: (field name, value), defaults left out (proto3
/// JSON leaves them out too).
fn oracle_leaves(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix("Field(") else { continue };
        let Some((_, rest)) = rest.split_once("): ") else { continue };
        let Some((name, rest)) = rest.split_once(" = ") else { continue };
        let Some(open) = rest.rfind(" (") else { continue };
        let (value, ty) = (&rest[..open], rest[open + 2..].trim_end_matches(')'));
        let value = match ty {
            "enum" => value.split('(').next().unwrap().to_string(),
            "string" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "sint32" | "sint64" => value.to_string(),
            _ => continue,
        };
        let default = value.is_empty() || value == "0" || value == "false" || (ty == "enum" && rest[..open].ends_with("(0)"));
        if !default {
            out.push((name.to_string(), value));
        }
    }
    out
}

fn json_leaves(v: &Value, key: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| json_leaves(v, k, out)),
        Value::Array(a) => a.iter().for_each(|v| json_leaves(v, key, out)),
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Number(n) => out.push((key.to_string(), n.to_string())),
        Value::Bool(b) => out.push((key.to_string(), b.to_string())),
        Value::Null => {}
    }
}

fn typed_matches_tshark(pcap: &str, protos: &str, want_types: &[&str]) {
    let c = common::corpus();
    let entries = read(pcap, &["--proto", c.join("protos").join(protos).to_str().unwrap()]);
    let mut got = Vec::new();
    let mut types = Vec::new();
    for e in &entries {
        for side in ["request", "response"] {
            for m in e[side]["messages"].as_array().into_iter().flatten() {
                if m["truncated"] == true {
                    // cut short by the capture: shown as bytes, as tshark does not decode it either
                    assert!(m["base64"].is_string());
                    continue;
                }
                assert!(m["json"].is_object(), "{pcap}: a message was not decoded with the schema: {m}");
                types.push(m["message_type"].as_str().unwrap().to_string());
                json_leaves(&m["json"], "", &mut got);
            }
        }
    }
    assert_eq!(types, want_types, "{pcap}: message types");
    let oracle = std::fs::read_to_string(c.join("oracle").join(format!("{pcap}.protobuf.txt"))).unwrap();
    let want = oracle_leaves(&oracle);
    assert!(!want.is_empty());
    let mut have: HashMap<(String, String), usize> = HashMap::new();
    for l in got {
        *have.entry(l).or_default() += 1;
    }
    for w in want {
        let n = have.get_mut(&w).unwrap_or_else(|| panic!("{pcap}: tshark shows {} = {:?}; kshark's messages do not", w.0, w.1));
        assert!(*n > 0, "{pcap}: {} = {:?} appears more often in tshark's reading", w.0, w.1);
        *n -= 1;
    }
}

#[test]
fn hipstershop_get_cart_typed_like_tshark() {
    typed_matches_tshark("deepflow_h2c_ascii.pcap", "hipstershop", &["hipstershop.GetCartRequest", "hipstershop.Cart"]);
}

#[test]
fn deepflow_agent_sync_typed_like_tshark() {
    typed_matches_tshark("deepflow_grpc-unary.pcap", "deepflow", &["agent.SyncRequest"]);
}

#[test]
fn schema_less_view_of_get_cart() {
    let e = &read("deepflow_h2c_ascii.pcap", &[])[0];
    assert_eq!(
        e["request"]["messages"][0]["fields"],
        serde_json::json!([{"field": 1, "wire_type": "len", "string": "23c6f77d-9e74-44e5-ad2a-617d18bf19dc"}])
    );
    // Cart { items: [CartItem { product_id, quantity }] }: a nested message
    let items = &e["response"]["messages"][0]["fields"][0];
    assert_eq!(items["field"], 2);
    assert_eq!(items["message"][0]["string"], "1YMWWN1N4O");
    assert_eq!(items["message"][1]["value"], 5);
    // grpc-*-bin metadata is kept as sent
    assert!(e["request"]["headers"]["grpc-trace-bin"].as_str().unwrap().starts_with("AADG6Vae"));
}

/// One HTTP/2 record of DeepFlow's expectations: what it says of a stream.
#[derive(Debug, Default)]
struct Record {
    proto: String,
    stream: u64,
    path: String,
    status: Option<u64>,
    grpc_status: Option<u64>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}: "))? + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn some_int(v: Option<&str>) -> Option<u64> {
    v?.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok()
}

fn deepflow_records(file: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let proto = field(line, "proto").unwrap_or("");
        if !matches!(proto, "Grpc" | "Http2") || !line.ends_with("is_http: true") {
            continue;
        }
        let path = line.split(" path: \"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string();
        out.push(Record {
            proto: proto.to_string(),
            stream: some_int(field(line, "stream_id")).expect("stream id"),
            path,
            status: some_int(field(line, "status_code")),
            grpc_status: some_int(field(line, "grpc_status_code")),
        });
    }
    out
}

#[test]
fn deepflow_http2_records_agree() {
    let c = common::corpus();
    let mut checked = 0;
    for name in ["deepflow_grpc-unary.pcap", "deepflow_grpc-server-stream.pcap", "deepflow_grpc-service-name.pcap", "deepflow_h2c_ascii.pcap", "deepflow_httpv2-stream-id.pcap"] {
        let entries = read(name, &[]);
        let dir = c.join("expected/deepflow").join(name);
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            // the "as-unary" variant is DeepFlow configured to stop at the first reply
            if f.to_string_lossy().contains("as-unary") {
                continue;
            }
            for r in deepflow_records(&f) {
                let e = entries
                    .iter()
                    .find(|e| e["request"]["http2"]["stream_id"] == r.stream)
                    .unwrap_or_else(|| panic!("{name}: no entry for stream {} ({r:?})", r.stream));
                assert_eq!(e["protocol"], if r.proto == "Grpc" { "grpc" } else { "http" }, "{name} {r:?}");
                if !r.path.is_empty() {
                    let p = if r.proto == "Grpc" { &e["request"]["path"] } else { &e["request"]["url"] };
                    assert_eq!(p, &Value::from(r.path.clone()), "{name}");
                }
                if let Some(s) = r.status {
                    assert_eq!(e["response"]["status_code"], s, "{name}");
                }
                if let Some(g) = r.grpc_status {
                    assert_eq!(e["response"]["grpc_status"], g, "{name}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} DeepFlow records checked");
}

#[test]
fn joined_mid_connection_keeps_what_is_known() {
    // one HEADERS frame of a SkyWalking call, stream 1392369, whose names and values mostly
    // sit in a dynamic table the capture never saw
    let es = read("deepflow_httpv2-stream-id.pcap", &[]);
    assert_eq!(es.len(), 1);
    let e = &es[0];
    assert!(e["anomalies"].as_array().unwrap().contains(&Value::from("hpack_desync")));
    assert_eq!(e["request"]["method"], "POST");
    assert_eq!(e["request"]["headers"][":scheme"], "http");
    let unresolved = e["request"]["unresolved_headers"].as_array().unwrap();
    assert_eq!(unresolved.len(), 7, "tshark counts 7 unknown fields too");
    assert!(unresolved.iter().any(|u| u["value"] == "/skywalking.v3.ProfileTask/collectSnapshot"));
    assert_eq!(e["request"]["path"], "", "the path's name is unknown: not guessed");
}

#[test]
fn proto_sources_and_errors() {
    let c = common::corpus();
    let pcap = c.join("pcaps/deepflow_h2c_ascii.pcap");
    let pcap = pcap.to_str().unwrap();
    // one .proto file
    let file = c.join("protos/hipstershop/demo.proto");
    let o = common::kshark(&["read", pcap, "--format", "ndjson", "--proto", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::ndjson(&o)[0]["response"]["messages"][0]["json"]["items"][0]["product_id"], "1YMWWN1N4O");
    // a descriptor set, as protoc --descriptor_set_out writes it
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("demo.pb");
    let mut comp = protox::Compiler::new([c.join("protos/hipstershop")]).unwrap();
    comp.include_imports(true).open_file("demo.proto").unwrap();
    std::fs::write(&set, comp.encode_file_descriptor_set()).unwrap();
    let o = common::kshark(&["read", pcap, "--format", "ndjson", "--proto", set.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::ndjson(&o)[0]["request"]["messages"][0]["message_type"], "hipstershop.GetCartRequest");
    // broken: a syntax error, a missing path, a file that is neither
    let bad = dir.path().join("bad.proto");
    std::fs::write(&bad, "syntax = \"proto3\";\nmessage X { int32 = 1; }\n").unwrap();
    for (p, says) in [(bad.to_str().unwrap(), "bad.proto"), ("/no/such/dir", "No such file"), (pcap, "not a .proto file nor a descriptor set")] {
        let o = common::kshark(&["read", pcap, "--proto", p]);
        assert_eq!(o.status.code(), Some(2), "--proto {p}");
        let err = common::stderr(&o);
        assert!(err.contains(says) && err.lines().count() == 1, "--proto {p}: {err}");
    }
    // a schema that does not know the method: the wire view, no error
    let o = common::kshark(&["read", pcap, "--format", "ndjson", "--proto", c.join("protos/deepflow").to_str().unwrap()]);
    let e = &common::ndjson(&o)[0];
    assert!(e["request"]["messages"][0]["fields"].is_array());
}
