//! HAR 1.2 (the HTTP Archive format browsers and proxies read), written as a stream.

use crate::entry::{Body, Entry, Headers, Request, Response};
use serde_json::{json, Value};
use std::io::{self, Write};

fn headers(h: &Headers) -> Value {
    Value::Array(h.0.iter().map(|(n, v)| json!({"name": n, "value": v})).collect())
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

fn content(b: &Body) -> Value {
    let mut c = json!({"size": b.size, "mimeType": b.mime.clone().unwrap_or_default()});
    if let Some(t) = &b.text {
        c["text"] = json!(t);
    } else if let Some(t) = &b.base64 {
        c["text"] = json!(t);
        c["encoding"] = json!("base64");
    }
    if b.truncated {
        c["comment"] = json!("truncated by kshark's body cap or by capture loss");
    }
    c
}

/// The HAR entry of an HTTP entry (None for other protocols).
pub fn entry(e: &Entry) -> Option<Value> {
    let Some(Request::Http(r)) = &e.request else { return None };
    let version = format!("HTTP/{}", e.http_version.map(|v| v.as_str()).unwrap_or("1.1"));
    let url = if r.url.contains("://") {
        r.url.clone()
    } else {
        format!("http://{}{}", r.host.clone().unwrap_or_else(|| format!("{}:{}", e.dst.ip, e.dst.port)), r.url)
    };
    let mut req = json!({
        "method": r.method, "url": url, "httpVersion": version, "cookies": [],
        "headers": headers(&r.headers), "queryString": query(&r.query_string),
        "headersSize": -1, "bodySize": r.body.size,
    });
    if r.body.size > 0 {
        let c = content(&r.body);
        req["postData"] = json!({"mimeType": c["mimeType"], "text": c.get("text").cloned().unwrap_or(json!("")), "params": []});
    }
    let resp = match &e.response {
        Some(Response::Http(s)) => json!({
            "status": s.status_code, "statusText": s.reason.clone().unwrap_or_default(),
            "httpVersion": version, "cookies": [], "headers": headers(&s.headers),
            "content": content(&s.body), "redirectURL": s.headers.get("location").unwrap_or(""),
            "headersSize": -1, "bodySize": s.body.size,
        }),
        // HAR has no way to say "no response": status 0, as browsers write for aborted requests
        _ => json!({"status": 0, "statusText": "", "httpVersion": version, "cookies": [], "headers": [],
                    "content": {"size": 0, "mimeType": ""}, "redirectURL": "", "headersSize": -1, "bodySize": -1,
                    "_error": "no response seen"}),
    };
    let time_ms = e.elapsed_time.map(|us| us as f64 / 1000.0).unwrap_or(-1.0);
    Some(json!({
        "startedDateTime": e.timestamp.to_string(),
        "time": time_ms.max(0.0),
        "request": req,
        "response": resp,
        "cache": {},
        "timings": {"send": 0, "wait": time_ms.max(0.0), "receive": 0},
        "serverIPAddress": e.dst.ip.to_string(),
        "connection": e.conn_id,
        "_kshark_id": e.id,
        "_anomalies": e.anomalies,
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
        let Some(v) = entry(e) else { return Ok(false) };
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
