//! A TCP conversation whose bytes, chunking and direction flips come from the fuzzer: the
//! HTTP/1 and DNS-over-TCP parsers behind reassembly, fed hostile streams.
#![no_main]
use kshark_dissect::testkit::TcpConv;
use kshark_dissect::{Config, Dissector, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // the first byte picks the port (HTTP or DNS) so both parsers are reached
    let port = if data[0] & 1 == 0 { 80 } else { 53 };
    let mut c = TcpConv::new(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], port), [u32::MAX - 100, 5]);
    c.handshake();
    // then: [control byte: direction in bit 7, length in the rest] [bytes] ...
    c.send_fuzzed(&data[1..]);
    c.close();
    let mut d = Dissector::new(Config::default());
    for (ts, f) in &c.frames {
        d.packet(Timestamp(*ts), 1, f);
    }
    d.finish();
    for e in d.drain_entries() {
        serde_json::to_string(&e).expect("entries always serialize");
    }
});
