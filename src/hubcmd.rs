//! `kshark hub`, `kshark observe`, and the hub that `tap` runs in process.

use crate::Failure;
use clap::{Args, ValueEnum};
use kshark_hub::api::{self, Access};
use kshark_hub::client::{encode, read_token, HubAddr};
use kshark_hub::record::{decode_batch, encode_batch};
use kshark_hub::store::Retention;
use kshark_hub::{Filter, Hub, HubConfig};
use serde_json::Value;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark hub                                   127.0.0.1:8899, data in ~/.local/share/kshark\n  kshark hub --retention 2GiB,24h --token-file /etc/kshark/token\n  kshark hub --listen 0.0.0.0:8899 --tls-cert hub.pem --tls-key hub.key --token-file token\n\nWorkers always need the worker token (`kshark worker --token-file`); readers (observe, tui,\nthe API, the dashboard) need the reader token when the hub listens beyond loopback. Without\n--token-file / --reader-token-file the hub makes each in its data directory (worker-token,\nreader-token) and says where; neither token stands for the other. Browsers reach the hub\nonly from its own pages: a request from another site's page is refused, and so is a Host\nthat is not loopback, the listen address or an --allowed-host name. Retention is by size and by age since storing (oldest go\nfirst); the store survives restarts.")]
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
    /// The workers' token (first line of the file) [default: DATA/worker-token, made if missing]
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// The readers' token, needed beyond loopback [default: DATA/reader-token, made if missing]
    #[arg(long, value_name = "F")]
    reader_token_file: Option<PathBuf>,
    /// A name the hub answers besides loopback and its listen address (a port-forward's or
    /// an ingress's; `*.example.com` for a domain); repeatable
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// Connections open at once; more are closed at once, and counted
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_connections: usize,
    /// Time a client has to send its request headers
    #[arg(long, default_value = "10s", value_parser = crate::tap::parse_duration, value_name = "D")]
    header_timeout: std::time::Duration,
    /// A connection on which nothing moves this long is closed
    #[arg(long, default_value = "60s", value_parser = crate::tap::parse_duration, value_name = "D")]
    idle_timeout: std::time::Duration,
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
pub(crate) fn new_token() -> io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A token: from the file given, else from `data/name`, made there (0600) if missing.
fn token_for(data: &Path, file: Option<&Path>, name: &str) -> Result<(String, PathBuf), Failure> {
    if let Some(f) = file {
        return Ok((read_token(f).map_err(|e| Failure::Input(e.to_string()))?, f.to_path_buf()));
    }
    let f = data.join(name);
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
    if a.max_connections == 0 {
        return Err(Failure::Input("--max-connections 0: the hub would take no one".into()));
    }
    let hub = Hub::start(&HubConfig { retention: a.retention, ..HubConfig::new(&data) }).map_err(|e| Failure::Runtime(e.to_string()))?;
    let (token, token_file) = token_for(&data, a.token_file.as_deref(), "worker-token")?;
    let (reader, reader_file) = token_for(&data, a.reader_token_file.as_deref(), "reader-token")?;
    if token == reader {
        return Err(Failure::Input(format!("{} and {} hold the same token: readers must not be able to write", token_file.display(), reader_file.display())));
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(api::tls_acceptor(c, k).map_err(|e| Failure::Input(e.to_string()))?),
        _ => None,
    };
    let loopback = a.listen.ip().is_loopback();
    let rt = runtime()?;
    let h = hub.clone();
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen).await.map_err(|e| Failure::Runtime(format!("cannot listen on {}: {e}", a.listen)))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let who = if loopback { "loopback only: readers need no token" } else { "NOT loopback: readers need the reader token" };
        let shown = listener.local_addr().unwrap_or(a.listen);
        eprintln!("kshark hub: listening on {scheme}://{shown} ({who})");
        eprintln!("kshark hub: store {} (retention {}), worker token in {}, reader token in {}", data.display(), describe(&a.retention), token_file.display(), reader_file.display());
        eprintln!("kshark hub: dashboard on {scheme}://{shown}/");
        let access = Access {
            worker_token: Arc::from(token.as_str()),
            reader_token: Arc::from(reader.as_str()),
            readers_need_token: !loopback,
            allowed_hosts: a.allowed_hosts.clone().into(),
            listen: shown,
            tls: tls.is_some(),
        };
        let router = api::router(hub.clone(), access, true);
        let limits = api::ServeLimits { max_connections: a.max_connections, header_timeout: a.header_timeout, idle_timeout: a.idle_timeout, ..Default::default() };
        // on SIGTERM: queries stop and live streams end at once, connections get a grace
        // period, and what is left is cut
        let stop = async move {
            terminated().await;
            // batches no longer taken; those taken are stored and streamed before streams end
            h.close_ingest(std::time::Duration::from_secs(3)).await;
            h.begin_stop();
        };
        api::serve(listener, router, tls, stop, limits, hub.clone()).await.map_err(|e| Failure::Runtime(e.to_string()))
    });
    eprintln!("kshark hub: stopping; {} entries stored this run", hub.stats()["entries"]);
    hub.shutdown();
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
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
    /// Where its API listens.
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempdir::Dir,
    /// Batches on their way to the store, taken in order by one task (`feeder`).
    tx: Option<tokio::sync::mpsc::Sender<Vec<String>>>,
    feeder: Option<tokio::task::JoinHandle<()>>,
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
    /// `web`: the dashboard too, on the same port.
    pub fn start(port: u16, web: bool) -> Result<LocalHub, Failure> {
        let dir = std::env::temp_dir().join(format!("kshark-tap-{}", std::process::id()));
        let dir = tempdir::Dir(dir);
        let hub = Hub::start(&HubConfig { retention: Retention { max_bytes: Some(1 << 30), max_age: None }, ..HubConfig::new(&dir.0) }).map_err(|e| Failure::Runtime(e.to_string()))?;
        let rt = runtime()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Failure::Runtime(format!("the in-process hub cannot listen on {addr}: {e} (another kshark? use --port N, or --port 0 for any)")))?;
        let addr = listener.local_addr().unwrap_or(addr);
        eprintln!("kshark: hub API on http://{addr} (kshark observe --hub http://{addr})");
        // the worker token guards ingest only; nothing ingests over the network here
        let token = new_token().map_err(|e| Failure::Runtime(e.to_string()))?;
        let reader = new_token().map_err(|e| Failure::Runtime(e.to_string()))?;
        let router = api::router(hub.clone(), Access::loopback(addr, &token, &reader), web);
        if web {
            eprintln!("kshark: dashboard on http://{addr}/");
        }
        let h = hub.clone();
        rt.spawn(async move {
            let _ = api::serve(listener, router, None, std::future::pending(), api::ServeLimits::default(), h).await;
        });
        // one task, in order: the hub takes a worker's batches in order (one numbered at or
        // below the last it stored is a resend, and skipped), so they must not race
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<String>>(16);
        let h = hub.clone();
        let feeder = rt.spawn(async move {
            let mut n = 0u64;
            while let Some(mut lines) = rx.recv().await {
                // batches as a worker seals them (by bytes too), within the hub's limits
                while !lines.is_empty() {
                    let mut bytes = 0;
                    let cut = lines.iter().position(|l| {
                        bytes += l.len() + 1;
                        bytes >= kshark_hub::record::SEAL_BYTES
                    });
                    let rest = cut.map_or(Vec::new(), |i| lines.split_off(i + 1));
                    let batch = std::mem::replace(&mut lines, rest);
                    n += 1;
                    let b = n;
                    match tokio::task::spawn_blocking(move || decode_batch(encode_batch(b, &batch).into())).await {
                        // handed over in order; its commit is not waited for
                        Ok(Ok(block)) => drop(h.submit(Arc::from("tap"), block, None).await),
                        // the dissector's own entries: not expected, but not silent
                        Ok(Err(e)) => eprintln!("kshark: the in-process hub refused a batch: {e}"),
                        Err(_) => {}
                    }
                }
            }
        });
        Ok(LocalHub { hub, addr, rt: Some(rt), _dir: dir, tx: Some(tx), feeder: Some(feeder), dropped: std::cell::Cell::new(0) })
    }

    /// Stores entries (their JSON).
    pub fn feed(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        // the store must not hold capture back: when it is behind, batches are counted
        // and skipped rather than queued without bound
        if let Some(tx) = &self.tx {
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(l)) = tx.try_send(lines) {
                self.dropped.set(self.dropped.get() + l.len() as u64);
            }
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
        // what is queued is stored before the hub stops
        self.tx.take();
        if let (Some(rt), Some(f)) = (&self.rt, self.feeder.take()) {
            let _ = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), f).await });
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
    /// The hub's reader token (needed when it listens beyond loopback)
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
        let names = kshark_dissect::registry::names();
        if !names.contains(&p.as_str()) && !["ws", "tcp", "udp"].contains(&p.as_str()) {
            return Err(format!("--protocol {p:?}: say {}, ws, tcp or udp", names.join(", ")));
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
    observe_at(addr, &a, &filter)
}

