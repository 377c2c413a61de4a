//! The dissector: packets in, entries out. It owns the flow table, IP fragment
//! reassembly, and the per-connection parsers, and counts everything it drops.

use crate::decode::{self, defrag, link, IpInfo, TcpSeg};
use crate::entry::{CaptureSource, Entry, Transport};
use crate::flow::tcp::{Chunk, HalfStream, TcpCounters};
use crate::flow::{Dir, FlowKey, SeqNum};
use crate::limits::Limits;
use crate::stats::Stats;
use crate::stream::{ConnInfo, Cx, EntryMeta, IdGen, Pending, Progress, StreamParser};
use crate::time::Timestamp;
use crate::proto::{self, ProbeCx, Probed, Switch, TcpParser, UdpParser};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// How a dissector is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub limits: Limits,
    /// The node (host) the packets were captured on; every entry carries it.
    pub node: String,
    pub capture_source: CaptureSource,
    /// Protobuf schemas for typed gRPC messages; without them messages get the wire view.
    pub schema: Option<Arc<prost_reflect::DescriptorPool>>,
}

impl Default for Config {
    fn default() -> Self {
        Config { limits: Limits::default(), node: "local".into(), capture_source: CaptureSource::File, schema: None }
    }
}

/// The application protocol of a TCP connection.
enum TcpApp {
    Unknown { probed: usize },
    Known(Box<dyn TcpParser>),
    Opaque,
}

struct TcpCtx {
    /// Which directions began with a SYN (their first byte is the stream's first byte).
    syn: [bool; 2],
    ports: (u16, u16),
}

impl TcpApp {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>, tcx: &TcpCtx) -> Progress {
        match self {
            TcpApp::Known(p) => {
                let r = p.feed(dir, data, cx);
                match p.switch() {
                    None => {}
                    Some(Switch::To(next)) => *self = TcpApp::Known(next),
                    Some(Switch::Upgrade(up)) => {
                        p.finish(cx);
                        *self = match proto::upgrade(&up, cx.limits) {
                            Some(next) => TcpApp::Known(next),
                            None => TcpApp::Opaque,
                        };
                    }
                    Some(Switch::Reprobe) => {
                        p.finish(cx);
                        *self = TcpApp::Unknown { probed: 0 };
                    }
                    Some(Switch::Opaque) => {
                        p.finish(cx);
                        *self = TcpApp::Opaque;
                    }
                }
                r
            }
            TcpApp::Opaque => Progress::Consumed(data.len()),
            TcpApp::Unknown { probed } => {
                let pcx = ProbeCx { ports: tcx.ports, from_start: tcx.syn[dir.idx()] && *probed == 0, limits: cx.limits };
                match proto::probe_tcp(&pcx, dir, data) {
                    Probed::Match(p) => {
                        *self = TcpApp::Known(p);
                        self.feed(dir, data, cx, tcx)
                    }
                    Probed::Wait if data.len() < cx.limits.max_pending_bytes / 2 => Progress::NeedMore { consumed: 0, needed: 0 },
                    Probed::Wait => {
                        cx.stats.unknown_protocol_flows += 1;
                        *self = TcpApp::Opaque;
                        Progress::Consumed(data.len())
                    }
                    Probed::NeedMore if data.len() < cx.limits.max_pending_bytes / 2 => Progress::NeedMore { consumed: 0, needed: data.len() + 1 },
                    Probed::NeedMore | Probed::NoMatch => {
                        *probed += data.len();
                        // at a known stream start the verdict is final; mid-stream (no SYN seen),
                        // keep trying later segments, which may start a message
                        if tcx.syn[dir.idx()] && *probed == data.len() || *probed > cx.limits.max_probe_bytes {
                            cx.stats.unknown_protocol_flows += 1;
                            *self = TcpApp::Opaque;
                        }
                        Progress::Consumed(data.len())
                    }
                }
            }
        }
    }

    fn on_gap(&mut self, dir: Dir, len: u64, cx: &mut Cx<'_>) {
        if let TcpApp::Known(p) = self {
            p.on_gap(dir, len, cx)
        }
    }

    fn on_close(&mut self, dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if let TcpApp::Known(p) = self {
            p.on_close(dir, leftover, cx)
        }
    }

    fn finish(&mut self, cx: &mut Cx<'_>) {
        if let TcpApp::Known(p) = self {
            p.finish(cx)
        }
    }
}

