//! A Redis connection: commands paired with replies in order (pipelining and MULTI/EXEC
//! are just that), subscribe confirmations gathered into their command's reply, and
//! pushed pub/sub messages as entries of their own.

use super::wire::{self, Incomplete, Resp};
use crate::fields;
use crate::flow::Dir;
use crate::l7::{self, Exchanges, Msg};
use crate::stream::{Cx, Progress, StreamParser};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;

/// Elements of an array shown in a value; the rest are counted.
const MAX_ITEMS: usize = 256;

pub struct Redis {
    x: Exchanges,
    /// How many replies each waiting command still expects (a SUBSCRIBE to three channels
    /// gets three confirmations), and the replies gathered so far for the oldest.
    expect: VecDeque<usize>,
    gathered: Vec<Value>,
    gathered_size: u64,
    gathered_start: Option<crate::time::Timestamp>,
    /// After a gap: the client looks for the next command; the server's bytes are skipped
    /// until a command sent after the gap (its reply starts a segment).
    resync: [bool; 2],
}

impl Redis {
    pub fn new(client: Dir) -> Self {
        Redis { x: Exchanges::new("redis", client), expect: VecDeque::new(), gathered: Vec::new(), gathered_size: 0, gathered_start: None, resync: [false; 2] }
    }

    fn command(&mut self, words: Vec<&[u8]>, size: u64, cx: &mut Cx<'_>) {
        let cap = cx.limits.max_body;
        let (ts, end) = (cx.ts_at(0), cx.ts);
        let method = l7::text(words.first().copied().unwrap_or_default(), 64).to_ascii_uppercase();
        let args: Vec<&[u8]> = words.iter().skip(1).copied().collect();
        let secret = |i: usize| match method.as_str() {
            "AUTH" => true,
            // HELLO 3 AUTH user pass
            "HELLO" => args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH")).is_some_and(|p| i > p && i <= p + 2),
            _ => false,
        };
        let shown: Vec<Value> = args.iter().enumerate().take(MAX_ITEMS).map(|(i, a)| if secret(i) { json!("[redacted]") } else { l7::value(a, cap) }).collect();
        let target = target(&method, &args).map(|t| l7::text(t, 256));
        let m = Msg::new(fields! {"method" => method, "target" => target, "args" => shown}, ts, end, size);
        cx.stats.l7_messages += 1;
        let replies = match method.as_str() {
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE" => args.len().max(1),
            _ => 1,
        };
        self.expect.push_back(replies);
        if self.resync[self.x.client().flip().idx()] && self.x.in_flight() == 0 {
            // the server's next segment answers this
            self.resync[self.x.client().flip().idx()] = false;
        }
        self.x.request(None, m, cx);
        if self.expect.len() > self.x.in_flight() {
            // the oldest was given up at the cap
            self.expect.pop_front();
        }
    }

    fn reply(&mut self, v: Resp<'_>, size: u64, cx: &mut Cx<'_>) {
        cx.stats.l7_messages += 1;
        let server = self.x.client().flip();
        let (ts, end) = (cx.ts_at(0), cx.ts);
        if let Some((kind, channel)) = pushed_message(&v) {
            let payload = match &v {
                Resp::Array(a) | Resp::Push(a) => a.last().map(|p| to_json(p, cx.limits.max_body)).unwrap_or(Value::Null),
                _ => Value::Null,
            };
            let m = Msg::new(fields! {"method" => kind, "target" => channel, "args" => [payload]}, ts, end, size);
            self.x.alone(server, m, cx);
            return;
        }
        let confirmation = is_confirmation(&v);
        let waits_for_confirmation = self.x.peek(None).and_then(|f| f.get("method")).and_then(Value::as_str).is_some_and(|m| m.ends_with("SUBSCRIBE"));
        if confirmation && !waits_for_confirmation {
            // a confirmation beyond those counted (UNSUBSCRIBE from every channel)
            return;
        }
        if matches!(v, Resp::Push(_)) && !confirmation {
            // other out-of-band data (client-side caching's invalidations)
            let m = Msg::new(fields! {"method" => "PUSH", "target" => Value::Null, "args" => [to_json(&v, cx.limits.max_body)]}, ts, end, size);
            self.x.alone(server, m, cx);
            return;
        }
        let owed = self.expect.front().copied().unwrap_or(1);
        if owed > 1 {
            self.gathered.push(to_json(&v, cx.limits.max_body));
            self.gathered_size += size;
            self.gathered_start.get_or_insert(ts);
            *self.expect.front_mut().expect("owed") -= 1;
            return;
        }
        self.expect.pop_front();
        let mut r = response(&v, cx.limits.max_body);
        let (mut start, mut size) = (ts, size);
        if !self.gathered.is_empty() {
            let mut all = std::mem::take(&mut self.gathered);
            all.push(r["value"].take());
            r["value"] = Value::Array(all);
            size += std::mem::take(&mut self.gathered_size);
            start = self.gathered_start.take().unwrap_or(ts);
        }
        self.x.reply(None, Msg::new(r, start, end, size), cx);
    }
}

