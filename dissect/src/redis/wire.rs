//! RESP2 and RESP3 values, and inline commands, read from bytes without copying.

/// One RESP value, borrowing the bytes it was read from.
#[derive(Clone, Debug, PartialEq)]
pub enum Resp<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    /// `$-1` (RESP2) and `_` (RESP3) are `Null`.
    Bulk(&'a [u8]),
    Array(Vec<Resp<'a>>),
    Null,
    Bool(bool),
    /// Doubles and big numbers, as written.
    Number(&'a [u8]),
    /// `!`: a bulk error (RESP3).
    BulkError(&'a [u8]),
    /// `=`: verbatim text, its `txt:` format prefix removed.
    Verbatim(&'a [u8]),
    Map(Vec<(Resp<'a>, Resp<'a>)>),
    Set(Vec<Resp<'a>>),
    /// `>`: out-of-band data (pub/sub messages, invalidations).
    Push(Vec<Resp<'a>>),
}

/// Why a value could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// The value goes on past the end of the bytes: this many bytes would do, if known.
    More(Option<usize>),
    /// Not RESP.
    Invalid,
}

/// Nesting deeper than this is refused (hostile input must not blow the stack).
const MAX_DEPTH: usize = 32;
/// Bulk strings longer than this are not RESP's (the server's own limit is 512 MB).
const MAX_BULK: i64 = 512 << 20;

/// Reads the value at the start of `b`; returns it and the bytes it took.
pub fn parse(b: &[u8]) -> Result<(Resp<'_>, usize), Incomplete> {
    value(b, 0, 0)
}

fn line(b: &[u8], from: usize) -> Result<(&[u8], usize), Incomplete> {
    let rest = b.get(from..).unwrap_or(&[]);
    match memchr::memchr(b'\n', rest) {
        Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok((&rest[..i - 1], from + i + 1)),
        Some(_) => Err(Incomplete::Invalid),
        // a header line is short: a long run with no end is not RESP
        None if rest.len() > 64 * 1024 => Err(Incomplete::Invalid),
        None => Err(Incomplete::More(None)),
    }
}

fn int(l: &[u8]) -> Result<i64, Incomplete> {
    let s = std::str::from_utf8(l).map_err(|_| Incomplete::Invalid)?;
    if s.is_empty() || s.len() > 20 {
        return Err(Incomplete::Invalid);
    }
    s.parse().map_err(|_| Incomplete::Invalid)
}

fn value(b: &[u8], at: usize, depth: usize) -> Result<(Resp<'_>, usize), Incomplete> {
    if depth > MAX_DEPTH {
        return Err(Incomplete::Invalid);
    }
    let Some(&t) = b.get(at) else { return Err(Incomplete::More(None)) };
    let (l, next) = line(b, at + 1)?;
    let sized = |next: usize, n: i64| -> Result<(&[u8], usize), Incomplete> {
        if !(0..=MAX_BULK).contains(&n) {
            return Err(Incomplete::Invalid);
        }
        let end = next + n as usize;
        if b.len() < end + 2 {
            return Err(Incomplete::More(Some(end + 2)));
        }
        if &b[end..end + 2] != b"\r\n" {
            return Err(Incomplete::Invalid);
        }
        Ok((&b[next..end], end + 2))
    };
    let many = |next: usize, n: i64| -> Result<(Vec<Resp<'_>>, usize), Incomplete> {
        if n < 0 || n > MAX_BULK {
            return Err(Incomplete::Invalid);
        }
        let mut v = Vec::new();
        let mut at = next;
        for _ in 0..n {
            let (x, end) = value(b, at, depth + 1)?;
            v.push(x);
            at = end;
        }
        Ok((v, at))
    };
    Ok(match t {
        b'+' => (Resp::Simple(l), next),
        b'-' => (Resp::Error(l), next),
        b':' => (Resp::Integer(int(l)?), next),
        b',' | b'(' => (Resp::Number(l), next),
        b'#' => match l {
            b"t" => (Resp::Bool(true), next),
            b"f" => (Resp::Bool(false), next),
            _ => return Err(Incomplete::Invalid),
        },
        b'_' if l.is_empty() => (Resp::Null, next),
        b'$' | b'!' | b'=' => {
            let n = int(l)?;
            if n == -1 && t == b'$' {
                return Ok((Resp::Null, next));
            }
            let (s, end) = sized(next, n)?;
            match t {
                b'$' => (Resp::Bulk(s), end),
                b'!' => (Resp::BulkError(s), end),
                _ => (Resp::Verbatim(s.get(4..).filter(|_| s.get(3) == Some(&b':')).unwrap_or(s)), end),
            }
        }
        b'*' | b'~' | b'>' => {
            let n = int(l)?;
            if n == -1 && t == b'*' {
                return Ok((Resp::Null, next));
            }
            let (v, end) = many(next, n)?;
            match t {
                b'*' => (Resp::Array(v), end),
                b'~' => (Resp::Set(v), end),
                _ => (Resp::Push(v), end),
            }
        }
        // attributes come before the value they describe: read past them
        b'%' | b'|' => {
            let n = int(l)?;
            let (v, end) = many(next, n.checked_mul(2).ok_or(Incomplete::Invalid)?)?;
            let mut it = v.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(x)) = (it.next(), it.next()) {
                pairs.push((k, x));
            }
            if t == b'|' {
                return value(b, end, depth + 1);
            }
            (Resp::Map(pairs), end)
        }
        _ => return Err(Incomplete::Invalid),
    })
}

/// An inline command (`PING\r\n`, `SET k v\r\n`, as telnet sends them): its words, and the
/// bytes it took. Only printable text is taken for one.
pub fn inline(b: &[u8]) -> Result<(Vec<&[u8]>, usize), Incomplete> {
    let (l, next) = match memchr::memchr(b'\n', b) {
        Some(i) => (b[..i].strip_suffix(b"\r").unwrap_or(&b[..i]), i + 1),
        None if b.len() > 4096 => return Err(Incomplete::Invalid),
        None => return Err(Incomplete::More(None)),
    };
    if l.iter().any(|&c| c < 0x20 && c != b'\t' || c == 0x7f) {
        return Err(Incomplete::Invalid);
    }
    let words: Vec<&[u8]> = l.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty()).collect();
    Ok((words, next))
}

/// Whether `w` reads as a command name: letters (and `-`, `_`, `.` as modules use), short.
pub fn is_command_name(w: &[u8]) -> bool {
    (2..=24).contains(&w.len()) && w[0].is_ascii_alphabetic() && w.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'|'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_values() {
        assert_eq!(parse(b"+OK\r\n"), Ok((Resp::Simple(b"OK"), 5)));
        assert_eq!(parse(b"-ERR unknown\r\n"), Ok((Resp::Error(b"ERR unknown"), 14)));
        assert_eq!(parse(b":42\r\n"), Ok((Resp::Integer(42), 5)));
        assert_eq!(parse(b"$3\r\nfoo\r\n"), Ok((Resp::Bulk(b"foo"), 9)));
        assert_eq!(parse(b"$-1\r\n"), Ok((Resp::Null, 5)));
        assert_eq!(parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), Ok((Resp::Array(vec![Resp::Bulk(b"GET"), Resp::Bulk(b"k")]), 20)));
    }

    #[test]
    fn resp3_values() {
        assert_eq!(parse(b"_\r\n"), Ok((Resp::Null, 3)));
        assert_eq!(parse(b"#t\r\n"), Ok((Resp::Bool(true), 4)));
        assert_eq!(parse(b",3.14\r\n"), Ok((Resp::Number(b"3.14"), 7)));
        assert_eq!(parse(b"=7\r\ntxt:abc\r\n"), Ok((Resp::Verbatim(b"abc"), 13)));
        assert_eq!(parse(b"%1\r\n+a\r\n:1\r\n"), Ok((Resp::Map(vec![(Resp::Simple(b"a"), Resp::Integer(1))]), 12)));
        assert_eq!(parse(b">2\r\n+message\r\n+x\r\n").map(|(v, _)| matches!(v, Resp::Push(_))), Ok(true));
        // an attribute is read past
        assert_eq!(parse(b"|1\r\n+ttl\r\n:3\r\n:7\r\n"), Ok((Resp::Integer(7), 18)));
    }

    #[test]
    fn cut_and_garbage() {
        assert_eq!(parse(b"$10\r\nabc"), Err(Incomplete::More(Some(17))));
        assert_eq!(parse(b"*2\r\n$3\r\nGET\r\n"), Err(Incomplete::More(None)));
        assert_eq!(parse(b"+OK"), Err(Incomplete::More(None)));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Incomplete::Invalid));
        assert_eq!(parse(b"$3\r\nfooXX"), Err(Incomplete::Invalid));
        assert_eq!(parse(b"*99999999999999999999\r\n"), Err(Incomplete::Invalid));
        let deep = "*1\r\n".repeat(100);
        assert_eq!(parse(deep.as_bytes()), Err(Incomplete::Invalid));
        assert_eq!(inline(b"PING\r\n"), Ok((vec![&b"PING"[..]], 6)));
        assert_eq!(inline(b"SET a  b\n"), Ok((vec![&b"SET"[..], b"a", b"b"], 9)));
    }
}
