//! HTTP/1.x on one connection: a message state machine per direction (the same code for
//! requests and responses), and the pairing of responses to requests in order.

use super::wire;
use crate::body::BodyAcc;
use crate::entry::{Anomaly, Entry, Headers, HttpRequest, HttpResponse, HttpVersion, Protocol, Request, Response};
use crate::flow::Dir;
use crate::http2::H2cUpgrade;
use crate::proto::{Switch, Upgrade};
use crate::stream::{Cx, Progress, StreamParser};
use crate::time::Timestamp;
use crate::Probe;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Expecting a start line.
    #[default]
    Start,
    /// A body of known length: this many bytes to go.
    Length(u64),
    /// A body that ends when the connection does.
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    /// After an Upgrade request or CONNECT: wait for the response to say what follows.
    AwaitResponse,
    /// The connection switched protocols: not HTTP/1 any more.
    Tunnel,
    /// Lost track (a gap or garbage): looking for the next start line.
    Resync,
}

#[derive(Debug)]
enum Head {
    Request { method: String, target: String, version: HttpVersion },
    Response { status: u16, reason: String, version: HttpVersion },
    /// An HTTP/0.9 response: no status line, the body runs to the end of the connection.
    Response09,
}

#[derive(Debug)]
struct Msg {
    head: Head,
    headers: Headers,
    trailers: Headers,
    body: BodyAcc,
    start: Timestamp,
    end: Timestamp,
    wire: u64,
    anomalies: Vec<Anomaly>,
}

