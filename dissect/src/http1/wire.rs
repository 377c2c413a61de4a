//! HTTP/1.x messages on the wire: start lines, header blocks (through `httparse`, with a
//! lenient fallback for what real servers send and httparse refuses), and chunk sizes.
//! Pure functions over bytes; nothing here keeps state.

use crate::entry::{Headers, HttpVersion};
use crate::Probe;

/// Longest start line looked at before deciding the bytes are not HTTP.
const MAX_START_LINE: usize = 16 * 1024;
const MAX_METHOD: usize = 32;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The first line of `b` without its line ending, and the offset just past it.
fn first_line(b: &[u8]) -> Option<(&[u8], usize)> {
    let nl = memchr::memchr(b'\n', &b[..b.len().min(MAX_START_LINE)])?;
    let line = &b[..nl];
    Some((line.strip_suffix(b"\r").unwrap_or(line), nl + 1))
}

/// Does `b` start with an HTTP/1.x (or 0.9) request line?
pub fn probe_request(b: &[u8]) -> Probe {
    let m = b.iter().take(MAX_METHOD + 1).take_while(|&&c| is_tchar(c)).count();
    if m == 0 || m > MAX_METHOD {
        return Probe::NoMatch;
    }
    if m == b.len() {
        return Probe::NeedMore;
    }
    if b[m] != b' ' {
        return Probe::NoMatch;
    }
    match first_line(b) {
        None if b.len() >= MAX_START_LINE => Probe::NoMatch,
        None => {
            // the target so far must be printable
            // hostile paths carry control bytes too: only NUL rules a request line out
            if !b[m + 1..].contains(&0) {
                Probe::NeedMore
            } else {
                Probe::NoMatch
            }
        }
        Some((line, _)) => match parse_request_line(line) {
            Some(_) => Probe::Match,
            None => Probe::NoMatch,
        },
    }
}

/// Does `b` start with an HTTP/1.x status line?
pub fn probe_response(b: &[u8]) -> Probe {
    const P: &[u8] = b"HTTP/";
    let n = b.len().min(P.len());
    if b[..n] != P[..n] {
        return Probe::NoMatch;
    }
    match first_line(b) {
        None if b.len() >= MAX_START_LINE => Probe::NoMatch,
        None if b.len() < 12 => Probe::NeedMore,
        None => match parse_status_line(&b[..12]) {
            Some(_) => Probe::NeedMore,
            None => Probe::NoMatch,
        },
        Some((line, _)) => match parse_status_line(line) {
            Some(_) => Probe::Match,
            None => Probe::NoMatch,
        },
    }
}

fn version(v: &[u8]) -> Option<HttpVersion> {
    let rest = v.strip_prefix(b"HTTP/")?;
    Some(match rest {
        b"1.0" => HttpVersion::V10,
        b"0.9" => HttpVersion::V09,
        // the HTTP/2 connection preface ("PRI * HTTP/2.0") is not HTTP/1
        b"2.0" | b"2" | b"3" => return None,
        // servers answer "HTTP/1." and other oddities as 1.1, and so do we
        _ if rest.len() <= 8 && rest.iter().all(|c| c.is_ascii_graphic()) => HttpVersion::V11,
        _ => return None,
    })
}

pub struct RequestLine<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: HttpVersion,
}

/// `METHOD SP target SP HTTP/x.y`, or `METHOD SP target` (HTTP/0.9). Lenient about extra
/// spaces, as servers are.
pub fn parse_request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let method = &line[..sp];
    if method.is_empty() || method.len() > MAX_METHOD || !method.iter().all(|&c| is_tchar(c)) {
        return None;
    }
    let rest = trim(&line[sp + 1..]);
    if rest.is_empty() || rest.contains(&0) {
        return None;
    }
    match memchr::memrchr(b' ', rest) {
        Some(i) if rest[i + 1..].starts_with(b"HTTP/") => {
            let version = version(&rest[i + 1..])?;
            let target = trim(&rest[..i]);
            (!target.is_empty()).then_some(RequestLine { method, target, version })
        }
        // no version: HTTP/0.9, which only ever had origin-form targets
        None if rest.starts_with(b"/") && rest.iter().all(|&c| c > b' ' && c < 0x7f) => Some(RequestLine { method, target: rest, version: HttpVersion::V09 }),
        _ => None,
    }
}

