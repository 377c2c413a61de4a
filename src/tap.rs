//! `kshark tap`: capture live traffic of the targeted pods (or interfaces), dissect it,
//! name both ends, and print entries as they complete.

use crate::Failure;
use finish::{tls_report, Finish, Finished, Selection, NAMED_LATE, NAT_COPIES, UNNAMED_AFTER_WAIT};
use clap::{Args, ValueEnum};

/// The entries' last steps on the dissector threads (naming, the join mark, the filter,
/// encoding), and the TLS tracer's report.
#[path = "tap_finish.rs"]
mod finish;
use kshark_capture::ebpf::EbpfSource;
use kshark_capture::identity::{Identity, Shared};
use kshark_capture::kube_watch::{self, KubeSource, Watch};
use kshark_capture::live_pcap::PcapSource;
use kshark_capture::replay::ReplaySource;
use kshark_capture::source::{Iface, IfaceKind, Plan, Source};
use kshark_capture::worker::{self, WorkerConfig};
use kshark_capture::{netns, FileSource};
use kshark_dissect::entry::CaptureSource;
use kshark_dissect::export::table;
use kshark_dissect::Config;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Whether TLS plaintext is read through uprobes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Where the uprobes load (root, a kernel that allows them), and says so either way
    Auto,
    /// Not read
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// eBPF when it loads, else libpcap (and says why)
    Auto,
    /// A TC classifier and a ring buffer (needs root and clang at build time)
    Ebpf,
    /// libpcap, one handle per interface
    Libpcap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TapFormat {
    Ndjson,
    Table,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark nslab up && kshark nslab traffic\n  sudo kshark tap -n sock-shop --no-tui --format ndjson --duration 10s\n  sudo kshark tap 'front-end|catalogue' -n sock-shop --engine libpcap --no-tui\n  sudo kshark tap -i lo --no-tui --duration 30s\n  kshark tap --replay capture.pcap --no-tui --format table\n\nTargets come from the inventory (`--inventory`, or the lab's when it is up): the pods of\nthe namespaces given with -n (or all with -A), narrowed by POD_REGEX. Their host-side veths\nare found through their network namespaces, and followed as pods come and go; only their\naddresses pass the kernel-side filter. With -i, those interfaces are captured instead.\nOn exit (Ctrl-C or --duration) a summary of every stage's counters goes to stderr.")]
pub struct TapArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Print entries to stdout instead of opening the terminal UI (the UI opens only when
    /// stdout is a terminal)
    #[arg(long)]
    no_tui: bool,
    /// Output format [default: table on a terminal, ndjson otherwise]
    #[arg(long, value_enum)]
    format: Option<TapFormat>,
    /// The in-process hub's API (for `kshark observe`, and the dashboard) listens on
    /// 127.0.0.1 at this port (0: any free port)
    #[arg(long, default_value_t = 8899)]
    port: u16,
    /// Also serve the dashboard at http://127.0.0.1:PORT/ (after a replay ends it stays up
    /// until Ctrl-C)
    #[arg(long)]
    web: bool,
    #[command(flatten)]
    deploy: crate::deploy::DeployArgs,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark hub --token-file token &\n  sudo kshark worker --hub http://127.0.0.1:8899 --token-file token -n sock-shop\n  kshark worker --hub http://127.0.0.1:8899 --token-file token --read capture.pcap --speed 0\n  kshark worker --hub https://hub.example:8899 --ca-file ca.pem --token-file token -i eth0\n\nThe worker captures as `tap` does (same targeting flags) and ships entries to the hub:\none WebSocket, batches of up to 2,000 entries (or 100 ms), LZ4-compressed, each kept\nuntil the hub acknowledges it. When the hub goes away the worker reconnects with back-off\nand resends what was not acknowledged; up to 256 MiB waits, then the oldest batches go\n(counted as ship_drops). With --duration or --read it waits up to 30 s for the last\nacknowledgements before it exits.")]
pub struct WorkerArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// The hub: http://HOST:PORT, or https:// when it serves TLS
    #[arg(long, value_name = "URL")]
    hub: String,
    /// The file holding the hub's worker token (first line)
    #[arg(long, value_name = "F")]
    token_file: PathBuf,
    /// Trust this CA (PEM) for an https:// hub, instead of the system's roots
    #[arg(long, value_name = "F")]
    ca_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct CaptureArgs {
    /// Only pods whose name matches this regular expression
    #[arg(value_name = "POD_REGEX")]
    pub(crate) pattern: Option<String>,
    /// Pods of this namespace (repeatable)
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE")]
    pub(crate) namespaces: Vec<String>,
    /// Pods of every namespace
    #[arg(short = 'A', long = "all-namespaces")]
    pub(crate) all: bool,
    /// Capture engine
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) engine: Engine,
    /// TLS: read what processes send and receive through OpenSSL (libssl, or linked in
    /// with symbols) and Go's crypto/tls, before encryption, as entries (capture_source
    /// "ebpf_tls"), through uprobes; what cannot be read is said, with the reason
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) tls: TlsMode,
    /// Capture on these interfaces instead of the pods' veths (repeatable)
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub(crate) ifaces: Vec<String>,
    /// Identity and targets from this file (`kubectl get pods,services,endpoints -A -o json`)
    /// instead of the API server; repeatable
    #[arg(long, value_name = "FILE")]
    pub(crate) inventory: Vec<PathBuf>,
    /// Identity and targets from the API server of this kubeconfig [default: KUBECONFIG,
    /// ~/.kube/config, in-cluster, or the lab's when it is up]
    #[arg(long, value_name = "PATH", conflicts_with = "inventory")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Stop after this long (e.g. 10s, 5m, 1h); default: until Ctrl-C
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    pub(crate) duration: Option<Duration>,
    /// Play a capture file as live traffic instead of capturing
    #[arg(long, visible_alias = "read", value_name = "FILE", conflicts_with_all = ["ifaces", "engine"])]
    pub(crate) replay: Option<PathBuf>,
    /// With --replay: times the recorded pace (0 = as fast as possible)
    #[arg(long, default_value_t = 1.0, requires = "replay")]
    speed: f64,
    /// The node name entries carry [default: this host's name]
    #[arg(long)]
    node: Option<String>,
    /// Dissector threads [default: the number of cores, up to 8]
    #[arg(long)]
    shards: Option<usize>,
    /// Print every counter as JSON on stderr at the end
    #[arg(long)]
    stats: bool,
    /// Only entries this filter matches (e.g. 'http && status_code >= 500'; see the README's "Filters")
    #[arg(long, value_name = "EXPR")]
    pub(crate) filter: Option<String>,
    #[command(flatten)]
    dissect: crate::schema::DissectArgs,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (say 10s, 5m, 1h, 500ms)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "local".into())
}

