//! The libpcap engine: one non-blocking handle per interface, polled together with
//! `poll(2)` (libpcap 1.10's blocking read never times out on an idle interface), each with
//! a kernel-side BPF filter made from the targets.

use crate::error::Error;
use crate::source::{Iface, IfaceKind, Plan, Poll, RawPacket, Source, SourceStats};
use kshark_dissect::Timestamp;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Big enough for the GSO/GRO super-packets a veth hands up (up to 64 KiB).
const SNAPLEN: i32 = 262_144;
const BUFFER_BYTES: i32 = 64 << 20;
/// The longest a packet waits in a TPACKET_V3 block before user space gets it.
const BLOCK_TIMEOUT_MS: i32 = 10;
/// Packets are held this long and handed on in time order: each interface's blocks come
/// up to a block timeout late, so a response taken on one pod's veth can arrive before
/// its request taken on another's.
const REORDER_NS: u64 = 3 * BLOCK_TIMEOUT_MS as u64 * 1_000_000;
/// Packets read from one handle per poll round, so one busy interface cannot starve others.
const BURST: usize = 4096;

struct Handle {
    iface: Iface,
    cap: pcap::Capture<pcap::Active>,
    linktype: u32,
    filter: String,
    /// Counters of handles already closed, kept so totals never go down.
    last: pcap::Stat,
}

/// A packet held for reordering: (time, arrival number, link type, bytes).
type Held = std::cmp::Reverse<(u64, u64, u32, Vec<u8>)>;

pub struct PcapSource {
    handles: Vec<Handle>,
    held: std::collections::BinaryHeap<Held>,
    arrivals: u64,
    closed: SourceStats,
    packets: u64,
}

impl PcapSource {
    /// Opens every interface of the plan; fails with a message naming the interface.
    pub fn open(plan: &Plan) -> Result<Self, Error> {
        let mut s = PcapSource { handles: Vec::new(), held: Default::default(), arrivals: 0, closed: SourceStats::default(), packets: 0 };
        s.apply(plan)?;
        Ok(s)
    }

    fn open_one(iface: &Iface, filter: &str) -> Result<Handle, Error> {
        let fail = |e: pcap::Error| Error::Capture { engine: "libpcap", iface: iface.name.clone(), detail: e.to_string() };
        let cap = pcap::Capture::from_device(iface.name.as_str())
            .map_err(fail)?
            .snaplen(SNAPLEN)
            // not immediate mode: that makes libpcap use TPACKET_V2, one ring slot of
            // SNAPLEN bytes per packet (a 64 MiB buffer then holds 256 packets). TPACKET_V3
            // packs packets into blocks, handed over when full or after the timeout.
            .immediate_mode(false)
            .timeout(BLOCK_TIMEOUT_MS)
            .buffer_size(BUFFER_BYTES)
            .precision(pcap::Precision::Nano)
            .open()
            .map_err(fail)?;
        let mut cap = cap.setnonblock().map_err(fail)?;
        if !filter.is_empty() {
            cap.filter(filter, true).map_err(|e| Error::Capture {
                engine: "libpcap",
                iface: iface.name.clone(),
                detail: format!("filter {filter:?}: {e}"),
            })?;
        }
        let linktype = cap.get_datalink().0 as u32;
        Ok(Handle { iface: iface.clone(), cap, linktype, filter: filter.to_string(), last: pcap::Stat { received: 0, dropped: 0, if_dropped: 0 } })
    }
}

/// Keeps a packet for reordering (nanosecond precision: `tv_usec` holds nanoseconds).
fn hold(held: &mut std::collections::BinaryHeap<Held>, arrivals: &mut u64, linktype: u32, p: &pcap::Packet<'_>) {
    let ts = Timestamp::from_parts(p.header.ts.tv_sec as u64, p.header.ts.tv_usec as u64);
    *arrivals += 1;
    held.push(std::cmp::Reverse((ts.0, *arrivals, linktype, p.data.to_vec())));
}

impl PcapSource {
    /// Hands on, in time order, the held packets taken before `horizon`.
    fn release(&mut self, horizon: u64, f: &mut dyn FnMut(RawPacket<'_>)) {
        while self.held.peek().is_some_and(|p| p.0 .0 <= horizon) {
            let std::cmp::Reverse((ts, _, linktype, data)) = self.held.pop().expect("peeked");
            self.packets += 1;
            f(RawPacket { ts: Timestamp(ts), linktype, data: &data });
        }
    }
}

/// The kernel-side filter for one interface: only targeted traffic, and on a pod's veth
/// only the copy that counts: a packet from another pod whose veth is captured here
/// (`local`) was taken at that pod's veth.
pub fn filter_for(iface: &Iface, targets: Option<&[IpAddr]>, local: &[IpAddr]) -> String {
    let Some(targets) = targets else { return String::new() };
    if targets.is_empty() {
        return "less 1".into(); // nothing is targeted yet: take nothing
    }
    let any = |dir: &str, addrs: &[IpAddr]| -> String {
        let parts: Vec<String> = addrs.iter().map(|a| format!("{dir}host {a}")).collect();
        format!("({})", parts.join(" or "))
    };
    match iface.kind {
        IfaceKind::PodVeth if !iface.addrs.is_empty() => {
            let others: Vec<IpAddr> = local.iter().filter(|a| !iface.addrs.contains(a)).copied().collect();
            if others.is_empty() {
                format!("{} or {}", any("src ", &iface.addrs), any("dst ", &iface.addrs))
            } else {
                format!("{} or ({} and not {})", any("src ", &iface.addrs), any("dst ", &iface.addrs), any("src ", &others))
            }
        }
        _ => any("", targets),
    }
}

impl Source for PcapSource {
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(RawPacket<'_>)) -> Result<Poll, Error> {
        if self.handles.is_empty() {
            std::thread::sleep(timeout);
            return Ok(Poll::More);
        }
        let mut fds: Vec<libc::pollfd> =
            self.handles.iter().map(|h| libc::pollfd { fd: h.cap.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Poll::More);
            }
            return Err(Error::Capture { engine: "libpcap", iface: "*".into(), detail: format!("poll: {e}") });
        }
        // Read every handle, not only those poll flagged: with TPACKET_V3 a block can be
        // ready while poll still waits for the block timeout.
        for h in &mut self.handles {
            for _ in 0..BURST {
                match h.cap.next_packet() {
                    Ok(p) => hold(&mut self.held, &mut self.arrivals, h.linktype, &p),
                    Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => break,
                    Err(e) => {
                        return Err(Error::Capture { engine: "libpcap", iface: h.iface.name.clone(), detail: e.to_string() })
                    }
                }
            }
        }
        let horizon = crate::source::now().0.saturating_sub(REORDER_NS);
        self.release(horizon, f);
        Ok(Poll::More)
    }

