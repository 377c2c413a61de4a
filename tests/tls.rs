//! `kshark tap` reading HTTPS as plaintext (uprobes on OpenSSL): curl to Python's HTTPS
//! server and to nginx on loopback, the servers started before the tap and curl during it
//! (a process started after the tap began is read too). With `--tls off` nothing of it is
//! read.
//!
//! Each curl keeps its connection half a second after the exchange the test looks at
//! (`--rate 2/s` and a second URL), which once was needed for the socket to be found; the
//! kernel side now reads a connection's addresses at its first call, and
//! `tests/tls_stacks.rs` reads one-shot connections (urllib's `Connection: close`).
//!
//! Needs root, curl, openssl and python3; when one is missing the test fails and says which.

mod common;

use common::tls::{free_port, self_signed, tap_during};
use common::Kill;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The tests here run one at a time: each taps loopback, and a second tap (with its own
/// tracer) would see the other's traffic and load the machine it measures.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Python's HTTPS server on 127.0.0.1 serving `dir`; and its port.
fn https_server(dir: &std::path::Path) -> (Kill, u16) {
    let (cert, key) = self_signed(dir);
    let code = format!(
        "import http.server, functools, ssl; h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={:?}); \
         http.server.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'; \
         s = http.server.HTTPServer(('127.0.0.1', 0), h); ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain({:?}, {:?}); \
         s.socket = ctx.wrap_socket(s.socket, server_side=True); print(s.server_address[1], flush=True); s.serve_forever()",
        dir.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    );
    let mut child = Command::new("python3").args(["-c", &code]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("this test needs python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Kill(child), line.trim().parse().unwrap_or_else(|_| panic!("the server said {line:?}")))
}

/// `kshark tap -i lo` for a few seconds while curl fetches `/hello.txt` over HTTPS: the
/// entries, what the tap said, and its hub's `/api/stats` after the fetch.
fn tap_during_curl(port: u16, extra: &[&str]) -> (Vec<Value>, String, Value) {
    tap_during(extra, move || {
        let o = Command::new("curl")
            .args(["-sk", "--http1.1", "--rate", "2/s", "-H", "x-kshark-test: tls", "-o", "/dev/null", "-o", "/dev/null"])
            .arg(format!("https://127.0.0.1:{port}/hello.txt"))
            .arg(format!("https://127.0.0.1:{port}/later.txt"))
            .output()
            .expect("this test needs curl");
        assert!(o.status.success(), "curl: {}", String::from_utf8_lossy(&o.stderr));
    })
}

#[test]
fn tap_reads_https_through_openssl_as_plaintext_entries() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: uprobes and other processes' /proc entries");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello, decrypted\n").unwrap();
    std::fs::write(dir.path().join("later.txt"), "and later\n").unwrap();
    let (_server, port) = https_server(dir.path());

    let (entries, err, stats) = tap_during_curl(port, &[]);
    assert!(err.contains("kshark: TLS: reading plaintext through uprobes"), "{err}");
    let tls: Vec<&Value> = entries.iter().filter(|e| e["dst"]["port"] == port).collect();
    assert_eq!(tls.len(), 2, "two HTTPS exchanges: {tls:#?}\n{err}");
    assert_eq!(tls[1]["request"]["path"], "/later.txt");
    let e = tls[0];
    assert_eq!(e["capture_source"], "ebpf_tls");
    assert_eq!(e["tls"], serde_json::json!({"library": "openssl", "version": "3"}));
    assert_eq!((e["request"]["method"].as_str(), e["request"]["path"].as_str()), (Some("GET"), Some("/hello.txt")));
    assert_eq!(e["request"]["headers"]["x-kshark-test"], "tls");
    assert_eq!(e["response"]["status_code"], 200);
    assert_eq!(e["response"]["body"]["text"], "hello, decrypted\n");
    assert_eq!(e["src"]["ip"], "127.0.0.1");
    assert_eq!(e["anomalies"], serde_json::json!([]));
    // what is hooked, in the stats the UIs read: the server at least (curl came and went)
    let tls = &stats["workers"]["tap"]["stats"]["tls"];
    let hooked = tls["hooked"].as_array().unwrap_or_else(|| panic!("no TLS status in /api/stats: {stats}"));
    assert!(hooked.iter().any(|p| p["process"].as_str().is_some_and(|c| c.starts_with("python")) && p["library"] == "openssl" && p["version"] == "3"), "{tls}");
    assert!(tls["calls"].as_u64().unwrap_or(0) >= 2, "{tls}");

    // the filter's word
    let (entries, err, _) = tap_during_curl(port, &["--filter", "tls && path == '/hello.txt'"]);
    assert_eq!(entries.len(), 1, "{entries:#?}: {err}");
    assert_eq!(entries[0]["request"]["path"], "/hello.txt");

    // off: the ciphertext alone makes no entry
    let (entries, err, _) = tap_during_curl(port, &["--tls", "off"]);
    assert!(!err.contains("TLS: reading"), "{err}");
    assert!(entries.iter().all(|e| e["dst"]["port"] != port), "{entries:#?}");
}

#[test]
fn curl_to_nginx_over_tls_with_http1_and_h2_reads_as_the_same_as_plain() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: uprobes and other processes' /proc entries");
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello over h2\n").unwrap();
    std::fs::write(www.join("later.txt"), "later\n").unwrap();
    let big: String = (0..4000).map(|i| format!("row {i:05} of a larger answer\n")).collect();
    std::fs::write(www.join("big.txt"), &big).unwrap();
    let (cert, key) = self_signed(dir.path());
    let (tls, plain, tls1, plain1) = (free_port(), free_port(), free_port(), free_port());
    let d = dir.path().display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; error_log {d}/error.log; pid {d}/nginx.pid;
         events {{ worker_connections 64; }}
         http {{ access_log off; client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3; uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
           server {{ listen 127.0.0.1:{tls} ssl http2; ssl_certificate {}; ssl_certificate_key {}; root {}; }}
           server {{ listen 127.0.0.1:{plain} http2; root {}; }}
           server {{ listen 127.0.0.1:{tls1} ssl; ssl_certificate {}; ssl_certificate_key {}; root {}; }}
           server {{ listen 127.0.0.1:{plain1}; root {}; }} }}",
        cert.display(),
        key.display(),
        www.display(),
        www.display(),
        cert.display(),
        key.display(),
        www.display(),
        www.display()
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let nginx = Command::new("nginx").arg("-c").arg(dir.path().join("nginx.conf")).stderr(Stdio::piped()).spawn().expect("this test needs nginx (nginx-light)");
    let _nginx = Kill(nginx);
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "nginx did not listen: {}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (entries, err, _) = tap_during(&[], move || {
        for (mode, url) in [("--http2", format!("https://127.0.0.1:{tls}")), ("--http2-prior-knowledge", format!("http://127.0.0.1:{plain}"))] {
            // one connection each (curl 7.88 and nginx 1.22 fail a second request on one
            // prior-knowledge h2c connection: "Error in the HTTP2 framing layer")
            for file in ["hello.txt", "big.txt"] {
                let mut c = Command::new("curl");
                c.args(["-sSk", mode, "-o", "/dev/null"]).arg(format!("{url}/{file}"));
                if mode == "--http2" {
                    // over TLS the connection stays half a second more (see the top)
                    c.args(["--rate", "2/s", "-o", "/dev/null"]).arg(format!("{url}/later.txt"));
                }
                let o = c.output().unwrap();
                assert!(o.status.success(), "curl {mode} {url}/{file}: {:?} {}", o.status, String::from_utf8_lossy(&o.stderr));
            }
        }
        // HTTP/1.1: one-shot curls, each connection closed at once
        for url in [format!("https://127.0.0.1:{tls1}"), format!("http://127.0.0.1:{plain1}")] {
            for file in ["hello.txt", "big.txt"] {
                let o = Command::new("curl").args(["-sSk", "--http1.1", "-o", "/dev/null"]).arg(format!("{url}/{file}")).output().unwrap();
                assert!(o.status.success(), "curl --http1.1 {url}/{file}: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    });
    let of = |port: u16| -> Vec<&Value> {
        let mut v: Vec<&Value> = entries.iter().filter(|e| e["dst"]["port"] == port && e["protocol"] == "http" && e["request"]["path"] != "/later.txt").collect();
        v.sort_by_key(|e| e["request"]["path"].as_str().unwrap_or("").to_string());
        v
    };
    let (over_tls, over_h2c) = (of(tls), of(plain));
    assert_eq!((over_tls.len(), over_h2c.len()), (2, 2), "TLS: {over_tls:#?}\nh2c: {over_h2c:#?}\n{err}");
    for (t, p) in over_tls.iter().zip(&over_h2c) {
        assert_eq!(t["capture_source"], "ebpf_tls");
        assert_eq!(t["http_version"], "2");
        assert_eq!(t["http_version"], p["http_version"]);
        for f in ["/request/method", "/request/path", "/response/status_code", "/response/body/size", "/response/body/text", "/response/headers/content-type", "/request/http2/stream_id"] {
            assert_eq!(t.pointer(f), p.pointer(f), "{f}: {t}\n{p}");
        }
        assert_eq!(t["anomalies"], serde_json::json!([]), "{t}");
    }
    assert_eq!(over_tls[0]["response"]["body"]["size"].as_u64(), Some(big.len() as u64));
    let (h1_tls, h1_plain) = (of(tls1), of(plain1));
    assert_eq!((h1_tls.len(), h1_plain.len()), (2, 2), "TLS: {h1_tls:#?}\nplain: {h1_plain:#?}\n{err}");
    for (t, p) in h1_tls.iter().zip(&h1_plain) {
        assert_eq!((t["capture_source"].as_str(), t["http_version"].as_str()), (Some("ebpf_tls"), Some("1.1")));
        for f in ["/request/method", "/request/path", "/request/headers/user-agent", "/response/status_code", "/response/body/size", "/response/body/text", "/response/headers/content-type", "/response/headers/etag"] {
            assert_eq!(t.pointer(f), p.pointer(f), "{f}: {t}\n{p}");
        }
        assert_eq!(t["anomalies"], serde_json::json!([]), "{t}");
    }
}
