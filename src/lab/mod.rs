//! `kshark nslab`: a local sock-shop to watch, on any Linux machine with root and no cluster,
//! quicker than the real cluster of `kshark lab` (`cluster/`): no runtime, no kubelet.
//!
//! Each "pod" is a network namespace (`ksl-<app>`) whose `eth0` is a veth to a bridge
//! (`ksl-br0`) in the host namespace, as a bridge CNI makes them. The bridge has no address
//! and the pods no default route: nothing leaves the lab, and there is no NAT. dnsmasq in
//! `kube-dns` answers `NAME.sock-shop.svc.cluster.local`; each pod's resolv.conf (through
//! /etc/netns, which `ip netns exec` mounts) has the cluster's search path. The services
//! are deploy/lab/sockshop.py (embedded), run by a Python with grpcio. Everything the lab
//! makes is listed in /run/kshark-lab, so `lab down` removes exactly that.

/// `println!` that does not panic when stdout is a closed pipe (`kshark nslab status | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod api;
pub mod cluster;
mod kubelet;

use crate::Failure;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const DIR: &str = "/run/kshark-lab";
/// The lab's Pods and Services as `kubectl get pods,services -A -o json` prints them;
/// `tap` reads it when no other identity is given.
pub const INVENTORY: &str = "/run/kshark-lab/inventory.json";
/// kshark's kubeconfig for the lab's API server (a token with get/list/watch on what identity
/// reads): `tap` uses it when present.
pub const KUBECONFIG: &str = "/run/kshark-lab/kubeconfig";
const BRIDGE: &str = "ksl-br0";
const NS_PREFIX: &str = "ksl-";
const SERVICES: &str = include_str!("../../deploy/lab/sockshop.py");
const PAYMENT_PROTO: &str = include_str!("../../deploy/lab/payment.proto");
const SUBNET: [u8; 3] = [10, 244, 1];

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark nslab up\n  kshark nslab traffic --rate 20 --errors 0.1\n  kshark tap -n sock-shop --no-tui\n  kshark nslab status\n  kshark nslab down\n\nThe lab needs root (network namespaces, veths, a bridge), dnsmasq, iproute2 and a Python 3\nwith grpcio (scripts/setup.sh installs them; KSHARK_PYTHON picks another Python). Its control\nplane (etcd, kube-apiserver on https://127.0.0.1:16443, controller-manager, scheduler) needs\netcd-server, openssl and the binaries scripts/k8s.sh builds; `nslab up --no-api` does without.\nkshark's kubeconfig: /run/kshark-lab/kubeconfig; an admin one for kubectl: /run/kshark-lab/admin.kubeconfig.")]
pub struct LabArgs {
    #[command(subcommand)]
    cmd: LabCmd,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Build the lab (harmless when it is up already) and print what it made
    Up(UpArgs),
    /// Remove everything the lab made: processes, namespaces, links, files
    Down,
    /// Print the pods, their addresses and state, and the inventory file
    Status,
    /// Start (or restart) the load generator in the `load-test` pod
    Traffic(TrafficArgs),
    /// The lab's kubelet: gives pods bound to the lab's node their namespace's address (run by `lab up`)
    #[command(hide = true)]
    Kubelet,
}

#[derive(Args)]
struct UpArgs {
    /// No control plane: name the pods from the inventory file only (no kube-apiserver needed)
    #[arg(long)]
    no_api: bool,
}

#[derive(Args)]
struct TrafficArgs {
    /// Requests per second to front-end
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Stop after this long (e.g. 30s, 5m); default: until `lab traffic --stop` or `lab down`
    #[arg(long, value_parser = crate::tap::parse_duration)]
    duration: Option<Duration>,
    /// Share of calls that fail (404 from catalogue, 500 from carts, payment declined)
    #[arg(long, default_value_t = 0.05)]
    errors: f64,
    /// Share of slow calls (catalogue waits 0.3 to 0.8 s)
    #[arg(long, default_value_t = 0.05)]
    slow: f64,
    /// Stop the load generator
    #[arg(long)]
    stop: bool,
    /// Wait for the load generator to finish (with --duration)
    #[arg(long, requires = "duration")]
    wait: bool,
}

/// One pod of the lab.
struct PodDef {
    app: &'static str,
    namespace: &'static str,
    role: &'static str,
    port: u16,
    host: u8,
}

const PODS: &[PodDef] = &[
    PodDef { app: "kube-dns", namespace: "kube-system", role: "dns", port: 53, host: 10 },
    PodDef { app: "front-end", namespace: "sock-shop", role: "front-end", port: 8079, host: 11 },
    PodDef { app: "catalogue", namespace: "sock-shop", role: "catalogue", port: 80, host: 12 },
    PodDef { app: "catalogue-db", namespace: "sock-shop", role: "catalogue-db", port: 3306, host: 13 },
    PodDef { app: "carts", namespace: "sock-shop", role: "carts", port: 80, host: 14 },
    PodDef { app: "carts-db", namespace: "sock-shop", role: "carts-db", port: 27017, host: 15 },
    PodDef { app: "orders", namespace: "sock-shop", role: "orders", port: 80, host: 16 },
    PodDef { app: "orders-db", namespace: "sock-shop", role: "orders-db", port: 27017, host: 17 },
    PodDef { app: "payment", namespace: "sock-shop", role: "payment", port: 50051, host: 18 },
    PodDef { app: "shipping", namespace: "sock-shop", role: "shipping", port: 80, host: 19 },
    PodDef { app: "queue-master", namespace: "sock-shop", role: "queue-master", port: 0, host: 20 },
    PodDef { app: "rabbitmq", namespace: "sock-shop", role: "rabbitmq", port: 15672, host: 21 },
    PodDef { app: "user", namespace: "sock-shop", role: "user", port: 80, host: 22 },
    PodDef { app: "user-db", namespace: "sock-shop", role: "user-db", port: 27017, host: 23 },
    PodDef { app: "load-test", namespace: "loadtest", role: "load", port: 0, host: 30 },
];

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Kubernetes-style name suffix: the alphabet of rand.SafeEncodeString.
fn suffix(mut h: u64, n: usize) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| {
            let c = A[(h % A.len() as u64) as usize] as char;
            h /= A.len() as u64;
            c
        })
        .collect()
}

