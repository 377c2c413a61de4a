//! kube-proxy's address rewriting, read back from the kernel's connection tracking.
//!
//! A client that calls a Service connects to its ClusterIP; kube-proxy's DNAT rule on the
//! client's node rewrites the destination to one pod. The client's side of the connection
//! (what its veth carries) shows the ClusterIP, the server's side the pod. The node's
//! conntrack table holds both: the original tuple and the reply tuple, whose source is the
//! pod that answered. Reading it (`/proc/net/nf_conntrack` of the worker's network
//! namespace, the node's) lets a worker name the answering pod of an exchange it saw only
//! from the client's side, and recognise the server-side copy of a rewritten connection
//! on its own node (the same exchange, seen at the server's veth).
//!
//! The table is read again on a miss only when the last reading is older than the
//! exchange asked about (a rewritten connection is in the table from its SYN on, so a
//! reading made after the exchange began has it, or it was not rewritten), and at most
//! every `REFRESH`. A tracked TCP connection stays in the table for two minutes after it
//! closes, longer than an entry takes to complete.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_millis(5);

/// Connections remembered as not rewritten, at most (then forgotten, and read again).
const MAX_NOT_REWRITTEN: usize = 100_000;

/// (client, what it addressed) of a rewritten connection.
type Key = (SocketAddr, SocketAddr);

#[derive(Default)]
pub struct Conntrack {
    path: String,
    /// original (client, service address) → the address that answered
    to_real: HashMap<Key, SocketAddr>,
    /// (client, answering address) of every rewritten connection → the service address
    from_real: HashMap<Key, SocketAddr>,
    /// (client, answering address) of connections known not to be rewritten: a reading
    /// made after they began did not have them (a rewritten one is there from its SYN),
    /// so each ordinary connection costs one reading at most, not one per exchange
    not_rewritten: std::collections::HashSet<Key>,
    read: Option<Instant>,
    /// When the last reading began, ns since the epoch.
    read_wall: u64,
    /// Whether the table could be read at all (no conntrack: nothing to learn).
    pub available: bool,
    pub reads: u64,
}

impl Conntrack {
    pub fn new(path: &str) -> Self {
        Conntrack { path: path.to_string(), available: true, ..Default::default() }
    }

    /// The node's table, as the worker's network namespace sees it.
    pub fn node() -> Self {
        Self::new("/proc/net/nf_conntrack")
    }

    fn refresh(&mut self, since: u64) {
        if !self.available || self.read_wall > since || self.read.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        self.read = Some(Instant::now());
        self.read_wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        self.reads += 1;
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                self.to_real.clear();
                self.from_real.clear();
                for l in text.lines() {
                    if let Some((orig, reply)) = parse_line(l) {
                        // DNAT: the reply comes from somewhere other than what was addressed
                        if reply.0 != orig.1 {
                            self.to_real.insert(orig, reply.0);
                            self.from_real.insert((orig.0, reply.0), orig.1);
                        }
                    }
                }
            }
            Err(_) => self.available = false,
        }
    }

    /// The address that answered `client`'s connection to `addressed`, when the node
    /// rewrote it; `since`: when the exchange began (ns since the epoch).
    pub fn real_destination(&mut self, client: SocketAddr, addressed: SocketAddr, since: u64) -> Option<SocketAddr> {
        if let Some(r) = self.to_real.get(&(client, addressed)) {
            return Some(*r);
        }
        self.refresh(since);
        self.to_real.get(&(client, addressed)).copied()
    }

    /// The service address `client` addressed, when its connection to `answering` is the
    /// rewritten copy of one to a service; `since` as above.
    pub fn addressed(&mut self, client: SocketAddr, answering: SocketAddr, since: u64) -> Option<SocketAddr> {
        let key = (client, answering);
        if let Some(r) = self.from_real.get(&key) {
            return Some(*r);
        }
        if self.not_rewritten.contains(&key) {
            return None;
        }
        self.refresh(since);
        let found = self.from_real.get(&key).copied();
        if found.is_none() && self.available && self.read_wall > since {
            if self.not_rewritten.len() >= MAX_NOT_REWRITTEN {
                self.not_rewritten.clear();
            }
            self.not_rewritten.insert(key);
        }
        found
    }
}

