//! The cluster's two nodes on one machine: each is a network namespace of its own (an
//! `eth0` on the host bridge `ksk-br0`, 172.30.0.1x/24) with a mount namespace of its own,
//! held by one process, in which that node's containerd, kubelet and kube-proxy run.
//!
//! Why namespaces and not kind's node containers: kind runs a container runtime inside a
//! privileged container, which needs a node image, a Docker engine and an overlay mount
//! for the inner runtime's storage; here each node's containerd uses the host's overlay
//! directly, starts in a second, and its pods' veths are ordinary host interfaces in the
//! node's namespace, where a worker with host networking finds them as it would on a real
//! node. What two kubelets on one machine must not share is kept apart:
//! - the network (iptables rules, conntrack, routes, ports 10250 and 10256): the netns;
//! - `/var/log/pods`, which kubelet 1.20 hardcodes and cleans of every pod it does not
//!   know (the other node's): bind-mounted per node inside the mount namespace;
//! - cgroups: each kubelet has a cgroup root of its own (`kshark-lab/node-N`), and the
//!   node's daemons sit in `kshark-lab/node-N/system`, so `lab down` finds every process
//!   the cluster started, containers and shims included, through the cgroup tree.

use super::{io_err, run_cmd, write, CGROUP, DIR, VAR};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct NodeDef {
    pub name: &'static str,
    /// The node's address on the host bridge.
    pub ip: &'static str,
    /// Its pods' subnet (the bridge CNI's host-local range).
    pub cidr: &'static str,
    /// The host-side end of its veth.
    pub veth: &'static str,
}

pub const NODES: [NodeDef; 2] = [
    NodeDef { name: "kshark-node-1", ip: "172.30.0.11", cidr: "10.244.11.0/24", veth: "ksk-node-1" },
    NodeDef { name: "kshark-node-2", ip: "172.30.0.12", cidr: "10.244.12.0/24", veth: "ksk-node-2" },
];

impl NodeDef {
    pub fn netns(&self) -> String {
        format!("ksk-{}", self.short())
    }
    /// node-1, node-2.
    pub fn short(&self) -> &'static str {
        self.name.trim_start_matches("kshark-")
    }
    pub fn dir(&self) -> PathBuf {
        Path::new(DIR).join(self.short())
    }
    pub fn var(&self) -> PathBuf {
        Path::new(VAR).join(self.short())
    }
    pub fn socket(&self) -> String {
        self.dir().join("containerd.sock").display().to_string()
    }
    pub fn cgroup(&self) -> String {
        format!("{CGROUP}/{}", self.short())
    }
}

/// The cgroup v1 hierarchies mounted under /sys/fs/cgroup (each holds a cgroup.procs).
pub fn hierarchies() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists() && !fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()))
        .collect();
    v.sort();
    v
}

