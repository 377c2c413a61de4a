//! kshark's packet sources and the loop that feeds them to the dissector.
//!
//! [`file::FileSource`] streams pcap and pcapng files (or standard input) packet by
//! packet; [`pipeline::dissect_file`] runs one through a [`kshark_dissect::Dissector`] and
//! hands each entry to a sink as soon as it is complete. Live sources (libpcap, eBPF) and
//! identity arrive with their own issues.

pub mod error;
pub mod file;
pub mod pipeline;

pub use error::Error;
pub use file::{FileSource, Packet, ReadSummary};
