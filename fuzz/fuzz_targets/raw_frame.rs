//! One raw frame, of each link-layer type, through the whole dissector.
#![no_main]
use kshark_dissect::{Config, Dissector, Timestamp};
use libfuzzer_sys::fuzz_target;

const LINKTYPES: [u32; 8] = [1, 0, 101, 108, 113, 239, 276, 229];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let mut d = Dissector::new(Config::default());
    d.packet(Timestamp(1), LINKTYPES[sel as usize % LINKTYPES.len()], frame);
    // the same frame again, as a retransmission or a duplicate would be
    d.packet(Timestamp(2), LINKTYPES[sel as usize % LINKTYPES.len()], frame);
    d.finish();
    for e in d.drain_entries() {
        serde_json::to_string(&e).expect("entries always serialize");
    }
});
