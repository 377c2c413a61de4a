//! `kshark hub`, `kshark observe`, and the hub that `tap` runs in process.

use crate::Failure;
use clap::{Args, ValueEnum};
use kshark_dissect::export::terminal_safe;
use kshark_hub::api::{self, Access};
use kshark_hub::client::{encode, read_token, HubAddr};
use kshark_hub::record::Record;
use kshark_hub::store::Retention;
use kshark_hub::{Filter, Hub, HubConfig};
use serde_json::{json, Value};
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark hub                                   127.0.0.1:8899, data in ~/.local/share/kshark\n  kshark hub --retention 2GiB,24h --token-file /etc/kshark/token\n  kshark hub --listen 0.0.0.0:8899 --tls-cert hub.pem --tls-key hub.key --token-file token\n\nWorkers always need the token (`kshark worker --token-file`); without --token-file the hub\nmakes one in its data directory and says where. Readers (observe, the API) need it too when\nthe hub listens beyond loopback. Retention is by size and by age since storing (oldest go\nfirst); the store survives restarts.")]
pub struct HubArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8899", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the store lives [default: ~/.local/share/kshark/hub, /var/lib/kshark/hub as root]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// What to keep: a size (500MB, 2GiB), an age (24h, 7d), or both (2GiB,24h)
    #[arg(long, default_value = "1GiB", value_name = "SIZE|DURATION", value_parser = Retention::parse)]
    retention: Retention,
    /// The workers' token (first line of the file) [default: made in the data directory]
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM)
    #[arg(long, value_name = "F", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM)
    #[arg(long, value_name = "F", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn default_data() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/kshark/hub");
    }
    let base = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")));
    base.unwrap_or_else(std::env::temp_dir).join("kshark/hub")
}

/// A fresh random token (hex of 32 bytes from the kernel).
fn new_token() -> io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn token_for(data: &Path, file: Option<&Path>) -> Result<(String, PathBuf), Failure> {
    if let Some(f) = file {
        return Ok((read_token(f).map_err(|e| Failure::Input(e.to_string()))?, f.to_path_buf()));
    }
    let f = data.join("worker-token");
    if let Ok(t) = read_token(&f) {
        return Ok((t, f));
    }
    let t = new_token().map_err(|e| Failure::Runtime(format!("/dev/urandom: {e}")))?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&f).map_err(|e| Failure::Runtime(format!("{}: {e}", f.display())))?;
    writeln!(o, "{t}").map_err(|e| Failure::Runtime(format!("{}: {e}", f.display())))?;
    Ok((t, f))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| Failure::Runtime(e.to_string()))
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

pub fn hub(a: HubArgs) -> Result<(), Failure> {
    let data = a.data.clone().unwrap_or_else(default_data);
    let hub = Hub::start(&HubConfig { retention: a.retention, ..HubConfig::new(&data) }).map_err(|e| Failure::Runtime(e.to_string()))?;
    let (token, token_file) = token_for(&data, a.token_file.as_deref())?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(api::tls_acceptor(c, k).map_err(|e| Failure::Input(e.to_string()))?),
        _ => None,
    };
    let loopback = a.listen.ip().is_loopback();
    let rt = runtime()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen).await.map_err(|e| Failure::Runtime(format!("cannot listen on {}: {e}", a.listen)))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let who = if loopback { "loopback only: readers need no token" } else { "NOT loopback: readers need the token too" };
        eprintln!("kshark hub: listening on {scheme}://{} ({who})", listener.local_addr().unwrap_or(a.listen));
        eprintln!("kshark hub: store {} (retention {}), worker token in {}", data.display(), describe(&a.retention), token_file.display());
        let router = api::router(hub.clone(), Access { token: Arc::from(token.as_str()), readers_need_token: !loopback });
        api::serve(listener, router, tls, terminated()).await.map_err(|e| Failure::Runtime(e.to_string()))
    });
    eprintln!("kshark hub: stopping; {} entries stored this run", hub.stats()["entries"]);
    hub.shutdown();
    drop(rt);
    result
}

