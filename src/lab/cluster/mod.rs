//! `kshark lab`: a real two-node Kubernetes cluster on this machine, with the sock-shop
//! running in containers on both nodes.
//!
//! - Control plane: etcd and kube-apiserver, controller-manager and scheduler 1.20 built
//!   from Debian's source package (`scripts/k8s.sh`), the API on 172.30.0.1:26443.
//! - Two nodes (`node.rs`), each with its own kubelet (same source package), containerd
//!   1.6 from Debian over CRI, the bridge + host-local CNI plugins from Debian's
//!   containernetworking-plugins, and kube-proxy in iptables mode.
//!   containerd rather than docker 20.10 through dockershim: containerd is what kubelets
//!   use from 1.24 on (dockershim is gone), two containerds on one machine need only their
//!   own sockets and directories where two dockerds would fight over their bridge and
//!   iptables chains, and the CRI plugin runs the CNI plugins itself in the node's namespace.
//! - Cluster DNS at 10.96.0.10 (the tenth address of the Service range, as kubeadm puts
//!   it): dnsmasq in a pod, its records kept from the API's Services by the pod's own
//!   loop (`sockshop.py dns`), reached through kube-proxy like any Service.
//! - Images built offline (`deploy/image/build.sh`): a Debian base by debootstrap, the
//!   sandbox's pause, and kshark's own, imported into each node's containerd.
//! - The sock-shop: Deployments spread over both nodes by nodeSelector, calling each other
//!   by Service name through ClusterIPs. Every call any of them makes is written to a
//!   ledger (`/run/kshark-cluster/ledger/*.ndjson`) for tests to compare with.
//!
//! Everything the cluster starts is in the cgroup tree `kshark-lab`, its namespaces and
//! links have names starting `ksk-`, and its files are under /run/kshark-cluster and
//! /var/lib/kshark-cluster: `lab down` removes exactly that.

mod node;
mod objects;

use crate::Failure;
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams};
use kube::Client;
use node::NODES;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const DIR: &str = "/run/kshark-cluster";
pub const VAR: &str = "/var/lib/kshark-cluster";
/// The cluster's admin credentials (`system:masters`): for `tap`, which deploys into it, and kubectl.
pub const ADMIN_KUBECONFIG: &str = "/run/kshark-cluster/admin.kubeconfig";
/// Where the sock-shop's services and the load generator write every call they make.
pub const LEDGER: &str = "/run/kshark-cluster/ledger";
const CGROUP: &str = "kshark-lab";
const BRIDGE: &str = "ksk-br0";
const HOST_IP: &str = "172.30.0.1";
pub const API_PORT: u16 = 26443;
const ETCD_CLIENT: u16 = 23791;
const ETCD_PEER: u16 = 23801;
/// The Service range (`api::apiserver_args` gives it to the API server).
const SERVICE_CIDR: &str = "10.96.0.0/12";
const CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const DNS_IP: &str = "10.96.0.10";
const PAUSE_IMAGE: &str = "kshark.local/pause:1";
pub const LAB_IMAGE: &str = "kshark.local/lab:1";
/// Host sysctls kubelet sets on start; `lab down` puts back what they were.
const KUBELET_SYSCTLS: &[&str] = &["kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom"];

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark lab up\n  kshark lab traffic --rate 20 --errors 0.1\n  kshark tap -n sock-shop --kubeconfig /run/kshark-cluster/admin.kubeconfig\n  kshark lab status\n  kshark lab down [--images]\n\nThe cluster needs root, containerd, runc, containernetworking-plugins, iptables, conntrack,\netcd and the Kubernetes binaries scripts/k8s.sh builds, and the images deploy/image/build.sh\nbuilds (scripts/setup.sh does all of it). `kshark nslab` is the quicker lab of network\nnamespaces posing as pods.")]
pub struct ClusterArgs {
    #[command(subcommand)]
    cmd: ClusterCmd,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Bring the cluster up (harmless when it is up already) and print what it made
    Up,
    /// Remove everything the cluster made: processes, containers, namespaces, links, cgroups, files
    Down(DownArgs),
    /// Print the nodes, pods and Services, and the kubeconfigs
    Status,
    /// Start (or restart) the load generator: a pod in `loadtest` calling front-end
    Traffic(TrafficArgs),
    /// Import kshark's image (deploy/image/build.sh kshark) into every node again
    Load,
}