/// What is targeted, and how to find it again as things change.
struct Targeting {
    inventory: Vec<PathBuf>,
    namespaces: Vec<String>,
    all: bool,
    pattern: Option<regex::Regex>,
    ifaces: Vec<String>,
    loaded: Option<SystemTime>,
    /// The identity cache: kept current by the watch, or reloaded from the files.
    id: Shared,
    /// The API server's watches, when identity comes from one.
    watch: Option<Watch>,
    seen: u64,
    last: Option<Plan>,
    warned: HashSet<String>,
    /// The worker's node (`--node`): pods scheduled elsewhere are another worker's.
    node: Option<String>,
    /// Targeted pods of this node that are not captured, and why ("ns/name", reason).
    uncaptured: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// With `--node`: the node's own addresses (every interface of its namespace, the pod
    /// bridge's too), read at each plan.
    own: Arc<std::sync::RwLock<HashSet<std::net::IpAddr>>>,
}

impl Targeting {
    fn selecting(&self) -> bool {
        !self.namespaces.is_empty() || self.all || self.pattern.is_some()
    }

    /// Whether identity changed: the watch moved on, or a file was rewritten (and is
    /// read again).
    fn reload(&mut self) -> Result<bool, String> {
        if self.watch.is_some() {
            let v = self.id.read().map(|c| c.version()).unwrap_or(0);
            let changed = v != self.seen;
            self.seen = v;
            return Ok(changed);
        }
        let newest = self.inventory.iter().filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).max();
        if newest.is_some() && newest == self.loaded {
            return Ok(false);
        }
        let fresh = kshark_capture::inventory::load(&self.inventory).map_err(|e| e.to_string())?;
        if let Ok(mut c) = self.id.write() {
            *c = fresh;
        }
        self.loaded = newest;
        Ok(true)
    }

    fn plan(&mut self) -> Result<Plan, String> {
        let mut selected: Vec<_> = if self.selecting() {
            self.id.read().map(|c| c.select(&self.namespaces, self.all, self.pattern.as_ref())).unwrap_or_default()
        } else {
            Vec::new()
        };
        if let Some(node) = &self.node {
            // a pod the API places on another node is that node's worker's to capture
            selected.retain(|p| p.node.as_ref().is_none_or(|n| n == node));
            // the addresses kube-proxy's masquerade puts on calls (the pod bridge's, for a
            // NodePort answered here), known from the node itself rather than guessed
            if let Ok(links) = netns::links() {
                let addrs: HashSet<_> = links.into_iter().flat_map(|l| l.addrs).filter(|a| !a.is_loopback()).collect();
                if let Ok(mut own) = self.own.write() {
                    *own = addrs;
                }
            }
        }
        let targets: Option<Vec<_>> = self.selecting().then(|| {
            let mut t: Vec<_> = selected.iter().flat_map(|p| p.ips.iter().copied()).collect();
            t.sort();
            t.dedup();
            t
        });
        let ifaces = if !self.ifaces.is_empty() {
            self.ifaces.iter().map(|i| Iface::named(i)).collect()
        } else {
            let wanted: HashSet<_> = targets.iter().flatten().copied().collect();
            let found = netns::host_veths(&wanted).map_err(|e| format!("cannot read the host's interfaces: {e}"))?;
            let mut by_iface: BTreeMap<String, Vec<_>> = BTreeMap::new();
            let mut uncaptured = Vec::new();
            for p in &selected {
                let mut any = false;
                for a in &p.ips {
                    if let Some(i) = found.get(a) {
                        by_iface.entry(i.clone()).or_default().push(*a);
                        any = true;
                    }
                }
                if !any {
                    let why = format!("no host-side interface found for {} (a CNI without veths in this node's namespace?)", p.ips.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
                    if self.warned.insert(p.name.clone()) {
                        eprintln!("kshark: pod {}/{}: {why}; not captured", p.namespace, p.name);
                    }
                    uncaptured.push((format!("{}/{}", p.namespace, p.name), why));
                }
            }
            if let Ok(mut u) = self.uncaptured.lock() {
                *u = uncaptured;
            }
            by_iface.into_iter().map(|(name, addrs)| Iface { name, kind: IfaceKind::PodVeth, addrs }).collect()
        };
        Ok(Plan { ifaces, targets })
    }
}

