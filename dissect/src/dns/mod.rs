//! DNS over UDP and TCP (and mDNS): `wire` reads messages, `state` pairs them.

pub mod state;
pub mod wire;

pub use state::{DnsPairing, DnsTcp};

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto, UdpParser, UdpProto};
use crate::stream::Cx;
use crate::time::Timestamp;

/// Ports where DNS is expected: DNS, mDNS, LLMNR.
pub fn dns_port(p: u16) -> bool {
    matches!(p, 53 | 5353 | 5355)
}

/// DNS over TCP in the registry: a length-prefixed message that reads as DNS.
pub const TCP_PROTO: TcpProto = TcpProto { name: "dns", short: "dns", probe: Some(probe_stream), late_probe: None, upgrade: None };

/// DNS over UDP (and mDNS, LLMNR) in the registry.
pub const UDP_PROTO: UdpProto = UdpProto { name: "dns", short: "dns", probe: probe_datagram, new: || Box::<DnsPairing>::default() };

fn probe_stream(pcx: &ProbeCx<'_>, _dir: Dir, data: &[u8]) -> Probed {
    match state::probe_tcp(data, dns_port(pcx.ports.0) || dns_port(pcx.ports.1)) {
        crate::Probe::Match => Probed::Match(Box::<DnsTcp>::default()),
        crate::Probe::NeedMore => Probed::NeedMore,
        crate::Probe::NoMatch => Probed::NoMatch,
    }
}

fn probe_datagram(ports: (u16, u16), data: &[u8]) -> bool {
    wire::looks_like_dns(data, dns_port(ports.0) || dns_port(ports.1))
}

impl UdpParser for DnsPairing {
    fn datagram(&mut self, dir: Dir, data: &[u8], multicast: bool, cx: &mut Cx<'_>) {
        match wire::parse(data) {
            Some(m) => self.message(dir, m, data.len() as u64, cx.ts, multicast, cx),
            None => cx.stats.dns_malformed += 1,
        }
    }
    fn expire(&mut self, now: Timestamp, cx: &mut Cx<'_>) {
        DnsPairing::expire(self, now, cx)
    }
    fn finish(&mut self, cx: &mut Cx<'_>) {
        DnsPairing::finish(self, cx)
    }
    fn is_idle(&self) -> bool {
        DnsPairing::is_idle(self)
    }
}
