//! The filter language: any text is compiled; what compiles is evaluated on an HTTP, a
//! gRPC and a DNS entry. Neither may panic, overflow the stack or hang; and the store's
//! way (the literal prefilter, then only the keys the filter reads parsed from the JSON)
//! must give the same answer as evaluating on the whole entry.
#![no_main]
use kshark_hub::Filter;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn entries() -> &'static [serde_json::Value] {
    static E: OnceLock<Vec<serde_json::Value>> = OnceLock::new();
    E.get_or_init(|| {
        vec![
            serde_json::json!({"protocol": "http", "transport": "tcp", "timestamp": "2026-01-01T00:00:00Z",
                "src": {"ip": "10.0.0.1", "port": 1, "namespace": "a", "pod": {"name": "p", "labels": {"k": "v"}}},
                "dst": {"ip": "10.0.0.2", "port": 80, "service": {"name": "s"}},
                "request": {"method": "GET", "path": "/x", "url": "/x?y", "headers": {"h": "v"}},
                "response": {"status_code": 500}, "elapsed_time": 10, "anomalies": ["gap"]}),
            serde_json::json!({"protocol": "grpc", "request": {"path": "/p.S/M", "service": "p.S", "method": "M", "messages": [{"size": 1}]},
                "response": {"status_code": 200, "grpc_status": 5, "trailers": {}}}),
            serde_json::json!({"protocol": "dns", "transport": "udp", "request": {"questions": [{"name": "a.b."}]},
                "response": {"rcode": "NXDOMAIN", "answers": [{"data": "1.2.3.4"}]}}),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    if let Ok(f) = Filter::compile(src) {
        let now = 1_767_225_600_000_000_000;
        for e in entries() {
            let whole = f.matches_at(e, now);
            assert_eq!(f.matches_json(e.to_string().as_bytes(), now), whole, "{src:?} on {e}");
        }
    }
});