fn open_source(engine: Engine, plan: &Plan) -> Result<Box<dyn Source>, Failure> {
    // SAFETY: geteuid has no preconditions.
    let hint = if unsafe { libc::geteuid() } != 0 { " (live capture needs root: run with sudo)" } else { "" };
    let failed = |e: kshark_capture::Error| Failure::Runtime(format!("{e}{hint}"));
    let pcap = || PcapSource::open(plan).map(|s| Box::new(s) as Box<dyn Source>).map_err(failed);
    match engine {
        Engine::Libpcap => pcap(),
        Engine::Ebpf => EbpfSource::open(plan).map(|s| Box::new(s) as Box<dyn Source>).map_err(failed),
        Engine::Auto => match EbpfSource::open(plan) {
            Ok(s) => {
                eprintln!("kshark: engine auto: eBPF loaded ({:?} attach)", s.attach_mode());
                Ok(Box::new(s))
            }
            Err(e) => {
                eprintln!("kshark: engine auto: eBPF unavailable ({e}{hint}); using libpcap");
                pcap()
            }
        },
    }
}

/// Where identity comes from: `--inventory` files; else `--kubeconfig`; else the lab's
/// API server when the lab is up with one; else KUBECONFIG, ~/.kube/config or the
/// in-cluster service account; else the lab's inventory file. A replay without either
/// flag names nothing.
fn identity_source(a: &CaptureArgs) -> (Vec<PathBuf>, Option<KubeSource>) {
    if !a.inventory.is_empty() {
        return (a.inventory.clone(), None);
    }
    if let Some(k) = &a.kubeconfig {
        return (Vec::new(), Some(KubeSource::Kubeconfig(k.clone())));
    }
    if a.replay.is_some() {
        return (Vec::new(), None);
    }
    // the lab's files are root's: a user who cannot read them is not using the lab
    let readable = |p: &str| std::fs::File::open(p).is_ok();
    if readable(crate::lab::KUBECONFIG) {
        eprintln!("kshark: identity from the lab's API server ({})", crate::lab::KUBECONFIG);
        return (Vec::new(), Some(KubeSource::Kubeconfig(crate::lab::KUBECONFIG.into())));
    }
    if user_kubeconfig() || in_cluster() {
        return (Vec::new(), Some(KubeSource::Infer));
    }
    if readable(crate::lab::INVENTORY) {
        eprintln!("kshark: identity from the lab's inventory {}", crate::lab::INVENTORY);
        return (vec![crate::lab::INVENTORY.into()], None);
    }
    (Vec::new(), None)
}

