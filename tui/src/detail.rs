//! The detail pane's text for an entry: the request, the response, and the rest (timing,
//! both ends, anomalies); and the entry as curl or HAR for `y`. Every captured string
//! goes through `terminal_safe` before it is shown.

use base64::Engine;
use kshark_dissect::export::terminal_safe;
use serde_json::Value;

/// Lines of `(key, value)`: a key of "" is a heading or a plain line.
pub type Lines = Vec<(String, String)>;

fn t(v: &Value) -> String {
    match v {
        Value::String(s) => terminal_safe(s),
        Value::Null => "-".into(),
        other => terminal_safe(&other.to_string()),
    }
}

fn kv(out: &mut Lines, k: &str, v: &Value) {
    if !v.is_null() {
        out.push((k.to_string(), t(v)));
    }
}

fn heading(out: &mut Lines, h: &str) {
    out.push((String::new(), String::new()));
    out.push((String::new(), format!("── {h}")));
}

fn headers(out: &mut Lines, title: &str, h: &Value) {
    let Some(h) = h.as_object().filter(|h| !h.is_empty()) else { return };
    heading(out, title);
    for (k, v) in h {
        out.push((terminal_safe(k), t(v)));
    }
}

/// Up to 64 KiB of bytes as a hex dump.
fn hex(out: &mut Lines, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(16).take(4096).enumerate() {
        let hexs: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk.iter().map(|b| if b.is_ascii_graphic() || *b == b' ' { *b as char } else { '.' }).collect();
        out.push((String::new(), format!("{:08x}  {:<47}  {ascii}", i * 16, hexs.join(" "))));
    }
}

fn body(out: &mut Lines, b: &Value) {
    let Some(b) = b.as_object() else { return };
    let size = b.get("size").and_then(Value::as_u64).unwrap_or(0);
    let mime = b.get("mime").and_then(Value::as_str).unwrap_or("");
    let cut = if b.get("truncated").and_then(Value::as_bool) == Some(true) { ", truncated" } else { "" };
    heading(out, &format!("body: {size} bytes {}{cut}", terminal_safe(mime)));
    if let Some(text) = b.get("text").and_then(Value::as_str) {
        // JSON pretty-printed; anything else line by line
        let pretty = serde_json::from_str::<Value>(text).ok().filter(|v| v.is_object() || v.is_array()).and_then(|v| serde_json::to_string_pretty(&v).ok());
        for line in pretty.as_deref().unwrap_or(text).lines() {
            out.push((String::new(), terminal_safe(line)));
        }
    } else if let Some(b64) = b.get("base64").and_then(Value::as_str) {
        match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(bytes) => hex(out, &bytes),
            Err(_) => out.push((String::new(), "(base64 that does not decode)".into())),
        }
    }
}

fn messages(out: &mut Lines, m: &Value) {
    let Some(m) = m.as_array().filter(|m| !m.is_empty()) else { return };
    heading(out, &format!("{} gRPC message{}", m.len(), if m.len() == 1 { "" } else { "s" }));
    for (i, msg) in m.iter().enumerate() {
        let size = msg.get("size").and_then(Value::as_u64).unwrap_or(0);
        out.push((format!("#{}", i + 1), format!("{size} bytes{}", if msg.get("compressed").and_then(Value::as_bool) == Some(true) { ", compressed" } else { "" })));
        if let Some(j) = msg.get("json").or(msg.get("fields")) {
            for line in serde_json::to_string_pretty(j).unwrap_or_default().lines() {
                out.push((String::new(), terminal_safe(line)));
            }
        } else if let Some(b) = msg.get("base64").and_then(Value::as_str).and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()) {
            hex(out, &b);
        }
    }
}

fn records(out: &mut Lines, title: &str, r: &Value) {
    let Some(r) = r.as_array().filter(|r| !r.is_empty()) else { return };
    heading(out, title);
    for x in r {
        let f = |k: &str| x.get(k).map(t).unwrap_or_default();
        out.push((f("type"), format!("{}  {}{}", f("name"), f("data"), x.get("ttl").map(|v| format!("  ttl {v}")).unwrap_or_default())));
    }
}

fn side(e: &Value, which: &str) -> Lines {
    let mut out = Lines::new();
    let Some(r) = e.get(which).filter(|r| r.is_object()) else {
        out.push((String::new(), format!("no {which} was seen")));
        return out;
    };
    if !matches!(e.get("protocol").and_then(Value::as_str), Some("http" | "grpc" | "dns")) {
        fields(&mut out, r);
        return out;
    }
    for k in ["method", "url", "host", "path", "service", "status_code", "reason", "grpc_status", "grpc_message", "id", "opcode", "rcode", "truncated"] {
        if let Some(v) = r.get(k) {
            kv(&mut out, k, v);
        }
    }
    if let Some(q) = r.get("questions") {
        records(&mut out, "questions", q);
    }
    records(&mut out, "answers", r.get("answers").unwrap_or(&Value::Null));
    records(&mut out, "authorities", r.get("authorities").unwrap_or(&Value::Null));
    records(&mut out, "additionals", r.get("additionals").unwrap_or(&Value::Null));
    headers(&mut out, "headers", r.get("headers").unwrap_or(&Value::Null));
    messages(&mut out, r.get("messages").unwrap_or(&Value::Null));
    headers(&mut out, "trailers", r.get("trailers").unwrap_or(&Value::Null));
    body(&mut out, r.get("body").unwrap_or(&Value::Null));
    out
}

