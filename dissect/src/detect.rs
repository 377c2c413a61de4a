//! Which protocol a TCP connection speaks, by content first; ports are only a hint.

use crate::dns::state::probe_tcp;
use crate::flow::Dir;
use crate::http1;
use crate::http2;
use crate::Probe;

/// What the first bytes of a direction say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// HTTP/1.x; the direction requests travel in.
    Http1 { client: Dir },
    /// HTTP/2 with prior knowledge: the client preface.
    Http2Preface { client: Dir },
    /// HTTP/2 frames on a connection joined mid-way.
    Http2Joined { client: Dir },
    /// HTTP/2 frames whose roles are not known yet: wait for the other direction.
    Http2Undecided,
    DnsTcp,
}

/// Ports where DNS is expected: DNS, mDNS, LLMNR.
pub fn dns_port(p: u16) -> bool {
    matches!(p, 53 | 5353 | 5355)
}

/// Probes the start of `data`, sent in `dir`.
pub fn probe_tcp_stream(dir: Dir, data: &[u8], ports: (u16, u16)) -> Result<Detected, Probe> {
    let mut need = false;
    match crate::http2::frame::probe_preface(data) {
        Probe::Match => return Ok(Detected::Http2Preface { client: dir }),
        Probe::NeedMore => need = true,
        Probe::NoMatch => {}
    }
    match http1::probe_request(data) {
        Probe::Match => return Ok(Detected::Http1 { client: dir }),
        Probe::NeedMore => need = true,
        Probe::NoMatch => {}
    }
    match http1::probe_response(data) {
        Probe::Match => return Ok(Detected::Http1 { client: dir.flip() }),
        Probe::NeedMore => need = true,
        Probe::NoMatch => {}
    }
    match probe_tcp(data, dns_port(ports.0) || dns_port(ports.1)) {
        Probe::Match => return Ok(Detected::DnsTcp),
        Probe::NeedMore => need = true,
        Probe::NoMatch => {}
    }
    if !need {
        match http2::probe_frames(dir, data) {
            Ok(http2::Found::Client(client)) => return Ok(Detected::Http2Joined { client }),
            Ok(http2::Found::Undecided) => return Ok(Detected::Http2Undecided),
            Err(Probe::NeedMore) => need = true,
            Err(_) => {}
        }
    }
    Err(if need { Probe::NeedMore } else { Probe::NoMatch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_not_ports() {
        // HTTP on the SSH port, and a response seen first
        assert_eq!(probe_tcp_stream(Dir::A, b"GET / HTTP/1.1\r\n", (50000, 22)), Ok(Detected::Http1 { client: Dir::A }));
        assert_eq!(probe_tcp_stream(Dir::B, b"HTTP/1.1 200 OK\r\n", (22, 50000)), Ok(Detected::Http1 { client: Dir::A }));
        assert_eq!(probe_tcp_stream(Dir::A, b"SSH-2.0-OpenSSH_9.2p1\r\n", (50000, 22)), Err(Probe::NoMatch));
        assert_eq!(probe_tcp_stream(Dir::A, b"GET /x", (1, 2)), Err(Probe::NeedMore));
    }
}
