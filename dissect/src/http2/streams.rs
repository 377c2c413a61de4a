//! The streams of one HTTP/2 connection: what each has seen, and the entry it becomes.

use super::hpack::Block;
use crate::body::BodyAcc;
use crate::entry::{
    Anomaly, Entry, GrpcRequest, GrpcResponse, H2Info, Headers, HttpRequest, HttpResponse, HttpVersion, Protocol, Request, Response,
    UnresolvedHeader,
};
use crate::flow::Dir;
use crate::grpc::{self, Framer};
use crate::http1::wire::split_target;
use crate::stream::Cx;
use crate::time::Timestamp;

/// The two sides of a stream: the request side (client to server) and the response side.
pub const REQ: usize = 0;
pub const RESP: usize = 1;

/// A DATA payload of one side: a body, or gRPC messages.
#[derive(Debug)]
pub enum Payload {
    None,
    Body(BodyAcc),
    Grpc(Framer),
}

#[derive(Debug)]
pub struct H2Stream {
    pub id: u32,
    /// First byte of the request's first frame (or of whatever was seen first).
    pub start: Timestamp,
    /// Last byte of the response so far.
    pub end: Timestamp,
    /// The request's header fields (pseudo-headers first, as sent), once seen.
    pub req: Option<Vec<(String, String)>>,
    /// The final response's header fields, once seen.
    pub resp: Option<Vec<(String, String)>>,
    pub trailers: [Vec<(String, String)>; 2],
    pub informational: Vec<u16>,
    /// END_STREAM seen on each side.
    pub ended: [bool; 2],
    /// Frame bytes on the wire on each side, frame headers included.
    pub wire: [u64; 2],
    pub payload: [Payload; 2],
    pub unresolved: [Vec<UnresolvedHeader>; 2],
    pub anomalies: Vec<Anomaly>,
    pub grpc: bool,
    /// A second header block (trailers) came on the response side.
    pub resp_trailers: bool,
    pub promised_on: Option<u32>,
    /// When the client reset the stream, if it did.
    pub reset_at: Option<Timestamp>,
}

impl H2Stream {
    pub fn new(id: u32, start: Timestamp) -> Self {
        H2Stream {
            id,
            start,
            end: start,
            req: None,
            resp: None,
            trailers: Default::default(),
            informational: Vec::new(),
            ended: [false; 2],
            wire: [0; 2],
            payload: [Payload::None, Payload::None],
            unresolved: Default::default(),
            anomalies: Vec::new(),
            grpc: false,
            resp_trailers: false,
            promised_on: None,
            reset_at: None,
        }
    }

    pub fn mark(&mut self, a: Anomaly) {
        if !self.anomalies.contains(&a) {
            self.anomalies.push(a);
        }
    }

    /// Is the exchange over: the response ended, and the request too (or it was never seen)?
    pub fn complete(&self) -> bool {
        self.ended[RESP] && self.resp.is_some() && (self.ended[REQ] || self.req.is_none())
    }

    /// A decoded header block arrived on `side`; `end` is its END_STREAM flag.
    pub fn headers(&mut self, side: usize, b: Block, end: bool) {
        if b.desync() {
            self.mark(Anomaly::HpackDesync);
        }
        if b.malformed {
            self.mark(Anomaly::Malformed);
        }
        if b.capped {
            self.mark(Anomaly::LimitReached);
        }
        self.unresolved[side].extend(b.unresolved.into_iter().map(|(index, value)| UnresolvedHeader { index, value }));
        let is_grpc = |f: &[(String, String)]| f.iter().any(|(n, v)| n == "content-type" && v.starts_with("application/grpc"));
        if side == REQ {
            if self.req.is_none() {
                self.grpc |= is_grpc(&b.fields);
                self.req = Some(b.fields);
            } else {
                self.trailers[REQ].extend(b.fields);
            }
        } else if self.resp.is_none() {
            let status = b.fields.iter().find(|(n, _)| n == ":status").and_then(|(_, v)| v.trim().parse::<u16>().ok());
            match status {
                Some(s) if (100..200).contains(&s) => self.informational.push(s),
                _ => {
                    self.grpc |= is_grpc(&b.fields) || b.fields.iter().any(|(n, _)| n == "grpc-status");
                    self.resp = Some(b.fields);
                }
            }
        } else {
            self.resp_trailers = true;
            self.trailers[RESP].extend(b.fields);
        }
        if end {
            self.ended[side] = true;
        }
    }

    /// DATA bytes on `side`.
    pub fn data(&mut self, side: usize, b: &[u8], cx: &mut Cx<'_>) {
        if matches!(self.payload[side], Payload::None) {
            self.payload[side] = if self.grpc { Payload::Grpc(Framer::default()) } else { Payload::Body(BodyAcc::default()) };
        }
        match &mut self.payload[side] {
            Payload::Body(acc) => acc.push(b, cx.limits.max_body),
            Payload::Grpc(f) => f.push(b, cx.limits.max_body, cx.limits.max_grpc_messages, cx.stats),
            Payload::None => unreachable!("set above"),
        }
    }

