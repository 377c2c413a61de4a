//! Compiling the syntax tree into closures, and the values they compute. Names are
//! resolved here (protocol words, short names, entry fields, macro variables), literal
//! arguments are compiled once (regexes, durations, timestamps), and operand types are
//! checked where they are known before any entry is seen.

use super::parse::{Expr, Kind};
use super::{parse_duration, parse_timestamp, FilterError};
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;

pub struct Ctx<'a> {
    entry: &'a Value,
    now: i128,
    /// Variables bound by `exists`/`all`, innermost last.
    vars: Vec<Val<'a>>,
}

pub type Node = Box<dyn for<'a> Fn(&Ctx<'a>) -> Val<'a> + Send + Sync>;

fn node<F>(f: F) -> Node
where
    F: for<'a> Fn(&Ctx<'a>) -> Val<'a> + Send + Sync + 'static,
{
    Box::new(f)
}

#[derive(Clone, Debug)]
pub enum Val<'a> {
    /// A field the entry lacks (or JSON null): the zero value of whatever it meets.
    Absent,
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Cow<'a, str>),
    List(Vec<Val<'a>>),
    /// An object or array of the entry, read in place.
    Json(&'a Value),
    /// Nanoseconds since the epoch.
    Time(i128),
    /// Nanoseconds.
    Dur(i128),
    /// An evaluation error (CEL's error value).
    Err,
}

/// What an expression is known to be before evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Int,
    Double,
    Str,
    List,
    Map,
    Time,
    Dur,
    Null,
    Dyn,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a bool",
            Ty::Int => "an int",
            Ty::Double => "a double",
            Ty::Str => "a string",
            Ty::List => "a list",
            Ty::Map => "a map",
            Ty::Time => "a timestamp",
            Ty::Dur => "a duration",
            Ty::Null => "null",
            Ty::Dyn => "a value",
        }
    }
    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Double)
    }
    /// Whether values of the two types can be compared.
    fn meets(self, o: Ty) -> bool {
        self == Ty::Dyn || o == Ty::Dyn || self == o || (self.numeric() && o.numeric())
    }
}

fn from_json(v: Option<&Value>) -> Val<'_> {
    match v {
        None | Some(Value::Null) => Val::Absent,
        Some(Value::Bool(b)) => Val::Bool(*b),
        Some(Value::Number(n)) => n.as_i64().map(Val::Int).unwrap_or_else(|| Val::Double(n.as_f64().unwrap_or(f64::NAN))),
        Some(Value::String(s)) => Val::Str(Cow::Borrowed(s)),
        Some(v) => Val::Json(v),
    }
}

fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(k))
}

fn truth(v: &Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        Val::Absent => Some(false),
        _ => None,
    }
}

/// The items of a list value (a JSON array is read in place).
fn items<'a>(v: &Val<'a>) -> Option<Vec<Val<'a>>> {
    match v {
        Val::List(l) => Some(l.clone()),
        Val::Json(Value::Array(a)) => Some(a.iter().map(Some).map(from_json).collect()),
        Val::Absent => Some(Vec::new()),
        _ => None,
    }
}

/// `a`, with an absent value turned into the zero of `b`'s kind.
fn zero_like<'a>(a: &Val<'a>, b: &Val<'_>) -> Val<'a> {
    if !matches!(a, Val::Absent) {
        return a.clone();
    }
    match b {
        Val::Bool(_) => Val::Bool(false),
        Val::Int(_) => Val::Int(0),
        Val::Double(_) => Val::Double(0.0),
        Val::Str(_) => Val::Str(Cow::Borrowed("")),
        Val::List(_) | Val::Json(Value::Array(_)) => Val::List(Vec::new()),
        Val::Time(_) => Val::Time(0),
        Val::Dur(_) => Val::Dur(0),
        _ => Val::Absent,
    }
}

