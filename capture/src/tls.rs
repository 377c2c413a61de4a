//! TLS plaintext through uprobes on OpenSSL (`ebpf/tls.bpf.c`): what a process hands to
//! `SSL_write` and gets from `SSL_read` (and their `_ex` forms), before encryption and
//! after decryption, tied to its TCP connection and handed on as that connection's bytes,
//! so the dissectors read it as they read any stream.
//!
//! - **Which libraries**: every `libssl.so.*` mapped by a running process, found in
//!   `/proc/PID/maps` and reached through `/proc/PID/root` (a process in a container
//!   has its own copy). Uprobes go on the file (its inode), so every process that maps it
//!   is traced, those started later too. A process started later that runs or maps a
//!   file not hooked yet (a new Go program) is found within a quarter of a second, by a
//!   scanner on a thread of its own (`tls_scan`); Go programs are read by `tls_go`.
//! - **Which connection**: the fd the call's system calls used (the kernel side notes
//!   it), mapped to its socket (`/proc/PID/fd/FD` names the inode) and the socket to its
//!   addresses in the process's own network namespace (`/proc/PID/net/tcp{,6}`). Cached
//!   per (process, fd, inode).
//! - **As packets**: each call's bytes become TCP segments of that connection (raw IP
//!   frames, `LINKTYPE_RAW`) with their own sequence numbers, the process's writes from
//!   its address, its reads to it. When both ends of a connection are traced (a client
//!   and a server on one node), the first process seen owns it and the other's copy is
//!   left out, so each exchange is made once.
//! - **Counted**: calls the ring had no room for, calls whose entry was not seen, calls
//!   whose fd or socket could not be found, and the other end's copies left out.

use crate::ebpf::{chain, clock};
use crate::error::Error;
use crate::source::{Plan, Poll, RawPacket, Source, SourceStats};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use crate::tls_scan::{version_of, Found, Look, Scanner};
use aya::maps::HashMap as BpfHashMap;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};
use aya::programs::{RawTracePoint, UProbe};
use aya::{include_bytes_aligned, Ebpf};
use kshark_dissect::Timestamp;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, RwLock};
use std::time::Duration;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tls.bpf.o"));

/// Mirrors `struct tls_hdr` in tls.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct TlsHdr {
    ts_ns: u64,
    ssl: u64,
    pid: u32,
    tid: u32,
    fd: i32,
    len: u32,
    offset: u32,
    cap_len: u32,
    stream_off: u64,
    dir: u8,
    flags: u8,
    /// 2 or 10: the socket's addresses follow (read in the kernel at each call); 0: none.
    family: u8,
    pad: u8,
    sport: u16,
    dport: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
}

impl TlsHdr {
    /// The socket's (local, remote) addresses, when the kernel read them.
    fn ends(&self) -> Option<(SocketAddr, SocketAddr)> {
        let ip = |b: &[u8; 16]| match self.family {
            2 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            10 => {
                let v6 = Ipv6Addr::from(*b);
                Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            _ => None,
        };
        Some((SocketAddr::new(ip(&self.saddr)?, self.sport), SocketAddr::new(ip(&self.daddr)?, self.dport)))
    }
}
const HDR: usize = std::mem::size_of::<TlsHdr>();
const DIR_READ: u8 = 1;

// indices of the STATS map
const ST_RING_FULL: u32 = 1;
const ST_TRUNCATED: u32 = 2;
const ST_MISSED: u32 = 3;
const ST_NO_FD: u32 = 4;
const F_BIND: u8 = 2;

/// How long a call whose fd is not known yet waits for it, and how many wait.
const UNBOUND_WAIT: Duration = Duration::from_secs(2);
const MAX_UNBOUND_PER_CONN: usize = 256;
const MAX_UNBOUND: usize = 20_000;

/// The functions hooked: (symbol, entry program). Every one also gets `ssl_ret` on return.
const HOOKS: [(&str, &str); 4] = [("SSL_write", "ssl_write"), ("SSL_write_ex", "ssl_write_ex"), ("SSL_read", "ssl_read"), ("SSL_read_ex", "ssl_read_ex")];

/// A TLS library and its version, as entries name it (`tls: {library, version}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsLib {
    pub library: String,
    pub version: String,
}