/// `KUBECONFIG` is set or `~/.kube/config` exists.
pub(crate) fn user_kubeconfig() -> bool {
    std::env::var_os("KUBECONFIG").is_some() || std::env::var_os("HOME").is_some_and(|h| std::path::Path::new(&h).join(".kube/config").exists())
}

/// Running in a pod, with its service account.
pub(crate) fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// Where entries go.
pub(crate) enum Sink {
    /// Printed (tap; `None`: not printed, the terminal UI shows them), and kept by the
    /// in-process hub, whose address goes to `announce` once it listens.
    Print { format: Option<TapFormat>, port: u16, web: bool, announce: Option<std::sync::mpsc::Sender<std::net::SocketAddr>> },
    /// Shipped to a hub (worker).
    Ship(kshark_capture::ship::Shipper),
}

pub fn run(t: TapArgs) -> Result<(), Failure> {
    let format = t.format.unwrap_or(if io::stdout().is_terminal() { TapFormat::Table } else { TapFormat::Ndjson });
    crate::read::compile_filter(t.capture.filter.as_deref())?;
    if crate::deploy::wanted(&t.deploy, &t.capture) {
        return crate::deploy::tap(&t.deploy, &t.capture, t.port, t.web, t.no_tui);
    }
    if t.no_tui || !crate::tuicmd::is_terminal() {
        return capture(&t.capture, Sink::Print { format: Some(format), port: t.port, web: t.web, announce: None });
    }
    crate::tuicmd::tap(t.capture, t.port, t.web)
}

pub fn worker(w: WorkerArgs) -> Result<(), Failure> {
    crate::read::compile_filter(w.capture.filter.as_deref())?;
    let token = kshark_hub::client::read_token(&w.token_file).map_err(|e| Failure::Input(e.to_string()))?;
    let addr = kshark_hub::client::HubAddr::parse(&w.hub, Some(token), w.ca_file.clone()).map_err(|e| Failure::Input(e.to_string()))?;
    let node = w.capture.node.clone().unwrap_or_else(hostname);
    let id = format!("{node}/{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()));
    eprintln!("kshark worker: shipping to {} as {id}", addr.display());
    // a refusal (a wrong token) is a mistake to say at once; a hub not up yet is waited for
    let probe = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Failure::Runtime(e.to_string()))?.block_on(async {
        let path = format!("/api/ingest?worker={}", kshark_hub::client::encode(&id));
        match tokio::time::timeout(Duration::from_secs(5), addr.get(&path)).await {
            Ok(Ok((401, body))) => {
                let said = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["error"].as_str().map(str::to_string));
                Err(format!("{} answered 401: {}", addr.display(), said.unwrap_or(body)))
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                eprintln!("kshark worker: {e}; will keep trying");
                Ok(())
            }
            Err(_) => Ok(()),
        }
    });
    probe.map_err(Failure::Runtime)?;
    let shipper = kshark_capture::ship::Shipper::start(kshark_capture::ship::ShipConfig::new(addr, id)).map_err(|e| Failure::Runtime(e.to_string()))?;
    capture(&w.capture, Sink::Ship(shipper))
}

