//! The hub's HTTP API (`cli.md`): `/api/ingest` (workers, WebSocket, worker token),
//! `/api/entries`, `/api/stream` (WebSocket), `/api/stats`, `/api/servicemap`,
//! `/api/signals` (golden signals over time), `/api/check` (does a filter compile),
//! `/api/session` (the dashboard gives the reader token once, and gets a cookie),
//! `/metrics`. Readers need the reader token only when the hub listens beyond loopback;
//! every request passes [`crate::guard`] first (same origin, allowed hosts).
//!
//! Every reader path has a budget: filters are compiled off the request threads, two at
//! a time, within [`COMPILE_TIME`], under the filter's own cost limits; queries stream
//! their answer as they read it, and stop when their client leaves, after
//! [`QUERY_TIME`], or when the hub stops; live subscribers are cut by the bytes they hold.
//!
//! Ingest protocol: the worker opens `/api/ingest?worker=ID` with `Authorization: Bearer
//! TOKEN`, sends each batch ([`crate::record::encode_batch`], at most
//! [`crate::record::MAX_MESSAGE`] bytes) as a binary message and its counters as a text
//! message `{"stats": {...}}` (at most [`MAX_STATS`] bytes); the hub answers each batch, in
//! order, with `{"ack": N}` once it is committed (or was already), or `{"refused": N,
//! "error": "..."}` when it is malformed or its number is far beyond the worker's last
//! (nothing of it is stored). A message over the limit closes the connection (1009),
//! counted and said on both sides. One connection per worker id at a time. Decoding is
//! bounded: two batches at a time per connection, and all batches in memory, hub-wide,
//! within [`crate::hub::DECODE_BUDGET`].

use crate::filter::{parse_duration, parse_timestamp, Filter};
pub use crate::guard::Access;
use crate::hub::Hub;
use crate::record::{decode_numbered, MAX_MESSAGE};
use crate::store::{now_ns, Committed, Query as StoreQuery};
use crate::Error;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::serve::{serve, ServeLimits};

/// How long a filter may take to compile.
pub const COMPILE_TIME: Duration = Duration::from_secs(2);
/// How long a query of the store may run.
pub const QUERY_TIME: Duration = Duration::from_secs(120);
/// The largest counters message a worker may send.
pub const MAX_STATS: usize = 64 << 10;
/// Batches a connection may have on their way to the store before it stops reading more.
const IN_FLIGHT: usize = 4;
/// Batches of one connection decoded at once.
const DECODES: usize = 2;

#[derive(Clone)]
struct App {
    hub: Hub,
    access: Access,
    /// Filters compiled at once (each on the blocking pool).
    compiles: Arc<tokio::sync::Semaphore>,
}

/// The API, and with `web` the dashboard, behind [`crate::guard`].
pub fn router(hub: Hub, access: Access, web: bool) -> Router {
    let app = App { hub, access, compiles: Arc::new(tokio::sync::Semaphore::new(2)) };
    let mut r = Router::new()
        .route("/api/ingest", get(ingest))
        .route("/api/entries", get(entries))
        .route("/api/stream", get(stream))
        .route("/api/stats", get(stats))
        .route("/api/servicemap", get(servicemap))
        .route("/api/signals", get(signals))
        .route("/api/check", get(check))
        .route("/api/session", get(session_state).post(session))
        .route("/metrics", get(metrics))
        .with_state(app.clone());
    if web {
        r = r.merge(crate::web::router());
    }
    r.layer(axum::middleware::from_fn_with_state(app, guard))
}

