//! A fast JSON string escaper for bodies, the bulk of every entry's JSON.
//!
//! serde_json escapes a string a byte at a time; bodies are most of what kshark writes, so
//! this one looks at eight bytes at a time and copies the runs that need no escaping. Its
//! output is byte-for-byte serde_json's (a property test holds it to that).

use serde::Serializer;
use serde_json::value::RawValue;
use std::cell::RefCell;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The bytes of `v` that JSON must escape (below 0x20, `"` or `\`), as their top bits. Only
/// the lowest set bit is exact (borrows may set bits above it), which is all we use.
#[inline]
fn escape_mask(v: u64) -> u64 {
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    // bytes below 0x20 (bytes with the top bit set are UTF-8 and never escaped)
    let ctrl = v.wrapping_sub(LO * 0x20) & !v & HI;
    ctrl | has_zero(v ^ (LO * b'"' as u64)) | has_zero(v ^ (LO * b'\\' as u64))
}

/// For each byte, what JSON makes of it as the little-endian bytes of a word, and its length
/// (the byte itself, length 1, when it needs no escape).
const ESCAPES: [(u64, u8); 256] = {
    let mut t = [(0u64, 0u8); 256];
    let mut c = 0;
    while c < 256 {
        let (bytes, n): ([u8; 8], u8) = match c as u8 {
            b'"' => ([b'\\', b'"', 0, 0, 0, 0, 0, 0], 2),
            b'\\' => ([b'\\', b'\\', 0, 0, 0, 0, 0, 0], 2),
            b'\n' => ([b'\\', b'n', 0, 0, 0, 0, 0, 0], 2),
            b'\r' => ([b'\\', b'r', 0, 0, 0, 0, 0, 0], 2),
            b'\t' => ([b'\\', b't', 0, 0, 0, 0, 0, 0], 2),
            0x08 => ([b'\\', b'b', 0, 0, 0, 0, 0, 0], 2),
            0x0c => ([b'\\', b'f', 0, 0, 0, 0, 0, 0], 2),
            x if x < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                ([b'\\', b'u', b'0', b'0', HEX[(x >> 4) as usize], HEX[(x & 15) as usize], 0, 0], 6)
            }
            x => ([x, 0, 0, 0, 0, 0, 0, 0], 1),
        };
        t[c] = (u64::from_le_bytes(bytes), n);
        c += 1;
    }
    t
};

/// Appends `s` as a JSON string, quotes included, escaped exactly as serde_json does.
pub fn push_json_str(out: &mut String, s: &str) {
    let b = s.as_bytes();
    // room for the worst case (every byte as \u00XX) plus the quotes and one spare word for
    // the speculative 8-byte stores below
    let room = b.len() * 6 + 2 + 8;
    // SAFETY: everything written is either whole runs of `s` cut at ASCII bytes (so at char
    // boundaries) or ASCII escapes, so the String stays valid UTF-8; every write stays
    // within the `room` bytes reserved (a run of k < 8 bytes is written as 8, which the
    // spare word covers, and the length only ever advances past what is meant).
    unsafe {
        let buf = out.as_mut_vec();
        buf.reserve(room);
        let base = buf.as_mut_ptr().add(buf.len());
        let mut o = 0usize;
        *base = b'"';
        o += 1;
        let mut i = 0;
        while i < b.len() {
            let left = b.len() - i;
            let (w, valid) = if left >= 8 {
                (u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes")), u64::MAX)
            } else {
                let mut pad = [b'a'; 8];
                pad[..left].copy_from_slice(&b[i..]);
                (u64::from_le_bytes(pad), (1u64 << (8 * left)) - 1)
            };
            std::ptr::write_unaligned(base.add(o) as *mut u64, w.to_le());
            let m = escape_mask(w) & valid;
            if m == 0 {
                let n = left.min(8);
                i += n;
                o += n;
                continue;
            }
            // escapes are dense in JSON bodies (a quote every few bytes): take the whole
            // word a byte at a time through the table, without a branch per byte
            let n = left.min(8);
            for &c in &b[i..i + n] {
                let (word, len) = ESCAPES[c as usize];
                std::ptr::write_unaligned(base.add(o) as *mut u64, word.to_le());
                o += len as usize;
            }
            i += n;
        }
        *base.add(o) = b'"';
        o += 1;
        let len = buf.len() + o;
        buf.set_len(len);
    }
}

thread_local! {
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
    static PAIRS: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A list of (name, value) pairs as one JSON object, escaped by [`push_json_str`] and handed
/// to serde_json already encoded (header maps: many short strings, each through serde_json's
/// escaper, cost more than this).
pub fn serialize_pairs<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    PAIRS.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        buf.clear();
        buf.push('{');
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                buf.push(',');
            }
            push_json_str(&mut buf, k);
            buf.push(':');
            push_json_str(&mut buf, v);
        }
        buf.push('}');
        // SAFETY: as in serialize_text: `buf` holds one valid JSON object.
        let raw: &RawValue = unsafe { std::mem::transmute::<&str, &RawValue>(buf.as_str()) };
        serde::Serialize::serialize(raw, s)
    })
}

/// `serialize_with` for large text: escaped by [`push_json_str`] and handed to serde_json as
/// an already-encoded value.
pub fn serialize_text<S: Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let Some(t) = text else { return s.serialize_none() };
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        buf.clear();
        push_json_str(&mut buf, t);
        // SAFETY: RawValue is #[repr(transparent)] over str (serde_json builds its own the
        // same way), and `buf` holds one valid JSON string.
        let raw: &RawValue = unsafe { std::mem::transmute::<&str, &RawValue>(buf.as_str()) };
        serde::Serialize::serialize(raw, s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn esc(s: &str) -> String {
        let mut o = String::new();
        push_json_str(&mut o, s);
        o
    }

    #[test]
    fn known_escapes() {
        assert_eq!(esc("a\"b\\c\n\u{1}\u{7f}é\u{1f}"), serde_json::to_string("a\"b\\c\n\u{1}\u{7f}é\u{1f}").unwrap());
        assert_eq!(esc(""), "\"\"");
    }

    proptest! {
        #[test]
        fn same_as_serde_json(s in any::<String>(), ascii in "[ -~\\x00-\\x1f]{0,200}") {
            prop_assert_eq!(esc(&s), serde_json::to_string(&s).unwrap());
            prop_assert_eq!(esc(&ascii), serde_json::to_string(&ascii).unwrap());
        }
    }
}
