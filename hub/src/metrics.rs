//! Golden signals from stored entries: Prometheus counters and latency histograms per
//! source and destination workload, protocol and status (as Hubble's http and dns
//! metrics), and the service map: workloads, and the edges between them with request
//! rate, error ratio and p50/p95/p99 latency over a window.
//!
//! Windows count by the time the hub stored an entry, so a replayed capture shows up in
//! the last minutes' map as it would had it been live. An entry is an error when its HTTP
//! status is 5xx, its gRPC status is not OK (or unknown with an HTTP status other than
//! 200), its DNS rcode is a failure other than NXDOMAIN, or it got no response.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
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
    fn of(end: Option<&End<'_>>) -> Workload {
        let Some(end) = end else { return Workload { kind: "External".into(), ..Default::default() } };
        let namespace = text(end.namespace);
        fn obj(v: Option<&RawValue>) -> Option<&RawValue> {
            v.filter(|v| v.get().starts_with('{'))
        }
        let pod: Option<Pod> = obj(end.pod).and_then(|p| serde_json::from_str(p.get()).ok());
        if let Some(w) = pod.as_ref().and_then(|p| obj(p.workload)).and_then(|w| serde_json::from_str::<Named>(w.get()).ok()) {
            return Workload { namespace, name: text(w.name), kind: text(w.kind) };
        }
        if let Some(svc) = obj(end.service).and_then(|s| serde_json::from_str::<Named>(s.get()).ok()) {
            return Workload { namespace, name: text(svc.name), kind: "Service".into() };
        }
        if let Some(p) = pod {
            return Workload { namespace, name: text(p.name), kind: "Pod".into() };
        }
        Workload { namespace, name: text(end.name.or(end.ip)), kind: "External".into() }
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

/// The fields of a slim entry the metrics read, each left raw so that one of the wrong
/// type reads as absent (as in the filter language) rather than failing the entry.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    protocol: Option<&'a RawValue>,
    #[serde(borrow)]
    src: Option<&'a RawValue>,
    #[serde(borrow)]
    dst: Option<&'a RawValue>,
    #[serde(borrow)]
    elapsed_time: Option<&'a RawValue>,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
    #[serde(borrow)]
    anomalies: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct End<'a> {
    #[serde(borrow)]
    namespace: Option<&'a RawValue>,
    #[serde(borrow)]
    pod: Option<&'a RawValue>,
    #[serde(borrow)]
    service: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    ip: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Pod<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    workload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    kind: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    status_code: Option<&'a RawValue>,
    #[serde(borrow)]
    grpc_status: Option<&'a RawValue>,
    #[serde(borrow)]
    rcode: Option<&'a RawValue>,
    /// The protocols outside schema 1: their short status, and what went wrong.
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// A raw value as a string ("" when it is not one).
fn text(v: Option<&RawValue>) -> String {
    v.and_then(|v| serde_json::from_str::<Cow<str>>(v.get()).ok()).map(Cow::into_owned).unwrap_or_default()
}

fn int(v: Option<&RawValue>) -> Option<i64> {
    v.and_then(|v| serde_json::from_str(v.get()).ok())
}

/// What an entry's status is, as a label, and whether it is an error. `unanswered`: the
/// entry says a reply never came (a null response alone is no error for the messages of
/// other protocols that have none: a publish, a push, a WebSocket message).
fn status(protocol: &str, response: Option<&RawValue>, unanswered: bool) -> (String, bool) {
    let r: Option<Response> = response.filter(|r| r.get().starts_with('{')).and_then(|r| serde_json::from_str(r.get()).ok());
    let schema1 = matches!(protocol, "http" | "grpc" | "dns");
    let Some(r) = r else { return ("none".into(), schema1 || unanswered) };
    match protocol {
        "grpc" => match int(r.grpc_status) {
            Some(g) => (g.to_string(), g != 0),
            // trailers unread (joined mid-connection, or cut off): a 200 says nothing
            // either way; any other HTTP status is a failed call
            None => match int(r.status_code) {
                Some(200) => ("unknown".into(), false),
                s => (s.map_or("none".into(), |s| format!("http{s}")), true),
            },
        },
        "dns" => {
            let rc = r.rcode.and_then(|v| serde_json::from_str::<Cow<str>>(v.get()).ok()).unwrap_or(Cow::Borrowed("none"));
            let bad = !matches!(&*rc, "NOERROR" | "NXDOMAIN");
            (rc.into_owned(), bad)
        }
        _ if schema1 => match int(r.status_code) {
            Some(s) => (s.to_string(), s >= 500),
            None => ("none".into(), true),
        },
        // errors keep their code as the label (a SQLSTATE, a Redis error's kind, a Kafka
        // error's name); successes are one label, not one per command tag
        _ => match r.error.filter(|e| e.get() != "null") {
            Some(_) => {
                let code = text(r.status);
                (if code.is_empty() || code.len() > 32 { "error".into() } else { code }, true)
            }
            None => ("ok".into(), false),
        },
    }
}

/// What one batch adds to the metrics, counted while it is decoded (off the writer
/// thread), then added in one step when it is stored.
#[derive(Default)]
pub struct Tally {
    series: HashMap<Key, (Series, Box<[u32; LOG_BUCKETS]>)>,
}

impl Tally {
    /// Counts one entry (its slim JSON).
    pub fn observe(&mut self, slim: &str) {
        let f: Option<Fields> = serde_json::from_str(slim).ok();
        fn end(v: Option<&RawValue>) -> Option<End<'_>> {
            v.and_then(|v| serde_json::from_str(v.get()).ok())
        }
        let (src, dst) = (end(f.as_ref().and_then(|f| f.src)), end(f.as_ref().and_then(|f| f.dst)));
        let protocol = f.as_ref().map(|f| text(f.protocol)).filter(|p| !p.is_empty()).unwrap_or_else(|| "unknown".into());
        let unanswered = f.as_ref().and_then(|f| f.anomalies).is_some_and(|a| a.get().contains("\"no_response\""));
        let (status, error) = status(&protocol, f.as_ref().and_then(|f| f.response), unanswered);
        let elapsed = f.as_ref().and_then(|f| f.elapsed_time).and_then(|v| serde_json::from_str::<u64>(v.get()).ok());
        let key = Key { src: Workload::of(src.as_ref()), dst: Workload::of(dst.as_ref()), protocol, status };
        let (s, hist) = self.series.entry(key).or_insert_with(|| (Series::default(), Box::new([0; LOG_BUCKETS])));
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
            hist[log_bucket(us)] += 1;
        }
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

/// The latency (ms) below which `p` of the timed requests in `hist` fall; null when none.
fn percentile(hist: &[u64; LOG_BUCKETS], p: f64) -> Value {
    let timed: u64 = hist.iter().sum();
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
}

impl Metrics {
    /// Adds what a stored batch counted, stored at `now` (ns).
    pub fn add(&mut self, tally: &Tally, now: i64) {
        let start = now - now.rem_euclid(SLOT_NS);
        for (key, (t, hist)) in &tally.series {
            let mut key = key;
            let other;
            if !self.series.contains_key(key) && self.series.len() >= MAX_SERIES {
                self.series_overflow += t.count;
                let o = Workload { name: "other".into(), ..Default::default() };
                other = Key { src: o.clone(), dst: o, protocol: key.protocol.clone(), status: "other".into() };
                key = &other;
            }
            let s = match self.series.get_mut(key) {
                Some(s) => s,
                None => self.series.entry(key.clone()).or_default(),
            };
            s.count += t.count;
            s.errors += t.errors;
            s.timed += t.timed;
            s.sum += t.sum;
            for (a, b) in s.buckets.iter_mut().zip(t.buckets) {
                *a += b;
            }
            let pair = (key.src.clone(), key.dst.clone());
            let edge = self.edges.entry(pair).or_default();
            if !edge.protocols.contains(&key.protocol) {
                edge.protocols.push(key.protocol.clone());
            }
            if edge.slots.back().is_none_or(|s| s.start != start) {
                edge.slots.push_back(Slot { start, requests: 0, errors: 0, hist: Box::new([0; LOG_BUCKETS]) });
                while edge.slots.len() > SLOTS {
                    edge.slots.pop_front();
                }
            }
            let slot = edge.slots.back_mut().expect("pushed above");
            slot.requests += t.count;
            slot.errors += t.errors;
            for (a, b) in slot.hist.iter_mut().zip(hist.iter()) {
                *a += b;
            }
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
            let pct = |p: f64| percentile(&hist, p);
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

    /// Golden signals over time: one point per 10 s slot of the last `window` (ns, up to an
    /// hour) before `now`, empty slots included, each with the request rate, the error
    /// ratio and p50/p95/p99 latency; over every edge, or those from `source` and/or to
    /// `destination` (workload ids as the service map names them).
    pub fn signals(&self, window: i64, now: i64, source: Option<&str>, destination: Option<&str>) -> Value {
        let window = window.clamp(SLOT_NS, SLOT_NS * SLOTS as i64);
        let last = now - now.rem_euclid(SLOT_NS);
        let n = (window / SLOT_NS) as usize;
        let first = last - (n as i64 - 1) * SLOT_NS;
        let mut slots: Vec<(u64, u64, Box<[u64; LOG_BUCKETS]>)> = (0..n).map(|_| (0, 0, Box::new([0; LOG_BUCKETS]))).collect();
        for ((src, dst), e) in &self.edges {
            if source.is_some_and(|s| s != src.id()) || destination.is_some_and(|d| d != dst.id()) {
                continue;
            }
            for s in e.slots.iter().filter(|s| s.start >= first && s.start <= last) {
                let slot = &mut slots[((s.start - first) / SLOT_NS) as usize];
                slot.0 += s.requests;
                slot.1 += s.errors;
                for (h, c) in slot.2.iter_mut().zip(s.hist.iter()) {
                    *h += *c as u64;
                }
            }
        }
        let points: Vec<Value> = slots
            .iter()
            .enumerate()
            .map(|(i, (requests, errors, hist))| {
                json!({
                    "t": (first + i as i64 * SLOT_NS) / 1_000_000_000,
                    "requests": requests,
                    "rate": *requests as f64 / (SLOT_NS as f64 / 1e9),
                    "errors": errors,
                    "error_ratio": if *requests == 0 { Value::Null } else { json!(*errors as f64 / *requests as f64) },
                    "p50_ms": percentile(hist, 0.50),
                    "p95_ms": percentile(hist, 0.95),
                    "p99_ms": percentile(hist, 0.99),
                })
            })
            .collect();
        json!({"window_seconds": window / 1_000_000_000, "step_seconds": SLOT_NS / 1_000_000_000, "source": source, "destination": destination, "points": points})
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

    fn entry(src: &str, dst: &str, status: i64, us: u64) -> Tally {
        let mut t = Tally::default();
        t.observe(&json!({"protocol": "http", "src": {"namespace": "ns", "pod": {"workload": {"kind": "Deployment", "name": src}}},
               "dst": {"namespace": "ns", "service": {"name": dst}}, "response": {"status_code": status}, "elapsed_time": us}).to_string());
        t
    }

    #[test]
    fn edges_carry_rate_errors_and_percentiles() {
        let mut m = Metrics::default();
        let now = 1_000 * SLOT_NS;
        for i in 0..100u64 {
            m.add(&entry("front-end", "catalogue", if i < 10 { 503 } else { 200 }, 1000 * (i + 1)), now);
        }
        m.add(&entry("front-end", "user", 200, 50), now - 2 * 3600 * 1_000_000_000);
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

    #[test]
    fn signals_give_a_point_per_slot_for_all_or_one_edge() {
        let mut m = Metrics::default();
        let now = 1_000 * SLOT_NS + 5;
        // 30 s ago: 20 requests to catalogue, 5 of them failing; now: 10 to user
        for i in 0..20 {
            m.add(&entry("front-end", "catalogue", if i < 5 { 500 } else { 200 }, 2000), now - 3 * SLOT_NS);
        }
        for _ in 0..10 {
            m.add(&entry("orders", "user", 200, 40_000), now);
        }
        let all = m.signals(60_000_000_000, now, None, None);
        let points = all["points"].as_array().unwrap();
        assert_eq!(points.len(), 6, "{all}");
        assert_eq!(points[5]["t"], 1_000 * 10);
        assert_eq!(points[5]["requests"], 10);
        assert_eq!(points[2]["requests"], 20);
        assert_eq!(points[2]["error_ratio"], 0.25);
        assert_eq!(points[2]["rate"], 2.0);
        assert!(points[0]["error_ratio"].is_null() && points[0]["p50_ms"].is_null());
        let p50 = points[5]["p50_ms"].as_f64().unwrap();
        assert!((p50 - 40.0).abs() / 40.0 < 0.05, "{p50}");
        let one = m.signals(60_000_000_000, now, None, Some("ns/catalogue"));
        let total: u64 = one["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
        assert_eq!(total, 20);
        let edge = m.signals(60_000_000_000, now, Some("ns/orders"), Some("ns/catalogue"));
        assert!(edge["points"].as_array().unwrap().iter().all(|p| p["requests"] == 0));
    }

    #[test]
    fn a_grpc_call_without_a_readable_status_is_no_error_on_200() {
        let mut m = Metrics::default();
        let now = 1_000 * SLOT_NS;
        for (http, grpc) in [(200, None), (200, Some(0)), (200, Some(14)), (503, None)] {
            let mut t = Tally::default();
            let mut resp = json!({"status_code": http});
            if let Some(g) = grpc {
                resp["grpc_status"] = json!(g);
            }
            t.observe(&json!({"protocol": "grpc", "src": {"namespace": "ns", "pod": {"workload": {"kind": "Deployment", "name": "orders"}}},
                   "dst": {"namespace": "ns", "service": {"name": "payment"}}, "response": resp, "elapsed_time": 500}).to_string());
            m.add(&t, now);
        }
        let map = m.service_map(60_000_000_000, now);
        assert_eq!(map["edges"][0]["requests"], 4, "{map}");
        // the UNAVAILABLE (14) and the 503: not the 200 whose trailers were unread
        assert_eq!(map["edges"][0]["errors"], 2, "{map}");
        let mut text = String::new();
        m.prometheus(&mut text);
        assert!(text.contains("status=\"unknown\""), "{text}");
    }

    #[test]
    fn errors_of_other_protocols_count_and_messages_without_replies_do_not() {
        let mut m = Metrics::default();
        let now = 1_000 * SLOT_NS;
        let ends = json!({"src": {"namespace": "ns", "pod": {"workload": {"kind": "Deployment", "name": "cart"}}}, "dst": {"namespace": "ns", "service": {"name": "redis"}}});
        let mut t = Tally::default();
        for (resp, anomalies) in [
            (json!({"status": "OK", "error": null, "type": "bulk"}), json!([])),
            (json!({"status": "WRONGTYPE", "error": "WRONGTYPE Operation against a key", "type": "error"}), json!([])),
            // a pushed message: no reply expected
            (json!(null), json!([])),
            // a command whose reply never came
            (json!(null), json!(["no_response"])),
        ] {
            let mut e = ends.clone();
            e["protocol"] = json!("redis");
            e["response"] = resp;
            e["anomalies"] = anomalies;
            t.observe(&e.to_string());
        }
        m.add(&t, now);
        let map = m.service_map(60_000_000_000, now);
        assert_eq!(map["edges"][0]["requests"], 4, "{map}");
        assert_eq!(map["edges"][0]["errors"], 2, "{map}");
        let mut text = String::new();
        m.prometheus(&mut text);
        assert!(text.contains("status=\"WRONGTYPE\""), "{text}");
        assert!(!text.contains("status=\"OK\""), "successes share one label: {text}");
    }
}
