//! Builders of real frames (through etherparse's `PacketBuilder`) and pcap files, for tests.

use crate::{Config, Dissector, Limits, Stats, Timestamp};
use etherparse::PacketBuilder;
use std::io::Write;

/// Frames of one TCP connection between a client and a server, with sequence numbers
/// tracked, timestamps one millisecond apart.
pub struct TcpConv {
    pub client: ([u8; 4], u16),
    pub server: ([u8; 4], u16),
    seq: [u32; 2],
    pub ts: u64,
    pub frames: Vec<(u64, Vec<u8>)>,
}

/// 0: client to server, 1: server to client.
pub const C2S: usize = 0;
pub const S2C: usize = 1;

impl TcpConv {
    pub fn new(client: ([u8; 4], u16), server: ([u8; 4], u16), isn: [u32; 2]) -> Self {
        TcpConv { client, server, seq: isn, ts: 1_700_000_000_000_000_000, frames: Vec::new() }
    }

    fn frame(&mut self, dir: usize, syn: bool, fin: bool, payload: &[u8]) {
        let (s, d) = if dir == C2S { (self.client, self.server) } else { (self.server, self.client) };
        let ack = self.seq[1 - dir];
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(s.0, d.0, 64).tcp(s.1, d.1, self.seq[dir], 65535);
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        if !(syn && dir == C2S) {
            b = b.ack(ack);
        }
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).expect("in-memory write");
        self.frames.push((self.ts, out));
        self.ts += 1_000_000;
        self.seq[dir] = self.seq[dir].wrapping_add(payload.len() as u32 + syn as u32 + fin as u32);
    }

    pub fn handshake(&mut self) -> &mut Self {
        self.frame(C2S, true, false, &[]);
        self.frame(S2C, true, false, &[]);
        self.frame(C2S, false, false, &[]);
        self
    }

    /// Sends `data` in `dir`, cut into segments of the given sizes (the rest in one).
    pub fn send(&mut self, dir: usize, data: &[u8], cuts: &[usize]) -> &mut Self {
        let mut at = 0;
        for &c in cuts {
            let end = (at + c).min(data.len());
            if end > at {
                self.frame(dir, false, false, &data[at..end]);
            }
            at = end;
        }
        if at < data.len() {
            self.frame(dir, false, false, &data[at..]);
        }
        self
    }

    /// A fuzzer's bytes as `[control byte: direction in bit 7, length - 1 in the rest]
    /// [bytes] ...`, each run sent as one segment.
    pub fn send_fuzzed(&mut self, data: &[u8]) -> &mut Self {
        let mut rest = data;
        while let Some((&ctl, tail)) = rest.split_first() {
            let n = ((ctl & 0x7f) as usize + 1).min(tail.len());
            self.send(if ctl & 0x80 == 0 { C2S } else { S2C }, &tail[..n], &[]);
            rest = &tail[n..];
        }
        self
    }

    pub fn close(&mut self) -> &mut Self {
        self.frame(C2S, false, true, &[]);
        self.frame(S2C, false, true, &[]);
        self
    }
}

/// One UDP datagram in an Ethernet frame.
pub fn udp_frame(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src.0, dst.0, 64).udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("in-memory write");
    out
}

/// A classic pcap file (nanosecond timestamps, Ethernet unless told) holding `frames`.
pub fn pcap_bytes(linktype: u32, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b23c4du32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&262_144u32.to_le_bytes());
    b.extend_from_slice(&linktype.to_le_bytes());
    for (ts, f) in frames {
        b.write_all(&((ts / 1_000_000_000) as u32).to_le_bytes()).unwrap();
        b.write_all(&((ts % 1_000_000_000) as u32).to_le_bytes()).unwrap();
        b.write_all(&(f.len() as u32).to_le_bytes()).unwrap();
        b.write_all(&(f.len() as u32).to_le_bytes()).unwrap();
        b.write_all(f).unwrap();
    }
    b
}

/// One HTTP/2 frame: a 9-byte header (length from the payload) and the payload.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Ethernet frames through a dissector with `limits`: the entries as JSON, without the
/// fields that depend on timing (id, timestamp, elapsed_time, conn_id), and the counters.
pub fn entries_json(frames: &[(u64, Vec<u8>)], limits: Limits) -> (Vec<serde_json::Value>, Stats) {
    let mut d = Dissector::new(Config { limits, ..Config::default() });
    let mut out = Vec::new();
    for (ts, f) in frames {
        d.packet(Timestamp(*ts), 1, f);
        out.extend(d.drain_entries());
    }
    d.finish();
    out.extend(d.drain_entries());
    let v = out
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).expect("entries serialize");
            for k in ["id", "timestamp", "elapsed_time", "conn_id"] {
                v.as_object_mut().expect("an object").remove(k);
            }
            v
        })
        .collect();
    (v, d.stats().clone())
}

