//! The entry: one application-level exchange (spec `entry.md`, schema 1), and its JSON form.
//!
//! Everything here is owned: entries leave the dissector and travel to sinks, the hub and
//! clients. Text that came off the wire is stored as valid UTF-8 (lossily where it was not)
//! or as base64, so the JSON is always valid.

use crate::time::Timestamp;
use serde::ser::Serializer;
use serde::Serialize;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// The schema version of [`Entry`]'s JSON form.
pub const SCHEMA_VERSION: u32 = 1;

/// An entry's `protocol`: the name a protocol registered with (see `crate::registry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Protocol(pub &'static str);

impl Protocol {
    pub const HTTP: Protocol = Protocol("http");
    pub const GRPC: Protocol = Protocol("grpc");
    pub const DNS: Protocol = Protocol("dns");

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum HttpVersion {
    #[serde(rename = "0.9")]
    V09,
    #[serde(rename = "1.0")]
    V10,
    #[serde(rename = "1.1")]
    V11,
    #[serde(rename = "2")]
    V2,
}

impl HttpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::V09 => "0.9",
            HttpVersion::V10 => "1.0",
            HttpVersion::V11 => "1.1",
            HttpVersion::V2 => "2",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureSource {
    File,
    Libpcap,
    Ebpf,
    /// TLS plaintext read through uprobes on the TLS library (`"ebpf_tls"`).
    #[serde(rename = "ebpf_tls")]
    EbpfTls,
}

/// Why an exchange was not seen whole. Serialized as snake_case strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Anomaly {
    /// Bytes of the exchange were never captured (a hole in the TCP stream).
    Gap,
    /// The capture or connection ended before the message did.
    Truncated,
    /// A response whose request was not seen.
    UnpairedResponse,
    /// A request whose response was not seen.
    NoResponse,
    /// A second response to a request that already had one.
    DuplicateResponse,
    /// A header block referred to HPACK state never seen (the capture joined the connection
    /// mid-way); the fields that could be decoded are kept, the others listed as unresolved.
    HpackDesync,
    /// The message broke its protocol's rules; what could be read is kept.
    Malformed,
    /// A body whose content-encoding could not be decoded; kept as sent.
    BodyDecodeError,
    /// A cap from `Limits` cut something short.
    LimitReached,
    /// The HTTP/2 stream was reset (RST_STREAM); the error code is the `h2_*` anomaly beside it.
    RstStream,
    /// The connection was shut down (GOAWAY) with an error, or before this stream was processed.
    Goaway,
    /// HTTP/2 error codes (RFC 9113 §7) carried by RST_STREAM or GOAWAY.
    H2ProtocolError,
    H2InternalError,
    H2FlowControlError,
    H2SettingsTimeout,
    H2StreamClosed,
    H2FrameSizeError,
    H2RefusedStream,
    H2Cancel,
    H2CompressionError,
    H2ConnectError,
    H2EnhanceYourCalm,
    H2InadequateSecurity,
    H2Http11Required,
    H2UnknownError,
}

impl Anomaly {
    /// The anomaly for an HTTP/2 error code; `None` for NO_ERROR.
    pub fn h2_error(code: u32) -> Option<Anomaly> {
        Some(match code {
            0 => return None,
            1 => Anomaly::H2ProtocolError,
            2 => Anomaly::H2InternalError,
            3 => Anomaly::H2FlowControlError,
            4 => Anomaly::H2SettingsTimeout,
            5 => Anomaly::H2StreamClosed,
            6 => Anomaly::H2FrameSizeError,
            7 => Anomaly::H2RefusedStream,
            8 => Anomaly::H2Cancel,
            9 => Anomaly::H2CompressionError,
            10 => Anomaly::H2ConnectError,
            11 => Anomaly::H2EnhanceYourCalm,
            12 => Anomaly::H2InadequateSecurity,
            13 => Anomaly::H2Http11Required,
            _ => Anomaly::H2UnknownError,
        })
    }
}

/// One side of an exchange. Identity fields are filled by the identity stage (issue 5).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub name: String,
    pub namespace: Option<String>,
    /// Boxed (here and the request and response in `Entry`): entries are moved several
    /// times on their way out, and a kilobyte-sized entry made those moves a tenth of
    /// the dissector's time.
    pub pod: Option<Box<serde_json::Value>>,
    pub service: Option<Box<serde_json::Value>>,
}

impl Endpoint {
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Endpoint { ip, port, name: ip_text(ip), namespace: None, pod: None, service: None }
    }
}

