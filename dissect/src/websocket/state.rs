//! A WebSocket connection after its upgrade: frames read as they come (payloads unmasked
//! and, with permessage-deflate, inflated without holding a whole message), fragments
//! joined into one entry per message, control frames (close, ping, pong) as entries of
//! their own even between a message's fragments.

use super::wire::{self, op, Bad, Header};
use crate::entry::Anomaly;
use crate::fields;
use crate::flow::Dir;
use crate::l7::{self, Exchanges, Msg};
use crate::stream::{Cx, Progress, StreamParser};
use crate::time::Timestamp;
use flate2::{Decompress, FlushDecompress, Status};
use serde_json::json;

/// permessage-deflate as the 101 agreed it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deflate {
    /// Per direction (index of the sender): every message starts a fresh window.
    pub no_context: [bool; 2],
}

#[derive(Default)]
struct Message {
    opcode: u8,
    compressed: bool,
    /// The payload (inflated when compressed) up to the cap, and its whole size.
    data: Vec<u8>,
    size: u64,
    wire: u64,
    frames: u32,
    start: Timestamp,
    anomalies: Vec<Anomaly>,
}

#[derive(Default)]
struct Side {
    /// A gap lost the framing: nothing more of this direction is read.
    lost: bool,
    frame: Option<(Header, u64)>,
    msg: Option<Message>,
    control: Vec<u8>,
    control_start: Timestamp,
    inflater: Option<Decompress>,
}

pub struct WebSocket {
    x: Exchanges,
    target: String,
    deflate: Option<Deflate>,
    sides: [Side; 2],
}

impl WebSocket {
    pub fn new(client: Dir, target: String, deflate: Option<Deflate>) -> Self {
        WebSocket { x: Exchanges::new("websocket", client), target, deflate, sides: Default::default() }
    }

    fn direction(&self, dir: Dir) -> &'static str {
        if dir == self.x.client() {
            "client"
        } else {
            "server"
        }
    }

    /// Payload bytes of the current frame of `dir`, unmasked.
    fn payload(&mut self, dir: Dir, h: Header, chunk: &[u8], cx: &mut Cx<'_>) {
        let cap = cx.limits.max_body;
        let s = &mut self.sides[dir.idx()];
        if h.opcode >= 8 {
            s.control.extend_from_slice(chunk);
            return;
        }
        let Some(m) = s.msg.as_mut() else { return };
        if !m.compressed {
            m.data.extend_from_slice(&chunk[..chunk.len().min(cap.saturating_sub(m.data.len()))]);
            m.size += chunk.len() as u64;
            return;
        }
        let inflater = s.inflater.get_or_insert_with(|| Decompress::new(false));
        if inflate(inflater, chunk, m, cap).is_err() && !m.anomalies.contains(&Anomaly::BodyDecodeError) {
            m.anomalies.push(Anomaly::BodyDecodeError);
        }
    }

    fn frame_end(&mut self, dir: Dir, h: Header, cx: &mut Cx<'_>) {
        let (target, direction) = (self.target.clone(), self.direction(dir));
        let cap = cx.limits.max_body;
        if h.opcode >= 8 {
            let s = &mut self.sides[dir.idx()];
            let p = std::mem::take(&mut s.control);
            let mut f = fields! {"method" => wire::name(h.opcode), "target" => target, "direction" => direction};
            if h.opcode == op::CLOSE && p.len() >= 2 {
                f.insert("code".into(), json!(u16::from_be_bytes([p[0], p[1]])));
                f.insert("reason".into(), l7::value(&p[2..], cap));
            }
            f.insert("payload".into(), l7::body(&p, cap, None));
            f.insert("compressed".into(), json!(false));
            cx.stats.l7_messages += 1;
            let m = Msg::new(f, s.control_start, cx.ts, h.size as u64 + h.len);
            self.x.alone(dir, m, cx);
            return;
        }
        if !h.fin {
            return;
        }
        let no_context = self.deflate.is_some_and(|d| d.no_context[dir.idx()]);
        let s = &mut self.sides[dir.idx()];
        let Some(mut m) = s.msg.take() else { return };
        if m.compressed {
            // the tail the sender removed (RFC 7692, 7.2.1)
            if let Some(inf) = s.inflater.as_mut() {
                if inflate(inf, &[0, 0, 0xff, 0xff], &mut m, cap).is_err() && !m.anomalies.contains(&Anomaly::BodyDecodeError) {
                    m.anomalies.push(Anomaly::BodyDecodeError);
                }
            }
            if no_context {
                s.inflater = None;
            }
        }
        let mut body = if m.opcode == op::BINARY { l7::body_bytes(&m.data, cap) } else { l7::body(&m.data, cap, Some("text/plain")) };
        body["size"] = json!(m.size);
        body["truncated"] = json!((m.data.len() as u64) < m.size);
        let f = fields! {"method" => wire::name(m.opcode), "target" => target, "direction" => direction, "payload" => body, "compressed" => m.compressed, "frames" => m.frames};
        cx.stats.l7_messages += 1;
        let mut e = Msg::new(f, m.start, cx.ts, m.wire);
        e.anomalies = m.anomalies;
        self.x.alone(dir, e, cx);
    }
}

