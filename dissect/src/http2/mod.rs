//! HTTP/2 (RFC 9113) in cleartext, and gRPC on top of it: one entry per stream.
//!
//! Found by content on any port: the client preface (prior knowledge), an HTTP/1.1
//! `Upgrade: h2c` answered by `101` (handed over by `http1`), or, on a connection joined
//! mid-way, a run of well-formed frames whose header block says which side is the client.

pub mod conn;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod streams;

pub use conn::{H2cUpgrade, Http2};

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
use crate::Probe;

/// HTTP/2 and gRPC in the registry: the client preface first; a run of frames (a
/// connection joined mid-way) only when nothing else claims the bytes.
pub const PROTO: TcpProto = TcpProto { name: "http", short: "http", probe: Some(probe_start), late_probe: Some(probe_joined), upgrade: None };

fn probe_start(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    match frame::probe_preface(data) {
        Probe::Match => Probed::Match(Box::new(Http2::prior_knowledge(dir, pcx.limits.max_hpack_table))),
        Probe::NeedMore => Probed::NeedMore,
        Probe::NoMatch => Probed::NoMatch,
    }
}

fn probe_joined(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    match probe_frames(dir, data) {
        Ok(Found::Client(client)) => Probed::Match(Box::new(Http2::joined(client, dir, pcx.limits.max_hpack_table))),
        // frames, but whose? The other direction (a preface, a header block) will say
        Ok(Found::Undecided) => Probed::Wait,
        Err(Probe::NeedMore) => Probed::NeedMore,
        Err(_) => Probed::NoMatch,
    }
}
use frame::{flag, kind, FrameHeader, HEADER_LEN};

/// What a run of frames at the start of `data` (sent in `dir`) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// HTTP/2 frames, and a header block that shows who the client is.
    Client(Dir),
    /// HTTP/2 frames, but none that shows the roles (SETTINGS, DATA, WINDOW_UPDATE...).
    Undecided,
}

/// Checks that `data` starts at a frame boundary: every header up to the end is plausible
/// and at least one frame is whole (or the only one is still arriving).
pub fn aligned(data: &[u8]) -> Probe {
    match walk(data, |_, _| false) {
        Ok(_) => Probe::Match,
        Err(p) => p,
    }
}

/// For a connection of unknown protocol: are these HTTP/2 frames, and whose?
pub fn probe_frames(dir: Dir, data: &[u8]) -> Result<Found, Probe> {
    let mut found = Found::Undecided;
    walk(data, |h, payload| {
        let Some(role) = role_of(h, payload) else { return false };
        found = Found::Client(if role { dir } else { dir.flip() });
        true
    })?;
    Ok(found)
}

/// Walks the frames at the start of `data`, calling `each` on every whole one until it
/// returns true. Ok when the walk found only plausible headers and at least one frame (or
/// reached a frame still arriving).
fn walk(data: &[u8], mut each: impl FnMut(&FrameHeader, &[u8]) -> bool) -> Result<(), Probe> {
    let mut off = 0usize;
    let mut whole = 0usize;
    while off < data.len() {
        let Some(h) = FrameHeader::parse(&data[off..]) else {
            break;
        };
        if !h.plausible() {
            return Err(Probe::NoMatch);
        }
        let end = off + HEADER_LEN + h.len as usize;
        if end > data.len() {
            break;
        }
        whole += 1;
        if each(&h, &data[off + HEADER_LEN..end]) {
            return Ok(());
        }
        off = end;
    }
    if whole == 0 && data.len() < HEADER_LEN {
        // not even one header yet
        return Err(Probe::NeedMore);
    }
    Ok(())
}

/// Does this frame show its sender's role? `Some(true)`: the client; `Some(false)`: the server.
fn role_of(h: &FrameHeader, payload: &[u8]) -> Option<bool> {
    match h.kind {
        kind::PUSH_PROMISE => Some(false),
        kind::HEADERS if h.has(flag::END_HEADERS) => {
            let r = frame::strip_padding(h, payload)?;
            let b = hpack::Hpack::joined(1 << 16).decode(&payload[r], 1 << 16);
            if b.malformed {
                return None;
            }
            let has = |n: &str| b.fields.iter().any(|(k, _)| k == n);
            if (has(":method") || has(":path") || has(":scheme")) && h.stream % 2 == 1 {
                Some(true)
            } else if has(":status") {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::h2_frame as frame;

    #[test]
    fn roles_from_header_blocks() {
        // :method GET, :path /
        let req = frame(kind::HEADERS, flag::END_HEADERS, 3, &[0x82, 0x84]);
        assert_eq!(probe_frames(Dir::B, &req), Ok(Found::Client(Dir::B)));
        // :status 200
        let resp = frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &[0x88]);
        assert_eq!(probe_frames(Dir::B, &resp), Ok(Found::Client(Dir::A)));
        let settings = frame(kind::SETTINGS, 0, 0, &[]);
        let mut both = settings.clone();
        both.extend_from_slice(&req);
        assert_eq!(probe_frames(Dir::A, &settings), Ok(Found::Undecided));
        assert_eq!(probe_frames(Dir::A, &both), Ok(Found::Client(Dir::A)));
    }

    #[test]
    fn not_frames() {
        assert_eq!(probe_frames(Dir::A, b"GET / HTTP/1.1\r\n\r\n"), Err(Probe::NoMatch));
        assert_eq!(probe_frames(Dir::A, &[0, 0]), Err(Probe::NeedMore));
        assert_eq!(aligned(&[0, 0, 4, 0, 0, 0, 0, 0, 1, 1, 2]), Probe::Match, "a DATA frame still arriving");
        assert_eq!(aligned(&[0, 0, 4, 0x55, 0, 0, 0, 0, 1]), Probe::NoMatch);
    }
}
