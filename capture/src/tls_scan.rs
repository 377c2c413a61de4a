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
use object::{Object, ObjectSymbol};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// What a file offers the tracer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing to do with TLS (or nothing kshark knows of).
    Nothing,
    /// OpenSSL's API, by its symbols: `library` (`openssl`, `boringssl`), `version`.
    Ssl { library: String, version: String },
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
        return Found::Ssl { library: "openssl".into(), version: version_of(path) };
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
        Some(library) => Found::Ssl { library, version: "static".into() },
        None if carrier && mentions_boringssl(target) => blind("BoringSSL", "BoringSSL is linked in without symbols (a stripped build): its SSL_read and SSL_write cannot be found"),
        None => Found::Nothing,
    }
}

/// `openssl` or `boringssl` when the file defines `SSL_read` and `SSL_write` (in its
/// symbol table or its dynamic one).
fn ssl_symbols(target: &Path) -> Option<String> {
    let file = std::fs::File::open(target).ok()?;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    let (mut read, mut write, mut boring) = (false, false, false);
    for s in elf.symbols().chain(elf.dynamic_symbols()) {
        if s.is_undefined() {
            continue;
        }
        match s.name() {
            Ok("SSL_read") => read = true,
            Ok("SSL_write") => write = true,
            Ok(n) if n.starts_with("BORINGSSL_") || n == "SSL_CTX_set_grease_enabled" => boring = true,
            _ => {}
        }
    }
    (read && write).then(|| if boring { "boringssl" } else { "openssl" }.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_classed_by_name_without_being_read() {
        let p = Path::new("/nonexistent");
        assert_eq!(classify("/usr/lib/x86_64-linux-gnu/libssl.so.3", p, false), Found::Ssl { library: "openssl".into(), version: "3".into() });
        assert!(matches!(classify("/usr/lib/jvm/java-17/lib/server/libjvm.so", p, false), Found::Unreadable { what, .. } if what == "Java"));
        assert!(matches!(classify("/lib/libgnutls.so.30", p, false), Found::Unreadable { what, .. } if what == "GnuTLS"));
        assert_eq!(classify("/usr/lib/libc.so.6", p, false), Found::Nothing);
        assert_eq!(version_of("/lib/libssl.so.1.1"), "1.1");
    }

    #[test]
    fn this_process_has_an_address_or_only_loopback() {
        // the test runs in the machine's namespace: an address that is not loopback
        if let Some(a) = netns_addr(std::process::id()) {
            assert!(!a.is_loopback());
        }
    }
}
