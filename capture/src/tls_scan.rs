//! What the TLS tracer finds in a process: the files it maps and runs, each looked at
//! once (by device and inode) and classed as a TLS library kshark hooks, one it cannot
//! read (and why), or nothing to do with TLS.
//!
//! - Hooked: OpenSSL's `libssl.so.*`; an executable or library with OpenSSL's or
//!   BoringSSL's `SSL_read`/`SSL_write` linked in, where its symbols are present; a Go
//!   program's crypto/tls (Go 1.17 and later, found through `.gopclntab`).
//! - Not readable, said with the reason: Java (its TLS runs in the JVM), GnuTLS, NSS,
//!   Go before 1.17, BoringSSL linked in without symbols (grpcio's wheel).

use crate::tls_go::{self, GoExe};
use crate::tls_ssl;
use object::{Object, ObjectSymbol};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a file offers the tracer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing to do with TLS (or nothing kshark knows of).
    Nothing,
    /// OpenSSL's API, by its symbols: `library` (`openssl`, `boringssl`), `version`;
    /// `inner`: the internal functions to probe in place of the public ones, when found.
    Ssl { library: String, version: String, inner: Option<tls_ssl::SslInner> },
    /// Go's crypto/tls.
    Go(tls_go::GoTls),
    /// TLS that cannot be read: which stack, and why.
    Unreadable { what: String, why: String },
}

/// `libssl.so.3` → `3`, `libssl.so.1.1` → `1.1`.
pub fn version_of(path: &str) -> String {
    path.rsplit_once("libssl.so.").map_or_else(String::new, |(_, v)| v.to_string())
}

/// Classes the file mapped as `path` in the process (`target`: where kshark reads it,
/// through `/proc/PID/root`); `exe` when it is the process's executable.
pub fn classify(path: &str, target: &Path, exe: bool) -> Found {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with("libssl.so.") {
        return Found::Ssl { library: "openssl".into(), version: version_of(path), inner: tls_ssl::inner(target) };
    }
    let blind = |what: &str, why: &str| Found::Unreadable { what: what.into(), why: why.into() };
    if name.starts_with("libjvm.so") {
        return blind("Java", "Java's TLS (JSSE) runs inside the JVM, not in a native library uprobes can reach");
    }
    if name.starts_with("libgnutls.so") {
        return blind("GnuTLS", "GnuTLS is not hooked (OpenSSL, BoringSSL with symbols and Go's crypto/tls are)");
    }
    if name.starts_with("libnss3.so") || name.starts_with("libssl3.so") {
        return blind("NSS", "NSS is not hooked (OpenSSL, BoringSSL with symbols and Go's crypto/tls are)");
    }
    // only the process's executable and the libraries known to carry a TLS stack of their
    // own are opened: every file of every process would be a lot of reading on a node
    let carrier = name.contains("grpc") || name.contains("envoy") || name.contains("boringssl");
    if !exe && !carrier {
        return Found::Nothing;
    }
    if exe {
        match tls_go::inspect(target) {
            Ok(GoExe::Hookable(g)) => return Found::Go(g),
            Ok(GoExe::Unreadable { version, why }) => return Found::Unreadable { what: format!("Go {version}"), why },
            Ok(GoExe::NoTls { .. }) => return Found::Nothing,
            Ok(GoExe::NotGo) | Err(_) => {}
        }
    }
    match ssl_symbols(target) {
        Ssl::Defines(library) => {
            let inner = if library == "openssl" { tls_ssl::inner(target) } else { None };
            Found::Ssl { library, version: "static".into(), inner }
        }
        // it calls a shared libssl, which is hooked as itself
        Ssl::Imports => Found::Nothing,
        Ssl::Neither if carrier && mentions_boringssl(target) => blind("BoringSSL", "BoringSSL is linked in without symbols (a stripped build): its SSL_read and SSL_write cannot be found"),
        Ssl::Neither => Found::Nothing,
    }
}

/// What a file has of OpenSSL's API.
enum Ssl {
    /// It defines `SSL_read` and `SSL_write`: `openssl` or `boringssl`.
    Defines(String),
    /// It calls them from a shared library.
    Imports,
    Neither,
}