    fn flush(&mut self, f: &mut dyn FnMut(RawPacket<'_>)) {
        self.release(u64::MAX, f);
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), Error> {
        let wanted: HashMap<&str, &Iface> = plan.ifaces.iter().map(|i| (i.name.as_str(), i)).collect();
        // leave interfaces that are gone (their pod went away) or changed kind
        let mut kept = Vec::new();
        for mut h in std::mem::take(&mut self.handles) {
            if wanted.get(h.iface.name.as_str()).is_some_and(|i| i.kind == h.iface.kind) {
                kept.push(h);
            } else {
                if let Ok(s) = h.cap.stats() {
                    h.last = s;
                }
                self.closed.kernel_drops += u64::from(h.last.dropped) + u64::from(h.last.if_dropped);
            }
        }
        self.handles = kept;
        // New handles open with a filter that counts only pods already captured as local;
        // once all are open every filter is set for the full set (so no packet is lost
        // between two pods while their handles open one after the other).
        let open_local = |handles: &[Handle]| -> Vec<IpAddr> {
            handles.iter().filter(|h| h.iface.kind == IfaceKind::PodVeth).flat_map(|h| h.iface.addrs.iter().copied()).collect()
        };
        for iface in &plan.ifaces {
            if !self.handles.iter().any(|h| h.iface.name == iface.name) {
                let filter = filter_for(iface, plan.targets.as_deref(), &open_local(&self.handles));
                self.handles.push(Self::open_one(iface, &filter)?);
            }
        }
        let local = open_local(&self.handles);
        for iface in &plan.ifaces {
            let filter = filter_for(iface, plan.targets.as_deref(), &local);
            if let Some(h) = self.handles.iter_mut().find(|h| h.iface.name == iface.name) {
                if h.filter != filter || h.iface.addrs != iface.addrs {
                    // libpcap filters what is already queued with the new filter: take it
                    // first, or a packet that only the old filter let in here is lost
                    while let Ok(p) = h.cap.next_packet() {
                        hold(&mut self.held, &mut self.arrivals, h.linktype, &p);
                    }
                    h.cap.filter(&filter, true).map_err(|e| Error::Capture {
                        engine: "libpcap",
                        iface: iface.name.clone(),
                        detail: format!("filter {filter:?}: {e}"),
                    })?;
                    h.filter = filter;
                    h.iface = iface.clone();
                }
            }
        }
        Ok(())
    }

    fn stats(&mut self) -> SourceStats {
        let mut s = self.closed;
        s.packets = self.packets;
        for h in &mut self.handles {
            if let Ok(st) = h.cap.stats() {
                h.last = st;
            }
            s.kernel_drops += u64::from(h.last.dropped) + u64::from(h.last.if_dropped);
        }
        s
    }

    fn engine(&self) -> &'static str {
        "libpcap"
    }

    fn attached(&self) -> Vec<String> {
        self.handles.iter().map(|h| h.iface.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiles(filter: &str) {
        let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
        cap.compile(filter, true).unwrap_or_else(|e| panic!("{filter:?} does not compile: {e}"));
    }

    #[test]
    fn filters_take_each_packet_once_and_compile() {
        let veth = Iface { name: "veth1".into(), kind: IfaceKind::PodVeth, addrs: vec!["10.0.0.1".parse().unwrap()] };
        let targets: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::2".parse().unwrap()];
        let local: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::2".parse().unwrap()];
        let f = filter_for(&veth, Some(&targets), &local);
        assert_eq!(f, "(src host 10.0.0.1) or ((dst host 10.0.0.1) and not (src host fd00::2))");
        compiles(&f);
        // alone on the node: everything to and from the pod
        let f = filter_for(&veth, Some(&targets), &local[..1]);
        assert_eq!(f, "(src host 10.0.0.1) or (dst host 10.0.0.1)");
        compiles(&f);
        let plain = Iface::named("eth9");
        let f = filter_for(&plain, Some(&targets), &[]);
        assert_eq!(f, "(host 10.0.0.1 or host fd00::2)");
        compiles(&f);
        assert_eq!(filter_for(&plain, None, &[]), "");
        let f = filter_for(&plain, Some(&[]), &[]);
        compiles(&f);
    }
}
