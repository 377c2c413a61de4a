//! One HTTP/2 connection: a frame reader per direction (the same code for both), header
//! blocks gathered across CONTINUATION frames and decoded with that direction's HPACK state,
//! DATA streamed into the stream it belongs to, and streams emitted as entries when done.

use super::frame::{self, flag, kind, FrameHeader, HEADER_LEN};
use super::hpack::{Block, Hpack};
use super::streams::{H2Stream, REQ, RESP};
use crate::body::BodyAcc;
use crate::entry::Anomaly;
use crate::flow::Dir;
use crate::stream::{Cx, Progress, StreamParser};
use crate::time::Timestamp;
use crate::Probe;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The client's connection preface comes first.
    Preface,
    /// At a frame header.
    Frame,
    /// Inside a DATA frame: data bytes to go, then padding.
    Data { stream: u32, left: u32, pad: u32, end: bool },
    /// Bytes to pass over unread (a frame over the cap, or padding).
    Skip { left: u64 },
    /// Frame boundaries are unknown (joined mid-way, or after a gap): each new piece of
    /// data is checked for a frame header.
    Resync,
    /// This direction has ended.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Headers { end_stream: bool },
    Push { promised: u32 },
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct OpenBlock {
    stream: u32,
    kind: BlockKind,
    buf: Vec<u8>,
    /// Passing over the rest of a block that was too large.
    discard: bool,
    /// Frame bytes of the block so far, and when its first frame began.
    wire: u64,
    start: Timestamp,
}

#[derive(Debug)]
struct Side {
    read: Read,
    hpack: Hpack,
    block: Option<OpenBlock>,
    /// The largest frame this direction may send: the peer's SETTINGS_MAX_FRAME_SIZE.
    max_frame: u32,
}

/// What an HTTP/1.1 connection hands over when it upgrades to h2c: its request, which
/// becomes stream 1.
#[derive(Debug)]
pub struct H2cUpgrade {
    pub fields: Vec<(String, String)>,
    pub body: BodyAcc,
    pub start: Timestamp,
    pub wire: u64,
    /// The 101 response's bytes.
    pub switch_wire: u64,
    pub anomalies: Vec<Anomaly>,
}

/// One HTTP/2 connection.
#[derive(Debug)]
pub struct Http2 {
    client: Dir,
    sides: [Side; 2],
    streams: HashMap<u32, H2Stream>,
    /// Highest stream id opened by each role (client: odd, server pushes: even).
    opened: [u32; 2],
    /// The capture joined the connection mid-way.
    joined: bool,
    /// Streams the client reset that wait for a response in flight.
    resets: usize,
}

/// How long a stream the client reset waits for a response already in flight.
const RESET_GRACE_NS: u64 = 1_000_000_000;

impl Http2 {
    fn new(client: Dir, joined: bool, max_table: usize) -> Self {
        let hp = || if joined { Hpack::joined(max_table) } else { Hpack::synced(max_table) };
        let max_frame = if joined { frame::MAX_FRAME_LIMIT } else { frame::DEFAULT_MAX_FRAME };
        let side = || Side { read: Read::Frame, hpack: hp(), block: None, max_frame };
        Http2 { client, sides: [side(), side()], streams: HashMap::new(), opened: [0; 2], joined, resets: 0 }
    }

    /// A connection that began with the client preface (prior knowledge), seen from the start.
    pub fn prior_knowledge(client: Dir, max_table: usize) -> Self {
        let mut h = Http2::new(client, false, max_table);
        h.sides[client.idx()].read = Read::Preface;
        h
    }

    /// A connection joined mid-way; `aligned` is the direction whose data starts at a frame.
    pub fn joined(client: Dir, aligned: Dir, max_table: usize) -> Self {
        let mut h = Http2::new(client, true, max_table);
        h.sides[aligned.flip().idx()].read = Read::Resync;
        h
    }

    /// An HTTP/1.1 connection that switched to h2c: its request is stream 1.
    pub fn upgraded(client: Dir, up: H2cUpgrade, max_table: usize) -> Self {
        let mut h = Http2::new(client, false, max_table);
        h.sides[client.idx()].read = Read::Preface;
        let mut s = H2Stream::new(1, up.start);
        s.grpc = up.fields.iter().any(|(n, v)| n == "content-type" && v.starts_with("application/grpc"));
        s.req = Some(up.fields);
        s.ended[REQ] = true;
        s.wire = [up.wire, up.switch_wire];
        s.informational.push(101);
        s.anomalies = up.anomalies;
        s.payload[REQ] = super::streams::Payload::Body(up.body);
        h.streams.insert(1, s);
        h.opened[0] = 1;
        h
    }

