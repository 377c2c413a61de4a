//! DNS pairing (queries with their responses by flow and id; duplicates and unsolicited
//! responses kept as entries of their own), and DNS over TCP's length-prefixed stream.

use super::wire::{self, Message};
use crate::entry::{Anomaly, DnsQuestion, DnsRequest, DnsResponse, Protocol, Request, Response};
use crate::flow::Dir;
use crate::stream::{Cx, Progress, StreamParser};
use crate::time::Timestamp;
use std::collections::VecDeque;

/// How a query was sent. What is kept of a query once answered (enough to know a later
/// copy of the answer for a duplicate): a flow is kept a while after its last answer, and
/// the DNS flows of a busy node are many, so this holds no heap memory.
#[derive(Debug, Clone, Copy)]
struct Sent {
    id: u16,
    /// The direction the query travelled in (from the client).
    dir: Dir,
    malformed: bool,
    ts: Timestamp,
    size: u64,
}

#[derive(Debug)]
struct Query {
    sent: Sent,
    req: DnsRequest,
}

/// Queries waiting for responses on one flow or connection, and recently answered ones.
#[derive(Debug, Default)]
pub struct DnsPairing {
    pending: VecDeque<Query>,
    answered: smallvec::SmallVec<[Sent; 2]>,
}

const MAX_ANSWERED: usize = 256;

fn request_of(m: &Message, questions: Vec<DnsQuestion>) -> DnsRequest {
    DnsRequest { id: m.id, opcode: wire::opcode_text(m.opcode), questions }
}

fn response_of(m: Message) -> DnsResponse {
    DnsResponse {
        id: m.id,
        opcode: wire::opcode_text(m.opcode),
        rcode: wire::rcode_text(m.rcode),
        truncated: m.truncated,
        authoritative: m.authoritative,
        questions: m.questions,
        answers: m.answers,
        authorities: m.authorities,
        additionals: m.additionals,
    }
}

impl DnsPairing {
    /// One message travelling in `dir`. `multicast`: sent to a group (mDNS), where answers
    /// do not come back on the same flow, so each message stands alone.
    pub fn message(&mut self, dir: Dir, mut m: Message, size: u64, ts: Timestamp, multicast: bool, cx: &mut Cx<'_>) {
        cx.stats.dns_messages += 1;
        if m.malformed {
            cx.stats.dns_malformed += 1;
        }
        if !m.is_response {
            let questions = std::mem::take(&mut m.questions);
            let q = Query { sent: Sent { id: m.id, dir, malformed: m.malformed, ts, size }, req: request_of(&m, questions) };
            if multicast {
                self.emit(Some(q), None, None, vec![], cx);
                return;
            }
            if self.pending.len() >= cx.limits.max_pending_requests {
                let old = self.pending.pop_front().expect("non-empty");
                self.emit(Some(old), None, None, vec![Anomaly::NoResponse, Anomaly::LimitReached], cx);
            }
            self.pending.push_back(q);
            return;
        }
        let resp_malformed = m.malformed;
        let mut an = Vec::new();
        if resp_malformed {
            an.push(Anomaly::Malformed);
        }
        let answers = |s: &Sent| s.id == m.id && s.dir == dir.flip();
        if let Some(i) = self.pending.iter().position(|q| answers(&q.sent)) {
            let q = self.pending.remove(i).expect("found");
            self.emit_answered(q, m, size, ts, an, cx);
        } else if let Some(&sent) = self.answered.iter().rev().find(|s| answers(s)) {
            // the request as the answer repeats it: a response carries its query's
            // question section (RFC 1035 4.1.1)
            let copy = Query { sent, req: request_of(&m, m.questions.clone()) };
            an.push(Anomaly::DuplicateResponse);
            self.emit(Some(copy), Some((response_of(m), size, ts)), None, an, cx);
        } else {
            if !multicast {
                an.push(Anomaly::UnpairedResponse);
            }
            self.emit(None, Some((response_of(m), size, ts)), Some(dir.flip()), an, cx);
        }
    }

    fn emit_answered(&mut self, q: Query, m: Message, size: u64, ts: Timestamp, an: Vec<Anomaly>, cx: &mut Cx<'_>) {
        let keep = q.sent;
        self.emit(Some(q), Some((response_of(m), size, ts)), None, an, cx);
        if self.answered.len() >= MAX_ANSWERED {
            self.answered.remove(0);
        }
        self.answered.push(keep);
        if self.pending.is_empty() {
            // an idle flow lingers (see the dissector): give its queue's memory back now
            self.pending = VecDeque::new();
        }
    }

