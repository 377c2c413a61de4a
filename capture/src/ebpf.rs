//! The eBPF engine: `ebpf/capture.bpf.c` (compiled by clang from build.rs) attached as a
//! TC classifier on ingress and egress of each interface, through TCX (kernel 6.6+) or,
//! where that is refused, a clsact qdisc over netlink. Packets arrive through a BPF ring
//! buffer; large ones in chunks that are joined here. Targets live in a BPF hash map that
//! is updated in place as pods come and go.

use crate::error::Error;
use crate::source::{Iface, IfaceKind, Plan, Poll, RawPacket, Source, SourceStats};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{include_bytes_aligned, Ebpf};
use kshark_dissect::Timestamp;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture.bpf.o"));

/// Mirrors `struct pkt_hdr` in capture.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct PktHdr {
    ts_ns: u64,
    ifindex: u32,
    len: u32,
    offset: u32,
    cap_len: u32,
    id: u32,
    cpu: u16,
    dir: u8,
    flags: u8,
}
const HDR: usize = std::mem::size_of::<PktHdr>();
const F_LAST: u8 = 1;

// indices of the STATS map
const ST_RING_FULL: u32 = 1;
const ST_FILTERED: u32 = 2;
const ST_TRUNCATED: u32 = 3;

// IFMODE values
const IF_PLAIN: u32 = 0;
const IF_VETH: u32 = 1;
const IF_LO: u32 = 2;

/// How the classifier is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Tcx,
    Clsact,
}

struct Attached {
    kind: IfaceKind,
    ifindex: u32,
    links: Vec<(&'static str, SchedClassifierLinkId)>,
}

/// A packet being put together from its chunks.
#[derive(Default)]
struct Partial {
    id: u32,
    ts_ns: u64,
    data: Vec<u8>,
    open: bool,
}

pub struct EbpfSource {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    targets: BpfHashMap<MapData, [u8; 16], u8>,
    local: BpfHashMap<MapData, [u8; 16], u8>,
    local_set: HashSet<[u8; 16]>,
    ifmode: BpfHashMap<MapData, u32, u32>,
    config: Array<MapData, u32>,
    target_set: HashSet<[u8; 16]>,
    ifaces: HashMap<String, Attached>,
    mode: AttachMode,
    joiner: Joiner,
}

/// Joins chunks into packets and stamps them with wall-clock time.
struct Joiner {
    partial: HashMap<u16, Partial>,
    /// Added to the kernel's monotonic clock to get wall-clock time.
    mono_to_real: i128,
    packets: u64,
    incomplete: u64,
}

/// Why the eBPF engine cannot be used in this build, if it cannot.
pub fn build_problem() -> Option<&'static str> {
    let e = env!("KSHARK_BPF_ERROR");
    (!e.is_empty()).then_some(e)
}

pub(crate) fn clock(id: libc::clockid_t) -> i128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: t is a valid timespec to write to.
    unsafe { libc::clock_gettime(id, &mut t) };
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}

fn key(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn ebpf_err(iface: &str, detail: impl std::fmt::Display) -> Error {
    Error::Capture { engine: "ebpf", iface: iface.to_string(), detail: detail.to_string() }
}

/// The full chain of an error's causes on one line (aya's errors nest the errno). A
/// verifier log is cut to its verdict: the line before its closing statistics.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    if let Some(at) = s.find("Verifier output:") {
        let log = &s[at..];
        let end = log.find("verification time").unwrap_or(log.len());
        let verdict = log[..end].lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
        let tail = log.rsplit(':').next().unwrap_or("").trim().to_string();
        s = format!("{}verifier: {verdict} ({tail})", &s[..at]);
    }
    s
}

