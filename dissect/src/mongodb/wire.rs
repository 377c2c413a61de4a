//! MongoDB's wire protocol: the message header, OP_MSG's sections, OP_QUERY, OP_REPLY and
//! OP_COMPRESSED; and BSON documents as (relaxed extended) JSON, capped in depth, in
//! elements and in the length of strings.

use base64::Engine;
use serde_json::{json, Map, Value};

pub const OP_REPLY: i32 = 1;
pub const OP_UPDATE: i32 = 2001;
pub const OP_INSERT: i32 = 2002;
pub const OP_QUERY: i32 = 2004;
pub const OP_GET_MORE: i32 = 2005;
pub const OP_DELETE: i32 = 2006;
pub const OP_KILL_CURSORS: i32 = 2007;
pub const OP_COMPRESSED: i32 = 2012;
pub const OP_MSG: i32 = 2013;

/// The longest message MongoDB sends (48 MB); longer lengths are not MongoDB's.
pub const MAX_MESSAGE: i32 = 48 << 20;

pub fn op_name(op: i32) -> &'static str {
    match op {
        OP_REPLY => "OP_REPLY",
        OP_UPDATE => "OP_UPDATE",
        OP_INSERT => "OP_INSERT",
        OP_QUERY => "OP_QUERY",
        OP_GET_MORE => "OP_GET_MORE",
        OP_DELETE => "OP_DELETE",
        OP_KILL_CURSORS => "OP_KILL_CURSORS",
        OP_COMPRESSED => "OP_COMPRESSED",
        OP_MSG => "OP_MSG",
        _ => "OP_UNKNOWN",
    }
}

/// A message header: length, request id, the id it answers, opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op: i32,
}

pub fn header(b: &[u8]) -> Option<Header> {
    let i = |at: usize| b.get(at..at + 4).map(|v| i32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    Some(Header { len: i(0)?, request_id: i(4)?, response_to: i(8)?, op: i(12)? })
}

pub fn plausible(h: &Header) -> bool {
    (16..=MAX_MESSAGE).contains(&h.len) && matches!(h.op, OP_REPLY | 2001..=2007 | OP_COMPRESSED | OP_MSG)
}

/// How much of a document is shown.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub depth: usize,
    pub elements: usize,
    pub string: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps { depth: 32, elements: 1000, string: 4096 }
    }
}

/// A BSON document at the start of `b`: as JSON, and the bytes it took. `None` when it is
/// not a well-formed document (or nests deeper than the cap).
pub fn document(b: &[u8], caps: Caps) -> Option<(Value, usize)> {
    let mut left = caps.elements;
    let (m, n) = doc(b, caps, 0, &mut left)?;
    Some((Value::Object(m), n))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    b.get(at..at + 4).map(|v| i32::from_le_bytes([v[0], v[1], v[2], v[3]]))
}

fn doc(b: &[u8], caps: Caps, depth: usize, left: &mut usize) -> Option<(Map<String, Value>, usize)> {
    if depth > caps.depth {
        return None;
    }
    let len = i32_at(b, 0)?;
    if len < 5 || len as usize > b.len() {
        return None;
    }
    let body = &b[..len as usize];
    if body[body.len() - 1] != 0 {
        return None;
    }
    let mut m = Map::new();
    let mut at = 4;
    let mut more = 0usize;
    while at < body.len() - 1 {
        let t = body[at];
        let name_end = at + 1 + memchr::memchr(0, &body[at + 1..])?;
        let name = String::from_utf8_lossy(&body[at + 1..name_end]).into_owned();
        let (v, n) = element(t, &body[name_end + 1..body.len() - 1], caps, depth, left)?;
        at = name_end + 1 + n;
        if *left == 0 {
            more += 1;
            continue;
        }
        *left -= 1;
        m.insert(name, v);
    }
    if more > 0 {
        m.insert("$truncated".into(), json!(more));
    }
    Some((m, len as usize))
}

fn text(b: &[u8], cap: usize) -> Value {
    crate::l7::value(b, cap)
}

