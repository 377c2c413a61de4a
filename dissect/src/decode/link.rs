//! Link layers and encapsulations down to the IP header: Ethernet with any depth of
//! 802.1Q/802.1ad tags, MPLS, PPPoE, Linux cooked SLL and SLL2, BSD NULL/loopback,
//! raw IP, and NFLOG. Pure slicing: no copies, every length checked before use.

/// Link-layer header types (the LINKTYPE_ values written in pcap and pcapng files).
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_12: u32 = 12; // DLT_RAW on OpenBSD-derived writers
    pub const RAW_14: u32 = 14; // DLT_RAW on BSD/OS
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const NFLOG: u32 = 239;
    pub const LINUX_SLL2: u32 = 276;

    /// Whether the dissector can decode frames of this link type.
    pub fn is_supported(lt: u32) -> bool {
        matches!(lt, NULL | ETHERNET | RAW_12 | RAW_14 | RAW | LOOP | LINUX_SLL | IPV4 | IPV6 | NFLOG | LINUX_SLL2)
    }
}

mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86DD;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88A8;
    pub const QINQ_OLD: u16 = 0x9100;
    pub const QINQ_OLD2: u16 = 0x9200;
    pub const MPLS: u16 = 0x8847;
    pub const MPLS_MC: u16 = 0x8848;
    pub const PPPOE_SESSION: u16 = 0x8864;
}

/// What lies under the link layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Net<'a> {
    /// An IPv4 or IPv6 packet (the version nibble says which).
    Ip(&'a [u8]),
    /// Something else (ARP, LLDP, STP, ...): not ours to dissect.
    Other,
}

/// Why a frame could not be taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    Truncated,
    UnsupportedLinkType,
    TooDeep,
}

fn be16(b: &[u8], at: usize) -> Result<u16, LinkError> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]])).ok_or(LinkError::Truncated)
}

/// Strips the link layer of a captured frame.
pub fn strip(linktype: u32, frame: &[u8], max_depth: usize) -> Result<Net<'_>, LinkError> {
    match linktype {
        linktype::ETHERNET => ethernet(frame, max_depth),
        linktype::RAW | linktype::RAW_12 | linktype::RAW_14 | linktype::IPV4 | linktype::IPV6 => ip_by_version(frame),
        linktype::NULL | linktype::LOOP => {
            let h = frame.get(..4).ok_or(LinkError::Truncated)?;
            // NULL stores the address family in the writer's byte order; LOOP in network
            // order. Either way the family is a small number, so read whichever end is set.
            let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            let family = if le < 256 { le } else { be };
            match family {
                2 => Ok(Net::Ip(&frame[4..])),
                // AF_INET6 differs by OS: 10 Linux, 24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS
                10 | 24 | 28 | 30 => Ok(Net::Ip(&frame[4..])),
                _ => Ok(Net::Other),
            }
        }
        linktype::LINUX_SLL => {
            let proto = be16(frame, 14)?;
            by_ethertype(proto, &frame[16..], max_depth)
        }
        linktype::LINUX_SLL2 => {
            let proto = be16(frame, 0)?;
            if frame.len() < 20 {
                return Err(LinkError::Truncated);
            }
            by_ethertype(proto, &frame[20..], max_depth)
        }
        linktype::NFLOG => nflog(frame),
        _ => Err(LinkError::UnsupportedLinkType),
    }
}

/// An Ethernet II frame, possibly tagged.
pub fn ethernet(frame: &[u8], max_depth: usize) -> Result<Net<'_>, LinkError> {
    let et = be16(frame, 12)?;
    by_ethertype(et, &frame[14..], max_depth)
}

fn ip_by_version(b: &[u8]) -> Result<Net<'_>, LinkError> {
    match b.first().map(|v| v >> 4) {
        Some(4) | Some(6) => Ok(Net::Ip(b)),
        Some(_) => Ok(Net::Other),
        None => Err(LinkError::Truncated),
    }
}

fn by_ethertype(mut et: u16, mut rest: &[u8], max_depth: usize) -> Result<Net<'_>, LinkError> {
    for _ in 0..=max_depth {
        match et {
            ethertype::IPV4 | ethertype::IPV6 => return Ok(Net::Ip(rest)),
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD | ethertype::QINQ_OLD2 => {
                et = be16(rest, 2)?;
                rest = &rest[4..];
            }
            ethertype::MPLS | ethertype::MPLS_MC => return mpls(rest, max_depth),
            ethertype::PPPOE_SESSION => {
                // 6-byte PPPoE header, then the 2-byte PPP protocol
                let ppp = be16(rest, 6)?;
                let inner = &rest[8..];
                return match ppp {
                    0x0021 | 0x0057 => ip_by_version(inner),
                    _ => Ok(Net::Other),
                };
            }
            _ => return Ok(Net::Other),
        }
    }
    Err(LinkError::TooDeep)
}

