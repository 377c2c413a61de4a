//! What the hub keeps of each batch, and the batch format workers send.
//!
//! A batch on the wire is one LZ4 block (size prepended) holding a header line
//! `{"batch":N,"entries":K}` and K entries as NDJSON. The hub reads each entry once,
//! without building it: it checks the fields every entry must have, and writes its *slim*
//! form (the entry without the parts that make it big: headers, bodies, gRPC messages,
//! trailers, DNS authority and additional records) by copying the other values' bytes as
//! they stand. Filters that read only slim fields (most do: see
//! [`crate::Filter::needs_full`]) and the metrics work on that. The batch's LZ4 bytes are
//! stored as the worker sent them: they are the full entries, compressed once, by the
//! worker.

use crate::metrics::Tally;
use crate::Error;
use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// Keys under `request` and `response` left out of the slim form.
pub const HEAVY: &[&str] = &["headers", "body", "messages", "trailers", "authorities", "additionals"];

/// A batch bigger than this once decompressed is refused (a worker sends ~1 MiB).
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// One batch as the hub holds it. It is stored as one block: `wire` as the full
/// entries, `slim` (compressed) as what filters read.
pub struct Block {
    /// The batch's number (per worker).
    pub batch: u64,
    /// The batch as it came: LZ4 of the header line and the entries.
    pub wire: Bytes,
    /// `wire` decompressed (valid UTF-8).
    pub text: Bytes,
    /// Where each entry's JSON is in `text`.
    pub lines: Vec<Range<u32>>,
    /// Each entry's `timestamp`, ns since the epoch.
    pub ts: Vec<i64>,
    /// The entries' slim forms, one line each, in order.
    pub slim: Vec<u8>,
    /// Where each slim form is in `slim`.
    pub slim_lines: Vec<Range<u32>>,
    /// `slim`, LZ4-compressed, as stored.
    pub slim_packed: Vec<u8>,
    /// What the batch adds to the metrics.
    pub tally: Tally,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block(batch {}, {} entries)", self.batch, self.lines.len())
    }
}

impl Block {
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Entry `i`'s JSON as the worker sent it (shares the block's memory).
    pub fn full(&self, i: usize) -> Bytes {
        let r = &self.lines[i];
        self.text.slice(r.start as usize..r.end as usize)
    }

    /// Entry `i`'s JSON, borrowed.
    pub fn full_bytes(&self, i: usize) -> &[u8] {
        let r = &self.lines[i];
        &self.text[r.start as usize..r.end as usize]
    }

    /// Entry `i`'s slim form.
    pub fn slim(&self, i: usize) -> &str {
        let r = &self.slim_lines[i];
        // built from whole UTF-8 pieces of the text, and ASCII
        std::str::from_utf8(&self.slim[r.start as usize..r.end as usize]).unwrap_or("{}")
    }
}

/// Encodes a batch for the wire.
pub fn encode_batch<S: AsRef<str>>(batch: u64, entries: &[S]) -> Vec<u8> {
    Encoder::default().encode(batch, entries)
}

/// Encodes batches for the wire, keeping its buffers from one batch to the next: a fresh
/// zeroed output buffer for each batch cost the worker's shipping thread twice what the
/// compression did.
#[derive(Default)]
pub struct Encoder {
    raw: Vec<u8>,
    out: Vec<u8>,
}