/// `TcpApp` with its per-connection context, as the pending buffers want a parser.
struct AppRef<'a> {
    app: &'a mut TcpApp,
    tcx: &'a TcpCtx,
}

impl StreamParser for AppRef<'_> {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        self.app.feed(dir, data, cx, self.tcx)
    }
    fn on_gap(&mut self, dir: Dir, len: u64, cx: &mut Cx<'_>) {
        self.app.on_gap(dir, len, cx)
    }
    fn on_close(&mut self, dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        self.app.on_close(dir, leftover, cx)
    }
}

struct TcpFlow {
    halves: [HalfStream; 2],
    pend: [Pending; 2],
    app: TcpApp,
    tcx: TcpCtx,
    closed: [bool; 2],
}

impl TcpFlow {
    /// Runs `op` on the reassembler of `dir`, handing what it delivers to that direction's
    /// parser; then accounts for the counters and the out-of-order bytes it changed.
    fn reassemble(&mut self, dir: Dir, cx: &mut Cx<'_>, ooo_total: &mut usize, op: impl FnOnce(&mut HalfStream, &mut dyn FnMut(Chunk<'_>))) {
        let d = dir.idx();
        let TcpFlow { halves, pend, app, tcx, .. } = self;
        let (before, buffered) = (halves[d].counters, halves[d].buffered());
        let mut parser = AppRef { app, tcx };
        let p = &mut pend[d];
        op(&mut halves[d], &mut |c| match c {
            Chunk::Data(b) => p.push(&mut parser, dir, b, cx),
            Chunk::Gap(n) => p.gap(&mut parser, dir, n, cx),
        });
        *ooo_total = (*ooo_total + halves[d].buffered()).saturating_sub(buffered);
        add_counters(cx.stats, before, halves[d].counters);
    }

    /// Ends direction `dir` for its parser, once.
    fn close(&mut self, dir: Dir, cx: &mut Cx<'_>) {
        if !self.closed[dir.idx()] {
            self.closed[dir.idx()] = true;
            let TcpFlow { pend, app, tcx, .. } = self;
            pend[dir.idx()].close(&mut AppRef { app, tcx }, dir, cx);
        }
    }
}

enum UdpApp {
    Unknown { tried: u32 },
    Known(Box<dyn UdpParser>),
    Opaque,
}

impl UdpApp {
    /// Every request answered (a DNS flow whose lookups are done).
    fn is_idle(&self) -> bool {
        matches!(self, UdpApp::Known(p) if p.is_idle())
    }
}

enum FlowKind {
    Tcp(Box<TcpFlow>),
    Udp(UdpApp),
}

struct Flow {
    info: ConnInfo,
    seq: u64,
    last_seen: Timestamp,
    kind: FlowKind,
}

/// Packets in, entries out. See the crate docs.
pub struct Dissector {
    limits: Limits,
    meta: EntryMeta,
    /// Flows live in a slab and the map holds only their slots: with ~200-byte flows in
    /// the map itself, the churn of short connections made it rehash (moving every flow)
    /// and regrow (fresh zeroed pages) over and over, a fifth of a live worker's time.
    flows: slab::Slab<Flow>,
    index: HashMap<FlowKey, u32, ahash::RandomState>,
    defrag: defrag::Defragmenter,
    stats: Stats,
    ids: IdGen,
    out: Vec<Entry>,
    flow_seq: u64,
    last_sweep: Timestamp,
    ooo_total: usize,
    /// UDP DNS flows as they went idle (every query answered), oldest first: (when, slot,
    /// flow seq). Each leaves ANSWERED_NS after its last answer, not at the next sweep:
    /// a busy node makes tens of thousands a second, and the flow table they would fill
    /// for two or three seconds more made every lookup a cache miss.
    answered: std::collections::VecDeque<(Timestamp, u32, u64)>,
}

