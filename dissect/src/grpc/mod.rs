//! gRPC over HTTP/2: the length-prefixed message framing of one direction of a call
//! (reassembled across DATA frames and TCP segments), message decompression
//! (`grpc-encoding` gzip, deflate, identity), and protobuf decoding: typed JSON through
//! `prost-reflect` when a schema knows the method, else the schema-less wire view.

pub mod protobuf;

use crate::entry::GrpcMessage;
use crate::stats::Stats;
use base64::Engine;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use std::io::Read;

/// A message as it came off the wire: kept up to a cap.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub compressed: bool,
    /// The length the prefix declared.
    pub declared: u32,
    pub data: Vec<u8>,
    /// Bytes of the message were not kept (over the cap) or never arrived.
    pub truncated: bool,
}

/// Whether `b` is exactly a run of gRPC length-prefixed messages (flag 0 or 1, a 4-byte
/// length, that many bytes), with nothing left over.
pub fn exactly_framed(mut b: &[u8]) -> bool {
    while !b.is_empty() {
        if b.len() < 5 || b[0] > 1 {
            return false;
        }
        let n = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        match b.get(5 + n..) {
            Some(rest) => b = rest,
            None => return false,
        }
    }
    true
}

/// The messages of one direction of one call, framed as DATA arrives.
#[derive(Debug, Default)]
pub struct Framer {
    prefix: [u8; 5],
    prefix_len: usize,
    cur: Option<(RawMessage, u64)>,
    pub messages: Vec<RawMessage>,
    /// Messages counted but not kept (over `Limits::max_grpc_messages`).
    pub dropped: u64,
    /// Framing was lost (bytes never captured): the rest of this direction is not read.
    pub lost: bool,
}

impl Framer {
    /// More DATA payload: `keep` caps the bytes kept per message, `max` the messages kept.
    pub fn push(&mut self, mut data: &[u8], keep: usize, max: usize, stats: &mut Stats) {
        while !data.is_empty() && !self.lost {
            match &mut self.cur {
                None => {
                    let n = (5 - self.prefix_len).min(data.len());
                    self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                    self.prefix_len += n;
                    data = &data[n..];
                    if self.prefix_len == 5 {
                        self.prefix_len = 0;
                        let declared = u32::from_be_bytes(self.prefix[1..5].try_into().expect("4 bytes"));
                        let m = RawMessage { compressed: self.prefix[0] & 1 != 0, declared, data: Vec::new(), truncated: false };
                        self.cur = Some((m, declared as u64));
                    }
                }
                Some((m, left)) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    let room = keep.saturating_sub(m.data.len()).min(n);
                    m.data.extend_from_slice(&data[..room]);
                    if room < n {
                        m.truncated = true;
                    }
                    *left -= n as u64;
                    data = &data[n..];
                }
            }
            if matches!(self.cur, Some((_, 0))) {
                let (m, _) = self.cur.take().expect("checked");
                self.done(m, max, stats);
            }
        }
    }

    /// Messages that ended, kept or not.
    pub fn count(&self) -> u64 {
        self.messages.len() as u64 + self.dropped
    }

    fn done(&mut self, m: RawMessage, max: usize, stats: &mut Stats) {
        stats.grpc_messages += 1;
        if self.messages.len() < max {
            self.messages.push(m);
        } else {
            self.dropped += 1;
            stats.grpc_messages_dropped += 1;
        }
    }

    /// `n` bytes never captured: the message in progress is cut short and framing is lost.
    pub fn lose(&mut self, max: usize, stats: &mut Stats) {
        self.finish(max, stats);
        self.lost = true;
    }

    /// The direction ended: a message in progress is kept, marked truncated. True when
    /// there was one.
    pub fn finish(&mut self, max: usize, stats: &mut Stats) -> bool {
        match self.cur.take() {
            Some((mut m, _)) => {
                m.truncated = true;
                self.done(m, max, stats);
                true
            }
            None => self.prefix_len != 0,
        }
    }
}

/// The message types of `/package.Service/Method` in `pool`: (request, response).
pub fn method_types(pool: &DescriptorPool, path: &str) -> Option<(MessageDescriptor, MessageDescriptor)> {
    let (svc, method) = split_path(path)?;
    let m = pool.get_service_by_name(svc)?.methods().find(|m| m.name() == method)?;
    Some((m.input(), m.output()))
}

/// `/package.Service/Method` → (`package.Service`, `Method`).
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let (svc, method) = path.strip_prefix('/')?.split_once('/')?;
    (!svc.is_empty() && !method.is_empty() && !method.contains('/')).then_some((svc, method))
}

