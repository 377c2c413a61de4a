//! DNS messages on the wire, read record by record through `hickory-proto` so that a
//! message cut short or broken half-way keeps everything before the break.

use crate::entry::{DnsQuestion, DnsRecord, Text};
use hickory_proto::op::{Header, MessageType, Query};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// A DNS message as the entry shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    /// The response code, with EDNS's extended bits folded in.
    pub rcode: u16,
    pub truncated: bool,
    pub authoritative: bool,
    pub questions: Vec<DnsQuestion>,
    pub answers: Vec<DnsRecord>,
    pub authorities: Vec<DnsRecord>,
    pub additionals: Vec<DnsRecord>,
    /// The message broke off or broke the rules before its counts were satisfied.
    pub malformed: bool,
    /// How many bytes of the message parsed.
    pub parsed_len: usize,
}

/// Reads the header and as much of the rest as parses. None when there is no header.
pub fn parse(b: &[u8]) -> Option<Message> {
    if b.len() < 12 {
        return None;
    }
    let mut d = BinDecoder::new(b);
    let h = Header::read(&mut d).ok()?;
    let m = &h.metadata;
    let mut msg = Message {
        id: m.id,
        is_response: m.message_type == MessageType::Response,
        opcode: u8::from(m.op_code),
        rcode: u16::from(m.response_code) & 0xf,
        truncated: m.truncation,
        authoritative: m.authoritative,
        questions: Vec::new(),
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
        malformed: false,
        parsed_len: 12,
    };
    // the raw header rcode: hickory folds nothing in at this point, but be explicit
    msg.rcode = (b[3] & 0x0f) as u16;
    let c = &h.counts;
    for _ in 0..c.queries {
        if let Some((q, next)) = plain_question(b, d.index()) {
            msg.questions.push(q);
            d = d.clone(next as u16);
            continue;
        }
        match Query::read(&mut d) {
            Ok(q) => msg.questions.push(DnsQuestion {
                name: name_text(&q.name),
                qtype: type_text(q.query_type),
                class: class_text(q.query_class),
            }),
            Err(_) => {
                msg.malformed = true;
                msg.parsed_len = d.index();
                return Some(msg);
            }
        }
    }
    for (count, section) in [(c.answers, 0), (c.authorities, 1), (c.additionals, 2)] {
        for _ in 0..count {
            let r = match plain_record(b, d.index()) {
                Some((r, next)) => {
                    d = d.clone(next as u16);
                    r
                }
                None => {
                    let Ok(rec) = Record::read(&mut d) else {
                        msg.malformed = true;
                        msg.parsed_len = d.index();
                        return Some(msg);
                    };
                    if rec.record_type() == RecordType::OPT {
                        // EDNS: the TTL field carries the upper 8 bits of the response code
                        let ext = (rec.ttl >> 24) as u16;
                        msg.rcode |= ext << 4;
                    }
                    record(&rec)
                }
            };
            match section {
                0 => msg.answers.push(r),
                1 => msg.authorities.push(r),
                _ => msg.additionals.push(r),
            }
        }
    }
    msg.parsed_len = d.index();
    Some(msg)
}

/// Letters, digits, `_`, `-` (not first) and a leading `*`, and not an IDNA label: a label
/// whose text is its bytes, as [`name_text`] gives it.
fn plain_label(l: &[u8]) -> bool {
    !l.starts_with(b"xn--") && l.iter().enumerate().all(|(i, &c)| c.is_ascii_alphanumeric() || c == b'_' || (c == b'-' && i > 0) || (c == b'*' && i == 0))
}