/// An address as text, as `Display` writes it; IPv4 (nearly every endpoint) without the
/// formatting machinery, which showed in profiles of the worker.
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(a) = ip else { return ip.to_string() };
    let mut s = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push((b'0' + o / 100) as char);
        }
        if o >= 10 {
            s.push((b'0' + o / 10 % 10) as char);
        }
        s.push((b'0' + o % 10) as char);
    }
    s
}

/// Lower-case header names to values, in first-seen order; repeats joined with `", "`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// Like [`Self::append`], taking the strings it is given.
    pub fn append_owned(&mut self, mut name: String, value: String) {
        if let Some((_, v)) = self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            v.push_str(", ");
            v.push_str(&value);
        } else {
            name.make_ascii_lowercase();
            self.0.push((name, value));
        }
    }

    pub fn append(&mut self, name: &str, value: &str) {
        if let Some((_, v)) = self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            v.push_str(", ");
            v.push_str(value);
        } else {
            self.0.push((name.to_ascii_lowercase(), value.to_string()));
        }
    }

    /// The value of a header, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::json::serialize_pairs(&self.0, s)
    }
}

/// A message body: sizes, type, and the content as text or base64, up to `Limits::max_body`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Body {
    /// Bytes after de-chunking, before content decoding.
    pub size: u64,
    pub mime: Option<String>,
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::json::serialize_text")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    pub truncated: bool,
}

/// HTTP/2 facts about a request: which stream, and what HPACK could not resolve.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct H2Info {
    pub stream_id: u32,
    /// The stream was promised by the server (PUSH_PROMISE) on this stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promised_on: Option<u32>,
}

/// A header field whose name (or whole field) referred to an HPACK dynamic table entry
/// never seen; `value` is there when only the name was missing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnresolvedHeader {
    pub index: usize,
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query_string: String,
    pub url: String,
    pub host: Option<String>,
    pub headers: Headers,
    #[serde(skip_serializing_if = "Headers::is_empty")]
    pub trailers: Headers,
    pub body: Body,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2: Option<H2Info>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_headers: Vec<UnresolvedHeader>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpResponse {
    pub status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub headers: Headers,
    #[serde(skip_serializing_if = "Headers::is_empty")]
    pub trailers: Headers,
    pub body: Body,
    /// Interim (1xx) statuses that came before this final one, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub informational: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_headers: Vec<UnresolvedHeader>,
}

/// One gRPC message of a call.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GrpcMessage {
    /// The length its prefix declared (compressed size when compressed).
    pub size: u32,
    pub compressed: bool,
    /// Typed JSON (protobuf field names), when a schema knows the method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// The full name of the type `json` was decoded as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// The schema-less wire view (see `grpc::protobuf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<serde_json::Value>,
    /// The bytes, when they are neither (not protobuf, cut short, not decompressible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    pub truncated: bool,
    /// Why the message is shown less decoded than it might be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrpcRequest {
    /// `/package.Service/Method`
    pub path: String,
    pub service: String,
    pub method: String,
    /// `:authority`
    pub host: Option<String>,
    pub headers: Headers,
    pub messages: Vec<GrpcMessage>,
    /// Messages seen but not kept (over `Limits::max_grpc_messages`).
    #[serde(skip_serializing_if = "is_zero")]
    pub messages_dropped: u64,
    pub http2: H2Info,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_headers: Vec<UnresolvedHeader>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrpcResponse {
    /// The HTTP `:status`.
    pub status_code: u16,
    /// From the trailers, or from the headers of a trailers-only response.
    pub grpc_status: Option<i32>,
    /// Percent-decoded.
    pub grpc_message: Option<String>,
    pub headers: Headers,
    pub trailers: Headers,
    pub messages: Vec<GrpcMessage>,
    #[serde(skip_serializing_if = "is_zero")]
    pub messages_dropped: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_headers: Vec<UnresolvedHeader>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Text from a fixed vocabulary (record types, classes, codes): borrowed, so the many
/// DNS entries of a busy node do not each allocate it; owned for the rare value outside.
pub type Text = Cow<'static, str>;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsQuestion {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: Text,
    pub class: Text,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: Text,
    pub ttl: u32,
    pub data: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsRequest {
    pub id: u16,
    pub opcode: Text,
    pub questions: Vec<DnsQuestion>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsResponse {
    pub id: u16,
    pub opcode: Text,
    pub rcode: Text,
    pub truncated: bool,
    pub authoritative: bool,
    pub questions: Vec<DnsQuestion>,
    pub answers: Vec<DnsRecord>,
    pub authorities: Vec<DnsRecord>,
    pub additionals: Vec<DnsRecord>,
}

// an entry holds one request: the size difference between variants costs nothing
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Request {
    Http(HttpRequest),
    Grpc(GrpcRequest),
    Dns(DnsRequest),
    /// Any other protocol's: its fields as its section of `spec/entry.md` names them,
    /// `method` and `target` always.
    Fields(Fields),
}

#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Http(HttpResponse),
    Grpc(GrpcResponse),
    Dns(DnsResponse),
    /// Any other protocol's: `status` (the short text the tables show) and `error` (null,
    /// or what went wrong) always, then the protocol's own fields.
    Fields(Fields),
}

/// The fields of a request or response of a protocol outside schema 1, in order.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// One exchange: see the module docs and spec `entry.md`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub id: String,
    pub timestamp: Timestamp,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_version: Option<HttpVersion>,
    pub transport: Transport,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub request: Option<Box<Request>>,
    pub response: Option<Box<Response>>,
    pub elapsed_time: Option<u64>,
    pub request_size: u64,
    pub response_size: u64,
    pub node: Arc<str>,
    pub capture_source: CaptureSource,
    pub conn_id: String,
    pub anomalies: Vec<Anomaly>,
    /// Set by a worker when the pod at the other end lives on another node, whose worker
    /// sees the same exchange: the hub joins the two observations into one entry and
    /// removes this field (see kshark-hub's `join`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<Box<Join>>,
    /// Read as plaintext from the TLS library (`capture_source: "ebpf_tls"`): which one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<TlsInfo>>,
}