fn equal(a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    let (a, b) = (zero_like(a, b), zero_like(b, a));
    Some(match (&a, &b) {
        (Val::Err, _) | (_, Val::Err) => return None,
        (Val::Absent | Val::Null, Val::Absent | Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Time(x), Val::Time(y)) | (Val::Dur(x), Val::Dur(y)) => x == y,
        (Val::Json(x), Val::Json(y)) => x == y,
        (Val::List(_) | Val::Json(Value::Array(_)), Val::List(_) | Val::Json(Value::Array(_))) => {
            let (x, y) = (items(&a)?, items(&b)?);
            x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| equal(p, q) == Some(true))
        }
        _ => compare(&a, &b) == Some(Ordering::Equal),
    })
}

fn compare(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    let (a, b) = (zero_like(a, b), zero_like(b, a));
    match (&a, &b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Double(y)) => (*x as f64).partial_cmp(y),
        (Val::Double(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Time(x), Val::Time(y)) | (Val::Dur(x), Val::Dur(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn as_str<'b>(v: &'b Val<'_>) -> Option<&'b str> {
    match v {
        Val::Str(s) => Some(s),
        Val::Absent => Some(""),
        _ => None,
    }
}

fn size(v: &Val<'_>) -> Val<'static> {
    match v {
        Val::Str(s) => Val::Int(s.chars().count() as i64),
        Val::List(l) => Val::Int(l.len() as i64),
        Val::Json(Value::Array(a)) => Val::Int(a.len() as i64),
        Val::Json(Value::Object(o)) => Val::Int(o.len() as i64),
        Val::Absent => Val::Int(0),
        _ => Val::Err,
    }
}

pub fn always() -> Node {
    node(|_| Val::Bool(true))
}

pub fn run(root: &Node, entry: &Value, now: i128) -> bool {
    let c = Ctx { entry, now, vars: Vec::new() };
    matches!(root(&c), Val::Bool(true))
}

pub fn compile_root(e: &Expr) -> Result<Node, FilterError> {
    let (n, ty) = compile(e, &mut Vec::new())?;
    if !matches!(ty, Ty::Bool | Ty::Dyn) {
        return Err(FilterError::new(format!("a filter must be true or false; this is {}", ty.name()), e.pos));
    }
    Ok(n)
}

/// Short names (KFL2 style), the protocol words, and the entry's own top-level fields.
const NAMES: &[&str] = &[
    "http", "grpc", "dns", "tcp", "udp", "method", "path", "url", "status_code", "grpc_service", "grpc_method", "grpc_status", "dns_questions",
    "dns_answers", "dns_rcode", "elapsed_time", "namespaces", "pods", "services", "node", "id", "timestamp", "protocol", "http_version",
    "transport", "src", "dst", "request", "response", "request_size", "response_size", "capture_source", "conn_id", "anomalies",
    "nodes", "observed", "server_elapsed_time", "network_time", "tls",
];

/// A filter word that names a protocol (every name in the dissector's registry, and `ws`
/// for WebSocket): the entry's `protocol` it stands for.
pub fn protocol_word(n: &str) -> Option<&'static str> {
    if n == "ws" {
        return Some("websocket");
    }
    kshark_dissect::registry::names().into_iter().find(|p| *p == n)
}

fn is_grpc(e: &Value) -> bool {
    e.get("protocol").and_then(Value::as_str) == Some("grpc")
}

/// A list of strings picked from the entry, trailing dots of DNS names dropped.
fn strings<'a>(picked: impl Iterator<Item = Option<&'a Value>>) -> Val<'a> {
    let mut out: Vec<Val<'a>> = Vec::new();
    for s in picked.flatten().filter_map(Value::as_str) {
        let s = if s.len() > 1 { s.strip_suffix('.').unwrap_or(s) } else { s };
        if !out.iter().any(|v| matches!(v, Val::Str(x) if x == s)) {
            out.push(Val::Str(Cow::Borrowed(s)));
        }
    }
    Val::List(out)
}

fn name(n: &str, pos: usize, scope: &[String]) -> Result<(Node, Ty), FilterError> {
    if let Some(i) = scope.iter().rposition(|v| v == n) {
        return Ok((node(move |c| c.vars.get(i).cloned().unwrap_or(Val::Err)), Ty::Dyn));
    }
    if let Some(p) = protocol_word(n) {
        return Ok((node(move |c| Val::Bool(c.entry.get("protocol").and_then(Value::as_str) == Some(p))), Ty::Bool));
    }
    // the name as a 'static str, for closures that outlive the filter's text
    let Some(&n) = NAMES.iter().find(|k| **k == n) else {
        let near = NAMES.iter().chain(FUNCTIONS).filter(|k| edit_distance(k, n) <= 2).min_by_key(|k| edit_distance(k, n));
        let hint = near.map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
        return Err(FilterError::new(format!("unknown name `{n}`{hint}"), pos));
    };
    let field = |keys: &'static [&'static str], ty: Ty| -> (Node, Ty) { (node(move |c| from_json(path(c.entry, keys))), ty) };
    let word = |key: &'static str, want: &'static str| -> (Node, Ty) { (node(move |c| Val::Bool(c.entry.get(key).and_then(Value::as_str) == Some(want))), Ty::Bool) };
    Ok(match n {
        "http" | "grpc" | "dns" => word("protocol", n),
        // read as plaintext from a TLS library
        "tls" => word("capture_source", "ebpf_tls"),
        "tcp" => word("transport", "tcp"),
        "udp" => word("transport", "udp"),
        // gRPC calls are HTTP/2 POSTs: `method` is the HTTP method for both
        "method" => (node(|c| if is_grpc(c.entry) { Val::Str(Cow::Borrowed("POST")) } else { from_json(path(c.entry, &["request", "method"])) }), Ty::Str),
        // what a request is about: an HTTP path, or another protocol's target (a key, a
        // table, a topic)
        "path" => (node(|c| from_json(path(c.entry, &["request", "path"]).or_else(|| path(c.entry, &["request", "target"])))), Ty::Str),
        "url" => (node(|c| from_json(path(c.entry, &["request", "url"]).or_else(|| path(c.entry, &["request", "path"])))), Ty::Str),
        "status_code" => field(&["response", "status_code"], Ty::Int),
        "grpc_service" | "grpc_method" => {
            let key: &'static str = if n == "grpc_service" { "service" } else { "method" };
            (node(move |c| if is_grpc(c.entry) { from_json(path(c.entry, &["request", key])) } else { Val::Absent }), Ty::Str)
        }
        "grpc_status" => field(&["response", "grpc_status"], Ty::Int),
        "dns_questions" => (node(|c| strings(path(c.entry, &["request", "questions"]).and_then(Value::as_array).into_iter().flatten().map(|q| q.get("name")))), Ty::List),
        "dns_answers" => (node(|c| strings(path(c.entry, &["response", "answers"]).and_then(Value::as_array).into_iter().flatten().map(|q| q.get("data")))), Ty::List),
        "dns_rcode" => field(&["response", "rcode"], Ty::Str),
        // the nodes whose workers saw it (two when a call crossed nodes; see the hub's join)
        "nodes" => (
            node(|c| match c.entry.get("nodes").and_then(Value::as_array) {
                Some(a) => strings(a.iter().map(Some)),
                None => strings(std::iter::once(c.entry.get("node"))),
            }),
            Ty::List,
        ),
        "elapsed_time" | "request_size" | "response_size" | "server_elapsed_time" | "network_time" => (node(move |c| from_json(c.entry.get(n))), Ty::Int),
        "namespaces" => (node(|c| strings([path(c.entry, &["src", "namespace"]), path(c.entry, &["dst", "namespace"])].into_iter())), Ty::List),
        "pods" => (node(|c| strings([path(c.entry, &["src", "pod", "name"]), path(c.entry, &["dst", "pod", "name"])].into_iter())), Ty::List),
        "services" => (node(|c| strings([path(c.entry, &["src", "service", "name"]), path(c.entry, &["dst", "service", "name"])].into_iter())), Ty::List),
        "timestamp" => (node(|c| c.entry.get("timestamp").and_then(Value::as_str).and_then(parse_timestamp).map_or(Val::Absent, Val::Time)), Ty::Time),
        "anomalies" => field(&["anomalies"], Ty::List),
        "src" | "dst" | "request" | "response" => (node(move |c| from_json(c.entry.get(n))), Ty::Map),
        // "node", "id", "protocol", "http_version", "transport", "capture_source", "conn_id"
        _ => (node(move |c| from_json(c.entry.get(n))), Ty::Str),
    })
}

const FUNCTIONS: &[&str] = &[
    "size", "contains", "startsWith", "endsWith", "matches", "lowerAscii", "upperAscii", "int", "double", "string", "has", "now", "duration",
    "timestamp", "exists", "all",
];

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn compile(e: &Expr, scope: &mut Vec<String>) -> Result<(Node, Ty), FilterError> {
    Ok(match &e.kind {
        Kind::Null => (node(|_| Val::Null), Ty::Null),
        Kind::Bool(b) => {
            let b = *b;
            (node(move |_| Val::Bool(b)), Ty::Bool)
        }
        Kind::Int(n) => {
            let n = *n;
            (node(move |_| Val::Int(n)), Ty::Int)
        }
        Kind::Double(x) => {
            let x = *x;
            (node(move |_| Val::Double(x)), Ty::Double)
        }
        Kind::Str(s) => {
            let s = s.clone();
            (node(move |_| Val::Str(Cow::Owned(s.clone()))), Ty::Str)
        }
        Kind::List(xs) => {
            let parts = xs.iter().map(|x| compile(x, scope).map(|(n, _)| n)).collect::<Result<Vec<_>, _>>()?;
            (node(move |c| Val::List(parts.iter().map(|p| p(c)).collect())), Ty::List)
        }
        Kind::Ident(n) => name(n, e.pos, scope)?,
        Kind::Member(target, field) => {
            let (t, ty) = compile(target, scope)?;
            if !matches!(ty, Ty::Map | Ty::Dyn) {
                return Err(FilterError::new(format!("`.{field}`: {} has no fields", ty.name()), e.pos));
            }
            let field = field.clone();
            (node(move |c| member(t(c), &field)), Ty::Dyn)
        }
        Kind::Index(target, index) => {
            let (t, _) = compile(target, scope)?;
            let (i, _) = compile(index, scope)?;
            (
                node(move |c| match (t(c), i(c)) {
                    (Val::Json(Value::Object(o)), Val::Str(k)) => from_json(o.get(k.as_ref())),
                    (Val::Json(Value::Array(a)), Val::Int(n)) => usize::try_from(n).ok().map_or(Val::Absent, |n| from_json(a.get(n))),
                    (Val::List(l), Val::Int(n)) => usize::try_from(n).ok().and_then(|n| l.get(n).cloned()).unwrap_or(Val::Absent),
                    (Val::Err, _) | (_, Val::Err) => Val::Err,
                    _ => Val::Absent,
                }),
                Ty::Dyn,
            )
        }
        Kind::Unary(op, x) => {
            let (x, ty) = compile(x, scope)?;
            if *op == "!" {
                need_bool(ty, "`!`", e.pos)?;
                (node(move |c| truth(&x(c)).map_or(Val::Err, |b| Val::Bool(!b))), Ty::Bool)
            } else {
                (
                    node(move |c| match x(c) {
                        Val::Int(n) => n.checked_neg().map_or(Val::Err, Val::Int),
                        Val::Double(n) => Val::Double(-n),
                        Val::Dur(n) => Val::Dur(-n),
                        _ => Val::Err,
                    }),
                    ty,
                )
            }
        }
        Kind::Cond(c0, a, b) => {
            let (c0, ty) = compile(c0, scope)?;
            need_bool(ty, "`? :`", e.pos)?;
            let (a, ta) = compile(a, scope)?;
            let (b, tb) = compile(b, scope)?;
            let ty = if ta == tb { ta } else { Ty::Dyn };
            (
                node(move |c| match truth(&c0(c)) {
                    Some(true) => a(c),
                    Some(false) => b(c),
                    None => Val::Err,
                }),
                ty,
            )
        }
        Kind::Binary(op, l, r) => binary(op, l, r, e.pos, scope)?,
        Kind::Logic(op, terms) => logic(op, terms, scope)?,
        Kind::Call(target, f, args) => super::eval::call(target.as_deref(), f, args, e.pos, scope)?,
    })
}

fn member<'a>(v: Val<'a>, field: &str) -> Val<'a> {
    match v {
        Val::Json(Value::Object(o)) => from_json(o.get(field)),
        Val::Err => Val::Err,
        _ => Val::Absent,
    }
}