/// Which library each traced connection's plaintext came from, by (client or server
/// address, the other address) as entries have them: filled here, read where entries are
/// finished.
pub type ConnLibs = Arc<RwLock<HashMap<(SocketAddr, SocketAddr), TlsLib>>>;

/// A process whose TLS library is hooked, or whose TLS cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsProcess {
    pub pid: u32,
    /// Its name (`/proc/PID/comm`).
    pub command: String,
    /// The library (for one not readable: the TLS stack, `Java`, `GnuTLS`, `Go go1.16`).
    pub lib: TlsLib,
    /// Its address (to name its pod): its network namespace's, else that of a connection
    /// it was read on.
    pub addr: Option<IpAddr>,
    /// Why its TLS cannot be read; `None`: it is hooked.
    pub why: Option<String>,
    /// What was lost of its calls: ring full, entries missed, no fd, no socket.
    pub lost: [u64; 4],
}

/// A file whose functions are hooked, and the links that hook them.
struct Hooked {
    path: String,
    lib: TlsLib,
    links: Vec<(&'static str, UProbeLinkId)>,
}

/// What the tracer counts, beyond the packets it hands on.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsStats {
    pub calls: u64,
    pub ring_full: u64,
    pub truncated_calls: u64,
    pub missed_entries: u64,
    pub no_fd: u64,
    pub no_socket: u64,
    pub other_end_copies: u64,
    /// Calls on connections outside what the tap captures (other pods, other interfaces).
    pub out_of_scope: u64,
    /// Bytes lost to a full ring, passed on as gaps in their streams.
    pub gap_bytes: u64,
    /// The longest a call waited to be read, µs (a socket closed meanwhile is not found).
    pub max_late_us: u64,
    pub libraries: usize,
    pub processes: usize,
}

struct Conn {
    /// The SSL* it was found for: another on the same fd is another connection.
    ssl: u64,
    local: SocketAddr,
    remote: SocketAddr,
    ino: u64,
    /// Next sequence number of what the process sent, and of what it received.
    seq: [u32; 2],
    /// Where the next bytes should start in each direction's count (the kernel's): more
    /// means bytes were lost (a full ring), which becomes a gap in the sequence numbers.
    next_off: [Option<u64>; 2],
    /// Whether this copy is read (`Some(true)`), or left to the other end's process
    /// (`Some(false)`); `None` until its first call in scope.
    read: Option<bool>,
    /// The library of the process this copy is from.
    lib: TlsLib,
    /// A server's copy held until then (its segments, not handed on yet): see
    /// [`TlsSource::decide`].
    held: Option<(std::time::Instant, Vec<(Timestamp, Vec<u8>)>)>,
}