/// The TLS library an entry's plaintext was read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// `"openssl"`
    pub library: String,
    /// As its file names it (`"3"` for libssl.so.3).
    pub version: String,
}

/// Which of two observations of one exchange an entry is, and how the hub finds the other.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Join {
    /// `"client"`: taken at the client's pod; `"server"`: at the answering pod's.
    pub side: &'static str,
    /// The node whose worker should have the other observation.
    pub peer: String,
    /// The same on both sides: transport, the client's address, the answering pod's
    /// address (after any NAT), and the HTTP/2 stream or DNS id when there is one.
    pub key: String,
}

impl Entry {
    pub fn http_request(&self) -> Option<&HttpRequest> {
        match self.request.as_deref() {
            Some(Request::Http(r)) => Some(r),
            _ => None,
        }
    }

    pub fn http_response(&self) -> Option<&HttpResponse> {
        match self.response.as_deref() {
            Some(Response::Http(r)) => Some(r),
            _ => None,
        }
    }

    pub fn grpc_request(&self) -> Option<&GrpcRequest> {
        match self.request.as_deref() {
            Some(Request::Grpc(r)) => Some(r),
            _ => None,
        }
    }

    pub fn grpc_response(&self) -> Option<&GrpcResponse> {
        match self.response.as_deref() {
            Some(Response::Grpc(r)) => Some(r),
            _ => None,
        }
    }

    pub fn dns_request(&self) -> Option<&DnsRequest> {
        match self.request.as_deref() {
            Some(Request::Dns(r)) => Some(r),
            _ => None,
        }
    }

    pub fn dns_response(&self) -> Option<&DnsResponse> {
        match self.response.as_deref() {
            Some(Response::Dns(r)) => Some(r),
            _ => None,
        }
    }

    pub fn add_anomaly(&mut self, a: Anomaly) {
        if !self.anomalies.contains(&a) {
            self.anomalies.push(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_join_repeats_and_lowercase() {
        let mut h = Headers::default();
        h.append("Set-Cookie", "a=1");
        h.append("set-cookie", "b=2");
        h.append("Host", "x");
        assert_eq!(h.get("SET-COOKIE"), Some("a=1, b=2"));
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"set-cookie":"a=1, b=2","host":"x"}"#);
    }

    #[test]
    fn ip_text_is_display() {
        for a in [[0, 0, 0, 0], [255, 255, 255, 255], [10, 0, 9, 100], [192, 168, 1, 20], [1, 99, 100, 101]] {
            let ip = IpAddr::from(a);
            assert_eq!(ip_text(ip), ip.to_string());
        }
        let v6: IpAddr = "fd00::1:2".parse().unwrap();
        assert_eq!(ip_text(v6), v6.to_string());
        let mut id = String::new();
        crate::stream::push_hex(&mut id, 0x1234_abcd, 12);
        assert_eq!(id, format!("{:012x}", 0x1234_abcdu64));
    }
}
