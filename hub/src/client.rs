//! The client side of the hub's API, for workers, `kshark observe` and the terminal UI:
//! a WebSocket to the hub over `ws://` or `wss://` (rustls; `--ca-file` for a hub with its
//! own CA, else the system's roots), with the token when there is one. A hub's refusal
//! comes back as its own one-line message.

use crate::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;
pub use tokio_tungstenite::tungstenite::Message;

/// Where a hub is and how to talk to it.
#[derive(Clone, Debug)]
pub struct HubAddr {
    /// `ws://host:port` or `wss://host:port`.
    base: String,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
}

impl HubAddr {
    /// From `http://`, `https://`, `ws://`, `wss://` or a bare `host:port`.
    pub fn parse(url: &str, token: Option<String>, ca_file: Option<PathBuf>) -> Result<HubAddr, Error> {
        let u = url.trim().trim_end_matches('/');
        let base = if let Some(r) = u.strip_prefix("http://") {
            format!("ws://{r}")
        } else if let Some(r) = u.strip_prefix("https://") {
            format!("wss://{r}")
        } else if u.starts_with("ws://") || u.starts_with("wss://") {
            u.to_string()
        } else if !u.contains("://") && !u.is_empty() {
            format!("ws://{u}")
        } else {
            return Err(Error::Serve(format!("hub URL {url:?}: use http://HOST:PORT or https://HOST:PORT")));
        };
        Ok(HubAddr { base, token, ca_file })
    }

    pub fn display(&self) -> String {
        self.base.replacen("ws", "http", 1)
    }

    /// Opens `path` (with its query) as a WebSocket.
    pub async fn websocket(&self, path: &str) -> Result<Socket, Error> {
        self.websocket_reading(path, 128 * 1024).await
    }

    /// The same, reading at most `read_buffer` bytes at a time (what comes back is small).
    pub async fn websocket_reading(&self, path: &str, read_buffer: usize) -> Result<Socket, Error> {
        let url = format!("{}{path}", self.base);
        let mut req = url.as_str().into_client_request().map_err(|e| Error::Serve(format!("{url}: {e}")))?;
        if let Some(t) = &self.token {
            let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| Error::Serve("the token holds characters a header cannot".into()))?;
            req.headers_mut().insert("authorization", v);
        }
        let connector = if self.base.starts_with("wss://") { Some(Connector::Rustls(Arc::new(tls_config(self.ca_file.as_deref())?))) } else { None };
        let (sock, _) = tokio_tungstenite::connect_async_tls_with_config(req, Some(ws_config().read_buffer_size(read_buffer)), true, connector).await.map_err(|e| refusal(&self.display(), e))?;
        Ok(sock)
    }
}

impl HubAddr {
    /// `GET path` (with its query): the status and the body. The hub's plain API
    /// (`/api/stats`, `/api/servicemap`, `/api/entries`), over HTTP/1.1 (hyper's client)
    /// on TCP or rustls.
    pub async fn get(&self, path: &str) -> Result<(u16, String), Error> {
        let tls = self.base.starts_with("wss://");
        let authority = self.base.split_once("://").map_or("", |(_, a)| a).to_string();
        let hub = self.display();
        let fail = |e: &dyn std::fmt::Display| Error::Serve(format!("{hub}: {e}"));
        let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|e| fail(&e))?;
        let mut req = hyper::Request::get(path).header("host", &authority).header("connection", "close");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| fail(&e))?;
        let out = if tls {
            let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h).trim_start_matches('[').trim_end_matches(']').to_string();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host).map_err(|e| fail(&e))?;
            let conn = tokio_rustls::TlsConnector::from(Arc::new(tls_config(self.ca_file.as_deref())?));
            let stream = conn.connect(name, tcp).await.map_err(|e| fail(&e))?;
            exchange(hyper_util::rt::TokioIo::new(stream), req).await
        } else {
            exchange(hyper_util::rt::TokioIo::new(tcp), req).await
        };
        out.map_err(|e| fail(&e))
    }
}

/// One request on a fresh HTTP/1.1 connection: the status and the body.
async fn exchange<T>(io: T, req: hyper::Request<http_body_util::Empty<bytes::Bytes>>) -> Result<(u16, String), hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    let mut c = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    c.max_message_size = Some(crate::record::MAX_BATCH_BYTES);
    c.max_frame_size = Some(crate::record::MAX_BATCH_BYTES);
    c
}

/// The hub's own words when it refused (`{"error": ...}`), else the error.
fn refusal(hub: &str, e: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::Error as W;
    match e {
        W::Http(resp) => {
            let said = resp
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_string));
            Error::Refused(format!("{hub} answered {}: {}", resp.status(), said.unwrap_or_else(|| "no reason given".into())))
        }
        other => Error::Serve(format!("{hub}: {other}")),
    }
}

fn tls_config(ca: Option<&Path>) -> Result<tokio_rustls::rustls::ClientConfig, Error> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    match ca {
        Some(p) => {
            let pem = std::fs::read(p).map_err(|e| Error::Serve(format!("{}: {e}", p.display())))?;
            for c in rustls_pemfile::certs(&mut &pem[..]) {
                let c = c.map_err(|e| Error::Serve(format!("{}: {e}", p.display())))?;
                roots.add(c).map_err(|e| Error::Serve(format!("{}: {e}", p.display())))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Serve(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Reads a token file: its first line, trimmed.
pub fn read_token(path: &Path) -> Result<String, Error> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::Serve(format!("token file {}: {e}", path.display())))?;
    let t = s.lines().next().unwrap_or_default().trim().to_string();
    if t.is_empty() {
        return Err(Error::Serve(format!("token file {} is empty", path.display())));
    }
    Ok(t)
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
