//! The language itself on small hand-made entries: syntax, errors and their positions,
//! CEL's semantics, zero values. Real entries from real captures are in tests/filter.rs.

use super::{parse_duration, Filter};
use serde_json::{json, Value};

fn http() -> Value {
    json!({
        "id": "1", "timestamp": "2026-01-01T00:00:10.5Z", "protocol": "http", "http_version": "1.1", "transport": "tcp",
        "src": {"ip": "10.0.0.1", "port": 40000, "name": "front-end-1", "namespace": "shop",
                "pod": {"name": "front-end-1", "namespace": "shop", "labels": {"app": "front-end"}, "workload": {"kind": "Deployment", "name": "front-end"}, "node": "n1"},
                "service": {"name": "front-end", "namespace": "shop"}},
        "dst": {"ip": "10.0.0.2", "port": 80, "name": "catalogue", "namespace": "shop", "pod": null, "service": {"name": "catalogue", "namespace": "shop"}},
        "request": {"method": "GET", "path": "/catalogue", "url": "/catalogue?size=5", "headers": {"user-agent": "curl/8"}},
        "response": {"status_code": 503, "headers": {}},
        "elapsed_time": 120000, "request_size": 80, "response_size": 200, "node": "n1", "capture_source": "file", "conn_id": "c1", "anomalies": [],
    })
}

fn dns() -> Value {
    json!({
        "protocol": "dns", "transport": "udp", "timestamp": "2026-01-01T00:00:00Z",
        "src": {"ip": "10.0.0.1", "port": 5353, "namespace": "shop"}, "dst": {"ip": "10.0.0.10", "port": 53, "namespace": "kube-system"},
        "request": {"questions": [{"name": "catalogue.shop.svc.cluster.local.", "type": "A"}]},
        "response": {"rcode": "NOERROR", "answers": [{"name": "catalogue.shop.svc.cluster.local.", "type": "A", "data": "10.0.0.2"}]},
        "elapsed_time": 300, "anomalies": [],
    })
}

const NOW: i128 = 1_767_225_660_000_000_000; // 2026-01-01T00:01:00Z

fn check(expr: &str, e: &Value) -> bool {
    let f = Filter::compile(expr).unwrap_or_else(|err| panic!("{expr}: {}", err.pointer(expr)));
    let whole = f.matches_at(e, NOW);
    // what the store does: build from the JSON only what the filter reads
    assert_eq!(f.matches_json(e.to_string().as_bytes(), NOW), whole, "{expr}: its projection of the entry gives another answer");
    whole
}

#[test]
fn operators_and_short_names() {
    let (h, d) = (http(), dns());
    for (expr, on_http, on_dns) in [
        ("http", true, false),
        ("dns and udp", false, true),
        ("tcp && !dns", true, false),
        ("not http", false, true),
        ("status_code >= 500", true, false),
        ("status_code >= 500 || dns_rcode == \"NOERROR\"", true, true),
        ("status_code == 0", false, true), // the zero value of a missing int
        ("method == \"GET\" && path == '/catalogue'", true, false),
        ("url.contains('size=5')", true, false),
        ("path.startsWith(\"/cat\") and path.endsWith('logue')", true, false),
        ("path.matches('^/c[a-z]+$')", true, false),
        ("request.headers[\"user-agent\"].startsWith(\"curl\")", true, false),
        ("src.pod.workload.name == 'front-end'", true, false),
        ("src.pod.labels.app in ['front-end', 'x']", true, false),
        ("\"shop\" in namespaces", true, true),
        ("'kube-system' in namespaces", false, true),
        ("\"catalogue.shop.svc.cluster.local\" in dns_questions", false, true),
        ("dns_answers.exists(a, a.startsWith('10.'))", false, true),
        ("dns_answers.all(a, a.startsWith('10.'))", true, true), // vacuously true with no answers
        ("'front-end-1' in pods && 'catalogue' in services", true, false),
        ("services.contains('front-end')", true, false),
        ("elapsed_time > 100000", true, false),
        ("elapsed_time / 1000 == 120", true, false),
        ("elapsed_time * 2 - 40000 == 200000", true, false),
        ("elapsed_time % 7 == 120000 % 7", true, true),
        ("size(pods) == 1 && pods.size() == 1", true, false),
        ("size(path) == 10", true, false),
        ("response != null", true, true),
        ("has(response.status_code)", true, false),
        ("has(src.pod.name)", true, false),
        ("dst.port == 80 || dst.port == 53", true, true),
        ("dst.port in [80, 8080]", true, false),
        ("src.port > 1024 ? dst.port == 80 : false", true, false),
        ("string(status_code).startsWith('5')", true, false),
        ("int('42') == 42 && double(status_code) == 503.0", true, false),
        ("method.lowerAscii() == 'get'", true, false),
        ("timestamp > timestamp('2026-01-01T00:00:05Z')", true, false),
        ("now() - timestamp < duration('1m')", true, false),
        ("now() - timestamp <= duration(\"1m\")", true, true),
        ("timestamp + duration('10s') > timestamp('2026-01-01T00:00:15Z')", true, false),
        ("size(anomalies) == 0", true, true),
        ("1 + 2.5 == 3.5", true, true),
        ("\"a\" + 'b' == \"ab\"", true, true),
        ("r'\\d' == '\\\\d'", true, true),
        ("'\\x41\\u00e9' == 'Aé'", true, true),
        ("grpc_status == 0 && grpc_service == ''", true, true),
        ("(http || dns) && !(status_code >= 500)", false, true),
    ] {
        assert_eq!(check(expr, &h), on_http, "{expr} on http");
        assert_eq!(check(expr, &d), on_dns, "{expr} on dns");
    }
}