impl PodDef {
    fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], self.host)
    }
    fn netns(&self) -> String {
        format!("{NS_PREFIX}{}", self.app)
    }
    fn veth(&self) -> String {
        format!("{NS_PREFIX}{:08x}", fnv(self.app) as u32)
    }
    fn template_hash(&self) -> String {
        suffix(fnv(&format!("rs/{}", self.app)), 10)
    }
    fn protocol(&self) -> &'static str {
        if self.role == "dns" {
            "UDP"
        } else {
            "TCP"
        }
    }
    fn pod_name(&self) -> String {
        format!("{}-{}-{}", self.app, self.template_hash(), suffix(fnv(&format!("pod/{}", self.app)), 5))
    }
}

pub(crate) fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{cmd} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn python() -> Result<String, String> {
    let candidates: Vec<String> = match std::env::var("KSHARK_PYTHON") {
        Ok(p) => vec![p],
        Err(_) => {
            let mut v = Vec::new();
            if let Ok(c) = std::env::var("KSHARK_CACHE") {
                v.push(format!("{c}/venv/bin/python"));
            }
            if let Ok(h) = std::env::var("HOME") {
                v.push(format!("{h}/.cache/kshark/venv/bin/python"));
            }
            v.push("/root/.cache/kshark/venv/bin/python".into());
            v.push("python3".into());
            v
        }
    };
    for p in &candidates {
        let ok = Command::new(p).args(["-c", "import grpc"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return Ok(p.clone());
        }
    }
    Err(format!("the lab's services need a Python 3 with grpcio (tried {}); run scripts/setup.sh", candidates.join(", ")))
}

pub(crate) fn need_root() -> Result<(), Failure> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Failure::Runtime("the lab needs root (network namespaces, veths, a bridge): run it with sudo".into()));
    }
    Ok(())
}

