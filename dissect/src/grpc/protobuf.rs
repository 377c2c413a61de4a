//! Protocol Buffers without a schema: the wire view `protoc --decode_raw` gives, as JSON.
//!
//! Each field is `{"field": N, "wire_type": W, ...}` with, by wire type:
//! `varint` → `"value"` (unsigned); `i64`/`i32` → `"value"` (the unsigned bits);
//! `len` → `"string"` when the bytes are printable UTF-8, else `"message"` (the nested
//! fields) when they parse as a message, else `"base64"`; `group` → `"message"`.
//! A message that does not parse whole is not a message: the caller shows its bytes.

use base64::Engine;
use serde_json::{json, Map, Value};

const MAX_DEPTH: usize = 32;

/// The fields of `b`, or `None` when `b` is not a well-formed message.
pub fn decode_raw(b: &[u8]) -> Option<Value> {
    let mut p = Parser { b, i: 0 };
    p.message(0, None).map(Value::Array)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for k in 0..10 {
            let x = *self.b.get(self.i)?;
            self.i += 1;
            if k == 9 && x > 1 {
                return None;
            }
            v |= ((x & 0x7f) as u64) << (7 * k);
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }

    /// Fields up to the end of the input, or up to the END_GROUP of `group`.
    fn message(&mut self, depth: usize, group: Option<u64>) -> Option<Vec<Value>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut out = Vec::new();
        while self.i < self.b.len() {
            let key = self.varint()?;
            let (field, wt) = (key >> 3, key & 7);
            if field == 0 || field > (1 << 29) - 1 {
                return None;
            }
            let mut f = Map::new();
            f.insert("field".into(), json!(field));
            match wt {
                0 => {
                    f.insert("wire_type".into(), json!("varint"));
                    f.insert("value".into(), json!(self.varint()?));
                }
                1 => {
                    f.insert("wire_type".into(), json!("i64"));
                    f.insert("value".into(), json!(u64::from_le_bytes(self.take(8)?.try_into().ok()?)));
                }
                5 => {
                    f.insert("wire_type".into(), json!("i32"));
                    f.insert("value".into(), json!(u32::from_le_bytes(self.take(4)?.try_into().ok()?)));
                }
                2 => {
                    let n = usize::try_from(self.varint()?).ok()?;
                    let s = self.take(n)?;
                    f.insert("wire_type".into(), json!("len"));
                    len_value(s, depth, &mut f);
                }
                3 => {
                    f.insert("wire_type".into(), json!("group"));
                    let inner = self.message(depth + 1, Some(field))?;
                    f.insert("message".into(), Value::Array(inner));
                }
                4 => return (group == Some(field)).then_some(out),
                _ => return None,
            }
            out.push(Value::Object(f));
        }
        group.is_none().then_some(out)
    }
}

fn len_value(s: &[u8], depth: usize, f: &mut Map<String, Value>) {
    if let Ok(t) = std::str::from_utf8(s) {
        if t.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')) {
            f.insert("string".into(), json!(t));
            return;
        }
    }
    if !s.is_empty() {
        let mut p = Parser { b: s, i: 0 };
        if let Some(inner) = p.message(depth + 1, None) {
            f.insert("message".into(), Value::Array(inner));
            return;
        }
    }
    f.insert("base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(s)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_types() {
        // 1: varint 150, 2: "hi", 3: nested {1: 1}, 4: fixed32 1, 5: fixed64 2, 6: bytes ff
        let b = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1a, 0x02, 0x08, 0x01, 0x25, 1, 0, 0, 0, 0x29, 2, 0, 0, 0, 0, 0, 0, 0, 0x32, 0x01, 0xff];
        let v = decode_raw(&b).unwrap();
        assert_eq!(
            v,
            json!([
                {"field": 1, "wire_type": "varint", "value": 150},
                {"field": 2, "wire_type": "len", "string": "hi"},
                {"field": 3, "wire_type": "len", "message": [{"field": 1, "wire_type": "varint", "value": 1}]},
                {"field": 4, "wire_type": "i32", "value": 1},
                {"field": 5, "wire_type": "i64", "value": 2},
                {"field": 6, "wire_type": "len", "base64": "/w=="},
            ])
        );
    }

    #[test]
    fn groups_and_garbage() {
        // field 1 group containing 2: varint 5
        assert_eq!(decode_raw(&[0x0b, 0x10, 0x05, 0x0c]).unwrap(), json!([{"field": 1, "wire_type": "group", "message": [{"field": 2, "wire_type": "varint", "value": 5}]}]));
        assert_eq!(decode_raw(&[0x0b, 0x10, 0x05]), None, "unterminated group");
        assert_eq!(decode_raw(&[0x0c]), None, "stray end group");
        assert_eq!(decode_raw(&[0x12, 0x05, b'a']), None, "length past the end");
        assert_eq!(decode_raw(&[0x07]), None, "wire type 7");
        assert_eq!(decode_raw(&[0x08; 11]), None, "varint too long");
        assert_eq!(decode_raw(&[]).unwrap(), json!([]));
    }

    #[test]
    fn deep_nesting_stops() {
        let nested_groups = [0x0b].repeat(100);
        assert_eq!(decode_raw(&nested_groups), None);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_raw(&b);
        }
    }
}
