//! `kshark tap` reading Go's crypto/tls as plaintext: a Go net/http client and server
//! (`tests/go/tlspeer`, built here with Debian's Go) speaking h2 over TLS, compared with
//! the same calls as h2c, which kshark reads from the packets; and the same program
//! stripped (no symbol table, no DWARF: its functions are found in `.gopclntab`),
//! started while the tap runs, hooked within 2 s.
//!
//! Needs root, Debian's golang-go and golang-golang-x-net-dev, openssl, curl and binutils
//! (`bash scripts/setup.sh` installs them); when one is missing the test fails and says
//! which.

mod common;
use common::tls::{free_port, hub_stats, self_signed, tap_during_hub};
use common::Kill;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds tlspeer with Debian's Go, with and without its symbols: the two binaries.
fn build() -> (PathBuf, PathBuf) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-tlspeer");
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/tlspeer");
    assert!(Path::new("/usr/share/gocode/src/golang.org/x/net/http2/h2c").exists(), "this test needs golang-golang-x-net-dev (bash scripts/setup.sh)");
    let mut bins = Vec::new();
    for (name, flags) in [("tlspeer", ""), ("tlspeer-stripped", "-s -w")] {
        let bin = out.join(name);
        let o = Command::new("go")
            .args(["build", "-ldflags", flags, "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(&src)
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", out.join("cache"))
            .output()
            .expect("this test needs Go (golang-go: bash scripts/setup.sh)");
        assert!(o.status.success(), "go build: {}", String::from_utf8_lossy(&o.stderr));
        bins.push(bin);
    }
    (bins[0].clone(), bins[1].clone())
}

/// `name`'s address in the binary's symbol table, as a file offset (from `nm` and `readelf`).
fn symbol_offset(bin: &Path, name: &str) -> u64 {
    let nm = Command::new("nm").arg(bin).output().expect("this test needs nm (binutils)");
    let addr = String::from_utf8_lossy(&nm.stdout).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 3 && f[2] == name).then(|| u64::from_str_radix(f[0], 16).unwrap())
    });
    let addr = addr.unwrap_or_else(|| panic!("{name} not in {}'s symbol table", bin.display()));
    let re = Command::new("readelf").args(["-SW"]).arg(bin).output().unwrap();
    let text = String::from_utf8_lossy(&re.stdout);
    let l = text.lines().find(|l| l.contains(" .text ")).expect("a .text section");
    let f: Vec<&str> = l.split(']').nth(1).unwrap().split_whitespace().collect();
    let (vaddr, off) = (u64::from_str_radix(f[2], 16).unwrap(), u64::from_str_radix(f[3], 16).unwrap());
    addr - vaddr + off
}

