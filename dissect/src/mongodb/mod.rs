//! MongoDB's wire protocol: `wire` reads messages and BSON, `state` pairs requests with
//! replies. Found by content on any port (a late probe: a 16-byte header says little
//! alone): a plausible header whose message reads whole as OP_MSG, OP_QUERY, OP_REPLY or
//! OP_COMPRESSED.

pub mod state;
pub mod wire;

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
pub use state::Mongo;

pub const PROTO: TcpProto = TcpProto { name: "mongodb", short: "mongo", probe: None, late_probe: Some(probe), upgrade: None };

fn probe(_pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let Some(h) = wire::header(data) else { return if data.len() < 16 { Probed::NeedMore } else { Probed::NoMatch } };
    if !wire::plausible(&h) || !matches!(h.op, wire::OP_MSG | wire::OP_QUERY | wire::OP_REPLY | wire::OP_COMPRESSED) {
        return Probed::NoMatch;
    }
    let len = h.len as usize;
    let Some(body) = data.get(16..len) else { return if len < 1 << 16 { Probed::NeedMore } else { Probed::NoMatch } };
    let caps = wire::Caps::default();
    let reads = match h.op {
        wire::OP_MSG => wire::op_msg(body, caps).is_some(),
        wire::OP_COMPRESSED => wire::decompress(body, 1 << 24).is_ok(),
        wire::OP_QUERY => body.get(4..).and_then(|b| memchr::memchr(0, b)).and_then(|e| body.get(4 + e + 9..)).and_then(|b| wire::document(b, caps)).is_some(),
        _ => body.get(20..).is_some_and(|b| b.is_empty() || wire::document(b, caps).is_some()),
    };
    if !reads {
        return Probed::NoMatch;
    }
    let client = if h.response_to == 0 && h.op != wire::OP_REPLY { dir } else { dir.flip() };
    Probed::Match(Box::new(Mongo::new(client)))
}

#[cfg(test)]
mod tests;
