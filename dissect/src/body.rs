//! Message bodies: kept up to a cap while they stream past, then decoded
//! (gzip, x-gzip, deflate with or without the zlib header, br) and shown as text or base64.

use crate::entry::{Anomaly, Body};
use base64::Engine;
use std::io::Read;

/// A body being received.
#[derive(Debug, Default)]
pub struct BodyAcc {
    kept: Vec<u8>,
    size: u64,
    truncated: bool,
}

impl BodyAcc {
    pub fn push(&mut self, data: &[u8], cap: usize) {
        self.size += data.len() as u64;
        let room = cap.saturating_sub(self.kept.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Bytes that were never captured: counted in the size, not kept, and the body is marked.
    pub fn lost(&mut self, n: u64) {
        self.size += n;
        self.truncated = true;
    }

    /// Every byte of the body, when all of them were kept.
    pub fn whole(&self) -> Option<&[u8]> {
        (!self.truncated && self.size == self.kept.len() as u64).then_some(&self.kept[..])
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The body as the entry shows it; `anomalies` gets `BodyDecodeError` when the
    /// content-encoding could not be undone.
    pub fn finish(self, mime: Option<&str>, encoding: Option<&str>, max_decoded: usize, anomalies: &mut Vec<Anomaly>) -> Body {
        let mut body = Body {
            size: self.size,
            mime: mime.map(str::to_string),
            encoding: encoding.map(str::to_string),
            text: None,
            base64: None,
            truncated: self.truncated,
        };
        if self.kept.is_empty() {
            return body;
        }
        let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
        let content = match enc.as_deref() {
            None | Some("") | Some("identity") => self.kept,
            Some(e) => match decode(e, &self.kept, max_decoded) {
                Decoded::Whole(d) => d,
                Decoded::Partial(d) => {
                    // an undecodable tail is expected when the kept bytes were cut short
                    if !self.truncated {
                        anomalies.push(Anomaly::BodyDecodeError);
                    }
                    body.truncated = true;
                    d
                }
                Decoded::Failed => {
                    anomalies.push(Anomaly::BodyDecodeError);
                    self.kept
                }
                Decoded::Unsupported => self.kept,
            },
        };
        if looks_textual(mime, &content) {
            match String::from_utf8(content) {
                Ok(s) => body.text = Some(s),
                Err(e) => body.base64 = Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            }
        } else {
            body.base64 = Some(base64::engine::general_purpose::STANDARD.encode(&content));
        }
        body
    }
}

enum Decoded {
    Whole(Vec<u8>),
    /// Decoding stopped early (cut-short input or the output cap); what came out.
    Partial(Vec<u8>),
    Failed,
    Unsupported,
}

fn read_capped(mut r: impl Read, max: usize) -> Decoded {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Decoded::Whole(out),
            Ok(n) => {
                let room = max - out.len();
                out.extend_from_slice(&buf[..n.min(room)]);
                if out.len() >= max {
                    return Decoded::Partial(out);
                }
            }
            Err(_) if out.is_empty() => return Decoded::Failed,
            Err(_) => return Decoded::Partial(out),
        }
    }
}

fn decode(encoding: &str, data: &[u8], max: usize) -> Decoded {
    // a list of codings applies left to right; undo the last one only when it is alone
    match encoding {
        "gzip" | "x-gzip" => read_capped(flate2::read::MultiGzDecoder::new(data), max),
        "deflate" => {
            // RFC 9110 says zlib-wrapped, but many servers send raw deflate: the first
            // byte of a zlib stream says CM=8 with a header checksum divisible by 31
            let zlib = data.len() >= 2 && data[0] & 0x0f == 8 && u16::from_be_bytes([data[0], data[1]]).is_multiple_of(31);
            if zlib {
                read_capped(flate2::read::ZlibDecoder::new(data), max)
            } else {
                read_capped(flate2::read::DeflateDecoder::new(data), max)
            }
        }
        "br" => read_capped(brotli_decompressor::Decompressor::new(data, 4096), max),
        _ => Decoded::Unsupported,
    }
}

fn looks_textual(mime: Option<&str>, content: &[u8]) -> bool {
    if let Some(m) = mime {
        let m = m.to_ascii_lowercase();
        let essence = m.split(';').next().unwrap_or("").trim();
        if essence.starts_with("text/")
            || ["json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "html", "csv", "graphql"]
                .iter()
                .any(|k| essence.contains(k))
        {
            return true;
        }
        if essence.starts_with("image/") || essence.starts_with("video/") || essence.starts_with("audio/") || essence.contains("octet-stream") {
            return false;
        }
    }
    // no usable type: text when it is UTF-8 without control bytes other than whitespace
    std::str::from_utf8(content).is_ok() && !content.iter().any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn finish(data: &[u8], mime: &str, enc: Option<&str>) -> (Body, Vec<Anomaly>) {
        let mut b = BodyAcc::default();
        b.push(data, 1 << 20);
        let mut an = Vec::new();
        (b.finish(Some(mime), enc, 1 << 20, &mut an), an)
    }

    #[test]
    fn gzip_deflate_raw_deflate_and_brotli() {
        let text = b"{\"hello\": \"world\"}".repeat(20);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        let z = z.finish().unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&text).unwrap();
        let raw = raw.finish().unwrap();
        let want = String::from_utf8(text.clone()).unwrap();
        for (data, enc) in [(&gz, "gzip"), (&gz, "x-gzip"), (&z, "deflate"), (&raw, "deflate")] {
            let (b, an) = finish(data, "application/json", Some(enc));
            assert_eq!(b.text.as_deref(), Some(want.as_str()), "{enc}");
            assert_eq!(b.size, data.len() as u64);
            assert!(an.is_empty());
        }
        // brotli of "hello" made by `brotli -c`
        let br = [0x0b, 0x02, 0x80, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x03];
        let (b, _) = finish(&br, "text/plain", Some("br"));
        assert_eq!(b.text.as_deref(), Some("hello"));
    }

    #[test]
    fn garbage_encoding_is_an_anomaly_not_a_panic() {
        let (b, an) = finish(b"\x00\x01 not gzip", "text/plain", Some("gzip"));
        assert_eq!(an, vec![Anomaly::BodyDecodeError]);
        assert!(b.base64.is_some() || b.text.is_some());
    }

    #[test]
    fn binary_is_base64_and_cap_truncates() {
        let mut b = BodyAcc::default();
        b.push(&[0, 159, 146, 150, 1, 2, 3], 4);
        let mut an = Vec::new();
        let body = b.finish(Some("application/octet-stream"), None, 1024, &mut an);
        assert_eq!(body.base64.as_deref(), Some("AJ+Slg=="));
        assert_eq!(body.size, 7);
        assert!(body.truncated);
    }
}
