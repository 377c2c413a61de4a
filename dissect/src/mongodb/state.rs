//! A MongoDB connection: each request (OP_MSG, OP_QUERY and the legacy writes) paired with
//! its reply by `responseTo`; OP_COMPRESSED inflated first; a request flagged
//! `moreToCome` expects no reply. The command is the first key of the command document,
//! the target `database.collection`.

use super::wire::{self, Caps, Header};
use crate::entry::{Anomaly, Fields};
use crate::fields;
use crate::flow::Dir;
use crate::l7::{Exchanges, Msg};
use crate::stream::{Cx, Progress, StreamParser};
use serde_json::{json, Value};

pub struct Mongo {
    x: Exchanges,
    /// Bytes of a message too long to hold, still to pass over, per direction.
    skip: [usize; 2],
}

/// The first key of a command document, and `database.collection` (the collection is
/// the first key's value when it is a string: `{find: "users", $db: "shop"}`).
fn command(doc: &Value, db: Option<&str>) -> (String, Value) {
    let Some(o) = doc.as_object() else { return ("unknown".into(), Value::Null) };
    let Some((k, v)) = o.iter().next() else { return ("unknown".into(), Value::Null) };
    let db = db.or_else(|| o.get("$db").and_then(Value::as_str));
    let target = match (db, v.as_str()) {
        (Some(d), Some(c)) => json!(format!("{d}.{c}")),
        (Some(d), None) => json!(d),
        (None, Some(c)) => json!(c),
        (None, None) => Value::Null,
    };
    (k.clone(), target)
}

/// A reply document's verdict: `ok`, and the error when it says one.
fn verdict(doc: &Value) -> (Value, String, Value) {
    let ok = doc.get("ok").cloned().unwrap_or(Value::Null);
    let failed = ok.as_f64().is_some_and(|v| v == 0.0) || ok == json!(false);
    let write_error = doc.get("writeErrors").and_then(|w| w.get(0)).cloned();
    if failed || write_error.is_some() {
        let src = if failed { doc } else { write_error.as_ref().expect("checked") };
        let code = src.get("code").cloned().unwrap_or(Value::Null);
        let name = src.get("codeName").and_then(Value::as_str).map(str::to_string);
        let status = name.clone().unwrap_or_else(|| if code.is_null() { "error".into() } else { code.to_string() });
        return (ok, status, json!({"code": code, "codeName": name, "errmsg": src.get("errmsg")}));
    }
    (ok, "ok".into(), Value::Null)
}

/// Passwords (`pwd`, `password`) anywhere in a command, and an authentication's SASL
/// payload, are never shown.
fn hide_secrets(v: &mut Value, auth: bool) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "pwd" || k == "password" || auth && k == "payload" {
                    *x = json!("[redacted]");
                } else {
                    hide_secrets(x, auth);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| hide_secrets(x, auth)),
        _ => {}
    }
}

impl Mongo {
    pub fn new(client: Dir) -> Self {
        Mongo { x: Exchanges::new("mongodb", client), skip: [0; 2] }
    }

    /// A message kshark could not read (`why`: too long, undecodable, malformed): still a
    /// request or a reply, with its opcode, size and the anomaly.
    fn unread(&mut self, h: Header, op: i32, why: &str, anomaly: Anomaly, size: u64, cx: &mut Cx<'_>) {
        let name = wire::op_name(op);
        if h.response_to != 0 || op == wire::OP_REPLY {
            let mut m = Msg::new(fields! {"status" => why, "error" => Value::Null, "op" => name}, cx.ts_at(0), cx.ts, size);
            m.anomalies.push(anomaly);
            self.x.reply(Some(h.response_to as u32 as u64), m, cx);
        } else {
            let mut m = Msg::new(fields! {"method" => name, "target" => Value::Null, "op" => name}, cx.ts_at(0), cx.ts, size);
            m.anomalies.push(anomaly);
            self.x.request(Some(h.request_id as u32 as u64), m, cx);
        }
    }