/// A pub/sub message pushed by the server: its kind (`MESSAGE`, `PMESSAGE`, `SMESSAGE`) and
/// channel.
fn pushed_message(v: &Resp<'_>) -> Option<(String, String)> {
    let (Resp::Array(a) | Resp::Push(a)) = v else { return None };
    let kind = match a.first()? {
        Resp::Bulk(k) | Resp::Simple(k) => *k,
        _ => return None,
    };
    let ok = (kind.eq_ignore_ascii_case(b"message") || kind.eq_ignore_ascii_case(b"smessage")) && a.len() == 3 || kind.eq_ignore_ascii_case(b"pmessage") && a.len() == 4;
    if !ok {
        return None;
    }
    let channel = match &a[a.len() - 2] {
        Resp::Bulk(c) | Resp::Simple(c) => l7::text(c, 256),
        _ => return None,
    };
    Some((String::from_utf8_lossy(kind).to_ascii_uppercase(), channel))
}

fn is_confirmation(v: &Resp<'_>) -> bool {
    let (Resp::Array(a) | Resp::Push(a)) = v else { return false };
    a.len() == 3
        && matches!(a.first(), Some(Resp::Bulk(k) | Resp::Simple(k)) if [&b"subscribe"[..], b"unsubscribe", b"psubscribe", b"punsubscribe", b"ssubscribe", b"sunsubscribe"].iter().any(|w| k.eq_ignore_ascii_case(w)))
}

/// The key or channel a command is about: its first argument, except for commands that
/// take none or put it elsewhere.
fn target<'a>(method: &str, args: &[&'a [u8]]) -> Option<&'a [u8]> {
    const KEYLESS: &[&str] = &[
        "PING", "ECHO", "AUTH", "HELLO", "SELECT", "INFO", "CLIENT", "CONFIG", "COMMAND", "MULTI", "EXEC", "DISCARD", "QUIT", "DBSIZE", "FLUSHDB",
        "FLUSHALL", "SAVE", "BGSAVE", "BGREWRITEAOF", "TIME", "SCAN", "SCRIPT", "MONITOR", "SLOWLOG", "DEBUG", "CLUSTER", "READONLY", "READWRITE",
        "RESET", "WAIT", "LASTSAVE", "ROLE", "SHUTDOWN", "SWAPDB", "LATENCY", "MODULE", "ACL", "FUNCTION", "REPLICAOF", "SLAVEOF", "SYNC", "PSYNC",
        "UNWATCH", "RANDOMKEY", "KEYS", "PUBSUB", "FAILOVER", "LOLWUT",
    ];
    match method {
        m if KEYLESS.contains(&m) => None,
        "OBJECT" | "MEMORY" | "XINFO" => args.get(1).copied(),
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => args.get(1).filter(|n| **n != b"0").and(args.get(2).copied()),
        "XREAD" | "XREADGROUP" => args.iter().position(|a| a.eq_ignore_ascii_case(b"STREAMS")).and_then(|i| args.get(i + 1).copied()),
        _ => args.first().copied(),
    }
}

/// A value as JSON: text, numbers, arrays and maps as such; bulk strings by the body rules.
fn to_json(v: &Resp<'_>, cap: usize) -> Value {
    let many = |a: &[Resp<'_>]| -> Value {
        let mut out: Vec<Value> = a.iter().take(MAX_ITEMS).map(|x| to_json(x, cap)).collect();
        if a.len() > MAX_ITEMS {
            out.push(json!({"more": a.len() - MAX_ITEMS, "truncated": true}));
        }
        Value::Array(out)
    };
    match v {
        Resp::Simple(s) | Resp::Error(s) | Resp::BulkError(s) => json!(l7::text(s, cap)),
        Resp::Integer(i) => json!(i),
        Resp::Bulk(b) | Resp::Verbatim(b) => l7::value(b, cap),
        Resp::Null => Value::Null,
        Resp::Bool(b) => json!(b),
        Resp::Number(n) => json!(l7::text(n, 64)),
        Resp::Array(a) | Resp::Set(a) | Resp::Push(a) => many(a),
        Resp::Map(pairs) => {
            let mut m = Map::new();
            for (k, x) in pairs.iter().take(MAX_ITEMS) {
                let k = match to_json(k, 256) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(k, to_json(x, cap));
            }
            Value::Object(m)
        }
    }
}