/// New entries from a hub as NDJSON (table on a terminal) until Ctrl-C: `tap` into a
/// cluster without its UI.
pub fn follow(addr: HubAddr, filter: String) -> Result<(), Failure> {
    #[derive(clap::Parser)]
    struct Follow {
        #[command(flatten)]
        a: ObserveArgs,
    }
    let f = <Follow as clap::Parser>::try_parse_from(["observe", "-f", "--last", "0", "--filter", &filter]).map_err(|e| Failure::Runtime(e.to_string()))?;
    observe_at(addr, &f.a, &filter)
}

fn observe_at(addr: HubAddr, a: &ObserveArgs, filter: &str) -> Result<(), Failure> {
    let last = if a.all { Some(usize::MAX >> 1) } else { a.last.or(if a.follow || a.since.is_some() { None } else { Some(20) }) };
    let mut path = format!("/api/stream?follow={}&filter={}", a.follow, encode(filter));
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
        // following, a hub that goes away (restarted, its pod replaced) is waited for, and
        // the stream resumes from a minute before the last entry shown, without repeats
        let mut resume = Resume::default();
        use kshark_dissect::export::{har::HarWriter, table};
        let stdout = io::BufWriter::new(io::stdout().lock());
        // HAR is one document, written as entries come; the others are lines
        let (mut lines, mut har) = match format {
            ObserveFormat::Har => (None, Some(HarWriter::new(stdout).map_err(write_err)?)),
            _ => (Some(stdout), None),
        };
        if let (ObserveFormat::Table, Some(out)) = (format, lines.as_mut()) {
            writeln!(out, "{}", table::header()).map_err(write_err)?;
        }
        let stop = terminated();
        tokio::pin!(stop);
        loop {
            let msg = tokio::select! {
                m = sock.next() => m,
                _ = &mut stop => break,
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    if a.follow && !resume.fresh(&t) {
                        continue;
                    }
                    match (lines.as_mut(), har.as_mut()) {
                        (Some(out), _) if format == ObserveFormat::Ndjson => writeln!(out, "{}", t.as_str()),
                        (Some(out), _) => writeln!(out, "{}", table::row_json(&serde_json::from_str(&t).unwrap_or_default())),
                        (None, Some(h)) => h.add_value(&serde_json::from_str(&t).unwrap_or_default()).map(drop),
                        (None, None) => Ok(()),
                    }
                    .map_err(write_err)?;
                    if let (true, Some(out)) = (a.follow, lines.as_mut()) {
                        out.flush().map_err(write_err)?;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    // 1001: the hub is going away (stopping); followed, it is waited for
                    if a.follow && code == Some(1001) {
                        sock = reconnect(&addr, &path, &resume, &mut stop).await?;
                        continue;
                    }
                    if let Some(f) = frame.filter(|f| u16::from(f.code) != 1000) {
                        return Err(Failure::Runtime(format!("the hub ended the stream: {}", f.reason)));
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None if a.follow => {
                    sock = reconnect(&addr, &path, &resume, &mut stop).await?;
                }
                Some(Err(e)) => return Err(Failure::Runtime(format!("{}: {e}", a.hub))),
                None => break,
            }
        }
        match (lines, har) {
            (Some(mut out), _) => out.flush().map_err(write_err),
            (None, Some(h)) => h.finish().map(drop).map_err(write_err),
            (None, None) => Ok(()),
        }
    })
}

