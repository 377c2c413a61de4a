//! Counters of every stage: what was read, what was dropped, and why.

use serde::Serialize;

macro_rules! counters {
    ($(#[$sm:meta])* pub struct $s:ident { $($(#[$m:meta])* $name:ident,)* }) => {
        $(#[$sm])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct $s { $($(#[$m])* pub $name: u64,)* }

        impl $s {
            /// Adds another set of counters to this one.
            pub fn add(&mut self, o: &$s) {
                $(self.$name += o.$name;)*
            }
        }
    };
}

counters! {
    /// Everything the dissector counts. Nothing is dropped without a counter here.
    pub struct Stats {
    packets,
    bytes,
    /// Frames whose link layer could not be read (cut short, or nested too deep).
    link_errors,
    /// Frames of a link-layer type the dissector does not know.
    unsupported_link,
    /// Frames that carry something other than IP (ARP, LLDP, ...).
    non_ip,
    ip_errors,
    /// Transport protocols other than TCP and UDP.
    other_transport,
    fragments,
    fragments_reassembled,
    fragments_dropped,
    fragments_expired,
    vxlan_decapsulated,
    tcp_segments,
    udp_datagrams,
    tcp_retransmitted_segments,
    tcp_out_of_order_segments,
    tcp_gaps,
    tcp_gap_bytes,
    flows_created,
    flows_expired,
    /// Flows evicted before their time because `Limits::max_flows` was reached.
    flows_evicted,
    /// Out-of-order data given up on because `Limits::max_ooo_bytes_total` was reached.
    ooo_cap_hits,
    /// Directions whose unconsumed bytes exceeded `Limits::max_pending_bytes`.
    pending_overflows,
    /// Connections and flows whose protocol was not recognised.
    unknown_protocol_flows,
    /// Directions a parser gave up on (bytes that made no sense for the protocol).
    parse_desyncs,
    /// Bytes skipped while looking for the start of a message.
    resync_skipped_bytes,
    http_requests,
    http_responses,
    http_malformed,
    dns_messages,
    dns_malformed,
    /// HTTP/2 frames read, on every connection.
    h2_frames,
    /// HTTP/2 streams that became entries (pushed streams included).
    h2_streams,
    /// HTTP/2 frames that broke the protocol's rules (bad length for the type, stream 0 where
    /// a stream is needed, a frame inside a header block, over the peer's frame size).
    h2_frame_errors,
    /// HTTP/2 frames skipped unread because they exceeded `Limits::max_header_block`.
    h2_frames_skipped,
    /// Header blocks that referred to HPACK state never seen (joined mid-connection, or
    /// after a block that could not be read).
    hpack_desyncs,
    /// Header blocks that HPACK could not decode (bad integers, bad Huffman, bad index).
    hpack_errors,
    /// Frames for streams already finished or never opened, ignored.
    h2_frames_for_closed_streams,
    grpc_messages,
    /// gRPC messages kept as sent: unsupported grpc-encoding, or decompression failed.
    grpc_decode_errors,
    /// gRPC messages counted but not kept because `Limits::max_grpc_messages` was reached.
    grpc_messages_dropped,
    /// Messages read by the protocols outside schema 1 (databases, queues, WebSocket).
    l7_messages,
    /// Their messages that could not be read (the direction resynchronises or gives up).
    l7_malformed,
    /// Requests given up as unanswered because `Limits::max_pending_requests` were in flight.
    pending_request_overflows,
    entries,
    entries_with_anomalies,
    requests_without_response,
    responses_without_request,
}
}

impl Stats {
    /// Packets or bytes that were lost or given up on somewhere; worth a warning.
    pub fn losses(&self) -> Vec<(&'static str, u64)> {
        [
            ("link errors", self.link_errors),
            ("unsupported link type", self.unsupported_link),
            ("IP errors", self.ip_errors),
            ("fragments dropped", self.fragments_dropped),
            ("fragments expired", self.fragments_expired),
            ("TCP gaps", self.tcp_gaps),
            ("flows evicted", self.flows_evicted),
            ("out-of-order cap hits", self.ooo_cap_hits),
            ("pending overflows", self.pending_overflows),
            ("parser desyncs", self.parse_desyncs),
            ("HTTP/2 frames skipped", self.h2_frames_skipped),
            ("HPACK desyncs", self.hpack_desyncs),
            ("gRPC messages dropped", self.grpc_messages_dropped),
            ("malformed messages", self.l7_malformed),
            ("requests given up at the cap", self.pending_request_overflows),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}