    fn emit(&mut self, q: Option<Query>, r: Option<(DnsResponse, u64, Timestamp)>, client: Option<Dir>, mut an: Vec<Anomaly>, cx: &mut Cx<'_>) {
        let client = q.as_ref().map(|q| q.sent.dir).or(client).unwrap_or(Dir::A);
        let ts = q.as_ref().map(|q| q.sent.ts).or(r.as_ref().map(|r| r.2)).unwrap_or(cx.ts);
        let mut e = cx.entry(Protocol::DNS, client, ts);
        if let Some(q) = q {
            if q.sent.malformed {
                an.push(Anomaly::Malformed);
            }
            e.request_size = q.sent.size;
            if let Some((_, _, rts)) = &r {
                e.elapsed_time = Some(rts.micros_since(q.sent.ts));
            }
            e.request = Some(Box::new(Request::Dns(q.req)));
        }
        if let Some((resp, size, _)) = r {
            e.response_size = size;
            e.response = Some(Box::new(Response::Dns(resp)));
        }
        for a in an {
            e.add_anomaly(a);
        }
        cx.emit(e);
    }

    /// Reports queries older than the DNS timeout as unanswered, and forgets old answers.
    pub fn expire(&mut self, now: Timestamp, cx: &mut Cx<'_>) {
        let t = cx.limits.dns_timeout_ns;
        while self.pending.front().is_some_and(|q| now.0.saturating_sub(q.sent.ts.0) > t) {
            let q = self.pending.pop_front().expect("checked");
            self.emit(Some(q), None, None, vec![Anomaly::NoResponse], cx);
        }
        let old = self.answered.iter().take_while(|a| now.0.saturating_sub(a.ts.0) > t).count();
        self.answered.drain(..old);
    }

    pub fn finish(&mut self, cx: &mut Cx<'_>) {
        while let Some(q) = self.pending.pop_front() {
            self.emit(Some(q), None, None, vec![Anomaly::NoResponse], cx);
        }
        self.answered.clear();
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}

/// DNS over TCP (RFC 7766): each message after a two-byte length, several per segment or
/// one over several segments.
#[derive(Debug, Default)]
pub struct DnsTcp {
    pub pairing: DnsPairing,
    /// After a gap: look for a message start at the next segment.
    resync: [bool; 2],
}

impl StreamParser for DnsTcp {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        if self.resync[dir.idx()] {
            // whole segments lost carry whole messages, so the next segment often starts one
            match probe_tcp(data, true) {
                crate::Probe::Match => self.resync[dir.idx()] = false,
                crate::Probe::NeedMore if data.len() < 2 + u16::MAX as usize => {
                    return Progress::NeedMore { consumed: 0, needed: data.len() + 1 }
                }
                _ => {
                    cx.stats.resync_skipped_bytes += data.len() as u64;
                    return Progress::Consumed(data.len());
                }
            }
        }
        if data.len() < 2 {
            return Progress::NeedMore { consumed: 0, needed: 2 };
        }
        let len = u16::from_be_bytes([data[0], data[1]]) as usize;
        if data.len() < 2 + len {
            return Progress::NeedMore { consumed: 0, needed: 2 + len };
        }
        let ts = cx.ts_at(0);
        match wire::parse(&data[2..2 + len]) {
            Some(m) => self.pairing.message(dir, m, (2 + len) as u64, ts, false, cx),
            None => {
                cx.stats.dns_malformed += 1;
                return Progress::Desync;
            }
        }
        Progress::Consumed(2 + len)
    }

    fn on_gap(&mut self, dir: Dir, _len: u64, _cx: &mut Cx<'_>) {
        self.resync[dir.idx()] = true;
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() {
            cx.stats.dns_malformed += 1;
        }
    }
}

/// Does the start of a TCP stream look like DNS over TCP?
pub fn probe_tcp(b: &[u8], hinted: bool) -> crate::Probe {
    if b.len() < 14 {
        return crate::Probe::NeedMore;
    }
    let len = u16::from_be_bytes([b[0], b[1]]) as usize;
    if len < 12 {
        return crate::Probe::NoMatch;
    }
    if b.len() < 2 + len {
        // the header alone must already look right
        if !wire::header_plausible(&b[2..], hinted) || !hinted && len > 4096 {
            return crate::Probe::NoMatch;
        }
        return crate::Probe::NeedMore;
    }
    if wire::looks_like_dns(&b[2..2 + len], hinted) {
        crate::Probe::Match
    } else {
        crate::Probe::NoMatch
    }
}

impl crate::proto::TcpParser for DnsTcp {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        self.pairing.finish(cx)
    }
}
