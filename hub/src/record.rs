//! What the hub keeps of each entry, and the batch format workers send.
//!
//! A batch on the wire is one LZ4 block (size prepended) holding a header line
//! `{"batch":N,"entries":K}` and K entries as NDJSON. The hub reads each line once, into
//! its *slim* form: the entry without the parts that make it big (headers, bodies, gRPC
//! messages, trailers, DNS authority and additional records), skipped while parsing rather
//! than built and thrown away. Filters that read only slim fields (most do: see
//! [`crate::Filter::needs_full`]), the service map and the metrics work on that; the full
//! JSON is kept as the worker sent it, compressed, for what is shown and exported.

use crate::Error;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Keys under `request` and `response` left out of the slim form.
pub const HEAVY: &[&str] = &["headers", "body", "messages", "trailers", "authorities", "additionals"];

/// A batch bigger than this once decompressed is refused (a worker sends ~1 MiB).
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// One entry as the hub holds it.
#[derive(Debug)]
pub struct Record {
    /// The entry's `timestamp`, nanoseconds since the epoch.
    pub ts: i64,
    /// The slim form (see the module docs).
    pub slim: Value,
    /// The slim form's JSON, as stored.
    pub slim_json: Vec<u8>,
    /// The entry's JSON as the worker sent it.
    pub full: Arc<str>,
    /// `full`, LZ4-compressed, as stored.
    pub packed: Vec<u8>,
}

impl Record {
    /// Reads one entry's JSON (one NDJSON line). `what` names it in the error.
    pub fn from_json(line: &str, what: &dyn fmt::Display) -> Result<Record, Error> {
        let mut de = serde_json::Deserializer::from_str(line);
        let slim = Slim::Top.deserialize(&mut de).and_then(|v| de.end().map(|_| v)).map_err(|e| Error::Malformed(format!("{what}: {e}")))?;
        let ts = check(&slim).map_err(|m| Error::Malformed(format!("{what}: {m}")))?;
        let slim_json = serde_json::to_vec(&slim).map_err(|e| Error::Malformed(format!("{what}: {e}")))?;
        Ok(Record { ts, slim, slim_json, packed: lz4_flex::compress_prepend_size(line.as_bytes()), full: Arc::from(line) })
    }
}

/// The fields every entry must have, and its time.
fn check(e: &Value) -> Result<i64, String> {
    let o = e.as_object().ok_or("an entry must be a JSON object")?;
    for k in ["id", "protocol", "transport"] {
        if !o.get(k).is_some_and(Value::is_string) {
            return Err(format!("`{k}` must be a string"));
        }
    }
    for k in ["src", "dst"] {
        let side = o.get(k).and_then(Value::as_object).ok_or_else(|| format!("`{k}` must be an object"))?;
        if !side.get("ip").is_some_and(Value::is_string) {
            return Err(format!("`{k}.ip` must be a string"));
        }
    }
    let ts = o.get("timestamp").and_then(Value::as_str).ok_or("`timestamp` must be a string")?;
    let ns = crate::filter::parse_timestamp(ts).ok_or_else(|| format!("`timestamp` {ts:?} is not RFC 3339"))?;
    i64::try_from(ns).map_err(|_| format!("`timestamp` {ts:?} is out of range"))
}

/// Encodes a batch for the wire.
pub fn encode_batch<S: AsRef<str>>(batch: u64, entries: &[S]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(64 + entries.iter().map(|e| e.as_ref().len() + 1).sum::<usize>());
    raw.extend_from_slice(format!("{{\"batch\":{batch},\"entries\":{}}}\n", entries.len()).as_bytes());
    for e in entries {
        raw.extend_from_slice(e.as_ref().as_bytes());
        raw.push(b'\n');
    }
    lz4_flex::compress_prepend_size(&raw)
}