fn mpls(mut rest: &[u8], max_depth: usize) -> Result<Net<'_>, LinkError> {
    for _ in 0..=max_depth {
        let label = rest.get(..4).ok_or(LinkError::Truncated)?;
        rest = &rest[4..];
        if label[2] & 0x01 != 0 {
            // bottom of stack: the payload is IP, or Ethernet over MPLS (pseudowire) with an
            // optional all-zero control word
            return match rest.first().map(|v| v >> 4) {
                Some(4) | Some(6) => Ok(Net::Ip(rest)),
                Some(0) if rest.len() >= 4 + 14 => ethernet(&rest[4..], max_depth),
                Some(_) => ethernet(rest, max_depth),
                None => Err(LinkError::Truncated),
            };
        }
    }
    Err(LinkError::TooDeep)
}

/// NFLOG: a 4-byte header, then TLVs (length and type in host byte order, which is
/// little-endian on every writer seen) padded to 4 bytes; type 9 carries the packet.
fn nflog(frame: &[u8]) -> Result<Net<'_>, LinkError> {
    if frame.len() < 4 {
        return Err(LinkError::Truncated);
    }
    let mut at = 4;
    while at + 4 <= frame.len() {
        let len = u16::from_le_bytes([frame[at], frame[at + 1]]) as usize;
        let typ = u16::from_le_bytes([frame[at + 2], frame[at + 3]]);
        if len < 4 {
            return Err(LinkError::Truncated);
        }
        let end = at.checked_add(len).ok_or(LinkError::Truncated)?;
        if typ == 9 {
            let payload = frame.get(at + 4..end.min(frame.len())).ok_or(LinkError::Truncated)?;
            return ip_by_version(payload);
        }
        at = end.checked_add(3).ok_or(LinkError::Truncated)? & !3;
    }
    Ok(Net::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(et: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(rest);
        f
    }

    const IP4: [u8; 2] = [0x45, 0];

    #[test]
    fn vlan_any_depth() {
        let mut inner = IP4.to_vec();
        for _ in 0..3 {
            let mut t = vec![0, 1];
            t.extend_from_slice(&(if inner[0] == 0x45 { 0x0800u16 } else { 0x8100 }).to_be_bytes());
            t.extend_from_slice(&inner);
            inner = t;
        }
        let f = eth(0x88A8, &inner);
        assert_eq!(strip(linktype::ETHERNET, &f, 16), Ok(Net::Ip(&IP4[..])));
    }

    #[test]
    fn mpls_stack_to_ip() {
        let mut rest = vec![0, 0, 0x10, 64, 0, 0, 0x21, 64]; // two labels, second bottom-of-stack
        rest.extend_from_slice(&IP4);
        assert_eq!(strip(linktype::ETHERNET, &eth(0x8847, &rest), 16), Ok(Net::Ip(&IP4[..])));
    }

    #[test]
    fn null_both_byte_orders() {
        let mut le = 2u32.to_le_bytes().to_vec();
        le.extend_from_slice(&IP4);
        let mut be = 30u32.to_be_bytes().to_vec();
        be.extend_from_slice(&IP4);
        assert_eq!(strip(linktype::NULL, &le, 16), Ok(Net::Ip(&IP4[..])));
        assert_eq!(strip(linktype::LOOP, &be, 16), Ok(Net::Ip(&IP4[..])));
    }

    #[test]
    fn truncated_and_unknown_are_errors_not_panics() {
        for lt in [0, 1, 101, 113, 239, 276] {
            for n in 0..24 {
                let _ = strip(lt, &vec![0x81u8; n], 16);
            }
        }
        assert_eq!(strip(9999, &[0; 40], 16), Err(LinkError::UnsupportedLinkType));
        assert_eq!(strip(linktype::ETHERNET, &[0; 13], 16), Err(LinkError::Truncated));
        // a VLAN tag pointing at itself forever
        let f = eth(0x8100, &[0x81, 0x00, 0x81, 0x00].repeat(40));
        assert_eq!(strip(linktype::ETHERNET, &f, 16), Err(LinkError::TooDeep));
    }

    #[test]
    fn nflog_payload_tlv() {
        let mut f = vec![2, 0, 0, 0];
        f.extend_from_slice(&[8, 0, 1, 0, 0, 0, 0, 0]); // a TLV of type 1, 4 bytes of value
        f.extend_from_slice(&[6, 0, 9, 0]); // the payload TLV, 2 bytes
        f.extend_from_slice(&IP4);
        assert_eq!(strip(linktype::NFLOG, &f, 16), Ok(Net::Ip(&IP4[..])));
    }
}
