//! WebSocket frame headers (RFC 6455).

/// A frame's header: what comes before its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1: with permessage-deflate, the message is compressed (first frame only).
    pub rsv1: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    /// The header's own length.
    pub size: usize,
}

pub mod op {
    pub const CONTINUATION: u8 = 0;
    pub const TEXT: u8 = 1;
    pub const BINARY: u8 = 2;
    pub const CLOSE: u8 = 8;
    pub const PING: u8 = 9;
    pub const PONG: u8 = 10;
}

/// The opcode's name, for the entry's method.
pub fn name(opcode: u8) -> &'static str {
    match opcode {
        op::TEXT => "text",
        op::BINARY => "binary",
        op::CLOSE => "close",
        op::PING => "ping",
        op::PONG => "pong",
        _ => "continuation",
    }
}

/// Why a header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// Cut short: this many bytes would hold it.
    More(usize),
    /// Not a valid frame (a reserved opcode, a control frame fragmented or over 125 bytes,
    /// a length with its top bit set).
    Invalid,
}

pub fn header(b: &[u8]) -> Result<Header, Bad> {
    if b.len() < 2 {
        return Err(Bad::More(2));
    }
    let (fin, rsv1, opcode) = (b[0] & 0x80 != 0, b[0] & 0x40 != 0, b[0] & 0x0f);
    let masked = b[1] & 0x80 != 0;
    let (len, at) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2).ok_or(Bad::More(4))?, *b.get(3).ok_or(Bad::More(4))?]) as u64, 4),
        127 => {
            let v = b.get(2..10).ok_or(Bad::More(10))?;
            (u64::from_be_bytes(v.try_into().expect("8 bytes")), 10)
        }
        n => (n as u64, 2),
    };
    if !matches!(opcode, 0..=2 | 8..=10) || len >> 63 != 0 || opcode >= 8 && (!fin || len > 125) {
        return Err(Bad::Invalid);
    }
    let size = at + if masked { 4 } else { 0 };
    if b.len() < size {
        return Err(Bad::More(size));
    }
    let mask = masked.then(|| [b[at], b[at + 1], b[at + 2], b[at + 3]]);
    Ok(Header { fin, rsv1, opcode, mask, len, size })
}

/// Unmasks `data` in place; `offset` is where it starts in the frame's payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[((offset + i as u64) % 4) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        // a masked text frame "Hello" from RFC 6455 section 5.7
        let f = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = header(&f).unwrap();
        assert_eq!((h.fin, h.opcode, h.len, h.size), (true, 1, 5, 6));
        let mut p = f[6..].to_vec();
        unmask(&mut p, h.mask.unwrap(), 0);
        assert_eq!(p, b"Hello");
        assert_eq!(header(&[0x82, 0x7e, 0x01]), Err(Bad::More(4)));
        assert_eq!(header(&[0x82, 0x7e, 0x01, 0x00]).unwrap().len, 256);
        assert_eq!(header(&[0x83, 0x00]), Err(Bad::Invalid), "reserved opcode");
        assert_eq!(header(&[0x09, 0x00]), Err(Bad::Invalid), "a fragmented ping");
    }
}
