//! `kshark tap` reading TLS from more stacks than curl and nginx, each against its plain
//! twin: Python's ssl (http.client and urllib) to a Python HTTPS server, and gRPC over TLS
//! with Debian's grpcio (which calls the system's libssl). And TLS it cannot read is said,
//! with the reason, not left silent: GnuTLS (gnutls-cli), and the grpcio wheel from PyPI
//! (BoringSSL linked in without symbols), in /api/stats and on the dashboard (headless
//! Chromium, `web/e2e/tls.mjs`).
//!
//! Needs root, Debian's python3 with python3-grpcio, gnutls-bin, openssl, curl, and the
//! grpcio venv `bash scripts/setup.sh` makes; when one is missing the test fails and says
//! which.

mod common;
use common::tls::{hub_stats, self_signed, tap_during_hub};
use common::Kill;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tests here run one at a time (each taps loopback).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PY: &str = "/usr/bin/python3";

fn peers() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/tlspeers.py").to_string_lossy().into_owned()
}

/// Starts `tlspeers.py SERVE CERT KEY` with `python`; the two ports it prints (TLS, plain).
fn serve(python: &str, what: &str, cert: &Path, key: &Path) -> (Kill, u16, u16) {
    let mut child = Command::new(python).arg(peers()).arg(what).arg(cert).arg(key).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("this test needs {python}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let p: Vec<u16> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(p.len(), 2, "{what} said {line:?}");
    (Kill(child), p[0], p[1])
}

fn run(python: &str, args: &[&str], linger: &str) {
    let o = Command::new(python).arg(peers()).args(args).env("LINGER", linger).output().unwrap();
    assert!(o.status.success(), "{python} tlspeers.py {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The entries to `port` of `protocol`, in time order.
fn to<'a>(entries: &'a [Value], port: u16, protocol: &str) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = entries.iter().filter(|e| e["dst"]["port"] == port && e["protocol"] == protocol).collect();
    v.sort_by_key(|e| e["timestamp"].as_str().unwrap_or("").to_string());
    v
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    v
}

fn root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: uprobes and other processes' /proc entries");
}

#[test]
fn python_ssl_and_grpcio_over_tls_read_as_their_plain_twins() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (_http, https_port, http_port) = serve(PY, "http-serve", &cert, &key);
    let (_grpc, grpcs_port, grpc_port) = serve(PY, "grpc-serve", &cert, &key);
    let c = cert.to_string_lossy().into_owned();
    let (entries, err, _) = tap_during_hub(&[], move |_| {
        run(PY, &["http-get", &format!("https://127.0.0.1:{https_port}")], "0.5");
        run(PY, &["http-get", &format!("http://127.0.0.1:{http_port}")], "0.5");
        run(PY, &["grpc-call", &format!("127.0.0.1:{grpcs_port}"), &c], "0.5");
        run(PY, &["grpc-call", &format!("127.0.0.1:{grpc_port}")], "0.5");
    });

    // HTTP/1.1: http.client's GET and POST on one connection, urllib's two GETs on their own
    let (tls, plain) = (to(&entries, https_port, "http"), to(&entries, http_port, "http"));
    assert_eq!((tls.len(), plain.len()), (4, 4), "TLS {tls:?}\nplain {plain:?}\n{err}");
    for (t, p) in tls.iter().zip(&plain) {
        assert_eq!((t["capture_source"].as_str(), p["capture_source"].as_str()), (Some("ebpf_tls"), Some("ebpf")));
        assert_eq!(t["tls"]["library"], "openssl");
        for f in ["/request/method", "/request/path", "/request/query_string", "/request/body", "/response/status_code", "/response/body", "/response/headers/content-type"] {
            assert_eq!(t.pointer(f), p.pointer(f), "{f}: {t}\n{p}");
        }
        assert_eq!(without(&t["request"]["headers"], &["host"]), without(&p["request"]["headers"], &["host"]), "{t}\n{p}");
        assert_eq!(t["anomalies"], serde_json::json!([]), "{t}");
    }
    assert_eq!(tls[1]["request"]["body"]["text"], r#"{"order": 7, "items": ["sock"]}"#);
    assert_eq!(tls[2]["request"]["headers"]["user-agent"].as_str().map(|u| u.starts_with("Python-urllib")), Some(true), "{}", tls[2]);
    // one connection after another, each named as itself (its own client port), though
    // the process reuses the fd number and OpenSSL the SSL object's address
    let ports: Vec<u64> = tls.iter().filter_map(|e| e["src"]["port"].as_u64()).collect();
    assert!(ports[0] == ports[1] && ports[1] != ports[2] && ports[2] != ports[3], "client ports {ports:?}");
    let plain_ports: Vec<u64> = plain.iter().filter_map(|e| e["src"]["port"].as_u64()).collect();
    assert!(plain_ports[2] != plain_ports[3], "{plain_ports:?}");

    // gRPC: the same calls, messages and status over TLS as in plain
    let (tls, plain) = (to(&entries, grpcs_port, "grpc"), to(&entries, grpc_port, "grpc"));
    assert_eq!((tls.len(), plain.len()), (2, 2), "TLS {tls:?}\nplain {plain:?}\n{err}");
    for (t, p) in tls.iter().zip(&plain) {
        assert_eq!(t["capture_source"], "ebpf_tls");
        assert_eq!(t["tls"]["library"], "openssl");
        let strip = |r: &Value| {
            // (the authority is the name the certificate was checked against over TLS)
            let mut r = without(r, &["host"]);
            if let Some(h) = r.pointer_mut("/headers") {
                // (grpc-timeout is what remains of the deadline when sent: it varies)
                *h = without(h, &[":authority", ":scheme", "user-agent", "grpc-timeout"]);
            }
            r
        };
        assert_eq!(strip(&t["request"]), strip(&p["request"]), "{t}\n{p}");
        assert_eq!(without(&t["response"], &["headers"]), without(&p["response"], &["headers"]), "{t}\n{p}");
        assert_eq!(t["request"]["headers"][":scheme"], "https");
    }
    assert_eq!(tls[1]["response"]["grpc_status"].as_u64().or_else(|| tls[1].pointer("/response/status").and_then(Value::as_u64)), Some(3), "{}", tls[1]);
}