/// Whether the file defines `SSL_read` and `SSL_write` (in its symbol table or its
/// dynamic one), or imports them.
fn ssl_symbols(target: &Path) -> Ssl {
    let Ok(file) = std::fs::File::open(target) else { return Ssl::Neither };
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else { return Ssl::Neither };
    let (mut read, mut write, mut boring, mut imports) = (false, false, false, false);
    for s in elf.symbols().chain(elf.dynamic_symbols()) {
        let name = s.name().unwrap_or("");
        if s.is_undefined() {
            imports |= name == "SSL_read" || name == "SSL_write";
            continue;
        }
        match name {
            "SSL_read" => read = true,
            "SSL_write" => write = true,
            n if n.starts_with("BORINGSSL_") || n == "SSL_CTX_set_grease_enabled" => boring = true,
            _ => {}
        }
    }
    if read && write {
        Ssl::Defines(if boring { "boringssl" } else { "openssl" }.to_string())
    } else if imports {
        Ssl::Imports
    } else {
        Ssl::Neither
    }
}

/// Whether the file names BoringSSL's sources (its own strings say so).
fn mentions_boringssl(target: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(target) else { return false };
    if meta.len() > 512 << 20 {
        return false;
    }
    std::fs::read(target).is_ok_and(|b| memchr::memmem::find(&b, b"third_party/boringssl").is_some() || memchr::memmem::find(&b, b"BoringSSL").is_some())
}

/// The process's own address in its network namespace (not loopback), from the routing
/// table's local entries: a process in a pod gets its pod's address.
pub fn netns_addr(pid: u32) -> Option<IpAddr> {
    let trie = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).ok()?;
    let mut last: Option<Ipv4Addr> = None;
    for l in trie.lines() {
        let t = l.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.filter(|a| !a.is_loopback()) {
                return Some(IpAddr::V4(a));
            }
        }
    }
    None
}

/// A file a process uses that matters for TLS: its (device, inode), the path kshark
/// reaches it by, and what it offers.
#[derive(Clone, Debug)]
pub struct UsedFile {
    pub key: (u64, u64),
    pub target: String,
    pub found: Found,
}

/// A process that uses TLS files: its name, its address, and those files.
#[derive(Clone, Debug)]
pub struct ProcFiles {
    pub pid: u32,
    pub command: String,
    pub addr: Option<IpAddr>,
    pub files: Vec<UsedFile>,
}

/// What one look at the processes found.
#[derive(Debug)]
pub struct Look {
    /// Every process was looked at (else only those new since the last look).
    pub full: bool,
    pub procs: Vec<ProcFiles>,
    /// The processes running at the look.
    pub alive: HashSet<u32>,
}

/// How often new processes are looked at, and every process.
pub const QUICK_LOOK: Duration = Duration::from_millis(250);
pub const FULL_LOOK: Duration = Duration::from_secs(1);

/// Looks at processes and classes the files they use (each file once), on a thread of its
/// own: reading a large executable's tables takes time the reader of the events must not
/// lose (a connection gone before its first event is read cannot be named).
pub struct Scanner {
    files: HashMap<(u64, u64), Found>,
    seen: HashSet<u32>,
    me: u32,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner { files: HashMap::new(), seen: HashSet::new(), me: std::process::id() }
    }
}

