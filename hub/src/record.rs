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
pub const HEAVY: &[&str] = &["headers", "body", "messages", "trailers", "authorities", "additionals", "value", "payload", "document", "args"];

/// The largest WebSocket message (and frame) the hub reads, and that a worker may send:
/// the limit both sides agree on. A worker seals a batch once its entries reach
/// [`SEAL_BYTES`], and an entry is at most [`MAX_ENTRY_BYTES`], so a batch stays well below.
pub const MAX_MESSAGE: usize = 16 << 20;

/// A worker seals a batch once its entries' JSON reaches this many bytes.
pub const SEAL_BYTES: usize = 4 << 20;

/// The longest entry (its JSON) taken; a longer one is refused (the hub) or dropped and
/// counted (the worker). The dissector keeps 64 KiB of a body, so real entries are far
/// smaller.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

/// How deeply an entry's JSON may nest (arrays and objects).
pub const MAX_DEPTH: usize = 64;

/// A batch bigger than this once decompressed is refused (a worker sends at most
/// [`SEAL_BYTES`] + [`MAX_ENTRY_BYTES`]).
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// LZ4 expands at most this much (a match's length takes a byte per 255 it adds): a batch
/// that declares more than its bytes can hold is refused before anything is allocated.
const LZ4_MAX_RATIO: usize = 256;

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

    /// The memory the block takes, roughly.
    pub fn mem_bytes(&self) -> usize {
        self.wire.len() + self.text.len() + self.slim.len() + self.slim_packed.len() + self.lines.len() * 24 + 256
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
    decode_numbered(wire).map_err(|(_, e)| e)
}

/// [`decode_batch`], its refusal carrying the batch's number when its header could be
/// read (so that the refusal can name it without decompressing the batch again).
pub fn decode_numbered(wire: Bytes) -> Result<Block, (Option<u64>, Error)> {
    let text = decompress(&wire).map_err(|e| (None, e))?;
    let s = std::str::from_utf8(&text).map_err(|e| (None, Error::Malformed(format!("batch is not UTF-8 at byte {}", e.valid_up_to()))))?;
    // lone surrogates are mended here, once, and the batch re-packed (rare: only a
    // hand-made or hostile batch has them; the check is one memmem when it has none)
    if let Some(mended) = mend_surrogates(s) {
        if mended.len() > MAX_BATCH_BYTES {
            return Err((None, Error::Malformed(format!("batch of {} bytes is over the limit of {MAX_BATCH_BYTES}", mended.len()))));
        }
        return decode_numbered(Bytes::from(lz4_flex::compress_prepend_size(mended.as_bytes())));
    }
    let head_end = s.find('\n').unwrap_or(s.len());
    let h: Header = serde_json::from_str(&s[..head_end]).map_err(|e| (None, Error::Malformed(format!("batch header (needs `batch` and `entries`): {e}"))))?;
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
    let mut ids: std::collections::HashSet<&str> = std::collections::HashSet::with_capacity(cap);
    while at < s.len() {
        let end = memchr::memchr(b'\n', &s.as_bytes()[at..]).map_or(s.len(), |n| at + n);
        let line = &s[at..end];
        if !line.is_empty() {
            i += 1;
            let bad = |m: String| (Some(batch), Error::Malformed(format!("batch {batch}, entry {i}: {m}")));
            if line.len() > MAX_ENTRY_BYTES {
                return Err(bad(format!("{} bytes, over the limit of {MAX_ENTRY_BYTES} for an entry", line.len())));
            }
            if !depth_within(line.as_bytes(), MAX_DEPTH) {
                return Err(bad(format!("nested deeper than {MAX_DEPTH} levels")));
            }
            let start = b.slim.len();
            let (ts, id) = slim_of(line, &mut b.slim).map_err(bad)?;
            if !ids.insert(id) {
                return Err(bad(format!("id {id} appears twice in the batch")));
            }
            b.slim_lines.push(start as u32..b.slim.len() as u32);
            b.slim.push(b'\n');
            b.tally.observe(std::str::from_utf8(&b.slim[start..b.slim.len() - 1]).unwrap_or("{}"));
            b.ts.push(ts);
            b.lines.push(at as u32..end as u32);
        }
        at = end + 1;
    }
    if b.lines.len() as u64 != h.entries {
        return Err((Some(batch), Error::Malformed(format!("batch {batch} says {} entries but holds {}", h.entries, b.lines.len()))));
    }
    b.text = Bytes::from(text);
    b.slim_packed = lz4_flex::compress_prepend_size(&b.slim);
    Ok(b)
}

/// The size a batch says it has once decompressed, checked against the limit and against
/// what its compressed bytes can possibly hold.
pub fn declared_size(wire: &[u8]) -> Result<usize, Error> {
    let Some(head) = wire.get(..4) else {
        return Err(Error::Malformed(format!("batch of {} bytes is too short to be LZ4", wire.len())));
    };
    let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if n > MAX_BATCH_BYTES {
        return Err(Error::Malformed(format!("batch of {n} bytes is over the limit of {MAX_BATCH_BYTES}")));
    }
    let most = (wire.len() - 4).saturating_mul(LZ4_MAX_RATIO).saturating_add(64);
    if n > most {
        return Err(Error::Malformed(format!("batch declares {n} bytes, more than its {} compressed bytes can hold", wire.len() - 4)));
    }
    Ok(n)
}

pub(crate) fn decompress(wire: &[u8]) -> Result<Vec<u8>, Error> {
    declared_size(wire)?;
    lz4_flex::decompress_size_prepended(wire).map_err(|e| Error::Malformed(format!("batch is not LZ4: {e}")))
}

