//! An AMQP 0-9-1 connection: synchronous methods paired with their `-ok` on the same
//! channel (whichever side sent them: the server starts the connection's), asynchronous
//! ones (publish, deliver, ack, ...) as entries of their own, content (a header frame and
//! body frames) joined to the method it follows, and a channel or connection closed in
//! answer to a method as that method's error.

use super::wire::{self, kind};
use crate::entry::Fields;
use crate::fields;
use crate::flow::Dir;
use crate::l7::{self, Exchanges, Msg};
use crate::stream::{Cx, Progress, StreamParser};
use crate::time::Timestamp;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// A method whose content is still arriving.
struct Content {
    /// The entry's fields: a request's, or (a reply's content: `basic.get-ok`) a response's.
    fields: Fields,
    reply: bool,
    start: Timestamp,
    size: u64,
    body_size: Option<u64>,
    body: Vec<u8>,
    got: u64,
}

pub struct Amqp {
    x: Exchanges,
    /// The client's protocol header is still to come.
    header: bool,
    content: HashMap<(u16, usize), Content>,
}

/// Methods that have no reply.
fn asynchronous(name: &str) -> bool {
    matches!(
        name,
        "basic.publish" | "basic.deliver" | "basic.return" | "basic.ack" | "basic.nack" | "basic.reject" | "basic.recover-async" | "connection.blocked" | "connection.unblocked"
    )
}

fn carries_content(name: &str) -> bool {
    matches!(name, "basic.publish" | "basic.deliver" | "basic.return" | "basic.get-ok")
}

fn target(args: &Map<String, Value>) -> Value {
    let s = |k: &str| args.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let t = match (s("exchange").or(s("destination")), s("routing_key"), s("queue"), s("virtual_host")) {
        (_, _, Some(q), _) => q.to_string(),
        (Some(x), Some(k), _, _) => format!("{x}/{k}"),
        (Some(x), None, _, _) => x.to_string(),
        // the default exchange routes by queue name
        (None, Some(k), _, _) => k.to_string(),
        (None, None, None, Some(v)) => v.to_string(),
        _ => return Value::Null,
    };
    json!(t)
}

impl Amqp {
    pub fn new(client: Dir, from_start: bool) -> Self {
        Amqp { x: Exchanges::new("amqp", client), header: from_start, content: HashMap::new() }
    }

    /// The key of a request sent in `dir` on `channel`; its `-ok` comes the other way.
    fn key(channel: u16, dir: Dir) -> Option<u64> {
        Some(((channel as u64) << 1) | dir.idx() as u64)
    }

    fn method(&mut self, dir: Dir, channel: u16, p: &[u8], size: u64, cx: &mut Cx<'_>) {
        cx.stats.l7_messages += 1;
        let Some((_class, _mid, name, args)) = wire::method(p) else {
            cx.stats.l7_malformed += 1;
            return;
        };
        let (start, end) = (cx.ts_at(0), cx.ts);
        let is_reply = name.ends_with("-ok") || name == "basic.get-empty";
        if is_reply {
            let key = Self::key(channel, dir.flip());
            let mut f = fields! {"status" => if name == "basic.get-empty" { "empty" } else { "OK" }, "error" => Value::Null, "method" => name.clone()};
            // a close's -ok: the close's own code says whether it was an error
            if name.ends_with("close-ok") {
                if let Some(code) = self.x.peek(key).and_then(|r| r.get("arguments")).and_then(|a| a.get("reply_code")).and_then(Value::as_u64) {
                    f.insert("status".into(), json!(code.to_string()));
                    if code != 200 {
                        let text = self.x.peek(key).and_then(|r| r["arguments"].get("reply_text").cloned());
                        f.insert("error".into(), json!({"reply_code": code, "reply_text": text}));
                    }
                }
            }
            f.insert("arguments".into(), Value::Object(args));
            if carries_content(&name) {
                self.content.insert((channel, dir.idx()), Content { fields: f, reply: true, start, size, body_size: None, body: Vec::new(), got: 0 });
                // the reply's key: kept in the fields until the content is whole
                return;
            }
            self.x.reply(key, Msg::new(f, start, end, size), cx);
            return;
        }
        let closes = name.ends_with(".close");
        if closes {
            // a close in answer to a method waiting on the channel: that method's error
            let other = Self::key(channel, dir.flip());
            if self.x.peek(other).is_some() {
                let code = args.get("reply_code").cloned().unwrap_or(Value::Null);
                let f = fields! {"status" => code.to_string(), "error" => json!({"reply_code": code, "reply_text": args.get("reply_text")}), "method" => name.clone()};
                self.x.reply(other, Msg::new(f, start, end, size), cx);
            }
        }
        let f = fields! {"method" => name.clone(), "target" => target(&args), "channel" => channel, "arguments" => Value::Object(args.clone())};
        if carries_content(&name) {
            self.content.insert((channel, dir.idx()), Content { fields: f, reply: false, start, size, body_size: None, body: Vec::new(), got: 0 });
        } else if asynchronous(&name) || args.get("no_wait") == Some(&Value::Bool(true)) {
            self.x.alone(dir, Msg::new(f, start, end, size), cx);
        } else {
            self.x.request_from(dir, Self::key(channel, dir), Msg::new(f, start, end, size), cx);
        }
    }

