//! MySQL and MariaDB: `wire` reads packets and messages, `state` follows a connection.
//! Found by content: the server's greeting (protocol 10 and a version) from the start; on
//! a connection joined mid-way, a client's query or prepare filling its packet (compressed
//! or not), or on MySQL's ports a run of packets with consecutive sequence ids.

pub mod state;
pub mod wire;

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
pub use state::Mysql;

pub const PROTO: TcpProto = TcpProto { name: "mysql", short: "mysql", probe: Some(probe), late_probe: Some(probe_joined), upgrade: None };

const PORTS: &[u16] = &[3306, 3307, 4000, 6033];

/// The greeting: a packet with sequence id 0 whose payload is protocol 10, a printable
/// version with a digit, a NUL.
fn probe(_pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let Some((len, seq)) = wire::header(data) else {
        return if data.len() < 4 && data.get(2).is_none_or(|b| *b == 0) { Probed::NeedMore } else { Probed::NoMatch };
    };
    if seq != 0 || !(20..=1024).contains(&len) || data.get(4).is_some_and(|b| *b != 10) {
        return Probed::NoMatch;
    }
    let Some(p) = data.get(4..4 + len) else { return Probed::NeedMore };
    match wire::greeting(p) {
        Some(g) if !g.version.is_empty() && g.version.iter().all(|c| c.is_ascii_graphic()) && g.version.iter().any(u8::is_ascii_digit) => {
            Probed::Match(Box::new(Mysql::new(dir.flip(), true, false)))
        }
        _ => Probed::NoMatch,
    }
}

/// A query or prepare (sequence id 0, printable text) that fills `p` exactly.
fn is_query_packet(p: &[u8]) -> bool {
    match wire::header(p) {
        Some((len, 0)) if len >= 2 && p.len() == 4 + len && matches!(p[4], 3 | 0x16) => p[5..].iter().all(|c| *c >= 0x20 || c.is_ascii_whitespace()),
        _ => false,
    }
}

fn probe_joined(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    if is_query_packet(data) {
        return Probed::Match(Box::new(Mysql::new(dir, false, false)));
    }
    // compressed: 3 bytes of length, a sequence id, 3 bytes of inflated length (0: stored)
    if data.len() > 7 {
        let clen = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
        let ulen = u32::from_le_bytes([data[4], data[5], data[6], 0]) as usize;
        if data.len() == 7 + clen && ulen == 0 && is_query_packet(&data[7..]) {
            return Probed::Match(Box::new(Mysql::new(dir, false, true)));
        }
    }
    let sender = if dir == Dir::A { pcx.ports.0 } else { pcx.ports.1 };
    if !PORTS.contains(&sender) {
        return Probed::NoMatch;
    }
    let (mut at, mut last) = (0, None);
    while let Some((len, seq)) = data.get(at..).and_then(wire::header) {
        if last.is_some_and(|l: u8| seq != l.wrapping_add(1)) || len == 0 && at == 0 {
            return Probed::NoMatch;
        }
        last = Some(seq);
        at += 4 + len;
        if at == data.len() {
            return Probed::Match(Box::new(Mysql::new(dir.flip(), false, false)));
        }
    }
    Probed::NoMatch
}

#[cfg(test)]
mod tests;