    /// `n` bytes of this stream's DATA on `side` were never captured.
    pub fn lost(&mut self, side: usize, n: u64, cx: &mut Cx<'_>) {
        self.mark(Anomaly::Gap);
        match &mut self.payload[side] {
            Payload::Body(acc) => acc.lost(n),
            Payload::Grpc(f) => f.lose(cx.limits.max_grpc_messages, cx.stats),
            Payload::None => {
                let mut acc = BodyAcc::default();
                acc.lost(n);
                self.payload[side] = Payload::Body(acc);
            }
        }
    }

    /// A gRPC call whose headers could not be read: joined mid-connection, the HPACK
    /// table that `content-type: application/grpc` lives in was never seen (a tap started
    /// on a long-lived channel). What remains says it: a POST (a static-table entry), a
    /// response with trailers, and DATA on both sides that is exactly a run of gRPC
    /// length-prefixed messages (a request with at least one).
    fn grpc_by_shape(&self) -> bool {
        let framed = |p: &Payload, need_one: bool| match p {
            Payload::Body(acc) => acc.whole().is_some_and(|b| grpc::exactly_framed(b) && (!need_one || !b.is_empty())),
            Payload::None => !need_one,
            Payload::Grpc(_) => false,
        };
        self.anomalies.contains(&Anomaly::HpackDesync)
            && self.resp_trailers
            && self.req.as_deref().and_then(|f| pseudo(f, ":method")).is_none_or(|m| m == "POST")
            && framed(&self.payload[REQ], true)
            && framed(&self.payload[RESP], false)
    }

    /// The entry this stream becomes; `client` is the direction requests travel in.
    pub fn into_entry(mut self, client: Dir, cx: &mut Cx<'_>) -> Entry {
        cx.stats.h2_streams += 1;
        if !self.grpc && (self.trailers[RESP].iter().any(|(n, _)| n == "grpc-status") || self.grpc_by_shape()) {
            // the DATA was kept as a plain body until now: frame it as messages
            self.grpc = true;
            for side in [REQ, RESP] {
                if let Payload::Body(acc) = &self.payload[side] {
                    let mut f = Framer::default();
                    match acc.whole() {
                        Some(b) => f.push(b, cx.limits.max_body, cx.limits.max_grpc_messages, cx.stats),
                        None => f.lose(cx.limits.max_grpc_messages, cx.stats),
                    }
                    self.payload[side] = Payload::Grpc(f);
                }
            }
        }
        let mut an = std::mem::take(&mut self.anomalies);
        if self.req.is_some() && self.resp.is_none() {
            an.push(Anomaly::NoResponse);
        } else if self.resp.is_some() && !self.ended[RESP] {
            an.push(Anomaly::Truncated);
        }
        if self.req.is_none() {
            an.push(Anomaly::UnpairedResponse);
        } else if !self.ended[REQ] && !an.contains(&Anomaly::RstStream) {
            an.push(Anomaly::Truncated);
        }
        for side in [REQ, RESP] {
            if let Payload::Grpc(f) = &mut self.payload[side] {
                if f.finish(cx.limits.max_grpc_messages, cx.stats) {
                    an.push(Anomaly::Truncated);
                }
                if f.dropped > 0 {
                    an.push(Anomaly::LimitReached);
                }
            }
        }
        let protocol = if self.grpc { Protocol::GRPC } else { Protocol::HTTP };
        let mut e = cx.entry(protocol, client, self.start);
        e.http_version = Some(HttpVersion::V2);
        e.request_size = self.wire[REQ];
        e.response_size = self.wire[RESP];
        if self.req.is_some() && self.resp.is_some() {
            e.elapsed_time = Some(self.end.micros_since(self.start));
        }
        let h2 = H2Info { stream_id: self.id, promised_on: self.promised_on };
        if self.grpc {
            self.grpc_parts(&mut e, h2, &mut an, cx);
        } else {
            self.http_parts(&mut e, h2, &mut an, cx);
        }
        for a in an {
            e.add_anomaly(a);
        }
        e
    }

    fn http_parts(&mut self, e: &mut Entry, h2: H2Info, an: &mut Vec<Anomaly>, cx: &mut Cx<'_>) {
        let max = cx.limits.max_decoded_body;
        let [qp, rp] = std::mem::replace(&mut self.payload, [Payload::None, Payload::None]);
        let [qt, rt] = std::mem::take(&mut self.trailers);
        let [qu, ru] = std::mem::take(&mut self.unresolved);
        if let Some(f) = self.req.take() {
            let headers = to_headers(f);
            let target = headers.get(":path").unwrap_or_default().to_string();
            let (path, query) = split_target(&target);
            let (path, query) = (path.to_string(), query.to_string());
            let body = body(qp).finish(headers.get("content-type"), headers.get("content-encoding"), max, an);
            e.request = Some(Box::new(Request::Http(HttpRequest {
                method: headers.get(":method").unwrap_or_default().to_string(),
                path,
                query_string: query,
                url: target,
                host: headers.get(":authority").or_else(|| headers.get("host")).map(str::to_string),
                headers,
                trailers: to_headers(qt),
                body,
                http2: Some(h2),
                unresolved_headers: qu,
            })));
        }
        if let Some(f) = self.resp.take() {
            let headers = to_headers(f);
            let body = body(rp).finish(headers.get("content-type"), headers.get("content-encoding"), max, an);
            e.response = Some(Box::new(Response::Http(HttpResponse {
                status_code: status(&headers),
                reason: None,
                headers,
                trailers: to_headers(rt),
                body,
                informational: std::mem::take(&mut self.informational),
                unresolved_headers: ru,
            })));
        }
    }