/// What a followed stream has shown, to resume it after the hub went away: the newest
/// entry's time, and the ids shown since a while before it.
#[derive(Default)]
struct Resume {
    newest: i64,
    shown: std::collections::HashMap<String, i64>,
}

/// How far before the newest entry shown a resumed stream starts (entries a worker resends
/// after a hub restart are older than the restart).
const RESUME_BACK: i64 = 120_000_000_000;

impl Resume {
    /// Whether an entry is new (and notes it as shown).
    fn fresh(&mut self, text: &str) -> bool {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return true;
        };
        let (Some(id), Some(t)) = (v["id"].as_str(), v["timestamp"].as_str()) else {
            return true;
        };
        let ts = kshark_hub::filter::parse_timestamp(t).and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
        if self.shown.contains_key(id) {
            return false;
        }
        self.newest = self.newest.max(ts);
        self.shown.insert(id.to_string(), ts);
        if self.shown.len() > 1 << 18 {
            let keep = self.newest - RESUME_BACK;
            self.shown.retain(|_, t| *t >= keep);
        }
        true
    }

    /// The stream's path from where to resume.
    fn path(&self, path: &str) -> String {
        if self.newest == 0 {
            return path.to_string();
        }
        let from = kshark_dissect::Timestamp((self.newest - RESUME_BACK).max(0) as u64);
        // everything stored since then (what is shown already is left out)
        let base: String = path.split('&').filter(|p| !p.starts_with("last=") && !p.starts_with("since=")).collect::<Vec<_>>().join("&");
        format!("{base}&last=100000000&since={}", encode(&from.to_string()))
    }
}

/// Waits for the hub to come back (or for Ctrl-C) and opens the stream again from where it
/// was.
async fn reconnect(addr: &HubAddr, path: &str, resume: &Resume, stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> Result<kshark_hub::client::Socket, Failure> {
    eprintln!("kshark: the hub's stream ended; reconnecting");
    let path = resume.path(path);
    loop {
        tokio::select! {
            _ = stop.as_mut() => return Err(Failure::Runtime("stopped while the hub was away".into())),
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        if let Ok(s) = addr.websocket(&path).await {
            eprintln!("kshark: reconnected to the hub");
            return Ok(s);
        }
    }
}

fn write_err(e: io::Error) -> Failure {
    Failure::Runtime(format!("cannot write the output: {e}"))
}
