//! The dashboard end to end in real headless Chromium (Debian's, driven by
//! playwright-core from `web/node_modules`): `kshark hub` serving it, `kshark worker
//! --read` feeding it a capture of a small sock-shop (with identity from an inventory,
//! and entries that carry `<script>`, `<img onerror>`, `javascript:` and entities) and
//! real captures from the shared corpus. `web/e2e/dashboard.mjs` drives the page and
//! checks it; its screenshots land in `target/web-e2e/`.

mod common;

use common::{corpus, kshark, stderr, Hub};
use kshark_dissect::testkit::{pcap_bytes, udp_frame, TcpConv, C2S, S2C};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const NS: &str = "sock-shop";

/// What the test needs from the machine, or a failure that names what is missing.
fn browser() -> (PathBuf, PathBuf) {
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(chromium.exists(), "/usr/bin/chromium is missing: the dashboard's tests need Debian's chromium (bash scripts/setup.sh installs it)");
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is missing: the dashboard's tests need Node.js (bash scripts/setup.sh)");
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(web.join("node_modules/playwright-core").is_dir(), "web/node_modules/playwright-core is missing: run bash scripts/setup.sh (npm ci in web/)");
    (chromium, web)
}

fn ip(last: u8) -> [u8; 4] {
    [10, 42, 0, last]
}

/// The pods of the capture: (name, workload, last byte of the address, namespace).
const PODS: &[(&str, &str, u8, &str)] = &[
    ("front-end-6f8d-x1", "front-end", 10, NS),
    ("catalogue-7b9c-x2", "catalogue", 11, NS),
    ("carts-5d4f-x3", "carts", 12, NS),
    ("orders-8c7a-x4", "orders", 13, NS),
    ("payment-4e3b-x5", "payment", 14, NS),
    ("user-9a1d-x6", "user", 15, NS),
    ("coredns-5d78-x7", "coredns", 2, "kube-system"),
];

