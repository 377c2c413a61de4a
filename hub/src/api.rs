//! The hub's HTTP API (`cli.md`): `/api/ingest` (workers, WebSocket, token required),
//! `/api/entries`, `/api/stream` (WebSocket), `/api/stats`, `/api/servicemap`,
//! `/api/signals` (golden signals over time), `/api/check` (does a filter compile),
//! `/metrics`. Readers need the token only when the hub listens beyond loopback.
//!
//! Ingest protocol: the worker opens `/api/ingest?worker=ID` with `Authorization: Bearer
//! TOKEN`, sends each batch ([`crate::record::encode_batch`]) as a binary message and
//! its counters as a text message `{"stats": {...}}`; the hub answers each batch, in
//! order, with `{"ack": N}` once it is committed (or was already), or `{"refused": N,
//! "error": "..."}` when it is malformed (nothing of it is stored).

use crate::filter::{parse_duration, parse_timestamp, Filter};
use crate::hub::Hub;
use crate::record::decode_batch;
use crate::store::{now_ns, Query as StoreQuery};
use crate::Error;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;


/// How the API is reached and guarded.
#[derive(Clone)]
pub struct Access {
    /// The workers' token (and the readers' when `readers_need_token`).
    pub token: Arc<str>,
    pub readers_need_token: bool,
}

#[derive(Clone)]
struct App {
    hub: Hub,
    access: Access,
}

pub fn router(hub: Hub, access: Access) -> Router {
    Router::new()
        .route("/api/ingest", get(ingest))
        .route("/api/entries", get(entries))
        .route("/api/stream", get(stream))
        .route("/api/stats", get(stats))
        .route("/api/servicemap", get(servicemap))
        .route("/api/signals", get(signals))
        .route("/api/check", get(check))
        .route("/metrics", get(metrics))
        .with_state(App { hub, access })
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn presented(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().to_string())
        .or_else(|| query_token.map(str::to_string))
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reader_denied(app: &App, headers: &HeaderMap, token: Option<&str>) -> Option<Response> {
    if !app.access.readers_need_token || presented(headers, token).is_some_and(|t| same(&t, &app.access.token)) {
        return None;
    }
    app.hub.inner.counters.refused_readers.fetch_add(1, Relaxed);
    Some(error(StatusCode::UNAUTHORIZED, json!({"error": "this hub listens beyond loopback: readers need its token (--token-file, or Authorization: Bearer)"})))
}

#[allow(clippy::result_large_err)] // an axum Response, returned as it is
fn bad_filter(src: &str) -> Result<Arc<Filter>, Response> {
    Filter::compile(src).map(Arc::new).map_err(|e| error(StatusCode::BAD_REQUEST, json!({"error": e.message, "position": e.position})))
}

/// `since`: a duration back from now (`5m`) or a time (RFC 3339), as ns.
#[allow(clippy::result_large_err)] // an axum Response, returned as it is
fn since(s: Option<&str>) -> Result<Option<i64>, Response> {
    let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok(None) };
    if let Some(d) = parse_duration(s) {
        return Ok(Some(now_ns().saturating_sub(d.min(i64::MAX as i128) as i64)));
    }
    parse_timestamp(s)
        .map(|t| Some(t.clamp(i64::MIN as i128, i64::MAX as i128) as i64))
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, json!({"error": format!("since {s:?} is neither a duration (5m) nor an RFC 3339 time")})))
}

/// What a reader's request starts with: the token where one is needed, then its filter
/// and `since`, each refused with a 4xx that says what is wrong.
#[allow(clippy::result_large_err)] // an axum Response, returned as it is
fn reader_request(app: &App, headers: &HeaderMap, token: Option<&str>, filter: Option<&str>, from: Option<&str>) -> Result<(Arc<Filter>, Option<i64>), Response> {
    if let Some(r) = reader_denied(app, headers, token) {
        return Err(r);
    }
    Ok((bad_filter(filter.unwrap_or(""))?, since(from)?))
}

