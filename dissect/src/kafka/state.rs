//! A Kafka connection: requests paired with responses by correlation id (a response is
//! read with its request's API and version), every API by name, a Produce with `acks=0`
//! alone. A message too long to hold is read from its first part and passed over.

use super::{body, wire};
use crate::entry::Anomaly;
use crate::fields;
use crate::flow::Dir;
use crate::l7::{self, Exchanges, Msg};
use crate::stream::{Cx, Progress, StreamParser};
use serde_json::{json, Value};

/// Messages longer than this are not Kafka's (its default limit is 100 MB).
const MAX_SIZE: i32 = 1 << 30;

pub struct Kafka {
    x: Exchanges,
    /// A long message, per direction: its first part kept, and the bytes still to come.
    long: [Option<(Vec<u8>, usize, usize)>; 2],
}

impl Kafka {
    pub fn new(client: Dir) -> Self {
        Kafka { x: Exchanges::new("kafka", client), long: [None, None] }
    }

    /// One message (after its size), whole or (`whole_len` longer) in part.
    fn message(&mut self, dir: Dir, m: &[u8], whole_len: usize, cx: &mut Cx<'_>) {
        cx.stats.l7_messages += 1;
        let (start, end, size) = (cx.ts_at(0), cx.ts, whole_len as u64 + 4);
        let cut = m.len() < whole_len;
        if dir == self.x.client() {
            let Some(h) = wire::request_header(m) else {
                cx.stats.l7_malformed += 1;
                return;
            };
            let mut r = wire::Reader::new(&m[h.body..], wire::flexible(h.api, h.version));
            let (topics, group, acks) = body::request(h.api, h.version, &mut r);
            let first = topics.first().and_then(|t| t.get("name")).cloned().filter(|n| !n.is_null());
            let target = first.or_else(|| group.clone().map(Value::String)).unwrap_or(Value::Null);
            let mut f = fields! {
                "method" => wire::name(h.api).unwrap_or("Unknown"),
                "target" => target,
                "api_key" => h.api,
                "api_version" => h.version,
                "correlation_id" => h.correlation,
                "client_id" => h.client_id.map(|c| l7::text(c, 256)),
                "topics" => topics,
            };
            if let Some(g) = group {
                f.insert("group_id".into(), json!(g));
            }
            if let Some(a) = acks {
                f.insert("acks".into(), json!(a));
            }
            let mut msg = Msg::new(f, start, end, size);
            if cut {
                msg.anomalies.push(Anomaly::Truncated);
            }
            if acks == Some(0) {
                self.x.alone(dir, msg, cx);
            } else {
                self.x.request(Some(h.correlation as u32 as u64), msg, cx);
            }
            return;
        }
        let Some(c) = m.get(..4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]])) else {
            cx.stats.l7_malformed += 1;
            return;
        };
        let key = Some(c as u32 as u64);
        let req = self.x.peek(key);
        let api = req.and_then(|r| r.get("api_key")).and_then(Value::as_i64).map(|a| a as i16);
        let v = req.and_then(|r| r.get("api_version")).and_then(Value::as_i64).map(|a| a as i16).unwrap_or(0);
        let mut f = fields! {"status" => "unknown", "error" => Value::Null, "correlation_id" => c};
        if let Some(api) = api {
            // ApiVersions answers with header v0 whatever its version
            let flexible = wire::flexible(api, v);
            let mut r = wire::Reader::new(&m[4..], flexible && api != 18);
            if r.tags().is_some() {
                r.flexible = flexible;
                let (error, records) = body::response(api, v, &mut r);
                match error {
                    Some(0) => f.insert("status".into(), json!("NONE")),
                    Some(e) => {
                        f.insert("error".into(), json!({"code": e, "name": wire::error_name(e)}));
                        f.insert("status".into(), json!(wire::error_name(e)))
                    }
                    None => None,
                };
                f.insert("error_code".into(), json!(error));
                if let Some(n) = records {
                    f.insert("records".into(), json!(n));
                }
            }
        }
        let mut msg = Msg::new(f, start, end, size);
        if cut {
            msg.anomalies.push(Anomaly::Truncated);
        }
        self.x.reply(key, msg, cx);
    }
}

impl StreamParser for Kafka {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let d = dir.idx();
        let keep = cx.limits.max_body;
        if let Some((head, _, left)) = self.long[d].as_mut() {
            let n = (*left).min(data.len());
            head.extend_from_slice(&data[..n.min(keep.saturating_sub(head.len()))]);
            *left -= n;
            if *left == 0 {
                let (head, whole, _) = self.long[d].take().expect("present");
                self.message(dir, &head, whole, cx);
            }
            return Progress::Consumed(n);
        }
        let Some(s) = data.get(..4).map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]])) else { return Progress::NeedMore { consumed: 0, needed: 4 } };
        if !(4..=MAX_SIZE).contains(&s) {
            cx.stats.l7_malformed += 1;
            return Progress::Desync;
        }
        let len = s as usize;
        if len > cx.limits.max_pending_bytes / 2 {
            self.long[d] = Some((Vec::new(), len, len));
            return Progress::Consumed(4);
        }
        if data.len() < 4 + len {
            return Progress::NeedMore { consumed: 0, needed: 4 + len };
        }
        self.message(dir, &data[4..4 + len], len, cx);
        Progress::Consumed(4 + len)
    }

    fn on_gap(&mut self, _dir: Dir, _len: u64, cx: &mut Cx<'_>) {
        self.x.gap();
        self.x.finish(cx);
        self.long = [None, None];
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() {
            cx.stats.l7_malformed += 1;
        }
    }
}

impl crate::proto::TcpParser for Kafka {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        self.x.finish(cx)
    }
}
