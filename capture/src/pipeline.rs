//! Sources through the dissector into a sink.

use crate::error::Error;
use crate::file::{FileSource, ReadSummary};
use kshark_dissect::{Dissector, Entry};

/// Dissects a whole capture, calling `sink` with each entry as it completes (entries of
/// connections still open at the end come last). Returns how reading ended.
pub fn dissect_file(src: &mut FileSource, d: &mut Dissector, mut sink: impl FnMut(Entry)) -> Result<ReadSummary, Error> {
    let mut pending: Vec<Entry> = Vec::new();
    let result = src.for_each_packet(|p| {
        d.packet(p.ts, p.linktype, p.data);
        pending.extend(d.drain_entries());
        for e in pending.drain(..) {
            sink(e);
        }
    });
    // whatever was read is dissected to the end, even when the file broke off
    d.finish();
    for e in d.drain_entries() {
        sink(e);
    }
    result
}