/// Makes `rel` in every hierarchy (a cpuset child gets its parent's CPUs and memory nodes,
/// which cgroup v1 leaves empty).
pub fn make_cgroup(rel: &str) -> Result<(), String> {
    for h in hierarchies() {
        let mut at = h.clone();
        for part in rel.split('/') {
            let parent = at.clone();
            at.push(part);
            if !at.exists() {
                fs::create_dir(&at).map_err(|e| format!("cgroup {}: {e}", at.display()))?;
                if h.ends_with("cpuset") {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = fs::read_to_string(parent.join(f)).unwrap_or_default();
                        fs::write(at.join(f), v.trim()).map_err(|e| format!("cgroup {}/{f}: {e}", at.display()))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Moves `pid` into `rel` in every hierarchy.
pub fn enter_cgroup(pid: i32, rel: &str) -> Result<(), String> {
    for h in hierarchies() {
        let f = h.join(rel).join("cgroup.procs");
        fs::write(&f, pid.to_string()).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    Ok(())
}

/// Every process in the cluster's cgroup tree (any hierarchy: pids has all).
pub fn cgroup_pids() -> Vec<i32> {
    let mut out = Vec::new();
    for h in hierarchies() {
        walk(&h.join(CGROUP), &mut |d| {
            for l in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(p) = l.trim().parse::<i32>() {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        });
    }
    out
}

fn walk(d: &Path, f: &mut dyn FnMut(&Path)) {
    if !d.is_dir() {
        return;
    }
    for e in fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&e.path(), f);
        }
    }
    f(d);
}

/// Removes the cluster's cgroups, deepest first; the number removed.
pub fn remove_cgroups() -> usize {
    let mut n = 0;
    for h in hierarchies() {
        walk(&h.join(CGROUP), &mut |d| {
            if fs::remove_dir(d).is_ok() {
                n += 1;
            }
        });
    }
    n
}

/// The node's network: its namespace with `eth0` on the host bridge, routes to the other
/// node's pods, and a dead-end link that takes Service addresses no rule rewrote (local
/// traffic to a ClusterIP needs a route before kube-proxy's OUTPUT rules rewrite it; a
/// default route would send what no rule matches out of the machine).
pub fn network(n: &NodeDef) -> Result<(), String> {
    let ns = n.netns();
    run_cmd("ip", &["netns", "add", &ns])?;
    run_cmd("ip", &["link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
    run_cmd("ip", &["link", "set", n.veth, "master", super::BRIDGE, "up"])?;
    let ipn = |args: &[&str]| {
        let mut v = vec!["-n", ns.as_str()];
        v.extend(args);
        run_cmd("ip", &v)
    };
    ipn(&["addr", "add", &format!("{}/24", n.ip), "dev", "eth0"])?;
    ipn(&["link", "set", "eth0", "up"])?;
    ipn(&["link", "set", "lo", "up"])?;
    for other in NODES.iter().filter(|o| o.name != n.name) {
        ipn(&["route", "add", other.cidr, "via", other.ip])?;
    }
    // (a veth whose peer stays down: this kernel has no dummy links, and a down peer drops)
    ipn(&["link", "add", "ksk-svc", "type", "veth", "peer", "name", "ksk-svc-peer"])?;
    ipn(&["link", "set", "ksk-svc", "up"])?;
    ipn(&["route", "add", super::SERVICE_CIDR, "dev", "ksk-svc"])?;
    for (k, v) in [("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1"), ("net.bridge.bridge-nf-call-ip6tables", "1")] {
        run_cmd("ip", &["netns", "exec", &ns, "sysctl", "-qw", &format!("{k}={v}")])?;
    }
    // the host reaches every pod (for `lab status`' checks and a user's curl)
    run_cmd("ip", &["route", "replace", n.cidr, "via", n.ip])?;
    Ok(())
}

/// Writes the node's containerd config, CNI config and kubelet config.
pub fn configure(n: &NodeDef) -> Result<(), String> {
    let d = n.dir();
    let v = n.var();
    for sub in [d.join("cni"), d.join("containerd"), d.join("log-pods"), v.join("kubelet"), v.join("containerd"), v.join("cni-ipam"), v.join("opt")] {
        fs::create_dir_all(&sub).map_err(io_err(&sub))?;
    }
    let containerd = format!(
        r#"version = 2
root = "{var}/containerd"
state = "{dir}/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # this machine's root lacks CAP_SYS_RESOURCE (runc cannot lower oom_score_adj to the
  # sandbox's -998): keep containers' scores at containerd's own or above
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{dir}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{dir}/runc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{var}/opt"
"#,
        var = v.display(),
        dir = d.display(),
        sock = n.socket(),
        pause = super::PAUSE_IMAGE,
    );
    write(&d.join("containerd.toml"), &containerd)?;
    // bridge + host-local from Debian's containernetworking-plugins; no masquerade: pods
    // talk to pods on the other node with their own addresses, as flannel or Calico do
    let cni = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "kshark-lab",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": n.cidr}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": v.join("cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    });
    write(&d.join("cni/10-kshark-lab.conflist"), &serde_json::to_string_pretty(&cni).unwrap_or_default())?;
    write(&d.join("resolv.conf"), "")?;
    let kubelet = format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {DIR}/pki/ca.crt}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
clusterDNS: [{dns}]
clusterDomain: cluster.local
failSwapOn: false
resolvConf: {dir}/resolv.conf
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
enforceNodeAllocatable: []
protectKernelDefaults: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
"#,
        ip = n.ip,
        cgroup = n.cgroup(),
        dns = super::DNS_IP,
        dir = d.display(),
    );
    write(&d.join("kubelet.yaml"), &kubelet)?;
    Ok(())
}

/// The process that holds the node's mount namespace (in the node's network namespace),
/// with the node's own /var/log/pods bound in; the node's daemons enter it with nsenter.
pub fn hold(n: &NodeDef) -> Result<i32, String> {
    let logs = n.dir().join("log-pods");
    let script = format!("mkdir -p /var/log/pods && mount --bind {} /var/log/pods && exec sleep infinity", logs.display());
    let pid = super::start(
        &format!("{}-holder", n.short()),
        &["nsenter", &format!("--net=/run/netns/{}", n.netns()), "--", "unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", &script],
        Some(&format!("{}/system", n.short())),
    )?;
    // the bind mount is made once sh runs; wait until it shows in the holder's mounts
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        if mounts.lines().any(|l| l.split(' ').nth(4) == Some("/var/log/pods")) {
            return Ok(pid);
        }
        if Instant::now() > deadline || !super::super::pid_alive(pid) {
            return Err(format!("{}: the node's mount namespace did not come up: {}", n.name, super::last_log_line(&format!("{}-holder", n.short()))));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `argv` in the node (its network and mount namespaces), in the node's system cgroup.
pub fn start_in(n: &NodeDef, holder: i32, name: &str, argv: &[&str]) -> Result<i32, String> {
    let t = holder.to_string();
    let mut v = vec!["nsenter", "-t", t.as_str(), "-m", "-n", "--"];
    v.extend(argv);
    super::start(&format!("{}-{name}", n.short()), &v, Some(&format!("{}/system", n.short())))
}

/// containerd, then (once its socket answers) the images, kubelet and kube-proxy.
pub fn start_node(n: &NodeDef, holder: i32, bin: &Path, images: &[PathBuf]) -> Result<(), String> {
    let d = n.dir();
    let cfg = d.join("containerd.toml").display().to_string();
    start_in(n, holder, "containerd", &["containerd", "--config", &cfg])?;
    let sock = n.socket();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctr(&sock, &["version"]).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{}: containerd did not answer within 20 s: {}", n.name, super::last_log_line(&format!("{}-containerd", n.short()))));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for img in images {
        load_image(&sock, img)?;
    }
    let s = |p: &Path| p.display().to_string();
    start_in(
        n,
        holder,
        "kubelet",
        &[
            &s(&bin.join("kubelet")),
            &format!("--config={}", s(&d.join("kubelet.yaml"))),
            &format!("--kubeconfig={}", s(&d.join("kubelet.kubeconfig"))),
            &format!("--root-dir={}", s(&n.var().join("kubelet"))),
            &format!("--cert-dir={}", s(&d.join("kubelet-pki"))),
            &format!("--hostname-override={}", n.name),
            &format!("--node-ip={}", n.ip),
            "--container-runtime=remote",
            &format!("--container-runtime-endpoint=unix://{sock}"),
            "--runtime-request-timeout=2m",
            "--node-labels=kshark.dev/lab=true",
            "--v=1",
        ],
    )?;
    start_in(
        n,
        holder,
        "kube-proxy",
        &[
            &s(&bin.join("kube-proxy")),
            &format!("--kubeconfig={}", s(&d.join("kube-proxy.kubeconfig"))),
            &format!("--hostname-override={}", n.name),
            "--proxy-mode=iptables",
            &format!("--cluster-cidr={}", super::CLUSTER_CIDR),
            &format!("--bind-address={}", n.ip),
            "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256",
            // conntrack's table size is the host's (not per namespace): leave it alone
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--v=1",
        ],
    )?;
    Ok(())
}

/// `ctr` against a node's containerd, in the k8s.io namespace the CRI uses.
pub fn ctr(sock: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ctr").args(["--address", sock, "--namespace", "k8s.io"]).args(args).stdin(Stdio::null()).output().map_err(|e| format!("ctr: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("ctr {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Imports an image archive into a node's containerd (unpacked for overlayfs).
pub fn load_image(sock: &str, archive: &Path) -> Result<(), String> {
    ctr(sock, &["images", "import", &archive.display().to_string()]).map(|_| ())
}
