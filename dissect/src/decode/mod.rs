//! From captured frames to transport segments: the link layer (`link`), IP through
//! `etherparse` (lax, so that frames cut short by a snap length still yield what they hold),
//! IP fragment reassembly (`defrag`), and TCP/UDP headers.

pub mod defrag;
pub mod link;

use etherparse::{LaxIpSlice, TcpSlice, UdpSlice};
use std::net::IpAddr;

/// An IP packet's addresses, protocol, and fragment position.
#[derive(Clone, Copy, Debug)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Set when the payload is one fragment of a larger datagram.
    pub frag: Option<FragInfo>,
    /// Payload bytes the header declares but the capture does not hold (snap length).
    pub missing: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct FragInfo {
    pub id: u32,
    pub offset: usize,
    pub more: bool,
}

/// Why an IP packet or its transport header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpError {
    Malformed,
}

/// Parses an IPv4 or IPv6 packet (with extension headers) into its info and payload.
pub fn parse_ip(b: &[u8]) -> Result<(IpInfo, &[u8]), IpError> {
    let (ip, _ext_err) = LaxIpSlice::from_slice(b).map_err(|_| IpError::Malformed)?;
    let payload = ip.payload();
    let (src, dst, frag, declared) = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let frag = (h.more_fragments() || h.fragments_offset().value() != 0).then(|| FragInfo {
                id: h.identification() as u32,
                offset: h.fragments_offset().value() as usize * 8,
                more: h.more_fragments(),
            });
            (IpAddr::from(h.source_addr()), IpAddr::from(h.destination_addr()), frag, h.total_len() as usize)
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            // the fragment header is found by our own walk of the chain: etherparse 0.21's
            // extension iterator reads past the packet on a lax slice whose headers run
            // past its end (found by the raw_frame fuzz target)
            let frag = v6_fragment(b);
            let declared = if h.payload_length() == 0 { 0 } else { 40 + h.payload_length() as usize };
            (IpAddr::from(h.source_addr()), IpAddr::from(h.destination_addr()), frag, declared)
        }
    };
    let info = IpInfo {
        src,
        dst,
        proto: payload.ip_number.0,
        frag,
        missing: declared.saturating_sub(b.len()),
    };
    Ok((info, payload.payload))
}

/// The fragment header of an IPv6 packet, when its extension chain has one that really
/// fragments (an atomic fragment, offset 0 and no more, is a whole datagram). Every length
/// is checked against the packet.
fn v6_fragment(b: &[u8]) -> Option<FragInfo> {
    let mut next = *b.get(6)?;
    let mut at = 40usize;
    for _ in 0..16 {
        match next {
            44 => {
                let h = b.get(at..at.checked_add(8)?)?;
                let off_flags = u16::from_be_bytes([h[2], h[3]]);
                let (offset, more) = ((off_flags >> 3) as usize * 8, off_flags & 1 != 0);
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                return (offset != 0 || more).then_some(FragInfo { id, offset, more });
            }
            // hop-by-hop, routing, destination options, mobility, HIP, shim6
            0 | 43 | 60 | 135 | 139 | 140 => {
                let len = (*b.get(at + 1)? as usize + 1) * 8;
                next = *b.get(at)?;
                at = at.checked_add(len)?;
            }
            // authentication header: its length is in 4-byte units, minus 2
            51 => {
                let len = (*b.get(at + 1)? as usize + 2) * 4;
                next = *b.get(at)?;
                at = at.checked_add(len)?;
            }
            _ => return None,
        }
    }
    None
}

/// A TCP segment's header fields and captured payload.
#[derive(Clone, Copy, Debug)]
pub struct TcpSeg<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub fn parse_tcp(b: &[u8]) -> Result<TcpSeg<'_>, IpError> {
    let t = TcpSlice::from_slice(b).map_err(|_| IpError::Malformed)?;
    Ok(TcpSeg {
        sport: t.source_port(),
        dport: t.destination_port(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        ack_flag: t.ack(),
        fin: t.fin(),
        rst: t.rst(),
        payload: t.payload(),
    })
}

/// A UDP datagram's ports and payload (lax: a length beyond the capture is cut to it).
pub fn parse_udp(b: &[u8]) -> Result<(u16, u16, &[u8]), IpError> {
    let u = UdpSlice::from_slice_lax(b).map_err(|_| IpError::Malformed)?;
    Ok((u.source_port(), u.destination_port(), u.payload()))
}

/// The inner Ethernet frame of a VXLAN packet (RFC 7348: flags with the I bit, 24-bit VNI).
pub fn vxlan_inner(payload: &[u8]) -> Option<&[u8]> {
    if payload.len() >= 8 + 14 && payload[0] & 0x08 != 0 {
        Some(&payload[8..])
    } else {
        None
    }
}

/// Which shard a frame belongs to when connections are spread over threads: the same
/// value for both directions of a TCP connection (addresses and ports), and for every
/// fragment of a UDP datagram (addresses only, as later fragments carry no ports).
/// Frames that are not IP get 0.
pub fn shard_hash(linktype: u32, frame: &[u8]) -> u64 {
    let Ok(link::Net::Ip(b)) = link::strip(linktype, frame, 4) else { return 0 };
    let (a, z, ports): (&[u8], &[u8], Option<&[u8]>) = match b.first().map(|v| v >> 4) {
        Some(4) if b.len() >= 20 => {
            let ihl = usize::from(b[0] & 0x0f) * 4;
            let fragment = u16::from_be_bytes([b[6], b[7]]) & 0x3fff != 0;
            let tcp = b[9] == PROTO_TCP && !fragment;
            (&b[12..16], &b[16..20], if tcp { b.get(ihl..ihl + 4) } else { None })
        }
        Some(6) if b.len() >= 40 => (&b[8..24], &b[24..40], if b[6] == PROTO_TCP { b.get(40..44) } else { None }),
        _ => return 0,
    };
    let (pa, pz) = ports.map_or((0, 0), |p| (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])));
    let (lo, hi) = if (a, pa) <= (z, pz) { ((a, pa), (z, pz)) } else { ((z, pz), (a, pa)) };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in lo.0.iter().chain(hi.0).chain(&lo.1.to_be_bytes()).chain(&hi.1.to_be_bytes()) {
        h = (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the raw_frame fuzz target: IPv6 extension headers whose lengths run past the
    /// packet. etherparse 0.21's lax slice kept them and its iterator then read out of bounds.
    #[test]
    fn ipv6_extension_headers_past_the_end() {
        let b = [0x6a, 0x00, 0x00, 0x6a, 0x00, 0x00, 0x00, 0x00, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x1b, 0x6a, 0x6a, 0x6a, 0x6a, 0x01, 0x00, 0x00, 0x00, 0x6a, 0x6a, 0x0a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x01, 0x00, 0x00, 0x00, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0xff];
        let _ = parse_ip(&b);
    }

    #[test]
    fn ipv6_fragment_header_found_and_atomic_ignored() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        p.extend_from_slice(&[0; 32]);
        // fragment header: next UDP, offset 2 (16 bytes), more fragments, id 7
        p.extend_from_slice(&[17, 0, 0, 0x11, 0, 0, 0, 7]);
        p.extend_from_slice(&[0; 8]);
        let (info, _) = parse_ip(&p).unwrap();
        let f = info.frag.expect("fragmented");
        assert_eq!((f.id, f.offset, f.more), (7, 16, true));
        p[42] = 0; // offset 0, no more: atomic
        p[43] = 0;
        assert!(parse_ip(&p).unwrap().0.frag.is_none());
    }
}
