//! PostgreSQL's v3 wire protocol: the untyped messages of a connection's start, the typed
//! ones after it, and the fields of those kshark reads.

/// The codes of the untyped first messages, after their length.
pub const PROTOCOL_3: u32 = 196_608;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Messages longer than this are not PostgreSQL's (its own limit is 1 GB).
pub const MAX_LEN: u32 = 1 << 30;

/// A typed message's header: its type byte and its length (which counts itself, not the
/// type byte). `None` when fewer than five bytes are here.
pub fn header(b: &[u8]) -> Option<(u8, u32)> {
    let h = b.get(..5)?;
    Some((h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]])))
}

/// The message types a frontend sends after the start.
pub fn is_frontend_type(t: u8) -> bool {
    matches!(t, b'Q' | b'P' | b'B' | b'E' | b'D' | b'S' | b'H' | b'C' | b'X' | b'p' | b'd' | b'c' | b'f' | b'F')
}

/// The message types a backend sends.
pub fn is_backend_type(t: u8) -> bool {
    matches!(
        t,
        b'R' | b'S' | b'K' | b'Z' | b'T' | b'D' | b'C' | b'E' | b'N' | b'I' | b'1' | b'2' | b'3' | b'n' | b's' | b't' | b'G' | b'H' | b'W' | b'd' | b'c' | b'A' | b'V' | b'v'
    )
}

/// Reads NUL-terminated strings and big-endian integers from a message's body.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.at..)?;
        let end = memchr::memchr(0, rest)?;
        self.at += end + 1;
        Some(&rest[..end])
    }

    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    pub fn i16(&mut self) -> Option<i16> {
        let v = self.b.get(self.at..self.at + 2)?;
        self.at += 2;
        Some(i16::from_be_bytes([v[0], v[1]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        let v = self.b.get(self.at..self.at + 4)?;
        self.at += 4;
        Some(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.b.get(self.at..).unwrap_or(&[])
    }
}

/// A startup message's parameters (`user`, `database`, `application_name`, ...).
pub fn startup_params(body: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    while let Some(k) = r.cstr() {
        if k.is_empty() {
            break;
        }
        let Some(v) = r.cstr() else { break };
        out.push((k, v));
    }
    out
}

/// The fields of an ErrorResponse or NoticeResponse: (code letter, value).
pub fn notice_fields(body: &[u8]) -> Vec<(u8, &[u8])> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    while let Some(t) = r.u8() {
        if t == 0 {
            break;
        }
        let Some(v) = r.cstr() else { break };
        out.push((t, v));
    }
    out
}

/// A Bind message: (portal, statement, parameter values, `None` for NULL).
pub fn bind(body: &[u8]) -> Option<(&[u8], &[u8], Vec<Option<&[u8]>>)> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let stmt = r.cstr()?;
    let nfmt = r.i16()?;
    for _ in 0..nfmt.max(0) {
        r.i16()?;
    }
    let n = r.i16()?;
    let mut params = Vec::new();
    for _ in 0..n.max(0) {
        let len = r.i32()?;
        params.push(if len < 0 { None } else { Some(r.bytes(len as usize)?) });
    }
    Some((portal, stmt, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_messages() {
        assert_eq!(header(b"Q\0\0\0\x0dSELECT 1\0"), Some((b'Q', 13)));
        assert_eq!(header(b"Q\0\0"), None);
        assert_eq!(startup_params(b"user\0bob\0database\0shop\0\0"), vec![(&b"user"[..], &b"bob"[..]), (b"database", b"shop")]);
        assert_eq!(notice_fields(b"SERROR\0C42P01\0Mno such table\0\0"), vec![(b'S', &b"ERROR"[..]), (b'C', b"42P01"), (b'M', b"no such table")]);
        // portal "", statement "s1", no formats, two parameters: "42" and NULL
        let b = b"\0s1\0\0\0\0\x02\0\0\0\x0242\xff\xff\xff\xff\0\0";
        assert_eq!(bind(b), Some((&b""[..], &b"s1"[..], vec![Some(&b"42"[..]), None])));
        assert_eq!(bind(b"\0s1\0\0\0\0\x02\0\0\0\x09"), None, "cut short");
    }
}
