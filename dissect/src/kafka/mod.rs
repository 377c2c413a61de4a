//! Kafka: `wire` reads headers, `body` the topics and error codes, `state` pairs requests
//! with responses by correlation id. Found by content on any port (a late probe): a size,
//! then a request header with a known API, a version Kafka has, and a printable client id.

pub mod body;
pub mod state;
pub mod wire;

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
pub use state::Kafka;

pub const PROTO: TcpProto = TcpProto { name: "kafka", short: "kafka", probe: None, late_probe: Some(probe), upgrade: None };

const PORTS: &[u16] = &[9092, 9093, 9094];

fn probe(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let Some(s) = data.get(..4).map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]])) else { return Probed::NeedMore };
    if !(10..=100 << 20).contains(&s) {
        return Probed::NoMatch;
    }
    let whole = 4 + s as usize;
    let Some(h) = wire::request_header(&data[4..data.len().min(whole)]) else {
        return if data.len() < 64 && data.len() < whole { Probed::NeedMore } else { Probed::NoMatch };
    };
    let receiver = if dir == Dir::A { pcx.ports.1 } else { pcx.ports.0 };
    if data.len() >= whole && h.body <= s as usize || PORTS.contains(&receiver) {
        return Probed::Match(Box::new(Kafka::new(dir)));
    }
    if whole < 1 << 16 {
        Probed::NeedMore
    } else {
        Probed::NoMatch
    }
}

#[cfg(test)]
mod tests;