pub struct StatusLine<'a> {
    pub version: HttpVersion,
    pub status: u16,
    pub reason: &'a [u8],
}

/// `HTTP/x.y SP 3DIGIT [SP reason]`.
pub fn parse_status_line(line: &[u8]) -> Option<StatusLine<'_>> {
    let version = version(line.get(..8)?)?;
    let rest = line[8..].strip_prefix(b" ")?;
    let rest = trim_start(rest);
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&c| c != b' ' && c != b'\t') {
        return None;
    }
    let status = (code[0] - b'0') as u16 * 100 + (code[1] - b'0') as u16 * 10 + (code[2] - b'0') as u16;
    Some(StatusLine { version, status, reason: trim(rest.get(4..).unwrap_or(b"")) })
}

fn trim_start(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    b
}

fn trim(b: &[u8]) -> &[u8] {
    let mut b = trim_start(b);
    while let [rest @ .., b' ' | b'\t' | b'\r'] = b {
        b = rest;
    }
    b
}

/// Where the header block that starts at the beginning of `b` ends (just past the empty
/// line), searching from `from`. A head with no headers ends after its start line.
pub fn find_head_end(b: &[u8], from: usize) -> Option<usize> {
    let from = from.min(b.len());
    let mut at = from;
    while let Some(i) = memchr::memchr(b'\n', &b[at..]) {
        let nl = at + i;
        // the line after this newline is empty?
        match b.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if b.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            Some(_) => at = nl + 1,
            None => return None,
        }
    }
    None
}

/// Parses the header lines in `block` (the start line already removed, the empty line
/// included) into `out`. Returns how many lines were malformed and skipped.
pub fn parse_headers(block: &[u8], out: &mut Headers) -> usize {
    let mut arr = [httparse::EMPTY_HEADER; 96];
    if let Ok(httparse::Status::Complete((_, hs))) = httparse::parse_headers(block, &mut arr) {
        out.0.reserve(hs.len());
        for h in hs.iter() {
            out.append(h.name, &String::from_utf8_lossy(trim(h.value)));
        }
        return 0;
    }
    // httparse refuses obsolete line folding, spaces before the colon, bytes outside the
    // token set in names, and more than 96 headers; real traffic has all of these
    let mut bad = 0;
    let mut last: Option<usize> = None;
    for raw in block.split(|&c| c == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(i) = last {
                let v = &mut out.0[i].1;
                v.push(' ');
                v.push_str(&String::from_utf8_lossy(trim(line)));
                continue;
            }
        }
        match memchr::memchr(b':', line) {
            Some(c) if c > 0 => {
                let name = String::from_utf8_lossy(trim(&line[..c]));
                out.append(&name, &String::from_utf8_lossy(trim(&line[c + 1..])));
                last = out.0.iter().position(|(n, _)| n.eq_ignore_ascii_case(&name));
            }
            _ => bad += 1,
        }
    }
    bad
}

/// The size in a chunk-size line (`1a2b;ext=1`), or None when it is not a number that fits.
pub fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = trim(line.strip_suffix(b"\r").unwrap_or(line));
    let end = line.iter().position(|&c| c == b';' || c == b' ' || c == b'\t').unwrap_or(line.len());
    let digits = &line[..end];
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        let v = (d as char).to_digit(16)? as u64;
        n = n.checked_mul(16)?.checked_add(v)?;
    }
    Some(n)
}