impl Encoder {
    /// The batch as LZ4 with its decompressed size first (`lz4_flex`'s size-prepended form).
    pub fn encode<S: AsRef<str>>(&mut self, batch: u64, entries: &[S]) -> Vec<u8> {
        self.raw.clear();
        self.raw.extend_from_slice(format!("{{\"batch\":{batch},\"entries\":{}}}\n", entries.len()).as_bytes());
        for e in entries {
            self.raw.extend_from_slice(e.as_ref().as_bytes());
            self.raw.push(b'\n');
        }
        let max = lz4_flex::block::get_maximum_output_size(self.raw.len());
        if self.out.len() < max {
            self.out.resize(max, 0);
        }
        let n = lz4_flex::block::compress_into(&self.raw, &mut self.out).expect("the output is sized for the worst case");
        let mut v = Vec::with_capacity(4 + n);
        v.extend_from_slice(&(self.raw.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.out[..n]);
        v
    }
}

#[derive(Deserialize)]
struct Header {
    batch: u64,
    entries: u64,
}

/// Decodes a batch. Any fault refuses the whole batch, with an error that names the
/// entry (`batch N, entry M: ...`).
pub fn decode_batch(wire: Bytes) -> Result<Block, Error> {
    let text = decompress(&wire)?;
    let s = std::str::from_utf8(&text).map_err(|e| Error::Malformed(format!("batch is not UTF-8 at byte {}", e.valid_up_to())))?;
    let head_end = s.find('\n').unwrap_or(s.len());
    let h: Header = serde_json::from_str(&s[..head_end]).map_err(|e| Error::Malformed(format!("batch header (needs `batch` and `entries`): {e}")))?;
    let batch = h.batch;
    let cap = h.entries.min(1 << 20) as usize;
    let mut b = Block {
        batch,
        wire,
        text: Bytes::new(),
        lines: Vec::with_capacity(cap),
        ts: Vec::with_capacity(cap),
        slim: Vec::with_capacity(s.len() / 3),
        slim_lines: Vec::with_capacity(cap),
        slim_packed: Vec::new(),
        tally: Tally::default(),
    };
    let mut at = (head_end + 1).min(s.len());
    let mut i = 0;
    while at < s.len() {
        let end = s[at..].find('\n').map_or(s.len(), |n| at + n);
        let line = &s[at..end];
        if !line.is_empty() {
            i += 1;
            let start = b.slim.len();
            let ts = slim_of(line, &mut b.slim).map_err(|m| Error::Malformed(format!("batch {batch}, entry {i}: {m}")))?;
            b.slim_lines.push(start as u32..b.slim.len() as u32);
            b.slim.push(b'\n');
            b.tally.observe(std::str::from_utf8(&b.slim[start..b.slim.len() - 1]).unwrap_or("{}"));
            b.ts.push(ts);
            b.lines.push(at as u32..end as u32);
        }
        at = end + 1;
    }
    if b.lines.len() as u64 != h.entries {
        return Err(Error::Malformed(format!("batch {batch} says {} entries but holds {}", h.entries, b.lines.len())));
    }
    b.text = Bytes::from(text);
    b.slim_packed = lz4_flex::compress_prepend_size(&b.slim);
    Ok(b)
}

pub(crate) fn decompress(wire: &[u8]) -> Result<Vec<u8>, Error> {
    if wire.len() >= 4 {
        let n = u32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        if n > MAX_BATCH_BYTES {
            return Err(Error::Malformed(format!("batch of {n} bytes is over the limit of {MAX_BATCH_BYTES}")));
        }
    }
    lz4_flex::decompress_size_prepended(wire).map_err(|e| Error::Malformed(format!("batch is not LZ4: {e}")))
}

/// The number of a batch whose entries could not be read, when its header can be.
pub fn batch_number(bytes: &[u8]) -> Option<u64> {
    let raw = decompress(bytes).ok()?;
    let end = raw.iter().position(|b| *b == b'\n').unwrap_or(raw.len());
    serde_json::from_slice::<Header>(&raw[..end]).ok().map(|h| h.batch)
}

/// What the checks saw of the fields every entry must have.
#[derive(Default)]
struct Seen<'a> {
    id: bool,
    protocol: bool,
    transport: bool,
    src: Option<&'a RawValue>,
    dst: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    keys: Vec<Cow<'a, str>>,
}

/// Writes `line`'s slim form to `out` and returns its time; or says what is wrong.
fn slim_of(line: &str, out: &mut Vec<u8>) -> Result<i64, String> {
    let mut seen = Seen::default();
    let mut de = serde_json::Deserializer::from_str(line);
    Top { out, seen: &mut seen }.deserialize(&mut de).and_then(|_| de.end()).map_err(|e| e.to_string())?;
    for (k, ok) in [("id", seen.id), ("protocol", seen.protocol), ("transport", seen.transport)] {
        if !ok {
            return Err(format!("`{k}` must be a string"));
        }
    }
    #[derive(Deserialize)]
    struct End<'a> {
        #[serde(borrow)]
        ip: Option<&'a RawValue>,
    }
    for (k, v) in [("src", seen.src), ("dst", seen.dst)] {
        let v = v.filter(|v| v.get().starts_with('{')).ok_or_else(|| format!("`{k}` must be an object"))?;
        let end: Option<End> = serde_json::from_str(v.get()).ok();
        if !end.and_then(|e| e.ip).is_some_and(|ip| ip.get().starts_with('"')) {
            return Err(format!("`{k}.ip` must be a string"));
        }
    }
    let ts: Cow<str> = seen.timestamp.and_then(|t| serde_json::from_str(t.get()).ok()).ok_or("`timestamp` must be a string")?;
    let ns = crate::filter::parse_timestamp(&ts).ok_or_else(|| format!("`timestamp` {ts:?} is not RFC 3339"))?;
    i64::try_from(ns).map_err(|_| format!("`timestamp` {ts:?} is out of range"))
}

fn write_key(out: &mut Vec<u8>, first: &mut bool, k: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    // a key's JSON: serde_json escapes what must be
    let _ = serde_json::to_writer(&mut *out, k);
    out.push(b':');
}

