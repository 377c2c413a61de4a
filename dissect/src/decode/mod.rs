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
            let mut frag = None;
            for ext in v6.extensions().clone().into_iter() {
                if let etherparse::Ipv6ExtensionSlice::Fragment(f) = ext {
                    // an atomic fragment (offset 0, no more) is a whole datagram
                    if f.is_fragmenting_payload() {
                        frag = Some(FragInfo {
                            id: f.identification(),
                            offset: f.fragment_offset().value() as usize * 8,
                            more: f.more_fragments(),
                        });
                    }
                }
            }
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