impl EbpfSource {
    /// Loads the program and attaches it to every interface of the plan. Errors say what
    /// refused (no clang at build time, not root, the verifier, the attach).
    pub fn open(plan: &Plan) -> Result<Self, Error> {
        if let Some(why) = build_problem() {
            return Err(ebpf_err("*", why));
        }
        // Not raising RLIMIT_MEMLOCK: kernels since 5.11 charge BPF memory to the cgroup.
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| ebpf_err("*", format!("cannot load the eBPF program: {}", chain(&e))))?;
        for name in ["kshark_ingress", "kshark_egress"] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| ebpf_err("*", format!("program {name} missing from the object")))?
                .try_into()
                .map_err(|e| ebpf_err("*", chain(&e)))?;
            prog.load().map_err(|e| ebpf_err("*", format!("the kernel refused {name}: {}", chain(&e))))?;
        }
        let take = |ebpf: &mut Ebpf, name: &str| ebpf.take_map(name).ok_or_else(|| ebpf_err("*", format!("map {name} missing")));
        let ring = RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(|e| ebpf_err("*", chain(&e)))?;
        let targets = BpfHashMap::try_from(take(&mut ebpf, "TARGETS")?).map_err(|e| ebpf_err("*", chain(&e)))?;
        let ifmode = BpfHashMap::try_from(take(&mut ebpf, "IFMODE")?).map_err(|e| ebpf_err("*", chain(&e)))?;
        let local = BpfHashMap::try_from(take(&mut ebpf, "LOCAL")?).map_err(|e| ebpf_err("*", chain(&e)))?;
        let config = Array::try_from(take(&mut ebpf, "CONFIG")?).map_err(|e| ebpf_err("*", chain(&e)))?;
        let mut s = EbpfSource {
            ebpf,
            ring,
            targets,
            local,
            local_set: HashSet::new(),
            ifmode,
            config,
            target_set: HashSet::new(),
            ifaces: HashMap::new(),
            mode: AttachMode::Tcx,
            joiner: Joiner {
                partial: HashMap::new(),
                mono_to_real: clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC),
                packets: 0,
                incomplete: 0,
            },
        };
        s.apply(plan)?;
        Ok(s)
    }

    /// TCX or clsact, as the kernel allowed.
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    fn attach(&mut self, iface: &Iface) -> Result<(), Error> {
        let ifindex = crate::netns::ifindex(&iface.name).ok_or_else(|| ebpf_err(&iface.name, "no such interface"))?;
        let mode = match iface.kind {
            IfaceKind::PodVeth => IF_VETH,
            IfaceKind::Loopback => IF_LO,
            IfaceKind::Plain => IF_PLAIN,
        };
        self.ifmode.insert(ifindex, mode, 0).map_err(|e| ebpf_err(&iface.name, chain(&e)))?;
        let mut links = Vec::new();
        for (name, at) in [("kshark_ingress", TcAttachType::Ingress), ("kshark_egress", TcAttachType::Egress)] {
            if iface.kind == IfaceKind::Loopback && at == TcAttachType::Ingress {
                continue; // every packet crosses lo twice: egress alone sees each once
            }
            let prog: &mut SchedClassifier = self.ebpf.program_mut(name).expect("loaded").try_into().expect("classifier");
            let id = match self.mode {
                AttachMode::Tcx => match prog.attach_with_options(&iface.name, at, TcAttachOptions::TcxOrder(LinkOrder::default())) {
                    Ok(id) => id,
                    Err(tcx) => {
                        // kernels before 6.6 have no TCX: a clsact qdisc and a netlink filter
                        self.mode = AttachMode::Clsact;
                        let _ = tc::qdisc_add_clsact(&iface.name); // exists already: fine
                        prog.attach_with_options(&iface.name, at, TcAttachOptions::Netlink(NlOptions::default())).map_err(|e| {
                            ebpf_err(&iface.name, format!("attach failed with TCX ({}) and clsact ({})", chain(&tcx), chain(&e)))
                        })?
                    }
                },
                AttachMode::Clsact => {
                    let _ = tc::qdisc_add_clsact(&iface.name);
                    prog.attach_with_options(&iface.name, at, TcAttachOptions::Netlink(NlOptions::default()))
                        .map_err(|e| ebpf_err(&iface.name, format!("attach (clsact): {}", chain(&e))))?
                }
            };
            links.push((name, id));
        }
        self.ifaces.insert(iface.name.clone(), Attached { kind: iface.kind, ifindex, links });
        Ok(())
    }

    fn detach(&mut self, name: &str) {
        if let Some(a) = self.ifaces.remove(name) {
            for (prog, id) in a.links {
                if let Some(p) = self.ebpf.program_mut(prog) {
                    let p: Result<&mut SchedClassifier, _> = p.try_into();
                    if let Ok(p) = p {
                        // the interface may be gone with its pod, and the link with it
                        let _ = p.detach(id);
                    }
                }
            }
            let _ = self.ifmode.remove(&a.ifindex);
        }
    }

    fn stat(&self, idx: u32) -> u64 {
        let Some(map) = self.ebpf.map("STATS") else { return 0 };
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else { return 0 };
        arr.get(&idx, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}

impl Joiner {
    /// A kernel monotonic time as wall-clock time.
    fn wall(&self, mono_ns: u64) -> Timestamp {
        Timestamp((i128::from(mono_ns) + self.mono_to_real).max(0) as u64)
    }

    fn chunk(&mut self, item: &[u8], f: &mut dyn FnMut(RawPacket<'_>)) {
        if item.len() < HDR {
            self.incomplete += 1;
            return;
        }
        // SAFETY: item holds at least HDR bytes written by the kernel as a pkt_hdr.
        let h: PktHdr = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const PktHdr) };
        let data = &item[HDR..(HDR + h.cap_len as usize).min(item.len())];
        let last = h.flags & F_LAST != 0;
        if h.offset == 0 && last {
            // the common case, a packet in one piece: no copy
            self.packets += 1;
            f(RawPacket { ts: self.wall(h.ts_ns), linktype: 1, data });
            return;
        }
        let p = self.partial.entry(h.cpu).or_default();
        if h.offset == 0 {
            if p.open {
                self.incomplete += 1;
            }
            *p = Partial { id: h.id, ts_ns: h.ts_ns, data: Vec::with_capacity(h.len as usize), open: true };
        } else if !p.open || p.id != h.id || p.data.len() != h.offset as usize {
            // a chunk before this one was lost (ring full): the packet cannot be whole
            if p.open {
                self.incomplete += 1;
                p.open = false;
            }
            return;
        }
        p.data.extend_from_slice(data);
        if last {
            p.open = false;
            self.packets += 1;
            let (ts_ns, buf) = (p.ts_ns, std::mem::take(&mut p.data));
            f(RawPacket { ts: self.wall(ts_ns), linktype: 1, data: &buf });
        }
    }
}

