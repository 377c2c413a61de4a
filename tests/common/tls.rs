//! What the TLS tests share: a certificate, a tap on loopback while traffic runs, and
//! processes that end with the test.

use super::bin;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;


/// A certificate for localhost and its key, made by openssl in `dir`.
pub fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs openssl");
    assert!(o.status.success(), "openssl req: {}", String::from_utf8_lossy(&o.stderr));
    (cert, key)
}

/// `kshark tap -i lo` for a few seconds while `traffic` runs.
pub fn tap_during(extra: &[&str], traffic: impl FnOnce()) -> (Vec<Value>, String, Value) {
    tap_during_hub(extra, |_| traffic())
}

/// [`tap_during`], `traffic` given the tap's hub (`127.0.0.1:PORT`).
pub fn tap_during_hub(extra: &[&str], traffic: impl FnOnce(&str)) -> (Vec<Value>, String, Value) {
    let mut args = vec!["tap", "-i", "lo", "--port", "0", "--no-tui", "--format", "ndjson", "--duration", "12s"];
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
    // its output is read as it comes (a full pipe would hold the tap up)
    let mut stdout = tap.stdout.take().unwrap();
    let printed = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(1500));
    traffic(&hub);
    // the tap reports its counters every second
    std::thread::sleep(Duration::from_millis(2500));
    let stats = Command::new("curl").args(["-s", &format!("http://{hub}/api/stats")]).output().unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap_or_default();
    let status = tap.wait().unwrap();
    said.push_str(&rest.join().unwrap());
    assert!(status.success(), "tap: {said}");
    let entries = printed.join().unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (entries, said, stats)
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}


/// The tap's hub's `/api/stats`.
pub fn hub_stats(hub: &str) -> Value {
    let o = Command::new("curl").args(["-s", "-m", "2", &format!("http://{hub}/api/stats")]).output().expect("this test needs curl");
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}