#[derive(Args)]
struct DownArgs {
    /// Also remove the images the nodes' containerd hold
    #[arg(long)]
    images: bool,
}

#[derive(Args)]
struct TrafficArgs {
    /// Requests per second to front-end
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Stop after this long (e.g. 30s, 5m)
    #[arg(long, value_parser = crate::tap::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many requests to front-end
    #[arg(long)]
    count: Option<u64>,
    /// Share of calls that fail (404 from catalogue, 500 from carts, payment declined)
    #[arg(long, default_value_t = 0.05)]
    errors: f64,
    /// Share of slow calls (catalogue waits 0.3 to 0.8 s)
    #[arg(long, default_value_t = 0.05)]
    slow: f64,
    /// Stop the load generator
    #[arg(long)]
    stop: bool,
    /// Wait for the load generator to finish (with --duration or --count)
    #[arg(long)]
    wait: bool,
    /// Call front-end from the node's own network at NODE's address and front-end's
    /// NodePort (30001), as a client outside the cluster would: kube-proxy masquerades it
    #[arg(long, value_name = "NODE")]
    node_port: Option<String>,
    /// Call front-end by its Service name from the node's own network (a hostNetwork pod):
    /// kube-proxy masquerades it
    #[arg(long)]
    host_network: bool,
}

pub fn main(a: ClusterArgs) -> Result<(), Failure> {
    super::need_root()?;
    match a.cmd {
        ClusterCmd::Up => up(),
        ClusterCmd::Down(d) => {
            super::say_removed(&down(d.images));
            Ok(())
        }
        ClusterCmd::Status => status(),
        ClusterCmd::Traffic(t) => traffic(t),
        ClusterCmd::Load => {
            let img = image_dir().join("kshark.tar");
            if !img.exists() {
                return Err(Failure::Runtime(format!("no kshark image at {}: bash deploy/image/build.sh kshark", img.display())));
            }
            for n in &NODES {
                node::load_image(&n.socket(), &img).map_err(Failure::Runtime)?;
                say!("lab: kshark:0.1.0 loaded into {}", n.name);
            }
            Ok(())
        }
    }
}