const SWEEP_EVERY_NS: u64 = 1_000_000_000;
/// How long a UDP DNS flow with every query answered is kept: a duplicate answer within
/// it is still recognised as one (duplicates seen in captures come within a millisecond;
/// a client that retried has a query pending, which the answer pairs with).
const ANSWERED_NS: u64 = 1_000_000_000;

impl Dissector {
    pub fn new(config: Config) -> Self {
        Dissector {
            limits: config.limits,
            meta: EntryMeta { node: Arc::from(config.node), capture_source: config.capture_source, schema: config.schema },
            flows: slab::Slab::new(),
            index: HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
            defrag: Default::default(),
            stats: Stats::default(),
            ids: IdGen::default(),
            out: Vec::new(),
            flow_seq: 0,
            last_sweep: Timestamp(0),
            ooo_total: 0,
            answered: Default::default(),
        }
    }

    /// Continues entry ids from another dissector's (several files in one run).
    pub fn continue_ids_from(&mut self, other: &Dissector) {
        self.ids.next = other.ids.next;
    }

    /// Starts entry numbering at `base`, so dissectors running side by side (one per
    /// shard) never make the same id.
    pub fn set_id_base(&mut self, base: u64) {
        self.ids.next = base;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Entries completed so far, oldest first; the dissector forgets them.
    pub fn drain_entries(&mut self) -> std::vec::Drain<'_, Entry> {
        self.out.drain(..)
    }

    /// One captured frame of the given link-layer type, as captured (maybe cut short).
    pub fn packet(&mut self, ts: Timestamp, linktype: u32, frame: &[u8]) {
        self.stats.packets += 1;
        self.stats.bytes += frame.len() as u64;
        if ts.0 >= self.last_sweep.0.saturating_add(SWEEP_EVERY_NS) {
            self.sweep(ts);
        }
        self.retire_answered(ts);
        self.frame(ts, linktype, frame, 0);
    }

    /// Removes the UDP DNS flows idle for ANSWERED_NS as of `now`.
    fn retire_answered(&mut self, now: Timestamp) {
        while let Some(&(at, slot, seq)) = self.answered.front() {
            if now.0.saturating_sub(at.0) <= ANSWERED_NS {
                break;
            }
            self.answered.pop_front();
            // still that flow (slots are reused), still idle, and nothing since
            let done = self.flows.get(slot as usize).is_some_and(|f| {
                f.seq == seq && now.0.saturating_sub(f.last_seen.0) > ANSWERED_NS && matches!(&f.kind, FlowKind::Udp(a) if a.is_idle())
            });
            if done {
                self.stats.flows_expired += 1;
                self.remove_flow(slot as usize);
            }
        }
    }

    fn frame(&mut self, ts: Timestamp, linktype: u32, frame: &[u8], depth: usize) {
        match link::strip(linktype, frame, self.limits.max_encap_depth) {
            Ok(link::Net::Ip(ip)) => self.ip(ts, ip, depth),
            Ok(link::Net::Other) => self.stats.non_ip += 1,
            Err(link::LinkError::UnsupportedLinkType) => self.stats.unsupported_link += 1,
            Err(_) => self.stats.link_errors += 1,
        }
    }

    fn ip(&mut self, ts: Timestamp, b: &[u8], depth: usize) {
        let Ok((info, payload)) = decode::parse_ip(b) else {
            self.stats.ip_errors += 1;
            return;
        };
        if let Some(f) = info.frag {
            self.stats.fragments += 1;
            let key = defrag::FragKey { src: info.src, dst: info.dst, id: f.id, proto: info.proto };
            match self.defrag.add(key, f.offset, f.more, payload, ts, self.limits.max_fragment_bytes) {
                defrag::Outcome::Complete(whole) => {
                    self.stats.fragments_reassembled += 1;
                    self.transport(ts, &info, &whole, 0, depth);
                }
                defrag::Outcome::Dropped => self.stats.fragments_dropped += 1,
                defrag::Outcome::Held => {}
            }
            return;
        }
        self.transport(ts, &info, payload, info.missing, depth);
    }