/// A name at `at` of plain labels, ending in the root or in a compression pointer to an
/// earlier name of plain labels, read straight from the bytes: the text hickory's reading
/// gives through [`name_text`], and where the name ends. The root alone, a pointer
/// forwards, anything else is None, for hickory to read.
fn plain_name(b: &[u8], at: usize) -> Option<(String, usize)> {
    // checked first and copied after, so the name is allocated once at its size
    let mut parts: [(usize, usize); 16] = [(0, 0); 16];
    let (mut n, mut text_len, mut end) = (0usize, 0usize, None);
    let (mut pos, mut seg) = (at, at);
    loop {
        let len = *b.get(pos)? as usize;
        if len == 0 {
            end.get_or_insert(pos + 1);
            break;
        }
        if len & 0xc0 == 0xc0 {
            let target = (len & 0x3f) << 8 | *b.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            // only backwards from where this part began, so it ends
            if target >= seg {
                return None;
            }
            (pos, seg) = (target, target);
            continue;
        }
        // a reserved label type: hickory's business
        if len > 63 {
            return None;
        }
        let label = b.get(pos + 1..pos + 1 + len)?;
        text_len += len + 1;
        // well under hickory's 255-byte limit on a name, so it never refuses what this takes
        if !plain_label(label) || text_len > 200 || n == parts.len() {
            return None;
        }
        parts[n] = (pos + 1, len);
        n += 1;
        pos += 1 + len;
    }
    if n == 0 {
        return None;
    }
    let mut name = String::with_capacity(text_len);
    for (i, &(p, len)) in parts[..n].iter().enumerate() {
        if i > 0 {
            name.push('.');
        }
        // checked above: ASCII only
        name.push_str(std::str::from_utf8(&b[p..p + len]).ok()?);
    }
    Some((name, end?))
}

/// A question at `at` whose name [`plain_name`] reads (nearly every question: it is the
/// message's first name). Returns the question and where the next part begins.
fn plain_question(b: &[u8], at: usize) -> Option<(DnsQuestion, usize)> {
    let (name, pos) = plain_name(b, at)?;
    let t = b.get(pos..pos + 4)?;
    if pos + 4 > u16::MAX as usize {
        return None;
    }
    let q = DnsQuestion {
        name,
        qtype: type_text(RecordType::from(u16::from_be_bytes([t[0], t[1]]))),
        class: class_text(DNSClass::from(u16::from_be_bytes([t[2], t[3]]))),
    };
    Some((q, pos + 4))
}

/// An answer most lookups get, read straight from the bytes: class IN, an owner name
/// [`plain_name`] reads (usually a pointer to the question), and an A, AAAA or CNAME (to
/// such a name) record; what [`record`] makes of hickory's reading. Anything else is
/// None, for hickory. Returns the record and where the next one begins.
fn plain_record(b: &[u8], at: usize) -> Option<(DnsRecord, usize)> {
    let (name, p) = plain_name(b, at)?;
    let f = b.get(p..p + 10)?;
    let (rtype, class) = (u16::from_be_bytes([f[0], f[1]]), u16::from_be_bytes([f[2], f[3]]));
    let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
    let start = p + 10;
    let end = start + u16::from_be_bytes([f[8], f[9]]) as usize;
    let rdata = b.get(start..end)?;
    if class != 1 || end > u16::MAX as usize {
        return None;
    }
    let (rtype, data) = match (rtype, rdata.len()) {
        (1, 4) => (RecordType::A, crate::entry::ip_text(std::net::Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).into())),
        (28, 16) => (RecordType::AAAA, std::net::Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?).to_string()),
        (5, _) => match plain_name(b, start)? {
            (target, e) if e == end => (RecordType::CNAME, target),
            _ => return None,
        },
        _ => return None,
    };
    Some((DnsRecord { name, rtype: type_text(rtype), ttl, data }, end))
}

/// A name as hickory prints it, without the final dot (the root stays "."). Names of
/// plain letters, digits, `-` and `_` (nearly all) are joined here directly; anything
/// that needs escaping or IDNA goes through hickory's Display.
fn name_text(n: &Name) -> String {
    if !n.iter().all(plain_label) {
        let s = n.to_string();
        if s == "." {
            return s;
        }
        return s.strip_suffix('.').unwrap_or(&s).to_string();
    }
    if n.iter().next().is_none() {
        return if n.is_fqdn() { ".".to_string() } else { String::new() };
    }
    let mut out = String::with_capacity(n.len());
    for (i, l) in n.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        // checked above: ASCII only
        out.push_str(std::str::from_utf8(l).unwrap_or_default());
    }
    out
}