/// Splits a request target into (path, query string): origin-form `/p?q`, absolute-form
/// `http://host/p?q` (the path without scheme and authority), `*`, and CONNECT's authority.
pub fn split_target(target: &str) -> (&str, &str) {
    let no_frag = target.split('#').next().unwrap_or(target);
    let (before_q, q) = match no_frag.find('?') {
        Some(i) => (&no_frag[..i], &no_frag[i + 1..]),
        None => (no_frag, ""),
    };
    let path = match before_q.find("://") {
        Some(i) if !before_q.starts_with('/') => match before_q[i + 3..].find('/') {
            Some(j) => &before_q[i + 3 + j..],
            None => "/",
        },
        _ => before_q,
    };
    (path, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = parse_request_line(b"GET /a?b=1 HTTP/1.1").unwrap();
        assert_eq!((r.method, r.target, r.version), (&b"GET"[..], &b"/a?b=1"[..], HttpVersion::V11));
        assert_eq!(parse_request_line(b"GET /old").unwrap().version, HttpVersion::V09);
        assert!(parse_request_line(b"CONNECT example.com:443 HTTP/1.0").is_some());
        assert!(parse_request_line(b"GET  /two-spaces  HTTP/1.1").is_some());
        for bad in [&b"GET"[..], b" / HTTP/1.1", b"G\x01T / HTTP/1.1", b"GET /\0 HTTP/1.1", b"GET /\x1b", b"GET x", b"PRI * HTTP/2.0", b"SSH-2.0-OpenSSH"] {
            assert!(parse_request_line(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn status_lines() {
        let s = parse_status_line(b"HTTP/1.1 404 Not Found").unwrap();
        assert_eq!((s.status, s.reason), (404, &b"Not Found"[..]));
        assert_eq!(parse_status_line(b"HTTP/1.0 200").unwrap().status, 200);
        assert!(parse_status_line(b"HTTP/1.1 20").is_none());
        assert!(parse_status_line(b"HTTP/1.1 2000 x").is_none());
        assert!(parse_status_line(b"HTTX/1.1 200 OK").is_none());
    }

    #[test]
    fn probes() {
        assert_eq!(probe_request(b"GE"), Probe::NeedMore);
        assert_eq!(probe_request(b"GET /index.ht"), Probe::NeedMore);
        assert_eq!(probe_request(b"GET / HTTP/1.1\r\n"), Probe::Match);
        assert_eq!(probe_request(b"\x16\x03\x01\x02\x00"), Probe::NoMatch);
        assert_eq!(probe_request(b"SSH-2.0-OpenSSH_9.2\r\n"), Probe::NoMatch);
        assert_eq!(probe_response(b"HTT"), Probe::NeedMore);
        assert_eq!(probe_response(b"HTTP/1.1 200 OK\r\n"), Probe::Match);
        assert_eq!(probe_response(b"HTTP/1.1 abc OK\r\n"), Probe::NoMatch);
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody", 0), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nA: b\n\nbody", 0), Some(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n", 10), Some(18));
    }

    #[test]
    fn headers_strict_and_lenient() {
        let mut h = Headers::default();
        assert_eq!(parse_headers(b"Host: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n", &mut h), 0);
        assert_eq!(h.get("x-a"), Some("1, 2"));
        let mut h = Headers::default();
        let bad = parse_headers(b"Host : a\r\nFolded: one\r\n two\r\nnocolon\r\n\r\n", &mut h);
        assert_eq!((h.get("host"), h.get("folded"), bad), (Some("a"), Some("one two"), 1));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a\r"), Some(26));
        assert_eq!(parse_chunk_size(b"0;name=val"), Some(0));
        assert_eq!(parse_chunk_size(b"10000000000000000"), None); // 2^64: does not fit
        assert_eq!(parse_chunk_size(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_chunk_size(b"zz"), None);
        assert_eq!(parse_chunk_size(b""), None);
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1&y=2#f"), ("/a/b", "x=1&y=2"));
        assert_eq!(split_target("http://h.example:80/p?q"), ("/p", "q"));
        assert_eq!(split_target("http://h.example"), ("/", ""));
        assert_eq!(split_target("example.com:443"), ("example.com:443", ""));
        assert_eq!(split_target("*"), ("*", ""));
    }
}