    fn side_of(&self, dir: Dir) -> usize {
        if dir == self.client {
            REQ
        } else {
            RESP
        }
    }

    /// Reads one frame header, or the start of DATA; returns what was consumed.
    fn frame(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let Some(h) = FrameHeader::parse(data) else {
            return Progress::NeedMore { consumed: 0, needed: HEADER_LEN };
        };
        let d = dir.idx();
        let total = HEADER_LEN as u64 + h.len as u64;
        let cap = cx.limits.max_header_block.min(cx.limits.max_pending_bytes.saturating_sub(HEADER_LEN));
        // what must be here before anything happens (so a frame is counted once)
        let needed = if h.violation().is_some() {
            HEADER_LEN
        } else if h.kind == kind::DATA {
            HEADER_LEN + (h.has(flag::PADDED) && h.len > 0) as usize
        } else if h.len as usize > cap {
            HEADER_LEN
        } else {
            total as usize
        };
        if data.len() < needed {
            return Progress::NeedMore { consumed: 0, needed };
        }
        cx.stats.h2_frames += 1;
        if self.resets > 0 {
            self.expire_resets(cx);
        }
        if h.len > self.sides[d].max_frame {
            cx.stats.h2_frame_errors += 1;
            if let Some(s) = self.streams.get_mut(&h.stream) {
                s.mark(Anomaly::Malformed);
            }
        }
        if h.violation().is_some() {
            cx.stats.h2_frame_errors += 1;
            return self.skip(dir, total, data.len());
        }
        if self.sides[d].block.is_some() && h.kind != kind::CONTINUATION {
            // a header block must not be interrupted: what it held is lost
            cx.stats.h2_frame_errors += 1;
            let b = self.sides[d].block.take().expect("checked");
            self.block_lost(dir, b.stream, Anomaly::Malformed);
        }
        if h.kind == kind::DATA {
            let side = self.side_of(dir);
            if let Some(s) = self.streams.get_mut(&h.stream) {
                s.wire[side] += total;
            }
            let mut used = HEADER_LEN;
            let mut pad = 0u32;
            if h.has(flag::PADDED) {
                let p = data.get(HEADER_LEN).copied().unwrap_or(0);
                if h.len == 0 || p as u32 > h.len - 1 {
                    cx.stats.h2_frame_errors += 1;
                    return self.skip(dir, total, data.len());
                }
                pad = p as u32;
                used += 1;
            }
            let left = h.len - (used - HEADER_LEN) as u32 - pad;
            self.sides[d].read = Read::Data { stream: h.stream, left, pad, end: h.has(flag::END_STREAM) };
            if left == 0 {
                self.data_done(dir, cx);
            }
            return Progress::Consumed(used);
        }
        if h.len as usize > cap {
            cx.stats.h2_frames_skipped += 1;
            if matches!(h.kind, kind::HEADERS | kind::PUSH_PROMISE | kind::CONTINUATION) {
                self.sides[d].block = None;
                self.block_lost(dir, h.stream, Anomaly::LimitReached);
            }
            return self.skip(dir, total, data.len());
        }
        let payload = &data[HEADER_LEN..total as usize];
        self.control(dir, h, payload, cx);
        Progress::Consumed(total as usize)
    }

    /// Passes over `total` bytes from here.
    fn skip(&mut self, dir: Dir, total: u64, avail: usize) -> Progress {
        let n = total.min(avail as u64);
        self.sides[dir.idx()].read = if n == total { Read::Frame } else { Read::Skip { left: total - n } };
        Progress::Consumed(n as usize)
    }

    /// A header block of `stream` that will never be decoded: HPACK state is lost with it.
    fn block_lost(&mut self, dir: Dir, stream: u32, why: Anomaly) {
        self.sides[dir.idx()].hpack.lose_state();
        if let Some(s) = self.streams.get_mut(&stream) {
            s.mark(why);
        }
    }