/// A reply's fields: `type`, `value`, `status` and `error`.
fn response(v: &Resp<'_>, cap: usize) -> crate::entry::Fields {
    let ty = match v {
        Resp::Simple(_) => "simple",
        Resp::Error(_) => "error",
        Resp::Integer(_) => "integer",
        Resp::Bulk(_) => "bulk",
        Resp::Array(_) => "array",
        Resp::Null => "null",
        Resp::Bool(_) => "boolean",
        Resp::Number(_) => "number",
        Resp::BulkError(_) => "bulk_error",
        Resp::Verbatim(_) => "verbatim",
        Resp::Map(_) => "map",
        Resp::Set(_) => "set",
        Resp::Push(_) => "push",
    };
    let (status, error) = match v {
        Resp::Error(e) | Resp::BulkError(e) => {
            let e = l7::text(e, 1024);
            (e.split(' ').next().unwrap_or("ERR").to_string(), json!(e))
        }
        Resp::Simple(s) => (l7::text(s, 40), Value::Null),
        Resp::Integer(i) => (i.to_string(), Value::Null),
        Resp::Null => ("nil".to_string(), Value::Null),
        _ => ("OK".to_string(), Value::Null),
    };
    fields! {"status" => status, "error" => error, "type" => ty, "value" => to_json(v, cap)}
}

impl StreamParser for Redis {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let client = dir == self.x.client();
        if self.resync[dir.idx()] {
            if !client {
                cx.stats.resync_skipped_bytes += data.len() as u64;
                return Progress::Consumed(data.len());
            }
            // the next command starts at a line that begins with '*'
            let at = if data.first() == Some(&b'*') { Some(0) } else { memchr::memmem::find(data, b"\r\n*").map(|i| i + 2) };
            match at {
                Some(0) => self.resync[dir.idx()] = false,
                Some(i) => {
                    self.resync[dir.idx()] = false;
                    cx.stats.resync_skipped_bytes += i as u64;
                    return Progress::Consumed(i);
                }
                None => {
                    cx.stats.resync_skipped_bytes += data.len() as u64;
                    return Progress::Consumed(data.len());
                }
            }
        }
        if client && data[0] != b'*' {
            // an inline command
            return match wire::inline(data) {
                Ok((words, n)) => {
                    if !words.is_empty() {
                        self.command(words, n as u64, cx);
                    }
                    Progress::Consumed(n)
                }
                Err(Incomplete::More(_)) => Progress::NeedMore { consumed: 0, needed: data.len() + 1 },
                Err(Incomplete::Invalid) => malformed(cx),
            };
        }
        match wire::parse(data) {
            Ok((v, n)) => {
                if client {
                    match v {
                        Resp::Array(a) if a.iter().all(|x| matches!(x, Resp::Bulk(_))) && !a.is_empty() => {
                            let words = a.iter().map(|x| if let Resp::Bulk(b) = x { *b } else { &[][..] }).collect();
                            self.command(words, n as u64, cx);
                        }
                        _ => return malformed(cx),
                    }
                } else {
                    self.reply(v, n as u64, cx);
                }
                Progress::Consumed(n)
            }
            Err(Incomplete::More(need)) => Progress::NeedMore { consumed: 0, needed: need.unwrap_or(data.len() + 1) },
            Err(Incomplete::Invalid) => malformed(cx),
        }
    }

    fn on_gap(&mut self, _dir: Dir, _len: u64, cx: &mut Cx<'_>) {
        // commands or replies lost: which reply answers which command is unknown until the
        // server's next segment after a command sent after the gap
        self.x.gap();
        self.x.finish(cx);
        self.expect.clear();
        self.gathered.clear();
        self.gathered_size = 0;
        self.gathered_start = None;
        self.resync = [true; 2];
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() {
            cx.stats.l7_malformed += 1;
        }
    }
}

impl crate::proto::TcpParser for Redis {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        self.x.finish(cx)
    }
}

fn malformed(cx: &mut Cx<'_>) -> Progress {
    cx.stats.l7_malformed += 1;
    Progress::Desync
}
