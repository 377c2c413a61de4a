//! An MQTT connection: each control packet paired with its acknowledgement (CONNECT with
//! CONNACK, PINGREQ with PINGRESP in order; PUBLISH, SUBSCRIBE and UNSUBSCRIBE by packet
//! identifier, whichever side published), QoS 2's PUBREC/PUBREL/PUBCOMP kept with their
//! PUBLISH, and packets that expect nothing (QoS 0 PUBLISH, DISCONNECT) alone.

use super::wire::{self, Bad, Fixed, Reader};
use crate::entry::Fields;
use crate::fields;
use crate::flow::Dir;
use crate::l7::{self, Exchanges, Msg};
use crate::stream::{Cx, Progress, StreamParser};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The most topics of one SUBSCRIBE shown.
const MAX_TOPICS: usize = 64;

pub struct Mqtt {
    x: Exchanges,
    /// 3 (3.1), 4 (3.1.1) or 5, from the CONNECT; 3.1.1 until one is seen.
    version: u8,
    /// A QoS 2 PUBLISH answered by PUBREC, by (packet id, sender of the PUBLISH): the
    /// PUBREC's reason, kept until PUBCOMP completes the flow.
    pubrec: HashMap<(u16, usize), u8>,
    /// The packets after a gap are skipped until one parses where it starts.
    resync: [bool; 2],
}

fn key(kind: u8, id: u16, from: Dir) -> Option<u64> {
    Some(((kind as u64) << 24) | ((id as u64) << 1) | from.idx() as u64)
}

impl Mqtt {
    pub fn new(client: Dir) -> Self {
        Mqtt { x: Exchanges::new("mqtt", client), version: 4, pubrec: HashMap::new(), resync: [false; 2] }
    }

    fn packet(&mut self, dir: Dir, f: Fixed, body: &[u8], cx: &mut Cx<'_>) -> Option<()> {
        cx.stats.l7_messages += 1;
        let name = wire::NAMES[f.kind as usize];
        let (start, end, size) = (cx.ts_at(0), cx.ts, (f.size + f.len) as u64);
        let v5 = self.version == 5;
        let cap = cx.limits.max_body;
        let mut r = Reader::new(body);
        let text = |b: &[u8]| l7::text(b, 1024);
        match f.kind {
            1 => {
                let proto = r.data()?;
                let level = r.u8()?;
                let flags = r.u8()?;
                let keep_alive = r.u16()?;
                self.version = level;
                let props = if level == 5 { Some(r.properties()?) } else { None };
                let client_id = text(r.data()?);
                let mut m = fields! {"method" => name, "target" => Value::Null, "protocol" => text(proto), "version" => level, "client_id" => client_id, "keep_alive" => keep_alive, "clean_start" => flags & 0x02 != 0};
                if flags & 0x04 != 0 {
                    if level == 5 {
                        r.properties()?;
                    }
                    m.insert("will_topic".into(), json!(text(r.data()?)));
                    m.insert("will_qos".into(), json!((flags >> 3) & 3));
                    r.data()?;
                }
                if flags & 0x80 != 0 {
                    m.insert("username".into(), json!(text(r.data()?)));
                }
                // the password (flag 0x40) is never shown
                if let Some(p) = props {
                    m.insert("properties".into(), Value::Object(p));
                }
                self.x.request_from(dir, key(1, 0, dir), Msg::new(m, start, end, size), cx);
            }
            2 => {
                let _flags = r.u8()?;
                let code = r.u8()?;
                let (status, failed) = if v5 { (wire::reason_name(code), code >= 0x80) } else { (wire::v3_connack_name(code), code != 0) };
                let mut m = reply(name, code, status, failed);
                if v5 {
                    if let Some(p) = r.properties() {
                        m.insert("properties".into(), Value::Object(p));
                    }
                }
                self.x.reply(key(1, 0, dir.flip()), Msg::new(m, start, end, size), cx);
            }
            3 => {
                let qos = (f.flags >> 1) & 3;
                let topic = text(r.data()?);
                let id = if qos > 0 { Some(r.u16()?) } else { None };
                let props = if v5 { Some(r.properties()?) } else { None };
                let mut m = fields! {"method" => name, "target" => topic, "qos" => qos, "retain" => f.flags & 1 != 0, "dup" => f.flags & 8 != 0};
                if let Some(id) = id {
                    m.insert("packet_id".into(), json!(id));
                }
                if let Some(p) = props {
                    m.insert("properties".into(), Value::Object(p));
                }
                m.insert("payload".into(), l7::body(r.rest(), cap, None));
                let msg = Msg::new(m, start, end, size);
                match id {
                    Some(id) => self.x.request_from(dir, key(3, id, dir), msg, cx),
                    None => self.x.alone(dir, msg, cx),
                }
            }
            // PUBACK, PUBREC, PUBREL, PUBCOMP: a packet id, then (5) a reason
            4..=7 => {
                let id = r.u16()?;
                let code = if v5 && !r.rest().is_empty() { r.u8()? } else { 0 };
                let publisher = if f.kind == 6 { dir } else { dir.flip() };
                match f.kind {
                    5 if code < 0x80 => {
                        self.pubrec.insert((id, publisher.idx()), code);
                    }
                    // PUBREL: the publisher goes on with the flow
                    6 => {}
                    _ => {
                        let rec = self.pubrec.remove(&(id, publisher.idx()));
                        let mut m = reply(name, code, wire::reason_name(code), code >= 0x80);
                        if rec.is_some() {
                            m.insert("flow".into(), json!(["PUBREC", "PUBREL", "PUBCOMP"]));
                        }
                        self.x.reply(key(3, id, publisher), Msg::new(m, start, end, size), cx);
                    }
                }
            }
            8 | 10 => {
                let id = r.u16()?;
                let props = if v5 { Some(r.properties()?) } else { None };
                let mut topics = Vec::new();
                while !r.rest().is_empty() && topics.len() < MAX_TOPICS {
                    let t = text(r.data()?);
                    if f.kind == 8 {
                        let o = r.u8()?;
                        topics.push(json!({"topic": t, "qos": o & 3}));
                    } else {
                        topics.push(json!(t));
                    }
                }
                let first = topics.first().map(|t| t.get("topic").unwrap_or(t).clone()).unwrap_or(Value::Null);
                let mut m = fields! {"method" => name, "target" => first, "packet_id" => id, "topics" => topics};
                if let Some(p) = props {
                    m.insert("properties".into(), Value::Object(p));
                }
                self.x.request_from(dir, key(f.kind, id, dir), Msg::new(m, start, end, size), cx);
            }
            9 | 11 => {
                let id = r.u16()?;
                if v5 {
                    r.properties()?;
                }
                let codes: Vec<u8> = r.rest().iter().take(MAX_TOPICS).copied().collect();
                // SUBACK's 0x80 is a refusal in 3.1.1 too; 3.1.1's UNSUBACK has no codes
                let worst = codes.iter().copied().find(|c| *c >= 0x80).or(codes.first().copied()).unwrap_or(0);
                let mut m = reply(name, worst, wire::reason_name(worst), worst >= 0x80);
                m.insert("reason_codes".into(), json!(codes));
                self.x.reply(key(f.kind - 1, id, dir.flip()), Msg::new(m, start, end, size), cx);
            }
            12 => self.x.request_from(dir, key(12, 0, dir), Msg::new(fields! {"method" => name, "target" => Value::Null}, start, end, size), cx),
            13 => self.x.reply(key(12, 0, dir.flip()), Msg::new(reply(name, 0, "Success", false), start, end, size), cx),
            14 | 15 => {
                let code = r.u8().unwrap_or(0);
                let mut m = fields! {"method" => name, "target" => Value::Null, "reason_code" => code};
                if v5 && code != 0 {
                    m.insert("reason".into(), json!(wire::reason_name(code)));
                }
                self.x.alone(dir, Msg::new(m, start, end, size), cx);
            }
            _ => return None,
        }
        Some(())
    }
}

