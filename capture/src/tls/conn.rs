//! The TLS tracer's connections: each (process, fd, SSL*) tied to its TCP connection's
//! addresses (the kernel's, read at the call, or the process's /proc tables), which of two
//! traced ends is read, the ports a process listens on, and the TCP segments the
//! plaintext is handed on as.

use super::*;

impl TlsSource {
    /// The connection of (pid, fd), found through /proc when new (or when the fd now
    /// names another socket).
    pub(super) fn conn(&mut self, pid: u32, fd: i32, ssl: u64, ends: Option<(SocketAddr, SocketAddr)>) -> Option<&mut Conn> {
        // the same SSL* on the same fd: the connection found before (no /proc read per call)
        if self.conns.get(&(pid, fd)).is_some_and(|c| c.ssl == ssl && ends.is_none_or(|(l, r)| (c.local, c.remote) == (l, r))) {
            return self.conns.get_mut(&(pid, fd));
        }
        let (local, remote, ino) = match ends {
            // the kernel read the socket's addresses at the call
            Some((l, r)) => (l, r, 0),
            None => {
                let ino = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok().and_then(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok());
                let Some(ino) = ino else {
                    // closed since (the call's event is read after the fact): the
                    // connection it was, if it was seen while open
                    return self.conns.get_mut(&(pid, fd));
                };
                if self.conns.get(&(pid, fd)).is_some_and(|c| c.ino == ino) {
                    return self.conns.get_mut(&(pid, fd));
                }
                let (l, r) = socket_ends(pid, ino)?;
                (l, r, ino)
            }
        };
        // a process started since the last look: the hooked file it runs or maps
        let lib = match self.procs.get(&pid).and_then(|k| self.hooked.get(k)) {
            Some(h) => h.lib.clone(),
            None => self.lib_of(pid),
        };
        let old = self.conns.insert((pid, fd), Conn { ssl, local, remote, ino, seq: [1, 1], next_off: [None, None], read: None, lib, held: None });
        // what the connection before on this fd still held goes on
        self.orphans.extend(old.and_then(|o| o.held).map(|h| h.1).unwrap_or_default());
        self.conns.get_mut(&(pid, fd))
    }

    /// Whether the copy of connection (pid, fd) is read. Both ends of a connection on
    /// this node may be traced (a client and a server pod here): it is read once, from
    /// the client's copy where both are seen (it names the Service that was called, the
    /// address kube-proxy rewrote). The two copies share the client's end (its local end,
    /// the server's remote one); the server's is the copy whose local port its process
    /// listens on.
    pub(super) fn decide(&mut self, pid: u32, fd: i32) -> bool {
        let Some(c) = self.conns.get(&(pid, fd)) else { return false };
        if let Some(r) = c.read {
            return r;
        }
        let (local, remote) = (c.local, c.remote);
        let read = |conns: &HashMap<(u32, i32), Conn>, k: &(u32, i32), f: &dyn Fn(&Conn) -> bool| k.0 != pid && conns.get(k).is_some_and(|o| o.read == Some(true) && f(o));
        // a server's copy: its local port is one its process listens on
        let server = self.listening(pid).contains(&local.port());
        // I am a client whose server's copy was seen first (its remote is my local end):
        // while that copy is still held (nothing of it handed on), it gives way; after,
        // it stays, and mine is left out (one copy, each whole)
        if !server {
            if let Some(k) = self.remote_of.get(&local).copied().filter(|k| read(&self.conns, k, &|o| o.remote == local)) {
                let Some(o) = self.conns.get_mut(&k) else { return false };
                if o.held.take().is_none() {
                    if let Some(c) = self.conns.get_mut(&(pid, fd)) {
                        c.read = Some(false);
                    }
                    return false;
                }
                o.read = Some(false);
            }
        }
        // I am a server whose client's copy is read (its local end is my remote): left out
        let take = !(server && self.local_of.get(&remote).is_some_and(|k| read(&self.conns, k, &|o| o.local == remote)));
        if take {
            self.local_of.insert(local, (pid, fd));
            self.remote_of.insert(remote, (pid, fd));
            // the entries of the connection say the library of the copy read
            if let (Ok(mut libs), Some(c)) = (self.libs.write(), self.conns.get(&(pid, fd))) {
                if libs.len() > 100_000 {
                    libs.clear();
                }
                libs.insert((local, remote), c.lib.clone());
                libs.insert((remote, local), c.lib.clone());
            }
        }
        if let Some(c) = self.conns.get_mut(&(pid, fd)) {
            c.read = Some(take);
            // a server's copy is held a moment: its client's copy, if traced, may be a
            // little behind it in the ring, and is the one to read
            if take && server {
                let until = std::time::Instant::now() + HOLD_SERVER;
                c.held = Some((until, Vec::new()));
                self.next_release = Some(self.next_release.map_or(until, |t| t.min(until)));
            }
        }
        take
    }

