//! A PostgreSQL connection: the startup and its authentication, simple queries, the
//! extended protocol's executions (with the text of their Parse and the values of their
//! Bind), COPY, notices, notifications and errors with their SQLSTATE.
//!
//! Replies are gathered for the oldest operation in flight: a simple query's until its
//! ReadyForQuery, an Execute's until its CommandComplete (or error). Sync markers keep
//! pipelined batches apart; after an error the server skips the rest of a batch, and
//! those Executes are answered `skipped`.

use super::wire::{self, Reader};
use crate::entry::Fields;
use crate::fields;
use crate::flow::Dir;
use crate::l7::{self, Exchanges, Msg};
use crate::proto::{Switch, TcpParser};
use crate::stream::{Cx, Progress, StreamParser};
use crate::time::Timestamp;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};

/// Prepared statements and portals remembered per connection; beyond it the oldest are
/// forgotten (an Execute of one then shows no text).
const MAX_NAMED: usize = 4096;
const MAX_COLUMNS: usize = 64;
const MAX_NOTICES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Startup,
    Ssl,
    Query,
    Execute,
    Function,
    /// A Sync: the end of an extended-protocol batch (no entry).
    Sync,
}

/// What the server said so far about the oldest operation.
#[derive(Debug, Default)]
struct Reply {
    start: Option<Timestamp>,
    size: u64,
    rows: u64,
    tags: Vec<String>,
    columns: Vec<String>,
    error: Option<Value>,
    notices: Vec<Value>,
    auth: Vec<&'static str>,
    copy: Option<&'static str>,
    server_version: Option<String>,
}

pub struct Postgres {
    x: Exchanges,
    /// The client still sends untyped messages (startup, SSLRequest).
    untyped: bool,
    /// An SSLRequest or GSSENCRequest waits for its one-byte answer.
    one_byte_answer: bool,
    /// The server accepted TLS: the rest is ciphertext.
    encrypted: bool,
    ops: VecDeque<Op>,
    reply: Reply,
    statements: HashMap<Vec<u8>, String>,
    portals: HashMap<Vec<u8>, (Option<String>, Vec<Value>)>,
    /// Bytes of a long DataRow or CopyData still to pass over, per direction.
    skip: [usize; 2],
}

