//! One entry as a row of the live table: its columns worked out once, when it arrives,
//! from the entry's JSON, and made safe for a terminal (captured text never reaches it
//! with a control character in it).

use kshark_dissect::export::terminal_safe;
use serde_json::Value;

/// How a status reads: it sets the status column's colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ok,
    Redirect,
    ClientError,
    ServerError,
    /// No response, or a DNS or gRPC failure.
    Failed,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub time: String,
    pub protocol: String,
    pub method: String,
    /// Path, or the DNS name asked.
    pub what: String,
    pub status: String,
    pub class: Class,
    pub src: String,
    pub src_ns: String,
    pub dst: String,
    pub dst_ns: String,
    pub latency_us: Option<u64>,
    pub size: u64,
    pub anomalies: String,
    /// The entry itself, LZ4-compressed (a table of 100,000 entries would otherwise hold
    /// them whole, several hundred MB), for the detail pane and copying.
    packed: Box<[u8]>,
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// An end's name: pod, else service, else the name the worker gave, else address:port.
fn end(e: &Value, side: &str) -> (String, String) {
    let v = e.get(side).unwrap_or(&Value::Null);
    let ns = s(v, "/namespace").to_string();
    let name = [s(v, "/pod/name"), s(v, "/service/name"), s(v, "/name")].into_iter().find(|n| !n.is_empty()).unwrap_or("");
    let ip = s(v, "/ip");
    let name = if name.is_empty() || name == ip {
        let port = v.get("port").and_then(Value::as_u64).unwrap_or(0);
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    } else {
        name.to_string()
    };
    (terminal_safe(&name), terminal_safe(&ns))
}

impl Row {
    /// The row of an entry (its JSON); `None` when it is not an entry at all.
    pub fn of(json: &str) -> Option<Row> {
        let e: Value = serde_json::from_str(json).ok()?;
        e.as_object()?;
        let ts = s(&e, "/timestamp");
        let time = ts.get(11..23).unwrap_or(ts).to_string();
        let protocol = s(&e, "/protocol").to_string();
        let req = e.get("request").filter(|r| r.is_object());
        let resp = e.get("response").filter(|r| r.is_object());
        let question = |r: Option<&Value>| r.and_then(|r| r.pointer("/questions/0")).map(|q| (s(q, "/type").to_string(), s(q, "/name").to_string()));
        let (method, what) = match protocol.as_str() {
            "http" => req.map(|r| (s(r, "/method").to_string(), s(r, "/url").to_string())).unwrap_or_default(),
            "grpc" => req.map(|r| ("RPC".to_string(), s(r, "/path").to_string())).unwrap_or_default(),
            "dns" => question(req).or_else(|| question(resp)).unwrap_or_default(),
            // every other protocol: what was asked and of what (a command and its key, a
            // query and its table, an API and its topic)
            _ => req.map(|r| (s(r, "/method").to_string(), s(r, "/target").to_string())).unwrap_or_default(),
        };
        let schema1 = matches!(protocol.as_str(), "http" | "grpc" | "dns");
        let unanswered = e.get("anomalies").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x == "no_response"));
        let int = |r: &Value, k: &str| r.get(k).and_then(Value::as_i64);
        let (status, class) = match (protocol.as_str(), resp) {
            // a message that has no reply (a publish, a push, a WebSocket message)
            (_, None) if !schema1 && !unanswered => ("-".to_string(), Class::Ok),
            (_, None) => ("-".to_string(), Class::Failed),
            (_, Some(r)) if !schema1 => {
                let failed = r.get("error").is_some_and(|e| !e.is_null());
                (s(r, "/status").to_string(), if failed { Class::Failed } else { Class::Ok })
            }
            ("dns", Some(r)) => {
                let rc = s(r, "/rcode");
                (rc.to_string(), if matches!(rc, "NOERROR" | "NXDOMAIN") { Class::Ok } else { Class::Failed })
            }
            ("grpc", Some(r)) => match int(r, "grpc_status") {
                Some(0) => ("OK".to_string(), Class::Ok),
                Some(g) => (format!("grpc {g}"), Class::Failed),
                // trailers unread (joined mid-connection, or cut off): a 200 says nothing either way
                None if int(r, "status_code") == Some(200) => ("200 ?".to_string(), Class::Unknown),
                None => (int(r, "status_code").map_or("-".into(), |c| c.to_string()), Class::Failed),
            },
            (_, Some(r)) => match int(r, "status_code") {
                Some(c) => (
                    c.to_string(),
                    match c {
                        500.. => Class::ServerError,
                        400..=499 => Class::ClientError,
                        300..=399 => Class::Redirect,
                        100..=299 => Class::Ok,
                        _ => Class::Unknown,
                    },
                ),
                None => ("-".to_string(), Class::Unknown),
            },
        };
        let (src, src_ns) = end(&e, "src");
        let (dst, dst_ns) = end(&e, "dst");
        let n = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
        let anomalies = e.get("anomalies").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(",");
        Some(Row {
            time: terminal_safe(&time),
            protocol: terminal_safe(kshark_dissect::registry::short(&protocol)),
            method: terminal_safe(&method),
            what: terminal_safe(&what),
            status: terminal_safe(&status),
            class,
            src,
            src_ns,
            dst,
            dst_ns,
            latency_us: e.get("elapsed_time").and_then(Value::as_u64),
            size: n("request_size") + n("response_size"),
            anomalies: terminal_safe(&anomalies),
            packed: lz4_flex::compress_prepend_size(json.as_bytes()).into_boxed_slice(),
        })
    }

    /// The entry's JSON.
    pub fn json(&self) -> String {
        lz4_flex::decompress_size_prepended(&self.packed).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default()
    }

    pub fn is_error(&self) -> bool {
        matches!(self.class, Class::ServerError | Class::Failed)
    }
}