fn describe(r: &Retention) -> String {
    let mut parts = Vec::new();
    if let Some(b) = r.max_bytes {
        parts.push(format!("{:.1} MB", b as f64 / 1e6));
    }
    if let Some(d) = r.max_age {
        parts.push(format!("{} s", d.as_secs()));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The hub inside `tap`: a store in a temporary directory, the API on 127.0.0.1:PORT.
pub struct LocalHub {
    hub: Hub,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempdir::Dir,
    batch: std::cell::Cell<u64>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Entries the in-process hub could not take in time (printing goes on regardless).
    pub dropped: std::cell::Cell<u64>,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl LocalHub {
    pub fn start(port: u16) -> Result<LocalHub, Failure> {
        let dir = std::env::temp_dir().join(format!("kshark-tap-{}", std::process::id()));
        let dir = tempdir::Dir(dir);
        let hub = Hub::start(&HubConfig { retention: Retention { max_bytes: Some(1 << 30), max_age: None }, ..HubConfig::new(&dir.0) }).map_err(|e| Failure::Runtime(e.to_string()))?;
        let rt = runtime()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Failure::Runtime(format!("the in-process hub cannot listen on {addr}: {e} (another kshark? use --port N, or --port 0 for any)")))?;
        eprintln!("kshark: hub API on http://{} (kshark observe --hub http://{0})", listener.local_addr().unwrap_or(addr));
        // the token guards ingest only; nothing ingests over the network here
        let token = new_token().map_err(|e| Failure::Runtime(e.to_string()))?;
        let router = api::router(hub.clone(), Access { token: Arc::from(token.as_str()), readers_need_token: false });
        rt.spawn(async move {
            let _ = api::serve(listener, router, None, std::future::pending()).await;
        });
        Ok(LocalHub { hub, rt: Some(rt), _dir: dir, batch: std::cell::Cell::new(0), in_flight: Arc::default(), dropped: std::cell::Cell::new(0) })
    }

    /// Stores entries (their JSON).
    pub fn feed(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        use std::sync::atomic::Ordering::Relaxed;
        // the store must not hold capture back: when it is behind, batches are counted
        // and skipped rather than queued without bound
        if self.in_flight.load(Relaxed) >= 16 {
            self.dropped.set(self.dropped.get() + lines.len() as u64);
            return;
        }
        let n = self.batch.get() + 1;
        self.batch.set(n);
        let hub = self.hub.clone();
        let in_flight = self.in_flight.clone();
        if let Some(rt) = &self.rt {
            in_flight.fetch_add(1, Relaxed);
            rt.spawn(async move {
                let records = tokio::task::spawn_blocking(move || lines.iter().filter_map(|l| Record::from_json(l, &"tap").ok()).collect::<Vec<_>>()).await.unwrap_or_default();
                let _ = hub.ingest(Arc::from("tap"), n, records).await;
                in_flight.fetch_sub(1, Relaxed);
            });
        }
    }

    pub fn report(&self, mut stats: Value) {
        stats["hub_drops"] = self.dropped.get().into();
        self.hub.worker_report("tap", true, Some(stats));
    }

    pub fn stop(mut self) {
        if self.dropped.get() > 0 {
            eprintln!("kshark: the in-process hub could not keep up and did not store {} entries (all were printed)", self.dropped.get());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
        self.hub.shutdown();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ObserveFormat {
    Ndjson,
    Table,
    Har,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark observe                                the last 20 entries\n  kshark observe -f --namespace sock-shop --http-status 5+\n  kshark observe --protocol grpc --since 5m --format table\n  kshark observe --all --filter 'dns && dns_rcode != \"NOERROR\"' --format ndjson > flows.json\n  kshark observe --all --protocol http --format har > flows.har\n\nThe Hubble-style flags become the same filter language as --filter (see the README's\n\"Filters\"), joined with `&&`; a flag given twice means either value.")]
pub struct ObserveArgs {
    /// The hub
    #[arg(long, default_value = "http://127.0.0.1:8899", value_name = "URL")]
    hub: String,
    /// Only entries this filter matches
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// After the stored entries, print new ones as they arrive
    #[arg(short = 'f', long)]
    follow: bool,
    /// Stored entries from this long ago (5m, 1h) or since this time (RFC 3339)
    #[arg(long, value_name = "D")]
    since: Option<String>,
    /// The newest N stored entries [default: 20, or none with -f alone]
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Every stored entry that matches
    #[arg(long, conflicts_with = "last")]
    all: bool,
    /// Output format [default: table on a terminal, ndjson otherwise]
    #[arg(long, value_enum)]
    format: Option<ObserveFormat>,
    /// Entries with an end in this namespace
    #[arg(long, value_name = "NS")]
    namespace: Vec<String>,
    /// Entries with an end in a pod whose name starts so ([NAMESPACE/]POD)
    #[arg(long, value_name = "[NS/]POD")]
    pod: Vec<String>,
    /// http, grpc, dns, tcp or udp
    #[arg(long, value_name = "P")]
    protocol: Vec<String>,
    /// A status (404) or a class (5+)
    #[arg(long, value_name = "CODE")]
    http_status: Vec<String>,
    /// GET, POST, ...
    #[arg(long, value_name = "M")]
    http_method: Vec<String>,
    /// A regular expression the path matches
    #[arg(long, value_name = "RE")]
    http_path: Vec<String>,
    /// The hub's token (needed when it listens beyond loopback)
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// Trust this CA (PEM) for an https:// hub
    #[arg(long, value_name = "F")]
    ca_file: Option<PathBuf>,
}

fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn any(terms: Vec<String>) -> Option<String> {
    match terms.len() {
        0 => None,
        1 => terms.into_iter().next(),
        _ => Some(format!("({})", terms.join(" || "))),
    }
}

/// The Hubble-style flags as one filter (with --filter), or what is wrong with a flag.
pub fn observe_filter(a: &ObserveArgs) -> Result<String, String> {
    let mut all: Vec<String> = Vec::new();
    if let Some(f) = a.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        all.push(format!("({f})"));
    }
    all.extend(any(a.namespace.iter().map(|n| format!("{} in namespaces", lit(n))).collect()));
    all.extend(any(a
        .pod
        .iter()
        .map(|p| match p.split_once('/') {
            Some((ns, pod)) => format!(
                "((src.namespace == {0} && src.pod.name.startsWith({1})) || (dst.namespace == {0} && dst.pod.name.startsWith({1})))",
                lit(ns),
                lit(pod)
            ),
            None => format!("pods.exists(p, p.startsWith({}))", lit(p)),
        })
        .collect()));
    let mut protos = Vec::new();
    for p in &a.protocol {
        let p = p.to_ascii_lowercase();
        if !["http", "grpc", "dns", "tcp", "udp"].contains(&p.as_str()) {
            return Err(format!("--protocol {p:?}: say http, grpc, dns, tcp or udp"));
        }
        protos.push(p);
    }
    all.extend(any(protos));
    let mut codes = Vec::new();
    for s in &a.http_status {
        if let Some(class) = s.strip_suffix('+').and_then(|c| c.parse::<u16>().ok()).filter(|c| (1..=5).contains(c)) {
            codes.push(format!("(status_code >= {} && status_code < {})", class * 100, class * 100 + 100));
        } else if let Some(code) = s.parse::<u16>().ok().filter(|c| (100..600).contains(c)) {
            codes.push(format!("status_code == {code}"));
        } else {
            return Err(format!("--http-status {s:?}: say a code (404) or a class (5+)"));
        }
    }
    all.extend(any(codes));
    all.extend(any(a.http_method.iter().map(|m| format!("method == {}", lit(&m.to_ascii_uppercase()))).collect()));
    all.extend(any(a.http_path.iter().map(|r| format!("path.matches({})", lit(r))).collect()));
    Ok(all.join(" && "))
}

pub fn observe(a: ObserveArgs) -> Result<(), Failure> {
    let filter = observe_filter(&a).map_err(Failure::Input)?;
    if let Err(e) = Filter::compile(&filter) {
        return Err(Failure::Input(format!("filter {filter:?}: {e}")));
    }
    let token = a.token_file.as_deref().map(read_token).transpose().map_err(|e| Failure::Input(e.to_string()))?;
    let addr = HubAddr::parse(&a.hub, token, a.ca_file.clone()).map_err(|e| Failure::Input(e.to_string()))?;
    let last = if a.all { Some(usize::MAX >> 1) } else { a.last.or(if a.follow || a.since.is_some() { None } else { Some(20) }) };
    let mut path = format!("/api/stream?follow={}&filter={}", a.follow, encode(&filter));
    if let Some(n) = last {
        path.push_str(&format!("&last={}", n.min(100_000_000)));
    }
    if let Some(s) = &a.since {
        path.push_str(&format!("&since={}", encode(s)));
    }
    let format = a.format.unwrap_or(if io::stdout().is_terminal() { ObserveFormat::Table } else { ObserveFormat::Ndjson });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Failure::Runtime(e.to_string()))?;
    rt.block_on(async move {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let mut sock = addr.websocket(&path).await.map_err(|e| Failure::Runtime(e.to_string()))?;
        let mut out = io::BufWriter::new(io::stdout().lock());
        let mut har_first = true;
        match format {
            ObserveFormat::Table => writeln!(out, "{}", kshark_dissect::export::table::header()),
            ObserveFormat::Har => write!(out, r#"{{"log":{{"version":"1.2","creator":{{"name":"kshark","version":"{}"}},"entries":["#, env!("CARGO_PKG_VERSION")),
            ObserveFormat::Ndjson => Ok(()),
        }
        .map_err(write_err)?;
        let stop = terminated();
        tokio::pin!(stop);
        loop {
            let msg = tokio::select! {
                m = sock.next() => m,
                _ = &mut stop => break,
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    match format {
                        ObserveFormat::Ndjson => writeln!(out, "{}", t.as_str()),
                        ObserveFormat::Table => writeln!(out, "{}", row(&serde_json::from_str(&t).unwrap_or_default())),
                        ObserveFormat::Har => match har(&serde_json::from_str(&t).unwrap_or_default()) {
                            Some(h) => {
                                let sep = if har_first { "\n" } else { ",\n" };
                                har_first = false;
                                write!(out, "{sep}{h}")
                            }
                            None => Ok(()),
                        },
                    }
                    .map_err(write_err)?;
                    if a.follow {
                        out.flush().map_err(write_err)?;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if let Some(f) = frame.filter(|f| u16::from(f.code) != 1000) {
                        return Err(Failure::Runtime(format!("the hub ended the stream: {}", f.reason)));
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Failure::Runtime(format!("{}: {e}", a.hub))),
                None => break,
            }
        }
        if format == ObserveFormat::Har {
            write!(out, "\n]}}}}\n").map_err(write_err)?;
        }
        out.flush().map_err(write_err)
    })
}

fn write_err(e: io::Error) -> Failure {
    Failure::Runtime(format!("cannot write the output: {e}"))
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn cut(x: &str, w: usize) -> String {
    let x = terminal_safe(x);
    if x.chars().count() <= w {
        x
    } else {
        x.chars().take(w - 1).chain(std::iter::once('…')).collect()
    }
}

/// One entry's JSON as a line of the table `read` prints.
fn row(e: &Value) -> String {
    let end = |side: &str| {
        let name = s(e, &format!("/{side}/name"));
        if name.is_empty() || name == s(e, &format!("/{side}/ip")) {
            format!("{}:{}", s(e, &format!("/{side}/ip")), e.pointer(&format!("/{side}/port")).cloned().unwrap_or_default())
        } else {
            name.to_string()
        }
    };
    let (method, what) = match s(e, "/protocol") {
        "grpc" => ("RPC".to_string(), s(e, "/request/path").to_string()),
        "dns" => {
            let q = e.pointer("/request/questions/0").or(e.pointer("/response/questions/0")).cloned().unwrap_or_default();
            (s(&q, "/type").to_string(), s(&q, "/name").to_string())
        }
        _ => (s(e, "/request/method").to_string(), s(e, "/request/url").to_string()),
    };
    let status = match (s(e, "/protocol"), e.pointer("/response/status_code").and_then(Value::as_i64)) {
        ("dns", _) => s(e, "/response/rcode").to_string(),
        ("grpc", Some(c)) => e.pointer("/response/grpc_status").and_then(Value::as_i64).map_or(c.to_string(), |g| format!("{c} g{g}")),
        (_, Some(c)) => c.to_string(),
        _ => "-".into(),
    };
    let latency = match e.get("elapsed_time").and_then(Value::as_u64) {
        Some(us) if us >= 1_000_000 => format!("{:.2}s", us as f64 / 1e6),
        Some(us) if us >= 1_000 => format!("{:.1}ms", us as f64 / 1e3),
        Some(us) => format!("{us}µs"),
        None => "-".into(),
    };
    let size = e.get("request_size").and_then(Value::as_u64).unwrap_or(0) + e.get("response_size").and_then(Value::as_u64).unwrap_or(0);
    let notes: Vec<&str> = e.get("anomalies").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let ts = s(e, "/timestamp");
    format!(
        "{:<12} {:<5} {:<22} {:<22} {:<7} {:<40} {:>6} {:>9} {:>8}  {}",
        ts.get(11..23).unwrap_or(ts),
        cut(s(e, "/protocol"), 5),
        cut(&end("src"), 22),
        cut(&end("dst"), 22),
        cut(&method, 7),
        cut(&what, 40),
        cut(&status, 8),
        latency,
        format!("{size}B"),
        cut(&notes.join(","), 60)
    )
}

/// One HTTP entry's JSON as a HAR 1.2 entry (None for other protocols).
fn har(e: &Value) -> Option<Value> {
    if s(e, "/protocol") != "http" || !e.get("request").is_some_and(Value::is_object) {
        return None;
    }
    let headers = |h: Option<&Value>| -> Value {
        Value::Array(h.and_then(Value::as_object).map(|m| m.iter().map(|(k, v)| json!({"name": k, "value": v})).collect()).unwrap_or_default())
    };
    let content = |b: Option<&Value>| -> Value {
        let b = b.cloned().unwrap_or_default();
        let mut c = json!({"size": b.get("size").cloned().unwrap_or(json!(0)), "mimeType": s(&b, "/mime")});
        if let Some(t) = b.get("text").filter(|t| t.is_string()) {
            c["text"] = t.clone();
        } else if let Some(t) = b.get("base64").filter(|t| t.is_string()) {
            c["text"] = t.clone();
            c["encoding"] = json!("base64");
        }
        c
    };
    let version = format!("HTTP/{}", e.get("http_version").and_then(Value::as_str).unwrap_or("1.1"));
    let url = s(e, "/request/url");
    let url = if url.contains("://") {
        url.to_string()
    } else {
        let host = e.pointer("/request/host").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("{}:{}", s(e, "/dst/ip"), e.pointer("/dst/port").cloned().unwrap_or_default()));
        format!("http://{host}{url}")
    };
    let query: Vec<Value> = s(e, "/request/query_string").split('&').filter(|p| !p.is_empty()).map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        json!({"name": n, "value": v})
    }).collect();
    let time = e.get("elapsed_time").and_then(Value::as_u64).map_or(0.0, |us| us as f64 / 1000.0);
    let response = match e.get("response").filter(|r| r.is_object()) {
        Some(r) => json!({"status": r.get("status_code").cloned().unwrap_or(json!(0)), "statusText": s(r, "/reason"), "httpVersion": version, "cookies": [],
                          "headers": headers(r.get("headers")), "content": content(r.get("body")), "redirectURL": s(r, "/headers/location"), "headersSize": -1,
                          "bodySize": r.pointer("/body/size").cloned().unwrap_or(json!(-1))}),
        None => json!({"status": 0, "statusText": "", "httpVersion": version, "cookies": [], "headers": [], "content": {"size": 0, "mimeType": ""},
                       "redirectURL": "", "headersSize": -1, "bodySize": -1, "_error": "no response seen"}),
    };
    Some(json!({
        "startedDateTime": s(e, "/timestamp"),
        "time": time,
        "request": {"method": s(e, "/request/method"), "url": url, "httpVersion": version, "cookies": [], "headers": headers(e.pointer("/request/headers")),
                    "queryString": query, "headersSize": -1, "bodySize": e.pointer("/request/body/size").cloned().unwrap_or(json!(0))},
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": time, "receive": 0},
        "serverIPAddress": s(e, "/dst/ip"),
        "connection": s(e, "/conn_id"),
        "_kshark_id": s(e, "/id"),
        "_anomalies": e.get("anomalies").cloned().unwrap_or(json!([])),
    }))
}