impl Postgres {
    /// `untyped`: the connection is seen from its start (a startup message comes first).
    pub fn new(client: Dir, untyped: bool) -> Self {
        Postgres {
            x: Exchanges::new("postgresql", client),
            untyped,
            one_byte_answer: false,
            encrypted: false,
            ops: VecDeque::new(),
            reply: Reply::default(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            skip: [0; 2],
        }
    }

    fn request(&mut self, op: Op, fields: Fields, size: u64, cx: &mut Cx<'_>) {
        cx.stats.l7_messages += 1;
        self.ops.push_back(op);
        self.x.request(None, Msg::new(fields, cx.ts_at(0), cx.ts, size), cx);
        while self.ops.iter().filter(|o| **o != Op::Sync).count() > self.x.in_flight() {
            // the oldest was given up at the cap
            self.ops.pop_front();
        }
    }

    /// Answers the oldest operation with what was gathered.
    fn answer(&mut self, status: Option<String>, cx: &mut Cx<'_>) {
        let Some(op) = self.ops.pop_front() else { return };
        let r = std::mem::take(&mut self.reply);
        let tag = r.tags.last().cloned();
        let status = status.or_else(|| r.error.as_ref().and_then(|e| e["code"].as_str()).map(str::to_string)).or_else(|| tag.clone()).unwrap_or_else(|| "OK".into());
        let mut f = fields! {"status" => status, "error" => r.error.unwrap_or(Value::Null)};
        match op {
            Op::Startup => {
                f.insert("auth".into(), json!(r.auth));
                if let Some(v) = r.server_version {
                    f.insert("server_version".into(), json!(v));
                }
            }
            Op::Query | Op::Execute | Op::Function => {
                f.insert("command_tag".into(), json!(tag));
                if r.tags.len() > 1 {
                    f.insert("command_tags".into(), json!(r.tags));
                }
                f.insert("rows".into(), json!(r.rows));
                if !r.columns.is_empty() {
                    f.insert("columns".into(), json!(r.columns));
                }
                if let Some(c) = r.copy {
                    f.insert("copy".into(), json!(c));
                }
            }
            Op::Ssl | Op::Sync => {}
        }
        if !r.notices.is_empty() {
            f.insert("notices".into(), json!(r.notices));
        }
        if op == Op::Sync {
            return;
        }
        let start = r.start.unwrap_or(cx.ts);
        self.x.reply(None, Msg::new(f, start, cx.ts, r.size), cx);
    }

    fn client_msg(&mut self, t: u8, body: &[u8], size: u64, cx: &mut Cx<'_>) {
        let cap = cx.limits.max_body;
        match t {
            b'Q' => {
                let q = body.strip_suffix(&[0]).unwrap_or(body);
                let text = String::from_utf8_lossy(&q[..q.len().min(cap)]).into_owned();
                let target = l7::sql_table(&text);
                self.request(Op::Query, fields! {"method" => "Query", "target" => target, "query" => l7::value(q, cap)}, size, cx);
            }
            b'P' => {
                let mut r = Reader::new(body);
                if let (Some(name), Some(q)) = (r.cstr(), r.cstr()) {
                    if self.statements.len() >= MAX_NAMED {
                        self.statements.clear();
                    }
                    self.statements.insert(name.to_vec(), l7::text(q, cap));
                }
            }
            b'B' => {
                if let Some((portal, stmt, params)) = wire::bind(body) {
                    let values = params.iter().take(64).map(|p| p.map_or(Value::Null, |v| l7::value(v, 1024))).collect();
                    if self.portals.len() >= MAX_NAMED {
                        self.portals.clear();
                    }
                    self.portals.insert(portal.to_vec(), (self.statements.get(stmt).cloned(), values));
                }
            }
            b'E' => {
                let portal = Reader::new(body).cstr().unwrap_or_default().to_vec();
                let (query, params) = self.portals.get(&portal).cloned().unwrap_or((None, Vec::new()));
                let target = query.as_deref().and_then(l7::sql_table);
                self.request(Op::Execute, fields! {"method" => "Execute", "target" => target, "query" => query, "parameters" => params}, size, cx);
            }
            b'S' => self.ops.push_back(Op::Sync),
            b'F' => {
                let oid = Reader::new(body).i32();
                self.request(Op::Function, fields! {"method" => "FunctionCall", "target" => null_or(oid.map(|o| o.to_string())), "function_oid" => oid}, size, cx);
            }
            // Describe, Close, Flush, Terminate, passwords and SASL (never shown), COPY data
            _ => cx.stats.l7_messages += 1,
        }
    }

    fn client_untyped(&mut self, code: u32, body: &[u8], size: u64, cx: &mut Cx<'_>) {
        match code {
            wire::SSL_REQUEST | wire::GSSENC_REQUEST => {
                let method = if code == wire::SSL_REQUEST { "SSLRequest" } else { "GSSENCRequest" };
                self.one_byte_answer = true;
                self.request(Op::Ssl, fields! {"method" => method, "target" => Value::Null}, size, cx);
            }
            wire::CANCEL_REQUEST => {
                // the process to cancel (its secret key is not shown)
                let pid = Reader::new(body).i32();
                cx.stats.l7_messages += 1;
                let m = Msg::new(fields! {"method" => "Cancel", "target" => Value::Null, "process_id" => pid}, cx.ts_at(0), cx.ts, size);
                self.x.alone(self.x.client(), m, cx);
            }
            _ => {
                self.untyped = false;
                let mut f = fields! {"method" => "Startup", "target" => Value::Null, "protocol" => format!("{}.{}", code >> 16, code & 0xffff)};
                let mut params = serde_json::Map::new();
                for (k, v) in wire::startup_params(body) {
                    let (k, v) = (l7::text(k, 64), l7::text(v, 256));
                    match k.as_str() {
                        "user" | "database" | "application_name" => {
                            f.insert(k.clone(), json!(v));
                        }
                        _ => {}
                    }
                    params.insert(k, json!(v));
                }
                let target = f.get("database").cloned().unwrap_or(Value::Null);
                f.insert("target".into(), target);
                f.insert("parameters".into(), Value::Object(params));
                self.request(Op::Startup, f, size, cx);
            }
        }
    }

    fn server_msg(&mut self, t: u8, body: &[u8], size: u64, cx: &mut Cx<'_>) {
        cx.stats.l7_messages += 1;
        self.reply.start.get_or_insert(cx.ts_at(0));
        self.reply.size += size;
        let front = self.ops.front().copied();
        match t {
            b'R' => {
                let what = match Reader::new(body).i32() {
                    Some(0) => "ok",
                    Some(3) => "password",
                    Some(5) => "md5",
                    Some(7) => "gss",
                    Some(9) => "sspi",
                    Some(10) => "sasl",
                    Some(11 | 12) => return,
                    _ => "other",
                };
                self.reply.auth.push(what);
            }
            b'S' => {
                let mut r = Reader::new(body);
                if let (Some(b"server_version"), Some(v)) = (r.cstr(), r.cstr()) {
                    self.reply.server_version = Some(l7::text(v, 64));
                }
            }
            b'Z' => loop {
                match self.ops.front() {
                    // the rest of a batch the server skipped after an error
                    Some(Op::Execute) if self.reply.tags.is_empty() && self.reply.error.is_none() => self.answer(Some("skipped".into()), cx),
                    Some(Op::Sync) => {
                        self.ops.pop_front();
                        self.reply = Reply::default();
                        break;
                    }
                    Some(_) => {
                        self.answer(None, cx);
                        break;
                    }
                    None => {
                        self.reply = Reply::default();
                        break;
                    }
                }
            },
            b'C' | b'I' | b's' => {
                let tag = match t {
                    b'C' => l7::text(Reader::new(body).cstr().unwrap_or_default(), 128),
                    b'I' => "EMPTY".into(),
                    _ => "SUSPENDED".into(),
                };
                self.reply.tags.push(tag);
                if front == Some(Op::Execute) {
                    self.answer(None, cx);
                }
            }
            b'E' | b'N' => {
                let mut e = serde_json::Map::new();
                for (k, v) in wire::notice_fields(body) {
                    let name = match k {
                        b'S' => "severity",
                        b'C' => "code",
                        b'M' => "message",
                        b'D' => "detail",
                        b'H' => "hint",
                        b'P' => "position",
                        b't' => "table",
                        b'c' => "column",
                        _ => continue,
                    };
                    e.insert(name.into(), json!(l7::text(v, 1024)));
                }
                if t == b'N' {
                    if self.reply.notices.len() < MAX_NOTICES {
                        self.reply.notices.push(Value::Object(e));
                    }
                    return;
                }
                let code = e.get("code").and_then(Value::as_str).unwrap_or("").to_string();
                self.reply.error = Some(Value::Object(e));
                match front {
                    // a failed login: the server closes the connection next
                    Some(Op::Startup | Op::Execute) => self.answer(Some(code), cx),
                    Some(_) => {}
                    None => {
                        // unasked (an administrator's shutdown): an entry of its own
                        let err = self.reply.error.take();
                        let m = Msg::new(fields! {"method" => "Error", "target" => Value::Null, "status" => code, "error" => err}, cx.ts_at(0), cx.ts, size);
                        self.reply = Reply::default();
                        self.x.alone(self.x.client().flip(), m, cx);
                    }
                }
            }
            b'A' => {
                let mut r = Reader::new(body);
                let pid = r.i32();
                let channel = l7::text(r.cstr().unwrap_or_default(), 256);
                let payload = l7::value(r.cstr().unwrap_or_default(), cx.limits.max_body);
                let m = Msg::new(fields! {"method" => "Notification", "target" => channel, "process_id" => pid, "payload" => payload}, cx.ts_at(0), cx.ts, size);
                self.reply.size -= size;
                self.x.alone(self.x.client().flip(), m, cx);
            }
            b'T' => {
                let mut r = Reader::new(body);
                let n = r.i16().unwrap_or(0).max(0) as usize;
                self.reply.columns.clear();
                for _ in 0..n.min(MAX_COLUMNS) {
                    let Some(name) = r.cstr() else { break };
                    self.reply.columns.push(l7::text(name, 64));
                    if r.bytes(18).is_none() {
                        break;
                    }
                }
            }
            b'D' | b'd' => self.reply.rows += 1,
            b'G' => self.reply.copy = Some("in"),
            b'H' => self.reply.copy = Some("out"),
            b'W' => self.reply.copy = Some("both"),
            _ => {}
        }
    }
}

fn null_or(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::String)
}