fn reply(name: &str, code: u8, status: &str, failed: bool) -> Fields {
    let error = if failed { json!({"reason_code": code, "reason": status}) } else { Value::Null };
    fields! {"status" => status, "error" => error, "packet_type" => name, "reason_code" => code}
}

impl StreamParser for Mqtt {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let f = match wire::fixed(data) {
            Ok(f) => f,
            Err(Bad::More) => return Progress::NeedMore { consumed: 0, needed: data.len() + 1 },
            Err(Bad::Invalid) if self.resync[dir.idx()] => {
                cx.stats.resync_skipped_bytes += data.len() as u64;
                return Progress::Consumed(data.len());
            }
            Err(Bad::Invalid) => {
                cx.stats.l7_malformed += 1;
                return Progress::Desync;
            }
        };
        let whole = f.size + f.len;
        if data.len() < whole {
            // after a gap, a segment that does not hold its first packet whole is skipped
            if self.resync[dir.idx()] && whole > cx.limits.max_pending_bytes / 2 {
                cx.stats.resync_skipped_bytes += data.len() as u64;
                return Progress::Consumed(data.len());
            }
            return Progress::NeedMore { consumed: 0, needed: whole };
        }
        self.resync[dir.idx()] = false;
        if self.packet(dir, f, &data[f.size..whole], cx).is_none() {
            cx.stats.l7_malformed += 1;
        }
        Progress::Consumed(whole)
    }

    fn on_gap(&mut self, dir: Dir, _len: u64, _cx: &mut Cx<'_>) {
        // packets lost whole leave the next segment at a packet's start, usually
        self.resync[dir.idx()] = true;
        self.x.gap();
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() {
            cx.stats.l7_malformed += 1;
        }
    }
}

impl crate::proto::TcpParser for Mqtt {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        self.x.finish(cx)
    }
}