#[test]
fn the_nodes_that_saw_an_entry() {
    let one = http();
    let mut joined = http();
    joined["nodes"] = json!(["n1", "n2"]);
    joined["observed"] = json!("both");
    joined["server_elapsed_time"] = json!(90000);
    joined["network_time"] = json!(30000);
    for (expr, on_one, on_joined) in [
        ("'n1' in nodes", true, true),
        ("'n2' in nodes", false, true),
        ("node == 'n2'", false, false),
        ("observed == 'both'", false, true),
        ("network_time > 20000", false, true),
        ("server_elapsed_time >= 90000 && elapsed_time > server_elapsed_time", false, true),
    ] {
        assert_eq!((check(expr, &one), check(expr, &joined)), (on_one, on_joined), "{expr}");
    }
}

#[test]
fn tls_is_the_plaintext_read_from_a_tls_library() {
    let mut tls = http();
    tls["capture_source"] = json!("ebpf_tls");
    tls["tls"] = json!({"library": "openssl", "version": "3"});
    assert!(check("tls", &tls));
    assert!(check("tls && path == '/catalogue'", &tls));
    assert!(!check("tls", &http()));
}

#[test]
fn errors_follow_cel_and_never_match() {
    let h = http();
    // a division by zero is an error: no match, whichever way it is compared
    assert!(!check("elapsed_time / 0 == 0", &h));
    assert!(!check("elapsed_time / 0 != 0", &h));
    assert!(!check("!(elapsed_time / 0 == 0)", &h));
    // ... unless the other side of && / || decides
    assert!(!check("false && elapsed_time / 0 == 0", &h));
    assert!(!check("elapsed_time / 0 == 0 && false", &h));
    assert!(check("true || elapsed_time / 0 == 0", &h));
    assert!(check("elapsed_time / 0 == 0 || true", &h));
    // overflow
    assert!(!check("9223372036854775807 + elapsed_time > 0", &h));
}

#[test]
fn mistakes_name_their_position() {
    for (expr, pos, words) in [
        ("status_code >= ", 15, "ends too early"),
        ("status_code = 500", 12, "=="),
        ("http & dns", 5, "&&"),
        ("stauts_code == 500", 0, "did you mean `status_code`"),
        ("http && method.startswit('G')", 15, "did you mean `startsWith`"),
        ("status_code == \"500\"", 12, "never equal"),
        ("path > 5", 5, "cannot order"),
        ("(http", 5, "expected `)`"),
        ("http dns", 5, "unexpected `dns`"),
        ("'abc", 0, "not closed"),
        ("path.matches('(')", 13, "bad regex"),
        ("path.matches(path + 'x')", 18, "quoted pattern"),
        ("duration('5 parsecs') > now() - timestamp", 9, "bad duration"),
        ("timestamp > timestamp('yesterday')", 22, "bad timestamp"),
        ("status_code", 0, "true or false"),
        ("1 + 'a' == 2", 2, "does not apply"),
        ("http && 5", 8, "needs true or false"),
        ("http in 5", 8, "list or a map"),
        ("size(path, 1) > 0", 0, "takes 0 arguments"),
        ("x == 1", 0, "unknown name `x`"),
        ("http ? 1", 8, "expected `:`"),
        ("'a' \u{1b}", 4, "unexpected character"),
        ("", 0, ""),
    ] {
        match Filter::compile(expr) {
            Err(e) => {
                assert_eq!(e.position, pos, "{expr}: {e}");
                assert!(e.message.contains(words), "{expr}: {e}");
                assert!(e.to_string().contains(&format!("position {pos}")));
            }
            Ok(f) => assert!(expr.is_empty() && f.is_everything(), "{expr} compiled"),
        }
    }
    let e = Filter::compile("status_code = 500").unwrap_err();
    assert_eq!(e.pointer("status_code = 500"), "status_code = 500\n            ^ `=` is not an operator: compare with `==`");
}