    fn message(&mut self, dir: Dir, h: Header, op: i32, body: &[u8], size: u64, compressed: bool, cx: &mut Cx<'_>) {
        cx.stats.l7_messages += 1;
        let caps = Caps { string: cx.limits.max_body.min(4096), ..Caps::default() };
        let (start, end) = (cx.ts_at(0), cx.ts);
        let reply = h.response_to != 0 || op == wire::OP_REPLY;
        let mut f = Fields::new();
        let mut more_to_come = false;
        let doc = match op {
            wire::OP_MSG => match wire::op_msg(body, caps) {
                Some((doc, seqs)) => {
                    more_to_come = body.first().is_some_and(|b| b & 0x02 != 0);
                    for (id, docs) in seqs {
                        f.insert(format!("sequence:{id}"), json!(docs));
                    }
                    Some(doc)
                }
                None => None,
            },
            wire::OP_QUERY => {
                // flags, fullCollectionName, skip, return, query
                let name_end = body.get(4..).and_then(|b| memchr::memchr(0, b)).map(|i| 4 + i);
                name_end.and_then(|e| {
                    let coll = String::from_utf8_lossy(&body[4..e]).into_owned();
                    let (d, _) = wire::document(body.get(e + 9..)?, caps)?;
                    f.insert("collection".into(), json!(coll));
                    Some(d)
                })
            }
            wire::OP_REPLY => {
                // flags, cursorID, startingFrom, numberReturned, documents
                let n = body.get(16..20).map(|v| i32::from_le_bytes([v[0], v[1], v[2], v[3]]));
                f.insert("number_returned".into(), json!(n));
                body.get(20..).and_then(|b| wire::document(b, caps)).map(|(d, _)| d).or(Some(json!({})))
            }
            // OP_INSERT, OP_UPDATE, OP_DELETE, OP_GET_MORE, OP_KILL_CURSORS: their collection
            _ => {
                let coll = body.get(4..).and_then(|b| memchr::memchr(0, b).map(|i| String::from_utf8_lossy(&b[..i]).into_owned()));
                f.insert("collection".into(), json!(coll));
                Some(json!({}))
            }
        };
        let Some(doc) = doc else {
            cx.stats.l7_malformed += 1;
            return self.unread(h, op, "malformed", Anomaly::Malformed, size, cx);
        };
        if reply {
            let (ok, status, error) = verdict(&doc);
            let mut r = fields! {"status" => status, "error" => error, "op" => wire::op_name(op), "ok" => ok, "compressed" => compressed};
            r.extend(f);
            r.insert("document".into(), doc);
            self.x.reply(Some(h.response_to as u32 as u64), Msg::new(r, start, end, size), cx);
            return;
        }
        let (method, target) = match op {
            wire::OP_MSG => command(&doc, None),
            wire::OP_QUERY => {
                let coll = f.get("collection").and_then(Value::as_str).unwrap_or("").to_string();
                match coll.strip_suffix(".$cmd") {
                    Some(db) => command(&doc, Some(db)),
                    // a legacy query on a collection
                    None => ("find".into(), json!(coll)),
                }
            }
            _ => {
                let name = wire::op_name(op).trim_start_matches("OP_").to_ascii_lowercase();
                (name, f.get("collection").cloned().unwrap_or(Value::Null))
            }
        };
        let mut doc = doc;
        hide_secrets(&mut doc, matches!(method.as_str(), "saslStart" | "saslContinue" | "authenticate"));
        let mut q = fields! {"method" => method, "target" => target, "op" => wire::op_name(op), "request_id" => h.request_id, "compressed" => compressed};
        q.extend(f);
        q.insert("document".into(), doc);
        let m = Msg::new(q, start, end, size);
        if more_to_come || matches!(op, wire::OP_INSERT | wire::OP_UPDATE | wire::OP_DELETE | wire::OP_KILL_CURSORS) {
            self.x.alone(dir, m, cx);
        } else {
            self.x.request(Some(h.request_id as u32 as u64), m, cx);
        }
    }
}

impl StreamParser for Mongo {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let d = dir.idx();
        if self.skip[d] > 0 {
            let n = self.skip[d].min(data.len());
            self.skip[d] -= n;
            return Progress::Consumed(n);
        }
        let Some(h) = wire::header(data) else { return Progress::NeedMore { consumed: 0, needed: 16 } };
        if !wire::plausible(&h) {
            cx.stats.l7_malformed += 1;
            return Progress::Desync;
        }
        let len = h.len as usize;
        if len > cx.limits.max_pending_bytes / 2 {
            // too long to hold: counted, passed over
            cx.stats.l7_messages += 1;
            self.unread(h, h.op, "too large", Anomaly::LimitReached, len as u64, cx);
            self.skip[d] = len - 16;
            return Progress::Consumed(16);
        }
        if data.len() < len {
            return Progress::NeedMore { consumed: 0, needed: len };
        }
        let body = &data[16..len];
        if h.op == wire::OP_COMPRESSED {
            match wire::decompress(body, cx.limits.max_pending_bytes * 4) {
                Ok((op, inner)) => self.message(dir, h, op, &inner, len as u64, true, cx),
                Err(_) => {
                    cx.stats.l7_malformed += 1;
                    self.unread(h, h.op, "undecodable", Anomaly::BodyDecodeError, len as u64, cx);
                }
            }
        } else {
            self.message(dir, h, h.op, body, len as u64, false, cx);
        }
        Progress::Consumed(len)
    }

    fn on_gap(&mut self, _dir: Dir, _len: u64, cx: &mut Cx<'_>) {
        self.x.gap();
        self.x.finish(cx);
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() {
            cx.stats.l7_malformed += 1;
        }
    }
}

impl crate::proto::TcpParser for Mongo {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        self.x.finish(cx)
    }
}