/// One element's value of type `t` at the start of `b`, and its length.
fn element(t: u8, b: &[u8], caps: Caps, depth: usize, left: &mut usize) -> Option<(Value, usize)> {
    let fixed = |n: usize| b.get(..n);
    Some(match t {
        0x01 => (json!(f64::from_le_bytes(fixed(8)?.try_into().ok()?)), 8),
        0x02 | 0x0d | 0x0e => {
            let n = i32_at(b, 0)?;
            if n < 1 || 4 + n as usize > b.len() {
                return None;
            }
            (text(&b[4..4 + n as usize - 1], caps.string), 4 + n as usize)
        }
        0x03 | 0x04 => {
            let (m, n) = doc(b, caps, depth + 1, left)?;
            if t == 0x04 {
                (Value::Array(m.into_iter().map(|(_, v)| v).collect()), n)
            } else {
                (Value::Object(m), n)
            }
        }
        0x05 => {
            let n = i32_at(b, 0)?;
            if n < 0 || 5 + n as usize > b.len() {
                return None;
            }
            let data = &b[5..5 + n as usize];
            let shown = &data[..data.len().min(caps.string)];
            (json!({"$binary": {"base64": base64::engine::general_purpose::STANDARD.encode(shown), "subType": format!("{:02x}", b[4])}}), 5 + n as usize)
        }
        0x06 => (json!({"$undefined": true}), 0),
        0x07 => (json!({"$oid": hex(fixed(12)?)}), 12),
        0x08 => (json!(*b.first()? != 0), 1),
        0x09 => (json!({"$date": i64::from_le_bytes(fixed(8)?.try_into().ok()?)}), 8),
        0x0a => (Value::Null, 0),
        0x0b => {
            let p = memchr::memchr(0, b)?;
            let o = p + 1 + memchr::memchr(0, &b[p + 1..])?;
            (json!({"$regularExpression": {"pattern": String::from_utf8_lossy(&b[..p]), "options": String::from_utf8_lossy(&b[p + 1..o])}}), o + 1)
        }
        0x0c => {
            let n = i32_at(b, 0)?;
            if n < 1 || 4 + n as usize + 12 > b.len() {
                return None;
            }
            (json!({"$dbPointer": {"$ref": String::from_utf8_lossy(&b[4..4 + n as usize - 1]), "$id": {"$oid": hex(&b[4 + n as usize..16 + n as usize])}}}), 16 + n as usize)
        }
        0x0f => {
            let n = i32_at(b, 0)?;
            if n < 14 || n as usize > b.len() {
                return None;
            }
            let code_len = i32_at(b, 4)?;
            if code_len < 1 || 8 + code_len as usize > n as usize {
                return None;
            }
            let code = text(&b[8..8 + code_len as usize - 1], caps.string);
            let (scope, _) = doc(&b[8 + code_len as usize..n as usize], caps, depth + 1, left)?;
            (json!({"$code": code, "$scope": scope}), n as usize)
        }
        0x10 => (json!(i32::from_le_bytes(fixed(4)?.try_into().ok()?)), 4),
        0x11 => {
            let v = fixed(8)?;
            (json!({"$timestamp": {"t": u32::from_le_bytes(v[4..8].try_into().ok()?), "i": u32::from_le_bytes(v[..4].try_into().ok()?)}}), 8)
        }
        0x12 => (json!(i64::from_le_bytes(fixed(8)?.try_into().ok()?)), 8),
        0x13 => (json!({"$numberDecimalBytes": hex(fixed(16)?)}), 16),
        0xff => (json!({"$minKey": 1}), 0),
        0x7f => (json!({"$maxKey": 1}), 0),
        _ => return None,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// OP_MSG's sections: the body document, and each document sequence as
/// `(identifier, documents)`. `None` when a section is not well formed.
pub fn op_msg(b: &[u8], caps: Caps) -> Option<(Value, Vec<(String, Vec<Value>)>)> {
    let flags = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
    let end = if flags & 1 != 0 { b.len().checked_sub(4)? } else { b.len() };
    let mut at = 4;
    let (mut body, mut seqs) = (None, Vec::new());
    while at < end {
        match b[at] {
            0 => {
                let (d, n) = document(&b[at + 1..end], caps)?;
                body.get_or_insert(d);
                at += 1 + n;
            }
            1 => {
                let n = i32_at(b, at + 1)? as usize;
                let s = b.get(at + 1..at + 1 + n)?;
                let id_end = 4 + memchr::memchr(0, &s[4..])?;
                let id = String::from_utf8_lossy(&s[4..id_end]).into_owned();
                let mut docs = Vec::new();
                let mut p = id_end + 1;
                while p < s.len() {
                    let (d, k) = document(&s[p..], caps)?;
                    if docs.len() < 100 {
                        docs.push(d);
                    }
                    p += k;
                }
                seqs.push((id, docs));
                at += 1 + n;
            }
            _ => return None,
        }
    }
    Some((body?, seqs))
}

/// OP_COMPRESSED's body inflated: the original opcode and the message's body (after its
/// header). Snappy, zlib and zstd are read; `Err` says what could not be.
pub fn decompress(b: &[u8], max: usize) -> Result<(i32, Vec<u8>), String> {
    let op = i32_at(b, 0).ok_or("cut short")?;
    let size = i32_at(b, 4).ok_or("cut short")?;
    let &id = b.get(8).ok_or("cut short")?;
    if size < 0 || size as usize > max {
        return Err(format!("inflates to {size} bytes, over the cap"));
    }
    let data = &b[9..];
    let out = match id {
        0 => data.to_vec(),
        1 => snap::raw::Decoder::new().decompress_vec(data).map_err(|e| format!("snappy: {e}"))?,
        2 => {
            let mut out = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(flate2::read::ZlibDecoder::new(data), max as u64), &mut out).map_err(|e| format!("zlib: {e}"))?;
            out
        }
        3 => {
            let mut dec = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| format!("zstd: {e}"))?;
            let mut out = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut dec, max as u64), &mut out).map_err(|e| format!("zstd: {e}"))?;
            out
        }
        n => return Err(format!("compressor {n} is unknown")),
    };
    if out.len() != size as usize {
        return Err(format!("inflated to {} bytes where {size} were announced", out.len()));
    }
    Ok((op, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// {"find": "users", "filter": {"age": {"$gt": 30}}, "$db": "shop", "id": ObjectId}
    pub fn find_doc() -> Vec<u8> {
        let mut inner = Vec::new();
        inner.extend_from_slice(b"\x10$gt\0\x1e\0\0\0");
        let gt = [&((inner.len() + 5) as i32).to_le_bytes()[..], &inner, &[0]].concat();
        let age = [&b"\x03age\0"[..], &gt].concat();
        let filter = [&((age.len() + 5) as i32).to_le_bytes()[..], &age, &[0]].concat();
        let mut e = Vec::new();
        e.extend_from_slice(b"\x02find\0\x06\0\0\0users\0");
        e.extend_from_slice(b"\x03filter\0");
        e.extend_from_slice(&filter);
        e.extend_from_slice(b"\x02$db\0\x05\0\0\0shop\0");
        e.extend_from_slice(b"\x07id\0");
        e.extend_from_slice(&[0xab; 12]);
        [&((e.len() + 5) as i32).to_le_bytes()[..], &e, &[0]].concat()
    }

    #[test]
    fn bson_as_json() {
        let d = find_doc();
        let (v, n) = document(&d, Caps::default()).unwrap();
        assert_eq!(n, d.len());
        assert_eq!(v, json!({"find": "users", "filter": {"age": {"$gt": 30}}, "$db": "shop", "id": {"$oid": "abababababababababababab"}}));
        // too deep for the cap, and cut short
        assert!(document(&d, Caps { depth: 1, ..Caps::default() }).is_none());
        assert!(document(&d[..d.len() - 1], Caps::default()).is_none());
        // an element cap keeps the first and counts the rest
        let (v, _) = document(&d, Caps { elements: 2, ..Caps::default() }).unwrap();
        assert_eq!(v["$truncated"], 3);
    }

    #[test]
    fn compressed_bodies() {
        let body = b"hello hello hello".to_vec();
        let snappy = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        let msg = [&2013i32.to_le_bytes()[..], &(body.len() as i32).to_le_bytes(), &[1], &snappy].concat();
        assert_eq!(decompress(&msg, 1 << 20), Ok((2013, body.clone())));
        let bad = [&2013i32.to_le_bytes()[..], &(body.len() as i32).to_le_bytes(), &[9], &snappy].concat();
        assert!(decompress(&bad, 1 << 20).is_err());
    }
}