#[derive(Deserialize)]
struct IngestParams {
    worker: Option<String>,
    token: Option<String>,
}

async fn ingest(ws: WebSocketUpgrade, headers: HeaderMap, Query(p): Query<IngestParams>, State(app): State<App>) -> Response {
    if !presented(&headers, p.token.as_deref()).is_some_and(|t| same(&t, &app.access.token)) {
        app.hub.inner.counters.refused_workers.fetch_add(1, Relaxed);
        return error(StatusCode::UNAUTHORIZED, json!({"error": "wrong or missing worker token: this hub takes entries only from workers with its token (--token-file)"}));
    }
    let Some(worker) = p.worker.filter(|w| !w.is_empty() && w.len() <= 256) else {
        return error(StatusCode::BAD_REQUEST, json!({"error": "say which worker this is: /api/ingest?worker=ID"}));
    };
    ws.max_message_size(crate::record::MAX_BATCH_BYTES).on_upgrade(move |sock| ingest_conn(app.hub, Arc::from(worker), sock))
}

type Decoded = tokio::task::JoinHandle<(Option<u64>, Result<crate::record::Block, Error>)>;
type Pending = tokio::sync::oneshot::Receiver<Result<crate::store::Committed, Error>>;

/// Batches a connection may have on their way to the store before it stops reading more.
const IN_FLIGHT: usize = 8;

