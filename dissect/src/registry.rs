//! The protocols kshark reads: one line each. The order of [`TCP`] is the order the first
//! probes run in (a protocol with a stronger sign before one with a weaker); late probes
//! run after all of them. See [`crate::proto`].

use crate::proto::{TcpProto, UdpProto};

pub static TCP: &[TcpProto] = &[crate::http2::PROTO, crate::http1::PROTO, crate::redis::PROTO, crate::postgresql::PROTO, crate::mysql::PROTO, crate::amqp::PROTO, crate::mqtt::PROTO, crate::dns::TCP_PROTO, crate::mongodb::PROTO, crate::kafka::PROTO, crate::websocket::PROTO];

pub static UDP: &[UdpProto] = &[crate::dns::UDP_PROTO];

/// Every protocol name an entry may carry, for the filter's words and the UIs.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = vec!["http", "grpc"];
    for n in TCP.iter().map(|p| p.name).chain(UDP.iter().map(|p| p.name)) {
        if !v.contains(&n) {
            v.push(n);
        }
    }
    v
}

/// A protocol's short name (at most five letters) for narrow columns; the name itself when
/// it is not registered (or is already short).
pub fn short(name: &str) -> &str {
    TCP.iter().map(|p| (p.name, p.short)).chain(UDP.iter().map(|p| (p.name, p.short))).find(|(n, _)| *n == name).map_or(name, |(_, s)| s)
}
