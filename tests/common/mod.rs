//! Helpers for the binary's integration tests.
#![allow(dead_code)]

pub mod lab;
pub mod peer;
pub mod tls;

/// A child process ended (killed, waited for) when the test ends, however it ends.
pub struct Kill(pub std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// `../shared/corpus`, or a failure that says it is missing: these tests never pass silently.
pub fn corpus() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    assert!(
        p.join("pcaps").is_dir(),
        "the shared corpus is missing: expected the captures in {} (the project's tests read them from ../shared/corpus beside the checkout)",
        p.display()
    );
    p
}

/// The binary under test: this build's, or `KSHARK_BIN` (to run a suite against another
/// build, such as an older one, to see which tests it fails).
pub fn bin() -> PathBuf {
    std::env::var_os("KSHARK_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kshark")), PathBuf::from)
}

pub fn kshark(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run kshark")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn ndjson(o: &Output) -> Vec<serde_json::Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// A `kshark hub` process, killed when dropped; its stderr is kept in `log`.
pub struct Hub {
    pub child: Child,
    pub port: u16,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Hub {
    pub fn start(data: &Path, listen: &str, extra: &[&str]) -> Hub {
        let mut child = Command::new(bin())
            .args(["hub", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start kshark hub");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = String::new();
        let port = loop {
            let l = lines.next().and_then(Result::ok).unwrap_or_else(|| panic!("hub ended before listening: {log}"));
            log.push_str(&l);
            log.push('\n');
            if let Some(rest) = l.split("listening on ").nth(1) {
                break rest.split(':').nth(2).and_then(|p| p.split(' ').next()).and_then(|p| p.parse().ok()).expect("a port");
            }
        };
        let log = std::sync::Arc::new(std::sync::Mutex::new(log));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                l2.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        Hub { child, port, log }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn kill9(mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET (`Host: localhost`, the token as `Authorization: Bearer`):
/// status, head and body (de-chunked: the hub streams its answers).
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut r = Vec::new();
    s.read_to_end(&mut r).unwrap();
    let split = r.windows(4).position(|w| w == b"\r\n\r\n").map_or(r.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&r[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = &r[split.min(r.len())..];
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, head, String::from_utf8_lossy(body).into_owned());
    }
    // chunks, each after its size in hex on a line of its own
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
        rest = &rest[eol + 4 + n..];
    }
    (status, head, String::from_utf8(out).unwrap())
}

/// Frames put in time order and spread evenly over `secs` seconds (for a capture replayed
/// at its recorded pace).
pub fn spread(frames: &mut [(u64, Vec<u8>)], secs: f64) {
    frames.sort_by_key(|f| f.0);
    let total = frames.len() as f64;
    let start = 1_700_000_000_000_000_000u64;
    for (i, f) in frames.iter_mut().enumerate() {
        f.0 = start + (i as f64 / total * secs * 1e9) as u64;
    }
}
