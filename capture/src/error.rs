//! The one error type of the capture crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a pcap or pcapng file (it starts with {first_bytes})")]
    NotACapture { path: PathBuf, first_bytes: String },
    #[error("{path}: empty file, no capture header")]
    Empty { path: PathBuf },
    #[error("{path}: unreadable capture data at byte {offset}: {detail}")]
    Corrupt { path: PathBuf, offset: u64, detail: String },
    #[error("{path}: read error at byte {offset}")]
    Read { path: PathBuf, offset: u64 },
    #[error("{path}: link-layer type {linktype} is not supported (Ethernet, NULL/loopback, raw IP, Linux SLL/SLL2 and NFLOG are)")]
    UnsupportedLinkType { path: PathBuf, linktype: u32 },
    #[error("{engine} on {iface}: {detail}")]
    Capture { engine: &'static str, iface: String, detail: String },
    #[error("{path}: {detail}")]
    Inventory { path: PathBuf, detail: String },
    #[error("identity from {from}: {detail}")]
    Kube { from: String, detail: String },
}