/// One line of /proc/net/nf_conntrack: (original (src, dst), reply (src, dst)).
///
/// `ipv4 2 tcp 6 117 TIME_WAIT src=A dst=B sport=P dport=Q src=B' dst=A sport=Q' dport=P [ASSURED] ...`
pub fn parse_line(l: &str) -> Option<((SocketAddr, SocketAddr), (SocketAddr, SocketAddr))> {
    let mut src: Vec<IpAddr> = Vec::with_capacity(2);
    let mut dst: Vec<IpAddr> = Vec::with_capacity(2);
    let mut sport: Vec<u16> = Vec::with_capacity(2);
    let mut dport: Vec<u16> = Vec::with_capacity(2);
    for f in l.split_ascii_whitespace() {
        if let Some(v) = f.strip_prefix("src=") {
            src.push(v.parse().ok()?);
        } else if let Some(v) = f.strip_prefix("dst=") {
            dst.push(v.parse().ok()?);
        } else if let Some(v) = f.strip_prefix("sport=") {
            sport.push(v.parse().ok()?);
        } else if let Some(v) = f.strip_prefix("dport=") {
            dport.push(v.parse().ok()?);
        }
    }
    if src.len() != 2 || dst.len() != 2 || sport.len() != 2 || dport.len() != 2 {
        return None; // ICMP and the like: no ports
    }
    let orig = (SocketAddr::new(src[0], sport[0]), SocketAddr::new(dst[0], dport[0]));
    let reply = (SocketAddr::new(src[1], sport[1]), SocketAddr::new(dst[1], dport[1]));
    Some((orig, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    // lines as a node of the lab cluster printed them (kube-proxy iptables mode)
    const TABLE: &str = "\
ipv4     2 tcp      6 117 TIME_WAIT src=10.244.12.8 dst=10.102.8.77 sport=45066 dport=8079 src=10.244.11.6 dst=10.244.12.8 sport=8079 dport=45066 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 28 src=10.244.11.6 dst=10.96.0.10 sport=41000 dport=53 src=10.244.11.5 dst=10.244.11.6 sport=53 dport=41000 mark=0 zone=0 use=2
ipv4     2 tcp      6 86399 ESTABLISHED src=10.244.11.6 dst=10.244.12.6 sport=50000 dport=80 src=10.244.12.6 dst=10.244.11.6 sport=80 dport=50000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 icmp     1 29 src=172.30.0.11 dst=172.30.0.12 type=8 code=0 id=1 src=172.30.0.12 dst=172.30.0.11 type=0 code=0 id=1 mark=0 zone=0 use=2
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rewritten_connections_are_found_both_ways_and_plain_ones_are_not() {
        let dir = std::env::temp_dir().join(format!("kshark-ct-{}", std::process::id()));
        std::fs::write(&dir, TABLE).unwrap();
        let mut ct = Conntrack::new(dir.to_str().unwrap());
        assert_eq!(ct.real_destination(sa("10.244.12.8:45066"), sa("10.102.8.77:8079"), 0), Some(sa("10.244.11.6:8079")));
        assert_eq!(ct.real_destination(sa("10.244.11.6:41000"), sa("10.96.0.10:53"), 0), Some(sa("10.244.11.5:53")));
        assert_eq!(ct.addressed(sa("10.244.12.8:45066"), sa("10.244.11.6:8079"), 0), Some(sa("10.102.8.77:8079")));
        // pod to pod with no Service between: nothing rewritten
        assert_eq!(ct.real_destination(sa("10.244.11.6:50000"), sa("10.244.12.6:80"), 0), None);
        assert_eq!(ct.addressed(sa("10.244.11.6:50000"), sa("10.244.12.6:80"), 0), None);
        // a miss on an exchange older than the last reading does not read again; one
        // newer than it does (once REFRESH has passed)
        let reads = ct.reads;
        assert_eq!(ct.real_destination(sa("1.2.3.4:1"), sa("5.6.7.8:2"), 1), None);
        assert_eq!(ct.reads, reads);
        std::thread::sleep(REFRESH * 2);
        assert_eq!(ct.real_destination(sa("1.2.3.4:1"), sa("5.6.7.8:2"), u64::MAX), None);
        assert_eq!(ct.reads, reads + 1);
        // a plain connection found missing by a reading made after its exchange began is
        // not read for again, however new its next exchange
        std::thread::sleep(REFRESH * 2);
        let plain = (sa("10.244.11.6:50001"), sa("10.244.12.6:80"));
        assert_eq!(ct.addressed(plain.0, plain.1, 1), None);
        let reads = ct.reads;
        std::thread::sleep(REFRESH * 2);
        assert_eq!(ct.addressed(plain.0, plain.1, u64::MAX), None);
        assert_eq!(ct.reads, reads, "a connection known not to be rewritten is read for again");
        std::fs::remove_file(&dir).unwrap();
        // no table (no conntrack in this namespace): never an error, never a name
        let mut none = Conntrack::new("/nonexistent/nf_conntrack");
        assert_eq!(none.real_destination(sa("10.244.12.8:45066"), sa("10.102.8.77:8079"), u64::MAX), None);
        assert!(!none.available);
    }

    #[test]
    fn odd_lines_are_skipped() {
        assert!(parse_line("").is_none());
        assert!(parse_line("ipv4 2 tcp 6 1 src=x dst=y sport=1 dport=2 src=a dst=b sport=3 dport=4").is_none());
        assert!(parse_line(TABLE.lines().nth(3).unwrap()).is_none());
    }
}
