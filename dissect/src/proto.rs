//! A protocol is a plug-in: a folder of its own and one line in [`crate::registry`].
//!
//! A TCP protocol gives a probe (is this mine? by content, ports only as a hint) that makes
//! its parser, and the parser follows the one streaming contract of [`crate::stream`]:
//! `feed`, `on_gap`, `on_close`, `finish`. A UDP protocol gives a probe and a datagram
//! parser. The dissector only walks the registry: it never names a protocol, and neither
//! do the worker, the hub or the UIs, which read an entry's `request.method` and
//! `request.target` (`spec/entry.md`).

use crate::flow::Dir;
use crate::limits::Limits;
use crate::stream::{Cx, StreamParser};
use crate::time::Timestamp;

/// A TCP connection's application parser: the streaming contract (`feed`, `on_gap`,
/// `on_close`, see [`StreamParser`]) and the connection's end.
pub trait TcpParser: StreamParser + Send {
    /// The connection is gone: emit what is still held.
    fn finish(&mut self, cx: &mut Cx<'_>);
    /// Asked after every `feed`: the connection speaks something else from here on.
    fn switch(&mut self) -> Option<Switch> {
        None
    }
}

/// A connection that changes protocol mid-way.
pub enum Switch {
    /// The parser made its successor (HTTP/1.1 to h2c, within one family).
    To(Box<dyn TcpParser>),
    /// An HTTP upgrade was accepted (`101 Switching Protocols`): the protocol registered for
    /// its token takes over; with none, the rest of the connection is not read.
    Upgrade(Upgrade),
    /// Unknown from here on: detect again (a CONNECT tunnel, usually TLS).
    Reprobe,
    /// Nothing more can be read (TLS was negotiated in-band, or the framing was lost).
    Opaque,
}

/// What an accepted HTTP upgrade tells the protocol that follows it.
#[derive(Clone, Debug)]
pub struct Upgrade {
    /// The `Upgrade` header's token, lower case: `"websocket"`.
    pub token: String,
    /// The direction the upgrade request travelled.
    pub client: Dir,
    /// The request's target (path and query).
    pub target: String,
    /// The request's headers and the 101 response's (lower-case names).
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub at: Timestamp,
}

/// What a probe may look at besides the bytes.
#[derive(Clone, Copy, Debug)]
pub struct ProbeCx<'a> {
    /// (source, destination) ports of the connection's first packet.
    pub ports: (u16, u16),
    /// The probed direction's data starts at its stream's first byte (its SYN was seen).
    pub from_start: bool,
    pub limits: &'a Limits,
}

impl ProbeCx<'_> {
    /// Whether either end uses one of `ports`.
    pub fn port_in(&self, ports: &[u16]) -> bool {
        ports.contains(&self.ports.0) || ports.contains(&self.ports.1)
    }
}

/// A probe's verdict on the first bytes of one direction.
pub enum Probed {
    /// Mine: here is the connection's parser (fed the same bytes next).
    Match(Box<dyn TcpParser>),
    /// Maybe mine: more bytes of this direction would say.
    NeedMore,
    /// Maybe mine, but only the other direction can say (HTTP/2 frames of unknown roles).
    Wait,
    NoMatch,
}

