//! MQTT 3.1, 3.1.1 and 5.0: `wire` reads control packets, `state` pairs them with their
//! acknowledgements. Found by content: a CONNECT naming the protocol (`MQTT`, `MQIsdp`)
//! from the start; on a connection joined mid-way, and on MQTT's ports only, a run of
//! well-formed packets that fills the bytes exactly.

pub mod state;
pub mod wire;

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
pub use state::Mqtt;

pub const PROTO: TcpProto = TcpProto { name: "mqtt", short: "mqtt", probe: Some(probe), late_probe: Some(probe_joined), upgrade: None };

const PORTS: &[u16] = &[1883, 8883, 1884];

fn probe(_pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    if data.first() != Some(&0x10) {
        return Probed::NoMatch;
    }
    let Ok((_, n)) = wire::varint(&data[1..]) else { return if data.len() < 5 { Probed::NeedMore } else { Probed::NoMatch } };
    let rest = &data[1 + n..];
    let names: [&[u8]; 2] = [b"\x00\x04MQTT", b"\x00\x06MQIsdp"];
    for name in names {
        let k = rest.len().min(name.len());
        if rest[..k] == name[..k] {
            return if k == name.len() { Probed::Match(Box::new(Mqtt::new(dir))) } else { Probed::NeedMore };
        }
    }
    Probed::NoMatch
}

fn probe_joined(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let receiver = if dir == Dir::A { pcx.ports.1 } else { pcx.ports.0 };
    let sender = if dir == Dir::A { pcx.ports.0 } else { pcx.ports.1 };
    if !PORTS.contains(&receiver) && !PORTS.contains(&sender) {
        return Probed::NoMatch;
    }
    let mut at = 0;
    while at < data.len() {
        let Ok(f) = wire::fixed(&data[at..]) else { return Probed::NoMatch };
        at += f.size + f.len;
    }
    if at != data.len() {
        return Probed::NoMatch;
    }
    Probed::Match(Box::new(Mqtt::new(if PORTS.contains(&receiver) { dir } else { dir.flip() })))
}

#[cfg(test)]
mod tests;
