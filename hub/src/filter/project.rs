//! Which parts of an entry a filter reads, so that a stored entry's JSON can be parsed
//! into just those (the rest skipped unbuilt) before the filter runs on it. A query over
//! a million stored entries spends most of its time here: building only `protocol` and
//! `response.status_code` of an entry, rather than the whole of it, is what makes it fast.
//!
//! The projection may take more than the filter needs (never less): a top-level key whole,
//! or only some of its keys when the filter reaches into it by literal names only
//! (`request.headers["x"]`, `src.namespace`, and the short names such as `status_code`).

use super::parse::{Expr, Kind};
use serde_json::{Map, Value};

/// A filter's projection of an entry.
#[derive(Debug, Default)]
pub struct Projection {
    /// Top-level keys (a few: a list is faster than a map): `None` whole, `Some(keys)`
    /// only those keys of it.
    keys: Vec<(String, Option<Vec<String>>)>,
}

/// Top-level keys that filters reach into by name.
const OBJECTS: &[&str] = &["src", "dst", "request", "response"];

impl Projection {
    pub fn of(e: &Expr) -> Projection {
        let mut p = Projection::default();
        p.walk(e);
        p
    }

    fn slot(&mut self, top: &str) -> &mut Option<Vec<String>> {
        let i = match self.keys.iter().position(|(k, _)| k == top) {
            Some(i) => i,
            None => {
                self.keys.push((top.to_string(), Some(Vec::new())));
                self.keys.len() - 1
            }
        };
        &mut self.keys[i].1
    }

    fn whole(&mut self, top: &str) {
        *self.slot(top) = None;
    }

    fn sub(&mut self, top: &str, key: &str) {
        if let Some(keys) = self.slot(top) {
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
    }

    fn get(&self, top: &[u8]) -> Option<&Option<Vec<String>>> {
        self.keys.iter().find(|(k, _)| k.as_bytes() == top).map(|(_, v)| v)
    }

    /// What a name reads (see `eval::name`, which this must cover).
    fn name(&mut self, n: &str) {
        if super::eval::protocol_word(n).is_some() {
            self.whole("protocol");
            return;
        }
        match n {
            "tcp" | "udp" => self.whole("transport"),
            "tls" => self.whole("capture_source"),
            "method" | "grpc_method" => {
                self.whole("protocol");
                self.sub("request", "method");
            }
            "grpc_service" => {
                self.whole("protocol");
                self.sub("request", "service");
            }
            "path" => {
                self.sub("request", "path");
                self.sub("request", "target");
            }
            "url" => {
                self.sub("request", "url");
                self.sub("request", "path");
            }
            "status_code" => self.sub("response", "status_code"),
            "grpc_status" => self.sub("response", "grpc_status"),
            "dns_questions" => self.sub("request", "questions"),
            "dns_answers" => self.sub("response", "answers"),
            "dns_rcode" => self.sub("response", "rcode"),
            "nodes" => {
                self.whole("nodes");
                self.whole("node");
            }
            "namespaces" | "pods" | "services" => {
                let k = match n {
                    "namespaces" => "namespace",
                    "pods" => "pod",
                    _ => "service",
                };
                self.sub("src", k);
                self.sub("dst", k);
            }
            // the entry's own fields (and a macro's variables, which read nothing: taking
            // a key of the same name is harmless)
            _ => self.whole(n),
        }
    }

    fn walk(&mut self, e: &Expr) {
        let object = |b: &Expr| match &b.kind {
            Kind::Ident(n) if OBJECTS.contains(&n.as_str()) => Some(n.clone()),
            _ => None,
        };
        match &e.kind {
            Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Double(_) | Kind::Str(_) => {}
            Kind::Ident(n) => self.name(n),
            Kind::Member(b, f) => match object(b) {
                Some(top) => self.sub(&top, f),
                None => self.walk(b),
            },
            Kind::Index(b, k) => match (object(b), &k.kind) {
                (Some(top), Kind::Str(key)) => self.sub(&top, key),
                _ => {
                    self.walk(b);
                    self.walk(k);
                }
            },
            Kind::List(xs) | Kind::Logic(_, xs) => xs.iter().for_each(|x| self.walk(x)),
            Kind::Call(t, _, args) => {
                if let Some(t) = t {
                    self.walk(t);
                }
                args.iter().for_each(|a| self.walk(a));
            }
            Kind::Unary(_, a) => self.walk(a),
            Kind::Binary(_, a, b) => {
                self.walk(a);
                self.walk(b);
            }
            Kind::Cond(a, b, c) => {
                self.walk(a);
                self.walk(b);
                self.walk(c);
            }
        }
    }

    /// Parses an entry's JSON into what this projection takes of it. The values it
    /// does not take are skipped by a scanner that only finds where they end (strings
    /// by `memchr`), which is what makes a scan over a million entries fast; the values it
    /// takes are parsed by serde_json. JSON that is not well-formed is an error (the
    /// store holds only entries checked at ingest).
    pub fn parse(&self, s: &[u8]) -> Result<Value, Bad> {
        let take = |k: &[u8]| {
            self.get(k).map(|sub| match sub {
                None => Take::Whole,
                Some(keys) => Take::Keys(keys),
            })
        };
        // an entry's top-level keys are unique (the hub refuses others): once it has all
        // it takes, the rest is not read
        let (v, end) = object(s, ws(s, 0), &take, self.keys.len())?;
        if end.is_some_and(|end| ws(s, end) != s.len()) {
            return Err(Bad);
        }
        Ok(v)
    }
}

/// JSON that the scanner cannot read.
#[derive(Debug)]
pub struct Bad;

impl From<serde_json::Error> for Bad {
    fn from(_: serde_json::Error) -> Bad {
        Bad
    }
}

enum Take<'p> {
    Whole,
    Keys(&'p [String]),
}

fn ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string whose opening quote is at `i`,
/// and whether it has escapes.
fn string_end(s: &[u8], i: usize) -> Result<(usize, bool), Bad> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', s.get(j..).ok_or(Bad)?).ok_or(Bad)?;
        if s[k] == b'"' {
            return Ok((k + 1, escaped));
        }
        escaped = true;
        j = k + 2;
    }
}

