//! What the protocols outside schema 1 share: their values as JSON (text, or base64 when
//! not UTF-8; capped, with `truncated`), and the pairing of requests with replies into
//! entries, in order or by an id.

use crate::entry::{Anomaly, Fields, Protocol, Request, Response};
use crate::flow::Dir;
use crate::stream::Cx;
use crate::time::Timestamp;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::VecDeque;

/// Bytes from the wire as a JSON value: a string when they are UTF-8 and within `cap`;
/// else `{"base64"}` and/or `{"truncated": true, "size"}`.
pub fn value(b: &[u8], cap: usize) -> Value {
    let cut = &b[..b.len().min(cap)];
    let whole = cut.len() == b.len();
    match std::str::from_utf8(cut) {
        Ok(s) if whole => Value::String(s.to_string()),
        Ok(s) => json!({"text": s, "size": b.len(), "truncated": true}),
        // a cut may fall inside a character: keep the valid prefix as text
        Err(e) if !whole && e.error_len().is_none() => json!({"text": std::str::from_utf8(&cut[..e.valid_up_to()]).unwrap_or(""), "size": b.len(), "truncated": true}),
        Err(_) => {
            let mut v = json!({"base64": base64::engine::general_purpose::STANDARD.encode(cut)});
            if !whole {
                v["size"] = json!(b.len());
                v["truncated"] = json!(true);
            }
            v
        }
    }
}

/// The first bytes of a value whose whole length is `size` (more than were kept): as
/// [`value`] gives them, marked truncated with the whole size.
pub fn value_part(b: &[u8], size: usize, cap: usize) -> Value {
    let mut v = value(b, cap);
    if size > b.len() {
        if let Value::String(s) = v {
            v = json!({"text": s});
        }
        v["size"] = json!(size);
        v["truncated"] = json!(true);
    }
    v
}

/// Text that must be a string (a name, a command): lossy UTF-8, capped.
pub fn text(b: &[u8], cap: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(cap)]).into_owned()
}

/// A payload as the entry's `body` object.
pub fn body(b: &[u8], cap: usize, mime: Option<&str>) -> Value {
    let cut = &b[..b.len().min(cap)];
    let mut o = json!({"size": b.len(), "mime": mime, "encoding": null});
    match std::str::from_utf8(cut) {
        Ok(s) => o["text"] = json!(s),
        Err(e) if cut.len() < b.len() && e.error_len().is_none() => o["text"] = json!(std::str::from_utf8(&cut[..e.valid_up_to()]).unwrap_or("")),
        Err(_) => o["base64"] = json!(base64::engine::general_purpose::STANDARD.encode(cut)),
    }
    o["truncated"] = json!(cut.len() < b.len());
    o
}

/// A binary payload as the entry's `body` object: base64 always (a WebSocket binary
/// message is bytes even when they happen to be valid UTF-8).
pub fn body_bytes(b: &[u8], cap: usize) -> Value {
    let cut = &b[..b.len().min(cap)];
    json!({"size": b.len(), "mime": null, "encoding": null, "base64": base64::engine::general_purpose::STANDARD.encode(cut), "truncated": cut.len() < b.len()})
}

/// The first table a SQL statement names (after FROM, INTO, UPDATE, TABLE or JOIN).
pub fn sql_table(sql: &str) -> Option<String> {
    let mut words = sql.split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ';').filter(|w| !w.is_empty());
    while let Some(w) = words.next() {
        if ["from", "into", "update", "table", "join"].iter().any(|k| w.eq_ignore_ascii_case(k)) {
            let mut t = words.next()?;
            // CREATE TABLE IF NOT EXISTS t, DROP TABLE IF EXISTS t
            while ["if", "not", "exists", "only"].iter().any(|k| t.eq_ignore_ascii_case(k)) {
                t = words.next()?;
            }
            let t = t.trim_matches(|c| c == '`' || c == '"' || c == '\'');
            if !t.is_empty() && t.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '$' | '-')) {
                return Some(t.to_string());
            }
            return None;
        }
    }
    None
}

/// A request waiting for its reply.
#[derive(Debug)]
struct Waiting {
    /// The sender, when requests travel both ways (AMQP's server starts some exchanges).
    from: Option<Dir>,
    key: Option<u64>,
    start: Timestamp,
    size: u64,
    req: Fields,
    anomalies: Vec<Anomaly>,
}

/// A connection's requests in flight, paired with replies in order (`key` None) or by id.
#[derive(Debug)]
pub struct Exchanges {
    protocol: Protocol,
    client: Dir,
    waiting: VecDeque<Waiting>,
}

/// A request or reply as its protocol read it: its fields, its first byte's time, its last
/// byte's time and its size on the wire.
#[derive(Debug)]
pub struct Msg {
    pub fields: Fields,
    pub start: Timestamp,
    pub end: Timestamp,
    pub size: u64,
    pub anomalies: Vec<Anomaly>,
}

impl Msg {
    pub fn new(fields: Fields, start: Timestamp, end: Timestamp, size: u64) -> Self {
        Msg { fields, start, end, size, anomalies: Vec::new() }
    }
}

impl Exchanges {
    pub fn new(protocol: &'static str, client: Dir) -> Self {
        Exchanges { protocol: Protocol(protocol), client, waiting: VecDeque::new() }
    }

    pub fn client(&self) -> Dir {
        self.client
    }

    /// How many requests wait for their replies.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// The request a reply with `key` would pair with (the oldest, when `key` is None).
    pub fn peek(&self, key: Option<u64>) -> Option<&Fields> {
        self.find(key).map(|i| &self.waiting[i].req)
    }