    fn content_frame(&mut self, dir: Dir, t: u8, channel: u16, p: &[u8], size: u64, cx: &mut Cx<'_>) {
        let Some(c) = self.content.get_mut(&(channel, dir.idx())) else {
            // content for a method not seen (joined mid-way)
            return;
        };
        c.size += size;
        if t == kind::HEADER {
            match wire::content_header(p) {
                Some((n, props)) => {
                    c.body_size = Some(n);
                    c.fields.insert("properties".into(), Value::Object(props));
                }
                None => cx.stats.l7_malformed += 1,
            }
        } else {
            let room = cx.limits.max_body.saturating_sub(c.body.len());
            c.body.extend_from_slice(&p[..p.len().min(room)]);
            c.got += p.len() as u64;
        }
        if c.body_size.is_some_and(|n| c.got >= n) {
            let mut c = self.content.remove(&(channel, dir.idx())).expect("present");
            let mime = c.fields.get("properties").and_then(|p| p.get("content_type")).and_then(Value::as_str).map(str::to_string);
            let mut body = l7::body(&c.body, cx.limits.max_body, mime.as_deref());
            body["size"] = json!(c.got);
            body["truncated"] = json!((c.body.len() as u64) < c.got);
            c.fields.insert("body".into(), body);
            let m = Msg::new(c.fields, c.start, cx.ts, c.size);
            if c.reply {
                self.x.reply(Self::key(channel, dir.flip()), m, cx);
            } else {
                self.x.alone(dir, m, cx);
            }
        }
    }
}

impl StreamParser for Amqp {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        if self.header && dir == self.x.client() {
            if data.len() < 8 {
                return Progress::NeedMore { consumed: 0, needed: 8 };
            }
            if !data.starts_with(b"AMQP") {
                return malformed(cx);
            }
            self.header = false;
            cx.stats.l7_messages += 1;
            return Progress::Consumed(8);
        }
        // a server refusing the version answers with its own header, then closes
        if data.starts_with(b"AMQP") {
            return if data.len() < 8 { Progress::NeedMore { consumed: 0, needed: 8 } } else { Progress::Consumed(8) };
        }
        let Some((t, channel, len)) = wire::header(data) else { return Progress::NeedMore { consumed: 0, needed: 7 } };
        let whole = 7 + len as usize + 1;
        if !matches!(t, kind::METHOD | kind::HEADER | kind::BODY | kind::HEARTBEAT) || len > 1 << 27 {
            return malformed(cx);
        }
        if data.len() < whole {
            return Progress::NeedMore { consumed: 0, needed: whole };
        }
        if data[whole - 1] != wire::FRAME_END {
            return malformed(cx);
        }
        let p = &data[7..whole - 1];
        match t {
            kind::METHOD => self.method(dir, channel, p, whole as u64, cx),
            kind::HEADER | kind::BODY => self.content_frame(dir, t, channel, p, whole as u64, cx),
            _ => {}
        }
        Progress::Consumed(whole)
    }

    fn on_gap(&mut self, _dir: Dir, _len: u64, cx: &mut Cx<'_>) {
        // frames have no marker to find again: what waits is given up, nothing more read
        self.x.gap();
        self.x.finish(cx);
        self.content.clear();
        self.header = false;
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() {
            cx.stats.l7_malformed += 1;
        }
    }
}

impl crate::proto::TcpParser for Amqp {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        // content cut short: the method goes with what came of it
        let mut left: Vec<_> = self.content.drain().collect();
        left.sort_by_key(|(_, c)| c.start.0);
        for ((channel, d), mut c) in left {
            c.fields.insert("body".into(), l7::body(&c.body, cx.limits.max_body, None));
            let dir = if d == 0 { Dir::A } else { Dir::B };
            let mut m = Msg::new(c.fields, c.start, c.start, c.size);
            m.anomalies.push(crate::entry::Anomaly::Truncated);
            if c.reply {
                self.x.reply(Self::key(channel, dir.flip()), m, cx);
            } else {
                self.x.alone(dir, m, cx);
            }
        }
        self.x.finish(cx)
    }
}

fn malformed(cx: &mut Cx<'_>) -> Progress {
    cx.stats.l7_malformed += 1;
    Progress::Desync
}
