//! Golden signals from stored entries: Prometheus counters and latency histograms per
//! source and destination workload, protocol and status (as Hubble's http and dns
//! metrics), and the service map: workloads, and the edges between them with request
//! rate, error ratio and p50/p95/p99 latency over a window.
//!
//! Windows count by the time the hub stored an entry, so a replayed capture shows up in
//! the last minutes' map as it would had it been live. An entry is an error when its HTTP
//! status is 5xx, its gRPC status is not OK, its DNS rcode is a failure other than
//! NXDOMAIN, or it got no response.

use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;

/// Latency histogram for Prometheus, seconds (Hubble's buckets plus finer low ones).
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Beyond this many label sets, new ones are counted under `other`.
const MAX_SERIES: usize = 20_000;
/// Service-map slots: 10 s each, an hour kept.
const SLOT_NS: i64 = 10_000_000_000;
const SLOTS: usize = 360;
/// Log-scale latency buckets for percentiles: 8 per doubling from 1 µs (±4.5%).
const LOG_BUCKETS: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub kind: String,
}

impl Workload {
    fn of(end: &Value) -> Workload {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let namespace = s(end.get("namespace"));
        if let Some(w) = end.pointer("/pod/workload").filter(|w| w.is_object()) {
            return Workload { namespace, name: s(w.get("name")), kind: s(w.get("kind")) };
        }
        if let Some(svc) = end.get("service").filter(|w| w.is_object()) {
            return Workload { namespace, name: s(svc.get("name")), kind: "Service".into() };
        }
        if let Some(p) = end.get("pod").filter(|w| w.is_object()) {
            return Workload { namespace, name: s(p.get("name")), kind: "Pod".into() };
        }
        Workload { namespace, name: s(end.get("name").or(end.get("ip"))), kind: "External".into() }
    }

