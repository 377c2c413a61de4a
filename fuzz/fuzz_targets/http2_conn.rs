//! An HTTP/2 connection whose frames come from the fuzzer: after the client preface, each
//! record is [direction and type][flags][stream][length][payload], built into a frame with
//! a correct length (or, when the top bit of the length byte is set, a wrong one), sent in
//! segments the fuzzer cuts. Reaches the frame reader, HPACK (both decoders), CONTINUATION,
//! padding, PUSH_PROMISE, RST_STREAM, GOAWAY and the gRPC framer.
#![no_main]
use kshark_dissect::testkit::{TcpConv, C2S, S2C};
use kshark_dissect::{Config, Dissector, Limits, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes: [Vec<u8>; 2] = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Vec::new()];
    let mut rest = data;
    while rest.len() >= 4 {
        let (ctl, flags, stream, len) = (rest[0], rest[1], rest[2], rest[3]);
        rest = &rest[4..];
        let n = ((len & 0x7f) as usize).min(rest.len());
        let (payload, tail) = rest.split_at(n);
        rest = tail;
        let dir = (ctl >> 7) as usize;
        let kind = ctl & 0x0f;
        let declared = if len & 0x80 != 0 { n as u32 * 3 + 1 } else { n as u32 };
        let out = &mut bytes[dir];
        out.extend_from_slice(&declared.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&((stream as u32) & 0x0f).to_be_bytes());
        out.extend_from_slice(payload);
    }
    let mut c = TcpConv::new(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], 50051), [7, u32::MAX - 3]);
    c.handshake();
    let cut = data.first().map(|b| (*b as usize % 61) + 1).unwrap_or(1);
    let (cs, ss) = (bytes[0].len().div_ceil(cut), bytes[1].len().div_ceil(cut));
    c.send(C2S, &bytes[0], &vec![cut; cs]).send(S2C, &bytes[1], &vec![cut; ss]).close();
    let limits = Limits { max_header_block: 4096, max_decoded_headers: 8192, max_grpc_messages: 4, ..Limits::default() };
    let mut d = Dissector::new(Config { limits, ..Config::default() });
    for (ts, f) in &c.frames {
        d.packet(Timestamp(*ts), 1, f);
    }
    d.finish();
    for e in d.drain_entries() {
        serde_json::to_string(&e).expect("entries always serialize");
    }
});