fn inventory() -> serde_json::Value {
    let mut items = Vec::new();
    for (name, workload, last, ns) in PODS {
        let rs = format!("{workload}-rs");
        items.push(json!({"kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"name": workload},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "u", "controller": true}]},
            "spec": {"nodeName": "node-1", "containers": []}, "status": {"podIP": format!("10.42.0.{last}")}}));
        items.push(json!({"kind": "ReplicaSet", "metadata": {"name": rs, "namespace": ns,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": workload, "uid": "d", "controller": true}]}, "spec": {"selector": {}}}));
    }
    json!({"kind": "List", "items": items})
}

fn dns_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A query for `name` (A) and its answer.
fn dns(id: u16, name: &str, answer: [u8; 4]) -> (Vec<u8>, Vec<u8>) {
    let mut q = [id.to_be_bytes().as_slice(), &[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]].concat();
    q.extend(dns_name(name));
    q.extend_from_slice(&[0, 1, 0, 1]);
    let mut r = [id.to_be_bytes().as_slice(), &[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]].concat();
    r.extend(dns_name(name));
    r.extend_from_slice(&[0, 1, 0, 1, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
    r.extend_from_slice(&answer);
    (q, r)
}

struct Capture {
    frames: Vec<(u64, Vec<u8>)>,
    ts: u64,
    port: u16,
}

impl Capture {
    fn http(&mut self, from: u8, to: u8, request: &str, response: &str) {
        let mut c = TcpConv::new((ip(from), self.port), (ip(to), 8080), [1000, 5000]);
        self.port += 1;
        c.ts = self.ts;
        c.handshake();
        c.send(C2S, request.as_bytes(), &[]);
        c.send(S2C, response.as_bytes(), &[]);
        c.close();
        self.frames.append(&mut c.frames);
        self.ts += 20_000_000;
    }

    fn get(&mut self, from: u8, to: u8, path: &str, status: u16, body: &str) {
        let reason = if status < 400 { "OK" } else { "Error" };
        self.http(
            from,
            to,
            &format!("GET {path} HTTP/1.1\r\nHost: svc\r\nUser-Agent: load-test\r\n\r\n"),
            &format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
        );
    }

    fn dns(&mut self, id: u16, name: &str) {
        let (q, r) = dns(id, name, ip(11));
        self.frames.push((self.ts, udp_frame((ip(10), 40000 + id), (ip(2), 53), &q)));
        self.frames.push((self.ts + 500_000, udp_frame((ip(2), 53), (ip(10), 40000 + id), &r)));
        self.ts += 20_000_000;
    }
}

/// The sock-shop's calls, with errors (the 500s and 503s), and three hostile requests.
fn shop() -> Vec<u8> {
    let mut c = Capture { frames: Vec::new(), ts: 1_700_000_000_000_000_000, port: 30000 };
    for i in 0..40u16 {
        c.get(10, 11, &format!("/catalogue?page={i}"), if i % 10 == 9 { 500 } else { 200 }, r#"[{"id":"a0a4f044","name":"Holy","price":99.99}]"#);
        c.get(10, 12, "/carts/57a98d98e4b00679b4a830af/items", 200, "[]");
        c.http(10, 13, "POST /orders HTTP/1.1\r\nHost: orders\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"items\": 1}\n", "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        c.get(13, 14, "/paymentAuth", if i % 8 == 7 { 503 } else { 200 }, r#"{"authorised":true}"#);
        c.get(13, 15, "/customers/57a98d98e4b00679b4a82d00", 200, r#"{"firstName":"Eve"}"#);
        c.dns(i, &format!("catalogue.{NS}.svc.cluster.local"));
    }
    // captured text is hostile: none of this may run or become markup
    let body = "<script>window.__xss=3</script><img src=x onerror=window.__xss=5>&amp;";
    c.http(
        10,
        11,
        "GET /search?q=<script>window.__xss=1</script>&x=&lt;b&gt; HTTP/1.1\r\nHost: svc\r\nX-Evil: <img src=x onerror=\"window.__xss=2\">\r\nReferer: javascript:window.__xss=4\r\n\r\n",
        &format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    );
    pcap_bytes(1, &c.frames)
}

fn count(path: &Path, inventory: &Path, filter: &str) -> usize {
    let o = kshark(&["read", path.to_str().unwrap(), "--inventory", inventory.to_str().unwrap(), "--format", "ndjson", "--filter", filter]);
    assert!(o.status.success(), "{}", stderr(&o));
    o.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count()
}

#[test]
fn the_dashboard_streams_filters_details_maps_charts_and_runs_no_captured_script() {
    let (chromium, web) = browser();
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("shop.pcap");
    std::fs::write(&cap, shop()).unwrap();
    let inv = dir.path().join("inventory.json");
    std::fs::write(&inv, inventory().to_string()).unwrap();
    let real = ["zeek_http_bro.org.pcap", "deepflow_grpc-unary.pcap", "sv_dns-udp-google.com-a-aaaa-mx.pcap"].map(|f| corpus().join("pcaps").join(f));
    let mut total = count(&cap, &inv, "true");
    let mut errors = count(&cap, &inv, "http && status_code >= 500");
    for r in &real {
        total += count(r, &inv, "true");
        errors += count(r, &inv, "http && status_code >= 500");
    }
    std::fs::write(dir.path().join("token"), "e2e-token-0123456789abcdef\n").unwrap();
    let hub = Hub::start(&dir.path().join("data"), "127.0.0.1:0", &["--token-file", dir.path().join("token").to_str().unwrap()]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../web-e2e");
    let _ = std::fs::create_dir_all(&shots);
    let o = Command::new("node")
        .arg(web.join("e2e/dashboard.mjs"))
        .env("HUB", hub.url())
        .env("KSHARK", env!("CARGO_BIN_EXE_kshark"))
        .env("TOKEN_FILE", dir.path().join("token"))
        .env("SHOP_PCAP", &cap)
        .env("INVENTORY", &inv)
        .env("REAL_PCAPS", real.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>().join(":"))
        .env("WANT_TOTAL", total.to_string())
        .env("WANT_ERRORS", errors.to_string())
        .env("CHROMIUM", &chromium)
        .env("SHOTS", &shots)
        .output()
        .expect("run node");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the dashboard's checks failed:\n{out}\n{err}\nhub:\n{}", hub.log.lock().unwrap());
    // every check ran (the script prints one line per check)
    assert!(out.contains("ok: no captured script ran"), "{out}");
    println!("{out}");
}

#[test]
fn beyond_loopback_the_dashboard_asks_for_the_token_once() {
    let (chromium, web) = browser();
    let dir = tempfile::tempdir().unwrap();
    let token = "e2e-token-beyond-loopback-42";
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    // all addresses, reached here on 127.0.0.1 only
    let hub = Hub::start(&dir.path().join("data"), "0.0.0.0:0", &["--reader-token-file", dir.path().join("token").to_str().unwrap()]);
    let o = Command::new("node")
        .arg(web.join("e2e/token.mjs"))
        .env("HUB", hub.url())
        .env("TOKEN", token)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("ok: asked once"), "{out}");
}

#[test]
fn pages_on_other_origins_and_rebound_names_read_nothing() {
    let (chromium, web) = browser();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("data"), "127.0.0.1:0", &[]);
    let token = dir.path().join("data/worker-token");
    let p = corpus().join("pcaps/deepflow_http.pcap");
    let o = kshark(&["worker", "--hub", &hub.url(), "--token-file", token.to_str().unwrap(), "--read", p.to_str().unwrap(), "--speed", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the attacker's site: any page at all, on another port of this machine
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_port = evil.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in evil.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let page = "<!doctype html><title>evil</title><p>a page on another site</p>";
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len());
        }
    });
    let o = Command::new("node")
        .arg(web.join("e2e/hostile.mjs"))
        .env("HUB_PORT", hub.port.to_string())
        .env("EVIL_PORT", evil_port.to_string())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}\nhub:\n{}", String::from_utf8_lossy(&o.stderr), hub.log.lock().unwrap());
    assert!(out.contains("ok: the hub's own dashboard is live"), "{out}");
    // the hub turned them away itself (not only the browser's own rules), and compiled
    // nothing for them
    let (_, _, body) = common::http_get(&format!("127.0.0.1:{}", hub.port), "/api/stats", None);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(stats["hub"]["refused_origins"].as_u64().unwrap() >= 4, "{}", stats["hub"]);
    assert_eq!(stats["hub"]["filters_refused"], 0, "a cross-site request reached the filter compiler: {}", stats["hub"]);
    println!("{out}");
}