async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    // workers present their token; where they come from is not a browser's question
    if req.uri().path() != "/api/ingest" {
        if let Err((status, why)) = app.access.check_site(req.headers(), req.uri().path()) {
            app.hub.inner.counters.refused_origins.fetch_add(1, Relaxed);
            let mut r = error(status, json!({"error": why}));
            crate::guard::secure(r.headers_mut());
            return r;
        }
    }
    let mut r = next.run(req).await;
    crate::guard::secure(r.headers_mut());
    r
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn reader_denied(app: &App, headers: &HeaderMap) -> Option<Response> {
    if app.access.reader_ok(headers) {
        return None;
    }
    app.hub.inner.counters.refused_readers.fetch_add(1, Relaxed);
    Some(error(StatusCode::UNAUTHORIZED, json!({"error": "this hub listens beyond loopback: readers need its reader token (--token-file with the hub's reader-token file, or Authorization: Bearer)"})))
}

/// Why a filter was not compiled.
enum Refused {
    /// It is wrong, or costs more than the filter's limits allow.
    Bad(crate::FilterError),
    /// It did not compile in time, or the hub is stopping.
    Unavailable(String),
}

impl Refused {
    /// As an API answer: 400 with the position, or 503.
    fn response(self) -> Response {
        match self {
            Refused::Bad(e) => error(StatusCode::BAD_REQUEST, json!({"error": e.message, "position": e.position})),
            Refused::Unavailable(why) => error(StatusCode::SERVICE_UNAVAILABLE, json!({"error": why})),
        }
    }
}

/// Compiles a filter on the blocking pool (two at a time), within [`COMPILE_TIME`]; the
/// filter's own limits (its length, its regexes) are checked before anything is built.
async fn compile(app: &App, src: Option<&str>) -> Result<Arc<Filter>, Refused> {
    let src = src.unwrap_or("").to_string();
    if src.trim().is_empty() {
        return Filter::compile("").map(Arc::new).map_err(Refused::Bad);
    }
    let Ok(permit) = app.compiles.clone().acquire_owned().await else { return Err(Refused::Unavailable(Error::Closed.to_string())) };
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        Filter::compile(&src)
    });
    let out = match tokio::time::timeout(COMPILE_TIME, job).await {
        Ok(Ok(r)) => r.map(Arc::new).map_err(Refused::Bad),
        _ => Err(Refused::Unavailable(format!("the filter did not compile within {} s", COMPILE_TIME.as_secs()))),
    };
    if out.is_err() {
        app.hub.inner.counters.filters_refused.fetch_add(1, Relaxed);
    }
    out
}

/// `since`: a duration back from now (`5m`) or a time (RFC 3339), as ns.
#[allow(clippy::result_large_err)] // an axum Response, returned as it is
fn since(s: Option<&str>) -> Result<Option<i64>, Response> {
    let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok(None) };
    if let Some(d) = parse_duration(s) {
        return Ok(Some(now_ns().saturating_sub(d.clamp(0, i64::MAX as i128) as i64)));
    }
    parse_timestamp(s)
        .map(|t| Some(t.clamp(i64::MIN as i128, i64::MAX as i128) as i64))
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, json!({"error": format!("since {s:?} is neither a duration (5m) nor an RFC 3339 time")})))
}

/// What a reader's request starts with: the token where one is needed, then its filter
/// and `since`, each refused with a 4xx that says what is wrong.
#[allow(clippy::result_large_err)] // an axum Response, returned as it is
async fn reader_request(app: &App, headers: &HeaderMap, filter: Option<&str>, from: Option<&str>) -> Result<(Arc<Filter>, Option<i64>), Response> {
    if let Some(r) = reader_denied(app, headers) {
        return Err(r);
    }
    let from = since(from)?;
    Ok((compile(app, filter).await.map_err(Refused::response)?, from))
}

#[derive(Deserialize)]
struct SessionBody {
    token: String,
}

