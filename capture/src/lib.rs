//! kshark's packet sources and the worker loop that feeds them to the dissector.
//!
//! Sources ([`source::Source`]): capture files ([`file::FileSource`], and
//! [`replay::ReplaySource`] to play one as if live), libpcap on live interfaces
//! ([`live_pcap::PcapSource`]) and eBPF ([`ebpf::EbpfSource`]). [`worker::run`] spreads
//! their packets over dissector shards; [`inventory::Inventory`] names the endpoints;
//! [`netns`] finds the host-side interfaces of pods; [`join`] marks the exchanges that a
//! second node's worker also sees, for the hub to join.

pub mod conntrack;
pub mod ebpf;
pub mod error;
pub mod file;
pub mod identity;
pub mod inventory;
pub mod join;
pub mod kube_watch;
pub mod live_pcap;
pub mod netns;
pub mod pipeline;
pub mod replay;
pub mod ship;
pub mod source;
pub mod tls;
pub mod tls_go;
pub mod tls_scan;
pub mod tls_ssl;
pub mod worker;

pub use error::Error;
pub use file::{FileSource, Packet, ReadSummary};
