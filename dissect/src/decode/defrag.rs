//! IP fragment reassembly, bounded by `Limits::max_fragment_bytes` and a timeout.

use crate::time::Timestamp;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

#[derive(Debug, Default)]
struct Datagram {
    data: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    have: Vec<(usize, usize)>,
    total: Option<usize>,
    first_seen: Timestamp,
}

impl Datagram {
    fn complete(&self) -> bool {
        matches!(self.total, Some(t) if self.have.len() == 1 && self.have[0] == (0, t))
    }

    fn add_range(&mut self, start: usize, end: usize) {
        self.have.push((start, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
    }
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Held until the rest arrives.
    Held,
    /// The datagram is whole: its transport payload.
    Complete(Vec<u8>),
    /// Refused: it would exceed the byte cap, or ends past 64 KiB.
    Dropped,
}

/// Fragments waiting for their datagram to complete.
#[derive(Debug, Default)]
pub struct Defragmenter {
    pending: HashMap<FragKey, Datagram>,
    bytes: usize,
}

impl Defragmenter {
    /// Adds one fragment: `offset` in bytes, `more` the more-fragments flag.
    pub fn add(&mut self, key: FragKey, offset: usize, more: bool, payload: &[u8], ts: Timestamp, cap: usize) -> Outcome {
        let end = offset + payload.len();
        if end > 65_535 + 8 || self.bytes + payload.len() > cap {
            return Outcome::Dropped;
        }
        let d = self.pending.entry(key).or_insert_with(|| Datagram { first_seen: ts, ..Default::default() });
        if d.data.len() < end {
            self.bytes += end - d.data.len();
            d.data.resize(end, 0);
        }
        // later copies overwrite earlier ones, as Linux does
        d.data[offset..end].copy_from_slice(payload);
        d.add_range(offset, end);
        if !more {
            d.total = Some(end);
        }
        if d.complete() {
            let mut d = self.pending.remove(&key).expect("present");
            self.bytes -= d.data.len();
            d.data.truncate(d.total.unwrap_or(d.data.len()));
            Outcome::Complete(d.data)
        } else {
            Outcome::Held
        }
    }

    /// Forgets datagrams older than `timeout`; returns how many were abandoned.
    pub fn expire(&mut self, now: Timestamp, timeout_ns: u64) -> usize {
        let before = self.pending.len();
        let bytes = &mut self.bytes;
        self.pending.retain(|_, d| {
            let keep = now.0.saturating_sub(d.first_seen.0) < timeout_ns;
            if !keep {
                *bytes -= d.data.len();
            }
            keep
        });
        before - self.pending.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FragKey {
        FragKey { src: [10, 0, 0, 1].into(), dst: [10, 0, 0, 2].into(), id: 7, proto: 17 }
    }

    #[test]
    fn reassembles_in_any_order_with_overlap() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut d = Defragmenter::default();
        assert_eq!(d.add(key(), 48, false, &data[48..], Timestamp(0), 1 << 20), Outcome::Held);
        assert_eq!(d.add(key(), 16, true, &data[16..56], Timestamp(1), 1 << 20), Outcome::Held);
        assert_eq!(d.add(key(), 0, true, &data[..24], Timestamp(2), 1 << 20), Outcome::Complete(data.clone()));
        assert_eq!(d.buffered_bytes(), 0);
    }

    #[test]
    fn caps_and_expiry() {
        let mut d = Defragmenter::default();
        assert_eq!(d.add(key(), 0, true, &[0; 64], Timestamp(0), 32), Outcome::Dropped);
        assert_eq!(d.add(key(), 65_000, true, &[0; 600], Timestamp(0), 1 << 20), Outcome::Dropped);
        assert_eq!(d.add(key(), 0, true, &[0; 16], Timestamp(0), 1 << 20), Outcome::Held);
        assert_eq!(d.expire(Timestamp(10), 5), 1);
        assert_eq!(d.buffered_bytes(), 0);
    }
}