/// The end of the value that starts at `i`.
fn skip(s: &[u8], i: usize) -> Result<usize, Bad> {
    match s.get(i).ok_or(Bad)? {
        b'"' => Ok(string_end(s, i)?.0),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < s.len() {
                match s[j] {
                    b'"' => {
                        j = string_end(s, j)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(Bad)
        }
        _ => {
            let n = s[i..].iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')).unwrap_or(s.len() - i);
            Ok(i + n)
        }
    }
}

/// The object at `i`, with only the keys `take` says (and how), and where it ends (None:
/// it stopped when it had `all` keys).
fn object<'p>(s: &[u8], i: usize, take: &dyn Fn(&[u8]) -> Option<Take<'p>>, all: usize) -> Result<(Value, Option<usize>), Bad> {
    if s.get(i) != Some(&b'{') {
        return Err(Bad);
    }
    let mut m = Map::new();
    let mut i = ws(s, i + 1);
    if s.get(i) == Some(&b'}') {
        return Ok((Value::Object(m), Some(i + 1)));
    }
    loop {
        if s.get(i) != Some(&b'"') {
            return Err(Bad);
        }
        let (kend, escaped) = string_end(s, i)?;
        // a key is compared as bytes; made a string only when it is taken
        let key: std::borrow::Cow<[u8]> = if escaped { std::borrow::Cow::Owned(serde_json::from_slice::<String>(&s[i..kend])?.into_bytes()) } else { std::borrow::Cow::Borrowed(&s[i + 1..kend - 1]) };
        i = ws(s, kend);
        if s.get(i) != Some(&b':') {
            return Err(Bad);
        }
        let v = ws(s, i + 1);
        let end = skip(s, v)?;
        let name = || String::from_utf8(key.to_vec()).map_err(|_| Bad);
        match take(&key) {
            None => {}
            Some(Take::Whole) => {
                m.insert(name()?, serde_json::from_slice(&s[v..end])?);
            }
            Some(Take::Keys(keys)) => {
                let value = if s[v] == b'{' { object(s, v, &|k| keys.iter().any(|w| w.as_bytes() == k).then_some(Take::Whole), usize::MAX)?.0 } else { serde_json::from_slice(&s[v..end])? };
                m.insert(name()?, value);
            }
        }
        if m.len() >= all {
            return Ok((Value::Object(m), None));
        }
        i = ws(s, end);
        match s.get(i) {
            Some(b',') => i = ws(s, i + 1),
            Some(b'}') => return Ok((Value::Object(m), Some(i + 1))),
            _ => return Err(Bad),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_takes_what_is_asked_and_refuses_what_is_not_json() {
        let p = Projection::of(&super::super::parse::Parser::parse(r#"status_code >= 500 && request["a\"b"] == 1 && http"#).unwrap());
        let v = p.parse(br#" {"protocol" : "http", "x": {"y": ["}", "\"{", [1, {"z": 2}]]}, "response": {"headers": {"status_code": 1}, "status_code": 503},
            "request": {"a\"b": 1, "c": "d"}, "n": -1.5e3, "t": true} "#).unwrap();
        assert_eq!(v, serde_json::json!({"protocol": "http", "response": {"status_code": 503}, "request": {"a\"b": 1}}));
        for bad in ["", "[]", "{", r#"{"a"}"#, r#"{"a":1,}"#, r#"{"a":"x}"#, r#"{"protocol":tru}"#, r#"{"a":1} x"#, r#"{"a":{"b":1}"#, r#"{"protocol":"\"}"#] {
            assert!(p.parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
