//! kshark's dissector: captured packets in, request/response [`Entry`]s out.
//!
//! Pure functions over bytes and timestamps: no I/O, no clocks, no threads. The
//! [`Dissector`] takes frames one by one ([`Dissector::packet`]) and:
//!
//! 1. strips the link layer and encapsulations (`decode::link`: Ethernet, VLAN/QinQ at any
//!    depth, MPLS, PPPoE, Linux SLL/SLL2, NULL/loopback, raw IP, NFLOG; VXLAN and IP-in-IP),
//!    reads IPv4/IPv6 through `etherparse`, and reassembles IP fragments (`decode::defrag`);
//! 2. keeps a flow table and puts each TCP direction back in order (`flow::tcp`), handing
//!    holes on as gaps;
//! 3. finds the protocol by content (`detect`), and feeds a parser per connection through
//!    one streaming contract (`stream`): HTTP/1.x (`http1`), HTTP/2 with HPACK (`http2`) and
//!    gRPC with protobuf decoding (`grpc`), DNS over TCP and UDP (`dns`);
//! 4. pairs responses with requests and emits entries (`entry`), with `anomalies` where an
//!    exchange was not seen whole, and counts every drop in [`Stats`].
//!
//! Every buffer is capped by [`Limits`]. `export` turns entries into HAR and text tables.

pub mod amqp;
pub mod body;
pub mod decode;
pub mod dissector;
pub mod dns;
pub mod entry;
pub mod error;
pub mod export;
pub mod flow;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod json;
pub mod kafka;
pub mod l7;
#[cfg(test)]
mod l7_fuzz_tests;
pub mod limits;
pub mod mongodb;
pub mod mqtt;
pub mod mysql;
pub mod postgresql;
pub mod proto;
pub mod redact;
pub mod redis;
pub mod registry;
pub mod stats;
pub mod stream;
pub mod time;
pub mod websocket;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use dissector::{Config, Dissector};
pub use entry::Entry;
pub use error::Error;
pub use limits::Limits;
pub use stats::Stats;
pub use time::Timestamp;

/// A protocol probe's verdict on the first bytes of a stream or datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Match,
    NoMatch,
    NeedMore,
}
