//! Text a stored entry's JSON must contain for a filter to match it: a prefilter that
//! lets a query pass over most entries with a `memmem` search instead of parsing them.
//!
//! When a field is compared with a string literal (`path == "/cart"`,
//! `request.headers["user-agent"].contains("Wget")`, a protocol word such as `http`), the
//! literal must appear in the JSON of any entry that matches, as long as the JSON spells
//! its strings without escapes (a string with none is the characters it holds). So an
//! entry whose JSON has no backslash at all and lacks the literal cannot match, and is
//! not parsed. An entry with a backslash anywhere is parsed as usual: the answer never
//! depends on the prefilter, only the time it takes.
//!
//! Only the literal's own string token is searched for (`"/cart"`, `Wget`, `"http"`), never
//! text across tokens, so it holds whatever whitespace the JSON has.

use super::parse::{Expr, Kind};
use memchr::memmem::Finder;

/// What a filter requires of an entry's JSON.
pub enum Need {
    /// Nothing known.
    Any,
    /// This text.
    Lit(Box<Finder<'static>>),
    /// All of these.
    All(Vec<Need>),
    /// At least one of these.
    OneOf(Vec<Need>),
}

impl std::fmt::Debug for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Any => f.write_str("Any"),
            Need::Lit(x) => write!(f, "{:?}", String::from_utf8_lossy(x.needle())),
            Need::All(v) => f.debug_tuple("All").field(v).finish(),
            Need::OneOf(v) => f.debug_tuple("OneOf").field(v).finish(),
        }
    }
}

/// Short names that are a field's string as stored (or absent).
const PLAIN: &[&str] = &["path", "url", "dns_rcode", "id", "protocol", "transport", "node", "http_version", "capture_source", "conn_id", "grpc_service", "grpc_method"];
/// Short names that are lists of stored strings, maybe with a trailing dot dropped.
const LISTS: &[&str] = &["dns_questions", "dns_answers", "namespaces", "pods", "services"];

/// Whether `e` is a field's value as stored: a plain short name, or a path of literal
/// keys into `src`, `dst`, `request` or `response`.
fn stored(e: &Expr) -> bool {
    match &e.kind {
        Kind::Ident(n) => PLAIN.contains(&n.as_str()),
        Kind::Member(b, _) => chain(b),
        Kind::Index(b, k) => matches!(k.kind, Kind::Str(_)) && chain(b),
        _ => false,
    }
}

fn chain(e: &Expr) -> bool {
    match &e.kind {
        Kind::Ident(n) => matches!(n.as_str(), "src" | "dst" | "request" | "response"),
        Kind::Member(b, _) => chain(b),
        Kind::Index(b, k) => matches!(k.kind, Kind::Str(_)) && chain(b),
        _ => false,
    }
}

/// The literal as its JSON string spells it without escapes, if it can be.
fn plain(lit: &str) -> Option<&str> {
    (!lit.is_empty() && !lit.chars().any(|c| c == '"' || c == '\\' || c < ' ')).then_some(lit)
}

fn lit(text: String) -> Need {
    Need::Lit(Box::new(Finder::new(text.as_bytes()).into_owned()))
}

/// What `body` needs for an element `v` of a list of stored strings to make it true.
fn element(body: &Expr, v: &str) -> Need {
    let is_v = |e: &Expr| matches!(&e.kind, Kind::Ident(n) if n == v);
    let text = |e: &Expr| match &e.kind {
        Kind::Str(s) => plain(s).map(|s| lit(s.to_string())),
        _ => None,
    };
    match &body.kind {
        Kind::Logic("&&", terms) => {
            let parts: Vec<Need> = terms.iter().map(|t| element(t, v)).filter(|p| !matches!(p, Need::Any)).collect();
            if parts.is_empty() {
                Need::Any
            } else {
                Need::All(parts)
            }
        }
        Kind::Call(Some(t), f, args) if is_v(t) && args.len() == 1 && matches!(f.as_str(), "contains" | "startsWith" | "endsWith") => text(&args[0]).unwrap_or(Need::Any),
        Kind::Binary("==", a, b) if is_v(a) => text(b).unwrap_or(Need::Any),
        Kind::Binary("==", a, b) if is_v(b) => text(a).unwrap_or(Need::Any),
        _ => Need::Any,
    }
}

impl Need {
    pub fn of(e: &Expr) -> Need {
        match &e.kind {
            Kind::Logic(op, terms) => {
                let parts: Vec<Need> = terms.iter().map(Need::of).collect();
                if *op == "&&" {
                    let parts: Vec<Need> = parts.into_iter().filter(|p| !matches!(p, Need::Any)).collect();
                    if parts.is_empty() {
                        Need::Any
                    } else {
                        Need::All(parts)
                    }
                } else if parts.iter().any(|p| matches!(p, Need::Any)) {
                    Need::Any
                } else {
                    Need::OneOf(parts)
                }
            }
            Kind::Ident(n) => match (n.as_str(), super::eval::protocol_word(n)) {
                (_, Some(p)) => lit(format!("\"{p}\"")),
                ("tcp" | "udp", _) => lit(format!("\"{n}\"")),
                _ => Need::Any,
            },
            Kind::Binary("==", a, b) => match (&a.kind, &b.kind) {
                (Kind::Str(s), _) if stored(b) => plain(s).map_or(Need::Any, |s| lit(format!("\"{s}\""))),
                (_, Kind::Str(s)) if stored(a) => plain(s).map_or(Need::Any, |s| lit(format!("\"{s}\""))),
                _ => Need::Any,
            },
            Kind::Binary("in", a, b) => match (&a.kind, &b.kind) {
                (Kind::Str(s), Kind::Ident(l)) if LISTS.contains(&l.as_str()) => plain(s).map_or(Need::Any, |s| lit(s.to_string())),
                _ => Need::Any,
            },
            // a list's element compared with a literal: the literal is in the JSON (not
            // quoted: a DNS name's trailing dot is dropped from the list)
            Kind::Call(Some(t), f, args) if f == "exists" && args.len() == 2 => match (&t.kind, &args[0].kind) {
                (Kind::Ident(l), Kind::Ident(v)) if LISTS.contains(&l.as_str()) => element(&args[1], v),
                _ => Need::Any,
            },
            Kind::Call(Some(t), f, args) if args.len() == 1 => {
                let Kind::Str(s) = &args[0].kind else { return Need::Any };
                let Some(s) = plain(s) else { return Need::Any };
                let list = matches!(&t.kind, Kind::Ident(l) if LISTS.contains(&l.as_str()));
                match f.as_str() {
                    "contains" if stored(t) || list => lit(s.to_string()),
                    "startsWith" if stored(t) => lit(format!("\"{s}")),
                    "endsWith" if stored(t) => lit(format!("{s}\"")),
                    _ => Need::Any,
                }
            }
            _ => Need::Any,
        }
    }

    /// Whether `json` has what is needed (false: the filter cannot match it, when it
    /// has no escapes).
    pub fn admits(&self, json: &[u8]) -> bool {
        match self {
            Need::Any => true,
            Need::Lit(f) => f.find(json).is_some(),
            Need::All(v) => v.iter().all(|n| n.admits(json)),
            Need::OneOf(v) => v.iter().any(|n| n.admits(json)),
        }
    }
}