impl Source for EbpfSource {
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(RawPacket<'_>)) -> Result<Poll, Error> {
        let mut pfd = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // Wake-ups are batched in the kernel (WAKEUP_BYTES), so a timeout drains the rest.
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(ebpf_err("*", format!("poll on the ring buffer: {}", std::io::Error::last_os_error())));
        }
        let (ring, joiner) = (&mut self.ring, &mut self.joiner);
        // bounded, so the caller gets to keep time under a flood
        for _ in 0..(1 << 16) {
            let Some(item) = ring.next() else { break };
            joiner.chunk(&item, f);
        }
        Ok(Poll::More)
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), Error> {
        let wanted: HashMap<&str, &Iface> = plan.ifaces.iter().map(|i| (i.name.as_str(), i)).collect();
        // A pod is LOCAL (its packets are taken where they leave it) only while its veth
        // is attached: added after attaching, removed before leaving, so no packet falls
        // between the two.
        let local: HashSet<[u8; 16]> =
            plan.ifaces.iter().filter(|i| i.kind == IfaceKind::PodVeth).flat_map(|i| i.addrs.iter().map(|a| key(*a))).collect();
        for k in self.local_set.difference(&local) {
            let _ = self.local.remove(k);
        }
        self.local_set.retain(|k| local.contains(k));
        let gone: Vec<String> = self
            .ifaces
            .iter()
            .filter(|(n, a)| wanted.get(n.as_str()).is_none_or(|i| i.kind != a.kind))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            self.detach(&n);
        }
        let filter = u32::from(plan.targets.is_some());
        self.config.set(0, filter, 0).map_err(|e| ebpf_err("*", chain(&e)))?;
        let new: HashSet<[u8; 16]> = plan.targets.iter().flatten().map(|a| key(*a)).collect();
        for k in self.target_set.difference(&new) {
            let _ = self.targets.remove(k);
        }
        for k in new.difference(&self.target_set) {
            self.targets.insert(*k, 1, 0).map_err(|e| ebpf_err("*", format!("target map: {}", chain(&e))))?;
        }
        self.target_set = new;
        for iface in &plan.ifaces {
            if !self.ifaces.contains_key(&iface.name) {
                self.attach(iface)?;
            }
        }
        for k in local.difference(&self.local_set.clone()) {
            self.local.insert(*k, 1, 0).map_err(|e| ebpf_err("*", format!("local map: {}", chain(&e))))?;
            self.local_set.insert(*k);
        }
        Ok(())
    }

    fn stats(&mut self) -> SourceStats {
        SourceStats {
            packets: self.joiner.packets,
            kernel_drops: 0,
            ring_drops: self.stat(ST_RING_FULL),
            truncated: self.stat(ST_TRUNCATED),
            filtered: self.stat(ST_FILTERED),
            incomplete: self.joiner.incomplete,
        }
    }

    fn engine(&self) -> &'static str {
        "ebpf"
    }

    fn attached(&self) -> Vec<String> {
        let mut v: Vec<String> = self.ifaces.keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u32, cpu: u16, len: u32, offset: u32, data: &[u8], last: bool) -> Vec<u8> {
        let h = PktHdr { ts_ns: 5, ifindex: 1, len, offset, cap_len: data.len() as u32, id, cpu, dir: 0, flags: if last { F_LAST } else { 0 } };
        // SAFETY: PktHdr is plain old data.
        let mut v = unsafe { std::slice::from_raw_parts(&h as *const PktHdr as *const u8, HDR) }.to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn chunks_join_into_packets_and_a_lost_chunk_drops_only_its_packet() {
        let mut j = Joiner { partial: HashMap::new(), mono_to_real: 1_000, packets: 0, incomplete: 0 };
        let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut f = |p: RawPacket<'_>| got.push((p.ts.0, p.data.to_vec()));
        j.chunk(&chunk(1, 0, 3, 0, b"abc", true), &mut f);
        // two CPUs interleaved, each a packet in two chunks
        j.chunk(&chunk(2, 0, 6, 0, b"012", false), &mut f);
        j.chunk(&chunk(9, 1, 4, 0, b"wx", false), &mut f);
        j.chunk(&chunk(2, 0, 6, 3, b"345", true), &mut f);
        j.chunk(&chunk(9, 1, 4, 2, b"yz", true), &mut f);
        // a packet whose middle chunk was lost to a full ring
        j.chunk(&chunk(3, 0, 9, 0, b"aaa", false), &mut f);
        j.chunk(&chunk(3, 0, 9, 6, b"ccc", true), &mut f);
        j.chunk(&chunk(4, 0, 2, 0, b"ok", true), &mut f);
        j.chunk(&[1, 2, 3], &mut f);
        let data: Vec<&[u8]> = got.iter().map(|(_, d)| d.as_slice()).collect();
        assert_eq!(data, [&b"abc"[..], b"012345", b"wxyz", b"ok"]);
        assert_eq!(got[0].0, 1_005);
        assert_eq!((j.packets, j.incomplete), (4, 2));
    }
}
