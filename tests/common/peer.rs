//! Real peers on loopback, recorded with tcpdump and read back by `kshark read`: the
//! helpers the peer tests share.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn need(tool: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is missing: run `sudo bash scripts/setup.sh`, which installs the Debian packages the peer tests use");
}

/// The Python of the venv `scripts/setup.sh` makes, checked to import `module`.
pub fn venv_python(module: &str) -> PathBuf {
    let base = std::env::var_os("KSHARK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/kshark"));
    let py = base.join("venv/bin/python");
    let ok = Command::new(&py).args(["-c", &format!("import {module}")]).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "Python's {module} is missing in {}: run `bash scripts/setup.sh`", py.display());
    py
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// tcpdump on loopback, ready when `start` returns; `stop` ends it by its pid.
pub struct Tcpdump {
    child: Child,
    pcap: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tcpdump {
    pub fn start(filter: &str) -> Tcpdump {
        let root = unsafe { libc_geteuid() } == 0;
        assert!(root, "capturing on lo needs root (CAP_NET_RAW): run the tests as root, as CI does");
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("cap.pcap");
        let log = dir.path().join("tcpdump.log");
        let child = Command::new(need("tcpdump"))
            .args(["-i", "lo", "-U", "--immediate-mode", "-B", "32768", "-Z", "root", "-s", "0", "-w"])
            .arg(&pcap)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tcpdump");
        let t0 = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("listening on") {
            assert!(t0.elapsed() < Duration::from_secs(10), "tcpdump did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(20));
        }
        Tcpdump { child, pcap, _dir: dir }
    }

    pub fn stop(mut self) -> (PathBuf, tempfile::TempDir) {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(self._dir.path().join("tcpdump.log")).unwrap_or_default();
        let size = std::fs::metadata(&self.pcap).map(|m| m.len()).unwrap_or(0);
        assert!(size > 24, "tcpdump recorded nothing: {log}");
        (self.pcap, self._dir)
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub fn wait_port(port: u16) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the server on port {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read(pcap: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["read", pcap.to_str().unwrap(), "--format", "ndjson"];
    args.extend_from_slice(extra);
    let o = super::kshark(&args);
    assert!(o.status.success(), "kshark read failed: {}", super::stderr(&o));
    super::ndjson(&o)
}