async fn ingest_conn(hub: Hub, worker: Arc<str>, sock: WebSocket) {
    hub.worker_report(&worker, true, None);
    let (mut tx, mut rx) = sock.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(256);
    let sender = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if tx.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = tx.close().await;
    });
    // a pipeline, in order: batches are decoded on the blocking pool several at once,
    // handed to the writer without waiting for the last one's commit, and acknowledged
    // as their commits come back
    let (dec_tx, mut dec_rx) = tokio::sync::mpsc::channel::<Decoded>(IN_FLIGHT);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<(u64, Result<Pending, Value>)>(IN_FLIGHT);
    let h = hub.clone();
    let w = worker.clone();
    let out = out_tx.clone();
    let submitter = tokio::spawn(async move {
        while let Some(job) = dec_rx.recv().await {
            let Ok((number, decoded)) = job.await else { break };
            let next = match decoded {
                Ok(block) => {
                    let n = block.batch;
                    match h.submit(w.clone(), block).await {
                        Ok(pending) => (n, Ok(pending)),
                        Err(e) => (n, Err(json!({"error": e.to_string()}))),
                    }
                }
                Err(e) => {
                    h.inner.counters.malformed_batches.fetch_add(1, Relaxed);
                    eprintln!("kshark hub: worker {w}: {e}");
                    match number {
                        Some(n) => (n, Err(json!({"refused": n, "error": e.to_string()}))),
                        None => {
                            let _ = out.send(Message::Text(json!({"error": e.to_string()}).to_string().into())).await;
                            let _ = out.send(Message::Close(Some(CloseFrame { code: 1007, reason: "malformed batch".into() }))).await;
                            break;
                        }
                    }
                }
            };
            if ack_tx.send(next).await.is_err() {
                break;
            }
        }
    });
    let acker = tokio::spawn(async move {
        while let Some((n, next)) = ack_rx.recv().await {
            let reply = match next {
                Ok(pending) => match pending.await {
                    Ok(Ok(_)) => json!({"ack": n}),
                    Ok(Err(e)) => json!({"error": e.to_string()}),
                    Err(_) => json!({"error": Error::Closed.to_string()}),
                },
                Err(refusal) => refusal,
            };
            let fatal = reply.get("error").is_some() && reply.get("refused").is_none();
            if out_tx.send(Message::Text(reply.to_string().into())).await.is_err() || fatal {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Binary(b) => {
                let job = tokio::task::spawn_blocking(move || match decode_batch(b.clone()) {
                    Ok(block) => (Some(block.batch), Ok(block)),
                    Err(e) => (crate::record::batch_number(&b), Err(e)),
                });
                if dec_tx.send(job).await.is_err() {
                    break;
                }
            }
            Message::Text(t) => {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if let Some(s) = v.get("stats") {
                        hub.worker_report(&worker, true, Some(s.clone()));
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(dec_tx);
    let _ = submitter.await;
    let _ = acker.await;
    sender.abort();
    hub.worker_report(&worker, false, None);
}

#[derive(Deserialize)]
struct EntriesParams {
    filter: Option<String>,
    limit: Option<usize>,
    since: Option<String>,
    token: Option<String>,
    /// `json` (default), `ndjson` (also by `Accept: application/x-ndjson`) or `har`.
    format: Option<String>,
    /// Any value: served as a file to save (the dashboard's export buttons).
    download: Option<String>,
}

async fn entries(headers: HeaderMap, Query(p): Query<EntriesParams>, State(app): State<App>) -> Response {
    let (filter, since) = match reader_request(&app, &headers, p.token.as_deref(), p.filter.as_deref(), p.since.as_deref()) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let limit = p.limit.unwrap_or(1000).min(1_000_000);
    let hub = app.hub.clone();
    let found = tokio::task::spawn_blocking(move || hub.query(&StoreQuery { filter: &filter, since, limit, now: now_ns() as i128 })).await;
    let rows = match found {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e.to_string()})),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "the query failed"})),
    };
    let accept_ndjson = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("application/x-ndjson"));
    let format = p.format.as_deref().unwrap_or(if accept_ndjson { "ndjson" } else { "json" });
    let (mime, ext, body) = match format {
        "ndjson" => {
            let mut body = String::with_capacity(rows.iter().map(|r| r.1.len() + 1).sum::<usize>());
            for (_, r) in &rows {
                body.push_str(r);
                body.push('\n');
            }
            ("application/x-ndjson", "ndjson", body)
        }
        "json" => {
            let mut body = String::with_capacity(rows.iter().map(|r| r.1.len() + 1).sum::<usize>() + 2);
            body.push('[');
            for (i, (_, r)) in rows.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(r);
            }
            body.push(']');
            ("application/json", "json", body)
        }
        "har" => match har(&rows) {
            Ok(body) => ("application/json", "har", body),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": format!("HAR export failed: {e}")})),
        },
        other => return error(StatusCode::BAD_REQUEST, json!({"error": format!("format {other:?} is not one of json, ndjson, har")})),
    };
    let mut r = ([(header::CONTENT_TYPE, mime)], body).into_response();
    if p.download.is_some() {
        let name = format!("attachment; filename=\"kshark-{}.{ext}\"", now_ns() / 1_000_000_000);
        if let Ok(v) = header::HeaderValue::from_str(&name) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

/// HAR 1.2 of the HTTP entries among `rows` (the others have no HAR form).
fn har(rows: &[(i64, String)]) -> std::io::Result<String> {
    let mut w = kshark_dissect::export::har::HarWriter::new(Vec::new())?;
    for (_, r) in rows {
        if let Ok(v) = serde_json::from_str::<Value>(r) {
            w.add_value(&v)?;
        }
    }
    Ok(String::from_utf8_lossy(&w.finish()?).into_owned())
}

#[derive(Deserialize)]
struct StreamParams {
    filter: Option<String>,
    /// Stored entries to send first (the newest N matching).
    last: Option<usize>,
    since: Option<String>,
    /// `false`: send the stored ones and close.
    follow: Option<bool>,
    token: Option<String>,
}

async fn stream(ws: WebSocketUpgrade, headers: HeaderMap, Query(p): Query<StreamParams>, State(app): State<App>) -> Response {
    let (filter, since) = match reader_request(&app, &headers, p.token.as_deref(), p.filter.as_deref(), p.since.as_deref()) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let stored = if since.is_some() { Some(p.last.unwrap_or(1_000_000)) } else { p.last.filter(|n| *n > 0) };
    let follow = p.follow.unwrap_or(true);
    ws.on_upgrade(move |sock| stream_conn(app.hub, sock, filter, stored, since, follow))
}

async fn stream_conn(hub: Hub, mut sock: WebSocket, filter: Arc<Filter>, stored: Option<usize>, since: Option<i64>, follow: bool) {
    // subscribe before reading the store, then skip what the store already gave: nothing
    // falls between the two, nothing comes twice
    let mut sub = follow.then(|| hub.subscribe(filter.clone()));
    let mut high = i64::MIN;
    if let Some(limit) = stored {
        let h = hub.clone();
        let f = filter.clone();
        let rows = tokio::task::spawn_blocking(move || h.query(&StoreQuery { filter: &f, since, limit, now: now_ns() as i128 })).await;
        match rows {
            Ok(Ok(rows)) => {
                for (seq, r) in rows {
                    high = high.max(seq);
                    if sock.send(Message::Text(r.into())).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Err(e)) => {
                let _ = sock.send(Message::Close(Some(CloseFrame { code: 1011, reason: e.to_string().chars().take(120).collect::<String>().into() }))).await;
                return;
            }
            Err(_) => return,
        }
    }
    let Some(sub) = sub.as_mut() else {
        let _ = sock.send(Message::Close(Some(CloseFrame { code: 1000, reason: "end of stored entries".into() }))).await;
        return;
    };
    loop {
        tokio::select! {
            live = sub.rx.recv() => match live {
                Some(l) => {
                    // what else is waiting goes out with it, in one flush
                    let mut next = Some(l);
                    let mut sent = 0;
                    while let Some(l) = next.take() {
                        if l.seq > high {
                            let Ok(text) = axum::extract::ws::Utf8Bytes::try_from(l.full()) else { continue };
                            if sock.feed(Message::Text(text)).await.is_err() {
                                return;
                            }
                        }
                        sent += 1;
                        if sent < 1024 {
                            next = sub.rx.try_recv().ok();
                        }
                    }
                    if sock.flush().await.is_err() {
                        return;
                    }
                }
                None => {
                    let reason = if sub.was_cut() { "too slow: the hub cut this stream loose (its queue was full)" } else { "the hub is shutting down" };
                    let _ = sock.send(Message::Close(Some(CloseFrame { code: 1008, reason: reason.into() }))).await;
                    return;
                }
            },
            msg = sock.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

#[derive(Deserialize)]
struct ReaderParams {
    token: Option<String>,
    window: Option<String>,
    source: Option<String>,
    destination: Option<String>,
}

async fn stats(headers: HeaderMap, Query(p): Query<ReaderParams>, State(app): State<App>) -> Response {
    if let Some(r) = reader_denied(&app, &headers, p.token.as_deref()) {
        return r;
    }
    axum::Json(app.hub.stats()).into_response()
}

async fn servicemap(headers: HeaderMap, Query(p): Query<ReaderParams>, State(app): State<App>) -> Response {
    over_window(&app, &headers, &p, |m, window, now| m.service_map(window, now))
}

/// A reader's view of the metrics over its `window`, once the token (where needed) and the
/// window are checked.
fn over_window(app: &App, headers: &HeaderMap, p: &ReaderParams, view: impl FnOnce(&crate::metrics::Metrics, i64, i64) -> Value) -> Response {
    if let Some(r) = reader_denied(app, headers, p.token.as_deref()) {
        return r;
    }
    let window = match p.window.as_deref() {
        None => 300_000_000_000,
        Some(w) => match parse_duration(w) {
            Some(d) if d > 0 => d.min(i64::MAX as i128) as i64,
            _ => return error(StatusCode::BAD_REQUEST, json!({"error": format!("window {w:?} is not a duration (5m)")})),
        },
    };
    let v = app.hub.inner.metrics.lock().map(|m| view(&m, window, now_ns())).unwrap_or_default();
    axum::Json(v).into_response()
}

#[derive(Deserialize)]
struct CheckParams {
    filter: Option<String>,
    token: Option<String>,
}

/// Whether a filter compiles, answered (200) as `{"ok": true}` or `{"ok": false, "error",
/// "position"}`: for checking as the user types, where a bad filter is no failed request.
async fn check(headers: HeaderMap, Query(p): Query<CheckParams>, State(app): State<App>) -> Response {
    if let Some(r) = reader_denied(&app, &headers, p.token.as_deref()) {
        return r;
    }
    match Filter::compile(p.filter.as_deref().unwrap_or("")) {
        Ok(_) => axum::Json(json!({"ok": true})).into_response(),
        Err(e) => axum::Json(json!({"ok": false, "error": e.message, "position": e.position})).into_response(),
    }
}

/// Golden signals over time (`window=15m`, optionally `source=ID` and/or
/// `destination=ID`, workload ids as the service map names them).
async fn signals(headers: HeaderMap, Query(p): Query<ReaderParams>, State(app): State<App>) -> Response {
    over_window(&app, &headers, &p, |m, window, now| m.signals(window, now, p.source.as_deref(), p.destination.as_deref()))
}

async fn metrics(headers: HeaderMap, Query(p): Query<ReaderParams>, State(app): State<App>) -> Response {
    if let Some(r) = reader_denied(&app, &headers, p.token.as_deref()) {
        return r;
    }
    let s = app.hub.stats();
    let mut out = String::new();
    use std::fmt::Write;
    out.push_str("# HELP kshark_hub_events_total Hub counters (batches, entries stored, refusals, subscribers cut, retention deletes).\n# TYPE kshark_hub_events_total counter\n");
    if let Some(h) = s["hub"].as_object() {
        for (k, v) in h {
            if k != "subscribers" && k != "store_bytes" {
                let _ = writeln!(out, "kshark_hub_events_total{{event=\"{k}\"}} {}", v.as_u64().unwrap_or(0));
            }
        }
    }
    let _ = writeln!(out, "# TYPE kshark_hub_subscribers gauge\nkshark_hub_subscribers {}", s["hub"]["subscribers"]);
    let _ = writeln!(out, "# TYPE kshark_hub_store_bytes gauge\nkshark_hub_store_bytes {}", s["hub"]["store_bytes"]);
    out.push_str("# HELP kshark_worker_counter Each worker's counters (packets, drops at every stage, entries).\n# TYPE kshark_worker_counter counter\n");
    if let Some(ws) = s["workers"].as_object() {
        for (w, info) in ws {
            if let Some(st) = info["stats"].as_object() {
                for (k, v) in st.iter().filter(|(_, v)| v.is_u64()) {
                    let _ = writeln!(out, "kshark_worker_counter{{worker=\"{}\",counter=\"{}\"}} {v}", crate::metrics::esc(w), crate::metrics::esc(k));
                }
            }
        }
    }
    if let Ok(m) = app.hub.inner.metrics.lock() {
        m.prometheus(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// TLS for the listener: a certificate chain and its key, PEM files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::Serve(format!("{}: {e}", p.display())));
    let certs = rustls_pemfile::certs(&mut &read(cert)?[..]).collect::<Result<Vec<_>, _>>().map_err(|e| Error::Serve(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Serve(format!("{}: no certificate in it", cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|e| Error::Serve(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Serve(format!("{}: no private key in it", key.display())))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Serve(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Serve(format!("{}: {e}", cert.display())))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, tls: Option<tokio_rustls::TlsAcceptor>, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let Some(tls) = tls else {
        return axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await.map_err(|e| Error::Serve(e.to_string()));
    };
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let tls = tls.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