/// `POST /api/session` `{"token": "..."}`: the dashboard gives the reader token once and
/// gets it back as an HttpOnly, SameSite=Strict cookie (never in a URL).
async fn session(State(app): State<App>, body: Bytes) -> Response {
    let given = serde_json::from_slice::<SessionBody>(&body).map(|b| b.token);
    if !given.is_ok_and(|t| crate::guard::same(t.trim(), &app.access.reader_token)) {
        app.hub.inner.counters.refused_readers.fetch_add(1, Relaxed);
        return error(StatusCode::UNAUTHORIZED, json!({"error": "that is not this hub's reader token"}));
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = app.access.session_cookie() {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// `GET /api/session`: whether this hub wants a token from readers, and whether this
/// request has it.
async fn session_state(headers: HeaderMap, State(app): State<App>) -> Response {
    axum::Json(json!({"need_token": app.access.readers_need_token, "ok": app.access.reader_ok(&headers)})).into_response()
}

#[derive(Deserialize)]
struct IngestParams {
    worker: Option<String>,
}

async fn ingest(ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>, headers: HeaderMap, Query(p): Query<IngestParams>, State(app): State<App>) -> Response {
    if !app.access.worker_ok(&headers) {
        app.hub.inner.counters.refused_workers.fetch_add(1, Relaxed);
        return error(StatusCode::UNAUTHORIZED, json!({"error": "wrong or missing worker token: this hub takes entries only from workers with its worker token (--token-file)"}));
    }
    let Some(worker) = p.worker.filter(|w| !w.is_empty() && w.len() <= 256 && !w.chars().any(char::is_control)) else {
        return error(StatusCode::BAD_REQUEST, json!({"error": "say which worker this is: /api/ingest?worker=ID (up to 256 characters)"}));
    };
    // a plain GET with the token: a worker checking it before it starts
    let Ok(ws) = ws else { return axum::Json(json!({"ok": true})).into_response() };
    // one connection per worker id: another holder of the token cannot speak for a
    // connected worker
    let Some(claim) = app.hub.claim_worker(&worker) else {
        app.hub.inner.counters.refused_workers.fetch_add(1, Relaxed);
        return error(StatusCode::CONFLICT, json!({"error": format!("worker {worker:?} is connected already: a worker id is one connection at a time")}));
    };
    ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |sock| ingest_conn(app.hub, claim, sock))
}

type Budget = Option<tokio::sync::OwnedSemaphorePermit>;
type Decoded = tokio::task::JoinHandle<(Option<u64>, Result<crate::record::Block, Error>, Budget)>;
type Pending = tokio::sync::oneshot::Receiver<Result<Committed, Error>>;

/// Waits for `bytes` of the hub's decompression budget (counted when it has to wait).
async fn budget(hub: &Hub, bytes: usize) -> Budget {
    let kib = ((bytes >> 10) + 1).min(crate::hub::DECODE_BUDGET >> 10) as u32;
    let sem = hub.inner.decode_budget.clone();
    match sem.clone().try_acquire_many_owned(kib) {
        Ok(p) => Some(p),
        Err(_) => {
            hub.inner.counters.decode_waits.fetch_add(1, Relaxed);
            sem.acquire_many_owned(kib).await.ok()
        }
    }
}

async fn ingest_conn(hub: Hub, claim: crate::hub::WorkerClaim, sock: WebSocket) {
    let worker: Arc<str> = Arc::from(claim.id());
    let claim = Some(claim);
    hub.worker_report(&worker, true, None);
    let (mut tx, mut rx) = sock.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(256);
    let out_tx_for_close = out_tx.clone();
    let sender = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if tx.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = tx.close().await;
    });
    // a pipeline, in order: batches are decoded on the blocking pool (two at a time, within
    // the hub's budget), handed to the writer without waiting for the last one's commit,
    // and acknowledged as their commits come back
    let (dec_tx, mut dec_rx) = tokio::sync::mpsc::channel::<Decoded>(IN_FLIGHT);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<(u64, Result<Pending, Value>)>(IN_FLIGHT);
    let h = hub.clone();
    let w = worker.clone();
    let out = out_tx.clone();
    let submitter = tokio::spawn(async move {
        while let Some(job) = dec_rx.recv().await {
            let Ok((number, decoded, permit)) = job.await else { break };
            let next = match decoded {
                Ok(block) => {
                    let n = block.batch;
                    match h.submit(w.clone(), block, permit).await {
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
    let w = worker.clone();
    let acker = tokio::spawn(async move {
        while let Some((n, next)) = ack_rx.recv().await {
            let reply = match next {
                Ok(pending) => match pending.await {
                    Ok(Ok(Committed::TooFar { last })) => {
                        let last = last.map_or("none yet".to_string(), |l| l.to_string());
                        let why = format!("batch {n} is far beyond this worker's last ({last}): refused");
                        eprintln!("kshark hub: worker {w}: {why}");
                        json!({"refused": n, "error": why})
                    }
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
    let out = out_tx_for_close;
    let decodes = Arc::new(tokio::sync::Semaphore::new(DECODES));
    let mut said_stats = false;
    loop {
        let msg = match rx.next().await {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let e = e.to_string();
                if e.contains("too long") || e.contains("too big") || e.contains("Space limit") {
                    hub.inner.counters.oversized_messages.fetch_add(1, Relaxed);
                    eprintln!("kshark hub: worker {worker}: a message over the limit of {MAX_MESSAGE} bytes ({e}): refused, connection closed");
                    let reason = format!("a message over the hub's limit of {MAX_MESSAGE} bytes");
                    let _ = out.send(Message::Close(Some(CloseFrame { code: 1009, reason: reason.into() }))).await;
                }
                break;
            }
        };
        match msg {
            Message::Binary(b) => {
                if !hub.takes_batches() {
                    // the hub is stopping: this batch is not taken (nor acknowledged); the
                    // worker keeps it and resends it to the hub that comes next
                    let _ = out.send(Message::Close(Some(CloseFrame { code: 1001, reason: "the hub is stopping".into() }))).await;
                    break;
                }
                let Ok(local) = decodes.clone().acquire_owned().await else { break };
                // what the batch will take once decompressed (its text, its slim form, and
                // what the store copies: three times its size), asked of the budget before
                // anything is allocated; a batch that lies about its size fails its checks
                let permit = match crate::record::declared_size(&b) {
                    Ok(n) => budget(&hub, n.saturating_mul(3)).await,
                    Err(_) => None,
                };
                let job = tokio::task::spawn_blocking(move || {
                    let _local = local;
                    match decode_numbered(b) {
                        Ok(block) => (Some(block.batch), Ok(block), permit),
                        Err((number, e)) => (number, Err(e), None),
                    }
                });
                if dec_tx.send(job).await.is_err() {
                    break;
                }
            }
            Message::Text(t) => {
                if t.len() > MAX_STATS {
                    hub.inner.counters.oversized_messages.fetch_add(1, Relaxed);
                    if !std::mem::replace(&mut said_stats, true) {
                        eprintln!("kshark hub: worker {worker}: a counters message of {} bytes, over the limit of {MAX_STATS}: ignored", t.len());
                    }
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if let Some(s) = v.get("stats").filter(|s| s.is_object()) {
                        hub.worker_report(&worker, true, Some(s.clone()));
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    // the id is free again at once: a worker that reconnects resends what was not
    // acknowledged, and the store takes each batch once whichever connection brings it
    drop(claim);
    drop(out);
    drop(dec_tx);
    let _ = submitter.await;
    let _ = acker.await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sender).await;
    hub.worker_report(&worker, false, None);
}

#[derive(Deserialize)]
struct EntriesParams {
    filter: Option<String>,
    limit: Option<usize>,
    since: Option<String>,
    /// `json` (default), `ndjson` (also by `Accept: application/x-ndjson`) or `har`.
    format: Option<String>,
    /// Any value: served as a file to save (the dashboard's export buttons).
    download: Option<String>,
}

/// An answer written as it is read: bytes go out in chunks of this size.
const CHUNK: usize = 64 << 10;

/// The writing end of a streamed answer (on a blocking thread): fails once the client
/// has gone, which ends the query.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for Chunks {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

/// When a query of a reader must stop: its client left (`gone`), its time ran out, or
/// the hub is stopping.
fn stopper(hub: &Hub, gone: impl Fn() -> bool) -> impl Fn() -> bool {
    let hub = hub.clone();
    let deadline = Instant::now() + QUERY_TIME;
    move || gone() || hub.stopping() || Instant::now() >= deadline
}

async fn entries(headers: HeaderMap, Query(p): Query<EntriesParams>, State(app): State<App>) -> Response {
    let (filter, since) = match reader_request(&app, &headers, p.filter.as_deref(), p.since.as_deref()).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let limit = p.limit.unwrap_or(1000).min(100_000_000);
    let accept_ndjson = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("application/x-ndjson"));
    let format = p.format.clone().unwrap_or_else(|| if accept_ndjson { "ndjson" } else { "json" }.to_string());
    let (mime, ext) = match format.as_str() {
        "ndjson" => ("application/x-ndjson", "ndjson"),
        "json" => ("application/json", "json"),
        "har" => ("application/json", "har"),
        other => return error(StatusCode::BAD_REQUEST, json!({"error": format!("format {other:?} is not one of json, ndjson, har")})),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let hub = app.hub.clone();
    tokio::task::spawn_blocking(move || {
        let probe = tx.clone();
        let stop = stopper(&hub, move || probe.is_closed());
        let q = StoreQuery { filter: &filter, since, limit, now: now_ns() as i128, stop: Some(&stop) };
        let mut out = Chunks { tx, buf: Vec::with_capacity(CHUNK) };
        use std::io::Write;
        let result: Result<(), Error> = match format.as_str() {
            "har" => match kshark_dissect::export::har::HarWriter::new(out) {
                Ok(mut w) => {
                    let r = hub.query_each(&q, &mut |_, json| serde_json::from_slice::<Value>(json).is_ok_and(|v| w.add_value(&v).is_ok()));
                    match w.finish() {
                        Ok(mut o) => {
                            let _ = o.flush();
                            r
                        }
                        Err(_) => r,
                    }
                }
                Err(_) => Ok(()),
            },
            f => {
                let ndjson = f == "ndjson";
                let mut first = true;
                if !ndjson {
                    let _ = out.write_all(b"[");
                }
                let r = hub.query_each(&q, &mut |_, json| {
                    let sep: &[u8] = if ndjson || std::mem::take(&mut first) { b"" } else { b"," };
                    out.write_all(sep).and_then(|_| out.write_all(json)).and_then(|_| if ndjson { out.write_all(b"\n") } else { Ok(()) }).is_ok()
                });
                if !ndjson && r.is_ok() {
                    let _ = out.write_all(b"]");
                }
                let _ = out.flush();
                r
            }
        };
        if let Err(e) = result {
            if matches!(e, Error::Cancelled) {
                hub.inner.counters.queries_cancelled.fetch_add(1, Relaxed);
            } else {
                eprintln!("kshark hub: a query failed: {e}");
            }
        }
    });
    // the client gone, the body is dropped, and with it `rx`: the query sees it
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }));
    let mut r = ([(header::CONTENT_TYPE, mime)], body).into_response();
    if p.download.is_some() {
        let name = format!("attachment; filename=\"kshark-{}.{ext}\"", now_ns() / 1_000_000_000);
        if let Ok(v) = header::HeaderValue::from_str(&name) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

#[derive(Deserialize)]
struct StreamParams {
    filter: Option<String>,
    /// Stored entries to send first (the newest N matching).
    last: Option<usize>,
    since: Option<String>,
    /// `false`: send the stored ones and close.
    follow: Option<bool>,
}

async fn stream(ws: WebSocketUpgrade, headers: HeaderMap, Query(p): Query<StreamParams>, State(app): State<App>) -> Response {
    let (filter, since) = match reader_request(&app, &headers, p.filter.as_deref(), p.since.as_deref()).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let stored = if since.is_some() { Some(p.last.unwrap_or(100_000_000)) } else { p.last.filter(|n| *n > 0) };
    let follow = p.follow.unwrap_or(true);
    // subscribed before the upgrade (so the limit counts it at once), and before the
    // store is read: nothing falls between the two, nothing comes twice
    let sub = match follow {
        false => None,
        true => match app.hub.subscribe_within(filter.clone(), crate::hub::MAX_SUBSCRIBERS) {
            Some(s) => Some(s),
            None => {
                app.hub.inner.counters.streams_refused.fetch_add(1, Relaxed);
                return error(StatusCode::SERVICE_UNAVAILABLE, json!({"error": format!("{} live streams are open, the most this hub serves at once", crate::hub::MAX_SUBSCRIBERS)}));
            }
        },
    };
    ws.on_upgrade(move |sock| stream_conn(app.hub, sock, filter, stored, since, sub))
}

/// Tells a client that its stream was cut loose, if it takes the message soon (one that
/// does not read is not waited for).
async fn said_cut(sock: &mut WebSocket) {
    let close = Message::Close(Some(CloseFrame { code: 1008, reason: "too slow: the hub cut this stream loose (it held too much unsent)".into() }));
    let _ = tokio::time::timeout(Duration::from_millis(200), sock.send(close)).await;
}

/// How often a live stream pings its client (so that a quiet stream is not idle).
const PING: Duration = Duration::from_secs(20);

async fn stream_conn(hub: Hub, mut sock: WebSocket, filter: Arc<Filter>, stored: Option<usize>, since: Option<i64>, mut sub: Option<crate::hub::Subscription>) {
    // the store is read after subscribing; what it gave is skipped from the live part
    let mut high = i64::MIN;
    if let Some(limit) = stored {
        // read on a blocking thread, handed over a few hundred at a time; the query stops
        // when this side stops taking them (the client left)
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(i64, Bytes)>>(2);
        let (h, f) = (hub.clone(), filter.clone());
        let reader = tokio::task::spawn_blocking(move || {
            let probe = tx.clone();
            let stop = stopper(&h, move || probe.is_closed());
            let q = StoreQuery { filter: &f, since, limit, now: now_ns() as i128, stop: Some(&stop) };
            let mut batch = Vec::new();
            let mut bytes = 0;
            let r = h.query_each(&q, &mut |seq, json| {
                batch.push((seq, Bytes::copy_from_slice(json)));
                bytes += json.len();
                if bytes >= CHUNK || batch.len() >= 512 {
                    bytes = 0;
                    return tx.blocking_send(std::mem::take(&mut batch)).is_ok();
                }
                true
            });
            if !batch.is_empty() && r.is_ok() {
                let _ = tx.blocking_send(batch);
            }
            if matches!(r, Err(Error::Cancelled)) {
                h.inner.counters.queries_cancelled.fetch_add(1, Relaxed);
            }
            r
        });
        loop {
            tokio::select! {
                rows = rx.recv() => match rows {
                    Some(rows) => {
                        for (seq, r) in rows {
                            high = high.max(seq);
                            let Ok(text) = axum::extract::ws::Utf8Bytes::try_from(r) else { continue };
                            if sock.feed(Message::Text(text)).await.is_err() {
                                return;
                            }
                        }
                        if sock.flush().await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
                msg = sock.recv() => match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                },
            }
        }
        if let Ok(Err(e)) = reader.await {
            let _ = sock.send(Message::Close(Some(CloseFrame { code: 1011, reason: e.to_string().chars().take(120).collect::<String>().into() }))).await;
            return;
        }
    }
    let Some(sub) = sub.as_mut() else {
        let _ = sock.send(Message::Close(Some(CloseFrame { code: 1000, reason: "end of stored entries".into() }))).await;
        return;
    };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
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
                            drop(l);
                            // a client that does not read holds this send up: once the hub
                            // cuts it loose, what it queued is let go at once (returning
                            // drops the subscription), not when the connection times out
                            tokio::select! {
                                r = sock.feed(Message::Text(text)) => if r.is_err() { return },
                                _ = sub.cut_loose() => return said_cut(&mut sock).await,
                            }
                        }
                        sent += 1;
                        if sent < 1024 {
                            next = sub.rx.try_recv().ok();
                        }
                    }
                    tokio::select! {
                        r = sock.flush() => if r.is_err() { return },
                        _ = sub.cut_loose() => return said_cut(&mut sock).await,
                    }
                }
                None if sub.was_cut() => return said_cut(&mut sock).await,
                None => {
                    let _ = sock.send(Message::Close(Some(CloseFrame { code: 1001, reason: "the hub is shutting down".into() }))).await;
                    return;
                }
            },
            _ = ping.tick() => {
                if sock.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
            msg = sock.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

#[derive(Deserialize)]
struct ReaderParams {
    window: Option<String>,
    source: Option<String>,
    destination: Option<String>,
}

async fn stats(headers: HeaderMap, State(app): State<App>) -> Response {
    if let Some(r) = reader_denied(&app, &headers) {
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
    if let Some(r) = reader_denied(app, headers) {
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
}

/// Whether a filter compiles, answered (200) as `{"ok": true}` or `{"ok": false, "error",
/// "position"}`: for checking as the user types, where a bad filter is no failed request.
async fn check(headers: HeaderMap, Query(p): Query<CheckParams>, State(app): State<App>) -> Response {
    if let Some(r) = reader_denied(&app, &headers) {
        return r;
    }
    match compile(&app, p.filter.as_deref()).await {
        Ok(_) => axum::Json(json!({"ok": true})).into_response(),
        // a bad filter is no failed request here
        Err(Refused::Bad(e)) => axum::Json(json!({"ok": false, "error": e.message, "position": e.position})).into_response(),
        Err(r) => r.response(),
    }
}

/// Golden signals over time (`window=15m`, optionally `source=ID` and/or
/// `destination=ID`, workload ids as the service map names them).
async fn signals(headers: HeaderMap, Query(p): Query<ReaderParams>, State(app): State<App>) -> Response {
    over_window(&app, &headers, &p, |m, window, now| m.signals(window, now, p.source.as_deref(), p.destination.as_deref()))
}

async fn metrics(headers: HeaderMap, State(app): State<App>) -> Response {
    if let Some(r) = reader_denied(&app, &headers) {
        return r;
    }
    let s = app.hub.stats();
    let mut out = String::new();
    use std::fmt::Write;
    out.push_str("# HELP kshark_hub_events_total Hub counters (batches, entries stored, refusals, subscribers cut, retention deletes).\n# TYPE kshark_hub_events_total counter\n");
    if let Some(h) = s["hub"].as_object() {
        for (k, v) in h {
            if !["subscribers", "store_bytes", "disk_bytes", "subscribers_held_bytes"].contains(&k.as_str()) {
                let _ = writeln!(out, "kshark_hub_events_total{{event=\"{k}\"}} {}", v.as_u64().unwrap_or(0));
            }
        }
    }
    let _ = writeln!(out, "# TYPE kshark_hub_subscribers gauge\nkshark_hub_subscribers {}", s["hub"]["subscribers"]);
    let _ = writeln!(out, "# TYPE kshark_hub_store_bytes gauge\nkshark_hub_store_bytes {}", s["hub"]["store_bytes"]);
    let _ = writeln!(out, "# TYPE kshark_hub_disk_bytes gauge\nkshark_hub_disk_bytes {}", s["hub"]["disk_bytes"]);
    let _ = writeln!(out, "# TYPE kshark_hub_subscribers_held_bytes gauge\nkshark_hub_subscribers_held_bytes {}", s["hub"]["subscribers_held_bytes"]);
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