impl StreamParser for Postgres {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let d = dir.idx();
        if self.encrypted {
            return Progress::Consumed(data.len());
        }
        if self.skip[d] > 0 {
            let n = self.skip[d].min(data.len());
            self.skip[d] -= n;
            return Progress::Consumed(n);
        }
        let client = dir == self.x.client();
        if client && self.untyped {
            if data.len() < 8 {
                return Progress::NeedMore { consumed: 0, needed: 8 };
            }
            let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            if !(8..=10_000).contains(&len) {
                return malformed(cx);
            }
            if data.len() < len as usize {
                return Progress::NeedMore { consumed: 0, needed: len as usize };
            }
            let code = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            self.client_untyped(code, &data[8..len as usize], len as u64, cx);
            return Progress::Consumed(len as usize);
        }
        if !client && self.one_byte_answer {
            self.one_byte_answer = false;
            match data[0] {
                b'S' | b'G' | b'N' => {
                    let accepted = data[0] != b'N';
                    cx.stats.l7_messages += 1;
                    self.reply.start = Some(cx.ts_at(0));
                    self.reply.size = 1;
                    self.answer(Some(if accepted { "accepted" } else { "refused" }.into()), cx);
                    self.encrypted = accepted;
                    return Progress::Consumed(1);
                }
                // an old server's error to the request: read as a message
                _ => {}
            }
        }
        let Some((t, len)) = wire::header(data) else { return Progress::NeedMore { consumed: 0, needed: 5 } };
        let known = if client { wire::is_frontend_type(t) } else { wire::is_backend_type(t) };
        if !known || !(4..=wire::MAX_LEN).contains(&len) {
            return malformed(cx);
        }
        let whole = 1 + len as usize;
        // a long row or copy line: counted from its header, its bytes passed over
        if matches!(t, b'D' | b'd') && whole > cx.limits.max_pending_bytes / 2 {
            if client {
                cx.stats.l7_messages += 1;
            } else {
                self.server_msg(t, &[], whole as u64, cx);
            }
            self.skip[d] = whole - 5;
            return Progress::Consumed(5);
        }
        if data.len() < whole {
            return Progress::NeedMore { consumed: 0, needed: whole };
        }
        let body = &data[5..whole];
        if client {
            self.client_msg(t, body, whole as u64, cx);
        } else {
            self.server_msg(t, body, whole as u64, cx);
        }
        Progress::Consumed(whole)
    }

    fn on_gap(&mut self, _dir: Dir, _len: u64, cx: &mut Cx<'_>) {
        // a message boundary cannot be found again with any confidence: what waits is
        // given up, and the directions stop being read
        self.x.gap();
        self.x.finish(cx);
        self.ops.clear();
        self.reply = Reply::default();
        self.encrypted = true;
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() && !self.encrypted {
            cx.stats.l7_malformed += 1;
        }
    }
}

impl TcpParser for Postgres {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        self.x.finish(cx)
    }

    fn switch(&mut self) -> Option<Switch> {
        // TLS was accepted, or a gap lost the framing: nothing more can be read
        std::mem::take(&mut self.encrypted).then_some(Switch::Opaque)
    }
}

fn malformed(cx: &mut Cx<'_>) -> Progress {
    cx.stats.l7_malformed += 1;
    Progress::Desync
}
