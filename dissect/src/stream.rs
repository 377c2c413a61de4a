//! The one streaming contract of every TCP parser, and the driver that keeps the bytes a
//! parser has not consumed yet.
//!
//! A parser sees `feed(dir, bytes, cx)` and answers with [`Progress`]; it sees
//! `on_gap(dir, len, cx)` for bytes never captured and `on_close(dir, cx)` at FIN, RST or
//! expiry. Its code is written once and takes the direction as a parameter.

use crate::entry::{Anomaly, CaptureSource, Endpoint, Entry, Protocol, Transport};
use crate::flow::Dir;
use crate::limits::Limits;
use crate::stats::Stats;
use crate::time::Timestamp;
use std::net::IpAddr;
use std::sync::Arc;

/// A parser's answer to `feed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Consumed this many bytes; call again with the rest, if any.
    Consumed(usize),
    /// Consumed `consumed` bytes; the next unit needs `needed` bytes in all (0: it waits for
    /// the other direction).
    NeedMore { consumed: usize, needed: usize },
    /// The bytes make no sense for this protocol; stop feeding this direction.
    Desync,
}

/// Who and where: the parts of an entry that come from the connection, not the message.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The sender of direction `A` and of direction `B`.
    pub ends: [(IpAddr, u16); 2],
    pub transport: Transport,
    /// The connection id, written as 16 hex digits in entries.
    pub conn_id: u64,
}

/// Settings that every entry carries.
#[derive(Clone, Debug)]
pub struct EntryMeta {
    pub node: Arc<str>,
    pub capture_source: CaptureSource,
    /// Protobuf schemas for typed gRPC messages (`--proto`).
    pub schema: Option<Arc<prost_reflect::DescriptorPool>>,
}

/// Makes entry ids: unique, and sorting as the timestamps sort.
#[derive(Debug, Default)]
pub struct IdGen {
    pub next: u64,
}

impl IdGen {
    pub fn make(&mut self, ts: Timestamp) -> String {
        let n = self.next;
        self.next += 1;
        let mut id = String::with_capacity(24);
        push_hex(&mut id, ts.0, 16);
        push_hex(&mut id, n & 0xffff_ffff, 8);
        id
    }
}

/// `v`'s low `digits` hex digits, zero-padded, lower case: `format!("{v:0digits$x}")`
/// without the formatting machinery (ids are made for every entry and flow).
pub(crate) fn push_hex(out: &mut String, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// What a parser may use and where it puts entries.
pub struct Cx<'a> {
    /// Time of the packet being handled.
    pub ts: Timestamp,
    /// Time of the first byte of the data being fed (older than `ts` when the driver held
    /// some bytes back).
    pub first_ts: Timestamp,
    /// How many leading bytes of the data being fed came from earlier packets.
    pub held: usize,
    pub conn: &'a ConnInfo,
    pub meta: &'a EntryMeta,
    pub limits: &'a Limits,
    pub stats: &'a mut Stats,
    pub ids: &'a mut IdGen,
    pub out: &'a mut Vec<Entry>,
}

impl Cx<'_> {
    /// Time of the byte at `offset` in the data being fed.
    pub fn ts_at(&self, offset: usize) -> Timestamp {
        if offset < self.held {
            self.first_ts
        } else {
            self.ts
        }
    }

    /// A new entry with the connection's fields; `client` is the direction requests travel.
    #[allow(clippy::too_many_arguments)]
    pub fn entry(&mut self, protocol: Protocol, client: Dir, ts: Timestamp) -> Entry {
        let (c, s) = (self.conn.ends[client.idx()], self.conn.ends[client.flip().idx()]);
        Entry {
            id: self.ids.make(ts),
            timestamp: ts,
            protocol,
            http_version: None,
            transport: self.conn.transport,
            src: Endpoint::new(c.0, c.1),
            dst: Endpoint::new(s.0, s.1),
            request: None,
            response: None,
            elapsed_time: None,
            request_size: 0,
            response_size: 0,
            node: self.meta.node.clone(),
            capture_source: self.meta.capture_source,
            conn_id: {
                let mut id = String::with_capacity(16);
                push_hex(&mut id, self.conn.conn_id, 16);
                id
            },
            anomalies: Vec::new(),
            join: None,
            tls: None,
        }
    }

    pub fn emit(&mut self, mut e: Entry) {
        e.anomalies.sort();
        self.stats.entries += 1;
        if !e.anomalies.is_empty() {
            self.stats.entries_with_anomalies += 1;
        }
        if e.anomalies.contains(&Anomaly::NoResponse) {
            self.stats.requests_without_response += 1;
        }
        if e.anomalies.contains(&Anomaly::UnpairedResponse) {
            self.stats.responses_without_request += 1;
        }
        self.out.push(e);
    }
}

