//! What kshark reads of Kafka bodies: a request's topics (with partitions and record
//! counts for Produce), its group, and a response's first non-zero error code (and the
//! records a Fetch returned). Each reads as far as the bytes go.

use super::wire::{record_count, Reader};
use serde_json::{json, Value};

/// The topics shown of one request.
const MAX_TOPICS: usize = 64;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(256)]).into_owned()
}

fn uuid(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A request's topics (`[{name, partitions, records}]`) and group id, where it has them.
pub fn request(api: i16, v: i16, r: &mut Reader<'_>) -> (Vec<Value>, Option<String>, Option<i16>) {
    let mut topics = Vec::new();
    let mut group = None;
    let mut acks = None;
    let _ = (|| -> Option<()> {
        match api {
            0 => {
                if v >= 3 {
                    r.string()?;
                }
                acks = Some(r.i16()?);
                r.i32()?;
                for _ in 0..r.array()? {
                    let name = text(r.string()?.unwrap_or_default());
                    let (mut parts, mut records) = (0, 0);
                    for _ in 0..r.array()? {
                        r.i32()?;
                        records += r.bytes_field()?.map_or(0, record_count);
                        parts += 1;
                        r.tags()?;
                    }
                    push(&mut topics, json!({"name": name, "partitions": parts, "records": records}));
                    r.tags()?;
                }
            }
            1 => {
                if v <= 14 {
                    r.i32()?;
                }
                r.i32()?;
                r.i32()?;
                if v >= 3 {
                    r.i32()?;
                }
                if v >= 4 {
                    r.i8()?;
                }
                if v >= 7 {
                    r.i32()?;
                    r.i32()?;
                }
                for _ in 0..r.array()? {
                    let name = if v >= 13 { uuid(r.bytes(16)?) } else { text(r.string()?.unwrap_or_default()) };
                    let mut parts = 0;
                    for _ in 0..r.array()? {
                        r.i32()?;
                        if v >= 9 {
                            r.i32()?;
                        }
                        r.i64()?;
                        if v >= 12 {
                            r.i32()?;
                        }
                        if v >= 5 {
                            r.i64()?;
                        }
                        r.i32()?;
                        r.tags()?;
                        parts += 1;
                    }
                    push(&mut topics, json!({"name": name, "partitions": parts}));
                    r.tags()?;
                }
            }
            // Metadata, and DeleteTopics from version 6: topics with an id and a name
            3 | 20 if api == 3 || v >= 6 => {
                for _ in 0..r.array()? {
                    if api == 3 && v >= 10 || api == 20 {
                        let name = if api == 20 {
                            let n = r.string()?;
                            r.bytes(16)?;
                            n
                        } else {
                            r.bytes(16)?;
                            r.string()?
                        };
                        push(&mut topics, json!({"name": name.map(text)}));
                    } else {
                        push(&mut topics, json!({"name": text(r.string()?.unwrap_or_default())}));
                    }
                    r.tags()?;
                }
            }
            // DeleteTopics before 6, CreateTopics, ListOffsets: the first name of an array
            20 | 19 => {
                if r.array()? > 0 {
                    push(&mut topics, json!({"name": text(r.string()?.unwrap_or_default())}));
                }
            }
            2 => {
                r.i32()?;
                if v >= 2 {
                    r.i8()?;
                }
                if r.array()? > 0 {
                    push(&mut topics, json!({"name": text(r.string()?.unwrap_or_default())}));
                }
            }
            // the group APIs start with the group id (OffsetFetch until version 8)
            8 | 11 | 12 | 13 | 14 | 9 if api != 9 || v < 8 => group = Some(text(r.string()?.unwrap_or_default())),
            _ => {}
        }
        Some(())
    })();
    (topics, group, acks)
}

fn push(topics: &mut Vec<Value>, t: Value) {
    if topics.len() < MAX_TOPICS {
        topics.push(t);
    }
}

/// A response's first non-zero error code (0 when every one read is 0, `None` when none
/// could be read), and for Fetch the records returned.
pub fn response(api: i16, v: i16, r: &mut Reader<'_>) -> (Option<i16>, Option<u64>) {
    let mut first: Option<i16> = None;
    let mut records = None;
    let mut note = |e: i16| {
        if first.is_none_or(|f| f == 0) {
            first = Some(e);
        }
    };
    let _ = (|| -> Option<()> {
        match api {
            0 => {
                for _ in 0..r.array()? {
                    r.string()?;
                    for _ in 0..r.array()? {
                        r.i32()?;
                        note(r.i16()?);
                        r.i64()?;
                        if v >= 2 {
                            r.i64()?;
                        }
                        if v >= 5 {
                            r.i64()?;
                        }
                        if v >= 8 {
                            for _ in 0..r.array()? {
                                r.i32()?;
                                r.string()?;
                                r.tags()?;
                            }
                            r.string()?;
                        }
                        r.tags()?;
                    }
                    r.tags()?;
                }
            }
            1 => {
                if v >= 1 {
                    r.i32()?;
                }
                if v >= 7 {
                    note(r.i16()?);
                    r.i32()?;
                }
                let mut n = 0;
                for _ in 0..r.array()? {
                    if v >= 13 {
                        r.bytes(16)?;
                    } else {
                        r.string()?;
                    }
                    for _ in 0..r.array()? {
                        r.i32()?;
                        note(r.i16()?);
                        r.i64()?;
                        if v >= 4 {
                            r.i64()?;
                        }
                        if v >= 5 {
                            r.i64()?;
                        }
                        if v >= 4 {
                            for _ in 0..r.array()? {
                                r.i64()?;
                                r.i64()?;
                                r.tags()?;
                            }
                        }
                        if v >= 11 {
                            r.i32()?;
                        }
                        n += r.bytes_field()?.map_or(0, record_count);
                        records = Some(n);
                        r.tags()?;
                    }
                    r.tags()?;
                }
            }
            3 => {
                if v >= 3 {
                    r.i32()?;
                }
                for _ in 0..r.array()? {
                    r.i32()?;
                    r.string()?;
                    r.i32()?;
                    if v >= 1 {
                        r.string()?;
                    }
                    r.tags()?;
                }
                if v >= 2 {
                    r.string()?;
                }
                if v >= 1 {
                    r.i32()?;
                }
                for _ in 0..r.array()? {
                    note(r.i16()?);
                    r.string()?;
                    if v >= 10 {
                        r.bytes(16)?;
                    }
                    if v >= 1 {
                        r.i8()?;
                    }
                    for _ in 0..r.array()? {
                        note(r.i16()?);
                        r.i32()?;
                        r.i32()?;
                        if v >= 7 {
                            r.i32()?;
                        }
                        for _ in 0..(if v >= 5 { 3 } else { 2 }) {
                            for _ in 0..r.array()? {
                                r.i32()?;
                            }
                        }
                        r.tags()?;
                    }
                    if v >= 8 {
                        r.i32()?;
                    }
                    r.tags()?;
                }
            }
            // error code first
            17 | 18 | 36 => note(r.i16()?),
            // throttle time first (from some version), then the error code
            10 | 11 | 12 | 13 | 14 | 16 | 22 | 25 | 26 | 29 | 60 => {
                let throttle_from = match api {
                    11 => 2,
                    22 | 25 | 26 | 29 | 60 => 0,
                    _ => 1,
                };
                if v >= throttle_from {
                    r.i32()?;
                }
                if api != 10 || v < 4 {
                    note(r.i16()?);
                }
            }
            _ => {}
        }
        Some(())
    })();
    (first, records)
}
