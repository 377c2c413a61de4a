//! Interfaces and network namespaces: finding the host-side veth of each pod.
//!
//! A pod's `eth0` is one end of a veth pair whose other end sits in the host's namespace.
//! Every network namespace on the host (named ones in /run/netns and those of running
//! processes in /proc/*/ns/net) is entered from a short-lived thread, its links and
//! addresses are read over rtnetlink, and each address is mapped to the host interface at
//! the other end of its veth (IFLA_LINK), checked from the host's side too. This works for
//! any CNI that gives pods veths (bridge, ptp, Calico, Cilium in veth mode, kind).
//!
//! The rtnetlink reading is done here with libc: two dump requests and three attributes of
//! kernel-written messages. The netlink crates' APIs bring more than that needs.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// ARPHRD_LOOPBACK (772) in sysfs.
pub fn is_loopback(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/type")).is_ok_and(|t| t.trim() == "772")
}

/// One link as rtnetlink describes it.
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFLA_LINK: for a veth, the peer's index (in the peer's namespace).
    pub peer: Option<u32>,
    pub kind: String,
    pub addrs: Vec<IpAddr>,
}

const RTM_GETLINK: u16 = 18;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let v = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, v))
    })
}

fn cstr(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|&c| c == 0).next().unwrap_or(b"")).into_owned()
}

/// One rtnetlink dump in the calling thread's namespace: (message type, payload) pairs.
fn dump(ty: u16, body_len: usize) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = 16 + body_len;
    let mut req = vec![0u8; len];
    req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&ty.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: req is a valid buffer of len bytes.
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), len, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: buf is a valid writable buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut b = &buf[..n as usize];
        while b.len() >= 16 {
            let mlen = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let mty = u16::from_ne_bytes([b[4], b[5]]);
            if mlen < 16 || mlen > b.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink message"));
            }
            match mty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = b.get(16..20).map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                    return Err(io::Error::from_raw_os_error(-code));
                }
                _ => out.push((mty, b[16..mlen].to_vec())),
            }
            b = &b[((mlen + 3) & !3).min(b.len())..];
        }
        if n == 0 {
            return Ok(out);
        }
    }
}

/// Every link of the calling thread's namespace, with its addresses.
pub fn links() -> io::Result<Vec<Link>> {
    let mut links: HashMap<u32, Link> = HashMap::new();
    for (_, m) in dump(RTM_GETLINK, 16)? {
        if m.len() < 16 {
            continue;
        }
        let index = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
        let mut l = Link { index, ..Default::default() };
        for (ty, v) in attrs(&m[16..]) {
            match ty {
                IFLA_IFNAME => l.name = cstr(v),
                IFLA_LINK if v.len() >= 4 => l.peer = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
                IFLA_LINKINFO => {
                    if let Some((_, k)) = attrs(v).find(|(t, _)| *t == IFLA_INFO_KIND) {
                        l.kind = cstr(k);
                    }
                }
                _ => {}
            }
        }
        links.insert(index, l);
    }
    for (_, m) in dump(RTM_GETADDR, 8)? {
        if m.len() < 8 {
            continue;
        }
        let index = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
        let mut addr = None;
        for (ty, v) in attrs(&m[8..]) {
            let a = match v.len() {
                4 => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
                16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap()))),
                _ => None,
            };
            // IFA_LOCAL is the interface's own address on point-to-point links
            if ty == IFA_LOCAL || (ty == IFA_ADDRESS && addr.is_none()) {
                addr = a;
            }
        }
        if let (Some(a), Some(l)) = (addr, links.get_mut(&index)) {
            l.addrs.push(a);
        }
    }
    let mut v: Vec<Link> = links.into_values().collect();
    v.sort_by_key(|l| l.index);
    Ok(v)
}

/// Network namespace files other than our own, one per namespace.
fn namespaces() -> Vec<PathBuf> {
    let own = std::fs::metadata("/proc/self/ns/net").map(|m| (m.dev(), m.ino())).ok();
    let mut seen = HashSet::new();
    if let Some(o) = own {
        seen.insert(o);
    }
    let mut out = Vec::new();
    let mut consider = |p: PathBuf| {
        if let Ok(m) = std::fs::metadata(&p) {
            if seen.insert((m.dev(), m.ino())) {
                out.push(p);
            }
        }
    };
    for dir in ["/run/netns", "/var/run/netns"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                consider(e.path());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().bytes().all(|c| c.is_ascii_digit()) {
                consider(e.path().join("ns/net"));
            }
        }
    }
    out
}

/// The links of another namespace, read from a thread that enters it.
fn links_in(ns: PathBuf) -> io::Result<Vec<Link>> {
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns)?;
        // SAFETY: setns on a valid namespace fd; it changes only this (short-lived) thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        links()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("namespace reader panicked")))
}

/// For each wanted address held by an interface in another namespace whose veth peer is in
/// ours: the name of that host-side interface. Addresses not found are left out.
pub fn host_veths(wanted: &HashSet<IpAddr>) -> io::Result<HashMap<IpAddr, String>> {
    let host: HashMap<u32, Link> = links()?.into_iter().map(|l| (l.index, l)).collect();
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    for ns in namespaces() {
        let Ok(ls) = links_in(ns) else { continue }; // a process that just exited
        for l in ls {
            let Some(peer) = l.peer else { continue };
            let Some(h) = host.get(&peer) else { continue };
            // the host end must point back at this one, or the index is another namespace's
            if h.kind != "veth" || h.peer != Some(l.index) {
                continue;
            }
            for a in &l.addrs {
                if wanted.contains(a) {
                    out.insert(*a, h.name.clone());
                }
            }
        }
    }
    Ok(out)
}