    fn grpc_parts(&mut self, e: &mut Entry, h2: H2Info, an: &mut Vec<Anomaly>, cx: &mut Cx<'_>) {
        let max = cx.limits.max_decoded_body;
        let [qp, rp] = std::mem::replace(&mut self.payload, [Payload::None, Payload::None]);
        // gRPC clients send no trailers: the request side's are not shown
        let [_, rt] = std::mem::take(&mut self.trailers);
        let [qu, ru] = std::mem::take(&mut self.unresolved);
        let path = self.req.as_deref().and_then(|f| pseudo(f, ":path")).unwrap_or_default().to_string();
        let types = cx.meta.schema.as_deref().and_then(|pool| grpc::method_types(pool, &path));
        let mut render = |p: Payload, enc: Option<&str>, ty: Option<&prost_reflect::MessageDescriptor>, an: &mut Vec<Anomaly>| match p {
            Payload::Grpc(f) => {
                let msgs = f.messages.iter().map(|m| grpc::render(m, enc, ty, max, cx.stats)).collect::<Vec<_>>();
                (msgs, f.dropped)
            }
            Payload::Body(acc) => {
                // DATA that came before the stream was known to be gRPC: not framed
                if acc.size() > 0 {
                    an.push(Anomaly::Malformed);
                }
                (Vec::new(), 0)
            }
            Payload::None => (Vec::new(), 0),
        };
        if let Some(f) = self.req.take() {
            let headers = to_headers(f);
            let (service, method) = grpc::split_path(&path).unwrap_or(("", ""));
            let (messages, dropped) = render(qp, headers.get("grpc-encoding"), types.as_ref().map(|t| &t.0), an);
            e.request = Some(Box::new(Request::Grpc(GrpcRequest {
                path: path.clone(),
                service: service.to_string(),
                method: method.to_string(),
                host: headers.get(":authority").or_else(|| headers.get("host")).map(str::to_string),
                headers,
                messages,
                messages_dropped: dropped,
                http2: h2,
                unresolved_headers: qu,
            })));
        }
        if let Some(f) = self.resp.take() {
            let headers = to_headers(f);
            let trailers = to_headers(rt);
            let (messages, dropped) = render(rp, headers.get("grpc-encoding"), types.as_ref().map(|t| &t.1), an);
            let from = |n: &str| trailers.get(n).or_else(|| headers.get(n));
            e.response = Some(Box::new(Response::Grpc(GrpcResponse {
                status_code: status(&headers),
                grpc_status: from("grpc-status").and_then(|s| s.trim().parse().ok()),
                grpc_message: from("grpc-message").map(percent_decode),
                headers,
                trailers,
                messages,
                messages_dropped: dropped,
                unresolved_headers: ru,
            })));
        }
    }
}

fn body(p: Payload) -> BodyAcc {
    match p {
        Payload::Body(acc) => acc,
        _ => BodyAcc::default(),
    }
}

fn pseudo<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn status(h: &Headers) -> u16 {
    h.get(":status").and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Header fields as the entry shows them: repeats joined with ", ", except `cookie`, which
/// HTTP/2 splits into one field per crumb and RFC 9113 §8.2.3 joins again with "; ".
fn to_headers(f: Vec<(String, String)>) -> Headers {
    let mut h = Headers(Vec::with_capacity(f.len()));
    for (n, v) in f {
        if n == "cookie" {
            if let Some((_, c)) = h.0.iter_mut().find(|(k, _)| k == "cookie") {
                c.push_str("; ");
                c.push_str(&v);
                continue;
            }
        }
        h.append_owned(n, v);
    }
    h
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec); bad escapes are kept as sent.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_crumbs_join_with_semicolons() {
        let f = |n: &str, v: &str| (n.to_string(), v.to_string());
        let h = to_headers(vec![f("cookie", "a=1"), f("accept", "x"), f("cookie", "b=2"), f("accept", "y")]);
        assert_eq!(h.get("cookie"), Some("a=1; b=2"));
        assert_eq!(h.get("accept"), Some("x, y"));
    }

    #[test]
    fn grpc_message_percent_decoding() {
        assert_eq!(percent_decode("not%20found%3A%20x"), "not found: x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("é%é"), "é%é");
    }
}
