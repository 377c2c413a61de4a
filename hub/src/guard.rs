//! Who may talk to the hub, checked before any handler runs.
//!
//! - **Same origin only.** A browser sends `Origin` with every WebSocket upgrade and
//!   every cross-origin request, and (Chromium, Firefox, Safari) `Sec-Fetch-Site` with
//!   every request. A request whose `Origin` is not the hub's own (the scheme and the
//!   `Host` it was reached by), or that another site made (`Sec-Fetch-Site: cross-site`
//!   or `same-site`), is refused (403), so a web page the user has open cannot read the
//!   hub's entries, nor make it compile filters, even on loopback. Top-level navigation
//!   to the dashboard's page itself (a link) is let through: the page holds no data.
//! - **DNS rebinding.** `Host` must be a loopback name (`localhost`) or address, the
//!   address the hub listens on (any address, when it listens on all: rebinding needs a
//!   name), or a name given with `--allowed-host` (port-forwards, ingresses). Anything
//!   else gets 421: a name that an attacker's DNS points at 127.0.0.1 reaches nothing.
//! - **Two credentials.** Workers present the worker token (`Authorization: Bearer`);
//!   readers, when the hub listens beyond loopback, the reader token, in the same header
//!   or in the cookie that `POST /api/session` sets for the dashboard (HttpOnly,
//!   SameSite=Strict): never in a URL. Neither token stands for the other.
//! - **Headers.** Every response says `nosniff`, no framing, no referrer, same-origin
//!   resources only, and (API responses) a CSP that allows nothing and `no-store`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// How the API is reached and guarded.
#[derive(Clone, Debug)]
pub struct Access {
    /// What workers present.
    pub worker_token: Arc<str>,
    /// What readers present when `readers_need_token`.
    pub reader_token: Arc<str>,
    pub readers_need_token: bool,
    /// Names `Host` may carry besides loopback ones and the listen address (`*.example`
    /// for a domain's names).
    pub allowed_hosts: Arc<[String]>,
    pub listen: SocketAddr,
    /// Served over TLS (cookies are then `Secure`).
    pub tls: bool,
}

impl Access {
    /// A hub on loopback that only this process feeds (`tap`'s in-process hub).
    pub fn loopback(listen: SocketAddr, worker_token: &str, reader_token: &str) -> Access {
        Access { worker_token: Arc::from(worker_token), reader_token: Arc::from(reader_token), readers_need_token: !listen.ip().is_loopback(), allowed_hosts: Arc::from(Vec::new()), listen, tls: false }
    }

    /// Whether `host` (a `Host` header's value) names this hub.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.listen.ip() || self.listen.ip().is_unspecified();
        }
        self.allowed_hosts.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            match a.strip_prefix("*.") {
                Some(domain) => name.len() > domain.len() + 1 && name.ends_with(&format!(".{domain}")),
                None => name == a,
            }
        })
    }

    /// Whether a request with these headers, for `path`, may go on: `Err` is the status
    /// and the one-line reason.
    pub fn check_site(&self, headers: &HeaderMap, path: &str) -> Result<(), (StatusCode, String)> {
        let host = headers.get(header::HOST).map(|h| h.to_str().unwrap_or("\u{fffd}"));
        if let Some(h) = host {
            if !self.host_allowed(h) {
                return Err((
                    StatusCode::MISDIRECTED_REQUEST,
                    format!("Host {h:?} is not a name of this hub: it answers loopback names and addresses, the address it listens on, and names given with --allowed-host"),
                ));
            }
        }
        if let Some(o) = headers.get(header::ORIGIN) {
            let o = o.to_str().unwrap_or("\u{fffd}");
            let scheme_ok = |rest: &str| host.is_some_and(|h| rest.eq_ignore_ascii_case(h));
            let same = match (o.strip_prefix("http://"), o.strip_prefix("https://")) {
                (Some(rest), _) | (_, Some(rest)) => scheme_ok(rest),
                _ => false,
            };
            if !same {
                return Err((StatusCode::FORBIDDEN, format!("Origin {o:?} is not this hub's own: only the hub's own dashboard may call its API from a browser")));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("");
            let page = headers.get("sec-fetch-mode").is_some_and(|m| m == "navigate") && !path.starts_with("/api/") && path != "/metrics";
            if !(site == "same-origin" || site == "none" || page) {
                return Err((StatusCode::FORBIDDEN, format!("a request made by another site (Sec-Fetch-Site: {site}): only the hub's own dashboard may call its API from a browser")));
            }
        }
        Ok(())
    }

    /// The cookie the dashboard's session is kept in: named by the port, as cookies are
    /// shared by every port of a host.
    pub fn cookie_name(&self) -> String {
        format!("kshark_reader_{}", self.listen.port())
    }

    /// Whether these headers carry the reader token (header or cookie).
    pub fn reader_ok(&self, headers: &HeaderMap) -> bool {
        if !self.readers_need_token {
            return true;
        }
        if bearer(headers).is_some_and(|t| same(t, &self.reader_token)) {
            return true;
        }
        let name = self.cookie_name();
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).filter_map(|c| c.trim().split_once('=')).any(|(k, v)| k == name && same(v, &self.reader_token))
    }

    /// Whether these headers carry the worker token.
    pub fn worker_ok(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| same(t, &self.worker_token))
    }

    /// `Set-Cookie` for a dashboard that gave the reader token.
    pub fn session_cookie(&self) -> Option<HeaderValue> {
        let secure = if self.tls { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{}={}; Path=/; HttpOnly; SameSite=Strict{secure}", self.cookie_name(), self.reader_token)).ok()
    }
}

