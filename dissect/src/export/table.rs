//! A readable table of entries, one line each, for a terminal.

use super::terminal_safe;
use crate::entry::{Entry, Request, Response};
use std::fmt::Write;

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

fn endpoint(e: &crate::entry::Endpoint) -> String {
    if e.name == e.ip.to_string() {
        match e.ip {
            std::net::IpAddr::V6(_) => format!("[{}]:{}", e.ip, e.port),
            _ => format!("{}:{}", e.ip, e.port),
        }
    } else {
        e.name.clone()
    }
}

/// One entry as a line.
pub fn row(e: &Entry) -> String {
    let time = e.timestamp.to_string();
    let time = time.get(11..23).unwrap_or(&time).to_string();
    let question = |qs: &[crate::entry::DnsQuestion]| qs.first().map(|q| (q.qtype.clone(), q.name.clone())).unwrap_or_default();
    let (method, what) = match (&e.request, &e.response) {
        (Some(Request::Http(r)), _) => (r.method.clone(), r.url.clone()),
        (Some(Request::Grpc(r)), _) => ("RPC".into(), r.path.clone()),
        (Some(Request::Dns(r)), _) => question(&r.questions),
        (None, Some(Response::Dns(r))) => question(&r.questions),
        _ => ("-".into(), "-".into()),
    };
    let status = match &e.response {
        Some(Response::Http(r)) => r.status_code.to_string(),
        Some(Response::Grpc(r)) => match r.grpc_status {
            Some(g) => format!("{} g{g}", r.status_code),
            None => r.status_code.to_string(),
        },
        Some(Response::Dns(r)) => r.rcode.clone(),
        None => "-".into(),
    };
    let latency = match e.elapsed_time {
        Some(us) if us >= 1_000_000 => format!("{:.2}s", us as f64 / 1e6),
        Some(us) if us >= 1_000 => format!("{:.1}ms", us as f64 / 1e3),
        Some(us) => format!("{us}µs"),
        None => "-".into(),
    };
    let size = human(e.request_size + e.response_size);
    let mut notes = String::new();
    for a in &e.anomalies {
        if !notes.is_empty() {
            notes.push(',');
        }
        let _ = write!(notes, "{}", serde_json::to_value(a).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
    }
    format!(
        "{:<12} {:<5} {:<22} {:<22} {:<7} {:<40} {:>6} {:>9} {:>8}  {}",
        time,
        e.protocol.as_str(),
        cut(&endpoint(&e.src), 22),
        cut(&endpoint(&e.dst), 22),
        cut(&method, 7),
        cut(&what, 40),
        cut(&status, 8),
        latency,
        size,
        notes
    )
}

fn human(n: u64) -> String {
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
