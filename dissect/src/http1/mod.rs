//! HTTP/1.0, 1.1 and 0.9: `wire` parses messages, `state` follows a connection and pairs
//! responses with requests.

pub mod state;
pub mod wire;

pub use state::Http1;
pub use wire::{probe_request, probe_response};

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
use crate::Probe;

/// HTTP/1 in the registry: a request line, or a response's status line (a connection
/// joined mid-way), starts it; the roles follow from which.
pub const PROTO: TcpProto = TcpProto { name: "http", short: "http", probe: Some(probe), late_probe: None, upgrade: None };

fn probe(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let table = pcx.limits.max_hpack_table;
    match (probe_request(data), probe_response(data)) {
        (Probe::Match, _) => Probed::Match(Box::new(Http1::new(dir, table))),
        (_, Probe::Match) => Probed::Match(Box::new(Http1::new(dir.flip(), table))),
        (Probe::NeedMore, _) | (_, Probe::NeedMore) => Probed::NeedMore,
        _ => Probed::NoMatch,
    }
}
