//! `kshark tap` reading HTTPS as plaintext (uprobes on OpenSSL): curl to Python's HTTPS
//! server on loopback, the server started before the tap and curl during it (a process
//! started after the tap began is read too). With `--tls off` nothing of it is read.
//!
//! Needs root, curl, openssl and python3; when one is missing the test fails and says which.

mod common;
use common::{bin, stderr};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's HTTPS server on 127.0.0.1 serving `dir`; and its port.
fn https_server(dir: &std::path::Path) -> (Kill, u16) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs openssl");
    assert!(o.status.success(), "openssl req: {}", String::from_utf8_lossy(&o.stderr));
    let code = format!(
        "import http.server, functools, ssl; h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={:?}); \
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
    let mut args = vec!["tap", "-i", "lo", "--port", "0", "--no-tui", "--format", "ndjson", "--duration", "6s"];
    args.extend_from_slice(extra);
    let mut tap = Command::new(bin()).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // its hub's port, from what it says
    let mut err = BufReader::new(tap.stderr.take().unwrap());
    let mut said = String::new();
    let hub = loop {
        let mut l = String::new();
        assert!(err.read_line(&mut l).unwrap() > 0, "tap ended: {said}");
        said.push_str(&l);
        if let Some(rest) = l.split("hub API on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(1500));
    let o = Command::new("curl").args(["-sk", "--http1.1", "-H", "x-kshark-test: tls"]).arg(format!("https://127.0.0.1:{port}/hello.txt")).output().expect("this test needs curl");
    assert!(o.status.success(), "curl: {}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(Duration::from_millis(1500));
    let stats = Command::new("curl").args(["-s", &format!("http://{hub}/api/stats")]).output().unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap_or_default();
    let out = tap.wait_with_output().unwrap();
    said.push_str(&rest.join().unwrap());
    assert!(out.status.success(), "tap: {said}");
    let entries = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (entries, said, stats)
}

#[test]
fn tap_reads_https_through_openssl_as_plaintext_entries() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: uprobes and other processes' /proc entries");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello, decrypted\n").unwrap();
    let (_server, port) = https_server(dir.path());

    let (entries, err, stats) = tap_during_curl(port, &[]);
    assert!(err.contains("kshark: TLS: reading plaintext through uprobes"), "{err}");
    let tls: Vec<&Value> = entries.iter().filter(|e| e["dst"]["port"] == port).collect();
    assert_eq!(tls.len(), 1, "one HTTPS exchange: {tls:#?}\n{err}");
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

    // off: the ciphertext alone makes no entry
    let (entries, err, _) = tap_during_curl(port, &["--tls", "off"]);
    assert!(!err.contains("TLS: reading"), "{err}");
    assert!(entries.iter().all(|e| e["dst"]["port"] != port), "{entries:#?}");
}