fn need_bool(ty: Ty, what: &str, pos: usize) -> Result<(), FilterError> {
    if matches!(ty, Ty::Bool | Ty::Dyn) {
        Ok(())
    } else {
        Err(FilterError::new(format!("{what} needs true or false; this is {}", ty.name()), pos))
    }
}

fn binary(op: &'static str, l: &Expr, r: &Expr, pos: usize, scope: &mut Vec<String>) -> Result<(Node, Ty), FilterError> {
    let (a, ta) = compile(l, scope)?;
    let (b, tb) = compile(r, scope)?;
    let n = match op {
        "==" | "!=" => {
            if !(ta.meets(tb) || ta == Ty::Null || tb == Ty::Null) {
                return Err(FilterError::new(format!("`{op}` compares {} with {}: they are never equal", ta.name(), tb.name()), pos));
            }
            let ne = op == "!=";
            node(move |c| equal(&a(c), &b(c)).map_or(Val::Err, |eq| Val::Bool(eq != ne)))
        }
        "<" | "<=" | ">" | ">=" => {
            if !ta.meets(tb) || matches!(ta, Ty::List | Ty::Map | Ty::Null) || matches!(tb, Ty::List | Ty::Map | Ty::Null) {
                return Err(FilterError::new(format!("`{op}` cannot order {} and {}", ta.name(), tb.name()), pos));
            }
            let want: fn(Ordering) -> bool = match op {
                "<" => Ordering::is_lt,
                "<=" => Ordering::is_le,
                ">" => Ordering::is_gt,
                _ => Ordering::is_ge,
            };
            node(move |c| {
                let (x, y) = (a(c), b(c));
                match compare(&x, &y) {
                    Some(o) => Val::Bool(want(o)),
                    None if matches!(x, Val::Err) || matches!(y, Val::Err) => Val::Err,
                    None => Val::Bool(false),
                }
            })
        }
        "in" => {
            if !matches!(tb, Ty::List | Ty::Map | Ty::Dyn) {
                return Err(FilterError::new(format!("`in` needs a list or a map on its right; this is {}", tb.name()), r.pos));
            }
            node(move |c| {
                let (x, y) = (a(c), b(c));
                match &y {
                    Val::Json(Value::Object(o)) => Val::Bool(as_str(&x).is_some_and(|k| o.contains_key(k))),
                    Val::Err => Val::Err,
                    _ => match items(&y) {
                        Some(list) => Val::Bool(list.iter().any(|v| equal(&x, v) == Some(true))),
                        None => Val::Err,
                    },
                }
            })
        }
        _ => return arith(op, a, ta, b, tb, pos),
    };
    Ok((n, Ty::Bool))
}