/// A type's mnemonic, or `TYPEn` (RFC 3597) for types without one.
pub fn type_text(t: RecordType) -> Text {
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}").into(),
        RecordType::ZERO => "TYPE0".into(),
        other => {
            let s: &'static str = other.into();
            if s.chars().all(|c| c.is_ascii_alphanumeric()) {
                s.into()
            } else {
                format!("TYPE{}", u16::from(other)).into()
            }
        }
    }
}

fn class_text(c: DNSClass) -> Text {
    match c {
        DNSClass::IN => "IN".into(),
        DNSClass::CH => "CH".into(),
        DNSClass::HS => "HS".into(),
        DNSClass::NONE => "NONE".into(),
        DNSClass::ANY => "ANY".into(),
        other => format!("CLASS{}", u16::from(other)).into(),
    }
}

fn record(r: &Record) -> DnsRecord {
    let rtype = r.record_type();
    let data = if rtype == RecordType::OPT {
        // EDNS: class is the UDP payload size, TTL holds extended rcode, version and DO
        let (size, ext, version, dnssec_ok) = (u16::from(r.dns_class), r.ttl >> 24, (r.ttl >> 16) & 0xff, r.ttl & 0x8000 != 0);
        format!("udp_payload_size={size} extended_rcode={ext} version={version} dnssec_ok={dnssec_ok}")
    } else {
        rdata_text(r)
    };
    DnsRecord { name: name_text(&r.name), rtype: type_text(rtype), ttl: r.ttl, data }
}

/// RFC 9460 presentation form of SVCB and HTTPS: `priority target key=value ...`.
fn svcb_text(s: &hickory_proto::rr::rdata::SVCB) -> String {
    use hickory_proto::rr::rdata::svcb::SvcParamValue as V;
    use base64::Engine;
    let mut out = format!("{} {}", s.svc_priority, s.target_name);
    for (k, v) in &s.svc_params {
        let val = match v {
            V::Mandatory(m) => m.0.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
            V::Alpn(a) => a.0.join(","),
            V::NoDefaultAlpn => String::new(),
            V::Port(p) => p.to_string(),
            V::Ipv4Hint(h) => h.0.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
            V::Ipv6Hint(h) => h.0.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
            V::EchConfigList(e) => base64::engine::general_purpose::STANDARD.encode(&e.0),
            V::Unknown(u) => u.0.iter().map(|b| format!("{b:02x}")).collect(),
        };
        if val.is_empty() {
            out.push_str(&format!(" {k}"));
        } else {
            out.push_str(&format!(" {k}={val}"));
        }
    }
    out
}

fn rdata_text(r: &Record) -> String {
    match &r.data {
        RData::SVCB(s) => svcb_text(s),
        RData::HTTPS(h) => svcb_text(&h.0),
        RData::A(a) => a.to_string(),
        RData::AAAA(a) => a.to_string(),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| format!("\"{}\"", escape_txt(s)))
            .collect::<Vec<_>>()
            .join(" "),
        RData::Unknown { code, rdata } => {
            // RFC 3597 generic form
            let bytes = &rdata.anything;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let _ = code;
            format!("\\# {} {hex}", bytes.len())
        }
        RData::Update0(_) => String::new(),
        other => other.to_string(),
    }
}

fn escape_txt(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out
}

/// DNS opcode mnemonics.
pub fn opcode_text(op: u8) -> Text {
    match op {
        0 => "QUERY".into(),
        1 => "IQUERY".into(),
        2 => "STATUS".into(),
        4 => "NOTIFY".into(),
        5 => "UPDATE".into(),
        6 => "DSO".into(),
        n => format!("OPCODE{n}").into(),
    }
}

/// Response code mnemonics (RFC 6895), extended codes included.
pub fn rcode_text(rc: u16) -> Text {
    const NAMES: [&str; 24] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
        "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14", "RCODE15", "BADVERS", "BADKEY", "BADTIME", "BADMODE",
        "BADNAME", "BADALG", "BADTRUNC", "BADCOOKIE",
    ];
    NAMES.get(rc as usize).map(|&s| Text::Borrowed(s)).unwrap_or_else(|| format!("RCODE{rc}").into())
}