pub fn main(a: LabArgs) -> Result<(), Failure> {
    need_root()?;
    match a.cmd {
        LabCmd::Up(u) => up(u.no_api),
        LabCmd::Down => {
            say_removed(&down());
            Ok(())
        }
        LabCmd::Status => status(),
        LabCmd::Traffic(t) => traffic(t),
        LabCmd::Kubelet => kubelet::main(),
    }
}

/// What `down` removed, as one line.
fn say_removed(removed: &[String]) {
    if removed.is_empty() {
        say!("lab: nothing to remove");
    } else {
        say!("lab: removed {}", removed.join(", "));
    }
}

fn lab_path(rel: &str) -> PathBuf {
    Path::new(DIR).join(rel)
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

pub(crate) fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && !fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn read_pid(name: &str) -> Option<i32> {
    fs::read_to_string(lab_path(&format!("pids/{name}"))).ok()?.trim().parse().ok()
}

/// Whether every pod runs, and the control plane when the lab has one.
fn healthy() -> bool {
    let pods = Path::new(INVENTORY).exists()
        && PODS.iter().filter(|p| p.role != "load").all(|p| netns_exists(&p.netns()) && read_pid(p.app).is_some_and(pid_alive));
    pods && (!Path::new(api::ADMIN_KUBECONFIG).exists() || (Path::new(KUBECONFIG).exists() && api::running()))
}

fn up(no_api: bool) -> Result<(), Failure> {
    if healthy() {
        say!("lab: already up");
        return status();
    }
    if Path::new(DIR).exists() || PODS.iter().any(|p| netns_exists(&p.netns())) {
        down(); // half there from an earlier run: start clean
    }
    let py = python().map_err(Failure::Runtime)?;
    for tool in ["ip", "dnsmasq"] {
        if which(tool).is_none() {
            return Err(Failure::Runtime(format!("the lab needs `{tool}` (apt-get install iproute2 dnsmasq-base; scripts/setup.sh does)")));
        }
    }
    let bin = if no_api { None } else { Some(api::bindir().map_err(Failure::Runtime)?) };
    if bin.is_some() && which("openssl").is_none() {
        return Err(Failure::Runtime("the lab's API server needs `openssl` for its certificates (apt-get install openssl)".into()));
    }
    let t = Instant::now();
    let built = build(&py).and_then(|()| match &bin {
        Some(bin) => api::start(bin),
        None => fs::write(INVENTORY, serde_json::to_vec_pretty(&inventory()).unwrap_or_default()).map_err(|e| format!("{INVENTORY}: {e}")),
    });
    if let Err(e) = built {
        let removed = down();
        return Err(Failure::Runtime(format!("lab up failed: {e}; cleaned up ({} items)", removed.len())));
    }
    say!("lab: up in {:.1} s", t.elapsed().as_secs_f64());
    status()
}

pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

fn build(py: &str) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{DIR}: {e}");
    for d in ["", "pids", "log", "ready"] {
        fs::create_dir_all(lab_path(d)).map_err(io)?;
    }
    fs::write(lab_path("sockshop.py"), SERVICES).map_err(io)?;
    fs::write(lab_path("payment.proto"), PAYMENT_PROTO).map_err(io)?;
    let mut hosts = String::new();
    for p in PODS {
        hosts.push_str(&format!("{} {}.{}.svc.cluster.local\n", p.ip(), p.app, p.namespace));
    }
    fs::write(lab_path("hosts"), hosts).map_err(io)?;

    ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    for p in PODS {
        let ns = p.netns();
        ip(&["netns", "add", &ns])?;
        ip(&["link", "add", &p.veth(), "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        ip(&["link", "set", &p.veth(), "master", BRIDGE, "up"])?;
        let addr = format!("{}/24", p.ip());
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // what `ip netns exec` mounts over /etc: the pod's view of DNS and its own name
        let etc = Path::new("/etc/netns").join(&ns);
        fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
        let dns = PODS[0].ip();
        fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {dns}\nsearch {0}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n", p.namespace),
        )
        .map_err(|e| format!("{}: {e}", etc.display()))?;
        fs::write(etc.join("hosts"), format!("127.0.0.1 localhost\n{} {}\n", p.ip(), p.pod_name())).map_err(|e| format!("{}: {e}", etc.display()))?;
    }
    // kube-dns first: the others resolve through it
    let dns = &PODS[0];
    spawn(
        dns,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            &format!("--addn-hosts={DIR}/hosts"),
            "--local=/cluster.local/",
            &format!("--listen-address={}", dns.ip()),
            "--bind-interfaces",
            "--pid-file=",
            "--user=root",
            "--cache-size=0",
        ],
    )?;
    let script = format!("{DIR}/sockshop.py");
    for p in PODS.iter().filter(|p| p.role != "dns" && p.role != "load") {
        spawn(p, &[py, &script, "serve", p.role, &p.port.to_string()])?;
    }
    // dnsmasq has no ready file: wait for its pid and the services' files
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: Vec<&str> = PODS
            .iter()
            .filter(|p| p.role != "dns" && p.role != "load")
            .filter(|p| !lab_path(&format!("ready/{}", p.pod_name())).exists())
            .map(|p| p.app)
            .collect();
        if waiting.is_empty() {
            break;
        }
        for p in PODS.iter().filter(|p| p.role != "load") {
            if !read_pid(p.app).is_some_and(pid_alive) {
                let log = fs::read_to_string(lab_path(&format!("log/{}.log", p.app))).unwrap_or_default();
                return Err(format!("{} exited: {}", p.app, log.lines().last().unwrap_or("(no output)")));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("services not ready after 30 s: {}", waiting.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Starts a command in a pod's namespace, detached, logging to log/APP.log.
fn spawn(p: &PodDef, argv: &[&str]) -> Result<i32, String> {
    start_process(p.app, argv, Some(&p.netns()))
}

/// Starts a command (in a network namespace, or the host's), detached from the shell that
/// ran `lab up`, logging to log/NAME.log; its pid goes to pids/NAME for `lab down`.
fn start_process(name: &str, argv: &[&str], netns: Option<&str>) -> Result<i32, String> {
    let log = fs::File::create(lab_path(&format!("log/{name}.log"))).map_err(|e| format!("log: {e}"))?;
    let err = log.try_clone().map_err(|e| format!("log: {e}"))?;
    use std::os::unix::process::CommandExt;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let child = cmd
        .env("LAB_DIR", DIR)
        .env("PYTHONUNBUFFERED", "1")
        .env("GRPC_DNS_RESOLVER", "native")
        .envs(PODS.iter().find(|p| p.app == name).map(|p| ("POD", p.pod_name())))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0) // not killed by the Ctrl-C of the shell that ran `lab up`
        .spawn()
        .map_err(|e| format!("start {name}: {e}"))?;
    let pid = child.id() as i32;
    fs::write(lab_path(&format!("pids/{name}")), pid.to_string()).map_err(|e| format!("pids: {e}"))?;
    Ok(pid)
}

/// The lab as `kubectl get pods,services -A -o json` would print it.
fn inventory() -> Value {
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "lab".into());
    let mut items = Vec::new();
    for p in PODS {
        let hash = p.template_hash();
        let ports: Vec<Value> = (p.port != 0)
            .then(|| json!({"containerPort": p.port, "protocol": p.protocol()}))
            .into_iter()
            .collect();
        items.push(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": p.pod_name(),
                "namespace": p.namespace,
                "labels": {"name": p.app, "pod-template-hash": hash},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{}-{hash}", p.app), "controller": true}],
            },
            "spec": {"nodeName": node, "containers": [{"name": p.app, "image": format!("kshark-lab/{}", p.role), "ports": ports}]},
            "status": {"phase": "Running", "podIP": p.ip().to_string(), "podIPs": [{"ip": p.ip().to_string()}], "hostIP": "127.0.0.1"},
        }));
    }
    for p in PODS.iter().filter(|p| p.port != 0) {
        items.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": p.app, "namespace": p.namespace, "labels": {"name": p.app}},
            "spec": {"clusterIP": "None", "selector": {"name": p.app}, "ports": [{"port": p.port, "targetPort": p.port, "protocol": p.protocol()}]},
        }));
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
}

