//! The filter language of `cli.md`: CEL syntax with KFL2-style short names, compiled
//! once into a tree of closures and evaluated on an entry's JSON.
//!
//! ```text
//! http && status_code >= 500 && dst.namespace == "sock-shop"
//! grpc && grpc_status != 0 && grpc_method.startsWith("Get")
//! dns && "catalogue.sock-shop.svc.cluster.local" in dns_questions
//! src.pod.name.startsWith("front-end") && elapsed_time > 100000
//! timestamp > now() - duration("5m")
//! ```
//!
//! Why not a CEL crate: CEL's own semantics make a missing field an error ("no such
//! key"), where `cli.md` wants it to be its type's zero value so that `status_code >= 500`
//! is simply false for DNS; and an interpreter such as `cel-interpreter` evaluates on its
//! own value type, so every entry would first be converted into a map of CEL values. Here
//! fields are read in place from the entry's JSON, names are resolved and literals
//! (regexes, durations, timestamps) are compiled once, and errors name the character
//! position. Errors during evaluation (a division by zero, a bad regex from a field)
//! follow CEL: they pass through operators, `false && error` is false, `true || error`
//! is true, and an entry whose filter ends in an error does not match.

mod eval;
mod needle;
mod parse;
mod project;

use serde_json::Value;

/// A filter that does not compile: what is wrong, and the character position (from 0)
/// where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad filter at position {position}: {message}")]
pub struct FilterError {
    pub message: String,
    pub position: usize,
}

impl FilterError {
    pub(crate) fn new(message: impl Into<String>, position: usize) -> Self {
        FilterError { message: message.into(), position }
    }

    /// The filter with a caret under the position, for a terminal.
    pub fn pointer(&self, src: &str) -> String {
        let line: String = src.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        format!("{line}\n{}^ {}", " ".repeat(self.position.min(line.chars().count())), self.message)
    }
}

/// A compiled filter.
pub struct Filter {
    root: eval::Node,
    source: String,
    full: bool,
    proj: project::Projection,
    need: needle::Need,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({:?})", self.source)
    }
}

impl Filter {
    /// Compiles `src`; an empty (or all-blank) filter matches everything.
    pub fn compile(src: &str) -> Result<Filter, FilterError> {
        if src.trim().is_empty() {
            return Ok(Filter { root: eval::always(), source: String::new(), full: false, proj: Default::default(), need: needle::Need::Any });
        }
        if src.len() > MAX_SOURCE {
            return Err(FilterError::new(format!("the filter is {} bytes; the limit is {MAX_SOURCE}", src.len()), 0));
        }
        let ast = parse::Parser::parse(src)?;
        budget(&ast)?;
        let root = eval::compile_root(&ast)?;
        Ok(Filter { root, source: src.to_string(), full: !slim_enough(&ast), proj: project::Projection::of(&ast), need: needle::Need::of(&ast) })
    }

    /// Whether the entry matches, with `now` (nanoseconds since the epoch) for `now()`.
    pub fn matches_at(&self, entry: &Value, now: i128) -> bool {
        eval::run(&self.root, entry, now)
    }

    /// Whether the entry whose JSON this is matches, with `now` (ns) for `now()`. Only
    /// what the filter reads is built from the JSON, and reading stops once it has that:
    /// this is for entries the hub has checked (unique top-level keys); JSON it cannot
    /// read matches nothing.
    pub fn matches_json(&self, json: &[u8], now: i128) -> bool {
        if self.is_everything() {
            return true;
        }
        // text the entry must have (see `needle`), sure only when nothing is escaped
        if !self.need.admits(json) && memchr::memchr(b'\\', json).is_none() {
            return false;
        }
        self.proj.parse(json).is_ok_and(|v| self.matches_at(&v, now))
    }

    /// Whether the entry matches, `now()` being the current time.
    pub fn matches(&self, entry: &Value) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        self.matches_at(entry, now)
    }

    /// Whether it reads parts of an entry that its slim form leaves out (headers, bodies,
    /// gRPC messages...: [`crate::record::HEAVY`]), so must be run on the full entry.
    pub fn needs_full(&self) -> bool {
        self.full
    }

    /// The text it was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it matches everything (compiled from an empty filter).
    pub fn is_everything(&self) -> bool {
        self.source.is_empty()
    }
}

