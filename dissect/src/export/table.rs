//! A readable table of entries, one line each, for a terminal.

use super::terminal_safe;
use crate::entry::Entry;
use serde_json::Value;

/// The header line.
pub fn header() -> String {
    format!("{:<12} {:<5} {:<22} {:<22} {:<7} {:<40} {:>6} {:>9} {:>8}  {}", "TIME", "PROTO", "SOURCE", "DESTINATION", "METHOD", "PATH / NAME", "STATUS", "LATENCY", "SIZE", "NOTES")
}

fn cut(s: &str, w: usize) -> String {
    let s = terminal_safe(s);
    if s.chars().count() <= w {
        s
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// An end's name, or its address when it has no other name.
fn endpoint(e: &Value, side: &str) -> String {
    let ip = str_at(e, &format!("/{side}/ip"));
    let name = str_at(e, &format!("/{side}/name"));
    if !name.is_empty() && name != ip {
        return name.to_string();
    }
    let port = e.pointer(&format!("/{side}/port")).and_then(Value::as_u64).unwrap_or(0);
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// One entry as a line.
pub fn row(e: &Entry) -> String {
    row_json(&serde_json::to_value(e).unwrap_or_default())
}

/// One entry, in its JSON form (as the hub serves it), as a line.
pub fn row_json(e: &Value) -> String {
    let ts = str_at(e, "/timestamp");
    let time = ts.get(11..23).unwrap_or(ts);
    let question = |q: Option<&Value>| q.map(|q| (str_at(q, "/type").to_string(), str_at(q, "/name").to_string())).unwrap_or_default();
    let request = e.get("request").filter(|r| r.is_object());
    let response = e.get("response").filter(|r| r.is_object());
    let protocol = str_at(e, "/protocol");
    let (method, what) = match (protocol, request) {
        ("http", Some(r)) => (str_at(r, "/method").to_string(), str_at(r, "/url").to_string()),
        ("grpc", Some(r)) => ("RPC".into(), str_at(r, "/path").to_string()),
        ("dns", Some(r)) => question(r.pointer("/questions/0")),
        ("dns", None) if response.is_some() => question(response.and_then(|r| r.pointer("/questions/0"))),
        _ => ("-".into(), "-".into()),
    };
    let status = match (protocol, response) {
        ("dns", Some(r)) => str_at(r, "/rcode").to_string(),
        ("grpc", Some(r)) => {
            let code = r.get("status_code").and_then(Value::as_i64).unwrap_or(0);
            match r.get("grpc_status").and_then(Value::as_i64) {
                Some(g) => format!("{code} g{g}"),
                None => code.to_string(),
            }
        }
        (_, Some(r)) => r.get("status_code").and_then(Value::as_i64).unwrap_or(0).to_string(),
        (_, None) => "-".into(),
    };
    let latency = latency(e.get("elapsed_time").and_then(Value::as_u64));
    let n = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
    let size = human(n("request_size") + n("response_size"));
    let mut notes = String::new();
    for a in e.get("anomalies").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !notes.is_empty() {
            notes.push(',');
        }
        notes.push_str(a);
    }
    format!(
        "{:<12} {:<5} {:<22} {:<22} {:<7} {:<40} {:>6} {:>9} {:>8}  {}",
        cut(time, 12),
        cut(protocol, 5),
        cut(&endpoint(e, "src"), 22),
        cut(&endpoint(e, "dst"), 22),
        cut(&method, 7),
        cut(&what, 40),
        cut(&status, 8),
        latency,
        size,
        terminal_safe(&notes)
    )
}

/// A latency in µs as `830µs`, `1.2ms`, `2.31s` (`-` when there is none).
pub fn latency(us: Option<u64>) -> String {
    match us {
        Some(us) if us >= 1_000_000 => format!("{:.2}s", us as f64 / 1e6),
        Some(us) if us >= 1_000 => format!("{:.1}ms", us as f64 / 1e3),
        Some(us) => format!("{us}µs"),
        None => "-".into(),
    }
}

/// A size in bytes as `512B`, `1.5K`, `2.0M`.
pub fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1}M", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}K", n as f64 / 1024.0),
        n => format!("{n}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_never_reach_the_terminal() {
        let s = cut("/a\x1b]0;pwned\x07\r\x1b[2J\u{9b}31m", 200);
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert_eq!(s, "/a\\x1b]0;pwned\\x07\\x0d\\x1b[2J\\u{9b}31m");
    }
}