/// The entry's view of one message: decompressed per `encoding` (the direction's
/// `grpc-encoding`), then typed with `ty` when known, else the wire view, else base64.
pub fn render(m: &RawMessage, encoding: Option<&str>, ty: Option<&MessageDescriptor>, max_decoded: usize, stats: &mut Stats) -> GrpcMessage {
    let mut out = GrpcMessage { size: m.declared, compressed: m.compressed, truncated: m.truncated, ..Default::default() };
    let plain;
    let bytes: &[u8] = if m.compressed {
        let enc = encoding.unwrap_or("").trim().to_ascii_lowercase();
        match decompress(&enc, &m.data, max_decoded) {
            Ok(d) => {
                plain = d;
                &plain
            }
            Err(why) => {
                stats.grpc_decode_errors += 1;
                out.error = Some(why);
                out.base64 = Some(b64(&m.data));
                return out;
            }
        }
    } else {
        &m.data
    };
    if out.truncated {
        // a message cut short would decode wrongly or not at all: show what was kept
        out.base64 = Some(b64(bytes));
        return out;
    }
    if let Some(ty) = ty {
        match DynamicMessage::decode(ty.clone(), bytes) {
            Ok(msg) => {
                let opts = SerializeOptions::new().use_proto_field_name(true);
                if let Ok(v) = msg.serialize_with_options(serde_json::value::Serializer, &opts) {
                    out.json = Some(v);
                    out.message_type = Some(ty.full_name().to_string());
                    return out;
                }
            }
            Err(e) => out.error = Some(format!("not a {}: {e}", ty.full_name())),
        }
    }
    match protobuf::decode_raw(bytes) {
        Some(v) => out.fields = Some(v),
        None => out.base64 = Some(b64(bytes)),
    }
    out
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Undoes a message's compression. gzip and deflate (zlib, as gRPC's "deflate" is) are
/// supported; snappy, zstd and others are not, and say so.
fn decompress(enc: &str, data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let r = match enc {
        "gzip" => flate2::read::GzDecoder::new(data).take(max as u64 + 1).read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(data).take(max as u64 + 1).read_to_end(&mut out),
        "identity" => return Err("compressed flag set with grpc-encoding identity".into()),
        "" => return Err("compressed flag set without a grpc-encoding".into()),
        other => return Err(format!("grpc-encoding {other} is not supported (gzip and deflate are)")),
    };
    match r {
        Ok(_) if out.len() > max => Err(format!("decompressed message exceeds {max} bytes")),
        Ok(_) => Ok(out),
        Err(e) => Err(format!("{enc} decompression failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(payloads: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in payloads {
            v.push(0);
            v.extend_from_slice(&(p.len() as u32).to_be_bytes());
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn messages_across_pieces_and_caps() {
        let wire = frame(&[b"\x08\x01", b"", b"abcdef"]);
        let mut st = Stats::default();
        let mut f = Framer::default();
        for b in wire.chunks(1) {
            f.push(b, 4, 2, &mut st);
        }
        assert_eq!(f.count(), 3);
        assert_eq!(f.dropped, 1);
        assert_eq!(f.messages[0].data, b"\x08\x01");
        assert_eq!(f.messages[1].declared, 0);
        assert!(!f.finish(2, &mut st));
        let mut g = Framer::default();
        g.push(&frame(&[b"abcdef"]), 4, 8, &mut st);
        assert!(g.messages[0].truncated && g.messages[0].data == b"abcd");
    }

    #[test]
    fn compression() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"\x12\x03abc").unwrap();
        let gz = e.finish().unwrap();
        let m = RawMessage { compressed: true, declared: gz.len() as u32, data: gz, truncated: false };
        let mut st = Stats::default();
        let r = render(&m, Some("gzip"), None, 1 << 20, &mut st);
        assert_eq!(r.fields, Some(serde_json::json!([{"field": 2, "wire_type": "len", "string": "abc"}])));
        let r = render(&m, Some("snappy"), None, 1 << 20, &mut st);
        assert!(r.error.unwrap().contains("snappy is not supported"));
        assert!(r.base64.is_some());
        let r = render(&m, Some("gzip"), None, 3, &mut st);
        assert!(r.error.unwrap().contains("exceeds"));
        assert_eq!(st.grpc_decode_errors, 2);
    }

    #[test]
    fn paths() {
        assert_eq!(split_path("/hipstershop.CartService/GetCart"), Some(("hipstershop.CartService", "GetCart")));
        assert_eq!(split_path("/x"), None);
        assert_eq!(split_path("/a/b/c"), None);
    }

    proptest! {
        // the messages do not depend on how the bytes were cut
        #[test]
        fn split_invariant(cuts in proptest::collection::vec(0usize..60, 0..8)) {
            let wire = frame(&[b"hello", b"", &[7u8; 30], b"x"]);
            let mut whole = Framer::default();
            let mut st = Stats::default();
            whole.push(&wire, 16, 8, &mut st);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
            cuts.sort();
            let mut f = Framer::default();
            let mut at = 0;
            for c in cuts.into_iter().chain([wire.len()]) {
                f.push(&wire[at..c], 16, 8, &mut st);
                at = c;
            }
            prop_assert_eq!(&f.messages, &whole.messages);
            prop_assert_eq!(f.count(), 4);
        }
    }
}