pub use kshark_dissect::export::table::{human as size, latency};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_protocols_show_method_target_and_status() {
        let r = Row::of(r#"{"protocol":"redis","request":{"method":"GET","target":"user:42"},"response":{"status":"OK","error":null},"anomalies":[]}"#).unwrap();
        assert_eq!((r.method.as_str(), r.what.as_str(), r.status.as_str(), r.class), ("GET", "user:42", "OK", Class::Ok));
        let r = Row::of(r#"{"protocol":"postgresql","request":{"method":"Query","target":"nope"},"response":{"status":"42P01","error":{"code":"42P01"}},"anomalies":[]}"#).unwrap();
        assert_eq!((r.status.as_str(), r.class), ("42P01", Class::Failed));
        // a message with no reply is not a failure; a command left unanswered is
        let r = Row::of(r#"{"protocol":"websocket","request":{"method":"text","target":"/chat"},"response":null,"anomalies":[]}"#).unwrap();
        assert_eq!(r.class, Class::Ok);
        let r = Row::of(r#"{"protocol":"redis","request":{"method":"GET","target":"k"},"response":null,"anomalies":["no_response"]}"#).unwrap();
        assert_eq!(r.class, Class::Failed);
    }

    #[test]
    fn a_grpc_call_without_a_readable_status_is_unknown_on_200_and_failed_otherwise() {
        let row = |resp: &str| Row::of(&format!(r#"{{"protocol":"grpc","request":{{"path":""}},"response":{resp}}}"#)).unwrap();
        let r = row(r#"{"status_code":200}"#);
        assert_eq!((r.status.as_str(), r.class), ("200 ?", Class::Unknown));
        assert!(!r.is_error());
        let r = row(r#"{"status_code":503}"#);
        assert_eq!((r.status.as_str(), r.class), ("503", Class::Failed));
        let r = row(r#"{"status_code":200,"grpc_status":0}"#);
        assert_eq!((r.status.as_str(), r.class), ("OK", Class::Ok));
    }
}