fn io_err(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

fn write(p: &Path, s: &str) -> Result<(), String> {
    fs::write(p, s).map_err(io_err(p))
}

fn path(rel: &str) -> PathBuf {
    Path::new(DIR).join(rel)
}

fn run_cmd(cmd: &str, args: &[&str]) -> Result<(), String> {
    super::run(cmd, args)
}

fn last_log_line(name: &str) -> String {
    let log = fs::read_to_string(path(&format!("log/{name}.log"))).unwrap_or_default();
    log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").chars().take(400).collect()
}

/// Starts a process detached (its own process group, so a Ctrl-C of `lab up` leaves it),
/// logging to log/NAME.log, its pid in pids/NAME, moved into cgroup `kshark-lab/GROUP`.
fn start(name: &str, argv: &[&str], group: Option<&str>) -> Result<i32, String> {
    use std::os::unix::process::CommandExt;
    let logp = path(&format!("log/{name}.log"));
    let log = fs::File::create(&logp).map_err(io_err(&logp))?;
    let err = log.try_clone().map_err(io_err(&logp))?;
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start {name} ({}): {e}", argv[0]))?;
    let pid = child.id() as i32;
    write(&path(&format!("pids/{name}")), &pid.to_string())?;
    node::enter_cgroup(pid, &format!("{CGROUP}/{}", group.unwrap_or("control")))?;
    Ok(pid)
}

fn read_pid(name: &str) -> Option<i32> {
    fs::read_to_string(path(&format!("pids/{name}"))).ok()?.trim().parse().ok()
}

fn alive(name: &str) -> bool {
    read_pid(name).is_some_and(super::pid_alive)
}

/// The processes that must run for the cluster to be up.
fn processes() -> Vec<String> {
    let mut v: Vec<String> = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"].iter().map(|s| s.to_string()).collect();
    for n in &NODES {
        for p in ["holder", "containerd", "kubelet", "kube-proxy"] {
            v.push(format!("{}-{p}", n.short()));
        }
    }
    v
}

fn check_alive() -> Result<(), String> {
    check_alive_prefix(&processes().iter().map(String::as_str).collect::<Vec<_>>())
}

/// Whether each of `names` still runs: the first that does not, with its last log line.
fn check_alive_prefix(names: &[&str]) -> Result<(), String> {
    for &p in names {
        if !alive(p) {
            return Err(format!("{p} exited ({DIR}/log/{p}.log): {}", last_log_line(p)));
        }
    }
    Ok(())
}

pub fn image_dir() -> PathBuf {
    let cache = std::env::var_os("KSHARK_CACHE").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kshark"))).unwrap_or_else(|| "/root/.cache/kshark".into());
    cache.join("images")
}

/// What `lab up` needs and does not have, as one line each.
fn missing() -> Vec<String> {
    let mut v = Vec::new();
    for (tool, pkg) in [
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("ctr", "containerd"),
        ("iptables", "iptables"),
        ("conntrack", "conntrack"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("openssl", "openssl"),
        ("etcd", "etcd-server"),
        ("ip", "iproute2"),
    ] {
        if super::which(tool).is_none() {
            v.push(format!("`{tool}` (apt-get install {pkg})"));
        }
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        if !Path::new("/usr/lib/cni").join(plugin).exists() {
            v.push(format!("the CNI plugin /usr/lib/cni/{plugin} (apt-get install containernetworking-plugins)"));
        }
    }
    match super::api::bindir() {
        Ok(b) => {
            for bin in ["kubelet", "kube-proxy"] {
                if !b.join(bin).exists() {
                    v.push(format!("{bin} in {} (bash scripts/k8s.sh builds it)", b.display()));
                }
            }
        }
        Err(e) => v.push(e),
    }
    for img in ["lab.tar", "pause.tar"] {
        if !image_dir().join(img).exists() {
            v.push(format!("the image {} (bash deploy/image/build.sh base)", image_dir().join(img).display()));
        }
    }
    if !Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() && !Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        v.push("cgroup v1 hierarchies under /sys/fs/cgroup (the kubelet 1.20 needs them)".into());
    }
    v
}

fn up() -> Result<(), Failure> {
    if Path::new(DIR).exists() && check_alive().is_ok() {
        say!("lab: already up");
        return status();
    }
    let need = missing();
    if !need.is_empty() {
        return Err(Failure::Runtime(format!("the cluster lab needs {}; scripts/setup.sh installs and builds all of it", need.join(", "))));
    }
    if Path::new(DIR).exists() || Path::new("/run/netns").join(NODES[0].netns()).exists() {
        down(false); // half there from an earlier run: start clean
    }
    let t = Instant::now();
    if let Err(e) = build(t) {
        if std::env::var_os("KSHARK_LAB_KEEP").is_some() {
            return Err(Failure::Runtime(format!("lab up failed: {e}; left as it is (KSHARK_LAB_KEEP) for a look: {DIR}/log/")));
        }
        let removed = down(false);
        return Err(Failure::Runtime(format!("lab up failed: {e}; cleaned up ({} items)", removed.len())));
    }
    say!("lab: up in {:.1} s", t.elapsed().as_secs_f64());
    status()
}

fn build(t: Instant) -> Result<(), String> {
    for d in ["", "pids", "log", "pki", "ledger"] {
        fs::create_dir_all(path(d)).map_err(io_err(&path(d)))?;
    }
    let saved: Vec<String> = KUBELET_SYSCTLS.iter().map(|k| format!("{k}={}", fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default().trim())).collect();
    write(&path("host-sysctls"), &saved.join("\n"))?;
    let bin = super::api::bindir()?;
    node::make_cgroup(&format!("{CGROUP}/control"))?;
    for n in &NODES {
        node::make_cgroup(&format!("{}/system", n.cgroup()))?;
    }
    // the host's bridge the nodes hang on, and the nodes' networks
    run_cmd("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run_cmd("ip", &["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE])?;
    run_cmd("ip", &["link", "set", BRIDGE, "up"])?;
    for n in &NODES {
        node::network(n)?;
        node::configure(n)?;
    }
    let tokens = objects::credentials(&bin)?;
    objects::control_plane(&bin)?;
    let rt = super::api::runtime()?;
    rt.block_on(async {
        let client = super::api::admin_client_at(ADMIN_KUBECONFIG).await?;
        super::api::wait_api(&client, || check_alive_prefix(&["etcd", "kube-apiserver"])).await?;
        say!("lab: control plane up on https://{HOST_IP}:{API_PORT} in {:.1} s", t.elapsed().as_secs_f64());
        objects::after_api(&bin)?;
        let images: Vec<PathBuf> = ["pause.tar", "lab.tar", "kshark.tar"].iter().map(|i| image_dir().join(i)).filter(|p| p.exists()).collect();
        // the nodes start side by side: each imports its images (seconds each) meanwhile
        let mut handles = Vec::new();
        for (i, n) in NODES.iter().enumerate() {
            let holder = node::hold(n)?;
            let (bin, images) = (bin.clone(), images.clone());
            handles.push(std::thread::spawn(move || node::start_node(&NODES[i], holder, &bin, &images)));
        }
        for h in handles {
            h.join().map_err(|_| "a node's start panicked".to_string())??;
        }
        objects::create(&client, &tokens).await?;
        wait_nodes(&client).await?;
        say!("lab: nodes {} ready in {:.1} s", NODES.iter().map(|n| n.name).collect::<Vec<_>>().join(" and "), t.elapsed().as_secs_f64());
        wait_pods(&client, Duration::from_secs(120)).await?;
        Ok::<(), String>(())
    })
}