/// Is this a plausible DNS header? `hinted`: it is on a DNS port, so be less strict.
pub fn header_plausible(b: &[u8], hinted: bool) -> bool {
    if b.len() < 12 {
        return false;
    }
    let opcode = (b[2] >> 3) & 0x0f;
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let total: u32 = (2..6).map(|i| u16::from_be_bytes([b[i * 2], b[i * 2 + 1]]) as u32).sum();
    if opcode > 6 || opcode == 3 {
        return false;
    }
    // off a DNS port, ask for what ordinary queries and responses have: one question or a
    // few, sane counts, and no error code in a query
    hinted || ((1..=16).contains(&qd) && total <= 512 && !(b[2] & 0x80 == 0 && (b[3] & 0x0f) != 0))
}

/// Does `b` look like a whole DNS message? `hinted`: it is on a DNS port, so be less strict.
pub fn looks_like_dns(b: &[u8], hinted: bool) -> bool {
    if !header_plausible(b, hinted) {
        return false;
    }
    if hinted {
        return true;
    }
    // off a DNS port: a clean parse that uses (nearly) all of the bytes
    match parse(b) {
        Some(m) => !m.malformed && m.parsed_len + 64 >= b.len() && m.parsed_len <= b.len(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for example.com A with id 0x1234.
    pub fn query() -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        b
    }

    fn response_with(answer_rr: &[u8], ancount: u16) -> Vec<u8> {
        let mut b = query();
        b[2] = 0x81;
        b[3] = 0x80;
        b[6..8].copy_from_slice(&ancount.to_be_bytes());
        b.extend_from_slice(answer_rr);
        b
    }

    #[test]
    fn query_and_answers() {
        let q = parse(&query()).unwrap();
        assert_eq!((q.id, q.is_response, q.questions[0].name.as_str(), &*q.questions[0].qtype), (0x1234, false, "example.com", "A"));
        let mut rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd8\x22".to_vec();
        rr.extend_from_slice(b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c\x00\x07\x02hi\x03y\"u");
        rr.extend_from_slice(b"\xc0\x0c\x00\x21\x00\x01\x00\x00\x00\x3c\x00\x08\x00\x0a\x00\x05\x01\xbb\xc0\x0c");
        let r = parse(&response_with(&rr, 3)).unwrap();
        let data: Vec<&str> = r.answers.iter().map(|a| a.data.as_str()).collect();
        assert_eq!(data, vec!["93.184.216.34", "\"hi\" \"y\\\"u\"", "10 5 443 example.com."]);
        assert_eq!(r.answers[2].rtype, "SRV");
        assert!(!r.malformed);
    }

    /// The direct reading of plain questions gives what hickory's reading gives, and
    /// leaves the rest to it.
    #[test]
    fn plain_questions_read_as_hickory_reads_them() {
        let labels: [&[u8]; 12] = [b"example", b"COM", b"a-b", b"_srv", b"*", b"x1", b"-lead", b"xn--bcher-kva", b"sp ace", b"dot.in", b"\xc3\xa9", b"9"];
        let mut seen_plain = 0;
        for n in 0..labels.len() * labels.len() * 3 {
            let mut q = Vec::new();
            // zero to three labels, from the list
            let picks = [n % labels.len(), n / labels.len() % labels.len(), n % 7];
            for &i in picks.iter().take(n % 4) {
                let l = labels[i];
                q.push(l.len() as u8);
                q.extend_from_slice(l);
            }
            q.push(0);
            q.extend_from_slice(&[(n % 3) as u8, 1 + (n % 2) as u8 * 27, 0, 1 + (n % 5) as u8]);
            let mut d = BinDecoder::new(&q);
            let hq = Query::read(&mut d).unwrap();
            let want = DnsQuestion { name: name_text(&hq.name), qtype: type_text(hq.query_type), class: class_text(hq.query_class) };
            if let Some((got, next)) = plain_question(&q, 0) {
                assert_eq!(got, want, "{q:?}");
                assert_eq!(next, d.index());
                seen_plain += 1;
            }
        }
        assert!(seen_plain > 50, "{seen_plain}");
        // a compression pointer, a cut-off name: not taken here
        assert!(plain_question(b"\xc0\x0c\x00\x01\x00\x01", 0).is_none());
        assert!(plain_question(b"\x07exam", 0).is_none());
        assert!(plain_question(b"\x01a\x00\x00\x01", 0).is_none());
    }

    /// The direct reading of common answers gives what hickory's reading gives, and leaves
    /// the rest to it.
    #[test]
    fn plain_records_read_as_hickory_reads_them() {
        // the question "example.com" is at 12; "com" at 20
        let names: [&[u8]; 9] = [
            b"\xc0\x0c",
            b"\x03www\xc0\x0c",
            b"\x03www\x07example\x03com\x00",
            b"\xc0\x14",
            b"\x01a\x03b-c\x04_tcp\xc0\x14",
            b"\x06sp ace\xc0\x0c",
            b"\xc0\x60",
            b"\x04xn--a\x00",
            b"\x00",
        ];
        let mut seen_plain = 0;
        for (ni, name) in names.iter().enumerate() {
            for (rtype, class) in [(1u16, 1u16), (28, 1), (5, 1), (15, 1), (1, 3)] {
                for variant in 0..4usize {
                    let mut rdata: Vec<u8> = match rtype {
                        1 => vec![10, 0, variant as u8, 200],
                        28 => (0..16u8).map(|i| if i < 2 * variant as u8 { 0 } else { i * 17 }).collect(),
                        15 => [&[0u8, 10][..], names[variant]].concat(),
                        _ => names[(ni + variant) % names.len()].to_vec(),
                    };
                    if variant == 3 {
                        // an rdata length that does not fit the data
                        rdata.push(0);
                    }
                    let mut rr = name.to_vec();
                    rr.extend_from_slice(&rtype.to_be_bytes());
                    rr.extend_from_slice(&class.to_be_bytes());
                    rr.extend_from_slice(&(300u32 + ni as u32).to_be_bytes());
                    rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                    rr.extend_from_slice(&rdata);
                    let b = response_with(&rr, 1);
                    let at = query().len();
                    let mut d = BinDecoder::new(&b);
                    d = d.clone(at as u16);
                    let hickory = Record::read(&mut d).map(|r| (record(&r), d.index()));
                    if let Some(got) = plain_record(&b, at) {
                        assert_eq!(Some(&got), hickory.as_ref().ok(), "{rr:?}");
                        seen_plain += 1;
                    }
                }
            }
        }
        assert!(seen_plain >= 40, "{seen_plain}");
        // a pointer forwards or to itself, cut short: not taken here
        assert!(plain_name(b"\xc0\x05", 0).is_none());
        assert!(plain_name(b"\x01a\xc0\x00", 0).is_none());
        assert!(plain_name(b"\x01a\xc0", 0).is_none());
        assert_eq!(plain_name(b"\x01a\x00\x01b\xc0\x00", 3), Some(("b.a".to_string(), 7)));
    }

    #[test]
    fn unknown_type_is_typen() {
        let rr = b"\xc0\x0c\xff\x00\x00\x01\x00\x00\x00\x3c\x00\x02\xab\xcd";
        let r = parse(&response_with(rr, 1)).unwrap();
        assert_eq!(r.answers[0].rtype, "TYPE65280");
        assert_eq!(r.answers[0].data, "\\# 2 abcd");
    }

    #[test]
    fn compression_loop_and_overlong_label_are_malformed_not_panics() {
        // the answer's name points at itself
        let rr = b"\xc0\x1d\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04";
        let r = parse(&response_with(rr, 1)).unwrap();
        assert!(r.malformed);
        assert_eq!(r.questions.len(), 1);
        // a label of 63+ bytes and a name over 255
        let mut b = query();
        b.truncate(12);
        for _ in 0..6 {
            b.push(63);
            b.extend_from_slice(&[b'a'; 63]);
        }
        b.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(parse(&b).unwrap().malformed);
        // cut short
        let q = query();
        for n in 0..q.len() {
            let _ = parse(&q[..n]);
        }
    }

    #[test]
    fn extended_rcode_and_names() {
        assert_eq!(rcode_text(3), "NXDOMAIN");
        assert_eq!(rcode_text(16), "BADVERS");
        assert_eq!(rcode_text(4000), "RCODE4000");
        assert!(looks_like_dns(&query(), false));
        assert!(!looks_like_dns(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false));
    }
}
