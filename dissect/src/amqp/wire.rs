//! AMQP 0-9-1 frames, and the arguments of its methods as the specification lists them.

use serde_json::{json, Map, Value};

pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const FRAME_END: u8 = 0xce;

pub mod kind {
    pub const METHOD: u8 = 1;
    pub const HEADER: u8 = 2;
    pub const BODY: u8 = 3;
    pub const HEARTBEAT: u8 = 8;
}

/// A frame's header: type, channel and payload size. The payload follows, then 0xCE.
pub fn header(b: &[u8]) -> Option<(u8, u16, u32)> {
    let h = b.get(..7)?;
    Some((h[0], u16::from_be_bytes([h[1], h[2]]), u32::from_be_bytes([h[3], h[4], h[5], h[6]])))
}

/// The class names, by id.
pub fn class_name(c: u16) -> Option<&'static str> {
    Some(match c {
        10 => "connection",
        20 => "channel",
        30 => "access",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Arg {
    Octet,
    Short,
    Long,
    LongLong,
    Bit,
    ShortStr,
    LongStr,
    Table,
    /// A value never shown (connection.start-ok's response: credentials).
    Secret,
}

use Arg::*;

/// A method's name and its arguments (name and type), in order.
fn spec(class: u16, method: u16) -> Option<(&'static str, &'static [(&'static str, Arg)])> {
    Some(match (class, method) {
        (10, 10) => ("start", &[("version_major", Octet), ("version_minor", Octet), ("server_properties", Table), ("mechanisms", LongStr), ("locales", LongStr)]),
        (10, 11) => ("start-ok", &[("client_properties", Table), ("mechanism", ShortStr), ("response", Secret), ("locale", ShortStr)]),
        (10, 20) => ("secure", &[("challenge", Secret)]),
        (10, 21) => ("secure-ok", &[("response", Secret)]),
        (10, 30) | (10, 31) => (if method == 30 { "tune" } else { "tune-ok" }, &[("channel_max", Short), ("frame_max", Long), ("heartbeat", Short)]),
        (10, 40) => ("open", &[("virtual_host", ShortStr), ("capabilities", ShortStr), ("insist", Bit)]),
        (10, 41) => ("open-ok", &[("known_hosts", ShortStr)]),
        (10, 50) | (20, 40) => ("close", &[("reply_code", Short), ("reply_text", ShortStr), ("class_id", Short), ("method_id", Short)]),
        (10, 51) | (20, 41) => ("close-ok", &[]),
        (10, 60) => ("blocked", &[("reason", ShortStr)]),
        (10, 61) => ("unblocked", &[]),
        (20, 10) => ("open", &[("out_of_band", ShortStr)]),
        (20, 11) => ("open-ok", &[("channel_id", LongStr)]),
        (20, 20) | (20, 21) => (if method == 20 { "flow" } else { "flow-ok" }, &[("active", Bit)]),
        (30, 10) => ("request", &[("realm", ShortStr), ("flags", Octet)]),
        (30, 11) => ("request-ok", &[("ticket", Short)]),
        (40, 10) => ("declare", &[("ticket", Short), ("exchange", ShortStr), ("type", ShortStr), ("passive", Bit), ("durable", Bit), ("auto_delete", Bit), ("internal", Bit), ("no_wait", Bit), ("arguments", Table)]),
        (40, 11) => ("declare-ok", &[]),
        (40, 20) => ("delete", &[("ticket", Short), ("exchange", ShortStr), ("if_unused", Bit), ("no_wait", Bit)]),
        (40, 21) => ("delete-ok", &[]),
        (40, 30) | (40, 40) => (if method == 30 { "bind" } else { "unbind" }, &[("ticket", Short), ("destination", ShortStr), ("source", ShortStr), ("routing_key", ShortStr), ("no_wait", Bit), ("arguments", Table)]),
        (40, 31) => ("bind-ok", &[]),
        (40, 51) => ("unbind-ok", &[]),
        (50, 10) => ("declare", &[("ticket", Short), ("queue", ShortStr), ("passive", Bit), ("durable", Bit), ("exclusive", Bit), ("auto_delete", Bit), ("no_wait", Bit), ("arguments", Table)]),
        (50, 11) => ("declare-ok", &[("queue", ShortStr), ("message_count", Long), ("consumer_count", Long)]),
        (50, 20) => ("bind", &[("ticket", Short), ("queue", ShortStr), ("exchange", ShortStr), ("routing_key", ShortStr), ("no_wait", Bit), ("arguments", Table)]),
        (50, 21) => ("bind-ok", &[]),
        (50, 30) => ("purge", &[("ticket", Short), ("queue", ShortStr), ("no_wait", Bit)]),
        (50, 31) => ("purge-ok", &[("message_count", Long)]),
        (50, 40) => ("delete", &[("ticket", Short), ("queue", ShortStr), ("if_unused", Bit), ("if_empty", Bit), ("no_wait", Bit)]),
        (50, 41) => ("delete-ok", &[("message_count", Long)]),
        (50, 50) => ("unbind", &[("ticket", Short), ("queue", ShortStr), ("exchange", ShortStr), ("routing_key", ShortStr), ("arguments", Table)]),
        (50, 51) => ("unbind-ok", &[]),
        (60, 10) => ("qos", &[("prefetch_size", Long), ("prefetch_count", Short), ("global", Bit)]),
        (60, 11) => ("qos-ok", &[]),
        (60, 20) => ("consume", &[("ticket", Short), ("queue", ShortStr), ("consumer_tag", ShortStr), ("no_local", Bit), ("no_ack", Bit), ("exclusive", Bit), ("no_wait", Bit), ("arguments", Table)]),
        (60, 21) => ("consume-ok", &[("consumer_tag", ShortStr)]),
        (60, 30) => ("cancel", &[("consumer_tag", ShortStr), ("no_wait", Bit)]),
        (60, 31) => ("cancel-ok", &[("consumer_tag", ShortStr)]),
        (60, 40) => ("publish", &[("ticket", Short), ("exchange", ShortStr), ("routing_key", ShortStr), ("mandatory", Bit), ("immediate", Bit)]),
        (60, 50) => ("return", &[("reply_code", Short), ("reply_text", ShortStr), ("exchange", ShortStr), ("routing_key", ShortStr)]),
        (60, 60) => ("deliver", &[("consumer_tag", ShortStr), ("delivery_tag", LongLong), ("redelivered", Bit), ("exchange", ShortStr), ("routing_key", ShortStr)]),
        (60, 70) => ("get", &[("ticket", Short), ("queue", ShortStr), ("no_ack", Bit)]),
        (60, 71) => ("get-ok", &[("delivery_tag", LongLong), ("redelivered", Bit), ("exchange", ShortStr), ("routing_key", ShortStr), ("message_count", Long)]),
        (60, 72) => ("get-empty", &[("cluster_id", ShortStr)]),
        (60, 80) => ("ack", &[("delivery_tag", LongLong), ("multiple", Bit)]),
        (60, 90) => ("reject", &[("delivery_tag", LongLong), ("requeue", Bit)]),
        (60, 100) => ("recover-async", &[("requeue", Bit)]),
        (60, 110) => ("recover", &[("requeue", Bit)]),
        (60, 111) => ("recover-ok", &[]),
        (60, 120) => ("nack", &[("delivery_tag", LongLong), ("multiple", Bit), ("requeue", Bit)]),
        (85, 10) => ("select", &[("no_wait", Bit)]),
        (85, 11) => ("select-ok", &[]),
        (90, 10) => ("select", &[]),
        (90, 11) => ("select-ok", &[]),
        (90, 20) => ("commit", &[]),
        (90, 21) => ("commit-ok", &[]),
        (90, 30) => ("rollback", &[]),
        (90, 31) => ("rollback-ok", &[]),
        _ => return None,
    })
}

/// A method frame's payload: `class.method` and its arguments as JSON (`None` when the
/// class or method is unknown, or the arguments are cut short).
pub fn method(p: &[u8]) -> Option<(u16, u16, String, Map<String, Value>)> {
    let class = u16::from_be_bytes([*p.first()?, *p.get(1)?]);
    let method = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
    let (name, args) = spec(class, method)?;
    let mut r = Reader { b: p, at: 4, bits: None };
    let mut out = Map::new();
    for (n, a) in args {
        let v = r.arg(*a)?;
        if !matches!(a, Secret) && !n.starts_with("ticket") && *n != "reserved" {
            out.insert((*n).into(), v);
        }
    }
    Some((class, method, format!("{}.{name}", class_name(class)?), out))
}

/// A content header's body size and properties.
pub fn content_header(p: &[u8]) -> Option<(u64, Map<String, Value>)> {
    const PROPS: [(&str, Arg); 14] = [
        ("content_type", ShortStr),
        ("content_encoding", ShortStr),
        ("headers", Table),
        ("delivery_mode", Octet),
        ("priority", Octet),
        ("correlation_id", ShortStr),
        ("reply_to", ShortStr),
        ("expiration", ShortStr),
        ("message_id", ShortStr),
        ("timestamp", LongLong),
        ("type", ShortStr),
        ("user_id", ShortStr),
        ("app_id", ShortStr),
        ("cluster_id", ShortStr),
    ];
    let mut r = Reader { b: p, at: 4, bits: None };
    let size = r.u64()?;
    let flags = r.u16()?;
    let mut out = Map::new();
    for (i, (n, a)) in PROPS.iter().enumerate() {
        if flags & (0x8000 >> i) != 0 {
            out.insert((*n).into(), r.arg(*a)?);
        }
    }
    Some((size, out))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    /// Bits are packed into octets, eight to one: the octet being read and the next bit.
    bits: Option<(u8, u8)>,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn text(b: &[u8]) -> Value {
        crate::l7::value(b, 4096)
    }

    fn arg(&mut self, a: Arg) -> Option<Value> {
        if !matches!(a, Bit) {
            self.bits = None;
        }
        Some(match a {
            Octet => json!(self.u8()?),
            Short => json!(self.u16()?),
            Long => json!(self.u32()?),
            LongLong => json!(self.u64()?),
            Bit => {
                let (octet, n) = match self.bits {
                    Some((o, n)) if n < 8 => (o, n),
                    _ => (self.u8()?, 0),
                };
                self.bits = Some((octet, n + 1));
                json!(octet & (1 << n) != 0)
            }
            ShortStr => {
                let n = self.u8()? as usize;
                Self::text(self.bytes(n)?)
            }
            LongStr | Secret => {
                let n = self.u32()? as usize;
                let v = self.bytes(n)?;
                if matches!(a, Secret) {
                    Value::Null
                } else {
                    Self::text(v)
                }
            }
            Table => self.table(0)?,
        })
    }

    /// A field table (a length, then names and typed values), its first 256 fields.
    fn table(&mut self, depth: usize) -> Option<Value> {
        let n = self.u32()? as usize;
        let mut t = Reader { b: self.bytes(n)?, at: 0, bits: None };
        let mut m = Map::new();
        while t.at < t.b.len() && m.len() < 256 {
            let k = t.u8()? as usize;
            let k = String::from_utf8_lossy(t.bytes(k)?).into_owned();
            m.insert(k, t.field(depth)?);
        }
        Some(Value::Object(m))
    }

    /// A field table's value (RabbitMQ's types, as its clients send them).
    fn field(&mut self, depth: usize) -> Option<Value> {
        if depth > 16 {
            return None;
        }
        Some(match self.u8()? {
            b't' => json!(self.u8()? != 0),
            b'b' | b'B' => json!(self.u8()?),
            b's' | b'u' => json!(self.u16()?),
            b'I' | b'i' => json!(self.u32()? as i32),
            b'l' | b'L' | b'T' => json!(self.u64()? as i64),
            b'f' => json!(f32::from_bits(self.u32()?)),
            b'd' => json!(f64::from_bits(self.u64()?)),
            b'D' => {
                let scale = self.u8()?;
                json!({"scale": scale, "value": self.u32()?})
            }
            b'S' | b'x' => {
                let n = self.u32()? as usize;
                Self::text(self.bytes(n)?)
            }
            b'A' => {
                let n = self.u32()? as usize;
                let mut t = Reader { b: self.bytes(n)?, at: 0, bits: None };
                let mut v = Vec::new();
                while t.at < t.b.len() && v.len() < 256 {
                    v.push(t.field(depth + 1)?);
                }
                Value::Array(v)
            }
            b'F' => self.table(depth + 1)?,
            b'V' => Value::Null,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_their_arguments() {
        // basic.publish: ticket 0, exchange "orders", routing key "new", mandatory
        let p = b"\x00\x3c\x00\x28\x00\x00\x06orders\x03new\x01";
        let (c, m, name, args) = method(p).unwrap();
        assert_eq!((c, m, name.as_str()), (60, 40, "basic.publish"));
        assert_eq!(Value::Object(args), json!({"exchange": "orders", "routing_key": "new", "mandatory": true, "immediate": false}));
        // channel.close 404 with its text
        let p = b"\x00\x14\x00\x28\x01\x94\x09NOT_FOUND\x00\x32\x00\x0a";
        let (_, _, name, args) = method(p).unwrap();
        assert_eq!(name, "channel.close");
        assert_eq!(args["reply_code"], 404);
        // connection.start-ok's credentials are never shown
        let p = b"\x00\x0a\x00\x0b\x00\x00\x00\x00\x05PLAIN\x00\x00\x00\x0c\x00guest\x00guest\x05en_US";
        let (_, _, _, args) = method(p).unwrap();
        assert!(!args.contains_key("response"));
        assert!(method(b"\x00\x3c\x00\x28\x00").is_none(), "cut short");
        // a content header: 5 bytes, content type text/plain, delivery mode 2
        let h = b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x90\x00\x0atext/plain\x02";
        let (size, props) = content_header(h).unwrap();
        assert_eq!(size, 5);
        assert_eq!(Value::Object(props), json!({"content_type": "text/plain", "delivery_mode": 2}));
    }
}
