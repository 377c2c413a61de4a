//! The whole UI driven as a user drives it: key events through `App::handle_event`, the
//! hub a scripted source (filters compiled by the real compiler, as the hub does), each
//! view drawn on ratatui's `TestBackend` and compared with its snapshot.

use kshark_hub::Filter;
use kshark_tui::app::{App, AppEvent};
use kshark_tui::source::{Refused, Source, Updates};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A hub holding `all`: a filter change resends the matching ones, as `/api/stream` does.
struct Scripted {
    all: Vec<String>,
    pending: Vec<Arc<str>>,
    servicemap: Option<Value>,
    stats: Option<Value>,
}

impl Scripted {
    fn new(all: Vec<String>) -> Scripted {
        let pending = all.iter().map(|s| Arc::from(s.as_str())).collect();
        Scripted { all, pending, servicemap: Some(servicemap()), stats: Some(stats()) }
    }
}

impl Source for Scripted {
    fn poll(&mut self) -> Updates {
        Updates { entries: std::mem::take(&mut self.pending), stats: self.stats.take(), servicemap: self.servicemap.take(), ..Default::default() }
    }
    fn set_filter(&mut self, filter: &str) -> Result<(), Refused> {
        let f = Filter::compile(filter).map_err(|e| Refused { message: e.message, position: Some(e.position) })?;
        self.pending = self.all.iter().filter(|e| f.matches_at(&serde_json::from_str(e).unwrap(), 0)).map(|s| Arc::from(s.as_str())).collect();
        Ok(())
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

fn end(ip: &str, port: u16, pod: Option<(&str, &str)>) -> Value {
    match pod {
        Some((ns, name)) => json!({"ip": ip, "port": port, "name": name, "namespace": ns, "pod": {"name": name, "namespace": ns, "workload": {"kind": "Deployment", "name": name.rsplit_once('-').map_or(name, |p| p.0)}, "labels": {"app": name}}, "service": null}),
        None => json!({"ip": ip, "port": port, "name": ip, "namespace": null, "pod": null, "service": null}),
    }
}

fn entries() -> Vec<String> {
    let mut out = Vec::new();
    out.push(json!({"id": "e1", "timestamp": "2026-11-21T10:00:01.250Z", "protocol": "http", "http_version": "1.1", "transport": "tcp",
        "src": end("10.1.0.5", 41000, Some(("sock-shop", "front-end-7d9"))), "dst": end("10.1.0.9", 80, Some(("sock-shop", "catalogue-5c4"))),
        "request": {"method": "GET", "path": "/catalogue", "url": "/catalogue?size=5", "host": "catalogue", "headers": {"accept": "application/json"}, "body": {"size": 0, "mime": "", "encoding": null, "text": "", "truncated": false}},
        "response": {"status_code": 200, "reason": "OK", "headers": {"content-type": "application/json"}, "body": {"size": 27, "mime": "application/json", "encoding": null, "text": "[{\"id\":\"a1\",\"price\":9.99}]", "truncated": false}},
        "elapsed_time": 1800, "request_size": 80, "response_size": 140, "node": "lab", "capture_source": "ebpf", "conn_id": "c1", "anomalies": []}).to_string());
    out.push(json!({"id": "e2", "timestamp": "2026-11-21T10:00:01.300Z", "protocol": "grpc", "http_version": "2", "transport": "tcp",
        "src": end("10.1.0.7", 42000, Some(("sock-shop", "orders-66f"))), "dst": end("10.1.0.8", 50051, Some(("sock-shop", "payment-9b1"))),
        "request": {"path": "/payment.Payment/Authorise", "service": "payment.Payment", "method": "Authorise", "headers": {}, "messages": [{"size": 5, "compressed": false, "base64": "CAESAQE="}]},
        "response": {"status_code": 200, "grpc_status": 9, "grpc_message": "declined", "headers": {}, "trailers": {"grpc-status": "9"}, "messages": []},
        "elapsed_time": 230000, "request_size": 60, "response_size": 40, "node": "lab", "capture_source": "ebpf", "conn_id": "c2", "anomalies": []}).to_string());
    out.push(json!({"id": "e3", "timestamp": "2026-11-21T10:00:01.400Z", "protocol": "dns", "transport": "udp",
        "src": end("10.1.0.5", 5353, Some(("sock-shop", "front-end-7d9"))), "dst": end("10.1.0.2", 53, Some(("kube-system", "coredns-1"))),
        "request": {"id": 7, "opcode": "QUERY", "questions": [{"name": "carts.sock-shop.svc.cluster.local.", "type": "A", "class": "IN"}]},
        "response": {"id": 7, "opcode": "QUERY", "rcode": "NOERROR", "truncated": false, "answers": [{"name": "carts.sock-shop.svc.cluster.local.", "type": "A", "ttl": 30, "data": "10.1.0.11"}], "authorities": [], "additionals": []},
        "elapsed_time": 310, "request_size": 50, "response_size": 66, "node": "lab", "capture_source": "ebpf", "conn_id": "c3", "anomalies": []}).to_string());
    out.push(json!({"id": "e4", "timestamp": "2026-11-21T10:00:01.500Z", "protocol": "http", "http_version": "1.1", "transport": "tcp",
        "src": end("192.0.2.1", 50000, None), "dst": end("10.1.0.12", 8080, Some(("sock-shop", "carts-2aa"))),
        "request": {"method": "POST", "path": "/carts/1/items", "url": "/carts/1/items", "host": "carts", "headers": {}, "body": {"size": 4, "mime": "application/octet-stream", "encoding": null, "base64": "AAEC/w==", "truncated": false}},
        "response": {"status_code": 503, "reason": "Service Unavailable", "headers": {}, "body": {"size": 0, "mime": "", "encoding": null, "text": "", "truncated": false}},
        "elapsed_time": 1_250_000, "request_size": 120, "response_size": 90, "node": "lab", "capture_source": "ebpf", "conn_id": "c4", "anomalies": ["gap"]}).to_string());
    out
}

fn stats() -> Value {
    json!({"packets": 1200, "entries": 4, "drops": {"kernel_drops": 0, "ring_drops": 3, "queue_drops": 0, "ship_drops": 0, "subscribers_cut": 0, "malformed_batches": 0},
           "workers": {"lab": {"connected": true, "stats": {"engine": "ebpf", "pods": 9}}}})
}

fn servicemap() -> Value {
    json!({"window_seconds": 60, "nodes": [], "edges": [
        {"source": "sock-shop/front-end", "destination": "sock-shop/catalogue", "protocols": ["http"], "requests": 600, "rate": 10.0, "errors": 0, "error_ratio": 0.0, "p50_ms": 1.8, "p95_ms": 4.2, "p99_ms": 9.7},
        {"source": "sock-shop/orders", "destination": "sock-shop/payment", "protocols": ["grpc"], "requests": 60, "rate": 1.0, "errors": 6, "error_ratio": 0.1, "p50_ms": 120.0, "p95_ms": 230.0, "p99_ms": 1250.0}]})
}

fn app(w: u16, h: u16) -> App {
    let mut a = App::new(Box::new(Scripted::new(entries())), "tap -n sock-shop", "", (w, h));
    a.color = false;
    a.handle_event(AppEvent::Tick(Duration::from_millis(100)));
    a
}

fn key(a: &mut App, code: KeyCode) {
    a.handle_event(AppEvent::Term(Event::Key(KeyEvent::new(code, KeyModifiers::NONE))));
}

fn typed(a: &mut App, s: &str) {
    for c in s.chars() {
        key(a, KeyCode::Char(c));
    }
}

fn draw(a: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(a.size.0, a.size.1)).unwrap();
    t.draw(|f| f.render_widget(a, f.area())).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn the_live_table_shows_every_protocol_with_both_ends() {
    let a = app(140, 14);
    insta::assert_snapshot!(draw(&a));
}

#[test]
fn the_filter_bar_checks_as_you_type_and_the_hub_applies_it() {
    let mut a = app(140, 14);
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "http && status_code >=");
    // the position of the error is shown while typing
    insta::assert_snapshot!("filter_error", draw(&a));
    typed(&mut a, " 500");
    key(&mut a, KeyCode::Enter);
    a.handle_event(AppEvent::Tick(Duration::from_millis(200)));
    assert_eq!(a.rows.len(), 1);
    insta::assert_snapshot!("filtered", draw(&a));
    // the history brings it back
    key(&mut a, KeyCode::Char('/'));
    key(&mut a, KeyCode::Char('u'));
    a.handle_event(AppEvent::Term(Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL))));
    key(&mut a, KeyCode::Up);
    assert_eq!(a.input, "http && status_code >= 500");
    key(&mut a, KeyCode::Esc);
}