/// Whether `s` (JSON) nests arrays and objects no deeper than `max`. Strings are skipped
/// whole (memchr), so bodies cost little.
pub fn depth_within(s: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => {
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &s[i.min(s.len())..]) {
                        Some(k) if s[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k + 1;
                            break;
                        }
                        None => return true,
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    true
}

/// `s` with every lone UTF-16 surrogate escape (`\ud800` with no partner) replaced by
/// `\ufffd`, or `None` when it has none. JSON parsers differ on them (serde_json refuses
/// them, browsers keep them): stored entries are valid for every reader.
pub fn mend_surrogates(s: &str) -> Option<String> {
    let b = s.as_bytes();
    memchr::memmem::find(b, b"\\u")?;
    let hex = |at: usize| -> Option<u16> { s.get(at..at + 4).and_then(|h| u16::from_str_radix(h, 16).ok()) };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &b[i..]) {
        i += k;
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(u) = hex(i + 2) else {
            i += 2;
            continue;
        };
        if (0xD800..0xDC00).contains(&u) && b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') && hex(i + 8).is_some_and(|l| (0xDC00..0xE000).contains(&l)) {
            i += 12;
            continue;
        }
        if (0xD800..0xE000).contains(&u) {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[copied..i]);
            o.push_str("\\ufffd");
            copied = i + 6;
        }
        i += 6;
    }
    let mut o = out?;
    o.push_str(&s[copied..]);
    Some(o)
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
    id: Option<&'a str>,
    protocol: bool,
    transport: bool,
    src: Option<&'a RawValue>,
    dst: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    keys: Vec<Cow<'a, str>>,
}

/// Writes `line`'s slim form to `out` and returns its time and its id (as written); or
/// says what is wrong.
fn slim_of<'a>(line: &'a str, out: &mut Vec<u8>) -> Result<(i64, &'a str), String> {
    let mut seen = Seen::default();
    let mut de = serde_json::Deserializer::from_str(line);
    Top { out, seen: &mut seen }.deserialize(&mut de).and_then(|_| de.end()).map_err(|e| e.to_string())?;
    for (k, ok) in [("id", seen.id.is_some()), ("protocol", seen.protocol), ("transport", seen.transport)] {
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
    let ns = i64::try_from(ns).map_err(|_| format!("`timestamp` {ts:?} is out of range"))?;
    Ok((ns, seen.id.unwrap_or_default()))
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
                "id" => self.seen.id = string.then(|| v.get()),
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
        let e2 = E.replace("\"id\":\"a\"", "\"id\":\"b\"");
        let b = block(7, &[E, &e2]).unwrap();
        assert_eq!((b.batch, b.len()), (7, 2));
        // the same id twice in a batch
        assert!(block(7, &[E, E]).unwrap_err().to_string().contains("entry 2: id \"a\" appears twice"));
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
    fn bombs_deep_nesting_huge_entries_and_lone_surrogates() {
        // 29 bytes that declare 256 MiB: refused before anything is allocated
        let mut bomb = (256u32 << 20).to_le_bytes().to_vec();
        bomb.extend_from_slice(&[0u8; 25]);
        assert!(decode_batch(Bytes::from(bomb)).unwrap_err().to_string().contains("over the limit"));
        // 60 MiB declared in 1 KiB: more than LZ4 can hold
        let mut lie = (60u32 << 20).to_le_bytes().to_vec();
        lie.extend_from_slice(&[0u8; 1024]);
        assert!(decode_batch(Bytes::from(lie)).unwrap_err().to_string().contains("more than its 1024 compressed bytes can hold"));
        // a real bomb: 1 MB of LZ4 that holds a 64 MiB + 1 entry is over the batch limit
        let raw = format!("{{\"batch\":1,\"entries\":1}}\n{}\n", "a".repeat(MAX_BATCH_BYTES));
        let packed = lz4_flex::compress_prepend_size(raw.as_bytes());
        assert!(packed.len() < (1 << 20), "{}", packed.len());
        assert!(decode_batch(Bytes::from(packed)).unwrap_err().to_string().contains("over the limit"));
        // an entry over the entry limit
        let huge = E.replace("\"b\"}", &format!("\"{}\"}}", "b".repeat(MAX_ENTRY_BYTES)));
        assert!(block(1, &[&huge]).unwrap_err().to_string().contains("over the limit of 4194304 for an entry"));
        // nesting
        let deep = E.replace("\"response\":null", &format!("\"response\":null,\"x\":{}{}", "[".repeat(100_000), "]".repeat(100_000)));
        assert!(block(1, &[&deep]).unwrap_err().to_string().contains("nested deeper than 64"));
        let fine = E.replace("\"response\":null", &format!("\"response\":null,\"x\":\"{}\"", "[".repeat(100_000)));
        assert!(block(1, &[&fine]).is_ok(), "brackets inside strings are text");
        assert!(depth_within(br#"{"a":"\"[[[","b":[[1]]}"#, 3));
        assert!(!depth_within(br#"{"a":"\\","b":[[[1]]]}"#, 3));
        // lone surrogates are mended; pairs and escaped backslashes are left alone
        assert_eq!(mend_surrogates(r#"{"a":"x\ud800y"}"#).unwrap(), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(mend_surrogates(r#"{"a":"\udc00\ud83d"}"#).unwrap(), r#"{"a":"\ufffd\ufffd"}"#);
        assert_eq!(mend_surrogates(r#"{"a":"\ud83d\ude00 \\ud800"}"#), None);
        let lone = E.replace("\"/x\"", "\"/\\ud800\"");
        let b = block(1, &[&lone]).unwrap();
        let v: Value = serde_json::from_slice(&b.full(0)).expect("valid for serde_json");
        assert_eq!(v["request"]["path"], "/\u{fffd}");
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