#[test]
fn tls_that_cannot_be_read_is_said_with_the_reason() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (_http, https_port, _) = serve(PY, "http-serve", &cert, &key);
    let (_grpc, grpcs_port, _) = serve(PY, "grpc-serve", &cert, &key);
    let home = std::env::var("KSHARK_CACHE").unwrap_or_else(|_| format!("{}/.cache/kshark", std::env::var("HOME").unwrap_or_default()));
    let wheel = format!("{home}/venv/bin/python");
    assert!(Path::new(&wheel).exists(), "{wheel} is missing: bash scripts/setup.sh makes it (grpcio from PyPI)");
    let c = cert.to_string_lossy().into_owned();
    let (_, err, _) = tap_during_hub(&["--web"], move |hub| {
        // gnutls-cli sends a request and stays, the wheel's client lingers after its calls
        let mut gnutls = Command::new("gnutls-cli")
            .args(["--insecure", "--port", &https_port.to_string(), "127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("this test needs gnutls-cli (gnutls-bin)");
        let _ = gnutls.stdin.as_mut().unwrap().write_all(b"GET /catalogue HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let gnutls = Kill(gnutls);
        let call = std::thread::spawn(move || run(&wheel, &["grpc-call", &format!("127.0.0.1:{grpcs_port}"), &c], "2"));
        let t = Instant::now();
        let said = loop {
            let st = hub_stats(hub);
            let blind = st.pointer("/workers/tap/stats/tls/not_readable").and_then(Value::as_array).cloned().unwrap_or_default();
            let gnu = blind.iter().find(|b| b["pid"] == gnutls.0.id()).cloned();
            let boring = blind.iter().find(|b| b["tls"] == "BoringSSL").cloned();
            if let (Some(g), Some(b)) = (gnu, boring) {
                break (g, b);
            }
            assert!(t.elapsed() < Duration::from_secs(3), "not said within 3 s: {}", st.pointer("/workers/tap/stats/tls").cloned().unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(said.0["tls"], "GnuTLS", "{:?}", said);
        assert!(said.0["why"].as_str().is_some_and(|w| w.contains("not hooked")), "{:?}", said);
        assert!(said.1["why"].as_str().is_some_and(|w| w.contains("without symbols")), "{:?}", said);
        assert!(said.1["process"].as_str().is_some_and(|p| p.starts_with("python")), "{:?}", said);
        // the dashboard says it too, in a real browser: the header's badge, the Stats tab
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        assert!(Path::new("/usr/bin/chromium").exists() && web.join("node_modules/playwright-core").is_dir(), "the dashboard check needs chromium and web/node_modules (bash scripts/setup.sh)");
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../web-e2e");
        let _ = std::fs::create_dir_all(&shots);
        let o = Command::new("node")
            .arg(web.join("e2e/tls.mjs"))
            .env("HUB", format!("http://{hub}"))
            .env("CHROMIUM", "/usr/bin/chromium")
            .env("SHOTS", &shots)
            .env("WANT_PROCESS", "gnutls-cli")
            .output()
            .expect("this test needs node");
        assert!(o.status.success(), "the dashboard's TLS status: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        call.join().unwrap();
        drop(gnutls);
    });
    // and the summary says it too
    assert!(err.contains("kshark: TLS: NOT READABLE") || err.contains("kshark: TLS: hooked"), "{err}");
}

#[test]
fn openssl_linked_in_is_found_by_its_symbols_and_a_connection_older_than_the_tap_is_read() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (_http, https_port, _) = serve(PY, "http-serve", &cert, &key);
    // a C client with OpenSSL's static libraries: SSL_read and SSL_write in its own file
    let tlsget = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tlsget-static");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/tlsget.c");
    let o = Command::new("cc")
        .arg(&src)
        .args(["/usr/lib/x86_64-linux-gnu/libssl.a", "/usr/lib/x86_64-linux-gnu/libcrypto.a", "-o"])
        .arg(&tlsget)
        .output()
        .expect("this test needs a C compiler (gcc)");
    assert!(o.status.success(), "cc tlsget.c (needs libssl-dev): {}", String::from_utf8_lossy(&o.stderr));
    // a keep-alive connection opened before the tap, used every 200 ms during it
    let looping = Kill(Command::new(PY).arg(peers()).args(["http-loop", &format!("https://127.0.0.1:{https_port}"), "9"]).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let bin = tlsget.clone();
    let (entries, err, _) = tap_during_hub(&[], move |_| {
        // the first waits 600 ms before it connects: a new executable is hooked at the next
        // look at the processes (every 250 ms); the second runs at once, its file hooked
        for (path, wait) in [("/catalogue?size=5", "600"), ("/catalogue?size=6", "0")] {
            let o = Command::new(&bin).args([&https_port.to_string(), path, wait]).output().unwrap();
            assert!(o.status.success(), "tlsget: {}", String::from_utf8_lossy(&o.stderr));
        }
    });
    drop(looping);
    let to_server = to(&entries, https_port, "http");
    let statics: Vec<&&Value> = to_server.iter().filter(|e| e["request"]["headers"]["user-agent"] == "tlsget-static").collect();
    assert_eq!(statics.len(), 2, "{statics:?}\n{err}");
    for e in &statics {
        assert_eq!((e["capture_source"].as_str(), e["tls"]["library"].as_str(), e["tls"]["version"].as_str()), (Some("ebpf_tls"), Some("openssl"), Some("static")), "{e}");
        assert_eq!(e["response"]["status_code"], 200);
        assert_eq!(e["anomalies"], serde_json::json!([]), "{e}");
    }
    assert_ne!(statics[0]["src"]["port"], statics[1]["src"]["port"]);
    // the older connection: read from its next call on, every exchange whole
    let looped: Vec<&&Value> = to_server.iter().filter(|e| e["request"]["headers"]["x-kshark-test"] == "loop").collect();
    assert!(looped.len() >= 5, "{} exchanges of the older connection read: {looped:?}\n{err}", looped.len());
    assert!(looped.iter().all(|e| e["response"]["status_code"] == 200 && e["anomalies"] == serde_json::json!([]) && e["request"]["query_string"].as_str().is_some_and(|q| q.starts_with("loop="))), "{looped:?}");
    assert!(looped.iter().all(|e| e["src"]["port"] == looped[0]["src"]["port"]), "one connection: {looped:?}");
}