#[test]
fn the_detail_pane_shows_request_response_and_info() {
    let mut a = app(110, 36);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("detail_request", draw(&a));
    key(&mut a, KeyCode::Tab);
    insta::assert_snapshot!("detail_response_json_pretty", draw(&a));
    key(&mut a, KeyCode::Tab);
    insta::assert_snapshot!("detail_info", draw(&a));
    // the binary body as hex, the gRPC message, the DNS answers
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('G'));
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("detail_hex", draw(&a));
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("detail_grpc", draw(&a));
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Tab);
    insta::assert_snapshot!("detail_dns", draw(&a));
}

#[test]
fn services_help_pause_sort_and_namespaces() {
    let mut a = app(120, 12);
    key(&mut a, KeyCode::Char('2'));
    insta::assert_snapshot!("services", draw(&a));
    key(&mut a, KeyCode::Char('1'));
    key(&mut a, KeyCode::Char('s'));
    key(&mut a, KeyCode::Char('n'));
    key(&mut a, KeyCode::Char(' '));
    insta::assert_snapshot!("sorted_paused_namespaces", draw(&a));
    assert_eq!(a.selected_row().unwrap().latency_us, Some(1_250_000), "slowest first");
    let mut h = app(100, 24);
    key(&mut h, KeyCode::Char('?'));
    insta::assert_snapshot!("help", draw(&h));
    key(&mut h, KeyCode::Char('x'));
    key(&mut h, KeyCode::Char('q'));
    assert!(h.quit);
}