    fn transport(&mut self, ts: Timestamp, info: &IpInfo, payload: &[u8], missing: usize, depth: usize) {
        match info.proto {
            decode::PROTO_TCP => match decode::parse_tcp(payload) {
                Ok(seg) => self.tcp(ts, info, seg, missing),
                Err(_) => self.stats.ip_errors += 1,
            },
            decode::PROTO_UDP => match decode::parse_udp(payload) {
                Ok((sp, dp, data)) => self.udp(ts, info, sp, dp, data, depth),
                Err(_) => self.stats.ip_errors += 1,
            },
            // IP in IP (4) and IPv6 in IP (41)
            4 | 41 if depth < self.limits.max_encap_depth => self.ip(ts, payload, depth + 1),
            _ => self.stats.other_transport += 1,
        }
    }

    /// The flow for a packet from `src` to `dst`, made if new; and the packet's direction.
    fn flow(&mut self, ts: Timestamp, src: (IpAddr, u16), dst: (IpAddr, u16), transport: Transport, create: bool) -> Option<(usize, Dir)> {
        let key = flow_key(src, dst, transport);
        let slot = match self.index.get(&key) {
            Some(&slot) => slot as usize,
            None => {
                if !create {
                    return None;
                }
                if self.flows.len() >= self.limits.max_flows {
                    self.evict();
                }
                self.flow_seq += 1;
                self.stats.flows_created += 1;
                let kind = match transport {
                    Transport::Tcp => FlowKind::Tcp(Box::new(TcpFlow {
                        halves: Default::default(),
                        pend: Default::default(),
                        app: TcpApp::Unknown { probed: 0 },
                        tcx: TcpCtx { syn: [false; 2], ports: (src.1, dst.1) },
                        closed: [false; 2],
                    })),
                    Transport::Udp => FlowKind::Udp(UdpApp::Unknown { tried: 0 }),
                };
                let info = ConnInfo { ends: [src, dst], transport, conn_id: conn_id(&key, ts) };
                let slot = self.flows.insert(Flow { info, seq: self.flow_seq, last_seen: ts, kind });
                self.index.insert(key, slot as u32);
                slot
            }
        };
        let f = &mut self.flows[slot];
        f.last_seen = ts;
        let dir = if f.info.ends[0] == src { Dir::A } else { Dir::B };
        Some((slot, dir))
    }

    fn tcp(&mut self, ts: Timestamp, info: &IpInfo, seg: TcpSeg<'_>, missing: usize) {
        self.stats.tcp_segments += 1;
        let has_data = !seg.payload.is_empty() || missing > 0;
        let Some((slot, dir)) = self.flow(ts, (info.src, seg.sport), (info.dst, seg.dport), Transport::Tcp, seg.syn || has_data) else {
            return;
        };
        let Dissector { flows, limits, meta, stats, ids, out, ooo_total, .. } = self;
        let flow = &mut flows[slot];
        let FlowKind::Tcp(t) = &mut flow.kind else { return };
        let mut cx = Cx { ts, first_ts: ts, held: 0, conn: &flow.info, meta, limits, stats, ids, out };
        let (d, o) = (dir.idx(), dir.flip().idx());
        if seg.syn && !t.halves[d].started() {
            t.tcx.syn[d] = true;
        }
        if seg.ack_flag {
            t.reassemble(dir.flip(), &mut cx, ooo_total, |h, mut out| h.ack(SeqNum(seg.ack), &mut out));
        }
        let room = cx.limits.max_ooo_bytes_total.saturating_sub(*ooo_total).min(cx.limits.max_ooo_bytes_per_dir);
        if room < seg.payload.len() {
            cx.stats.ooo_cap_hits += 1;
        }
        let cap = t.halves[d].buffered() + room;
        t.reassemble(dir, &mut cx, ooo_total, |h, mut out| h.segment(SeqNum(seg.seq), seg.syn, seg.fin, seg.payload, missing, cap, &mut out));
        // the other direction may have waited for this one (an Upgrade's response)
        if t.pend[o].blocked {
            let TcpFlow { pend, app, tcx, .. } = &mut **t;
            pend[o].retry(&mut AppRef { app, tcx }, dir.flip(), 0, &mut cx);
        }
        if t.halves[d].fin_delivered() {
            t.close(dir, &mut cx);
        }
        if seg.rst || t.closed == [true, true] {
            self.remove_flow(slot);
        }
    }