/// The name in a `Host` value, without its port.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim)
}

/// Compares without stopping at the first difference.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Headers every response gets; the dashboard's own (its CSP, its caching) stand.
pub fn secure(h: &mut HeaderMap) {
    let mut set = |k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    set(header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'");
    set(header::CACHE_CONTROL, "no-store");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(listen: &str, allowed: &[&str]) -> Access {
        Access { allowed_hosts: allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>().into(), ..Access::loopback(listen.parse().unwrap(), "w", "r") }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_loopback_the_listen_address_or_allowed_names() {
        let a = access("127.0.0.1:8899", &["kshark.example.com", "*.corp"]);
        for ok in ["127.0.0.1:8899", "localhost:8899", "LOCALHOST", "app.localhost:1", "[::1]:8899", "127.1.2.3", "kshark.example.com:443", "hub.corp"] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example:8899", "evil.example", "10.0.0.5:8899", "example.com", "corp", "xcorp", "127.0.0.1.evil.example", "localhost.evil.example"] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
        let any = access("0.0.0.0:8899", &[]);
        assert!(any.host_allowed("10.0.0.5:8899") && !any.host_allowed("evil.example:8899"));
    }

    #[test]
    fn origins_and_sites_other_than_the_hubs_own_are_refused() {
        let a = access("127.0.0.1:8899", &[]);
        let ok = |h: &HeaderMap, p: &str| a.check_site(h, p).is_ok();
        assert!(ok(&headers(&[("host", "127.0.0.1:8899")]), "/api/entries"));
        assert!(ok(&headers(&[("host", "127.0.0.1:8899"), ("origin", "http://127.0.0.1:8899"), ("sec-fetch-site", "same-origin")]), "/api/stream"));
        assert!(!ok(&headers(&[("host", "127.0.0.1:8899"), ("origin", "http://evil.example")]), "/api/stream"));
        assert!(!ok(&headers(&[("host", "127.0.0.1:8899"), ("origin", "null")]), "/api/stream"));
        assert!(!ok(&headers(&[("host", "127.0.0.1:8899"), ("origin", "http://127.0.0.1:8898")]), "/api/stream"));
        // a no-cors GET carries no Origin, but says where it comes from
        assert!(!ok(&headers(&[("host", "127.0.0.1:8899"), ("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "no-cors")]), "/api/check"));
        assert!(!ok(&headers(&[("host", "127.0.0.1:8899"), ("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")]), "/api/entries"));
        // a link to the dashboard from elsewhere opens it
        assert!(ok(&headers(&[("host", "127.0.0.1:8899"), ("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")]), "/"));
        let (status, why) = a.check_site(&headers(&[("host", "evil.example:8899")]), "/api/entries").unwrap_err();
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert!(why.contains("--allowed-host"), "{why}");
    }

    #[test]
    fn reader_and_worker_tokens_are_separate() {
        let mut a = access("0.0.0.0:8899", &[]);
        assert!(a.readers_need_token);
        a.reader_token = Arc::from("reader");
        a.worker_token = Arc::from("worker");
        assert!(a.reader_ok(&headers(&[("authorization", "Bearer reader")])));
        assert!(!a.reader_ok(&headers(&[("authorization", "Bearer worker")])));
        assert!(!a.worker_ok(&headers(&[("authorization", "Bearer reader")])));
        assert!(a.worker_ok(&headers(&[("authorization", "Bearer worker")])));
        assert!(a.reader_ok(&headers(&[("cookie", "x=1; kshark_reader_8899=reader")])));
        assert!(!a.reader_ok(&headers(&[("cookie", "kshark_reader_8898=reader")])));
        let c = a.session_cookie().unwrap();
        assert!(c.to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
    }
}