impl Msg {
    fn status(&self) -> Option<u16> {
        match self.head {
            Head::Response { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// A request in flight, in arrival order; the response side reads how to frame its body here.
#[derive(Debug, Default)]
struct Slot {
    is_head: bool,
    is_connect: bool,
    is_09: bool,
    wants_upgrade: bool,
    /// The request once it is complete.
    req: Option<Msg>,
    /// A final response that finished before its request did (an early error reply).
    early: Option<Msg>,
    interims: Vec<u16>,
    interim_bytes: u64,
}

#[derive(Debug, Default)]
struct Side {
    state: State,
    msg: Option<Msg>,
    /// Where to resume looking for the end of a head (the bytes before were searched).
    scan_from: usize,
}

/// One HTTP/1.x connection.
#[derive(Debug)]
pub struct Http1 {
    /// The direction requests travel in.
    client: Dir,
    sides: [Side; 2],
    queue: VecDeque<Slot>,
    /// Interim responses seen with no request waiting.
    orphan_interims: Vec<u16>,
    /// The connection switched to h2c: the request that becomes HTTP/2 stream 1.
    h2c: Option<H2cUpgrade>,
    /// The connection switched to another protocol (a `101` to `Upgrade: websocket`).
    upgraded: Option<Upgrade>,
    h2_table: usize,
    /// A CONNECT was accepted: what follows is another protocol, to be found anew.
    connected: bool,
}

impl Http1 {
    /// `h2_table`: the HPACK table cap of the HTTP/2 parser an h2c upgrade hands over to.
    pub fn new(client: Dir, h2_table: usize) -> Self {
        Http1 { client, sides: Default::default(), queue: VecDeque::new(), orphan_interims: Vec::new(), h2c: None, connected: false, upgraded: None, h2_table }
    }

    /// The oldest request in flight. An idle connection gives its slot's room back: with
    /// 100,000 open connections that is most of their memory.
    fn pop_slot(&mut self) -> Option<Slot> {
        let s = self.queue.pop_front();
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
        s
    }

    /// The direction requests travel in.
    pub fn client(&self) -> Dir {
        self.client
    }

    fn is_req(&self, dir: Dir) -> bool {
        dir == self.client
    }

    fn parse_start(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let is_req = self.is_req(dir);
        // an HTTP/0.9 request gets a bare body back
        if !is_req && self.queue.front().is_some_and(|s| s.is_09) && !data.starts_with(b"HTTP/") && !b"HTTP/".starts_with(&data[..data.len().min(5)]) {
            self.sides[dir.idx()].msg = Some(new_msg(Head::Response09, cx.ts_at(0)));
            self.sides[dir.idx()].state = State::UntilClose;
            return AGAIN;
        }
        let probe = if is_req { wire::probe_request(data) } else { wire::probe_response(data) };
        match probe {
            Probe::NoMatch => {
                cx.stats.http_malformed += 1;
                self.sides[dir.idx()].state = State::Resync;
                return AGAIN;
            }
            Probe::NeedMore => return Progress::NeedMore { consumed: 0, needed: data.len() + 1 },
            Probe::Match => {}
        }
        let (line, line_len) = match memchr::memchr(b'\n', data) {
            Some(nl) => (data[..nl].strip_suffix(b"\r").unwrap_or(&data[..nl]), nl + 1),
            None => return Progress::NeedMore { consumed: 0, needed: data.len() + 1 },
        };
        let is_09 = is_req && wire::parse_request_line(line).is_some_and(|r| r.version == HttpVersion::V09);
        let head_len = if is_09 {
            line_len
        } else {
            let side = &mut self.sides[dir.idx()];
            match wire::find_head_end(data, side.scan_from.max(line_len - 1)) {
                Some(n) => n,
                None => {
                    side.scan_from = data.len().saturating_sub(2).max(line_len - 1);
                    return Progress::NeedMore { consumed: 0, needed: data.len() + 1 };
                }
            }
        };
        self.sides[dir.idx()].scan_from = 0;
        let mut headers = Headers::default();
        if !is_09 && wire::parse_headers(&data[line_len..head_len], &mut headers) > 0 {
            cx.stats.http_malformed += 1;
        }
        let start = cx.ts_at(0);
        if is_req {
            let r = wire::parse_request_line(line).expect("probed");
            let method = String::from_utf8_lossy(r.method).into_owned();
            let slot = Slot {
                is_head: method.eq_ignore_ascii_case("HEAD"),
                is_connect: method.eq_ignore_ascii_case("CONNECT"),
                is_09,
                wants_upgrade: headers.get("upgrade").is_some(),
                ..Default::default()
            };
            let state = if is_09 { State::Start } else { request_framing(&headers) };
            let head = Head::Request { method, target: String::from_utf8_lossy(r.target).into_owned(), version: r.version };
            let mut msg = new_msg(head, start);
            msg.headers = headers;
            msg.wire = head_len as u64;
            cx.stats.http_requests += 1;
            if self.queue.len() >= cx.limits.max_pending_requests {
                // a client that never gets answers: report the oldest instead of growing
                let mut old = self.pop_slot().expect("non-empty");
                if let Some(r) = old.req.as_mut() {
                    r.anomalies.push(Anomaly::LimitReached);
                }
                self.emit_slot(old, None, cx);
            }
            // one slot is the common case: VecDeque's first growth would make room for four,
            // kept for the connection's life (a Slot is large: it holds whole messages)
            if self.queue.capacity() == 0 {
                self.queue.reserve_exact(1);
            }
            self.queue.push_back(slot);
            let side = &mut self.sides[dir.idx()];
            side.msg = Some(msg);
            side.state = state;
            if state == State::Start {
                self.complete(dir, cx);
            }
        } else {
            let s = wire::parse_status_line(line).expect("probed");
            cx.stats.http_responses += 1;
            let head = Head::Response { status: s.status, reason: String::from_utf8_lossy(s.reason).into_owned(), version: s.version };
            let mut msg = new_msg(head, start);
            msg.headers = headers;
            msg.wire = head_len as u64;
            if (100..200).contains(&s.status) && s.status != 101 {
                match self.queue.front_mut() {
                    Some(slot) => {
                        slot.interims.push(s.status);
                        slot.interim_bytes += head_len as u64;
                    }
                    None => self.orphan_interims.push(s.status),
                }
                return Progress::Consumed(head_len);
            }
            let state = self.response_framing(&msg);
            let side = &mut self.sides[dir.idx()];
            side.msg = Some(msg);
            side.state = state;
            if state == State::Start {
                self.complete(dir, cx);
            }
        }
        Progress::Consumed(head_len)
    }

    fn response_framing(&self, msg: &Msg) -> State {
        let status = msg.status().unwrap_or(0);
        let slot = self.queue.front();
        if slot.is_some_and(|s| s.is_head) || status == 204 || status == 304 || (100..200).contains(&status) {
            return State::Start;
        }
        if slot.is_some_and(|s| s.is_connect) && (200..300).contains(&status) {
            return State::Start;
        }
        if is_chunked(&msg.headers) {
            return State::ChunkSize;
        }
        match content_length(&msg.headers) {
            Some(0) => State::Start,
            Some(n) => State::Length(n),
            None => State::UntilClose,
        }
    }

    /// The message in `dir` is complete: file it, pair it, emit what is whole.
    fn complete(&mut self, dir: Dir, cx: &mut Cx<'_>) {
        let side = &mut self.sides[dir.idx()];
        let Some(mut msg) = side.msg.take() else { return };
        msg.end = cx.ts;
        side.state = State::Start;
        if self.is_req(dir) {
            let Some(slot) = self.queue.back_mut() else { return };
            if slot.wants_upgrade || slot.is_connect {
                self.sides[dir.idx()].state = State::AwaitResponse;
            }
            slot.req = Some(msg);
            // the response may have finished first; emit in order from the front
            while self.queue.front().is_some_and(|s| s.req.is_some() && s.early.is_some()) {
                let mut s = self.pop_slot().expect("checked");
                let resp = s.early.take();
                self.emit_slot(s, resp, cx);
            }
        } else {
            let status = msg.status();
            let connect_ok = self.queue.front().is_some_and(|s| s.is_connect) && status.is_some_and(|s| (200..300).contains(&s));
            let tunnel = status == Some(101) || connect_ok;
            self.connected |= connect_ok;
            let h2c = status == Some(101) && msg.headers.get("upgrade").is_some_and(|u| u.to_ascii_lowercase().contains("h2c"));
            match self.queue.front_mut() {
                Some(slot) if slot.req.is_some() && h2c => {
                    let mut slot = self.pop_slot().expect("checked");
                    let q = slot.req.take().expect("checked");
                    let Head::Request { method, target, .. } = q.head else { unreachable!("a request") };
                    let mut fields = vec![(":method".to_string(), method), (":path".to_string(), target), (":scheme".to_string(), "http".to_string())];
                    fields.extend(q.headers.0);
                    self.h2c = Some(H2cUpgrade {
                        fields,
                        body: q.body,
                        start: q.start,
                        wire: q.wire,
                        switch_wire: msg.wire + slot.interim_bytes,
                        anomalies: q.anomalies,
                    });
                }
                Some(slot) if slot.req.is_some() => {
                    let slot = self.pop_slot().expect("checked");
                    if status == Some(101) {
                        self.upgraded = upgrade_of(self.client, slot.req.as_ref().expect("checked"), &msg, cx.ts);
                    }
                    self.emit_slot(slot, Some(msg), cx);
                }
                Some(slot) if slot.early.is_none() => slot.early = Some(msg),
                _ => {
                    let interims = std::mem::take(&mut self.orphan_interims);
                    self.emit(None, Some(msg), interims, 0, vec![Anomaly::UnpairedResponse], cx);
                }
            }
            let client = self.client.idx();
            if tunnel {
                self.sides[0].state = State::Tunnel;
                self.sides[1].state = State::Tunnel;
                self.sides[client].msg = None;
            } else if self.sides[client].state == State::AwaitResponse {
                self.sides[client].state = State::Start;
            }
        }
    }

    fn emit_slot(&mut self, slot: Slot, resp: Option<Msg>, cx: &mut Cx<'_>) {
        let mut an = Vec::new();
        if resp.is_none() {
            an.push(Anomaly::NoResponse);
        }
        if slot.req.is_none() {
            an.push(Anomaly::Truncated);
        }
        self.emit(slot.req, resp, slot.interims, slot.interim_bytes, an, cx);
    }

    fn emit(&mut self, req: Option<Msg>, resp: Option<Msg>, interims: Vec<u16>, interim_bytes: u64, mut an: Vec<Anomaly>, cx: &mut Cx<'_>) {
        let ts = req.as_ref().or(resp.as_ref()).map(|m| m.start).unwrap_or(cx.ts);
        let mut e: Entry = cx.entry(Protocol::HTTP, self.client, ts);
        if let (Some(q), Some(r)) = (&req, &resp) {
            e.elapsed_time = Some(r.end.micros_since(q.start));
        }
        let max = cx.limits.max_decoded_body;
        if let Some(q) = req {
            an.extend_from_slice(&q.anomalies);
            e.request_size = q.wire;
            if let Head::Request { method, target, version } = q.head {
                e.http_version = Some(version);
                let (path, query) = wire::split_target(&target);
                let (path, query) = (path.to_string(), query.to_string());
                let host = q.headers.get("host").map(str::to_string);
                let body = q.body.finish(q.headers.get("content-type"), q.headers.get("content-encoding"), max, &mut an);
                e.request = Some(Box::new(Request::Http(HttpRequest {
                    method,
                    path,
                    query_string: query,
                    url: target,
                    host,
                    headers: q.headers,
                    trailers: q.trailers,
                    body,
                    http2: None,
                    unresolved_headers: Vec::new(),
                })));
            }
        }
        if let Some(r) = resp {
            an.extend_from_slice(&r.anomalies);
            e.response_size = r.wire + interim_bytes;
            let (status, reason, version) = match r.head {
                Head::Response { status, reason, version } => (status, Some(reason), version),
                _ => (0, None, HttpVersion::V09),
            };
            e.http_version.get_or_insert(version);
            let body = r.body.finish(r.headers.get("content-type"), r.headers.get("content-encoding"), max, &mut an);
            e.response = Some(Box::new(Response::Http(HttpResponse {
                status_code: status,
                reason,
                headers: r.headers,
                trailers: r.trailers,
                body,
                informational: interims,
                unresolved_headers: Vec::new(),
            })));
        }
        for a in an {
            e.add_anomaly(a);
        }
        cx.emit(e);
    }

    /// Ends the message in progress in `dir` early, marked with `why`.
    fn cut_short(&mut self, dir: Dir, why: &[Anomaly], cx: &mut Cx<'_>) {
        if let Some(m) = self.sides[dir.idx()].msg.as_mut() {
            for a in why {
                if !m.anomalies.contains(a) {
                    m.anomalies.push(*a);
                }
            }
            self.complete(dir, cx);
        }
    }
}

/// A state change that consumed nothing: `feed` goes round again on the same bytes.
const AGAIN: Progress = Progress::NeedMore { consumed: 0, needed: usize::MAX };

fn new_msg(head: Head, start: Timestamp) -> Msg {
    Msg {
        head,
        headers: Headers::default(),
        trailers: Headers::default(),
        body: BodyAcc::default(),
        start,
        end: start,
        wire: 0,
        anomalies: Vec::new(),
    }
}

fn is_chunked(h: &Headers) -> bool {
    h.get("transfer-encoding")
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// Content-Length, when it is one number (repeats must agree).
fn content_length(h: &Headers) -> Option<u64> {
    let v = h.get("content-length")?;
    let mut n = None;
    for part in v.split(',') {
        let x: u64 = part.trim().parse().ok()?;
        if n.is_some_and(|n| n != x) {
            return None;
        }
        n = Some(x);
    }
    n
}

fn request_framing(h: &Headers) -> State {
    if is_chunked(h) {
        State::ChunkSize
    } else {
        match content_length(h) {
            Some(n) if n > 0 => State::Length(n),
            _ => State::Start,
        }
    }
}

impl StreamParser for Http1 {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        let i = dir.idx();
        loop {
            let state = self.sides[i].state;
            let p = match state {
                State::Tunnel => return Progress::Consumed(data.len()),
                State::AwaitResponse => return Progress::NeedMore { consumed: 0, needed: 0 },
                State::Resync => {
                    let probe = if self.is_req(dir) { wire::probe_request(data) } else { wire::probe_response(data) };
                    match probe {
                        Probe::Match => {
                            self.sides[i].state = State::Start;
                            continue;
                        }
                        Probe::NeedMore => return Progress::NeedMore { consumed: 0, needed: data.len() + 1 },
                        Probe::NoMatch => {
                            // look for a start line after the next line break, else skip it all
                            let skip = memchr::memchr(b'\n', data).map(|n| n + 1).unwrap_or(data.len());
                            cx.stats.resync_skipped_bytes += skip as u64;
                            return Progress::Consumed(skip);
                        }
                    }
                }
                State::Start => self.parse_start(dir, data, cx),
                State::Length(rem) => {
                    let n = rem.min(data.len() as u64) as usize;
                    let m = self.sides[i].msg.as_mut().expect("body has a message");
                    m.body.push(&data[..n], cx.limits.max_body);
                    m.wire += n as u64;
                    if rem == n as u64 {
                        self.complete(dir, cx);
                    } else {
                        self.sides[i].state = State::Length(rem - n as u64);
                    }
                    Progress::Consumed(n)
                }
                State::UntilClose => {
                    let m = self.sides[i].msg.as_mut().expect("body has a message");
                    m.body.push(data, cx.limits.max_body);
                    m.wire += data.len() as u64;
                    Progress::Consumed(data.len())
                }
                State::ChunkSize | State::Trailers => {
                    let Some(nl) = memchr::memchr(b'\n', &data[..data.len().min(4096)]) else {
                        if data.len() >= 4096 {
                            self.cut_short(dir, &[Anomaly::Malformed], cx);
                            self.sides[i].state = State::Resync;
                            return AGAIN;
                        }
                        return Progress::NeedMore { consumed: 0, needed: data.len() + 1 };
                    };
                    let line = &data[..nl];
                    let m = self.sides[i].msg.as_mut().expect("chunks have a message");
                    m.wire += nl as u64 + 1;
                    if state == State::ChunkSize {
                        match wire::parse_chunk_size(line) {
                            Some(0) => self.sides[i].state = State::Trailers,
                            Some(n) => self.sides[i].state = State::ChunkData(n),
                            None => {
                                m.wire -= nl as u64 + 1;
                                self.cut_short(dir, &[Anomaly::Malformed], cx);
                                self.sides[i].state = State::Resync;
                                return AGAIN;
                            }
                        }
                    } else {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if line.is_empty() {
                            self.complete(dir, cx);
                        } else {
                            let mut t = Headers::default();
                            let mut block = line.to_vec();
                            block.extend_from_slice(b"\r\n\r\n");
                            wire::parse_headers(&block, &mut t);
                            m.trailers.0.extend(t.0);
                        }
                    }
                    Progress::Consumed(nl + 1)
                }
                State::ChunkData(rem) => {
                    let n = rem.min(data.len() as u64) as usize;
                    let m = self.sides[i].msg.as_mut().expect("chunks have a message");
                    m.body.push(&data[..n], cx.limits.max_body);
                    m.wire += n as u64;
                    self.sides[i].state = if rem == n as u64 { State::ChunkEnd } else { State::ChunkData(rem - n as u64) };
                    Progress::Consumed(n)
                }
                State::ChunkEnd => {
                    let n = if data.starts_with(b"\r\n") {
                        2
                    } else if data.starts_with(b"\n") {
                        1
                    } else if data == b"\r" {
                        return Progress::NeedMore { consumed: 0, needed: 2 };
                    } else {
                        0 // a missing CRLF after the data: tolerate it, as browsers do
                    };
                    if let Some(m) = self.sides[i].msg.as_mut() {
                        m.wire += n as u64;
                    }
                    self.sides[i].state = State::ChunkSize;
                    if n == 0 {
                        continue;
                    }
                    Progress::Consumed(n)
                }
            };
            // a state change that consumed nothing: go round again on the same bytes
            if p == AGAIN {
                continue;
            }
            return p;
        }
    }

    fn on_gap(&mut self, dir: Dir, len: u64, cx: &mut Cx<'_>) {
        let i = dir.idx();
        let state = self.sides[i].state;
        match state {
            State::Tunnel => {}
            State::Length(rem) | State::ChunkData(rem) if len <= rem => {
                let m = self.sides[i].msg.as_mut().expect("body has a message");
                m.body.lost(len);
                m.wire += len;
                if !m.anomalies.contains(&Anomaly::Gap) {
                    m.anomalies.push(Anomaly::Gap);
                }
                let left = rem - len;
                self.sides[i].state = match state {
                    State::Length(_) if left == 0 => {
                        self.complete(dir, cx);
                        // the hole may have been longer in truth: find the next start line
                        State::Resync
                    }
                    State::Length(_) => State::Length(left),
                    _ if left == 0 => State::ChunkEnd,
                    _ => State::ChunkData(left),
                };
            }
            State::UntilClose => {
                let m = self.sides[i].msg.as_mut().expect("body has a message");
                m.body.lost(len);
                m.wire += len;
                if !m.anomalies.contains(&Anomaly::Gap) {
                    m.anomalies.push(Anomaly::Gap);
                }
            }
            _ => {
                self.cut_short(dir, &[Anomaly::Gap, Anomaly::Truncated], cx);
                self.sides[i].state = State::Resync;
                self.sides[i].scan_from = 0;
            }
        }
    }

    fn on_close(&mut self, dir: Dir, _leftover: &[u8], cx: &mut Cx<'_>) {
        match self.sides[dir.idx()].state {
            State::UntilClose => self.complete(dir, cx),
            State::Start | State::Resync | State::Tunnel | State::AwaitResponse => {}
            _ => self.cut_short(dir, &[Anomaly::Truncated], cx),
        }
    }
}

impl Http1 {
    /// The connection is over: whatever waits for a partner is reported without one.
    pub fn finish(&mut self, cx: &mut Cx<'_>) {
        for d in [Dir::A, Dir::B] {
            if self.sides[d.idx()].msg.is_some() {
                self.cut_short(d, &[Anomaly::Truncated], cx);
            }
        }
        while let Some(mut s) = self.queue.pop_front() {
            let early = s.early.take();
            self.emit_slot(s, early, cx);
        }
    }
}

/// What a `101` tells the protocol that takes the connection over.
fn upgrade_of(client: Dir, req: &Msg, resp: &Msg, at: crate::time::Timestamp) -> Option<Upgrade> {
    let Head::Request { target, .. } = &req.head else { return None };
    let token = resp.headers.get("upgrade").or_else(|| req.headers.get("upgrade"))?.split(',').next()?.trim().to_ascii_lowercase();
    Some(Upgrade { token, client, target: target.clone(), request_headers: req.headers.0.clone(), response_headers: resp.headers.0.clone(), at })
}

impl crate::proto::TcpParser for Http1 {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        Http1::finish(self, cx)
    }

    fn switch(&mut self) -> Option<Switch> {
        if let Some(up) = self.h2c.take() {
            // the 101 was read: what follows on this connection is HTTP/2
            return Some(Switch::To(Box::new(crate::http2::Http2::upgraded(self.client, up, self.h2_table))));
        }
        if let Some(up) = self.upgraded.take() {
            return Some(Switch::Upgrade(up));
        }
        // a proxy tunnel: usually TLS (opaque), sometimes cleartext HTTP/2 or HTTP/1
        std::mem::take(&mut self.connected).then_some(Switch::Reprobe)
    }
}