    fn udp(&mut self, ts: Timestamp, info: &IpInfo, sport: u16, dport: u16, data: &[u8], depth: usize) {
        self.stats.udp_datagrams += 1;
        if matches!(dport, 4789 | 8472) && depth < self.limits.max_encap_depth {
            if let Some(inner) = decode::vxlan_inner(data) {
                self.stats.vxlan_decapsulated += 1;
                self.frame(ts, link::linktype::ETHERNET, inner, depth + 1);
                return;
            }
        }
        let Some((slot, dir)) = self.flow(ts, (info.src, sport), (info.dst, dport), Transport::Udp, true) else { return };
        let Dissector { flows, limits, meta, stats, ids, out, .. } = self;
        let flow = &mut flows[slot];
        let FlowKind::Udp(app) = &mut flow.kind else { return };
        if let UdpApp::Unknown { tried } = app {
            match proto::probe_udp((sport, dport), data) {
                Some(p) => *app = UdpApp::Known((p.new)()),
                None => {
                    *tried += 1;
                    if *tried >= 8 {
                        stats.unknown_protocol_flows += 1;
                        *app = UdpApp::Opaque;
                    }
                    return;
                }
            }
        }
        if let UdpApp::Known(p) = app {
            let mut cx = Cx { ts, first_ts: ts, held: 0, conn: &flow.info, meta, limits, stats, ids, out };
            p.datagram(dir, data, info.dst.is_multicast(), &mut cx);
            if p.is_idle() {
                // bounded like the flows: a capture whose clock jumps ahead would hold
                // back the queue's front until time caught up; the sweep still covers
                // a flow whose record goes
                if self.answered.len() >= self.limits.max_flows {
                    self.answered.pop_front();
                }
                self.answered.push_back((ts, slot as u32, flow.seq));
            }
        }
    }

    fn remove_flow(&mut self, slot: usize) {
        let Some(mut flow) = self.flows.try_remove(slot) else { return };
        let [a, b] = flow.info.ends;
        self.index.remove(&flow_key(a, b, flow.info.transport));
        let Dissector { limits, meta, stats, ids, out, ooo_total, .. } = self;
        let ts = flow.last_seen;
        let mut cx = Cx { ts, first_ts: ts, held: 0, conn: &flow.info, meta, limits, stats, ids, out };
        match &mut flow.kind {
            FlowKind::Tcp(t) => {
                for dir in [Dir::A, Dir::B] {
                    t.reassemble(dir, &mut cx, ooo_total, |h, mut out| h.flush(&mut out));
                    t.close(dir, &mut cx);
                }
                t.app.finish(&mut cx);
            }
            FlowKind::Udp(UdpApp::Known(p)) => p.finish(&mut cx),
            FlowKind::Udp(_) => {}
        }
    }

    /// Live capture: time passes even when no packet arrives. Expires what has been idle
    /// too long as of `now` (wall-clock time), at most once a second.
    pub fn tick(&mut self, now: Timestamp) {
        if now.0 >= self.last_sweep.0.saturating_add(SWEEP_EVERY_NS) {
            self.sweep(now);
        }
        self.retire_answered(now);
    }

    /// Expires idle flows, old fragments and unanswered DNS queries as capture time passes.
    fn sweep(&mut self, now: Timestamp) {
        self.last_sweep = now;
        self.stats.fragments_expired += self.defrag.expire(now, self.limits.fragment_timeout_ns) as u64;
        let mut idle: Vec<(u64, usize)> = Vec::new();
        let Dissector { flows, limits, meta, stats, ids, out, .. } = self;
        for (k, f) in flows.iter_mut() {
            let timeout = match &f.kind {
                FlowKind::Tcp(_) => limits.tcp_idle_ns,
                // a lookup answered is done: clients use a fresh port for the next one, so
                // such flows would pile up for the whole UDP idle time
                FlowKind::Udp(a) if a.is_idle() => limits.udp_idle_ns.min(ANSWERED_NS),
                FlowKind::Udp(_) => limits.udp_idle_ns,
            };
            if now.0.saturating_sub(f.last_seen.0) > timeout {
                idle.push((f.seq, k));
            } else if let FlowKind::Udp(UdpApp::Known(p)) = &mut f.kind {
                if !p.is_idle() {
                    let mut cx = Cx { ts: now, first_ts: now, held: 0, conn: &f.info, meta, limits, stats, ids, out };
                    p.expire(now, &mut cx);
                }
            }
        }
        idle.sort_unstable_by_key(|(s, _)| *s);
        self.stats.flows_expired += idle.len() as u64;
        for (_, k) in idle {
            self.remove_flow(k);
        }
    }

