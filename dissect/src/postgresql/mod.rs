//! PostgreSQL's v3 protocol: `wire` frames and reads messages, `state` follows a
//! connection. Found by content: a startup message, an SSLRequest, a GSSENCRequest or a
//! CancelRequest from the start; on a connection joined mid-way, a simple query, or (on
//! PostgreSQL's ports) a run of well-formed backend messages.

pub mod state;
pub mod wire;

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
pub use state::Postgres;

pub const PROTO: TcpProto = TcpProto { name: "postgresql", short: "pgsql", probe: Some(probe), late_probe: Some(probe_joined), upgrade: None };

const PORTS: &[u16] = &[5432, 5433, 6432, 15432];

fn probe(_pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    if data.len() < 8 {
        // a length below 64 KiB starts with two zero bytes
        return if data.iter().take(2).all(|b| *b == 0) { Probed::NeedMore } else { Probed::NoMatch };
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let code = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let ok = match code {
        wire::SSL_REQUEST | wire::GSSENC_REQUEST => len == 8,
        wire::CANCEL_REQUEST => len == 16,
        // protocol 3.0 (3.2 from PostgreSQL 18): parameters as NUL-terminated pairs
        c if c >> 16 == 3 && c & 0xffff <= 2 => {
            if !(9..=10_000).contains(&len) {
                false
            } else if data.len() < len {
                return Probed::NeedMore;
            } else {
                data[len - 1] == 0 && wire::startup_params(&data[8..len]).iter().any(|(k, _)| *k == b"user")
            }
        }
        _ => false,
    };
    if ok {
        Probed::Match(Box::new(Postgres::new(dir, true)))
    } else {
        Probed::NoMatch
    }
}

/// Mid-way: client messages that fill the bytes exactly, among them a simple query or a
/// Parse with printable SQL text; or, on PostgreSQL's ports, backend messages that fill
/// the bytes exactly.
fn probe_joined(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let sender = if dir == Dir::A { pcx.ports.0 } else { pcx.ports.1 };
    match chain(data, wire::is_frontend_type) {
        Some(true) => return Probed::Match(Box::new(Postgres::new(dir, false))),
        None if data.len() < 4096 && matches!(data.first(), Some(b'Q' | b'P')) => return Probed::NeedMore,
        _ => {}
    }
    if PORTS.contains(&sender) && chain(data, wire::is_backend_type).is_some() {
        return Probed::Match(Box::new(Postgres::new(dir.flip(), false)));
    }
    Probed::NoMatch
}

/// Whether `data` is a run of whole messages of the given types: `Some(sql)` when it is
/// (`sql`: one is a query or a Parse with printable text), `None` when not (or cut short).
fn chain(data: &[u8], known: fn(u8) -> bool) -> Option<bool> {
    let (mut at, mut sql) = (0, false);
    while at < data.len() {
        let (t, len) = data.get(at..).and_then(wire::header)?;
        if !known(t) || !(4..=1 << 24).contains(&len) {
            return None;
        }
        let end = at + 1 + len as usize;
        let body = data.get(at + 5..end)?;
        let text = |q: &[u8]| q.len() > 1 && q.last() == Some(&0) && q[..q.len() - 1].iter().all(|c| *c >= 0x20 || c.is_ascii_whitespace());
        sql |= match t {
            b'Q' => text(body),
            // a statement name, then the text
            b'P' => memchr::memchr(0, body).is_some_and(|i| body[i + 1..].iter().position(|c| *c == 0).is_some_and(|j| text(&body[i + 1..i + 2 + j]))),
            _ => false,
        };
        at = end;
    }
    Some(sql)
}

#[cfg(test)]
mod tests;
