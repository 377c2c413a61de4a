//! WebSocket (RFC 6455, with RFC 7692's permessage-deflate): `wire` reads frame headers,
//! `state` joins messages. Found after an HTTP/1.1 upgrade: the `101` to
//! `Upgrade: websocket` hands the connection over; each message is an entry whose target
//! is the upgrade's path.

pub mod state;
pub mod wire;

use crate::limits::Limits;
use crate::proto::{TcpParser, TcpProto, Upgrade};
pub use state::WebSocket;

pub const PROTO: TcpProto = TcpProto { name: "websocket", short: "ws", probe: None, late_probe: None, upgrade: Some(("websocket", upgraded)) };

fn upgraded(u: &Upgrade, _limits: &Limits) -> Box<dyn TcpParser> {
    let path = u.target.split('?').next().unwrap_or(&u.target).to_string();
    Box::new(WebSocket::new(u.client, path, state::deflate_of(&u.response_headers, u.client)))
}

#[cfg(test)]
mod tests;