/// A TCP application parser.
pub trait StreamParser {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress;
    /// `len` bytes in `dir` were never captured.
    fn on_gap(&mut self, dir: Dir, len: u64, cx: &mut Cx<'_>);
    /// `dir` ended (FIN, RST, expiry or end of capture); `leftover` is what it never consumed.
    fn on_close(&mut self, dir: Dir, leftover: &[u8], cx: &mut Cx<'_>);
}

/// The bytes one direction's parser has not consumed yet.
#[derive(Debug, Default)]
pub struct Pending {
    buf: Vec<u8>,
    ts: Timestamp,
    needed: usize,
    /// Fed nothing more: the parser desynchronised or the buffer cap was hit.
    pub dead: bool,
    /// The parser waits for the other direction before it can go on.
    pub blocked: bool,
}

impl Pending {
    /// Feeds `data` (arrived at `cx.ts`) to `p`, after whatever was held back.
    pub fn push<P: StreamParser + ?Sized>(&mut self, p: &mut P, dir: Dir, data: &[u8], cx: &mut Cx<'_>) {
        if self.dead {
            return;
        }
        if self.buf.is_empty() {
            cx.first_ts = cx.ts;
            cx.held = 0;
            let done = self.run(p, dir, data, cx);
            if done < data.len() && !self.dead {
                self.buf.extend_from_slice(&data[done..]);
                self.ts = cx.ts;
            }
        } else {
            self.buf.extend_from_slice(data);
            if self.buf.len() < self.needed {
                self.check_cap(cx);
                return;
            }
            self.retry(p, dir, data.len(), cx);
        }
    }

    /// Feeds the held bytes again (after the other direction unblocked this one).
    pub fn retry<P: StreamParser + ?Sized>(&mut self, p: &mut P, dir: Dir, fresh: usize, cx: &mut Cx<'_>) {
        if self.dead || self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        cx.first_ts = self.ts;
        cx.held = buf.len() - fresh.min(buf.len());
        let done = self.run(p, dir, &buf, cx);
        self.buf = buf;
        self.buf.drain(..done.min(self.buf.len()));
        if done > 0 {
            self.ts = cx.ts;
        }
        if self.dead {
            self.buf.clear();
        }
        self.check_cap(cx);
    }

    fn check_cap(&mut self, cx: &mut Cx<'_>) {
        if self.buf.len() > cx.limits.max_pending_bytes {
            cx.stats.pending_overflows += 1;
            self.buf.clear();
            self.dead = true;
        }
    }

    /// Runs the parser over `data`; returns how much it consumed.
    fn run<P: StreamParser + ?Sized>(&mut self, p: &mut P, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> usize {
        let mut off = 0;
        self.needed = 0;
        self.blocked = false;
        while off < data.len() {
            match p.feed(dir, &data[off..], cx) {
                Progress::Consumed(0) => {
                    self.needed = data.len() - off + 1;
                    break;
                }
                Progress::Consumed(n) => {
                    off += n;
                    cx.held = cx.held.saturating_sub(n);
                }
                Progress::NeedMore { consumed, needed } => {
                    off += consumed;
                    if needed == 0 {
                        self.blocked = true;
                    }
                    self.needed = needed;
                    break;
                }
                Progress::Desync => {
                    cx.stats.parse_desyncs += 1;
                    self.dead = true;
                    return data.len();
                }
            }
        }
        off.min(data.len())
    }

    /// A hole in the stream: what was held can no longer complete.
    pub fn gap<P: StreamParser + ?Sized>(&mut self, p: &mut P, dir: Dir, len: u64, cx: &mut Cx<'_>) {
        self.buf.clear();
        self.needed = 0;
        if !self.dead {
            p.on_gap(dir, len, cx);
        }
    }

    pub fn close<P: StreamParser + ?Sized>(&mut self, p: &mut P, dir: Dir, cx: &mut Cx<'_>) {
        let buf = std::mem::take(&mut self.buf);
        if !self.dead {
            cx.first_ts = self.ts;
            cx.held = buf.len();
            p.on_close(dir, &buf, cx);
        }
        self.dead = true;
    }
}
