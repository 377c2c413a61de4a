//! HAR 1.2 (the HTTP Archive format browsers and proxies read), written as a stream.

use crate::entry::{Entry, Request};
use serde_json::{json, Value};
use std::io::{self, Write};

fn headers(h: Option<&Value>) -> Value {
    Value::Array(h.and_then(Value::as_object).into_iter().flatten().map(|(n, v)| json!({"name": n, "value": v})).collect())
}

fn query(q: &str) -> Value {
    Value::Array(
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                json!({"name": n, "value": v})
            })
            .collect(),
    )
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn content(b: &Value) -> Value {
    let mut c = json!({"size": b.get("size").and_then(Value::as_u64).unwrap_or(0), "mimeType": str_at(b, "/mime")});
    if let Some(t) = b.get("text").filter(|t| t.is_string()) {
        c["text"] = t.clone();
    } else if let Some(t) = b.get("base64").filter(|t| t.is_string()) {
        c["text"] = t.clone();
        c["encoding"] = json!("base64");
    }
    if b.get("truncated").and_then(Value::as_bool).unwrap_or(false) {
        c["comment"] = json!("truncated by kshark's body cap or by capture loss");
    }
    c
}

/// The HAR entry of an HTTP entry (None for other protocols).
pub fn entry(e: &Entry) -> Option<Value> {
    if !matches!(e.request.as_deref(), Some(Request::Http(_))) {
        return None;
    }
    entry_json(&serde_json::to_value(e).ok()?)
}

/// The HAR entry of an HTTP entry in its JSON form, as the hub serves it (None for other
/// protocols).
pub fn entry_json(e: &Value) -> Option<Value> {
    let r = e.get("request").filter(|r| r.is_object() && str_at(e, "/protocol") == "http")?;
    let version = format!("HTTP/{}", e.get("http_version").and_then(Value::as_str).unwrap_or("1.1"));
    let url = str_at(r, "/url");
    let url = if url.contains("://") {
        url.to_string()
    } else {
        let host = r.get("host").and_then(Value::as_str).map_or_else(|| format!("{}:{}", str_at(e, "/dst/ip"), e.pointer("/dst/port").and_then(Value::as_u64).unwrap_or(0)), str::to_string);
        format!("http://{host}{url}")
    };
    let body = r.get("body").cloned().unwrap_or_default();
    let body_size = body.get("size").and_then(Value::as_u64).unwrap_or(0);
    let mut req = json!({
        "method": str_at(r, "/method"), "url": url, "httpVersion": version, "cookies": [],
        "headers": headers(r.get("headers")), "queryString": query(str_at(r, "/query_string")),
        "headersSize": -1, "bodySize": body_size,
    });
    if body_size > 0 {
        let c = content(&body);
        req["postData"] = json!({"mimeType": c["mimeType"], "text": c.get("text").cloned().unwrap_or(json!("")), "params": []});
    }
    let resp = match e.get("response").filter(|s| s.is_object() && s.get("status_code").is_some()) {
        Some(s) => json!({
            "status": s.get("status_code").and_then(Value::as_u64).unwrap_or(0), "statusText": str_at(s, "/reason"),
            "httpVersion": version, "cookies": [], "headers": headers(s.get("headers")),
            "content": content(s.get("body").unwrap_or(&Value::Null)), "redirectURL": str_at(s, "/headers/location"),
            "headersSize": -1, "bodySize": s.pointer("/body/size").and_then(Value::as_u64).unwrap_or(0),
        }),
        // HAR has no way to say "no response": status 0, as browsers write for aborted requests
        _ => json!({"status": 0, "statusText": "", "httpVersion": version, "cookies": [], "headers": [],
                    "content": {"size": 0, "mimeType": ""}, "redirectURL": "", "headersSize": -1, "bodySize": -1,
                    "_error": "no response seen"}),
    };
    let time_ms = e.get("elapsed_time").and_then(Value::as_u64).map(|us| us as f64 / 1000.0).unwrap_or(-1.0);
    Some(json!({
        "startedDateTime": str_at(e, "/timestamp"),
        "time": time_ms.max(0.0),
        "request": req,
        "response": resp,
        "cache": {},
        "timings": {"send": 0, "wait": time_ms.max(0.0), "receive": 0},
        "serverIPAddress": str_at(e, "/dst/ip"),
        "connection": str_at(e, "/conn_id"),
        "_kshark_id": str_at(e, "/id"),
        "_anomalies": e.get("anomalies").cloned().unwrap_or(json!([])),
    }))
}

/// Writes a HAR document one entry at a time, so any number of entries fit.
pub struct HarWriter<W: Write> {
    out: W,
    first: bool,
}

impl<W: Write> HarWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        write!(out, r#"{{"log":{{"version":"1.2","creator":{{"name":"kshark","version":"{}"}},"entries":["#, env!("CARGO_PKG_VERSION"))?;
        Ok(HarWriter { out, first: true })
    }

    /// Adds an entry; entries of other protocols than HTTP are skipped (returns false).
    pub fn add(&mut self, e: &Entry) -> io::Result<bool> {
        self.add_json(entry(e))
    }

    /// Adds an entry in its JSON form; other protocols than HTTP are skipped (false).
    pub fn add_value(&mut self, e: &Value) -> io::Result<bool> {
        self.add_json(entry_json(e))
    }

    fn add_json(&mut self, v: Option<Value>) -> io::Result<bool> {
        let Some(v) = v else { return Ok(false) };
        if !self.first {
            self.out.write_all(b",\n")?;
        } else {
            self.out.write_all(b"\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, &v)?;
        Ok(true)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"\n]}}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}