    /// A whole non-DATA frame.
    fn control(&mut self, dir: Dir, h: FrameHeader, payload: &[u8], cx: &mut Cx<'_>) {
        let d = dir.idx();
        let total = HEADER_LEN as u64 + h.len as u64;
        match h.kind {
            kind::HEADERS | kind::PUSH_PROMISE => {
                let Some(r) = frame::strip_padding(&h, payload) else {
                    cx.stats.h2_frame_errors += 1;
                    self.block_lost(dir, h.stream, Anomaly::Malformed);
                    return;
                };
                let mut frag = &payload[r];
                let kind = if h.kind == kind::HEADERS {
                    BlockKind::Headers { end_stream: h.has(flag::END_STREAM) }
                } else {
                    let Some(p) = frag.get(..4) else {
                        cx.stats.h2_frame_errors += 1;
                        self.block_lost(dir, h.stream, Anomaly::Malformed);
                        return;
                    };
                    let promised = u32::from_be_bytes(p.try_into().expect("4 bytes")) & 0x7fff_ffff;
                    frag = &frag[4..];
                    BlockKind::Push { promised }
                };
                let block = OpenBlock { stream: h.stream, kind, buf: frag.to_vec(), discard: false, wire: total, start: cx.ts_at(0) };
                if h.has(flag::END_HEADERS) {
                    self.block_done(dir, block, cx);
                } else {
                    self.sides[d].block = Some(block);
                }
            }
            kind::CONTINUATION => {
                let Some(mut b) = self.sides[d].block.take().filter(|b| b.stream == h.stream) else {
                    cx.stats.h2_frame_errors += 1;
                    self.block_lost(dir, h.stream, Anomaly::Malformed);
                    return;
                };
                b.wire += total;
                if !b.discard {
                    if b.buf.len() + payload.len() > cx.limits.max_header_block {
                        // endless CONTINUATION: stop keeping, pass over the rest of the block
                        cx.stats.h2_frames_skipped += 1;
                        b.discard = true;
                        b.buf = Vec::new();
                        self.block_lost(dir, h.stream, Anomaly::LimitReached);
                    } else {
                        b.buf.extend_from_slice(payload);
                    }
                }
                if h.has(flag::END_HEADERS) {
                    if !b.discard {
                        self.block_done(dir, b, cx);
                    } else if let BlockKind::Headers { end_stream: true } = b.kind {
                        self.end_side(dir, h.stream, cx);
                    }
                } else {
                    self.sides[d].block = Some(b);
                }
            }
            kind::RST_STREAM => {
                let code = frame::rst_code(payload).unwrap_or(0);
                let side = self.side_of(dir);
                let Some(s) = self.streams.get_mut(&h.stream) else {
                    cx.stats.h2_frames_for_closed_streams += 1;
                    return;
                };
                s.wire[side] += total;
                if code != 0 || !s.complete() {
                    s.mark(Anomaly::RstStream);
                    if let Some(a) = Anomaly::h2_error(code) {
                        s.mark(a);
                    }
                }
                s.ended[side] = true;
                if side == REQ && !s.ended[RESP] {
                    // the client gave up, but a response may be in flight already: it is
                    // kept for a moment (RESET_GRACE_NS of capture time) to catch it
                    s.reset_at = Some(cx.ts);
                    self.resets += 1;
                } else {
                    let mut s = self.take(h.stream).expect("present");
                    s.end = s.end.max(cx.ts);
                    let e = s.into_entry(self.client, cx);
                    cx.emit(e);
                }
            }
            kind::SETTINGS if !h.has(flag::ACK) => {
                // settings a side announces bind what the other side sends
                let o = dir.flip().idx();
                for (id, v) in frame::settings(payload) {
                    match id {
                        frame::setting::MAX_FRAME_SIZE if !self.joined && (frame::DEFAULT_MAX_FRAME..=frame::MAX_FRAME_LIMIT).contains(&v) => {
                            self.sides[o].max_frame = v;
                        }
                        frame::setting::HEADER_TABLE_SIZE => self.sides[o].hpack.allow_table(v as usize),
                        _ => {}
                    }
                }
            }
            kind::GOAWAY => {
                let Some((last, code)) = frame::goaway(payload) else { return };
                // the sender will not process streams the receiver opened past `last`
                let receiver_opens_odd = dir != self.client;
                let mut gone: Vec<u32> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|&id| id > last && (id % 2 == 1) == receiver_opens_odd)
                    .collect();
                gone.sort_unstable();
                for id in gone {
                    let mut s = self.take(id).expect("listed");
                    s.mark(Anomaly::Goaway);
                    if let Some(a) = Anomaly::h2_error(code) {
                        s.mark(a);
                    }
                    let e = s.into_entry(self.client, cx);
                    cx.emit(e);
                }
                if let Some(a) = Anomaly::h2_error(code) {
                    for s in self.streams.values_mut() {
                        s.mark(Anomaly::Goaway);
                        s.mark(a);
                    }
                }
            }
            // SETTINGS ACK, PING, PRIORITY, WINDOW_UPDATE and unknown types change nothing
            // that an entry shows
            _ => {}
        }
    }

    /// A complete header block: decode it and give it to its stream.
    fn block_done(&mut self, dir: Dir, b: OpenBlock, cx: &mut Cx<'_>) {
        let d = dir.idx();
        let block = self.sides[d].hpack.decode(&b.buf, cx.limits.max_decoded_headers);
        if block.desync() {
            cx.stats.hpack_desyncs += 1;
        }
        if block.malformed {
            cx.stats.hpack_errors += 1;
        }
        let side = self.side_of(dir);
        match b.kind {
            BlockKind::Push { promised } => {
                if side != RESP || promised == 0 || promised % 2 == 1 || self.streams.contains_key(&promised) {
                    cx.stats.h2_frame_errors += 1;
                    return;
                }
                self.opened[1] = self.opened[1].max(promised);
                let mut s = H2Stream::new(promised, b.start);
                s.promised_on = Some(b.stream);
                s.wire[RESP] += b.wire;
                s.headers(REQ, block, true);
                self.insert(s, cx);
            }
            BlockKind::Headers { end_stream } => {
                if !self.streams.contains_key(&b.stream) {
                    if !self.may_open(side, b.stream, &block) {
                        cx.stats.h2_frames_for_closed_streams += 1;
                        return;
                    }
                    let s = H2Stream::new(b.stream, b.start);
                    self.insert(s, cx);
                }
                let s = self.streams.get_mut(&b.stream).expect("present");
                s.wire[side] += b.wire;
                s.headers(side, block, end_stream);
                if side == RESP {
                    s.end = cx.ts;
                }
                self.check_done(b.stream, cx);
            }
        }
    }

    /// May a header block open a stream that is not in the table?
    fn may_open(&mut self, side: usize, id: u32, block: &Block) -> bool {
        if side == REQ {
            // a new request, or (mid-way) a request whose stream began before the capture
            let is_request = block.get(":method").is_some() || block.get(":path").is_some();
            if id > self.opened[0] || (self.joined && is_request) {
                self.opened[0] = self.opened[0].max(id);
                return true;
            }
            return false;
        }
        // a response to a request never seen: only when the capture joined mid-way
        self.joined && (id > self.opened[0] || id.is_multiple_of(2))
    }

    /// Adds a stream, making room under `Limits::max_pending_requests`.
    fn insert(&mut self, s: H2Stream, cx: &mut Cx<'_>) {
        if self.streams.len() >= cx.limits.max_pending_requests {
            let oldest = *self.streams.keys().min().expect("non-empty");
            let mut o = self.take(oldest).expect("present");
            o.mark(Anomaly::LimitReached);
            let e = o.into_entry(self.client, cx);
            cx.emit(e);
        }
        self.streams.insert(s.id, s);
    }

    fn end_side(&mut self, dir: Dir, stream: u32, cx: &mut Cx<'_>) {
        let side = self.side_of(dir);
        if let Some(s) = self.streams.get_mut(&stream) {
            s.ended[side] = true;
            if side == RESP {
                s.end = cx.ts;
            }
        }
        self.check_done(stream, cx);
    }

    /// Removes a stream from the table.
    fn take(&mut self, id: u32) -> Option<H2Stream> {
        let s = self.streams.remove(&id)?;
        if s.reset_at.is_some() {
            self.resets -= 1;
        }
        Some(s)
    }

    /// Emits the reset streams whose grace time is over.
    fn expire_resets(&mut self, cx: &mut Cx<'_>) {
        let now = cx.ts.0;
        let mut due: Vec<u32> = self.streams.values().filter(|s| s.reset_at.is_some_and(|t| t.0 + RESET_GRACE_NS < now)).map(|s| s.id).collect();
        due.sort_unstable();
        for id in due {
            let s = self.take(id).expect("listed");
            let e = s.into_entry(self.client, cx);
            cx.emit(e);
        }
    }

    fn check_done(&mut self, stream: u32, cx: &mut Cx<'_>) {
        if self.streams.get(&stream).is_some_and(H2Stream::complete) {
            let s = self.take(stream).expect("present");
            let e = s.into_entry(self.client, cx);
            cx.emit(e);
        }
    }

    /// The DATA frame being read is over.
    fn data_done(&mut self, dir: Dir, cx: &mut Cx<'_>) {
        let d = dir.idx();
        let Read::Data { stream, pad, end, .. } = self.sides[d].read else { return };
        self.sides[d].read = if pad > 0 { Read::Skip { left: pad as u64 } } else { Read::Frame };
        if end {
            self.end_side(dir, stream, cx);
        } else if self.side_of(dir) == RESP {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.end = cx.ts;
            }
        }
    }

    /// Emits every stream still open, in stream order.
    fn flush(&mut self, cx: &mut Cx<'_>) {
        let mut ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let s = self.take(id).expect("listed");
            let e = s.into_entry(self.client, cx);
            cx.emit(e);
        }
    }

    /// The connection is over: whatever is open is reported as it stands.
    pub fn finish(&mut self, cx: &mut Cx<'_>) {
        self.flush(cx);
    }
}