#[test]
fn copying_writes_json_curl_and_har() {
    let dir = std::env::temp_dir().join(format!("kshark-tui-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut a = app(100, 20);
    a.out_dir = dir.clone();
    key(&mut a, KeyCode::Char('g'));
    for (form, file) in [('j', "kshark-e1.json"), ('c', "kshark-e1.sh"), ('h', "kshark-e1.har")] {
        key(&mut a, KeyCode::Char('y'));
        key(&mut a, KeyCode::Char(form));
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}; {:?}", a.message));
        match form {
            'j' => assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["id"], "e1"),
            'c' => assert!(text.starts_with("curl -X 'GET' 'http://catalogue/catalogue?size=5'") && text.contains("-H 'accept: application/json'"), "{text}"),
            _ => assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["log"]["entries"][0]["response"]["status"], 200),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tiny_and_empty_terminals_draw_without_panicking() {
    for (w, h) in [(0, 0), (1, 1), (0, 10), (10, 0), (5, 3), (20, 4), (30, 8)] {
        let mut a = app(w, h);
        for k in [KeyCode::Enter, KeyCode::Char('2'), KeyCode::Char('?'), KeyCode::Esc, KeyCode::Char('1'), KeyCode::PageDown, KeyCode::Char('/')] {
            key(&mut a, k);
            draw(&a);
        }
    }
}

#[test]
fn captured_escape_sequences_never_reach_the_terminal() {
    let evil = json!({"id": "x\u{1b}]0;owned\u{7}", "timestamp": "2026-11-21T10:00:02.000Z", "protocol": "http", "transport": "tcp",
        "src": {"ip": "10.0.0.1", "port": 1, "name": "pod\u{1b}[31m-red", "namespace": "ns\r\n"}, "dst": {"ip": "10.0.0.2", "port": 80},
        "request": {"method": "GE\u{1b}[2JT", "path": "/a\u{1b}]52;c;aGVsbG8=\u{7}", "url": "/a\u{1b}]52;c;aGVsbG8=\u{7}\r\u{9b}31m", "headers": {"x-\u{1b}[1m": "v\u{1b}P+q\u{1b}\\"},
                    "body": {"size": 9, "mime": "text/plain", "text": "line\r\n\u{1b}[H\u{1b}[2Jgone", "truncated": false}},
        "response": {"status_code": 200, "headers": {}, "body": {"size": 2, "text": "{\"k\":\"\u{1b}]0;t\u{7}\"}"}}, "anomalies": ["\u{1b}[5m"]}).to_string();
    let mut a = App::new(Box::new(Scripted::new(vec![evil])), "tap \u{1b}]0;title\u{7}", "", (150, 40));
    a.handle_event(AppEvent::Tick(Duration::from_millis(100)));
    let mut frames = vec![draw(&a)];
    key(&mut a, KeyCode::Char('n'));
    key(&mut a, KeyCode::Enter);
    frames.push(draw(&a));
    key(&mut a, KeyCode::Tab);
    frames.push(draw(&a));
    key(&mut a, KeyCode::Tab);
    frames.push(draw(&a));
    for f in &frames {
        for ch in f.chars() {
            assert!(ch == '\n' || !ch.is_control(), "a control character {ch:?} would reach the terminal:\n{f}");
        }
    }
    assert!(frames[0].contains("\\x1b[2J") || frames[0].contains("GE\\x1b"), "{}", frames[0]);
}

#[test]
fn pods_and_nodes_not_captured_are_said_in_the_header_with_why() {
    let mut s = Scripted::new(entries());
    let mut st = stats();
    st["not_captured"] = json!({"pods": [{"pod": "sock-shop/carts-7d\u{1b}[2J", "reason": "no interface found (unknown CNI?)", "node": "n2"}], "nodes": ["kshark-node-2"]});
    s.stats = Some(st);
    let mut a = App::new(Box::new(s), "tap -n sock-shop", "", (200, 14));
    a.color = false;
    a.handle_event(AppEvent::Tick(Duration::from_millis(100)));
    let screen = draw(&a);
    let header = screen.lines().nth(2).unwrap();
    assert!(header.contains("NOT CAPTURED: node kshark-node-2 (no worker); 1 pods: sock-shop/carts-7d"), "{screen}");
    assert!(header.contains("(no interface found (unknown CNI?))"), "{screen}");
    // the pod's name came from the cluster: no escape sequence reaches the terminal
    assert!(!screen.contains('\u{1b}'), "{screen}");
    // without any, nothing is said
    assert!(!draw(&app(200, 14)).contains("NOT CAPTURED"));
}

#[test]
fn a_joined_entry_shows_both_nodes_and_the_server_time_beside_the_client_wait() {
    let mut e: Value = serde_json::from_str(&entries()[0]).unwrap();
    e["nodes"] = json!(["kshark-node-1", "kshark-node-2"]);
    e["observed"] = json!("both");
    e["elapsed_time"] = json!(1800);
    e["server_elapsed_time"] = json!(1200);
    e["network_time"] = json!(600);
    let info = kshark_tui::detail::info(&e);
    let get = |k: &str| info.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("nodes"), "kshark-node-1, kshark-node-2");
    assert_eq!(get("observed"), "both");
    assert_eq!((get("elapsed_time µs"), get("server_elapsed_time µs"), get("network_time µs")), ("1800".into(), "1200".into(), "600".into()));
}

#[test]
fn the_header_says_how_many_processes_tls_is_read_from() {
    let mut s = Scripted::new(entries());
    let mut st = stats();
    st["workers"]["lab"]["stats"]["tls"] = json!({"hooked": [{"pid": 10, "process": "nginx", "library": "openssl", "version": "3", "pod": "shop/front-end-1"}, {"pid": 11, "process": "curl", "library": "openssl", "version": "3", "pod": null}], "calls": 40});
    s.stats = Some(st);
    let mut a = App::new(Box::new(s), "tap -n sock-shop", "", (200, 14));
    a.color = false;
    a.handle_event(AppEvent::Tick(Duration::from_millis(100)));
    assert!(draw(&a).lines().next().unwrap().contains("TLS 2 processes"), "{}", draw(&a));
    assert!(!draw(&app(200, 14)).contains("TLS "));
}

#[test]
fn the_tls_view_lists_what_is_read_and_what_cannot_be_and_why() {
    let mut s = Scripted::new(entries());
    let mut st = stats();
    st["workers"]["lab"]["stats"]["tls"] = json!({
        "hooked": [{"pid": 10, "process": "nginx", "library": "openssl", "version": "3", "pod": "shop/front-end-1", "ring_full": 0, "missed_entries": 0, "no_fd": 2, "no_socket": 1}],
        "not_readable": [{"pid": 12, "process": "java\u{1b}[31m", "tls": "Java", "why": "Java's TLS (JSSE) runs inside the JVM", "pod": "shop/orders-2"}],
    });
    s.stats = Some(st);
    let mut a = App::new(Box::new(s), "tap -n sock-shop", "", (160, 14));
    a.color = false;
    a.handle_event(AppEvent::Tick(Duration::from_millis(100)));
    a.handle_event(AppEvent::Term(Event::Key(KeyEvent::new(KeyCode::Char('3'), KeyModifiers::NONE))));
    let screen = draw(&a);
    assert!(screen.contains("TLS  1 processes read, 1 not readable"), "{screen}");
    let orders = screen.lines().skip(3).find(|l| l.contains("shop/orders-2")).unwrap_or_else(|| panic!("{screen}"));
    assert!(orders.contains("NOT READABLE: Java") && orders.contains("JSSE") && orders.contains("(12)"), "{orders}");
    let nginx = screen.lines().skip(3).find(|l| l.contains("shop/front-end-1")).unwrap_or_else(|| panic!("{screen}"));
    assert!(nginx.contains("read: openssl 3") && nginx.contains("3 calls lost"), "{nginx}");
    // captured names are hostile: no escape reaches the terminal
    assert!(!screen.contains('\u{1b}'), "{screen:?}");
    // the header names what cannot be read too
    assert!(screen.lines().next().unwrap().contains("TLS NOT READABLE: shop/orders-2"), "{screen}");
}
