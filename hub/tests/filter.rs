//! The filter language on real entries: every capture of the shared corpus dissected,
//! both ends named from an inventory, and a table of expressions each checked, entry by
//! entry, against the same condition written out in Rust. Every expression must match
//! some entries and miss others, so none of them passes by matching nothing.

use kshark_hub::Filter;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    assert!(p.is_dir(), "the shared corpus is missing: expected the captures in {}", p.display());
    p
}

/// Every entry of the corpus, named: each address becomes a pod in one of three
/// namespaces, every third one also backing a Service.
fn entries() -> Vec<Value> {
    let mut raw = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus()).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let Ok(mut src) = kshark_capture::FileSource::open(&f) else { continue };
        let mut d = kshark_dissect::Dissector::new(Default::default());
        let _ = kshark_capture::pipeline::dissect_file(&mut src, &mut d, |e| raw.push(e));
    }
    let ips: BTreeSet<String> = raw.iter().flat_map(|e| [e.src.ip.to_string(), e.dst.ip.to_string()]).collect();
    let mut items = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let ns = format!("ns-{}", i % 3);
        let app = format!("app-{i}");
        items.push(json!({"kind": "Pod", "metadata": {"name": format!("{app}-7d9f-x{i}"), "namespace": ns, "labels": {"app": app}}, "status": {"podIP": ip}}));
        if i % 3 == 0 {
            items.push(json!({"kind": "Service", "metadata": {"name": app, "namespace": ns}, "spec": {"clusterIP": "None", "selector": {"app": app}}}));
        }
    }
    let path = std::env::temp_dir().join(format!("kshark-filter-inventory-{}.json", std::process::id()));
    std::fs::write(&path, json!({"kind": "List", "items": items}).to_string()).unwrap();
    let id = kshark_capture::inventory::load(std::slice::from_ref(&path)).unwrap();
    let _ = std::fs::remove_file(&path);
    raw.into_iter()
        .map(|mut e| {
            id.tag(&mut e);
            serde_json::to_value(&e).unwrap()
        })
        .collect()
}

fn s<'a>(e: &'a Value, p: &[&str]) -> &'a str {
    p.iter().try_fold(e, |v, k| v.get(k)).and_then(Value::as_str).unwrap_or("")
}

fn n(e: &Value, p: &[&str]) -> i64 {
    p.iter().try_fold(e, |v, k| v.get(k)).and_then(Value::as_i64).unwrap_or(0)
}

fn names(e: &Value, p: &[&str]) -> Vec<String> {
    p.iter()
        .try_fold(e, |v, k| v.get(k))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|q| q.get(if p[0] == "request" { "name" } else { "data" })?.as_str())
        .map(|x| x.trim_end_matches('.').to_string())
        .collect()
}