pub struct TlsSource {
    _ebpf: Ebpf,
    ring: RingBuf<MapData>,
    stats_map: PerCpuArray<MapData, u64>,
    /// Hooked files by (device, inode).
    hooked: HashMap<(u64, u64), Hooked>,
    /// Processes using a hooked file now, and which.
    procs: HashMap<u32, (u64, u64)>,
    /// Processes with TLS that cannot be read: the stack and why.
    blind: HashMap<u32, (String, String)>,
    /// Calls per process whose socket was not found.
    no_socket_by: HashMap<u32, u64>,
    /// Calls whose fd was not known yet, by (process, SSL*), held until it is.
    unbound: HashMap<(u32, u64), Vec<(std::time::Instant, TlsHdr, Vec<u8>)>>,
    unbound_count: usize,
    unbound_checked: std::time::Instant,
    /// Calls lost for want of an fd, in all and per process.
    no_fd: u64,
    no_fd_by: HashMap<u32, u64>,
    /// The processes in the kernel's TRACKED map.
    tracked: std::collections::HashSet<u32>,
    /// Hooked files no process uses, since when.
    unused_since: HashMap<(u64, u64), std::time::Instant>,
    /// Files the kernel would not let be hooked: the stack and the error.
    refused: HashMap<(u64, u64), (String, String)>,
    /// What the scanner thread finds ([`Scanner`]), and its stop.
    looks: Option<std::sync::mpsc::Receiver<Look>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    conns: HashMap<(u32, i32), Conn>,
    /// The process that owns each connection (the first seen), by its two addresses.
    /// The connections read, by their local end and by their remote end: a connection
    /// whose two processes are both traced is read once (see [`TlsSource::decide`]).
    local_of: HashMap<SocketAddr, (u32, i32)>,
    remote_of: HashMap<SocketAddr, (u32, i32)>,
    /// Held segments of connections gone (replaced on their fd, or their process's), to
    /// hand on at the next poll.
    orphans: Vec<(Timestamp, Vec<u8>)>,
    /// When the first held copy is due.
    next_release: Option<std::time::Instant>,
    /// Per process: the ports it listens on, and when they were read.
    listen_cache: HashMap<u32, (std::time::Instant, std::collections::HashSet<u16>)>,
    mono_to_real: i64,
    packets: u64,
    no_socket: u64,
    other_end: u64,
    calls: u64,
    buf: Vec<u8>,
    pub libs: ConnLibs,
    /// What the plan captures: connections with an end among these addresses (the pods
    /// targeted, or the addresses of the interfaces named), and with `loopback` any on
    /// loopback. `None` before the first plan: nothing.
    scope: Option<(std::collections::HashSet<IpAddr>, bool)>,
    out_of_scope: u64,
    /// With pods' veths in the plan: the addresses of this node's pods, the only ones whose
    /// processes' calls are taken.
    own_side: Option<std::collections::HashSet<IpAddr>>,
    gap_bytes: u64,
    /// The longest a call's event waited to be read, µs.
    max_late_us: u64,
    reported: std::time::Instant,
    /// [`TlsSource::tls_stats`] and the hooked processes as of the last poll, for
    /// whoever reports them.
    pub shared_stats: Arc<std::sync::Mutex<TlsStats>>,
    pub shared_processes: Arc<std::sync::Mutex<Vec<TlsProcess>>>,
    /// Per process: its name, and an address it was read on.
    proc_info: HashMap<u32, (String, Option<IpAddr>)>,
}

fn err(what: impl std::fmt::Display) -> Error {
    Error::Capture { engine: "ebpf_tls", iface: "uprobes".into(), detail: what.to_string() }
}

mod conn;
use conn::segment;

