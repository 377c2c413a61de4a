//! MQTT 3.1, 3.1.1 and 5.0 control packets: the fixed header, and the fields of the
//! variable headers and payloads that kshark reads (with version 5's properties).

use serde_json::{json, Map, Value};

pub const NAMES: [&str; 16] = [
    "RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
    "PINGRESP", "DISCONNECT", "AUTH",
];

/// A fixed header: type, flags, remaining length, and the header's own length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    pub kind: u8,
    pub flags: u8,
    pub len: usize,
    pub size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    More,
    Invalid,
}

/// Reads a fixed header; the flags must be those the type requires.
pub fn fixed(b: &[u8]) -> Result<Fixed, Bad> {
    let &first = b.first().ok_or(Bad::More)?;
    let (kind, flags) = (first >> 4, first & 0x0f);
    let ok = match kind {
        0 => false,
        3 => flags & 0x6 != 0x6, // QoS 3 does not exist
        6 | 8 | 10 => flags == 0x2,
        _ => flags == 0,
    };
    if !ok {
        return Err(Bad::Invalid);
    }
    let (len, n) = varint(&b[1..])?;
    Ok(Fixed { kind, flags, len: len as usize, size: 1 + n })
}

/// A variable byte integer (at most four bytes).
pub fn varint(b: &[u8]) -> Result<(u32, usize), Bad> {
    let mut v = 0u32;
    for i in 0..4 {
        let &c = b.get(i).ok_or(Bad::More)?;
        v |= ((c & 0x7f) as u32) << (7 * i);
        if c & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(Bad::Invalid)
}

pub struct Reader<'a> {
    pub b: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A two-byte length, then that many bytes.
    pub fn data(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }
    pub fn varint(&mut self) -> Option<u32> {
        let (v, n) = varint(self.b.get(self.at..)?).ok()?;
        self.at += n;
        Some(v)
    }
    pub fn rest(&self) -> &'a [u8] {
        self.b.get(self.at..).unwrap_or(&[])
    }

    /// Version 5 properties (a length, then identifier/value pairs) as JSON; secrets (the
    /// authentication data) are not shown.
    pub fn properties(&mut self) -> Option<Map<String, Value>> {
        let n = self.varint()? as usize;
        let mut r = Reader::new(self.bytes(n)?);
        let mut m = Map::new();
        let text = |b: &[u8]| crate::l7::value(b, 4096);
        while r.at < r.b.len() {
            let id = r.varint()?;
            let (name, v) = match id {
                0x01 => ("payload_format_indicator", json!(r.u8()?)),
                0x02 => ("message_expiry_interval", json!(r.u32()?)),
                0x03 => ("content_type", text(r.data()?)),
                0x08 => ("response_topic", text(r.data()?)),
                0x09 => ("correlation_data", text(r.data()?)),
                0x0b => ("subscription_identifier", json!(r.varint()?)),
                0x11 => ("session_expiry_interval", json!(r.u32()?)),
                0x12 => ("assigned_client_identifier", text(r.data()?)),
                0x13 => ("server_keep_alive", json!(r.u16()?)),
                0x15 => ("authentication_method", text(r.data()?)),
                0x16 => {
                    r.data()?;
                    continue;
                }
                0x17 => ("request_problem_information", json!(r.u8()?)),
                0x18 => ("will_delay_interval", json!(r.u32()?)),
                0x19 => ("request_response_information", json!(r.u8()?)),
                0x1a => ("response_information", text(r.data()?)),
                0x1c => ("server_reference", text(r.data()?)),
                0x1f => ("reason_string", text(r.data()?)),
                0x21 => ("receive_maximum", json!(r.u16()?)),
                0x22 => ("topic_alias_maximum", json!(r.u16()?)),
                0x23 => ("topic_alias", json!(r.u16()?)),
                0x24 => ("maximum_qos", json!(r.u8()?)),
                0x25 => ("retain_available", json!(r.u8()?)),
                0x26 => {
                    let (k, v) = (text(r.data()?), text(r.data()?));
                    let list = m.entry("user_properties").or_insert_with(|| json!([]));
                    if let Some(a) = list.as_array_mut() {
                        a.push(json!([k, v]));
                    }
                    continue;
                }
                0x27 => ("maximum_packet_size", json!(r.u32()?)),
                0x28 => ("wildcard_subscription_available", json!(r.u8()?)),
                0x29 => ("subscription_identifier_available", json!(r.u8()?)),
                0x2a => ("shared_subscription_available", json!(r.u8()?)),
                _ => return None,
            };
            m.insert(name.into(), v);
        }
        Some(m)
    }
}

/// A reason code's name (version 5; CONNACK's return codes of 3.1.1 are read as these).
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0x00 => "Success",
        0x01 => "Granted QoS 1",
        0x02 => "Granted QoS 2",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x11 => "No subscription existed",
        0x18 => "Continue authentication",
        0x19 => "Re-authenticate",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8a => "Banned",
        0x8b => "Server shutting down",
        0x8c => "Bad authentication method",
        0x8d => "Keep Alive timeout",
        0x8e => "Session taken over",
        0x8f => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x92 => "Packet Identifier not found",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9a => "Retain not supported",
        0x9b => "QoS not supported",
        0x9c => "Use another server",
        0x9d => "Server moved",
        0x9e => "Shared Subscriptions not supported",
        0x9f => "Connection rate exceeded",
        0xa0 => "Maximum connect time",
        0xa1 => "Subscription Identifiers not supported",
        0xa2 => "Wildcard Subscriptions not supported",
        _ => "Unknown",
    }
}

/// CONNACK's return codes in 3.1 and 3.1.1.
pub fn v3_connack_name(code: u8) -> &'static str {
    match code {
        0 => "Connection Accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "Server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_headers_and_properties() {
        assert_eq!(fixed(&[0x10, 0x0c]), Ok(Fixed { kind: 1, flags: 0, len: 12, size: 2 }));
        assert_eq!(fixed(&[0x32, 0xc1, 0x02]), Ok(Fixed { kind: 3, flags: 2, len: 321, size: 3 }));
        assert_eq!(fixed(&[0x82]), Err(Bad::More));
        assert_eq!(fixed(&[0x80, 0x00]), Err(Bad::Invalid), "SUBSCRIBE's flags must be 0010");
        assert_eq!(fixed(&[0x36, 0x00]), Err(Bad::Invalid), "QoS 3");
        assert_eq!(fixed(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), Err(Bad::Invalid), "a fifth length byte");
        // properties: content type "a/b", a user property, authentication data (hidden)
        let p = b"\x12\x03\x00\x03a/b\x26\x00\x01k\x00\x01v\x16\x00\x02xx";
        let m = Reader::new(p).properties().unwrap();
        assert_eq!(Value::Object(m), json!({"content_type": "a/b", "user_properties": [["k", "v"]]}));
    }
}