    fn id(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: Workload,
    dst: Workload,
    protocol: String,
    status: String,
}

#[derive(Default)]
struct Series {
    count: u64,
    errors: u64,
    timed: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

struct Slot {
    start: i64,
    requests: u64,
    errors: u64,
    hist: Box<[u32; LOG_BUCKETS]>,
}

#[derive(Default)]
struct Edge {
    protocols: Vec<String>,
    slots: VecDeque<Slot>,
}

#[derive(Default)]
pub struct Metrics {
    series: HashMap<Key, Series>,
    pub series_overflow: u64,
    edges: HashMap<(Workload, Workload), Edge>,
}

/// What an entry's status is, as a label, and whether it is an error.
fn status(e: &Value) -> (String, bool) {
    let resp = e.get("response").filter(|r| r.is_object());
    let Some(r) = resp else { return ("none".into(), true) };
    match e.get("protocol").and_then(Value::as_str) {
        Some("grpc") => match r.get("grpc_status").and_then(Value::as_i64) {
            Some(g) => (g.to_string(), g != 0),
            None => (r.get("status_code").and_then(Value::as_i64).map_or("none".into(), |s| format!("http{s}")), true),
        },
        Some("dns") => {
            let rc = r.get("rcode").and_then(Value::as_str).unwrap_or("none");
            (rc.to_string(), !matches!(rc, "NOERROR" | "NXDOMAIN"))
        }
        _ => match r.get("status_code").and_then(Value::as_i64) {
            Some(s) => (s.to_string(), s >= 500),
            None => ("none".into(), true),
        },
    }
}

fn log_bucket(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    ((us as f64).log2() * 8.0).floor().clamp(0.0, (LOG_BUCKETS - 1) as f64) as usize
}

fn bucket_value_ms(i: usize) -> f64 {
    2f64.powf((i as f64 + 0.5) / 8.0) / 1000.0
}

impl Metrics {
    /// Counts one stored entry (its slim form), stored at `now` (ns).
    pub fn observe(&mut self, e: &Value, now: i64) {
        let src = Workload::of(e.get("src").unwrap_or(&Value::Null));
        let dst = Workload::of(e.get("dst").unwrap_or(&Value::Null));
        let protocol = e.get("protocol").and_then(Value::as_str).unwrap_or("unknown").to_string();
        let (status, error) = status(e);
        let elapsed = e.get("elapsed_time").and_then(Value::as_u64);
        let mut key = Key { src: src.clone(), dst: dst.clone(), protocol: protocol.clone(), status };
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
            self.series_overflow += 1;
            let other = Workload { name: "other".into(), ..Default::default() };
            key = Key { src: other.clone(), dst: other, protocol: protocol.clone(), status: "other".into() };
        }
        let s = self.series.entry(key).or_default();
        s.count += 1;
        s.errors += error as u64;
        if let Some(us) = elapsed {
            let secs = us as f64 / 1e6;
            s.timed += 1;
            s.sum += secs;
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    s.buckets[i] += 1;
                }
            }
        }
        let edge = self.edges.entry((src, dst)).or_default();
        if !edge.protocols.contains(&protocol) {
            edge.protocols.push(protocol);
        }
        let start = now - now.rem_euclid(SLOT_NS);
        if edge.slots.back().is_none_or(|s| s.start != start) {
            edge.slots.push_back(Slot { start, requests: 0, errors: 0, hist: Box::new([0; LOG_BUCKETS]) });
            while edge.slots.len() > SLOTS {
                edge.slots.pop_front();
            }
        }
        let slot = edge.slots.back_mut().expect("pushed above");
        slot.requests += 1;
        slot.errors += error as u64;
        if let Some(us) = elapsed {
            slot.hist[log_bucket(us)] += 1;
        }
    }

    /// The service map over the last `window` (ns, up to an hour) before `now`.
    pub fn service_map(&self, window: i64, now: i64) -> Value {
        let window = window.clamp(SLOT_NS, SLOT_NS * SLOTS as i64);
        let from = now - window;
        let mut nodes: HashMap<String, &Workload> = HashMap::new();
        let mut edges = Vec::new();
        for ((src, dst), e) in &self.edges {
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut hist = [0u64; LOG_BUCKETS];
            // a slot counts when it ends inside the window
            for s in e.slots.iter().filter(|s| s.start + SLOT_NS > from) {
                requests += s.requests;
                errors += s.errors;
                for (h, c) in hist.iter_mut().zip(s.hist.iter()) {
                    *h += *c as u64;
                }
            }
            if requests == 0 {
                continue;
            }
            nodes.insert(src.id(), src);
            nodes.insert(dst.id(), dst);
            let timed: u64 = hist.iter().sum();
            let pct = |p: f64| -> Value {
                if timed == 0 {
                    return Value::Null;
                }
                let rank = ((timed as f64) * p).ceil().max(1.0) as u64;
                let mut acc = 0;
                for (i, c) in hist.iter().enumerate() {
                    acc += c;
                    if acc >= rank {
                        return json!((bucket_value_ms(i) * 1000.0).round() / 1000.0);
                    }
                }
                Value::Null
            };
            edges.push(json!({
                "source": src.id(),
                "destination": dst.id(),
                "protocols": e.protocols,
                "requests": requests,
                "rate": requests as f64 / (window as f64 / 1e9),
                "errors": errors,
                "error_ratio": errors as f64 / requests as f64,
                "p50_ms": pct(0.50),
                "p95_ms": pct(0.95),
                "p99_ms": pct(0.99),
            }));
        }
        edges.sort_by(|a, b| (a["source"].as_str(), a["destination"].as_str()).cmp(&(b["source"].as_str(), b["destination"].as_str())));
        let mut nodes: Vec<Value> = nodes.into_iter().map(|(id, w)| json!({"id": id, "namespace": w.namespace, "name": w.name, "kind": w.kind})).collect();
        nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        json!({"window_seconds": window / 1_000_000_000, "nodes": nodes, "edges": edges})
    }

    /// Prometheus text: `kshark_requests_total`, `kshark_request_errors_total` and the
    /// `kshark_request_duration_seconds` histogram.
    pub fn prometheus(&self, out: &mut String) {
        let mut keys: Vec<&Key> = self.series.keys().collect();
        keys.sort_by(|a, b| (&a.src, &a.dst, &a.protocol, &a.status).cmp(&(&b.src, &b.dst, &b.protocol, &b.status)));
        let labels = |k: &Key| {
            format!(
                "source_namespace=\"{}\",source_workload=\"{}\",destination_namespace=\"{}\",destination_workload=\"{}\",protocol=\"{}\",status=\"{}\"",
                esc(&k.src.namespace),
                esc(&k.src.name),
                esc(&k.dst.namespace),
                esc(&k.dst.name),
                esc(&k.protocol),
                esc(&k.status)
            )
        };
        out.push_str("# HELP kshark_requests_total Requests seen (HTTP, gRPC calls, DNS queries), by source and destination workload, protocol and status.\n# TYPE kshark_requests_total counter\n");
        for k in &keys {
            let _ = writeln!(out, "kshark_requests_total{{{}}} {}", labels(k), self.series[*k].count);
        }
        out.push_str("# HELP kshark_request_errors_total Requests that failed (5xx, gRPC status not OK, DNS failure, no response).\n# TYPE kshark_request_errors_total counter\n");
        for k in &keys {
            let _ = writeln!(out, "kshark_request_errors_total{{{}}} {}", labels(k), self.series[*k].errors);
        }
        out.push_str("# HELP kshark_request_duration_seconds Time from the request's first byte to the response's last.\n# TYPE kshark_request_duration_seconds histogram\n");
        for k in &keys {
            let s = &self.series[*k];
            let l = labels(k);
            for (b, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "kshark_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {n}");
            }
            let _ = writeln!(out, "kshark_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}", s.timed);
            let _ = writeln!(out, "kshark_request_duration_seconds_sum{{{l}}} {}", s.sum);
            let _ = writeln!(out, "kshark_request_duration_seconds_count{{{l}}} {}", s.timed);
        }
    }
}