    /// At the flow cap: the least recently seen eighth goes.
    fn evict(&mut self) {
        let mut all: Vec<(Timestamp, u64, usize)> = self.flows.iter().map(|(k, f)| (f.last_seen, f.seq, k)).collect();
        all.sort_unstable_by_key(|(t, s, _)| (*t, *s));
        let n = (all.len() / 8).max(1);
        self.stats.flows_evicted += n as u64;
        for (_, _, k) in all.into_iter().take(n) {
            self.remove_flow(k);
        }
    }

    /// The end of the input: every flow is finished, in the order it began.
    pub fn finish(&mut self) {
        let mut all: Vec<(u64, usize)> = self.flows.iter().map(|(k, f)| (f.seq, k)).collect();
        all.sort_unstable_by_key(|(s, _)| *s);
        for (_, k) in all {
            self.remove_flow(k);
        }
        self.defrag = Default::default();
        self.answered.clear();
    }
}

fn add_counters(stats: &mut Stats, before: TcpCounters, after: TcpCounters) {
    stats.tcp_retransmitted_segments += after.retransmitted_segments - before.retransmitted_segments;
    stats.tcp_out_of_order_segments += after.out_of_order_segments - before.out_of_order_segments;
    stats.tcp_gaps += after.gaps - before.gaps;
    stats.tcp_gap_bytes += after.gap_bytes - before.gap_bytes;
}

/// The key a flow is found by: both ends, in either order, and the transport.
fn flow_key(src: (IpAddr, u16), dst: (IpAddr, u16), transport: Transport) -> FlowKey {
    let proto = if transport == Transport::Tcp { decode::PROTO_TCP } else { decode::PROTO_UDP };
    FlowKey::new(src, dst, proto)
}

/// A connection id: the flow key and its first packet's time, hashed (FNV-1a 64).
fn conn_id(key: &FlowKey, ts: Timestamp) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= x as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (ip, port) in [key.lo, key.hi] {
        match ip {
            IpAddr::V4(a) => eat(&a.octets()),
            IpAddr::V6(a) => eat(&a.octets()),
        }
        eat(&port.to_be_bytes());
    }
    eat(&[key.proto]);
    eat(&ts.0.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::udp_frame;

    /// A capture whose clock jumps ahead holds back the queue of answered DNS flows; it
    /// stays within the flow cap all the same.
    #[test]
    fn the_answered_dns_queue_is_bounded_when_the_clock_jumps() {
        let limits = Limits { max_flows: 8, ..Limits::default() };
        let mut d = Dissector::new(Config { limits, ..Config::default() });
        let t0 = 1_700_000_000_000_000_000u64;
        let answer = |port: u16| {
            let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
            udp_frame(([10, 0, 0, 53], 53), ([10, 0, 0, 1], port), &m)
        };
        let query = |port: u16| {
            let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
            udp_frame(([10, 0, 0, 1], port), ([10, 0, 0, 53], 53), &m)
        };
        // an hour ahead, then back
        d.packet(Timestamp(t0 + 3_600_000_000_000), 1, &query(1));
        d.packet(Timestamp(t0 + 3_600_000_000_000), 1, &answer(1));
        for port in 2..200 {
            d.packet(Timestamp(t0 + port as u64), 1, &query(port));
            d.packet(Timestamp(t0 + port as u64), 1, &answer(port));
        }
        assert!(d.answered.len() <= 8, "{}", d.answered.len());
        assert_eq!(d.drain_entries().count(), 199);
    }
}