fn node_ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_nodes(client: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let api: Api<Node> = Api::all(client.clone());
    loop {
        check_alive()?;
        let list = api.list(&ListParams::default()).await.map_err(|e| format!("list nodes: {e}"))?;
        let ready: Vec<&str> = list.items.iter().filter(|n| node_ready(n)).filter_map(|n| n.metadata.name.as_deref()).collect();
        if NODES.iter().all(|n| ready.contains(&n.name)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("nodes not ready after 60 s (ready: {ready:?}); see {DIR}/log/node-*-kubelet.log"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why a pod is not ready: its phase and the first waiting container's reason.
fn pod_state(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let waiting = st.container_statuses.iter().flatten().filter_map(|c| c.state.as_ref()?.waiting.as_ref()).map(|w| format!("{}: {}", w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default())).next();
    format!("{}{}", st.phase.unwrap_or_default(), waiting.map(|w| format!(" ({w})")).unwrap_or_default())
}

/// Waits until every pod of the lab's Deployments is ready.
async fn wait_pods(client: &Client, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let api: Api<Pod> = Api::all(client.clone());
    loop {
        check_alive()?;
        let list = api.list(&ListParams::default().labels("app.kubernetes.io/part-of=kshark-lab")).await.map_err(|e| format!("list pods: {e}"))?;
        let waiting: Vec<String> = list.items.iter().filter(|p| !pod_ready(p)).map(|p| format!("{}: {}", p.metadata.name.clone().unwrap_or_default(), pod_state(p))).collect();
        if waiting.is_empty() && list.items.len() >= objects::APPS.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("pods not ready after {} s: {}", limit.as_secs(), waiting.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Kills every process of the cluster (its cgroup tree, then what pids/ names), twice
/// over: containerd's shims start containers while their parents die.
fn kill_all() -> usize {
    let mut killed = Vec::new();
    for sig in [libc::SIGTERM, libc::SIGKILL, libc::SIGKILL] {
        let mut pids = node::cgroup_pids();
        for p in in_node_netns() {
            if !pids.contains(&p) {
                pids.push(p);
            }
        }
        for e in fs::read_dir(path("pids")).into_iter().flatten().flatten() {
            if let Some(p) = read_pid(&e.file_name().to_string_lossy()).filter(|p| super::pid_alive(*p)) {
                if !pids.contains(&p) {
                    pids.push(p);
                }
            }
        }
        for &p in &pids {
            // SAFETY: kill(2) on processes the cluster started (its cgroup tree and pid files)
            unsafe { libc::kill(p, sig) };
            if !killed.contains(&p) {
                killed.push(p);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(if sig == libc::SIGTERM { 5 } else { 2 });
        while pids.iter().any(|p| super::pid_alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    killed.len()
}

/// Processes in a node's network namespace (a daemon started by hand, outside the cgroups).
fn in_node_netns() -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let nets: Vec<(u64, u64)> = NODES.iter().filter_map(|n| fs::metadata(Path::new("/run/netns").join(n.netns())).ok()).map(|m| (m.dev(), m.ino())).collect();
    if nets.is_empty() {
        return Vec::new();
    }
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let m = fs::metadata(e.path().join("ns/net")).ok()?;
            nets.contains(&(m.dev(), m.ino())).then_some(pid)
        })
        .collect()
}

/// Removes everything; returns what it removed. Never stops half-way: each step is tried.
fn down(images: bool) -> Vec<String> {
    let mut removed = Vec::new();
    let n = kill_all();
    if n > 0 {
        removed.push(format!("{n} processes"));
    }
    let mut nets = 0;
    for n in &NODES {
        if Path::new("/run/netns").join(n.netns()).exists() && run_cmd("ip", &["netns", "del", &n.netns()]).is_ok() {
            nets += 1;
        }
        if kshark_capture::netns::ifindex(n.veth).is_some() {
            let _ = run_cmd("ip", &["link", "del", n.veth]);
        }
        let _ = run_cmd("ip", &["route", "del", n.cidr]);
    }
    if nets > 0 {
        removed.push(format!("{nets} node network namespaces (their iptables rules and pods' links with them)"));
    }
    if kshark_capture::netns::ifindex(BRIDGE).is_some() && run_cmd("ip", &["link", "del", BRIDGE]).is_ok() {
        removed.push(format!("bridge {BRIDGE}"));
    }
    // the pods' namespaces: containerd bound them under /run/netns inside the nodes' mount
    // namespaces, which are gone, and left the files (one that is still a mount point here
    // is someone else's, in use)
    let mounted: std::collections::HashSet<String> = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().filter_map(|l| l.split(' ').nth(4).map(str::to_string)).collect();
    let stale = fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cni-") && !mounted.contains(&e.path().display().to_string()))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count();
    if stale > 0 {
        removed.push(format!("{stale} pod network namespace files"));
    }
    let cg = node::remove_cgroups();
    if cg > 0 {
        removed.push(format!("{cg} cgroups"));
    }
    // the host's sysctls as they were before kubelet set its own
    for l in fs::read_to_string(path("host-sysctls")).unwrap_or_default().lines() {
        if let Some((k, v)) = l.split_once('=') {
            if !v.is_empty() && KUBELET_SYSCTLS.contains(&k) {
                let _ = fs::write(format!("/proc/sys/{k}"), v);
            }
        }
    }
    if Path::new(DIR).exists() && fs::remove_dir_all(DIR).is_ok() {
        removed.push(DIR.to_string());
    }
    // kubelets' and CNI's state; the nodes' images only when asked
    for n in &NODES {
        for sub in ["kubelet", "cni-ipam", "opt"] {
            let _ = fs::remove_dir_all(n.var().join(sub));
        }
        if images {
            let _ = fs::remove_dir_all(n.var().join("containerd"));
        } else {
            // containers are gone with their processes; their records go with the metadata
            // database only, so keep the content store and snapshots of images
            let _ = fs::remove_dir_all(n.var().join("containerd").join("io.containerd.grpc.v1.cri"));
        }
    }
    if images && Path::new(VAR).exists() && fs::remove_dir_all(VAR).is_ok() {
        removed.push(format!("{VAR} (the nodes' images)"));
    }
    removed
}

fn status() -> Result<(), Failure> {
    if !Path::new(DIR).exists() {
        say!("lab: down (start it with `kshark lab up`)");
        return Ok(());
    }
    if let Err(e) = check_alive() {
        say!("lab: not healthy: {e}");
    }
    let rt = super::api::runtime().map_err(Failure::Runtime)?;
    let text = rt.block_on(async {
        let client = super::api::admin_client_at(ADMIN_KUBECONFIG).await?;
        describe(&client).await
    });
    match text {
        Ok(t) => say!("{t}"),
        Err(e) => say!("API server: not answering ({e})"),
    }
    say!("kubeconfig (admin, for kubectl and `kshark tap`): {ADMIN_KUBECONFIG}");
    say!("kubeconfig (kshark, read-only identity): {DIR}/kshark.kubeconfig");
    say!("kubectl: {}/kubectl --kubeconfig {ADMIN_KUBECONFIG} get pods -A -o wide", super::api::bindir().map(|b| b.display().to_string()).unwrap_or_default());
    say!("ledger: {LEDGER}/   logs: {DIR}/log/");
    say!("next: kshark lab traffic; kshark tap -n sock-shop --kubeconfig {ADMIN_KUBECONFIG}");
    Ok(())
}

/// Nodes, pods (node, IP, state) and Services (ClusterIP, ports), as tables.
async fn describe(client: &Client) -> Result<String, String> {
    let lp = ListParams::default();
    let nodes = Api::<Node>::all(client.clone()).list(&lp).await.map_err(|e| format!("list nodes: {e}"))?;
    let mut out = format!("{:<16} {:<14} {:<16} {:<8} RUNTIME\n", "NODE", "IP", "POD-CIDR", "READY");
    for n in &nodes.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let def = NODES.iter().find(|d| d.name == name);
        let rt = n.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| format!("{} kubelet {}", i.container_runtime_version, i.kubelet_version)).unwrap_or_default();
        out += &format!("{:<16} {:<14} {:<16} {:<8} {rt}\n", name, def.map_or("?", |d| d.ip), def.map_or("?", |d| d.cidr), if node_ready(n) { "yes" } else { "no" });
    }
    let pods = Api::<Pod>::all(client.clone()).list(&lp).await.map_err(|e| format!("list pods: {e}"))?;
    out += &format!("\n{:<12} {:<40} {:<16} {:<14} STATE\n", "NAMESPACE", "POD", "NODE", "IP");
    for p in &pods.items {
        let st = p.status.as_ref();
        out += &format!(
            "{:<12} {:<40} {:<16} {:<14} {}\n",
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
            p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_else(|| "-".into()),
            st.and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| "-".into()),
            if pod_ready(p) { "ready".to_string() } else { pod_state(p) }
        );
    }
    let svcs = Api::<Service>::all(client.clone()).list(&lp).await.map_err(|e| format!("list services: {e}"))?;
    out += &format!("\n{:<12} {:<16} {:<14} PORTS\n", "NAMESPACE", "SERVICE", "CLUSTER-IP");
    for s in &svcs.items {
        let spec = s.spec.clone().unwrap_or_default();
        let ports: Vec<String> = spec.ports.iter().flatten().map(|p| format!("{}/{}", p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))).collect();
        out += &format!(
            "{:<12} {:<16} {:<14} {}\n",
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
            spec.cluster_ip.unwrap_or_default(),
            ports.join(",")
        );
    }
    Ok(out)
}

fn traffic(t: TrafficArgs) -> Result<(), Failure> {
    if !Path::new(DIR).exists() || check_alive().is_err() {
        return Err(Failure::Runtime("the cluster is not up: run `kshark lab up` first".into()));
    }
    if !t.stop && (t.rate.is_nan() || t.rate <= 0.0 || !(0.0..=1.0).contains(&t.errors) || !(0.0..=1.0).contains(&t.slow)) {
        return Err(Failure::Input("--rate must be above 0; --errors and --slow are shares between 0 and 1".into()));
    }
    if t.wait && t.duration.is_none() && t.count.is_none() {
        return Err(Failure::Input("--wait needs --duration or --count".into()));
    }
    let rt = super::api::runtime().map_err(Failure::Runtime)?;
    rt.block_on(async {
        let client = super::api::admin_client_at(ADMIN_KUBECONFIG).await.map_err(Failure::Runtime)?;
        let stopped = objects::stop_load(&client).await.map_err(Failure::Runtime)?;
        if stopped {
            say!("lab: load generator stopped");
        }
        if t.stop {
            return Ok(());
        }
        let secs = t.duration.map_or(0.0, |d| d.as_secs_f64());
        let via = match &t.node_port {
            Some(n) => Some(NODES.iter().find(|d| d.name == n).map(|d| d.ip).ok_or_else(|| Failure::Input(format!("--node-port {n}: no such node (the lab's are {})", NODES.iter().map(|d| d.name).collect::<Vec<_>>().join(", "))))?),
            None => None,
        };
        let pod = objects::start_load(&client, t.rate, secs, t.count.unwrap_or(0), t.errors, t.slow, t.host_network, via).await.map_err(Failure::Runtime)?;
        if let Some(ip) = via {
            say!("lab: the load generator calls front-end at {ip}:{} (NodePort), from {}'s own network", objects::FRONT_END_NODE_PORT, objects::LOAD_NODE);
        } else if t.host_network {
            say!("lab: the load generator calls front-end's ClusterIP from {}'s own network", objects::LOAD_NODE);
        }
        say!(
            "lab: load generator {pod} (loadtest, on {}): {} requests/s to front-end, {:.0}% errors, {:.0}% slow, {}; ledger {LEDGER}/",
            objects::LOAD_NODE,
            t.rate,
            t.errors * 100.0,
            t.slow * 100.0,
            match (t.count, t.duration) {
                (Some(c), _) => format!("{c} requests"),
                (None, Some(d)) => format!("for {:.0} s", d.as_secs_f64()),
                (None, None) => "until stopped".into(),
            }
        );
        if t.wait {
            let summary = objects::wait_load(&client, &pod).await.map_err(Failure::Runtime)?;
            say!("{summary}");
        }
        Ok(())
    })
}