impl StreamParser for Http2 {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let d = dir.idx();
        loop {
            return match self.sides[d].read {
                Read::Done => Progress::Consumed(data.len()),
                Read::Preface => match frame::probe_preface(data) {
                    Probe::Match => {
                        self.sides[d].read = Read::Frame;
                        Progress::Consumed(frame::PREFACE.len())
                    }
                    Probe::NeedMore => Progress::NeedMore { consumed: 0, needed: frame::PREFACE.len() },
                    Probe::NoMatch => {
                        // no preface where one must be: read frames from here if they are frames
                        cx.stats.h2_frame_errors += 1;
                        self.sides[d].read = Read::Resync;
                        continue;
                    }
                },
                Read::Resync => match super::aligned(data) {
                    Probe::Match => {
                        self.sides[d].read = Read::Frame;
                        continue;
                    }
                    Probe::NeedMore => Progress::NeedMore { consumed: 0, needed: data.len() + 1 },
                    Probe::NoMatch => {
                        cx.stats.resync_skipped_bytes += data.len() as u64;
                        Progress::Consumed(data.len())
                    }
                },
                Read::Frame => self.frame(dir, data, cx),
                Read::Skip { left } => {
                    let n = left.min(data.len() as u64);
                    self.sides[d].read = if n == left { Read::Frame } else { Read::Skip { left: left - n } };
                    Progress::Consumed(n as usize)
                }
                Read::Data { stream, left, pad, end } => {
                    let n = (left as usize).min(data.len());
                    let side = self.side_of(dir);
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.data(side, &data[..n], cx);
                    }
                    self.sides[d].read = Read::Data { stream, left: left - n as u32, pad, end };
                    if n == left as usize {
                        self.data_done(dir, cx);
                    }
                    Progress::Consumed(n)
                }
            };
        }
    }

    fn on_gap(&mut self, dir: Dir, len: u64, cx: &mut Cx<'_>) {
        let d = dir.idx();
        let side = self.side_of(dir);
        match self.sides[d].read {
            // a hole inside DATA: the body loses bytes, framing survives
            Read::Data { stream, left, pad, end } if len <= left as u64 => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.lost(side, len, cx);
                }
                self.sides[d].read = Read::Data { stream, left: left - len as u32, pad, end };
                if len == left as u64 {
                    self.data_done(dir, cx);
                }
            }
            Read::Skip { left } if len < left => self.sides[d].read = Read::Skip { left: left - len },
            Read::Done => {}
            read => {
                if let Read::Data { stream, .. } = read {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.lost(side, len, cx);
                    }
                }
                // frames were lost: their header blocks with them
                self.sides[d].block = None;
                self.sides[d].hpack.lose_state();
                self.sides[d].read = Read::Resync;
                for s in self.streams.values_mut() {
                    if !s.ended[side] {
                        s.mark(Anomaly::Gap);
                    }
                }
            }
        }
    }

    fn on_close(&mut self, dir: Dir, _leftover: &[u8], cx: &mut Cx<'_>) {
        let d = dir.idx();
        if let Read::Data { stream, .. } = self.sides[d].read {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.mark(Anomaly::Truncated);
            }
        }
        if let Some(b) = self.sides[d].block.take() {
            if let Some(s) = self.streams.get_mut(&b.stream) {
                s.mark(Anomaly::Truncated);
            }
        }
        self.sides[d].read = Read::Done;
        if self.sides.iter().all(|s| s.read == Read::Done) {
            self.flush(cx);
        }
    }
}

impl crate::proto::TcpParser for Http2 {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        Http2::finish(self, cx)
    }
}