/// `a && b && ...` / `a || b || ...`, with CEL's commutative error handling: a term
/// that decides (false for &&, true for ||) wins over an error in any other term.
fn logic(op: &'static str, terms: &[Expr], scope: &mut Vec<String>) -> Result<(Node, Ty), FilterError> {
    let mut parts = Vec::with_capacity(terms.len());
    for t in terms {
        let (n, ty) = compile(t, scope)?;
        need_bool(ty, &format!("`{op}`"), t.pos)?;
        parts.push(n);
    }
    let decides = op == "||";
    Ok((
        node(move |c| {
            let mut failed = false;
            for p in &parts {
                match truth(&p(c)) {
                    Some(b) if b == decides => return Val::Bool(decides),
                    Some(_) => {}
                    None => failed = true,
                }
            }
            if failed {
                Val::Err
            } else {
                Val::Bool(!decides)
            }
        }),
        Ty::Bool,
    ))
}

fn arith(op: &'static str, a: Node, ta: Ty, b: Node, tb: Ty, pos: usize) -> Result<(Node, Ty), FilterError> {
    let ty = match (ta, tb) {
        (Ty::Time, Ty::Time) if op == "-" => Ty::Dur,
        (Ty::Time, Ty::Dur) | (Ty::Dur, Ty::Time) if op == "+" || op == "-" => Ty::Time,
        (Ty::Str, Ty::Str) | (Ty::List, Ty::List) if op == "+" => ta,
        (x, y) if x == y && (x.numeric() || x == Ty::Dur) => x,
        (x, y) if x.numeric() && y.numeric() => Ty::Double,
        (Ty::Dyn, _) | (_, Ty::Dyn) => Ty::Dyn,
        _ => return Err(FilterError::new(format!("`{op}` does not apply to {} and {}", ta.name(), tb.name()), pos)),
    };
    let n = node(move |c| {
        let (x, y) = (a(c), b(c));
        let (x, y) = (zero_like(&x, &y), zero_like(&y, &x));
        let int = |f: fn(i64, i64) -> Option<i64>, p: i64, q: i64| f(p, q).map_or(Val::Err, Val::Int);
        match (op, x, y) {
            ("+", Val::Int(p), Val::Int(q)) => int(i64::checked_add, p, q),
            ("-", Val::Int(p), Val::Int(q)) => int(i64::checked_sub, p, q),
            ("*", Val::Int(p), Val::Int(q)) => int(i64::checked_mul, p, q),
            ("/", Val::Int(p), Val::Int(q)) => int(i64::checked_div, p, q),
            ("%", Val::Int(p), Val::Int(q)) => int(i64::checked_rem, p, q),
            (_, Val::Int(p), Val::Double(q)) => float(op, p as f64, q),
            (_, Val::Double(p), Val::Int(q)) => float(op, p, q as f64),
            (_, Val::Double(p), Val::Double(q)) => float(op, p, q),
            ("+", Val::Str(p), Val::Str(q)) => Val::Str(Cow::Owned(format!("{p}{q}"))),
            ("+", Val::List(mut p), Val::List(q)) => {
                p.extend(q);
                Val::List(p)
            }
            ("-", Val::Time(p), Val::Time(q)) => Val::Dur(p - q),
            ("+", Val::Time(p), Val::Dur(q)) | ("+", Val::Dur(q), Val::Time(p)) => Val::Time(p + q),
            ("-", Val::Time(p), Val::Dur(q)) => Val::Time(p - q),
            ("+", Val::Dur(p), Val::Dur(q)) => Val::Dur(p + q),
            ("-", Val::Dur(p), Val::Dur(q)) => Val::Dur(p - q),
            _ => Val::Err,
        }
    });
    Ok((n, ty))
}