/// Processes whose network namespace is one of the lab's.
fn processes_in_lab() -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let lab: Vec<(u64, u64)> = fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(NS_PREFIX))
        .filter_map(|e| fs::metadata(e.path()).ok().map(|m| (m.dev(), m.ino())))
        .collect();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(m) = fs::metadata(e.path().join("ns/net")) {
            if lab.contains(&(m.dev(), m.ino())) {
                out.push(pid);
            }
        }
    }
    out
}

/// Removes everything; returns what it removed. Never fails half-way: each step is tried.
fn down() -> Vec<String> {
    let mut removed = Vec::new();
    // everything the lab started (pods and control plane), then whatever else runs in its namespaces
    let started = fs::read_dir(lab_path("pids")).into_iter().flatten().flatten().filter_map(|e| read_pid(&e.file_name().to_string_lossy()));
    let mut pids: Vec<i32> = started.filter(|p| pid_alive(*p)).collect();
    for p in processes_in_lab() {
        if !pids.contains(&p) {
            pids.push(p);
        }
    }
    for &p in &pids {
        // SAFETY: plain kill(2) on processes the lab started (or that live in its namespaces)
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|p| pid_alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in pids.iter().filter(|p| pid_alive(**p)) {
        // SAFETY: as above
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    if !pids.is_empty() {
        removed.push(format!("{} processes", pids.len()));
    }
    let mut n = 0;
    for p in PODS {
        if netns_exists(&p.netns()) && ip(&["netns", "del", &p.netns()]).is_ok() {
            n += 1;
        }
        if kshark_capture::netns::ifindex(&p.veth()).is_some() {
            let _ = ip(&["link", "del", &p.veth()]);
        }
        let _ = fs::remove_dir_all(Path::new("/etc/netns").join(p.netns()));
    }
    if n > 0 {
        removed.push(format!("{n} network namespaces"));
    }
    if kshark_capture::netns::ifindex(BRIDGE).is_some() && ip(&["link", "del", BRIDGE]).is_ok() {
        removed.push(format!("bridge {BRIDGE}"));
    }
    if Path::new(DIR).exists() && fs::remove_dir_all(DIR).is_ok() {
        removed.push(DIR.to_string());
    }
    removed
}

fn status() -> Result<(), Failure> {
    if !Path::new(DIR).exists() {
        say!("lab: down (start it with `kshark nslab up`)");
        return Ok(());
    }
    // with a control plane, the pods are the API's: their names, and any that wait
    let from_api = Path::new(api::ADMIN_KUBECONFIG).exists().then(|| api::runtime().and_then(|rt| rt.block_on(async { api::lab_pods(&api::admin_client().await?).await })));
    let api_pods = match &from_api {
        Some(Ok(p)) => Some(p.as_slice()),
        Some(Err(e)) => {
            say!("API server: not answering ({e})");
            None
        }
        None => None,
    };
    say!("{:<14} {:<38} {:<12} {:<14} {:<6} {:<12} STATE", "APP", "POD", "NAMESPACE", "IP", "PORT", "HOST-VETH");
    for p in PODS {
        let pid = read_pid(p.app);
        let state = match (netns_exists(&p.netns()), pid) {
            (false, _) => "no namespace".to_string(),
            (true, Some(pid)) if pid_alive(pid) => format!("running (pid {pid})"),
            (true, _) if p.role == "load" => "idle (start with `kshark nslab traffic`)".to_string(),
            (true, _) => "stopped".to_string(),
        };
        let ip = p.ip().to_string();
        let name = match api_pods {
            Some(pods) => pods
                .iter()
                .find(|q| api::pod_ip(q) == Some(ip.as_str()) && q.metadata.deletion_timestamp.is_none())
                .and_then(|q| q.metadata.name.clone())
                .unwrap_or_else(|| "(no pod)".into()),
            None => p.pod_name(),
        };
        let port = if p.port == 0 { "-".to_string() } else { p.port.to_string() };
        say!("{:<14} {:<38} {:<12} {:<14} {:<6} {:<12} {state}", p.app, name, p.namespace, ip, port, p.veth());
    }
    for q in api_pods.into_iter().flatten().filter(|q| api::pod_ip(q).is_none()) {
        let why = q.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_else(|| "waiting for the scheduler".into());
        say!("pending: {}/{}: {why}", q.metadata.namespace.as_deref().unwrap_or(""), q.metadata.name.as_deref().unwrap_or(""));
    }
    say!("bridge: {BRIDGE} (no address, no route out)   DNS: {} (dnsmasq, *.svc.cluster.local)", PODS[0].ip());
    if api_pods.is_some() {
        say!("API server: https://127.0.0.1:{} (kube-apiserver, etcd, controller-manager, scheduler; node {})", api::API_PORT, api::NODE);
        say!("kubeconfig: {KUBECONFIG} (kshark: get/list/watch)   admin: {}", api::ADMIN_KUBECONFIG);
    }
    say!("inventory: {INVENTORY}   gRPC schema: {DIR}/payment.proto   logs: {DIR}/log/");
    say!("next: kshark nslab traffic; kshark tap -n sock-shop --no-tui");
    Ok(())
}

fn traffic(t: TrafficArgs) -> Result<(), Failure> {
    if !healthy() {
        return Err(Failure::Runtime("the lab is not up: run `kshark nslab up` first".into()));
    }
    let load = PODS.iter().find(|p| p.role == "load").expect("load pod");
    if let Some(pid) = read_pid(load.app).filter(|p| pid_alive(*p)) {
        // SAFETY: the load generator the lab started
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_file(lab_path(&format!("pids/{}", load.app)));
        say!("lab: load generator stopped");
    }
    if t.stop {
        return Ok(());
    }
    if t.rate.is_nan() || t.rate <= 0.0 || !(0.0..=1.0).contains(&t.errors) || !(0.0..=1.0).contains(&t.slow) {
        return Err(Failure::Input("--rate must be above 0; --errors and --slow are shares between 0 and 1".into()));
    }
    let py = python().map_err(Failure::Runtime)?;
    let secs = t.duration.map_or(0.0, |d| d.as_secs_f64());
    let script = format!("{DIR}/sockshop.py");
    let pid = spawn(load, &[&py, &script, "load", &t.rate.to_string(), &secs.to_string(), &t.errors.to_string(), &t.slow.to_string()])
        .map_err(Failure::Runtime)?;
    say!(
        "lab: load generator running in {} (pid {pid}): {} requests/s to front-end, {:.0}% errors, {:.0}% slow, {}",
        load.netns(),
        t.rate,
        t.errors * 100.0,
        t.slow * 100.0,
        t.duration.map_or("until stopped".to_string(), |d| format!("for {:.0} s", d.as_secs_f64()))
    );
    if t.wait {
        while pid_alive(pid) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // reap it: it is our child
        let mut status = 0;
        // SAFETY: waitpid on our own child
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let log = fs::read_to_string(lab_path(&format!("log/{}.log", load.app))).unwrap_or_default();
        say!("{}", log.lines().last().unwrap_or("load: no output"));
    }
    Ok(())
}
