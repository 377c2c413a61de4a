//! The fuzz targets' cases (testkit::fuzz_l7) on pseudo-random inputs, in every test run:
//! mutations of each protocol's own valid messages and plain noise, none may panic.

use crate::testkit::{fuzz_l7, l7_preludes};

/// xorshift64*: reproducible noise without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn hostile_streams_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (name, _, prelude) in l7_preludes() {
        let seed: Vec<u8> = prelude.iter().flat_map(|(_, m)| m.clone()).collect();
        for round in 0..300 {
            let len = (rng.next() % 400) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // half the rounds: the protocol's own bytes, flipped here and there
            if round % 2 == 0 && !seed.is_empty() {
                data = seed.iter().cycle().take(len.max(seed.len())).copied().collect();
                for _ in 0..(rng.next() % 8) {
                    let i = (rng.next() as usize) % data.len();
                    data[i] ^= rng.next() as u8;
                }
                // control bytes: whole runs in alternating directions
                let mut framed = Vec::new();
                for (i, chunk) in data.chunks(40).enumerate() {
                    framed.push(((i % 2) as u8) << 7 | (chunk.len() as u8 - 1));
                    framed.extend_from_slice(chunk);
                }
                data = framed;
            }
            fuzz_l7(name, &data);
        }
    }
}

#[test]
fn every_prelude_reaches_its_parser() {
    for (name, port, prelude) in l7_preludes() {
        let (entries, stats) = crate::testkit::conversation(port, &prelude, 0);
        assert_eq!(stats.unknown_protocol_flows, 0, "{name}: the prelude was not recognised");
        assert_eq!((stats.l7_malformed, stats.parse_desyncs), (0, 0), "{name}: the prelude did not read cleanly");
        let protocols: Vec<_> = entries.iter().map(|e| e["protocol"].as_str().unwrap_or("").to_string()).collect();
        assert!(protocols.iter().all(|p| p == name || p == "http"), "{name}: {protocols:?}");
        assert!(stats.l7_messages > 0 || name == "websocket", "{name}: no message read");
    }
}