/// A TCP protocol in the registry.
pub struct TcpProto {
    /// The entry's `protocol` (the family's first, for families such as http/grpc).
    pub name: &'static str,
    /// At most five letters, for narrow columns (`pgsql` for `postgresql`).
    pub short: &'static str,
    /// Tried first, in registry order: probes on strong signs (a magic, a request line).
    pub probe: Option<fn(&ProbeCx<'_>, Dir, &[u8]) -> Probed>,
    /// Tried only when no first probe matched or wanted more: probes on weaker signs
    /// (well-formed length-prefixed frames), where a stronger protocol must win.
    pub late_probe: Option<fn(&ProbeCx<'_>, Dir, &[u8]) -> Probed>,
    /// The HTTP upgrade token this protocol follows, and its parser for the connection.
    pub upgrade: Option<(&'static str, fn(&Upgrade, &Limits) -> Box<dyn TcpParser>)>,
}

/// A UDP flow's parser: one datagram at a time.
pub trait UdpParser: Send {
    fn datagram(&mut self, dir: Dir, data: &[u8], multicast: bool, cx: &mut Cx<'_>);
    /// Time passed with no datagram (answers that will not come).
    fn expire(&mut self, now: Timestamp, cx: &mut Cx<'_>);
    fn finish(&mut self, cx: &mut Cx<'_>);
    /// Every request answered: the flow may go sooner than an idle one.
    fn is_idle(&self) -> bool;
}

/// A UDP protocol in the registry.
pub struct UdpProto {
    pub name: &'static str,
    pub short: &'static str,
    /// Whether a datagram between these ports is this protocol's.
    pub probe: fn(ports: (u16, u16), data: &[u8]) -> bool,
    pub new: fn() -> Box<dyn UdpParser>,
}

/// The first TCP probe that claims `data`, sent in `dir`: first probes in order, then the
/// late ones when none of the first wanted more bytes.
pub fn probe_tcp(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let mut need = false;
    for p in crate::registry::TCP.iter().filter_map(|p| p.probe) {
        match p(pcx, dir, data) {
            Probed::NoMatch => {}
            Probed::NeedMore | Probed::Wait => need = true,
            m @ Probed::Match(_) => return m,
        }
    }
    if need {
        return Probed::NeedMore;
    }
    let mut verdict = Probed::NoMatch;
    for p in crate::registry::TCP.iter().filter_map(|p| p.late_probe) {
        match p(pcx, dir, data) {
            Probed::NoMatch => {}
            m @ Probed::Match(_) => return m,
            Probed::NeedMore => verdict = Probed::NeedMore,
            Probed::Wait if !matches!(verdict, Probed::NeedMore) => verdict = Probed::Wait,
            Probed::Wait => {}
        }
    }
    verdict
}

/// The parser registered for an upgrade's token.
pub fn upgrade(u: &Upgrade, limits: &Limits) -> Option<Box<dyn TcpParser>> {
    crate::registry::TCP.iter().filter_map(|p| p.upgrade).find(|(token, _)| *token == u.token).map(|(_, make)| make(u, limits))
}

/// The UDP protocol of a datagram between `ports`.
pub fn probe_udp(ports: (u16, u16), data: &[u8]) -> Option<&'static UdpProto> {
    crate::registry::UDP.iter().find(|p| (p.probe)(ports, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(dir: Dir, data: &[u8], ports: (u16, u16)) -> &'static str {
        let limits = Limits::default();
        match probe_tcp(&ProbeCx { ports, from_start: true, limits: &limits }, dir, data) {
            Probed::Match(_) => "match",
            Probed::NeedMore => "more",
            Probed::Wait => "wait",
            Probed::NoMatch => "no",
        }
    }

    #[test]
    fn content_not_ports() {
        // HTTP on the SSH port, and a response seen first
        assert_eq!(probe(Dir::A, b"GET / HTTP/1.1\r\n", (50000, 22)), "match");
        assert_eq!(probe(Dir::B, b"HTTP/1.1 200 OK\r\n", (22, 50000)), "match");
        assert_eq!(probe(Dir::A, b"SSH-2.0-OpenSSH_9.2p1\r\n", (50000, 22)), "no");
        assert_eq!(probe(Dir::A, b"GET /x", (1, 2)), "more");
    }

    #[test]
    fn every_protocol_has_a_name_and_a_way_in() {
        for p in crate::registry::TCP {
            assert!(!p.name.is_empty() && p.short.len() <= 5, "{}", p.name);
            assert!(p.probe.is_some() || p.late_probe.is_some() || p.upgrade.is_some(), "{} can never be found", p.name);
        }
        assert!(crate::registry::names().contains(&"dns"));
    }
}