/// A Prometheus label value, escaped.
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(src: &str, dst: &str, status: i64, us: u64) -> Value {
        json!({"protocol": "http", "src": {"namespace": "ns", "pod": {"workload": {"kind": "Deployment", "name": src}}},
               "dst": {"namespace": "ns", "service": {"name": dst}}, "response": {"status_code": status}, "elapsed_time": us})
    }

    #[test]
    fn edges_carry_rate_errors_and_percentiles() {
        let mut m = Metrics::default();
        let now = 1_000 * SLOT_NS;
        for i in 0..100u64 {
            m.observe(&entry("front-end", "catalogue", if i < 10 { 503 } else { 200 }, 1000 * (i + 1)), now);
        }
        m.observe(&entry("front-end", "user", 200, 50), now - 2 * 3600 * 1_000_000_000);
        let map = m.service_map(60_000_000_000, now);
        let edges = map["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 1, "{map}");
        let e = &edges[0];
        assert_eq!((e["source"].as_str(), e["destination"].as_str()), (Some("ns/front-end"), Some("ns/catalogue")));
        assert_eq!(e["requests"], 100);
        assert_eq!(e["error_ratio"], 0.1);
        let p50 = e["p50_ms"].as_f64().unwrap();
        let p99 = e["p99_ms"].as_f64().unwrap();
        assert!((p50 - 50.0).abs() / 50.0 < 0.05, "{p50}");
        assert!((p99 - 99.0).abs() / 99.0 < 0.05, "{p99}");
        let mut text = String::new();
        m.prometheus(&mut text);
        assert!(text.contains("kshark_requests_total{source_namespace=\"ns\",source_workload=\"front-end\",destination_namespace=\"ns\",destination_workload=\"catalogue\",protocol=\"http\",status=\"503\"} 10"), "{text}");
        assert!(text.contains("status=\"200\",le=\"0.05\"} 40"), "{text}");
    }
}
