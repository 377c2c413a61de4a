//! Flows: keys, directions, sequence numbers, and TCP reassembly (`tcp`).

pub mod tcp;

use std::net::IpAddr;

/// A direction within a flow: `A` is from the endpoint first seen sending, `B` the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    A = 0,
    B = 1,
}

impl Dir {
    pub fn flip(self) -> Dir {
        match self {
            Dir::A => Dir::B,
            Dir::B => Dir::A,
        }
    }

    pub fn idx(self) -> usize {
        self as usize
    }
}

/// A TCP sequence number: comparisons wrap around 2^32 (RFC 1982 serial arithmetic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self - other` as a signed distance; correct while the two are within 2^31.
    pub fn diff(self, other: SeqNum) -> i64 {
        self.0.wrapping_sub(other.0) as i32 as i64
    }

    pub fn advance(self, n: usize) -> SeqNum {
        SeqNum(self.0.wrapping_add(n as u32))
    }
}

/// A flow's identity regardless of direction: the lower endpoint first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub lo: (IpAddr, u16),
    pub hi: (IpAddr, u16),
    pub proto: u8,
}

impl FlowKey {
    pub fn new(src: (IpAddr, u16), dst: (IpAddr, u16), proto: u8) -> Self {
        if src <= dst {
            FlowKey { lo: src, hi: dst, proto }
        } else {
            FlowKey { lo: dst, hi: src, proto }
        }
    }
}

/// Two words for the whole key, rather than the derived field-by-field feed (the
/// addresses' variants, each byte array, each port): flow lookups run for every packet.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        fn bits(ip: IpAddr) -> u128 {
            match ip {
                IpAddr::V4(a) => u32::from(a) as u128,
                IpAddr::V6(a) => u128::from(a).rotate_left(17),
            }
        }
        h.write_u128(bits(self.lo.0) ^ bits(self.hi.0).rotate_left(64));
        h.write_u64((self.lo.1 as u64) << 32 | (self.hi.1 as u64) << 8 | self.proto as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wraps() {
        assert_eq!(SeqNum(5).diff(SeqNum(u32::MAX - 4)), 10);
        assert_eq!(SeqNum(u32::MAX - 4).diff(SeqNum(5)), -10);
        assert_eq!(SeqNum(u32::MAX).advance(2), SeqNum(1));
    }

    #[test]
    fn key_is_direction_free() {
        let a = ([10, 0, 0, 1].into(), 1000);
        let b = ([10, 0, 0, 2].into(), 80);
        assert_eq!(FlowKey::new(a, b, 6), FlowKey::new(b, a, 6));
    }
}