/// Decodes a batch: its number and its entries. Any fault refuses the whole batch.
pub fn decode_batch(bytes: &[u8]) -> Result<(u64, Vec<Record>), Error> {
    if bytes.len() >= 4 {
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if n > MAX_BATCH_BYTES {
            return Err(Error::Malformed(format!("batch of {n} bytes is over the limit of {MAX_BATCH_BYTES}")));
        }
    }
    let raw = lz4_flex::decompress_size_prepended(bytes).map_err(|e| Error::Malformed(format!("batch is not LZ4: {e}")))?;
    let text = std::str::from_utf8(&raw).map_err(|e| Error::Malformed(format!("batch is not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut lines = text.split('\n');
    let head = lines.next().unwrap_or_default();
    let h: Value = serde_json::from_str(head).map_err(|e| Error::Malformed(format!("batch header: {e}")))?;
    let (Some(batch), Some(count)) = (h.get("batch").and_then(Value::as_u64), h.get("entries").and_then(Value::as_u64)) else {
        return Err(Error::Malformed("batch header needs `batch` and `entries`".into()));
    };
    let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        out.push(Record::from_json(line, &format_args!("batch {batch}, entry {}", i + 1))?);
    }
    if out.len() as u64 != count {
        return Err(Error::Malformed(format!("batch {batch} says {count} entries but holds {}", out.len())));
    }
    Ok((batch, out))
}

/// The number of a batch whose entries could not be read, when its header can be.
pub fn batch_number(bytes: &[u8]) -> Option<u64> {
    let size = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if size > MAX_BATCH_BYTES {
        return None;
    }
    let raw = lz4_flex::decompress_size_prepended(bytes).ok()?;
    let end = raw.iter().position(|b| *b == b'\n').unwrap_or(raw.len());
    serde_json::from_slice::<Value>(&raw[..end]).ok()?.get("batch")?.as_u64()
}

/// The slim form's parser: at the top, `request` and `response` are read as `Side`;
/// inside them, the heavy keys are skipped unbuilt.
#[derive(Clone, Copy)]
enum Slim {
    Top,
    Side,
}

impl<'de> DeserializeSeed<'de> for Slim {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Slim {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Slim::Top => "an entry (a JSON object)",
            Slim::Side => "a request or response object, or null",
        })
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = match self {
                Slim::Top if k == "request" || k == "response" => map.next_value_seed(Slim::Side)?,
                Slim::Side if HEAVY.contains(&k.as_str()) => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                _ => map.next_value::<Value>()?,
            };
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: &str = r#"{"id":"a","timestamp":"2026-01-01T00:00:00.5Z","protocol":"http","transport":"tcp","src":{"ip":"10.0.0.1","port":1},"dst":{"ip":"10.0.0.2","port":80},"request":{"method":"GET","path":"/x","headers":{"a":"b"},"body":{"size":3,"text":"abc"}},"response":null}"#;

    #[test]
    fn slim_drops_heavy_parts_and_keeps_the_rest() {
        let r = Record::from_json(E, &"t").unwrap();
        assert_eq!(r.ts, 1_767_225_600_500_000_000);
        assert_eq!(r.slim["request"], serde_json::json!({"method":"GET","path":"/x"}));
        assert_eq!(r.slim["response"], Value::Null);
        assert_eq!(&*r.full, E);
        assert_eq!(lz4_flex::decompress_size_prepended(&r.packed).unwrap(), E.as_bytes());
    }

    #[test]
    fn batches_round_trip_and_faults_refuse_the_whole_batch() {
        let (n, recs) = decode_batch(&encode_batch(7, &[E, E])).unwrap();
        assert_eq!((n, recs.len()), (7, 2));
        let bad = E.replace("\"timestamp\":\"2026-01-01T00:00:00.5Z\",", "");
        let err = decode_batch(&encode_batch(8, &[E, &bad])).unwrap_err().to_string();
        assert!(err.contains("batch 8, entry 2") && err.contains("timestamp"), "{err}");
        let err = decode_batch(&encode_batch(9, &[E, "{\"id\":"])).unwrap_err().to_string();
        assert!(err.contains("entry 2"), "{err}");
        assert!(decode_batch(b"\x05\0\0\0garbage").is_err());
        assert!(decode_batch(&[0xff, 0xff, 0xff, 0x7f, 0]).unwrap_err().to_string().contains("over the limit"));
        let short = lz4_flex::compress_prepend_size(b"{\"batch\":1,\"entries\":3}\n");
        assert!(decode_batch(&short).unwrap_err().to_string().contains("says 3 entries but holds 0"));
    }
}