impl Scanner {
    /// One look: every process (`full`), or those started since the last look.
    pub fn look(&mut self, full: bool) -> Look {
        if self.files.len() > 50_000 {
            self.files.clear();
        }
        let alive: HashSet<u32> = std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|p| p.file_name().to_str()?.parse().ok()).collect();
        let mut procs = Vec::new();
        for &pid in &alive {
            if pid == self.me || (!full && self.seen.contains(&pid)) {
                continue;
            }
            let files = self.files_of(pid);
            if !files.is_empty() {
                let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
                procs.push(ProcFiles { pid, command, addr: netns_addr(pid), files });
            }
        }
        self.seen = alive.clone();
        Look { full, procs, alive }
    }

    /// The TLS files one process runs and maps.
    fn files_of(&mut self, pid: u32) -> Vec<UsedFile> {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { return Vec::new() };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok().and_then(|p| p.to_str().map(str::to_string));
        // the executable first (a Go program), then the libraries it maps
        let mut paths: Vec<(&str, bool)> = exe.as_deref().map(|e| (e, true)).into_iter().collect();
        let mut seen = HashSet::new();
        for path in maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.starts_with('/')) {
            if Some(path) != exe.as_deref() && seen.insert(path) {
                paths.push((path, false));
            }
        }
        let mut out = Vec::new();
        for (path, is_exe) in paths {
            let name = path.rsplit('/').next().unwrap_or(path);
            if !is_exe && !worth_a_look(name) {
                continue;
            }
            // the process's own view of its file system (a container's)
            let target = format!("/proc/{pid}/root{path}");
            let Ok(meta) = std::fs::metadata(&target) else { continue };
            let key = (meta.dev(), meta.ino());
            let found = self.files.entry(key).or_insert_with(|| classify(path, Path::new(&target), is_exe)).clone();
            if found != Found::Nothing {
                out.push(UsedFile { key, target, found });
            }
        }
        out
    }

    /// Looks until `stop`, sending each look: new processes every [`QUICK_LOOK`], all of
    /// them every [`FULL_LOOK`] (a library loaded after start, an exec).
    pub fn run(mut self, tx: mpsc::SyncSender<Look>, stop: Arc<AtomicBool>) {
        let mut full_at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(QUICK_LOOK);
            let full = full_at.elapsed() >= FULL_LOOK;
            if full {
                full_at = Instant::now();
            }
            if tx.send(self.look(full)).is_err() {
                return;
            }
        }
    }
}

/// Whether a mapped library's name says it may be a TLS stack (others are not opened).
fn worth_a_look(name: &str) -> bool {
    ["libssl.so.", "libjvm.so", "libgnutls.so", "libnss3.so", "libssl3.so"].iter().any(|p| name.starts_with(p)) || ["grpc", "envoy", "boringssl"].iter().any(|p| name.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_classed_by_name_without_being_read() {
        let p = Path::new("/nonexistent");
        assert_eq!(classify("/usr/lib/x86_64-linux-gnu/libssl.so.3", p, false), Found::Ssl { library: "openssl".into(), version: "3".into(), inner: None });
        assert!(matches!(classify("/usr/lib/jvm/java-17/lib/server/libjvm.so", p, false), Found::Unreadable { what, .. } if what == "Java"));
        assert!(matches!(classify("/lib/libgnutls.so.30", p, false), Found::Unreadable { what, .. } if what == "GnuTLS"));
        assert_eq!(classify("/usr/lib/libc.so.6", p, false), Found::Nothing);
        assert_eq!(version_of("/lib/libssl.so.1.1"), "1.1");
    }

    #[test]
    fn grpcio_with_the_system_openssl_is_left_to_libssl_and_the_wheel_is_said() {
        // Debian's python3-grpcio calls the shared libssl (hooked as itself); the PyPI
        // wheel carries BoringSSL without symbols (setup.sh installs both)
        let debian = std::fs::read_dir("/usr/lib/python3/dist-packages/grpc/_cython").ok().and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().contains("cygrpc")));
        let debian = debian.expect("Debian's python3-grpcio is missing (bash scripts/setup.sh installs it)");
        assert_eq!(classify(&debian.to_string_lossy(), &debian, false), Found::Nothing);
        let home = std::env::var("KSHARK_CACHE").unwrap_or_else(|_| format!("{}/.cache/kshark", std::env::var("HOME").unwrap_or_default()));
        let wheel = glob_cygrpc(&format!("{home}/venv/lib"));
        let wheel = wheel.expect("grpcio from PyPI is missing in the cache's venv (bash scripts/setup.sh installs it)");
        assert!(matches!(classify(&wheel.to_string_lossy(), &wheel, false), Found::Unreadable { what, .. } if what == "BoringSSL"));
    }

    fn glob_cygrpc(lib: &str) -> Option<std::path::PathBuf> {
        let py = std::fs::read_dir(lib).ok()?.flatten().next()?.path();
        std::fs::read_dir(py.join("site-packages/grpc/_cython")).ok()?.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().contains("cygrpc"))
    }

    #[test]
    fn this_process_has_an_address_or_only_loopback() {
        // the test runs in the machine's namespace: an address that is not loopback
        if let Some(a) = netns_addr(std::process::id()) {
            assert!(!a.is_loopback());
        }
    }
}
