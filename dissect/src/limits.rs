//! Every buffer the dissector keeps has a cap, and all the caps live here.

/// Caps on what the dissector buffers. Hitting one is counted in [`crate::Stats`] and,
/// where an exchange is affected, shown on its entry as an anomaly.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Live flows (TCP connections and UDP flows) at once; the oldest idle ones are evicted beyond it.
    pub max_flows: usize,
    /// Out-of-order bytes buffered per TCP direction before the hole is declared a gap.
    pub max_ooo_bytes_per_dir: usize,
    /// Out-of-order bytes buffered over all flows.
    pub max_ooo_bytes_total: usize,
    /// Bytes a parser may leave unconsumed in one direction (an unfinished header block).
    pub max_pending_bytes: usize,
    /// Body bytes kept per message (on the wire, before decoding); the rest is counted only.
    pub max_body: usize,
    /// Decoded (decompressed) body bytes kept per message.
    pub max_decoded_body: usize,
    /// Requests waiting for a response on one connection.
    pub max_pending_requests: usize,
    /// Bytes looked at on a connection of unknown protocol before giving up on it.
    pub max_probe_bytes: usize,
    /// Bytes held for IP fragment reassembly over all packets.
    pub max_fragment_bytes: usize,
    /// Idle time after which a TCP flow is expired, in nanoseconds of capture time.
    pub tcp_idle_ns: u64,
    /// Idle time after which a UDP flow is expired.
    pub udp_idle_ns: u64,
    /// Time a DNS query waits for its response before it is reported without one.
    pub dns_timeout_ns: u64,
    /// Time an incomplete IP datagram waits for its missing fragments.
    pub fragment_timeout_ns: u64,
    /// Bytes of one HTTP/2 header block (HEADERS or PUSH_PROMISE and its CONTINUATIONs), and
    /// of any other non-DATA frame; larger ones are skipped with `limit_reached`.
    pub max_header_block: usize,
    /// Decoded header bytes of one HTTP/2 header block (a HEADERS bomb stops here).
    pub max_decoded_headers: usize,
    /// HPACK dynamic table size a peer may ask for; beyond it the table is not followed.
    pub max_hpack_table: usize,
    /// gRPC messages kept per direction of one call; the rest are counted.
    pub max_grpc_messages: usize,
    /// Depth of nested encapsulation (VLAN, MPLS, VXLAN) followed.
    pub max_encap_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        Limits {
            max_flows: 1 << 20,
            max_ooo_bytes_per_dir: 4 << 20,
            max_ooo_bytes_total: 64 << 20,
            max_pending_bytes: 256 << 10,
            max_body: 64 << 10,
            max_decoded_body: 256 << 10,
            max_pending_requests: 1024,
            max_probe_bytes: 64 << 10,
            max_fragment_bytes: 16 << 20,
            tcp_idle_ns: 300 * S,
            udp_idle_ns: 60 * S,
            dns_timeout_ns: 10 * S,
            fragment_timeout_ns: 30 * S,
            max_encap_depth: 16,
            max_header_block: 256 << 10,
            max_decoded_headers: 256 << 10,
            max_hpack_table: 64 << 10,
            max_grpc_messages: 128,
        }
    }
}