#[test]
fn expressions_agree_with_the_same_condition_written_in_rust() {
    let all = entries();
    assert!(all.len() > 300, "only {} entries from the corpus", all.len());
    type Check = Box<dyn Fn(&Value) -> bool>;
    let table: Vec<(&str, Check)> = vec![
        ("http", Box::new(|e| s(e, &["protocol"]) == "http")),
        ("grpc", Box::new(|e| s(e, &["protocol"]) == "grpc")),
        ("dns && udp", Box::new(|e| s(e, &["protocol"]) == "dns" && s(e, &["transport"]) == "udp")),
        ("dns and tcp", Box::new(|e| s(e, &["protocol"]) == "dns" && s(e, &["transport"]) == "tcp")),
        ("status_code >= 300", Box::new(|e| n(e, &["response", "status_code"]) >= 300)),
        ("http && status_code >= 400 && status_code < 500", Box::new(|e| s(e, &["protocol"]) == "http" && (400..500).contains(&n(e, &["response", "status_code"])))),
        ("status_code == 0", Box::new(|e| n(e, &["response", "status_code"]) == 0)),
        ("method == 'POST'", Box::new(|e| s(e, &["protocol"]) == "grpc" || s(e, &["request", "method"]) == "POST")),
        ("method in ['PUT', 'DELETE', 'PATCH']", Box::new(|e| s(e, &["protocol"]) == "http" && ["PUT", "DELETE", "PATCH"].contains(&s(e, &["request", "method"])))),
        ("path.startsWith('/images')", Box::new(|e| s(e, &["request", "path"]).starts_with("/images"))),
        ("url.contains('?')", Box::new(|e| if s(e, &["protocol"]) == "grpc" { s(e, &["request", "path"]).contains('?') } else { s(e, &["request", "url"]).contains('?') })),
        ("path.matches('\\\\.(png|jpg|gif|css|js)$')", Box::new(|e| regex_lite(s(e, &["request", "path"])))),
        ("request.headers['user-agent'].contains('Mozilla')", Box::new(|e| s(e, &["request", "headers", "user-agent"]).contains("Mozilla"))),
        ("grpc && grpc_status == 0", Box::new(|e| s(e, &["protocol"]) == "grpc" && n(e, &["response", "grpc_status"]) == 0)),
        ("grpc_method.startsWith('Get')", Box::new(|e| s(e, &["protocol"]) == "grpc" && s(e, &["request", "method"]).starts_with("Get"))),
        ("grpc_service.endsWith('Service')", Box::new(|e| s(e, &["protocol"]) == "grpc" && s(e, &["request", "service"]).ends_with("Service"))),
        ("has(response.grpc_status)", Box::new(|e| e["response"].get("grpc_status").is_some_and(|v| !v.is_null()))),
        ("dns_rcode == 'NXDOMAIN'", Box::new(|e| s(e, &["response", "rcode"]) == "NXDOMAIN")),
        ("dns_questions.exists(q, q.endsWith('.com'))", Box::new(|e| names(e, &["request", "questions"]).iter().any(|q| q.ends_with(".com")))),
        ("size(dns_answers) > 1", Box::new(|e| {
            let mut a = names(e, &["response", "answers"]);
            a.dedup();
            let uniq: BTreeSet<_> = a.into_iter().collect();
            uniq.len() > 1
        })),
        ("elapsed_time > 1000", Box::new(|e| n(e, &["elapsed_time"]) > 1000)),
        ("response == null", Box::new(|e| e["response"].is_null())),
        ("size(anomalies) > 0", Box::new(|e| !e["anomalies"].as_array().unwrap().is_empty())),
        ("'no_response' in anomalies", Box::new(|e| e["anomalies"].as_array().unwrap().iter().any(|a| a == "no_response"))),
        ("request_size > 1000 || response_size > 10000", Box::new(|e| n(e, &["request_size"]) > 1000 || n(e, &["response_size"]) > 10000)),
        ("dst.port == 53 || dst.port == 5353", Box::new(|e| [53, 5353].contains(&n(e, &["dst", "port"])))),
        ("src.ip.startsWith('10.')", Box::new(|e| s(e, &["src", "ip"]).starts_with("10."))),
        ("timestamp < timestamp('2015-01-01T00:00:00Z')", Box::new(|e| s(e, &["timestamp"]) < "2015-01-01T00:00:00")),
        ("'ns-1' in namespaces", Box::new(|e| s(e, &["src", "namespace"]) == "ns-1" || s(e, &["dst", "namespace"]) == "ns-1")),
        ("src.namespace == 'ns-0' && dst.namespace != 'ns-0'", Box::new(|e| s(e, &["src", "namespace"]) == "ns-0" && s(e, &["dst", "namespace"]) != "ns-0")),
        ("pods.exists(p, p.startsWith('app-1'))", Box::new(|e| s(e, &["src", "pod", "name"]).starts_with("app-1") || s(e, &["dst", "pod", "name"]).starts_with("app-1"))),
        ("size(services) == 2", Box::new(|e| {
            let (a, b) = (s(e, &["src", "service", "name"]), s(e, &["dst", "service", "name"]));
            !a.is_empty() && !b.is_empty() && a != b
        })),
        ("dst.pod.labels.app == dst.service.name", Box::new(|e| s(e, &["dst", "pod", "labels", "app"]) == s(e, &["dst", "service", "name"]))),
        ("!(http || grpc || dns)", Box::new(|e| !["http", "grpc", "dns"].contains(&s(e, &["protocol"])))),
    ];
    // the store's way: each entry's JSON and slim form as the hub keeps them, read by the
    // literal prefilter and the projection; it must give the same answers
    // (ids made unique: the captures are read one by one, and a batch's ids must be)
    let json: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            e["id"] = Value::from(format!("e{i}"));
            e.to_string()
        })
        .collect();
    let block = kshark_hub::record::decode_batch(kshark_hub::record::encode_batch(1, &json).into()).unwrap();
    let mut useless = Vec::new();
    for (expr, want) in &table {
        let f = Filter::compile(expr).unwrap_or_else(|e| panic!("{}", e.pointer(expr)));
        let mut hits = 0;
        for (i, e) in all.iter().enumerate() {
            let got = f.matches(e);
            assert_eq!(got, want(e), "{expr} on {e}");
            let stored = if f.needs_full() { json[i].as_bytes() } else { block.slim(i).as_bytes() };
            assert_eq!(f.matches_json(stored, 0), got, "{expr}: the store's reading of {} differs", String::from_utf8_lossy(stored));
            hits += usize::from(got);
        }
        // `!(http || grpc || dns)` is the one that must match nothing today
        if !expr.starts_with('!') && (hits == 0 || hits == all.len()) {
            useless.push(format!("{expr}: {hits}"));
        }
    }
    assert!(useless.is_empty(), "these match all or none of {} entries, so the test would not tell: {useless:?}", all.len());
}

fn regex_lite(p: &str) -> bool {
    [".png", ".jpg", ".gif", ".css", ".js"].iter().any(|x| p.ends_with(x))
}