#[test]
fn hostile_input_is_refused_not_crashed() {
    let deep = format!("{}http{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(Filter::compile(&deep).unwrap_err().message.contains("nested deeper"));
    let bangs = format!("{}http", "!".repeat(10_000));
    assert!(Filter::compile(&bangs).is_err());
    let long_chain = vec!["http"; 2000].join(" || ");
    assert!(Filter::compile(&long_chain).unwrap().matches_at(&http(), NOW));
    let too_long = vec!["http"; 3000].join(" || ");
    assert!(Filter::compile(&too_long).unwrap_err().message.contains("the limit is 16384"));
    // regexes: bounded in number and in text, each in the memory it may take
    let many = vec![r#"path.matches("\\w{20}")"#; 1200].join(" || ");
    assert!(Filter::compile(&many).is_err());
    let seventeen = vec![r#"path.matches("a")"#; 17].join(" || ");
    assert!(Filter::compile(&seventeen).unwrap_err().message.contains("more than 16 regular expressions"));
    assert!(Filter::compile(&vec![r#"path.matches("a")"#; 16].join(" || ")).is_ok());
    let wide = format!("path.matches({:?}) || path.matches({:?})", "a".repeat(3000), "b".repeat(3000));
    assert!(Filter::compile(&wide).unwrap_err().message.contains("over 4096 bytes"));
    assert!(Filter::compile(r#"path.matches("\\w{1000}")"#).unwrap_err().message.contains("bad regex"));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5m"), Some(300_000_000_000));
    assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
    assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
    assert_eq!(parse_duration("250ms"), Some(250_000_000));
    assert_eq!(parse_duration("-2us"), Some(-2000));
    assert_eq!(parse_duration("0"), Some(0));
    for bad in ["", "5", "m", "5 m", "5x", "1e400h"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn the_prefilter_knows_what_literals_an_entry_needs_and_escapes_do_not_fool_it() {
    let need = |e: &str| format!("{:?}", super::needle::Need::of(&super::parse::Parser::parse(e).unwrap()));
    assert_eq!(need("http && status_code >= 500"), r#"All(["\"http\""])"#);
    assert_eq!(need(r#"request.headers["user-agent"].contains("Wget") || path.startsWith('/cat')"#), r#"OneOf(["Wget", "\"/cat"])"#);
    assert_eq!(need(r#"dst.pod.name == "carts-1" && "a.org" in dns_questions && src.name.endsWith("x")"#), r#"All(["\"carts-1\"", "a.org", "x\""])"#);
    assert_eq!(need(r#"dns && dns_questions.exists(q, q.endsWith(".org") && q.size() > 3)"#), r#"All(["\"dns\"", All([".org"])])"#);
    // what it cannot be sure of needs nothing
    for e in ["status_code >= 500", "method == 'POST'", "path != '/x'", "lowerAscii(path) == 'x'", "path == ''", r#"path == "a\"b""#, "!http", "http || status_code == 5", "dns_answers.all(a, a == 'x')", "dns_answers.exists(a, a != 'x')", "pods.exists(a, src.name == 'x')"] {
        assert_eq!(need(e), "Any", "{e}");
    }
    // an entry whose strings are escaped is parsed, not passed over
    let mut h = http();
    h["request"]["path"] = "/cat\"alogue".into();
    let escaped = h.to_string().replace("/cat", "/c\\u0061t");
    assert!(escaped.contains("\\u0061"));
    let f = Filter::compile(r#"path.startsWith("/cat") && http"#).unwrap();
    assert!(f.matches_json(escaped.as_bytes(), NOW));
    assert!(!f.matches_json(escaped.replace("\\u0061", "o").as_bytes(), NOW));
}

#[test]
fn protocol_words_and_path_cover_every_registered_protocol() {
    let redis = json!({"protocol": "redis", "transport": "tcp", "request": {"method": "GET", "target": "user:42", "args": ["user:42"]},
                       "response": {"status": "OK", "error": null}, "anomalies": []});
    let ws = json!({"protocol": "websocket", "transport": "tcp", "request": {"method": "text", "target": "/chat"}, "response": null, "anomalies": []});
    for (expr, on_redis, on_ws) in [
        ("redis", true, false),
        ("ws", false, true),
        ("websocket", false, true),
        ("postgresql || kafka || amqp || mongodb || mqtt || mysql", false, false),
        ("method == 'GET' && path == 'user:42'", true, false),
        ("path.startsWith('/ch')", false, true),
        ("redis && response.status == 'OK'", true, false),
    ] {
        assert_eq!(check(expr, &redis), on_redis, "{expr} on a Redis entry");
        assert_eq!(check(expr, &ws), on_ws, "{expr} on a WebSocket entry");
    }
}