/// The entries (as [`entries_json`] gives them) of one TCP connection to `port` carrying
/// `msgs` (direction C2S or S2C, bytes), each message sent in segments of `seg` bytes
/// (whole when 0), after a handshake and before a close.
pub fn conversation(port: u16, msgs: &[(usize, Vec<u8>)], seg: usize) -> (Vec<serde_json::Value>, Stats) {
    let mut c = TcpConv::new(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], port), [1000, 5000]);
    c.handshake();
    for (dir, m) in msgs {
        let cuts: Vec<usize> = if seg == 0 { Vec::new() } else { vec![seg; m.len() / seg + 1] };
        c.send(*dir, m, &cuts);
    }
    c.close();
    entries_json(&c.frames, Limits::default())
}

/// Split invariance: the entries are the same whatever the segment size, and whichever
/// single point each message is cut at. Returns the entries.
pub fn assert_split_invariant(port: u16, msgs: &[(usize, Vec<u8>)]) -> Vec<serde_json::Value> {
    let (whole, _) = conversation(port, msgs, 0);
    let longest = msgs.iter().map(|(_, m)| m.len()).max().unwrap_or(0);
    for seg in 1..longest.min(64) {
        assert_eq!(conversation(port, msgs, seg).0, whole, "segments of {seg} bytes");
    }
    for at in 1..longest {
        let mut c = TcpConv::new(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], port), [1000, 5000]);
        c.handshake();
        for (dir, m) in msgs {
            c.send(*dir, m, &[at]);
        }
        c.close();
        assert_eq!(entries_json(&c.frames, Limits::default()).0, whole, "every message cut at {at}");
    }
    whole
}

/// The starts that lead each protocol's probe to its parser, for fuzzing what follows:
/// (name, server port, messages sent first).
pub fn l7_preludes() -> Vec<(&'static str, u16, Vec<(usize, Vec<u8>)>)> {
    let startup = [&(18u32).to_be_bytes()[..], &196_608u32.to_be_bytes(), b"user\0bob\0\0"].concat();
    let mut greeting = vec![10];
    greeting.extend_from_slice(b"8.0.32\0\x07\0\0\0\x01\x01\x01\x01\x01\x01\x01\x01\0\0\xa2\xff\x02\0\xff\x01\x15\0\0\0\0\0\0\0\0\0\0");
    greeting.extend_from_slice(&[2; 13]);
    greeting.extend_from_slice(b"mysql_native_password\0");
    let greeting = [&(greeting.len() as u32).to_le_bytes()[..3], &[0], &greeting].concat();
    let kafka = [&[0, 0, 0, 0x10][..], &[0, 3, 0, 1, 0, 0, 0, 1, 0, 2], b"ab", &[0, 0, 0, 0]].concat();
    let mongo_doc = b"\x0f\0\0\0\x10ping\0\x01\0\0\0\0";
    let mongo = [&(16 + 5 + mongo_doc.len() as i32).to_le_bytes()[..], &1i32.to_le_bytes(), &0i32.to_le_bytes(), &2013i32.to_le_bytes(), &[0, 0, 0, 0, 0], mongo_doc].concat();
    let ws_up = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec();
    let ws_101 = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n".to_vec();
    vec![
        ("redis", 6379, vec![(C2S, b"*1\r\n$4\r\nPING\r\n".to_vec())]),
        ("postgresql", 5432, vec![(C2S, startup)]),
        ("mysql", 3306, vec![(S2C, greeting)]),
        ("kafka", 9092, vec![(C2S, kafka)]),
        ("amqp", 5672, vec![(C2S, b"AMQP\x00\x00\x09\x01".to_vec())]),
        ("mongodb", 27017, vec![(C2S, mongo)]),
        ("mqtt", 1883, vec![(C2S, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00".to_vec())]),
        ("websocket", 8080, vec![(C2S, ws_up), (S2C, ws_101)]),
    ]
}

/// A fuzz case for one protocol: its prelude, then the fuzzer's bytes as
/// `[control byte: direction in bit 7, length - 1 in the rest] [bytes] ...`. Every entry
/// must serialize; nothing may panic.
pub fn fuzz_l7(protocol: &str, data: &[u8]) {
    let Some((_, port, prelude)) = l7_preludes().into_iter().find(|(n, _, _)| *n == protocol) else { panic!("no prelude for {protocol}") };
    let mut c = TcpConv::new(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], port), [u32::MAX - 100, 5]);
    c.handshake();
    for (dir, m) in &prelude {
        c.send(*dir, m, &[]);
    }
    c.send_fuzzed(data);
    c.close();
    let mut d = Dissector::new(Config::default());
    for (ts, f) in &c.frames {
        d.packet(Timestamp(*ts), 1, f);
    }
    d.finish();
    for e in d.drain_entries() {
        serde_json::to_string(&e).expect("entries always serialize");
    }
}