fn float(op: &str, p: f64, q: f64) -> Val<'static> {
    Val::Double(match op {
        "+" => p + q,
        "-" => p - q,
        "*" => p * q,
        "/" => p / q,
        _ => p % q,
    })
}

fn arity(f: &str, args: &[Expr], n: usize, pos: usize) -> Result<(), FilterError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FilterError::new(format!("`{f}` takes {n} argument{}, not {}", if n == 1 { "" } else { "s" }, args.len()), pos))
    }
}

fn literal_str(e: &Expr) -> Option<&str> {
    match &e.kind {
        Kind::Str(s) => Some(s),
        _ => None,
    }
}

/// Bytes a compiled pattern may take, and its lazy DFA's cache: with at most
/// [`super::MAX_REGEXES`] patterns a filter, a filter's regexes hold a few MiB at most.
pub const REGEX_BYTES: usize = 256 << 10;

fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern).size_limit(REGEX_BYTES).dfa_size_limit(REGEX_BYTES).build().map_err(|e| e.to_string().lines().last().unwrap_or("bad regex").trim().to_string())
}

pub fn call(target: Option<&Expr>, f: &str, args: &[Expr], pos: usize, scope: &mut Vec<String>) -> Result<(Node, Ty), FilterError> {
    // macros: their first argument is a variable name, not a value
    if let (Some(t), "exists" | "all") = (target, f) {
        arity(f, args, 2, pos)?;
        let Kind::Ident(var) = &args[0].kind else {
            return Err(FilterError::new(format!("`{f}(x, predicate)` needs a variable name first"), args[0].pos));
        };
        let (list, _) = compile(t, scope)?;
        scope.push(var.clone());
        let pred = compile(&args[1], scope);
        scope.pop();
        let (pred, ty) = pred?;
        need_bool(ty, &format!("`{f}`"), args[1].pos)?;
        let all = f == "all";
        return Ok((
            node(move |c| {
                let Some(xs) = items(&list(c)) else { return Val::Err };
                let mut inner = Ctx { entry: c.entry, now: c.now, vars: c.vars.clone() };
                inner.vars.push(Val::Absent);
                for x in xs {
                    *inner.vars.last_mut().expect("pushed") = x;
                    match truth(&pred(&inner)) {
                        Some(b) if b != all => return Val::Bool(!all),
                        Some(_) => {}
                        None => return Val::Err,
                    }
                }
                Val::Bool(all)
            }),
            Ty::Bool,
        ));
    }
    if f == "has" && target.is_none() {
        arity(f, args, 1, pos)?;
        if !matches!(args[0].kind, Kind::Member(..)) {
            return Err(FilterError::new("`has()` takes a field, such as has(response.grpc_status)", args[0].pos));
        }
        let (x, _) = compile(&args[0], scope)?;
        return Ok((node(move |c| Val::Bool(!matches!(x(c), Val::Absent | Val::Err))), Ty::Bool));
    }
    // constants compiled once
    match (target, f) {
        (None, "now") => {
            arity(f, args, 0, pos)?;
            return Ok((node(|c| Val::Time(c.now)), Ty::Time));
        }
        (None, "duration") | (None, "timestamp") => {
            arity(f, args, 1, pos)?;
            let Some(s) = literal_str(&args[0]) else {
                return Err(FilterError::new(format!("`{f}()` takes a quoted literal"), args[0].pos));
            };
            let v = if f == "duration" {
                parse_duration(s).map(Val::Dur).ok_or_else(|| FilterError::new(format!("bad duration {s:?} (e.g. \"5m\", \"1h30m\", \"250ms\")"), args[0].pos))?
            } else {
                parse_timestamp(s).map(Val::Time).ok_or_else(|| FilterError::new(format!("bad timestamp {s:?} (RFC 3339, e.g. \"2026-01-01T00:00:00Z\")"), args[0].pos))?
            };
            let ty = if f == "duration" { Ty::Dur } else { Ty::Time };
            let v: Val<'static> = v;
            return Ok((node(move |_| v.clone()), ty));
        }
        _ => {}
    }
    // the rest: a receiver (x.f() or f(x)) and arguments
    let (recv, rest): (&Expr, &[Expr]) = match target {
        Some(t) => (t, args),
        None if !args.is_empty() => (&args[0], &args[1..]),
        None => return Err(FilterError::new(format!("`{f}()` needs an argument"), pos)),
    };
    let (x, tx) = compile(recv, scope)?;
    let want_str = |what: &str| -> Result<(), FilterError> {
        if matches!(tx, Ty::Str | Ty::Dyn) {
            Ok(())
        } else {
            Err(FilterError::new(format!("`{what}` applies to a string; this is {}", tx.name()), recv.pos))
        }
    };
    Ok(match f {
        "size" => {
            arity(f, rest, 0, pos)?;
            (node(move |c| size(&x(c))), Ty::Int)
        }
        "contains" | "startsWith" | "endsWith" => {
            arity(f, rest, 1, pos)?;
            if tx == Ty::List && f == "contains" {
                // a convenience: pods.contains("x") is "x" in pods
                let (y, _) = compile(&rest[0], scope)?;
                return Ok((node(move |c| items(&x(c)).map_or(Val::Err, |l| Val::Bool(l.iter().any(|v| equal(&y(c), v) == Some(true))))), Ty::Bool));
            }
            want_str(f)?;
            let (y, ty) = compile(&rest[0], scope)?;
            if !matches!(ty, Ty::Str | Ty::Dyn) {
                return Err(FilterError::new(format!("`{f}` takes a string; this is {}", ty.name()), rest[0].pos));
            }
            let op: fn(&str, &str) -> bool = match f {
                "contains" => |a, b| a.contains(b),
                "startsWith" => |a, b| a.starts_with(b),
                _ => |a, b| a.ends_with(b),
            };
            (
                node(move |c| {
                    let (p, q) = (x(c), y(c));
                    match (as_str(&p), as_str(&q)) {
                        (Some(p), Some(q)) => Val::Bool(op(p, q)),
                        _ => Val::Err,
                    }
                }),
                Ty::Bool,
            )
        }
        "matches" => {
            arity(f, rest, 1, pos)?;
            want_str(f)?;
            // a pattern made from the entry would be compiled once per entry, at a cost
            // nobody bounded (one regex can take a megabyte and a second): refused
            let Some(p) = literal_str(&rest[0]) else {
                return Err(FilterError::new("`matches()` takes a quoted pattern, not one built from the entry", rest[0].pos));
            };
            let re = regex(p).map_err(|e| FilterError::new(format!("bad regex: {e}"), rest[0].pos))?;
            (node(move |c| as_str(&x(c)).map_or(Val::Err, |s| Val::Bool(re.is_match(s)))), Ty::Bool)
        }
        "lowerAscii" | "upperAscii" => {
            arity(f, rest, 0, pos)?;
            want_str(f)?;
            let up = f == "upperAscii";
            (
                node(move |c| match as_str(&x(c)) {
                    Some(s) => Val::Str(Cow::Owned(if up { s.to_ascii_uppercase() } else { s.to_ascii_lowercase() })),
                    None => Val::Err,
                }),
                Ty::Str,
            )
        }
        "int" | "double" | "string" => {
            arity(f, rest, 0, pos)?;
            let to = f.to_string();
            let ty = match f {
                "int" => Ty::Int,
                "double" => Ty::Double,
                _ => Ty::Str,
            };
            (node(move |c| convert(x(c), &to)), ty)
        }
        _ => {
            let near = FUNCTIONS.iter().filter(|k| edit_distance(k, f) <= 2).min_by_key(|k| edit_distance(k, f));
            let hint = near.map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
            return Err(FilterError::new(format!("unknown function `{f}`{hint}"), pos));
        }
    })
}

