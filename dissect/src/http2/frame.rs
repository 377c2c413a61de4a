//! HTTP/2 frames on the wire (RFC 9113 §4 and §6): the 9-byte header, the rules each type's
//! length, flags and stream id must follow, and the payloads of the control frames.
//! Pure functions over bytes; nothing here keeps state.

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE until a peer says otherwise.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The largest length the 24-bit field can carry.
pub const MAX_FRAME_LIMIT: u32 = (1 << 24) - 1;

pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers kshark follows.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    /// The header at the start of `b`, if 9 bytes are there. The reserved bit is ignored,
    /// as receivers must (§4.1).
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Does the header break a rule of its type (stream id, fixed length)? Unknown types
    /// are never wrong: receivers ignore them (§5.5).
    pub fn violation(&self) -> Option<&'static str> {
        use kind::*;
        let needs_stream = matches!(self.kind, DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION);
        let no_stream = matches!(self.kind, SETTINGS | PING | GOAWAY);
        if needs_stream && self.stream == 0 {
            return Some("stream 0 on a stream frame");
        }
        if no_stream && self.stream != 0 {
            return Some("stream id on a connection frame");
        }
        let ok_len = match self.kind {
            PRIORITY => self.len == 5,
            RST_STREAM | WINDOW_UPDATE => self.len == 4,
            PING => self.len == 8,
            SETTINGS => self.len.is_multiple_of(6) && !(self.has(flag::ACK) && self.len != 0),
            GOAWAY => self.len >= 8,
            PUSH_PROMISE => self.len >= 4,
            _ => true,
        };
        (!ok_len).then_some("bad length for the frame type")
    }

    /// Strict plausibility, for finding HTTP/2 in bytes of unknown protocol: a known type,
    /// only the flags that type defines, the rules of [`Self::violation`], a length within
    /// the default maximum.
    pub fn plausible(&self) -> bool {
        use kind::*;
        let allowed = match self.kind {
            DATA => flag::END_STREAM | flag::PADDED,
            HEADERS => flag::END_STREAM | flag::END_HEADERS | flag::PADDED | flag::PRIORITY,
            PUSH_PROMISE => flag::END_HEADERS | flag::PADDED,
            CONTINUATION => flag::END_HEADERS,
            SETTINGS | PING => flag::ACK,
            PRIORITY | RST_STREAM | GOAWAY | WINDOW_UPDATE => 0,
            _ => return false,
        };
        self.flags & !allowed == 0 && self.violation().is_none() && self.len <= DEFAULT_MAX_FRAME
    }
}

/// Removes the padding (PADDED) and priority fields (PRIORITY) around a HEADERS or
/// PUSH_PROMISE fragment; `None` when the padding is longer than the frame.
pub fn strip_padding(h: &FrameHeader, payload: &[u8]) -> Option<std::ops::Range<usize>> {
    let (mut start, mut end) = (0usize, payload.len());
    if h.has(flag::PADDED) && matches!(h.kind, kind::DATA | kind::HEADERS | kind::PUSH_PROMISE) {
        let pad = *payload.first()? as usize;
        start = 1;
        end = end.checked_sub(pad)?;
    }
    if h.kind == kind::HEADERS && h.has(flag::PRIORITY) {
        start += 5;
    }
    (start <= end).then_some(start..end)
}

/// The (identifier, value) pairs of a SETTINGS payload.
pub fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
}

/// The error code of RST_STREAM, or GOAWAY's last stream id and error code.
pub fn rst_code(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

pub fn goaway(payload: &[u8]) -> Option<(u32, u32)> {
    let last = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) & 0x7fff_ffff;
    Some((last, u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?)))
}

/// Does `b` begin with (a prefix of) the client preface?
pub fn probe_preface(b: &[u8]) -> crate::Probe {
    let n = b.len().min(PREFACE.len());
    if b[..n] != PREFACE[..n] {
        crate::Probe::NoMatch
    } else if n < PREFACE.len() {
        crate::Probe::NeedMore
    } else {
        crate::Probe::Match
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v
    }

    #[test]
    fn header_fields_and_reserved_bit() {
        let mut b = hdr(0x123456, 1, 5, 7);
        b[5] |= 0x80;
        assert_eq!(FrameHeader::parse(&b), Some(FrameHeader { len: 0x123456, kind: 1, flags: 5, stream: 7 }));
        assert_eq!(FrameHeader::parse(&b[..8]), None);
    }

    #[test]
    fn type_rules() {
        let f = |len, kind, flags, stream| FrameHeader { len, kind, flags, stream };
        assert!(f(0, kind::SETTINGS, 0, 0).plausible());
        assert!(f(6, kind::SETTINGS, flag::ACK, 0).violation().is_some());
        assert!(f(4, kind::RST_STREAM, 0, 0).violation().is_some());
        assert!(f(8, kind::PING, 0, 3).violation().is_some());
        assert!(!f(10, kind::DATA, flag::END_HEADERS, 1).plausible());
        assert!(!f(10, 0x42, 0, 1).plausible());
        assert!(f(10, 0x42, 0, 1).violation().is_none());
        assert!(!f(20_000, kind::DATA, 0, 1).plausible());
    }

    #[test]
    fn padding_and_priority() {
        let h = FrameHeader { len: 0, kind: kind::HEADERS, flags: flag::PADDED | flag::PRIORITY, stream: 1 };
        let p = [2, 0, 0, 0, 3, 16, 0x82, 0x84, 0, 0];
        assert_eq!(strip_padding(&h, &p), Some(6..8));
        assert_eq!(strip_padding(&h, &[200, 1, 2]), None);
        assert_eq!(strip_padding(&h, &[0, 1, 2]), None, "priority fields missing");
        assert_eq!(strip_padding(&h, &[]), None);
    }

    #[test]
    fn control_payloads() {
        assert_eq!(settings(&[0, 1, 0, 0, 0x10, 0, 0, 5, 0, 0, 0x40, 0]).collect::<Vec<_>>(), vec![(1, 4096), (5, 16384)]);
        assert_eq!(goaway(&[0x80, 0, 0, 3, 0, 0, 0, 2]), Some((3, 2)));
        assert_eq!(probe_preface(b"PRI * HT"), crate::Probe::NeedMore);
        assert_eq!(probe_preface(b"PRI * HTTP/1.1"), crate::Probe::NoMatch);
    }
}
