//! The TLS tracer against real peers on loopback: curl (OpenSSL) fetching from Python's
//! HTTPS server (OpenSSL), both hooked through uprobes; the plaintext becomes the same
//! HTTP entries a plain-HTTP fetch of the same files makes.
//!
//! Needs root (uprobes, /proc of other processes), curl, openssl and python3; when one is
//! missing the test fails and says which.

use kshark_capture::source::Source;
use kshark_capture::tls::TlsSource;
use kshark_dissect::entry::CaptureSource;
use kshark_dissect::{Config, Dissector, Entry};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn need(tool: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    assert!(ok, "this test needs {tool} (bash scripts/setup.sh installs it)");
}

/// A Python server on 127.0.0.1 serving `dir`, with TLS when `cert` is given; its port.
fn server(dir: &std::path::Path, cert: Option<(&std::path::Path, &std::path::Path)>) -> (Kill, u16) {
    let wrap = match cert {
        Some((c, k)) => format!(
            "import ssl; ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain({:?}, {:?}); s.socket = ctx.wrap_socket(s.socket, server_side=True); ",
            c.to_str().unwrap(),
            k.to_str().unwrap()
        ),
        None => String::new(),
    };
    let code = format!(
        "import http.server, functools, sys; h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={:?}); \
         http.server.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'; \
         s = http.server.HTTPServer(('127.0.0.1', 0), h); {wrap}print(s.server_address[1], flush=True); s.serve_forever()",
        dir.to_str().unwrap()
    );
    let mut child = Command::new("python3").args(["-c", &code]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the server said {line:?}"));
    (Kill(child), port)
}

/// Runs `fetch` while `source` is polled, and returns the HTTP entries its packets make.
fn entries(source: &mut dyn Source, capture_source: CaptureSource, fetch: impl FnOnce() + Send + 'static) -> Vec<Entry> {
    let mut d = Dissector::new(Config { capture_source, ..Config::default() });
    // polled while the fetch runs, as a tap does
    let fetching = std::thread::spawn(fetch);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        source.poll(Duration::from_millis(20), &mut |p| d.packet(p.ts, p.linktype, p.data)).unwrap();
    }
    fetching.join().unwrap();
    d.finish();
    d.drain_entries().filter(|e| e.http_request().is_some()).collect()
}

#[test]
fn curl_to_python_over_https_reads_as_the_same_exchanges_over_http() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: uprobes and other processes' /proc entries");
    for t in ["curl", "openssl", "python3"] {
        need(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("small.txt"), "hello over TLS\n").unwrap();
    // a large body: read over many SSL_read calls, each chunked if over 16 KiB
    let big: String = (0..20_000).map(|i| format!("line {i:06} of a large body\n")).collect();
    std::fs::write(files.join("big.txt"), &big).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl req: {}", String::from_utf8_lossy(&o.stderr));

    let (_tls_server, tls_port) = server(&files, Some((&cert, &key)));
    let (_plain_server, plain_port) = server(&files, None);
    let mut tls = TlsSource::open().unwrap_or_else(|e| panic!("the TLS tracer: {e}"));
    // what a tap on loopback captures
    tls.apply(&kshark_capture::source::Plan { ifaces: vec![kshark_capture::source::Iface::named("lo")], targets: None }).unwrap();
    let fetch = |scheme: &'static str, port: u16| move || {
        let o = Command::new("curl")
            .args(["-sk", "--http1.1", "-o", "/dev/null", "-o", "/dev/null"])
            .arg(format!("{scheme}://127.0.0.1:{port}/small.txt"))
            .arg(format!("{scheme}://127.0.0.1:{port}/big.txt"))
            .output()
            .unwrap();
        assert!(o.status.success(), "curl {scheme}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let over_tls = entries(&mut tls, CaptureSource::EbpfTls, fetch("https", tls_port));
    let st = tls.tls_stats();
    assert!(st.libraries >= 1, "no OpenSSL library hooked: {st:?}");

    // the same fetch over plain HTTP, captured on loopback as packets
    let mut lo = kshark_capture::live_pcap::PcapSource::open(&kshark_capture::source::Plan { ifaces: vec![kshark_capture::source::Iface::named("lo")], targets: None }).unwrap();
    let over_http = entries(&mut lo, CaptureSource::Libpcap, fetch("http", plain_port));
    let over_http: Vec<Entry> = over_http.into_iter().filter(|e| e.dst.port == plain_port).collect();

    assert_eq!(over_tls.len(), 2, "entries over TLS: {over_tls:#?}; tracer: {st:?}");
    assert_eq!(over_http.len(), 2, "entries over HTTP: {over_http:#?}");
    for (t, p) in over_tls.iter().zip(&over_http) {
        let (tq, pq) = (t.http_request().unwrap(), p.http_request().unwrap());
        let (ts, ps) = (t.http_response().unwrap(), p.http_response().unwrap());
        assert_eq!((&tq.method, &tq.path), (&pq.method, &pq.path));
        assert_eq!(tq.headers.get("user-agent"), pq.headers.get("user-agent"));
        assert_eq!(ts.status_code, ps.status_code);
        assert_eq!(ts.body.size, ps.body.size, "{}", tq.path);
        assert_eq!(ts.body.text, ps.body.text, "{}", tq.path);
        assert!(t.anomalies.is_empty(), "{:?}", t.anomalies);
        // both ends are the connection's real addresses: curl's port and the server's
        assert_eq!(t.dst.port, tls_port);
        assert_eq!(t.capture_source, CaptureSource::EbpfTls);
    }
    assert_eq!(over_tls[1].http_response().unwrap().body.size as usize, big.len());
    // both curl and the server were traced: the server's copy of each call was left out
    assert!(st.other_end_copies > 0, "{st:?}");
    eprintln!("tls: {st:?}");
}
