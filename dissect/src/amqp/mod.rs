//! AMQP 0-9-1 (RabbitMQ): `wire` reads frames and method arguments, `state` pairs methods.
//! Found by content: the protocol header `AMQP\0\0\x09\x01` from the start; on a connection
//! joined mid-way, frames that fill the bytes exactly, each ending in 0xCE, with a method
//! of a known class among them.

pub mod state;
pub mod wire;

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
pub use state::Amqp;

pub const PROTO: TcpProto = TcpProto { name: "amqp", short: "amqp", probe: Some(probe), late_probe: Some(probe_joined), upgrade: None };

const PORTS: &[u16] = &[5672, 5671];

fn probe(_pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let n = data.len().min(8);
    if data[..n] != wire::PROTOCOL_HEADER[..n] {
        return Probed::NoMatch;
    }
    if n < 8 {
        return Probed::NeedMore;
    }
    Probed::Match(Box::new(Amqp::new(dir, true)))
}

fn probe_joined(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let (mut at, mut method) = (0, false);
    while at < data.len() {
        let Some((t, _, len)) = data.get(at..).and_then(wire::header) else { return Probed::NoMatch };
        let end = at + 8 + len as usize;
        if !matches!(t, 1 | 2 | 3 | 8) || data.get(end - 1) != Some(&wire::FRAME_END) {
            return Probed::NoMatch;
        }
        method |= t == 1 && wire::method(&data[at + 7..end - 1]).is_some();
        at = end;
    }
    if !method {
        return Probed::NoMatch;
    }
    // the client is the side talking to AMQP's port, when one is
    let receiver = if dir == Dir::A { pcx.ports.1 } else { pcx.ports.0 };
    let sender = if dir == Dir::A { pcx.ports.0 } else { pcx.ports.1 };
    let client = if PORTS.contains(&sender) && !PORTS.contains(&receiver) { dir.flip() } else { dir };
    Probed::Match(Box::new(Amqp::new(client, false)))
}

#[cfg(test)]
mod tests;