    fn find(&self, key: Option<u64>) -> Option<usize> {
        match key {
            None => (!self.waiting.is_empty()).then_some(0),
            Some(k) => self.waiting.iter().position(|w| w.key == Some(k)),
        }
    }

    /// A request that expects a reply; at the cap, the oldest is given up as unanswered.
    pub fn request(&mut self, key: Option<u64>, m: Msg, cx: &mut Cx<'_>) {
        if self.waiting.len() >= cx.limits.max_pending_requests {
            cx.stats.pending_request_overflows += 1;
            let w = self.waiting.pop_front().expect("at the cap");
            self.emit(w, None, vec![Anomaly::NoResponse, Anomaly::LimitReached], cx);
        }
        self.waiting.push_back(Waiting { from: None, key, start: m.start, size: m.size, req: m.fields, anomalies: m.anomalies });
    }

    /// A request sent in `dir` (for protocols whose requests travel both ways).
    pub fn request_from(&mut self, dir: Dir, key: Option<u64>, m: Msg, cx: &mut Cx<'_>) {
        self.request(key, m, cx);
        if let Some(w) = self.waiting.back_mut() {
            w.from = Some(dir);
        }
    }

    /// A message that has no reply (a push, a publish, a WebSocket message), sent in `dir`:
    /// an entry of its own, with `src` its sender.
    pub fn alone(&mut self, dir: Dir, m: Msg, cx: &mut Cx<'_>) {
        let mut e = cx.entry(self.protocol, dir, m.start);
        e.request = Some(Box::new(Request::Fields(m.fields)));
        e.request_size = m.size;
        e.anomalies = m.anomalies;
        cx.emit(e);
    }

    /// A reply: paired with the request of `key` (the oldest when None) and emitted; with
    /// none waiting, an entry of its own with `unpaired_response`.
    pub fn reply(&mut self, key: Option<u64>, m: Msg, cx: &mut Cx<'_>) {
        match self.find(key) {
            Some(i) => {
                let w = self.waiting.remove(i).expect("found");
                self.emit(w, Some(m), Vec::new(), cx);
            }
            None => {
                let mut e = cx.entry(self.protocol, self.client, m.start);
                e.response = Some(Box::new(Response::Fields(m.fields)));
                e.response_size = m.size;
                e.anomalies = m.anomalies;
                e.anomalies.push(Anomaly::UnpairedResponse);
                cx.emit(e);
            }
        }
    }

    /// Bytes were lost: every request in flight may have lost its reply.
    pub fn gap(&mut self) {
        for w in &mut self.waiting {
            if !w.anomalies.contains(&Anomaly::Gap) {
                w.anomalies.push(Anomaly::Gap);
            }
        }
    }

    /// The oldest request will get no reply (its protocol answers one at a time, and
    /// another was sent): emitted without one.
    pub fn give_up_oldest(&mut self, cx: &mut Cx<'_>) {
        if let Some(w) = self.waiting.pop_front() {
            self.emit(w, None, vec![Anomaly::NoResponse], cx);
        }
    }

    /// The connection ended: what still waits is emitted without a reply.
    pub fn finish(&mut self, cx: &mut Cx<'_>) {
        while let Some(w) = self.waiting.pop_front() {
            self.emit(w, None, vec![Anomaly::NoResponse], cx);
        }
    }

    fn emit(&self, w: Waiting, resp: Option<Msg>, more: Vec<Anomaly>, cx: &mut Cx<'_>) {
        let mut e = cx.entry(self.protocol, w.from.unwrap_or(self.client), w.start);
        e.request = Some(Box::new(Request::Fields(w.req)));
        e.request_size = w.size;
        e.anomalies = w.anomalies;
        e.anomalies.extend(more);
        if let Some(r) = resp {
            e.elapsed_time = Some(r.end.0.saturating_sub(w.start.0) / 1000);
            e.response_size = r.size;
            e.anomalies.extend(r.anomalies);
            e.response = Some(Box::new(Response::Fields(r.fields)));
        }
        e.anomalies.dedup();
        cx.emit(e);
    }
}

/// Builds a `Fields` map from pairs, in order.
#[macro_export]
macro_rules! fields {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = $crate::entry::Fields::new();
        $( m.insert($k.to_string(), serde_json::json!($v)); )*
        m
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_text_or_base64_and_capped() {
        assert_eq!(value(b"abc", 10), json!("abc"));
        assert_eq!(value(&[0xff, 0], 10), json!({"base64": "/wA="}));
        assert_eq!(value(b"abcdef", 3), json!({"text": "abc", "size": 6, "truncated": true}));
        // a cut inside a character keeps the text before it
        assert_eq!(value("aé".as_bytes(), 2), json!({"text": "a", "size": 3, "truncated": true}));
        assert_eq!(body(b"hi", 10, None)["text"], json!("hi"));
    }

    #[test]
    fn the_first_table_of_a_statement() {
        assert_eq!(sql_table("SELECT * FROM users WHERE id = 1").as_deref(), Some("users"));
        assert_eq!(sql_table("insert into public.orders(id) values (1)").as_deref(), Some("public.orders"));
        assert_eq!(sql_table("CREATE TABLE IF NOT EXISTS t1 (a int)").as_deref(), Some("t1"));
        assert_eq!(sql_table("DROP TABLE IF EXISTS t;").as_deref(), Some("t"));
        assert_eq!(sql_table("UPDATE `acct` SET x=1").as_deref(), Some("acct"));
        assert_eq!(sql_table("SELECT now()"), None);
        assert_eq!(sql_table("BEGIN"), None);
    }
}