/// The entry: copied key by key, `request` and `response` through [`Side`].
struct Top<'o, 'a> {
    out: &'o mut Vec<u8>,
    seen: &'o mut Seen<'a>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Top<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Top<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut first = true;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            // queries stop reading an entry once they have the keys they need
            if self.seen.keys.contains(&k) {
                return Err(serde::de::Error::custom(format_args!("key {k:?} appears twice")));
            }
            self.seen.keys.push(k.clone());
            write_key(self.out, &mut first, &k);
            if k == "request" || k == "response" {
                map.next_value_seed(Side { out: self.out })?;
                continue;
            }
            let v: &'de RawValue = map.next_value()?;
            self.out.extend_from_slice(v.get().as_bytes());
            let string = v.get().starts_with('"');
            match &*k {
                "id" => self.seen.id = string,
                "protocol" => self.seen.protocol = string,
                "transport" => self.seen.transport = string,
                "src" => self.seen.src = Some(v),
                "dst" => self.seen.dst = Some(v),
                "timestamp" => self.seen.timestamp = Some(v),
                _ => {}
            }
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// A request or response (or null): copied without its heavy keys.
struct Side<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Side<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Side<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request or response object, or null")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut first = true;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if HEAVY.contains(&&*k) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            write_key(self.out, &mut first, &k);
            let v: &'de RawValue = map.next_value()?;
            self.out.extend_from_slice(v.get().as_bytes());
        }
        self.out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const E: &str = r#"{"id":"a","timestamp":"2026-01-01T00:00:00.5Z","protocol":"http","transport":"tcp","src":{"ip":"10.0.0.1","port":1},"dst":{"ip":"10.0.0.2","port":80},"request":{"method":"GET","path":"/x","headers":{"a":"b"},"body":{"size":3,"text":"abc"}},"response":null}"#;

    fn block(n: u64, lines: &[&str]) -> Result<Block, Error> {
        decode_batch(Bytes::from(encode_batch(n, lines)))
    }

    #[test]
    fn slim_drops_heavy_parts_and_keeps_the_rest() {
        let b = block(1, &[E]).unwrap();
        assert_eq!(b.ts, [1_767_225_600_500_000_000]);
        let slim: Value = serde_json::from_str(b.slim(0)).unwrap();
        assert_eq!(slim["request"], serde_json::json!({"method":"GET","path":"/x"}));
        assert_eq!(slim["response"], Value::Null);
        assert_eq!(slim["src"], serde_json::json!({"ip":"10.0.0.1","port":1}));
        assert_eq!(&b.full(0)[..], E.as_bytes());
        assert_eq!(String::from_utf8(decompress(&b.wire).unwrap()).unwrap().lines().skip(1).collect::<Vec<_>>(), [E]);
        // keys that need escaping stay valid JSON; values are copied as they stand
        let odd = E.replace("\"path\":\"/x\"", "\"pa\\\"th\":\"/\\u00e9\\n\"");
        let b = block(2, &[&odd]).unwrap();
        let slim: Value = serde_json::from_str(b.slim(0)).unwrap();
        assert_eq!(slim["request"]["pa\"th"], "/é\n");
    }

    #[test]
    fn batches_round_trip_and_faults_refuse_the_whole_batch() {
        let b = block(7, &[E, E]).unwrap();
        assert_eq!((b.batch, b.len()), (7, 2));
        let bad = E.replace("\"timestamp\":\"2026-01-01T00:00:00.5Z\",", "");
        let err = block(8, &[E, &bad]).unwrap_err().to_string();
        assert!(err.contains("batch 8, entry 2") && err.contains("timestamp"), "{err}");
        let err = block(9, &[E, "{\"id\":"]).unwrap_err().to_string();
        assert!(err.contains("entry 2"), "{err}");
        for (what, line) in [
            ("`src.ip`", E.replace("\"ip\":\"10.0.0.1\"", "\"ip\":7")),
            ("`dst` must be an object", E.replace("\"dst\":{\"ip\":\"10.0.0.2\",\"port\":80}", "\"dst\":[]")),
            ("`id`", E.replace("\"id\":\"a\"", "\"id\":1")),
            ("not RFC 3339", E.replace("2026-01-01T00:00:00.5Z", "yesterday")),
            ("request or response", E.replace("\"response\":null", "\"response\":5")),
            ("JSON object", "[1,2]".to_string()),
            ("trailing", format!("{E} x")),
            ("\"id\" appears twice", E.replace("{\"id\":\"a\"", "{\"id\":\"a\",\"id\":\"b\"")),
        ] {
            let err = block(3, &[&line]).unwrap_err().to_string();
            assert!(err.contains("batch 3, entry 1") && err.contains(what), "{what}: {err}");
        }
        assert!(decode_batch(Bytes::from_static(b"\x05\0\0\0garbage")).is_err());
        assert!(decode_batch(Bytes::from_static(&[0xff, 0xff, 0xff, 0x7f, 0])).unwrap_err().to_string().contains("over the limit"));
        let short = lz4_flex::compress_prepend_size(b"{\"batch\":1,\"entries\":3}\n");
        assert!(decode_batch(Bytes::from(short)).unwrap_err().to_string().contains("says 3 entries but holds 0"));
        assert_eq!(batch_number(&encode_batch(12, &["x"])), Some(12));
    }

    #[test]
    fn the_reusing_encoder_writes_what_lz4_flex_would() {
        let mut enc = Encoder::default();
        for (n, entries) in [(1u64, vec![E; 50]), (2, vec![E]), (3, vec![])] {
            let mut raw = format!("{{\"batch\":{n},\"entries\":{}}}\n", entries.len()).into_bytes();
            for e in &entries {
                raw.extend_from_slice(e.as_bytes());
                raw.push(b'\n');
            }
            assert_eq!(enc.encode(n, &entries), lz4_flex::compress_prepend_size(&raw), "batch {n}");
        }
    }
}
