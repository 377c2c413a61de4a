//! One direction of a TCP connection put back in order.
//!
//! In-order data (the common case) goes straight to the consumer without a copy; only
//! segments that arrive ahead of a hole are buffered, up to a cap. A hole becomes a
//! [`Chunk::Gap`] when the data can no longer come: the peer acknowledged past it, the
//! buffer cap was reached, or the direction is flushed (FIN, RST, expiry, end of capture).

use super::SeqNum;

/// What the reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes were never captured.
    Gap(u64),
}

/// Counters of one direction; summed into the dissector's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub retransmitted_segments: u64,
    pub out_of_order_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
}

#[derive(Debug, Default)]
pub struct HalfStream {
    /// The next sequence number to deliver; None until the direction is first seen.
    next: Option<SeqNum>,
    /// Segments ahead of `next`, sorted by distance from it.
    ooo: Vec<(SeqNum, Vec<u8>)>,
    ooo_bytes: usize,
    /// Highest acknowledgement the peer sent for this direction's data.
    acked: Option<SeqNum>,
    /// Sequence number just past the FIN, once a FIN was seen.
    fin_at: Option<SeqNum>,
    fin_delivered: bool,
    pub counters: TcpCounters,
}

impl HalfStream {
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }

    pub fn fin_delivered(&self) -> bool {
        self.fin_delivered
    }

    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Records the peer's acknowledgement of this direction's data. Holes before buffered
    /// data that the peer acknowledged can never be filled: they become gaps now.
    pub fn ack(&mut self, ack: SeqNum, out: &mut impl FnMut(Chunk<'_>)) {
        match self.acked {
            Some(a) if ack.diff(a) <= 0 => {}
            _ => self.acked = Some(ack),
        }
        self.resolve_acked(out);
    }

    fn resolve_acked(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let (Some(a), Some((s, _)), Some(n)) = (self.acked, self.ooo.first(), self.next) {
            // the peer has every byte before `a`; a hole before buffered data it covers is lost
            if a.diff(*s) < 0 {
                break;
            }
            let off = s.diff(n);
            if off > 0 {
                self.gap(off as u64, out);
            }
            self.drain(out);
        }
        self.check_fin();
    }

    /// Gives up on holes before `seq`: buffered data before it is delivered with gaps between.
    fn skip_to(&mut self, seq: SeqNum, out: &mut impl FnMut(Chunk<'_>)) {
        while let (Some((s, _)), Some(n)) = (self.ooo.first(), self.next) {
            if s.diff(seq) >= 0 {
                break;
            }
            let off = s.diff(n);
            if off > 0 {
                self.gap(off as u64, out);
            }
            self.drain(out);
        }
        if let Some(n) = self.next {
            let off = seq.diff(n);
            if off > 0 {
                self.gap(off as u64, out);
            }
        }
    }

    /// Takes one segment: `missing` bytes at its end were declared but not captured.
    /// Returns the change in buffered bytes (for the global cap).
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        seq: SeqNum,
        syn: bool,
        fin: bool,
        payload: &[u8],
        missing: usize,
        max_buffer: usize,
        out: &mut impl FnMut(Chunk<'_>),
    ) {
        let mut seq = seq;
        if syn {
            if self.next.is_none() {
                self.next = Some(seq.advance(1));
            }
            seq = seq.advance(1); // data in a SYN (TCP Fast Open) starts after it
        }
        let next = *self.next.get_or_insert(seq);
        let len = payload.len() + missing;
        if fin {
            self.fin_at = Some(seq.advance(len));
        }
        let off = seq.diff(next);
        if off <= 0 {
            let overlap = (-off) as usize;
            if overlap >= len {
                if len > 0 {
                    self.counters.retransmitted_segments += 1;
                }
            } else {
                if overlap > 0 {
                    self.counters.retransmitted_segments += 1;
                }
                self.deliver(&payload[overlap.min(payload.len())..], missing - overlap.saturating_sub(payload.len()), out);
            }
        } else if len > 0 {
            self.counters.out_of_order_segments += 1;
            if missing == 0 && self.ooo_bytes + len <= max_buffer {
                let at = self.ooo.partition_point(|(s, _)| s.diff(next) <= off);
                self.ooo_bytes += payload.len();
                self.ooo.insert(at, (seq, payload.to_vec()));
                self.resolve_acked(out);
            } else {
                // over the buffer cap, or cut short by the snap length: the holes before it
                // will not be waited for
                self.skip_to(seq, out);
                self.deliver(payload, missing, out);
            }
        }
        self.drain(out);
        self.check_fin();
    }

    fn deliver(&mut self, data: &[u8], missing: usize, out: &mut impl FnMut(Chunk<'_>)) {
        if !data.is_empty() {
            out(Chunk::Data(data));
        }
        if missing > 0 {
            self.counters.gaps += 1;
            self.counters.gap_bytes += missing as u64;
            out(Chunk::Gap(missing as u64));
        }
        if let Some(n) = self.next.as_mut() {
            *n = n.advance(data.len() + missing);
        }
    }

    fn gap(&mut self, len: u64, out: &mut impl FnMut(Chunk<'_>)) {
        if len == 0 {
            return;
        }
        self.counters.gaps += 1;
        self.counters.gap_bytes += len;
        out(Chunk::Gap(len));
        if let Some(n) = self.next.as_mut() {
            *n = SeqNum(n.0.wrapping_add(len as u32));
        }
    }

    /// Delivers buffered segments that the stream has caught up with.
    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some((s, _)) = self.ooo.first() {
            let next = self.next.expect("set before anything is buffered");
            let off = s.diff(next);
            if off > 0 {
                break;
            }
            let (_, data) = self.ooo.remove(0);
            self.ooo_bytes -= data.len();
            let overlap = (-off) as usize;
            if overlap < data.len() {
                self.deliver(&data[overlap..], 0, out);
            }
        }
    }

    fn check_fin(&mut self) {
        if let (Some(f), Some(n)) = (self.fin_at, self.next) {
            if f.diff(n) <= 0 && self.ooo.is_empty() {
                self.fin_delivered = true;
            }
        }
    }

    /// Gives up on every hole: the buffered data is delivered with gaps between, then any
    /// data the peer acknowledged or the FIN covers but the capture never held.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some((s, _)) = self.ooo.first() {
            let off = s.diff(self.next.expect("set"));
            if off > 0 {
                self.gap(off as u64, out);
            }
            self.drain(out);
        }
        if let Some(n) = self.next {
            let end = match (self.fin_at, self.acked) {
                (Some(f), _) => Some(f),
                (None, Some(a)) => Some(a),
                _ => None,
            };
            if let Some(end) = end {
                let d = end.diff(n);
                // a FIN's own sequence number is not data
                let d = if self.fin_at.is_some() { d } else { d.max(0) };
                if d > 0 && d < (1 << 30) {
                    self.gap(d as u64, out);
                }
            }
        }
        self.check_fin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs segments through a stream and returns what came out, gaps as `None` bytes.
    fn run(isn: u32, segs: &[(u32, Vec<u8>)], ack_all_at_end: bool) -> (Vec<Option<u8>>, TcpCounters) {
        let mut h = HalfStream::default();
        let mut got = Vec::new();
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data(d) => got.extend(d.iter().map(|b| Some(*b))),
            Chunk::Gap(n) => got.extend(std::iter::repeat_n(None, n as usize)),
        };
        h.segment(SeqNum(isn), true, false, &[], 0, 1 << 20, &mut sink);
        for (off, data) in segs {
            h.segment(SeqNum(isn.wrapping_add(1).wrapping_add(*off)), false, false, data, 0, 1 << 20, &mut sink);
        }
        if ack_all_at_end {
            h.flush(&mut sink);
        }
        (got, h.counters)
    }

    #[test]
    fn in_order_out_of_order_and_retransmit() {
        let (got, c) = run(
            100,
            &[(0, b"abc".to_vec()), (6, b"ghi".to_vec()), (3, b"def".to_vec()), (0, b"abcd".to_vec())],
            true,
        );
        assert_eq!(got.iter().map(|b| b.unwrap()).collect::<Vec<u8>>(), b"abcdefghi");
        assert_eq!(c.out_of_order_segments, 1);
        assert_eq!(c.retransmitted_segments, 1);
    }

    #[test]
    fn wraps_around_2_32() {
        let (got, _) = run(u32::MAX - 2, &[(0, b"abcd".to_vec()), (4, b"efgh".to_vec())], true);
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|b| b.is_some()));
    }

    #[test]
    fn hole_becomes_gap_on_flush() {
        let (got, c) = run(0, &[(0, b"ab".to_vec()), (5, b"fg".to_vec())], true);
        assert_eq!(got, vec![Some(b'a'), Some(b'b'), None, None, None, Some(b'f'), Some(b'g')]);
        assert_eq!(c.gaps, 1);
        assert_eq!(c.gap_bytes, 3);
    }

    #[test]
    fn ack_past_hole_declares_gap_immediately() {
        let mut h = HalfStream::default();
        let mut got = Vec::new();
        let mut sink = |c: Chunk<'_>| got.push(format!("{c:?}"));
        h.segment(SeqNum(10), false, false, b"abc", 0, 1 << 20, &mut sink);
        h.segment(SeqNum(18), false, false, b"xy", 0, 1 << 20, &mut sink);
        h.segment(SeqNum(30), false, false, b"z", 0, 1 << 20, &mut sink);
        // the peer acknowledged past the first hole only
        h.ack(SeqNum(20), &mut sink);
        assert_eq!(got, vec!["Data([97, 98, 99])", "Gap(5)", "Data([120, 121])"]);
    }

    #[test]
    fn fast_open_data_in_syn() {
        let mut h = HalfStream::default();
        let mut got = Vec::new();
        let mut sink = |c: Chunk<'_>| {
            if let Chunk::Data(d) = c {
                got.extend_from_slice(d)
            }
        };
        h.segment(SeqNum(7), true, false, b"GET", 0, 1 << 20, &mut sink);
        h.segment(SeqNum(11), false, false, b" /", 0, 1 << 20, &mut sink);
        assert_eq!(got, b"GET /");
    }

    #[test]
    fn buffer_cap_forces_gap() {
        let mut h = HalfStream::default();
        let mut gaps = 0;
        let mut sink = |c: Chunk<'_>| gaps += matches!(c, Chunk::Gap(_)) as usize;
        h.segment(SeqNum(0), false, false, b"a", 0, 4, &mut sink);
        h.segment(SeqNum(10), false, false, b"bbbbbbbb", 0, 4, &mut sink);
        assert_eq!(gaps, 1);
        assert_eq!(h.buffered(), 0);
    }

    proptest! {
        /// Any set of segments cut from one stream, in any order, with duplicates and
        /// overlaps, delivers exactly the stream: the naive model is the stream itself.
        #[test]
        fn matches_naive_model(
            isn in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec((0usize..400, 1usize..60), 1..40),
            order in proptest::collection::vec(any::<u32>(), 40),
        ) {
            // segments covering the whole stream, plus random (overlapping) extra pieces
            let mut segs: Vec<(u32, Vec<u8>)> = data.chunks(37).enumerate()
                .map(|(i, c)| ((i * 37) as u32, c.to_vec())).collect();
            for (start, len) in cuts {
                let s = start % data.len();
                let e = (s + len).min(data.len());
                segs.push((s as u32, data[s..e].to_vec()));
            }
            // shuffle by the random keys, but keep the first segment first (a stream starts
            // with its first byte, as after a SYN)
            let first = segs.remove(0);
            let mut keyed: Vec<_> = segs.into_iter().enumerate().map(|(i, s)| (order[i % order.len()].wrapping_mul(i as u32 + 1), s)).collect();
            keyed.sort_by_key(|(k, _)| *k);
            let mut all = vec![first];
            all.extend(keyed.into_iter().map(|(_, s)| s));
            let (got, c) = run(isn, &all, true);
            prop_assert_eq!(c.gaps, 0);
            prop_assert_eq!(got.into_iter().map(|b| b.unwrap()).collect::<Vec<u8>>(), data);
        }

        /// With pieces missing, what is delivered is the stream with holes where the pieces
        /// were: every delivered byte is at its right offset.
        #[test]
        fn holes_keep_offsets(
            data in proptest::collection::vec(any::<u8>(), 10..300),
            drop_mask in any::<u64>(),
        ) {
            let segs: Vec<(u32, Vec<u8>)> = data.chunks(10).enumerate()
                .filter(|(i, _)| *i == 0 || drop_mask & (1 << (i % 64)) == 0)
                .map(|(i, c)| ((i * 10) as u32, c.to_vec())).collect();
            let (got, _) = run(1000, &segs, true);
            // the tail after the last kept segment is unknown without an ack
            prop_assert!(got.len() <= data.len());
            for (i, b) in got.iter().enumerate() {
                if let Some(b) = b {
                    prop_assert_eq!(*b, data[i]);
                }
            }
        }
    }
}