fn convert<'a>(v: Val<'a>, to: &str) -> Val<'a> {
    match (to, v) {
        (_, Val::Err) => Val::Err,
        ("int", Val::Int(n)) => Val::Int(n),
        ("int", Val::Double(d)) if d.is_finite() && d.abs() < 9.2e18 => Val::Int(d.trunc() as i64),
        ("int", Val::Str(s)) => s.trim().parse().map_or(Val::Err, Val::Int),
        ("int", Val::Time(t)) => Val::Int((t / 1_000_000_000) as i64),
        ("int", Val::Absent) => Val::Int(0),
        ("double", Val::Int(n)) => Val::Double(n as f64),
        ("double", Val::Double(d)) => Val::Double(d),
        ("double", Val::Str(s)) => s.trim().parse().map_or(Val::Err, Val::Double),
        ("double", Val::Absent) => Val::Double(0.0),
        ("string", Val::Str(s)) => Val::Str(s),
        ("string", Val::Int(n)) => Val::Str(Cow::Owned(n.to_string())),
        ("string", Val::Double(d)) => Val::Str(Cow::Owned(d.to_string())),
        ("string", Val::Bool(b)) => Val::Str(Cow::Borrowed(if b { "true" } else { "false" })),
        ("string", Val::Absent) => Val::Str(Cow::Borrowed("")),
        _ => Val::Err,
    }
}