    /// Hands on the held server copies whose moment is over.
    pub(super) fn release_held(&mut self, all: bool, f: &mut dyn FnMut(RawPacket<'_>)) {
        let now = std::time::Instant::now();
        for (ts, seg) in self.orphans.drain(..) {
            f(RawPacket { ts, linktype: 101, data: &seg });
        }
        // (the connections are gone through only when a hold is due)
        if !all && self.next_release.is_none_or(|t| t > now) {
            return;
        }
        let mut next = None;
        for c in self.conns.values_mut() {
            match &c.held {
                Some((until, _)) if all || *until <= now => {
                    for (ts, seg) in c.held.take().map(|h| h.1).unwrap_or_default() {
                        f(RawPacket { ts, linktype: 101, data: &seg });
                    }
                }
                Some((until, _)) => next = Some(next.map_or(*until, |t: std::time::Instant| t.min(*until))),
                None => {}
            }
        }
        self.next_release = next;
    }

    /// The TCP ports a process listens on (its network namespace's LISTEN sockets), read
    /// at most once a second per process.
    fn listening(&mut self, pid: u32) -> &std::collections::HashSet<u16> {
        let fresh = self.listen_cache.get(&pid).is_some_and(|(t, _)| t.elapsed() < Duration::from_secs(1));
        if !fresh {
            let mut ports = std::collections::HashSet::new();
            for table in ["tcp", "tcp6"] {
                let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
                for l in text.lines().skip(1) {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    if f.get(3) == Some(&"0A") {
                        if let Some(a) = f.get(1).and_then(|a| parse_addr(a)) {
                            ports.insert(a.port());
                        }
                    }
                }
            }
            if self.listen_cache.len() > 10_000 {
                self.listen_cache.clear();
            }
            self.listen_cache.insert(pid, (std::time::Instant::now(), ports));
        }
        &self.listen_cache[&pid].1
    }

    /// Calls still without an fd after [`UNBOUND_WAIT`] are lost, and counted.
    pub(super) fn expire_unbound(&mut self) {
        if self.unbound.is_empty() || self.unbound_checked.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.unbound_checked = std::time::Instant::now();
        let old: Vec<(u32, u64)> = self.unbound.iter().filter(|(_, v)| v.first().is_some_and(|e| e.0.elapsed() >= UNBOUND_WAIT)).map(|(k, _)| *k).collect();
        for k in old {
            if let Some(v) = self.unbound.remove(&k) {
                self.unbound_count -= v.len();
                self.lose_no_fd(k.0, v.iter().filter(|e| e.1.offset == 0).count() as u64);
            }
        }
    }

    pub(super) fn lose_no_fd(&mut self, pid: u32, calls: u64) {
        self.no_fd += calls;
        *self.no_fd_by.entry(pid).or_default() += calls;
    }
}

impl TlsSource {
    /// The hooked library of a process not looked at yet: its executable's (a Go
    /// program, OpenSSL linked in), else its libssl's.
    pub(super) fn lib_of(&self, pid: u32) -> TlsLib {
        use std::os::unix::fs::MetadataExt;
        let key = |path: &str| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let exe = key(&format!("/proc/{pid}/exe"));
        let ssl = libssl_of(pid);
        let lib = ssl.as_deref().and_then(|p| key(&format!("/proc/{pid}/root{p}")));
        [exe, lib]
            .into_iter()
            .flatten()
            .find_map(|k| self.hooked.get(&k).map(|h| h.lib.clone()))
            .unwrap_or_else(|| TlsLib { library: "openssl".into(), version: ssl.map(|p| version_of(&p)).unwrap_or_default() })
    }
}

/// The OpenSSL library a process maps, as its path in the process's file system.
pub(super) fn libssl_of(pid: u32) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.contains("/libssl.so.")).map(str::to_string)
}

/// A socket's (local, remote) addresses, from the process's network namespace's tables.
pub(super) fn socket_ends(pid: u32, ino: u64) -> Option<(SocketAddr, SocketAddr)> {
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(9).and_then(|i| i.parse::<u64>().ok()) == Some(ino) {
                return Some((parse_addr(f.get(1)?)?, parse_addr(f.get(2)?)?));
            }
        }
    }
    None
}

/// `0100007F:1F90` (IPv4) or 32 hex digits then the port (IPv6), as /proc/net/tcp writes
/// them (each 32-bit word in host order).
pub(super) fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(a, 16).ok()?.to_le_bytes())),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&a[i * 8..i * 8 + 8], 16).ok()?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(b);
            // a v4-mapped address is the IPv4 connection it is
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A TCP segment in a raw IP frame (checksums left 0: nothing checks them).
pub(super) fn segment(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, data: &[u8]) {
    out.clear();
    let tcp_len = 20 + data.len();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + tcp_len).min(65535) as u16;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(tcp_len.min(65535) as u16).to_be_bytes());
            out.extend_from_slice(&[6, 64]);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ack.to_be_bytes());
    // data offset 5 words; ACK and PSH
    out.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_read_as_the_kernel_writes_them() {
        assert_eq!(parse_addr("0100007F:1F90"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(parse_addr("00000000000000000000000001000000:01BB"), Some("[::1]:443".parse().unwrap()));
        assert_eq!(parse_addr("0000000000000000FFFF00000100007F:0050"), Some("127.0.0.1:80".parse().unwrap()));
        assert_eq!(parse_addr("zz:1"), None);
    }

    #[test]
    fn a_segment_is_a_tcp_packet_the_dissector_reads() {
        let mut b = Vec::new();
        segment(&mut b, "10.0.0.1:40000".parse().unwrap(), "10.0.0.2:443".parse().unwrap(), 7, 9, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(b.len(), 40 + 18);
        assert_eq!(&b[12..16], &[10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([b[22], b[23]]), 443);
        let mut b6 = Vec::new();
        segment(&mut b6, "[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap(), 0, 0, b"x");
        assert_eq!((b6[0] >> 4, b6.len()), (6, 40 + 20 + 1));
    }
}