pub(crate) fn capture(a: &CaptureArgs, sink: Sink) -> Result<(), Failure> {
    let pattern = a
        .pattern
        .as_deref()
        .map(|p| regex::Regex::new(p).map_err(|e| Failure::Input(format!("POD_REGEX {p:?}: {e}"))))
        .transpose()?;
    let filter = crate::read::compile_filter(a.filter.as_deref())?;
    let (inventory, kube) = identity_source(a);
    let mut t = Targeting {
        inventory,
        namespaces: a.namespaces.clone(),
        all: a.all,
        pattern,
        ifaces: a.ifaces.clone(),
        loaded: None,
        id: Arc::new(std::sync::RwLock::new(Identity::default())),
        watch: None,
        seen: 0,
        last: None,
        warned: HashSet::new(),
        node: a.node.clone(),
        uncaptured: Arc::new(std::sync::Mutex::new(Vec::new())),
        own: Default::default(),
    };
    if let Some(k) = kube {
        let w = kube_watch::start(k, t.id.clone(), Duration::from_secs(15)).map_err(|e| Failure::Runtime(e.to_string()))?;
        let pods = t.id.read().map(|c| c.pods().count()).unwrap_or(0);
        eprintln!("kshark: identity from the API server {}: {pods} pods", w.description);
        t.watch = Some(w);
    }
    t.reload().map_err(Failure::Input)?;
    if a.replay.is_none() && t.ifaces.is_empty() {
        if !t.selecting() {
            return Err(Failure::Input("say what to tap: -n NAMESPACE, -A, a POD_REGEX, or -i IFACE".into()));
        }
        if t.inventory.is_empty() && t.watch.is_none() {
            return Err(Failure::Input(
                "no identity source: no kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config) and no --inventory FILE (`kubectl get pods,services,endpoints -A -o json`); or start a lab: `kshark lab up` (a real cluster) or `kshark nslab up`".into(),
            ));
        }
    }
    let capture_source = match (&a.replay, a.engine) {
        (Some(_), _) => CaptureSource::File,
        (None, Engine::Libpcap) => CaptureSource::Libpcap,
        _ => CaptureSource::Ebpf,
    };
    let dissect = a.dissect.config(a.node.clone().unwrap_or_else(hostname), capture_source)?;
    let redact = Arc::new(a.dissect.redactor()?);
    // targeted pods (their addresses), for the reports the terminal UI's header shows
    let pods = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let source: Box<dyn Source> = match &a.replay {
        Some(p) => {
            let f = FileSource::open(p).map_err(|e| Failure::Input(e.to_string()))?;
            Box::new(ReplaySource::start(f, (a.speed > 0.0).then_some(a.speed)))
        }
        None => {
            let plan = t.plan().map_err(Failure::Runtime)?;
            if let Some(targets) = &plan.targets {
                pods.store(targets.len() as u64, Ordering::Relaxed);
                eprintln!(
                    "kshark: tapping {} pod addresses on {} interfaces",
                    targets.len(),
                    plan.ifaces.len()
                );
            }
            let s = open_source(a.engine, &plan)?;
            eprintln!("kshark: capturing with {} on {}", s.engine(), s.attached().join(", "));
            t.last = Some(plan);
            s
        }
    };
    let mut cfg = WorkerConfig::new(Config { capture_source: if source.engine() == "libpcap" { CaptureSource::Libpcap } else { dissect.capture_source }, ..dissect });
    if let Some(n) = a.shards {
        cfg.shards = n.max(1);
    }
    // the in-process hub starts once capture is sure to run, so a failure is one line
    let local = match &sink {
        Sink::Print { port, announce, web, .. } => {
            let h = crate::hubcmd::LocalHub::start(*port, *web)?;
            if let Some(a) = announce {
                let _ = a.send(h.addr);
            }
            Some(h)
        }
        Sink::Ship(_) => None,
    };
    let live_stats = std::sync::Arc::new(std::sync::Mutex::new(kshark_capture::worker::WorkerStats::default()));
    cfg.live_stats = Some(live_stats.clone());
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    // batches of finished entries (one per shard wake-up); 64 of them bound what waits
    // for output
    let (tx, rx) = sync_channel::<Finished>(64);
    let filter = filter.map(Arc::new);
    let table_rows = matches!(&sink, Sink::Print { format: Some(TapFormat::Table), .. });
    let replay = a.replay.is_some();
    // the shards name entries from the same cache the watch (or a reload) updates
    let finish = {
        let (id, filter) = (t.id.clone(), filter.clone());
        let captured = Arc::new(Selection { namespaces: t.namespaces.clone(), all: t.all, pattern: t.pattern.clone() });
        let own = (t.node.clone(), t.own.clone());
        // identity from the API server: an address no object holds yet may be a pod the
        // watch has not told of (seconds old), worth a short wait
        let wait_names = t.watch.is_some() && a.replay.is_none();
        move |_shard: usize| Finish {
            tls_libs: None,
            id: id.clone(),
            ct: kshark_capture::conntrack::Conntrack::node(),
            filter: filter.clone(),
            table_rows,
            redact: redact.clone(),
            captured: captured.clone(),
            own: own.clone(),
            wait_names,
            late: Default::default(),
        }
    };
    // TLS plaintext: a second worker whose source is the uprobes, into the same output; it
    // keeps to what the tap captures (the plan's pods, or its interfaces), plan by plan
    let shared_plan = Arc::new(std::sync::Mutex::new(t.last.clone()));
    let mut tls_stats = None;
    let tls_worker = if replay || a.tls == TlsMode::Off {
        None
    } else {
        match kshark_capture::tls::TlsSource::open() {
            Ok(mut s) => {
                // what the tap captures from the start
                if let Some(p) = shared_plan.lock().ok().and_then(|p| p.clone()) {
                    Source::apply(&mut s, &p).map_err(|e| Failure::Runtime(e.to_string()))?;
                }
                let hooked = s.attached();
                eprintln!("kshark: TLS: reading plaintext through uprobes on {}", if hooked.is_empty() { "OpenSSL and Go's crypto/tls, once a process uses them".into() } else { hooked.join(", ") });
                let libs = s.libs.clone();
                tls_stats = Some((s.shared_stats.clone(), s.shared_processes.clone()));
                let mut tcfg = WorkerConfig::new(Config { capture_source: CaptureSource::EbpfTls, ..cfg.dissect.clone() });
                tcfg.shards = 1;
                tcfg.id_offset = 1 << 31;
                let finish = finish.clone();
                let tx = tx.clone();
                let plan = shared_plan.clone();
                Some(std::thread::spawn(move || {
                    // a connection's socket is looked up in /proc when its first call is
                    // read, which must happen before a short-lived client closes it: this
                    // thread goes before the dissectors when the machine is busy
                    // SAFETY: setpriority on this thread (its tid) has no other effect.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10) };
                    let with_libs = move |shard: usize| Finish { tls_libs: Some(libs.clone()), ..finish(shard) };
                    // every second: the plan again, and libraries of processes started since
                    let replan = move || plan.lock().ok().and_then(|p| p.clone());
                    worker::run(Box::new(s), &tcfg, &STOP, replan, with_libs, tx)
                }))
            }
            Err(e) => {
                eprintln!("kshark: TLS: not read ({e}); --tls off to not try");
                None
            }
        }
    };
    let plan_for_tls = shared_plan.clone();
    let uncaptured = t.uncaptured.clone();
    let tls_id = t.id.clone();
    let inv_for_worker = std::sync::Mutex::new(t);
    let pods_for_worker = pods.clone();
    let worker = std::thread::spawn(move || {
        let mut scans = 0u32;
        let replan = move || -> Option<kshark_capture::source::Plan> {
            if replay {
                return None;
            }
            let mut t = inv_for_worker.lock().ok()?;
            let changed = match t.reload() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("kshark: inventory: {e}; keeping the last one");
                    false
                }
            };
            // the namespace scan costs a thread per namespace: every other second
            scans += 1;
            if !changed && scans % 2 == 1 {
                return None;
            }
            match t.plan() {
                Ok(p) if t.last.as_ref() != Some(&p) => {
                    if let Some(old) = &t.last {
                        let before: HashSet<_> = old.ifaces.iter().map(|i| &i.name).collect();
                        let added: Vec<_> = p.ifaces.iter().filter(|i| !before.contains(&i.name)).map(|i| i.name.as_str()).collect();
                        if !added.is_empty() {
                            eprintln!("kshark: now also capturing on {}", added.join(", "));
                        }
                        let after: HashSet<_> = p.ifaces.iter().map(|i| &i.name).collect();
                        let gone: Vec<_> = old.ifaces.iter().filter(|i| !after.contains(&i.name)).map(|i| i.name.as_str()).collect();
                        if !gone.is_empty() {
                            eprintln!("kshark: no longer capturing on {} (pod gone or no longer targeted)", gone.join(", "));
                        }
                    }
                    if let Some(targets) = &p.targets {
                        pods_for_worker.store(targets.len() as u64, Ordering::Relaxed);
                    }
                    t.last = Some(p.clone());
                    if let Ok(mut s) = plan_for_tls.lock() {
                        *s = Some(p.clone());
                    }
                    Some(p)
                }
                Ok(_) => None,
                Err(e) => {
                    eprintln!("kshark: {e}");
                    None
                }
            }
        };
        worker::run(source, &cfg, &STOP, replan, finish, tx)
    });

    let format = match &sink {
        Sink::Print { format, .. } => *format,
        Sink::Ship(_) => None,
    };
    let mut lines: Vec<String> = Vec::new();
    let mut last_report = Instant::now();
    // stdout is held only when entries are printed: the terminal UI draws on it otherwise
    let mut out = format.map(|_| io::BufWriter::with_capacity(256 << 10, io::stdout().lock()));
    if let (Some(TapFormat::Table), Some(out)) = (format, out.as_mut()) {
        let _ = writeln!(out, "{}", table::header());
    }
    let deadline = a.duration.map(|d| Instant::now() + d);
    let mut entries = 0u64;
    let mut filtered_out = 0u64;
    let mut write_failed = false;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            STOP.store(true, Ordering::Relaxed);
        }
        // everything that is ready now, then one write: a pipe reader sees each entry
        // within the wait below, without a syscall per entry under load
        let first = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => {
                // the capture ended by itself (an error, a file's end): the TLS tracer
                // feeding the same output stops with it
                if worker.is_finished() {
                    STOP.store(true, Ordering::Relaxed);
                }
                // (the counters are still reported when nothing comes)
                None
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let more = first.is_some();
        let ready = first.into_iter().chain(std::iter::from_fn(|| if more { rx.try_recv().ok() } else { None }).take(16));
        for f in ready {
            entries += f.seen;
            filtered_out += f.seen - f.lines.len() as u64;
            match format {
                _ if write_failed => {}
                Some(TapFormat::Ndjson) => {
                    for json in &f.lines {
                        buf.extend_from_slice(json.as_bytes());
                        buf.push(b'\n');
                    }
                }
                Some(TapFormat::Table) => buf.extend_from_slice(f.rows.as_bytes()),
                None => {}
            }
            if lines.is_empty() {
                lines = f.lines;
            } else {
                lines.extend(f.lines);
            }
        }
        match &sink {
            Sink::Print { .. } => {
                if let Some(h) = &local {
                    h.feed(std::mem::take(&mut lines));
                }
            }
            Sink::Ship(s) => {
                for l in lines.drain(..) {
                    s.send(l);
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let mut st = live_stats.lock().map(|s| s.clone()).unwrap_or_default();
            st.entries = entries;
            let mut report = st.to_json();
            report["pods"] = pods.load(Ordering::Relaxed).into();
            let missed = uncaptured.lock().map(|u| u.clone()).unwrap_or_default();
            report["pods_not_captured"] = missed.len().into();
            report["nat_copies"] = NAT_COPIES.load(Ordering::Relaxed).into();
            report["named_late"] = NAMED_LATE.load(Ordering::Relaxed).into();
            report["unnamed_after_wait"] = UNNAMED_AFTER_WAIT.load(Ordering::Relaxed).into();
            report["uncaptured_pods"] = missed.iter().map(|(pod, why)| serde_json::json!({"pod": pod, "reason": why})).collect::<Vec<_>>().into();
            if let Some((st, procs)) = &tls_stats {
                report["tls"] = tls_report(st, procs, &tls_id);
            }
            sink_report(&sink, local.as_ref(), report);
        }
        if !write_failed && !buf.is_empty() && out.as_mut().is_some_and(|out| out.write_all(&buf).and_then(|_| out.flush()).is_err()) {
            // the reader went away (a closed pipe): stop capturing
            write_failed = true;
            STOP.store(true, Ordering::Relaxed);
        }
        buf.clear();
    }
    let mut stats = worker.join().map_err(|_| Failure::Runtime("the capture thread panicked".into()))?.map_err(|e| Failure::Runtime(e.to_string()))?;
    if let Some(w) = tls_worker {
        // the capture ended (Ctrl-C, --duration, or an error): so does the tracer
        STOP.store(true, Ordering::Relaxed);
        match w.join() {
            Ok(Ok(ts)) => {
                let t = tls_stats.as_ref().and_then(|(s, _)| s.lock().ok().map(|s| *s)).unwrap_or_default();
                eprintln!(
                    "kshark: TLS: {} plaintext segments, {} entries; {} calls read in {} processes ({} libraries); left out: {} outside what is tapped, {} the other end's copy; lost: {} with no socket found, {} with no fd, {} entries missed, {} to a full ring ({} bytes, gaps in their streams), {} cut at 1 MiB; read at most {} µs after the call",
                    ts.source.packets, ts.dissect.entries, t.calls, t.processes, t.libraries, t.out_of_scope, t.other_end_copies, t.no_socket, t.no_fd, t.missed_entries, t.ring_full, t.gap_bytes, t.truncated_calls, t.max_late_us
                );
                if let Some((st, procs)) = &tls_stats {
                    for l in finish::tls_lines(&tls_report(st, procs, &tls_id)) {
                        eprintln!("kshark: TLS: {l}");
                    }
                }
            }
            Ok(Err(e)) => eprintln!("kshark: TLS: {e}"),
            Err(_) => eprintln!("kshark: TLS: the tracer's thread panicked"),
        }
    }
    stats.entries = entries;
    let drops = stats.drops();
    let drop_text = if drops.is_empty() {
        "no drops".to_string()
    } else {
        drops.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ") + " dropped"
    };
    let shown = if filter.is_some() { format!(" ({} matched the filter)", entries - filtered_out) } else { String::new() };
    eprintln!(
        "kshark: {} packets, {} entries{shown}; {}; {} reassembly gaps",
        stats.source.packets, entries, drop_text, stats.dissect.tcp_gaps
    );
    sink_report(&sink, local.as_ref(), stats.to_json());
    let mut all = stats.to_json();
    if let Some(h) = local {
        // the terminal UI reads this hub: it stays up, with what was captured, until the
        // UI quits
        // and so does the dashboard's after a replay ran out (not after Ctrl-C or --duration)
        let ui = matches!(&sink, Sink::Print { announce: Some(_), .. });
        let web = matches!(&sink, Sink::Print { web: true, .. });
        if web && !ui && !STOP.load(Ordering::Relaxed) {
            eprintln!("kshark: the capture ended; the dashboard stays up at http://{}/ until Ctrl-C", h.addr);
        }
        if ui || web {
            while !STOP.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        h.stop();
    }
    match sink {
        Sink::Print { .. } => {}
        Sink::Ship(s) => {
            // a bounded run (a file, --duration) waits for its last acknowledgements
            let wait = if a.replay.is_some() || a.duration.is_some() { Duration::from_secs(30) } else { Duration::from_secs(3) };
            let ship = s.finish(wait);
            eprintln!(
                "kshark worker: {} entries acknowledged by the hub; {} dropped (buffer full), {} refused, {} too large, {} unacknowledged",
                ship.entries_acked.load(Ordering::Relaxed),
                ship.ship_drops.load(Ordering::Relaxed),
                ship.refused_entries.load(Ordering::Relaxed),
                ship.oversized_entries.load(Ordering::Relaxed),
                ship.unacked_entries.load(Ordering::Relaxed)
            );
            all["ship"] = ship.to_json();
            if ship.lost() > 0 {
                if a.stats {
                    eprintln!("{all}");
                }
                return Err(Failure::Runtime(format!("{} entries did not reach the hub", ship.lost())));
            }
        }
    }
    if a.stats {
        eprintln!("{all}");
    }
    Ok(())
}

fn sink_report(sink: &Sink, local: Option<&crate::hubcmd::LocalHub>, mut stats: serde_json::Value) {
    match sink {
        Sink::Print { .. } => {
            if let Some(h) = local {
                h.report(stats)
            }
        }
        Sink::Ship(s) => {
            let ship = s.stats.to_json();
            stats["ship_drops"] = ship["ship_drops"].clone();
            stats["ship"] = ship;
            s.report(stats)
        }
    }
}