impl TlsSource {
    /// Loads the programs, attaches the system-call tracepoint and hooks every OpenSSL
    /// library in use now. Errors say what refused (no clang at build time, not root, the
    /// verifier, the attach).
    pub fn open() -> Result<Self, Error> {
        let built = env!("KSHARK_TLS_BPF_ERROR");
        if !built.is_empty() {
            return Err(err(built));
        }
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| err(format!("cannot load the eBPF program: {}", chain(&e))))?;
        for (_, prog) in HOOKS.iter().chain([("", "ssl_ret"), ("", "ssl_write_ex5"), ("", "go_write"), ("", "go_read"), ("", "go_read_ret"), ("", "go_read_copy")].iter()) {
            let p: &mut UProbe = ebpf.program_mut(prog).ok_or_else(|| err(format!("program {prog} missing")))?.try_into().map_err(|e| err(chain(&e)))?;
            p.load().map_err(|e| err(format!("the kernel refused {prog}: {}", chain(&e))))?;
        }
        let tp: &mut RawTracePoint = ebpf.program_mut("sys_enter").ok_or_else(|| err("program sys_enter missing"))?.try_into().map_err(|e| err(chain(&e)))?;
        tp.load().map_err(|e| err(format!("the kernel refused sys_enter: {}", chain(&e))))?;
        tp.attach("sys_enter").map_err(|e| err(format!("cannot attach to the sys_enter tracepoint: {}", chain(&e))))?;
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").ok_or_else(|| err("map EVENTS missing"))?).map_err(|e| err(chain(&e)))?;
        let stats_map = PerCpuArray::try_from(ebpf.take_map("STATS").ok_or_else(|| err("map STATS missing"))?).map_err(|e| err(chain(&e)))?;
        let mut s = TlsSource {
            _ebpf: ebpf,
            ring,
            stats_map,
            hooked: HashMap::new(),
            procs: HashMap::new(),
            blind: HashMap::new(),
            no_socket_by: HashMap::new(),
            unbound: HashMap::new(),
            unbound_count: 0,
            unbound_checked: std::time::Instant::now(),
            no_fd: 0,
            no_fd_by: HashMap::new(),
            refused: HashMap::new(),
            unused_since: HashMap::new(),
            tracked: Default::default(),
            looks: None,
            stop: Default::default(),
            conns: HashMap::new(),
            local_of: HashMap::new(),
            remote_of: HashMap::new(),
            listen_cache: HashMap::new(),
            orphans: Vec::new(),
            next_release: None,
            mono_to_real: (clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC)) as i64,
            packets: 0,
            no_socket: 0,
            other_end: 0,
            calls: 0,
            buf: Vec::with_capacity(65_600),
            libs: Default::default(),
            scope: None,
            out_of_scope: 0,
            own_side: None,
            gap_bytes: 0,
            max_late_us: 0,
            reported: std::time::Instant::now(),
            shared_stats: Default::default(),
            shared_processes: Default::default(),
            proc_info: HashMap::new(),
        };
        // the first look here (what is hooked at the start is said at the start), then on
        // a thread of its own
        let mut scanner = Scanner::default();
        s.take(scanner.look(true));
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let stop = s.stop.clone();
        std::thread::Builder::new().name("tls-scan".into()).spawn(move || scanner.run(tx, stop)).map_err(|e| err(format!("cannot start the process scanner: {e}")))?;
        s.looks = Some(rx);
        Ok(s)
    }

    /// Takes what a look at the processes found: hooks the TLS files not hooked yet,
    /// notes the processes whose TLS cannot be read and why, forgets processes that exited
    /// (and their connections), and after a full look unhooks files no process uses.
    fn take(&mut self, look: Look) {
        let (mut procs, mut blind) = if look.full { (HashMap::new(), HashMap::new()) } else { (std::mem::take(&mut self.procs), std::mem::take(&mut self.blind)) };
        procs.retain(|p, _| look.alive.contains(p));
        blind.retain(|p, _| look.alive.contains(p));
        // every file in use (a process may use several)
        let used: std::collections::HashSet<(u64, u64)> = look.procs.iter().flat_map(|p| p.files.iter().map(|f| f.key)).collect();
        for p in look.procs {
            let addr = p.addr.or_else(|| self.proc_info.get(&p.pid).and_then(|i| i.1));
            self.proc_info.insert(p.pid, (p.command, addr));
            for f in p.files {
                if let Found::Unreadable { what, why } = &f.found {
                    blind.entry(p.pid).or_insert((what.clone(), why.clone()));
                    continue;
                }
                if !self.hooked.contains_key(&f.key) && !self.refused.contains_key(&f.key) {
                    match self.hook(&f.target, &f.found) {
                        Ok(h) => {
                            self.hooked.insert(f.key, h);
                        }
                        Err(e) => {
                            // not hookable after all (the kernel refused): said, not fatal
                            let what = match &f.found {
                                Found::Go(g) => format!("Go {}", g.version),
                                _ => "OpenSSL".into(),
                            };
                            self.refused.insert(f.key, (what, e.to_string()));
                        }
                    }
                }
                if self.hooked.contains_key(&f.key) {
                    procs.entry(p.pid).or_insert(f.key);
                } else if let Some((what, why)) = self.refused.get(&f.key) {
                    blind.entry(p.pid).or_insert((what.clone(), why.clone()));
                }
            }
        }
        self.proc_info.retain(|pid, _| procs.contains_key(pid) || blind.contains_key(pid));
        self.no_socket_by.retain(|pid, _| procs.contains_key(pid));
        self.no_fd_by.retain(|pid, _| procs.contains_key(pid));
        // the processes whose threads' socket I/O the kernel side follows (for libraries
        // that do their own): those with OpenSSL hooked
        let tracked: std::collections::HashSet<u32> = procs.iter().filter(|(_, k)| self.hooked.get(*k).is_some_and(|h| h.lib.library != "go")).map(|(p, _)| *p).collect();
        if let Some(Ok(mut m)) = self._ebpf.map_mut("TRACKED").map(BpfHashMap::<_, u32, u8>::try_from) {
            for p in tracked.difference(&self.tracked) {
                let _ = m.insert(p, 1, 0);
            }
            for p in self.tracked.difference(&tracked) {
                let _ = m.remove(p);
            }
        }
        self.tracked = tracked;
        if look.full {
            let orphans = &mut self.orphans;
            self.conns.retain(|(pid, _), c| {
                let keep = look.alive.contains(pid);
                if !keep {
                    orphans.extend(c.held.take().map(|h| h.1).unwrap_or_default());
                }
                keep
            });
            let conns = &self.conns;
            self.local_of.retain(|_, k| conns.contains_key(k));
            self.remote_of.retain(|_, k| conns.contains_key(k));
            // files no process has used for a while are let go (not at once: a library
            // short-lived clients load again and again stays hooked, and so traces them
            // from their first call)
            let now = std::time::Instant::now();
            for k in self.hooked.keys() {
                if used.contains(k) {
                    self.unused_since.remove(k);
                } else {
                    self.unused_since.entry(*k).or_insert(now);
                }
            }
            let gone: Vec<(u64, u64)> = self.unused_since.iter().filter(|(_, t)| now.duration_since(**t) >= UNHOOK_AFTER).map(|(k, _)| *k).collect();
            for k in gone {
                self.unused_since.remove(&k);
                if let Some(h) = self.hooked.remove(&k) {
                    self.unhook(h);
                }
            }
            if let Some(Ok(mut m)) = self._ebpf.map_mut("PROC_STATS").map(BpfHashMap::<_, u32, [u64; 8]>::try_from) {
                let dead: Vec<u32> = m.keys().flatten().filter(|p| !look.alive.contains(p)).collect();
                for p in dead {
                    let _ = m.remove(&p);
                }
            }
        }
        self.procs = procs;
        self.blind = blind;
        let list = self.processes();
        if let Ok(mut p) = self.shared_processes.lock() {
            *p = list;
        }
    }

    /// Hooks the file's functions; on a failure, what was hooked of it is let go again.
    fn hook(&mut self, target: &str, found: &Found) -> Result<Hooked, Error> {
        let mut links = Vec::new();
        match self.hook_into(target, found, &mut links) {
            Ok(lib) => Ok(Hooked { path: target.to_string(), lib, links }),
            Err(e) => {
                self.unhook(Hooked { path: String::new(), lib: TlsLib { library: String::new(), version: String::new() }, links });
                Err(e)
            }
        }
    }

    fn hook_into(&mut self, target: &str, found: &Found, links: &mut Vec<(&'static str, UProbeLinkId)>) -> Result<TlsLib, Error> {
        let mut attach = |ebpf: &mut Ebpf, prog: &'static str, at: UProbeAttachLocation<'_>, what: &str| -> Result<(), Error> {
            let p: &mut UProbe = ebpf.program_mut(prog).ok_or_else(|| err(format!("program {prog} missing")))?.try_into().map_err(|e| err(chain(&e)))?;
            let id = p.attach(at, target, UProbeScope::AllProcesses).map_err(|e| err(format!("cannot hook {what} in {target}: {}", chain(&e))))?;
            links.push((prog, id));
            Ok(())
        };
        let lib = match found {
            Found::Go(g) => {
                attach(&mut self._ebpf, "go_write", UProbeAttachLocation::AbsoluteOffset(g.write), "crypto/tls.(*Conn).Write")?;
                attach(&mut self._ebpf, "go_read", UProbeAttachLocation::AbsoluteOffset(g.read), "crypto/tls.(*Conn).Read")?;
                match g.read_copy {
                    // the plaintext where Read copies it out: no probe at its returns
                    Some(c) => attach(&mut self._ebpf, "go_read_copy", UProbeAttachLocation::AbsoluteOffset(c), "crypto/tls.(*Conn).Read's copy")?,
                    None => {
                        for r in &g.read_returns {
                            attach(&mut self._ebpf, "go_read_ret", UProbeAttachLocation::AbsoluteOffset(*r), "a return of crypto/tls.(*Conn).Read")?;
                        }
                    }
                }
                TlsLib { library: "go".into(), version: g.version.clone() }
            }
            Found::Ssl { library, version, inner: Some(inner) } => {
                // the internal functions that the public ones wrap: probed with no single-step
                let write = if inner.write_count_arg == 5 { "ssl_write_ex5" } else { "ssl_write_ex" };
                for (prog, at, what) in [("ssl_read_ex", inner.read, "SSL_read's internal function"), (write, inner.write, "SSL_write's internal function")] {
                    attach(&mut self._ebpf, prog, UProbeAttachLocation::AbsoluteOffset(at), what)?;
                    attach(&mut self._ebpf, "ssl_ret", UProbeAttachLocation::AbsoluteOffset(at), what)?;
                }
                TlsLib { library: library.clone(), version: version.clone() }
            }
            Found::Ssl { library, version, inner: None } => {
                for (sym, prog) in HOOKS {
                    // SSL_read_ex and SSL_write_ex are OpenSSL 1.1.1's and later's
                    let missing_ok = sym.ends_with("_ex");
                    for name in [prog, "ssl_ret"] {
                        match attach(&mut self._ebpf, name, UProbeAttachLocation::Symbol(sym), sym) {
                            Err(_) if missing_ok => break,
                            r => r?,
                        }
                    }
                }
                TlsLib { library: library.clone(), version: version.clone() }
            }
            _ => return Err(err(format!("{target}: nothing to hook"))),
        };
        Ok(lib)
    }

    /// Lets a file's hooks go. Removing a uprobe waits for the kernel's grace period
    /// (hundreds of milliseconds here): the links are dropped on a thread of their own,
    /// not on the one reading the events.
    fn unhook(&mut self, h: Hooked) {
        let mut links = Vec::new();
        for (prog, id) in h.links {
            if let Some(p) = self._ebpf.program_mut(prog) {
                let p: Result<&mut UProbe, _> = p.try_into();
                if let Ok(p) = p {
                    if let Ok(l) = p.take_link(id) {
                        links.push(l);
                    }
                }
            }
        }
        if !links.is_empty() {
            let _ = std::thread::Builder::new().name("tls-unhook".into()).spawn(move || drop(links));
        }
    }

    /// The processes hooked now, with their library, and those whose TLS cannot be read.
    pub fn processes(&self) -> Vec<TlsProcess> {
        let lost = self.lost_by_process();
        let info = |pid: &u32| self.proc_info.get(pid).cloned().unwrap_or_default();
        let mut v: Vec<TlsProcess> = self
            .procs
            .iter()
            .map(|(pid, k)| {
                let (command, addr) = info(pid);
                let lib = self.hooked.get(k).map(|h| h.lib.clone()).unwrap_or(TlsLib { library: "openssl".into(), version: String::new() });
                let mut l = lost.get(pid).copied().unwrap_or_default();
                l[2] = self.no_fd_by.get(pid).copied().unwrap_or(0);
                l[3] = self.no_socket_by.get(pid).copied().unwrap_or(0);
                TlsProcess { pid: *pid, command, lib, addr, why: None, lost: l }
            })
            .collect();
        // (a process may be both: Python's ssl hooked, and grpcio's BoringSSL not readable)
        v.extend(self.blind.iter().map(|(pid, (what, why))| {
            let (command, addr) = info(pid);
            TlsProcess { pid: *pid, command, lib: TlsLib { library: what.clone(), version: String::new() }, addr, why: Some(why.clone()), lost: [0; 4] }
        }));
        v.sort_by_key(|p| p.pid);
        v
    }

    /// Per process, from the kernel's counts: ring full, entries missed, no fd.
    fn lost_by_process(&self) -> HashMap<u32, [u64; 4]> {
        let Some(map) = self._ebpf.map("PROC_STATS") else { return HashMap::new() };
        let Ok(m) = aya::maps::HashMap::<_, u32, [u64; 8]>::try_from(map) else { return HashMap::new() };
        m.iter().flatten().map(|(pid, n)| (pid, [n[ST_RING_FULL as usize], n[ST_MISSED as usize], n[ST_NO_FD as usize], 0])).collect()
    }

    /// The tracer's own counters.
    pub fn tls_stats(&self) -> TlsStats {
        let sum = |i: u32| self.stats_map.get(&i, 0).map_or(0, |v| v.iter().sum::<u64>());
        TlsStats {
            calls: self.calls,
            ring_full: sum(ST_RING_FULL),
            truncated_calls: sum(ST_TRUNCATED),
            missed_entries: sum(ST_MISSED),
            no_fd: self.no_fd,
            no_socket: self.no_socket,
            other_end_copies: self.other_end,
            out_of_scope: self.out_of_scope,
            gap_bytes: self.gap_bytes,
            max_late_us: self.max_late_us,
            libraries: self.hooked.len(),
            processes: self.procs.len(),
        }
    }

    fn event(&mut self, h: &TlsHdr, data: &[u8], f: &mut dyn FnMut(RawPacket<'_>)) {
        let late = (clock(libc::CLOCK_MONOTONIC) - h.ts_ns as i128).max(0) as u64 / 1000;
        self.max_late_us = self.max_late_us.max(late);
        let bind = h.flags & F_BIND != 0;
        if h.offset == 0 && !bind {
            self.calls += 1;
        }
        self.expire_unbound();
        if h.fd < 0 {
            // no fd yet (a library doing its own socket I/O): held until its SSL*'s fd is
            // known (the kernel's F_BIND, or a later call's), for a while
            let held = self.unbound.entry((h.pid, h.ssl)).or_default();
            if held.len() < MAX_UNBOUND_PER_CONN && self.unbound_count < MAX_UNBOUND {
                held.push((std::time::Instant::now(), *h, data.to_vec()));
                self.unbound_count += 1;
            } else if h.offset == 0 {
                self.lose_no_fd(h.pid, 1);
            }
            return;
        }
        if let Some(held) = self.unbound.remove(&(h.pid, h.ssl)) {
            // the connection first (with the addresses this event may carry), then what
            // waited for it, in order, then this
            self.unbound_count -= held.len();
            if self.conn(h.pid, h.fd, h.ssl, h.ends()).is_some() {
                for (_, mut eh, d) in held {
                    eh.fd = h.fd;
                    eh.family = 0;
                    self.event(&eh, &d, f);
                }
            } else {
                self.lose_no_fd(h.pid, held.iter().filter(|e| e.1.offset == 0).count() as u64);
            }
        }
        if bind {
            let _ = self.conn(h.pid, h.fd, h.ssl, h.ends());
            return;
        }
        let (pid, fd) = (h.pid, h.fd);
        let Some(c) = self.conn(pid, fd, h.ssl, h.ends()) else {
            if h.offset == 0 {
                self.no_socket += 1;
                *self.no_socket_by.entry(pid).or_default() += 1;
            }
            return;
        };
        let (local, remote) = (c.local, c.remote);
        if let Some(info) = self.proc_info.get_mut(&pid) {
            info.1.get_or_insert(local.ip());
        }
        let within = self.scope.as_ref().is_some_and(|(addrs, lo)| [local.ip(), remote.ip()].iter().any(|a| addrs.contains(a) || (*lo && a.is_loopback())));
        let own = self.own_side.as_ref().is_none_or(|pods| pods.contains(&local.ip()));
        if !within || !own {
            if h.offset == 0 {
                self.out_of_scope += 1;
            }
            return;
        }
        if !self.decide(pid, fd) {
            if h.offset == 0 {
                self.other_end += 1;
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&(pid, fd)) else { return };
        let received = h.dir == DIR_READ;
        let d = received as usize;
        // bytes the ring had no room for: skipped in the sequence, so the stream has a gap
        let at = h.stream_off + h.offset as u64;
        if let Some(want) = c.next_off[d] {
            if at > want {
                c.seq[d] = c.seq[d].wrapping_add((at - want) as u32);
                self.gap_bytes += at - want;
            }
        }
        c.next_off[d] = Some(at + data.len() as u64);
        let (src, dst) = if received { (remote, local) } else { (local, remote) };
        let (seq, ack) = if received { (c.seq[1], c.seq[0]) } else { (c.seq[0], c.seq[1]) };
        c.seq[d] = seq.wrapping_add(data.len() as u32);
        segment(&mut self.buf, src, dst, seq, ack, data);
        self.packets += 1;
        let ts = Timestamp((h.ts_ns as i64 + self.mono_to_real).max(0) as u64);
        match &mut c.held {
            Some((_, segs)) => segs.push((ts, self.buf.clone())),
            None => f(RawPacket { ts, linktype: 101, data: &self.buf }),
        }
    }
}

/// How long a server's copy of a connection is held for its client's copy to come.
const HOLD_SERVER: Duration = Duration::from_millis(50);

/// How long a hooked file no process uses stays hooked.
const UNHOOK_AFTER: Duration = Duration::from_secs(60);

impl Drop for TlsSource {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Source for TlsSource {
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(RawPacket<'_>)) -> Result<Poll, Error> {
        let mut pfd = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // the kernel wakes us only for a connection's first call: the rest is drained by time
        let ms = timeout.min(Duration::from_millis(5)).as_millis() as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(err(format!("poll: {}", std::io::Error::last_os_error())));
        }
        let mut any = false;
        loop {
            let Some(item) = self.ring.next() else { break };
            any = true;
            if item.len() < HDR {
                continue;
            }
            // SAFETY: the kernel wrote a tls_hdr at the start of every event; read unaligned.
            let h: TlsHdr = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const TlsHdr) };
            let end = (HDR + h.cap_len as usize).min(item.len());
            let data = item[HDR..end].to_vec();
            drop(item);
            self.event(&h, &data, f);
        }
        // server copies whose client's did not come
        self.release_held(false, f);
        // processes the scanner found since
        while let Some(look) = self.looks.as_ref().and_then(|r| r.try_recv().ok()) {
            self.take(look);
        }
        // the counters for reports: when calls came (their entries are reported with the
        // counters as they are then), else five times a second
        if any || self.reported.elapsed() >= Duration::from_millis(200) {
            self.reported = std::time::Instant::now();
            let st = self.tls_stats();
            if let Ok(mut s) = self.shared_stats.lock() {
                *s = st;
            }
        }
        Ok(Poll::More)
    }

    fn flush(&mut self, f: &mut dyn FnMut(RawPacket<'_>)) {
        // the capture ends: what is held is handed on
        self.release_held(true, f);
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), Error> {
        // the plan's pods, or its interfaces' addresses
        self.scope = Some(match &plan.targets {
            Some(t) => (t.iter().copied().collect(), false),
            None => {
                let names: std::collections::HashSet<&str> = plan.ifaces.iter().map(|i| i.name.as_str()).collect();
                let links = crate::netns::links().unwrap_or_default();
                let addrs = links.iter().filter(|l| names.contains(l.name.as_str())).flat_map(|l| l.addrs.iter().copied()).collect();
                (addrs, plan.ifaces.iter().any(|i| i.kind == crate::source::IfaceKind::Loopback))
            }
        });
        // a node's worker reads the calls of its own pods' processes: where nodes share a
        // kernel (the lab's), every worker's uprobes see every node's processes, and a
        // copy made by another node's pod is that node's worker's to take
        let pods: std::collections::HashSet<IpAddr> = plan.ifaces.iter().filter(|i| i.kind == crate::source::IfaceKind::PodVeth).flat_map(|i| i.addrs.iter().copied()).collect();
        self.own_side = (!pods.is_empty()).then_some(pods);
        // (processes coming and going are followed by the scanner's thread)
        Ok(())
    }

    fn stats(&mut self) -> SourceStats {
        let t = self.tls_stats();
        if let Ok(mut s) = self.shared_stats.lock() {
            *s = t;
        }
        SourceStats { packets: self.packets, ring_drops: t.ring_full, truncated: t.truncated_calls, ..Default::default() }
    }

    fn engine(&self) -> &'static str {
        "ebpf_tls"
    }

    fn attached(&self) -> Vec<String> {
        self.hooked.values().map(|h| format!("{} ({} {})", h.path, h.lib.library, h.lib.version)).collect()
    }
}