/// The longest filter text taken, in bytes.
pub const MAX_SOURCE: usize = 16 << 10;
/// Regular expressions a filter may hold (`matches()`), and their total pattern text.
pub const MAX_REGEXES: usize = 16;
pub const MAX_REGEX_TEXT: usize = 4096;

/// A filter's cost, checked before anything is compiled: each regex is built into
/// automata that can take far more memory and time than its text suggests (`\w{20}` is a
/// megabyte in Unicode), so their number and size are bounded.
fn budget(e: &parse::Expr) -> Result<(), FilterError> {
    fn walk<'a>(e: &'a parse::Expr, found: &mut Vec<(&'a str, usize)>) {
        use parse::Kind::*;
        match &e.kind {
            Call(t, f, args) => {
                if f == "matches" {
                    if let Some(parse::Expr { kind: Str(p), pos }) = args.last() {
                        found.push((p, *pos));
                    }
                }
                if let Some(t) = t {
                    walk(t, found);
                }
                args.iter().for_each(|a| walk(a, found));
            }
            Member(b, _) | Unary(_, b) => walk(b, found),
            Index(a, b) | Binary(_, a, b) => {
                walk(a, found);
                walk(b, found);
            }
            List(xs) | Logic(_, xs) => xs.iter().for_each(|x| walk(x, found)),
            Cond(a, b, c) => {
                walk(a, found);
                walk(b, found);
                walk(c, found);
            }
            Null | Bool(_) | Int(_) | Double(_) | Str(_) | Ident(_) => {}
        }
    }
    let mut found = Vec::new();
    walk(e, &mut found);
    if let Some((_, pos)) = found.get(MAX_REGEXES) {
        return Err(FilterError::new(format!("more than {MAX_REGEXES} regular expressions (`matches()`) in one filter"), *pos));
    }
    let mut total = 0;
    for (p, pos) in &found {
        total += p.len();
        if total > MAX_REGEX_TEXT {
            return Err(FilterError::new(format!("the filter's regular expressions are over {MAX_REGEX_TEXT} bytes together"), *pos));
        }
    }
    Ok(())
}

/// Whether `e` reads only what the slim form of an entry keeps: `request` and `response`
/// only through a literal key that is not one of the heavy ones.
fn slim_enough(e: &parse::Expr) -> bool {
    use parse::Kind::*;
    let side = |b: &parse::Expr| matches!(&b.kind, Ident(n) if n == "request" || n == "response");
    let light = |k: &str| !crate::record::HEAVY.contains(&k);
    match &e.kind {
        Null | Bool(_) | Int(_) | Double(_) | Str(_) => true,
        Ident(n) => n != "request" && n != "response",
        Member(b, f) => if side(b) { light(f) } else { slim_enough(b) },
        Index(b, k) => {
            if side(b) {
                matches!(&k.kind, Str(s) if light(s))
            } else {
                slim_enough(b) && slim_enough(k)
            }
        }
        List(xs) | Logic(_, xs) => xs.iter().all(slim_enough),
        Call(t, _, args) => t.as_deref().is_none_or(slim_enough) && args.iter().all(slim_enough),
        Unary(_, a) => slim_enough(a),
        Binary(_, a, b) => slim_enough(a) && slim_enough(b),
        Cond(a, b, c) => slim_enough(a) && slim_enough(b) && slim_enough(c),
    }
}

/// Parses `5m`, `1h30m`, `250ms`, `1.5s` (Go's duration syntax, as CEL's `duration()`)
/// into nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * unit;
    }
    if !total.is_finite() || total > 1e30 {
        return None;
    }
    Some(if neg { -(total as i128) } else { total as i128 })
}

/// Parses an RFC 3339 timestamp into nanoseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i128> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_nanosecond())
}

#[cfg(test)]
mod tests;
