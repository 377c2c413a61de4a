//! Packet sources behind one trait: capture files (replayed at their pace or at full
//! speed), libpcap on live interfaces, and eBPF (a TC classifier and a ring buffer).

use crate::error::Error;
use kshark_dissect::Timestamp;
use std::net::IpAddr;
use std::time::Duration;

/// One packet as a source hands it out; `data` is valid during the callback only.
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    pub ts: Timestamp,
    /// The pcap link-layer type of `data` (1 = Ethernet, ...).
    pub linktype: u32,
    pub data: &'a [u8],
}

/// What a call to [`Source::poll`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// More may come.
    More,
    /// The input ended (a file read to its end); live sources never end by themselves.
    End,
}

/// How an interface is attached: it decides which copy of a packet counts, so that each
/// packet is seen once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IfaceKind {
    /// The host side of a pod's veth: what enters the host there was sent by the pod.
    PodVeth,
    /// Loopback: every packet crosses it twice; only one crossing is kept.
    Loopback,
    /// Any other interface, taken as it is.
    Plain,
}

/// An interface to capture on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Iface {
    pub name: String,
    pub kind: IfaceKind,
    /// For a pod veth: the pod's own addresses (libpcap's per-interface filter uses them).
    pub addrs: Vec<IpAddr>,
}

impl Iface {
    /// An interface named by the user (`-i`): loopback is recognised by its type.
    pub fn named(name: &str) -> Iface {
        let kind = if crate::netns::is_loopback(name) { IfaceKind::Loopback } else { IfaceKind::Plain };
        Iface { name: name.to_string(), kind, addrs: Vec::new() }
    }
}

/// What to capture: the interfaces, and the addresses that are targeted (`None`: every
/// packet on those interfaces).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ifaces: Vec<Iface>,
    pub targets: Option<Vec<IpAddr>>,
}

/// Counters a source keeps; the worker adds them up with the other stages'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Packets handed to the worker.
    pub packets: u64,
    /// Dropped by the kernel before they reached us (libpcap socket buffer full, or the
    /// interface's own drops).
    pub kernel_drops: u64,
    /// Dropped because the eBPF ring buffer was full.
    pub ring_drops: u64,
    /// Packets cut short beyond what the engine copies (eBPF: 512 KiB).
    pub truncated: u64,
    /// Packets the kernel-side filter left out (eBPF counts them; libpcap does not).
    pub filtered: u64,
    /// Chunks of a packet that never completed (part lost to a full ring).
    pub incomplete: u64,
}

/// A packet source. Live sources are polled from one thread; `poll` returns after at most
/// `timeout` even when nothing arrived, so the caller can keep time.
pub trait Source: Send {
    /// Waits up to `timeout` for packets and hands every available one to `f`.
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(RawPacket<'_>)) -> Result<Poll, Error>;
    /// At the end of a run: hands on whatever the source still holds.
    fn flush(&mut self, _f: &mut dyn FnMut(RawPacket<'_>)) {}
    /// Follows a new plan (interfaces and targets): attaches to new interfaces, leaves
    /// gone ones, updates the kernel-side filter.
    fn apply(&mut self, plan: &Plan) -> Result<(), Error>;
    fn stats(&mut self) -> SourceStats;
    /// The engine's name as users see it: `file`, `libpcap`, `ebpf`.
    fn engine(&self) -> &'static str;
    /// Interfaces attached now (for messages).
    fn attached(&self) -> Vec<String>;
    /// Whether packet times follow the wall clock, so idle connections can be expired by
    /// it when no packet comes (a file read at full speed has its own time).
    fn live(&self) -> bool {
        true
    }
}

/// Wall-clock now.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(d.as_nanos() as u64)
}