/// Another protocol's fields (Redis, PostgreSQL, Kafka, ...): scalars as rows, bodies as
/// bodies, the rest (arguments, documents, properties) as indented JSON.
fn fields(out: &mut Lines, r: &Value) {
    let Some(o) = r.as_object() else { return };
    for (k, v) in o.iter().filter(|(_, v)| !v.is_object() && !v.is_array()) {
        out.push((terminal_safe(k), t(v)));
    }
    for (k, v) in o.iter().filter(|(_, v)| v.is_object() || v.is_array()) {
        if v.get("size").is_some() && (v.get("text").is_some() || v.get("base64").is_some()) && v.get("mime").is_some() {
            heading(out, k);
            body(out, v);
            continue;
        }
        heading(out, k);
        for line in serde_json::to_string_pretty(v).unwrap_or_default().lines().take(4096) {
            out.push((String::new(), terminal_safe(line)));
        }
    }
}

pub fn request(e: &Value) -> Lines {
    side(e, "request")
}

pub fn response(e: &Value) -> Lines {
    side(e, "response")
}

/// Timing, both ends, the connection and anomalies.
pub fn info(e: &Value) -> Lines {
    let mut out = Lines::new();
    for k in [
        "id",
        "timestamp",
        "protocol",
        "http_version",
        "transport",
        "elapsed_time",
        "server_elapsed_time",
        "network_time",
        "request_size",
        "response_size",
        "node",
        "nodes",
        "observed",
        "capture_source",
        "conn_id",
    ] {
        if let Some(v) = e.get(k) {
            match k {
                // the client waited, the server took: both sides' observations joined
                "elapsed_time" | "server_elapsed_time" | "network_time" => kv(&mut out, &format!("{k} µs"), v),
                "nodes" => out.push(("nodes".into(), v.as_array().map(|a| a.iter().map(t).collect::<Vec<_>>().join(", ")).unwrap_or_default())),
                _ => kv(&mut out, k, v),
            }
        }
    }
    let anomalies = e.get("anomalies").and_then(Value::as_array).map(|a| a.iter().map(t).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    out.push(("anomalies".into(), if anomalies.is_empty() { "none".into() } else { anomalies }));
    for end in ["src", "dst"] {
        heading(&mut out, if end == "src" { "source" } else { "destination" });
        let v = e.get(end).unwrap_or(&Value::Null);
        for k in ["ip", "port", "name", "namespace"] {
            kv(&mut out, k, v.get(k).unwrap_or(&Value::Null));
        }
        if let Some(p) = v.get("pod").filter(|p| p.is_object()) {
            kv(&mut out, "pod", &p["name"]);
            kv(&mut out, "node", &p["node"]);
            if let Some(w) = p.get("workload").filter(|w| w.is_object()) {
                out.push(("workload".into(), format!("{} {}", t(&w["kind"]), t(&w["name"]))));
            }
            if let Some(l) = p.get("labels").and_then(Value::as_object) {
                out.push(("labels".into(), l.iter().map(|(k, v)| format!("{}={}", terminal_safe(k), t(v))).collect::<Vec<_>>().join(" ")));
            }
        }
        if let Some(s) = v.get("service").filter(|s| s.is_object()) {
            kv(&mut out, "service", &s["name"]);
        }
    }
    out
}

/// A shell-quoted word.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The request as a curl command (HTTP entries).
pub fn curl(e: &Value) -> Option<String> {
    if e.get("protocol").and_then(Value::as_str) != Some("http") {
        return None;
    }
    let r = e.get("request").filter(|r| r.is_object())?;
    let host = r.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()).map(str::to_string).unwrap_or_else(|| {
        let d = &e["dst"];
        format!("{}:{}", d["ip"].as_str().unwrap_or(""), d["port"].as_u64().unwrap_or(80))
    });
    let url = format!("http://{host}{}", r.get("url").and_then(Value::as_str).unwrap_or("/"));
    let mut cmd = format!("curl -X {} {}", sq(r.get("method").and_then(Value::as_str).unwrap_or("GET")), sq(&url));
    for (k, v) in r.get("headers").and_then(Value::as_object).into_iter().flatten() {
        if !matches!(k.as_str(), "host" | "content-length") && !k.starts_with(':') {
            cmd.push_str(&format!(" \\\n  -H {}", sq(&format!("{k}: {}", v.as_str().unwrap_or("")))));
        }
    }
    if let Some(text) = r.pointer("/body/text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        cmd.push_str(&format!(" \\\n  --data-binary {}", sq(text)));
    }
    Some(cmd)
}

/// The entry as a HAR 1.2 document (HTTP entries).
pub fn har(e: &Value) -> Option<String> {
    let entry = kshark_dissect::export::har::entry_json(e)?;
    let doc = serde_json::json!({"log": {"version": "1.2", "creator": {"name": "kshark", "version": env!("CARGO_PKG_VERSION")}, "entries": [entry]}});
    serde_json::to_string_pretty(&doc).ok()
}

#[cfg(test)]
mod other_protocols {
    use super::*;

    #[test]
    fn fields_of_other_protocols_are_shown_and_made_safe() {
        let e = serde_json::json!({"protocol": "postgresql", "request": {"method": "Query", "target": "users", "query": "SELECT 1 \u{1b}[31m", "parameters": ["7"]},
                                   "response": {"status": "42P01", "error": {"code": "42P01", "message": "no"}, "rows": 0}});
        let req = request(&e);
        assert!(req.iter().any(|(k, v)| k == "method" && v == "Query"));
        assert!(req.iter().any(|(k, v)| k == "query" && !v.contains('\u{1b}')), "{req:?}");
        assert!(req.iter().any(|(_, v)| v.contains("\"7\"")), "{req:?}");
        let resp = response(&e);
        assert!(resp.iter().any(|(k, v)| k == "status" && v == "42P01"));
        assert!(resp.iter().any(|(_, v)| v.contains("\"code\": \"42P01\"")), "{resp:?}");
    }
}
