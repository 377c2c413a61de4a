//! The dashboard's files (`web/`, built by `build.rs` and embedded): `/` is its page,
//! `/assets/...` its scripts and styles. Nothing is fetched from anywhere else.
//!
//! Every response carries a Content-Security-Policy that allows scripts from this origin
//! only, so that captured text that slipped past the page's escaping could still run
//! nothing; and headers that keep the page out of frames and its URLs out of referrers.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

// the one hash: cytoscape's own `<style>` (`.__________cytoscape_container { position:
// relative; }`), which it adds to the page's head
const CSP: &str = "default-src 'self'; script-src 'self'; \
                   style-src 'self' 'sha256-pgvDUBa4IjFA2yuSJ2cqcyxmNYJMborsd0ORcRv9vw8='; img-src 'self' data: blob:; \
                   connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'none'";

/// The dashboard's routes, to merge with [`crate::api::router`].
pub fn router() -> Router {
    Router::new().route("/", get(|| async { file("/index.html") })).route("/assets/{*rest}", get(|Path(rest): Path<String>| async move { file(&format!("/assets/{rest}")) }))
}

fn mime(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Response {
    let Some((_, body)) = FILES.iter().find(|(p, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut r = (StatusCode::OK, *body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(path)));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Vite names assets by their content's hash; the page itself must be asked for anew
    let cache = if path.starts_with("/assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_embedded_and_served_with_a_strict_policy() {
        let index = FILES.iter().find(|(p, _)| *p == "/index.html").expect("index.html embedded");
        let html = std::str::from_utf8(index.1).unwrap();
        // every script and style the page names is embedded (nothing from elsewhere)
        for src in html.split(['"', '\'']).filter(|s| s.starts_with("/assets/")) {
            assert!(FILES.iter().any(|(p, _)| p == &src), "{src} not embedded");
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "the page must not reach out: {html}");
        let r = file("/index.html");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(file("/assets/../../etc/passwd").status(), StatusCode::NOT_FOUND);
    }
}