/// Inflates `input` into the message, keeping up to `cap` bytes of output and counting all.
fn inflate(d: &mut Decompress, mut input: &[u8], m: &mut Message, cap: usize) -> Result<(), ()> {
    let mut out = [0u8; 16 << 10];
    loop {
        let (in0, out0) = (d.total_in(), d.total_out());
        let st = d.decompress(input, &mut out, FlushDecompress::Sync).map_err(|_| ())?;
        let (used, made) = ((d.total_in() - in0) as usize, (d.total_out() - out0) as usize);
        input = &input[used..];
        m.data.extend_from_slice(&out[..made.min(cap.saturating_sub(m.data.len()))]);
        m.size += made as u64;
        // a message that inflates beyond any sense is not followed further
        if m.size > 1 << 30 {
            return Err(());
        }
        if st == Status::StreamEnd || made < out.len() && input.is_empty() || used == 0 && made == 0 {
            return Ok(());
        }
    }
}

impl StreamParser for WebSocket {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let d = dir.idx();
        if self.sides[d].lost {
            return Progress::Consumed(data.len());
        }
        if let Some((h, pos)) = self.sides[d].frame {
            let n = ((h.len - pos) as usize).min(data.len());
            let mut chunk = data[..n].to_vec();
            if let Some(mask) = h.mask {
                wire::unmask(&mut chunk, mask, pos);
            }
            self.payload(dir, h, &chunk, cx);
            if pos + n as u64 == h.len {
                self.sides[d].frame = None;
                self.frame_end(dir, h, cx);
            } else {
                self.sides[d].frame = Some((h, pos + n as u64));
            }
            return Progress::Consumed(n);
        }
        let h = match wire::header(data) {
            Ok(h) => h,
            Err(Bad::More(n)) => return Progress::NeedMore { consumed: 0, needed: n },
            Err(Bad::Invalid) => {
                cx.stats.l7_malformed += 1;
                return Progress::Desync;
            }
        };
        let ts = cx.ts_at(0);
        let s = &mut self.sides[d];
        match h.opcode {
            op::TEXT | op::BINARY => {
                if let Some(mut old) = s.msg.take() {
                    // a new message before the last one's final fragment
                    old.anomalies.push(Anomaly::Truncated);
                    cx.stats.l7_malformed += 1;
                }
                let compressed = h.rsv1 && self.deflate.is_some();
                s.msg = Some(Message { opcode: h.opcode, compressed, start: ts, ..Default::default() });
            }
            op::CONTINUATION if s.msg.is_none() => {
                // a fragment of a message begun before the capture, or never begun
                s.msg = Some(Message { opcode: op::CONTINUATION, start: ts, anomalies: vec![Anomaly::Truncated], ..Default::default() });
            }
            op::CONTINUATION => {}
            _ => {
                s.control.clear();
                s.control_start = ts;
            }
        }
        if let Some(m) = s.msg.as_mut().filter(|_| h.opcode < 8) {
            m.frames += 1;
            m.wire += h.size as u64 + h.len;
        }
        if h.len == 0 {
            self.frame_end(dir, h, cx);
        } else {
            self.sides[d].frame = Some((h, 0));
        }
        Progress::Consumed(h.size)
    }

    fn on_gap(&mut self, dir: Dir, _len: u64, cx: &mut Cx<'_>) {
        // frames carry no marker to find again: this direction is read no further
        self.sides[dir.idx()] = Side { lost: true, ..Side::default() };
        cx.stats.parse_desyncs += 1;
    }

    fn on_close(&mut self, dir: Dir, _leftover: &[u8], cx: &mut Cx<'_>) {
        // a message cut off by the end of the connection: what came of it
        let s = &mut self.sides[dir.idx()];
        if let Some(m) = s.msg.as_mut() {
            m.anomalies.push(Anomaly::Truncated);
            let h = Header { fin: true, rsv1: false, opcode: m.opcode, mask: None, len: 0, size: 0 };
            s.frame = None;
            self.frame_end(dir, h, cx);
        }
    }
}

impl crate::proto::TcpParser for WebSocket {
    fn finish(&mut self, _cx: &mut Cx<'_>) {}
}

/// permessage-deflate's parameters from the 101's `Sec-WebSocket-Extensions`.
pub fn deflate_of(headers: &[(String, String)], client: Dir) -> Option<Deflate> {
    let ext = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-extensions"))?.1.to_ascii_lowercase();
    let pmd = ext.split(',').find(|e| e.trim().starts_with("permessage-deflate"))?;
    let mut d = Deflate::default();
    for p in pmd.split(';').map(str::trim) {
        match p {
            "client_no_context_takeover" => d.no_context[client.idx()] = true,
            "server_no_context_takeover" => d.no_context[client.flip().idx()] = true,
            _ => {}
        }
    }
    Some(d)
}