/// Starts `bin serve` on two free ports (TLS, plain); returns it and the ports, once both
/// listen.
fn serve(bin: &Path, dir: &Path) -> (Kill, u16, u16) {
    let (cert, key) = self_signed(dir);
    let (tls, plain) = (free_port(), free_port());
    let child = Command::new(bin)
        .arg("serve")
        .args([&cert, &key])
        .args([format!("127.0.0.1:{tls}"), format!("127.0.0.1:{plain}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() || std::net::TcpStream::connect(("127.0.0.1", plain)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "tlspeer did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Kill(child), tls, plain)
}

fn get(bin: &Path, url: &str) {
    let o = Command::new(bin).args(["get", url]).output().unwrap();
    assert!(o.status.success(), "tlspeer get {url}: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3, "{}", String::from_utf8_lossy(&o.stdout));
}

/// The HTTP entries to `port`, by path.
fn to(entries: &[Value], port: u16) -> Vec<&Value> {
    let mut v: Vec<&Value> = entries.iter().filter(|e| e["dst"]["port"] == port && e["protocol"] == "http").collect();
    v.sort_by_key(|e| e["request"]["path"].as_str().unwrap_or("").to_string());
    v
}

/// A header map without what differs between two connections (the port in the
/// authority, the date, the scheme).
fn headers(v: &Value) -> Value {
    let mut h = v.clone();
    if let Some(o) = h.as_object_mut() {
        o.remove("host");
        o.remove(":authority");
        o.remove("date");
        o.remove(":scheme");
    }
    h
}

/// An entry without its bodies, for messages.
fn short(e: &Value) -> Value {
    let mut e = e.clone();
    for b in ["/request/body", "/response/body"] {
        if let Some(v) = e.pointer_mut(b) {
            if let Some(o) = v.as_object_mut() {
                o.remove("text");
                o.remove("base64");
            }
        }
    }
    e
}

#[test]
fn go_h2_over_tls_reads_as_the_same_streams_as_h2c_stripped_binaries_too() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: uprobes and other processes' /proc entries");
    let (bin, stripped) = build();

    // the functions from .gopclntab alone are where the symbol table puts them, and the
    // stripped build (no symbols) is read alike
    let kshark_capture::tls_go::GoExe::Hookable(g) = kshark_capture::tls_go::inspect(&bin).unwrap() else { panic!("tlspeer uses crypto/tls") };
    // (probed at the stack check's jump, a few bytes in: the kernel emulates a jump)
    for (probe, name) in [(g.write, "crypto/tls.(*Conn).Write"), (g.read, "crypto/tls.(*Conn).Read")] {
        let start = symbol_offset(&bin, name);
        assert!((start..start + 16).contains(&probe), "{name} at {start:#x}, probed at {probe:#x}");
        assert_ne!(probe, start, "{name}: Go 1.19 starts with a stack check");
    }
    assert!(g.version.starts_with("go1."), "{g:?}");
    let kshark_capture::tls_go::GoExe::Hookable(gs) = kshark_capture::tls_go::inspect(&stripped).unwrap() else { panic!("the stripped tlspeer is read too") };
    assert_eq!((gs.read_returns.len(), &gs.version), (g.read_returns.len(), &g.version));
    // Read's plaintext is taken where it copies it out (runtime.memmove), not at its RETs
    assert!(g.read_copy.is_some() && gs.read_copy.is_some(), "{g:?}");
    let nm = Command::new("nm").arg(&stripped).output().unwrap();
    assert!(!nm.status.success() || String::from_utf8_lossy(&nm.stdout).trim().is_empty(), "the stripped build has symbols");

    // the server runs before the tap; the client (the same file) during it
    let dir = tempfile::tempdir().unwrap();
    let (_server, tls, plain) = serve(&bin, dir.path());
    let client = bin.clone();
    let (entries, err, stats) = tap_during_hub(&[], move |_| {
        get(&client, &format!("https://127.0.0.1:{tls}"));
        get(&client, &format!("http://127.0.0.1:{plain}"));
    });
    let (over_tls, over_h2c) = (to(&entries, tls), to(&entries, plain));
    assert_eq!((over_tls.len(), over_h2c.len()), (3, 3), "TLS: {:?}\nh2c: {:?}\n{err}", over_tls.iter().map(|e| short(e)).collect::<Vec<_>>(), over_h2c.iter().map(|e| short(e)).collect::<Vec<_>>());
    for (t, p) in over_tls.iter().zip(&over_h2c) {
        assert_eq!(t["capture_source"], "ebpf_tls", "{t}");
        assert_eq!(t["tls"]["library"], "go");
        assert_eq!(t["tls"]["version"], Value::from(g.version.clone()));
        assert_eq!((t["http_version"].as_str(), p["http_version"].as_str()), (Some("2"), Some("2")));
        // (stream ids differ: net/http's own h2 client and x/net's h2c one number streams
        // differently)
        for f in ["/request/method", "/request/path", "/request/query_string", "/request/body", "/response/status_code", "/response/body"] {
            assert_eq!(t.pointer(f), p.pointer(f), "{f}: {}\n{}\n{err}", short(t), short(p));
        }
        assert_eq!(headers(&t["request"]["headers"]), headers(&p["request"]["headers"]), "{}\n{}", short(t), short(p));
        assert_eq!(headers(&t["response"]["headers"]), headers(&p["response"]["headers"]), "{}\n{}", short(t), short(p));
        assert_eq!((t["request"]["headers"][":scheme"].as_str(), p["request"]["headers"][":scheme"].as_str()), (Some("https"), Some("http")));
        assert_eq!(t["anomalies"], serde_json::json!([]), "{}", short(t));
    }
    // the 1 MB answer whole, the POST's body both ways
    assert_eq!(over_tls[0]["request"]["path"], "/big");
    assert_eq!(over_tls[0]["response"]["body"]["size"], 1_048_576);
    assert_eq!(over_tls[1]["request"]["body"]["text"], r#"{"order":42,"items":["sock","shoe"]}"#);
    assert_eq!(over_tls[1]["response"]["headers"]["x-echoed"], "36");
    let hooked = &stats["workers"]["tap"]["stats"]["tls"]["hooked"];
    assert!(hooked.as_array().into_iter().flatten().any(|p| p["library"] == "go" && p["process"] == "tlspeer"), "{}", stats.to_string().chars().take(3000).collect::<String>());

    // the stripped build, started while the tap runs: hooked within 2 s, then read
    let dir2 = tempfile::tempdir().unwrap();
    let d2 = dir2.path().to_path_buf();
    let s2 = stripped.clone();
    let (entries, err, _) = tap_during_hub(&[], move |hub| {
        let (server, tls, _) = serve(&s2, &d2);
        let pid = server.0.id();
        let t = Instant::now();
        loop {
            let st = hub_stats(hub);
            let hooked = st.pointer("/workers/tap/stats/tls/hooked").and_then(Value::as_array).cloned().unwrap_or_default();
            if hooked.iter().any(|p| p["pid"] == pid) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(2), "a Go server started during the tap was not hooked within 2 s: {st}");
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("tls_go: the stripped server was hooked {} ms after it listened", t.elapsed().as_millis());
        get(&s2, &format!("https://127.0.0.1:{tls}"));
        std::fs::write(d2.join("port"), tls.to_string()).unwrap();
        drop(server);
    });
    let tls: u16 = std::fs::read_to_string(dir2.path().join("port")).unwrap().parse().unwrap();
    let read = to(&entries, tls);
    let read: Vec<Value> = read.into_iter().map(short).collect();
    assert_eq!(read.len(), 3, "{read:?}\n{err}");
    assert!(read.iter().all(|e| e["capture_source"] == "ebpf_tls" && e["tls"]["library"] == "go" && e["anomalies"] == serde_json::json!([])), "{read:?}");
    assert_eq!(read[0]["response"]["body"]["size"], 1_048_576);
}

#[test]
fn an_h2_connection_over_tls_older_than_the_tap_is_joined_mid_way() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: uprobes and other processes' /proc entries");
    let (bin, _) = build();
    let dir = tempfile::tempdir().unwrap();
    let (_server, tls, _) = serve(&bin, dir.path());
    // one h2 connection, 5 requests a second for 11 s, opened before the tap starts
    let load = Kill(Command::new(&bin).args(["load", &format!("https://127.0.0.1:{tls}"), "11", "1", "5"]).stdout(Stdio::null()).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(800));
    let (entries, err, _) = tap_during_hub(&[], |_| std::thread::sleep(Duration::from_secs(4)));
    drop(load);
    let read = to(&entries, tls);
    assert!(read.len() >= 10, "{} exchanges of the older connection read\n{err}", read.len());
    assert!(read.iter().all(|e| e["src"]["port"] == read[0]["src"]["port"]), "one connection");
    for e in &read {
        assert_eq!((e["capture_source"].as_str(), e["http_version"].as_str()), (Some("ebpf_tls"), Some("2")), "{}", short(e));
        assert_eq!(e["request"]["method"], "GET", "{}", short(e));
        // each stream's answer is seen (its 1 KiB body counted); header blocks that refer
        // to the HPACK table of before the tap cannot be decoded, and say so, as for
        // packets joined mid-way
        assert!(e["response_size"].as_u64().unwrap_or(0) >= 1024, "{}", short(e));
        let said = e["anomalies"].as_array().is_some_and(|a| a.iter().any(|x| x == "hpack_desync"));
        assert!(e["response"]["status_code"] == 200 || said, "{}", short(e));
    }
}
