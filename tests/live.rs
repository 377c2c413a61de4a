//! Live capture against the lab: `kshark lab up`, traffic on, `kshark tap -n sock-shop`
//! with each engine while tshark records the lab's bridge; both must see the same
//! requests, with pod names on both ends and no drops. Then the lab's own promises: `up`
//! twice is harmless, a failure half-way cleans up, `down` leaves nothing behind.
//!
//! Needs root (network namespaces, veths, TC programs), tshark, dnsmasq, clang at build
//! time and the grpcio venv; `sudo bash scripts/setup.sh` installs them. When one is
//! missing the test fails and says which. The lab is one per machine: the tests here take
//! turns through a lock.

mod common;
use common::lab::{kshark_bin, lab, lab_api, need, need_root, poll};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static LAB: Mutex<()> = Mutex::new(());

/// What the lab leaves in the system: namespaces, links, processes.
fn leftovers() -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("ksl-") {
            v.push(format!("netns {n}"));
        }
    }
    for e in std::fs::read_dir("/sys/class/net").into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("ksl-") {
            v.push(format!("link {n}"));
        }
    }
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("/run/kshark-lab") {
            v.push(format!("process {}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    if Path::new("/run/kshark-lab").exists() {
        v.push("/run/kshark-lab".into());
    }
    v
}

/// A child whose stderr is collected by a thread, so it never blocks on a full pipe.
struct Watched {
    child: Child,
    err: std::sync::Arc<Mutex<String>>,
}

impl Watched {
    fn new(mut child: Child) -> Watched {
        let err = std::sync::Arc::new(Mutex::new(String::new()));
        let sink = err.clone();
        let mut r = BufReader::new(child.stderr.take().expect("stderr piped"));
        std::thread::spawn(move || loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&l);
        });
        Watched { child, err }
    }

    fn wait_for(&mut self, needle: &str, what: &str) -> String {
        let t0 = Instant::now();
        loop {
            let text = self.err.lock().unwrap().clone();
            if text.contains(needle) {
                return text;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{what} ended ({st}) before it was ready: {text}");
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "{what} not ready: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }
}

/// Starts `kshark ARGS` with stderr watched and stdout collected by a thread (joined for
/// the whole output once the process ends).
fn start_tap(cmd: &mut Command, what: &str) -> (Watched, String, std::thread::JoinHandle<String>) {
    let mut tap = Watched::new(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start kshark tap"));
    let head = tap.wait_for("capturing with", what);
    let stdout = tap.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    (tap, head, reader)
}

/// A request as both tools can name it: client address and port, method (for gRPC: the
/// HTTP/2 stream id), path.
type Req = (String, u16, String, String);
type Query = (String, u16, String);

/// The lab's services speak HTTP on the ports of the databases they stand in for (MySQL's
/// 3306, MongoDB's 27017): tshark is told so, as it would be told with "Decode As".
fn tshark_requests(pcap: &Path, from: f64, to: f64) -> (BTreeSet<Req>, BTreeSet<Req>, BTreeSet<Query>) {
    let fields_of = |filter: &str, f: &[&str], occurrence: &str| -> Vec<Vec<String>> {
        let mut args: Vec<String> =
            ["-r", pcap.to_str().unwrap(), "-d", "tcp.port==50051,http2", "-d", "tcp.port==3306,http", "-d", "tcp.port==27017,http", "-Y", filter, "-T", "fields", "-E", "separator=\t", "-E", occurrence]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(["-e", "frame.time_epoch"].iter().map(|s| s.to_string()));
        for x in f {
            args.push("-e".into());
            args.push(x.to_string());
        }
        let o = Command::new("tshark").args(&args).output().expect("run tshark");
        assert!(o.status.success(), "tshark failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(|l| l.split('\t').map(String::from).collect()).collect()
    };
    let fields = |filter: &str, f: &[&str]| fields_of(filter, f, "occurrence=f");
    let inside = |row: &Vec<String>| row[0].parse::<f64>().is_ok_and(|t| t >= from && t <= to);
    let http = fields("http.request", &["ip.src", "tcp.srcport", "http.request.method", "http.request.uri"])
        .into_iter()
        .filter(inside)
        .map(|r| (r[1].clone(), r[2].parse().unwrap(), r[3].clone(), r[4].clone()))
        .collect();
    // one segment may carry several frames (a new connection's SETTINGS and WINDOW_UPDATE
    // on stream 0 before the first HEADERS): each :path goes with its HEADERS frame's stream
    let grpc = fields_of("http2.header.name == \":path\" && tcp.dstport == 50051", &["ip.src", "tcp.srcport", "http2.type", "http2.streamid", "http2.headers.path"], "occurrence=a")
        .into_iter()
        .filter(inside)
        .flat_map(|r| {
            let streams: Vec<&str> = r[3].split(',').zip(r[4].split(',')).filter(|(t, _)| *t == "1").map(|(_, s)| s).collect();
            let calls: Vec<Req> = streams.iter().zip(r[5].split(',')).map(|(s, p)| (r[1].clone(), r[2].parse().unwrap(), s.to_string(), p.to_string())).collect();
            calls
        })
        .collect();
    let dns = fields("dns.flags.response == 0", &["ip.src", "udp.srcport", "dns.qry.name"])
        .into_iter()
        .filter(inside)
        .map(|r| (r[1].clone(), r[2].parse().unwrap_or(0), r[3].clone()))
        .collect();
    (http, grpc, dns)
}

fn epoch(ts: &str) -> f64 {
    // 2026-11-21T03:00:10.551727171Z
    let (date, time) = ts.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    // days from civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

fn tap_with(engine: &str) {
    lab(&["down"]);
    let up = lab(&["up"]);
    assert!(up.contains("front-end") && up.contains("/run/kshark-lab/inventory.json"), "lab up printed: {up}");
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("bridge.pcapng");
    let mut tshark = Watched::new(
        Command::new("tshark")
            .args(["-i", "ksl-br0", "-q", "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark"),
    );
    tshark.wait_for("Capturing on", "tshark");
    let (mut tap, head, reader) =
        start_tap(Command::new(kshark_bin()).args(["tap", "--port", "0", "-n", "sock-shop", "--engine", engine, "--no-tui", "--format", "ndjson", "--duration", "12s", "--stats"]), "kshark tap");
    assert!(head.contains(&format!("capturing with {engine}")), "tap did not use {engine}: {head}");
    let t_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    lab(&["traffic", "--rate", "10", "--duration", "6s", "--wait"]);
    let t_end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let status = tap.child.wait().unwrap();
    let out = reader.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let tail = tap.stderr();
    assert!(status.success(), "tap failed: {tail}");
    // give tshark a moment to write its last packets, then end it (it is ours)
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the tshark we started
    unsafe { libc::kill(tshark.child.id() as i32, libc::SIGINT) };
    let _ = tshark.child.wait();

    let stats: Value = serde_json::from_str(tail.lines().rev().find(|l| l.starts_with('{')).expect("--stats line")).unwrap();
    for k in ["kernel_drops", "ring_drops", "queue_drops", "incomplete_packets"] {
        assert_eq!(stats[k], 0, "{engine}: {k} at the lab's default rate: {stats}");
    }
    let entries: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    let lab_ip = |e: &Value, side: &str| e[side]["ip"].as_str().unwrap_or("").starts_with("10.244.1.");
    for e in &entries {
        for side in ["src", "dst"] {
            if lab_ip(e, side) {
                assert!(e[side]["pod"]["name"].is_string(), "{engine}: {side} without a pod name: {e}");
                assert_eq!(e[side]["pod"]["workload"]["kind"], "Deployment");
            }
        }
        let ns = [e["src"]["namespace"].as_str(), e["dst"]["namespace"].as_str()];
        assert!(ns.contains(&Some("sock-shop")), "{engine}: an entry outside sock-shop: {e}");
    }
    let in_window = |e: &&Value| epoch(e["timestamp"].as_str().unwrap()) >= t_start && epoch(e["timestamp"].as_str().unwrap()) <= t_end;
    // nothing half-seen inside the window: every request has its response
    let half: Vec<&Value> = entries
        .iter()
        .filter(in_window)
        .filter(|e| e["request"].is_null() || e["response"].is_null())
        .collect();
    assert!(half.is_empty(), "{engine}: {} entries without their other half, e.g. {}", half.len(), half[0]);
    // our times (the capture engine's clock) and tshark's (the bridge's) may differ by a
    // little: a request near an edge of the window can be inside for one and just outside
    // for the other. So: each side's requests well inside the window (EDGE from its ends)
    // must all be among the other side's in the whole window
    const EDGE: f64 = 0.2;
    let ours = |from: f64, to: f64| -> (BTreeSet<Req>, BTreeSet<Req>, BTreeSet<Query>) {
        let inside = |e: &&Value| (from..=to).contains(&epoch(e["timestamp"].as_str().unwrap()));
        let http = entries
            .iter()
            .filter(inside)
            .filter(|e| e["protocol"] == "http" && e["request"]["method"].is_string())
            .map(|e| (e["src"]["ip"].as_str().unwrap().to_string(), e["src"]["port"].as_u64().unwrap() as u16, e["request"]["method"].as_str().unwrap().to_string(), e["request"]["url"].as_str().unwrap().to_string()))
            .collect();
        let grpc = entries
            .iter()
            .filter(inside)
            .filter(|e| e["protocol"] == "grpc")
            .map(|e| (e["src"]["ip"].as_str().unwrap().to_string(), e["src"]["port"].as_u64().unwrap() as u16, e["request"]["http2"]["stream_id"].to_string(), e["request"]["path"].as_str().unwrap().to_string()))
            .collect();
        let dns = entries
            .iter()
            .filter(inside)
            .filter(|e| e["protocol"] == "dns" && e["request"].is_object())
            .map(|e| (e["src"]["ip"].as_str().unwrap().to_string(), e["src"]["port"].as_u64().unwrap() as u16, e["request"]["questions"][0]["name"].as_str().unwrap().trim_end_matches('.').to_string()))
            .collect();
        (http, grpc, dns)
    };
    // tshark sees every DNS query on the bridge, kube-system's too; the tapped pods' are ours
    let theirs = |from: f64, to: f64| {
        let (http, grpc, dns) = tshark_requests(&pcap, from, to);
        (http, grpc, dns.into_iter().filter(|(ip, _, _): &Query| ip != "10.244.1.30" && ip != "10.244.1.10").collect::<BTreeSet<Query>>())
    };
    let (ours_http, ours_grpc, ours_dns) = ours(t_start, t_end);
    let (inner_http, inner_grpc, inner_dns) = ours(t_start + EDGE, t_end - EDGE);
    let (their_http, their_grpc, their_dns) = theirs(t_start, t_end);
    let (their_inner_http, their_inner_grpc, their_inner_dns) = theirs(t_start + EDGE, t_end - EDGE);
    assert!(ours_http.len() >= 40, "{engine}: only {} HTTP requests in 6 s of traffic", ours_http.len());
    assert!(!ours_grpc.is_empty(), "{engine}: no gRPC call (orders -> payment)");
    assert!(ours_grpc.iter().all(|r| r.3 == "/sockshop.Payment/Authorise"));
    assert!(ours_dns.iter().any(|r| r.2 == "catalogue.sock-shop.svc.cluster.local"), "{engine}: no DNS lookup of catalogue");
    fn missing<T: Ord + Clone>(some: &BTreeSet<T>, all: &BTreeSet<T>) -> Vec<T> {
        some.difference(all).cloned().collect()
    }
    assert_eq!(missing(&inner_http, &their_http), vec![], "{engine}: HTTP requests tshark did not see ({} vs {})", ours_http.len(), their_http.len());
    assert_eq!(missing(&their_inner_http, &ours_http), vec![], "{engine}: HTTP requests we missed ({} vs {})", ours_http.len(), their_http.len());
    assert_eq!(missing(&inner_grpc, &their_grpc), vec![], "{engine}: gRPC calls tshark did not see");
    assert_eq!(missing(&their_inner_grpc, &ours_grpc), vec![], "{engine}: gRPC calls we missed");
    assert_eq!(missing(&inner_dns, &their_dns), vec![], "{engine}: DNS queries tshark did not see");
    assert_eq!(missing(&their_inner_dns, &ours_dns), vec![], "{engine}: DNS queries we missed");
    eprintln!("{engine}: {} HTTP, {} gRPC, {} DNS requests, same as tshark; no drops", ours_http.len(), ours_grpc.len(), ours_dns.len());
}

#[test]
fn lab_tap_each_engine_agrees_with_tshark_and_down_leaves_nothing() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    need_root();
    for t in ["tshark", "dnsmasq", "ip"] {
        need(t);
    }
    tap_with("ebpf");
    tap_with("libpcap");
    // up twice is harmless: same processes
    let pids = std::fs::read_to_string("/run/kshark-lab/pids/front-end").unwrap();
    assert!(lab(&["up"]).contains("already up"));
    assert_eq!(std::fs::read_to_string("/run/kshark-lab/pids/front-end").unwrap(), pids);
    let st = lab(&["status"]);
    assert!(st.contains("payment") && st.contains("running"), "{st}");
    lab(&["down"]);
    assert_eq!(leftovers(), Vec::<String>::new(), "lab down left things behind");
}

#[test]
fn lab_failing_half_way_cleans_up() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    need_root();
    lab(&["down"]);
    // a Python that passes the grpcio check but cannot run a service
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("python");
    std::fs::write(&fake, "#!/bin/sh\n[ \"$1\" = -c ] && exit 0\necho 'service refuses to start' >&2\nexit 3\n").unwrap();
    Command::new("chmod").arg("755").arg(&fake).status().unwrap();
    let o = Command::new(kshark_bin()).args(["nslab", "up"]).env("KSHARK_PYTHON", &fake).output().unwrap();
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("lab up failed") && err.contains("cleaned up"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(leftovers(), Vec::<String>::new(), "a failed lab up left things behind");
}

#[test]
fn missing_privileges_are_one_clear_line() {
    need_root();
    // run as nobody: setpriv is in util-linux
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", kshark_bin()])
            .args(args)
            .output()
            .expect("setpriv")
    };
    let o = as_nobody(&["nslab", "up"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("needs root"), "{}", common::stderr(&o));
    let o = as_nobody(&["tap", "--port", "0", "-i", "lo", "--engine", "ebpf", "--no-tui", "--duration", "1s"]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("ebpf") && err.contains("root"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // auto says why eBPF is out, then libpcap fails the same way
    let o = as_nobody(&["tap", "--port", "0", "-i", "lo", "--no-tui", "--duration", "1s"]);
    let err = common::stderr(&o);
    assert!(err.contains("eBPF unavailable") && err.contains("using libpcap"), "{err}");
    assert!(err.contains("libpcap on lo") && err.contains("root"), "{err}");
}

/// Pods that appear while tapping are picked up, and ones that go are let go: the
/// inventory first lacks `user`, then has it, then lacks `carts`.
fn follows_pods(engine: &str) {
    lab(&["down"]);
    lab(&["up"]);
    let full: Value = serde_json::from_slice(&std::fs::read("/run/kshark-lab/inventory.json").unwrap()).unwrap();
    let without = |app: &str| {
        let mut v = full.clone();
        v["items"].as_array_mut().unwrap().retain(|i| i["metadata"]["labels"]["name"] != app);
        serde_json::to_vec(&v).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.json");
    std::fs::write(&inv, without("user")).unwrap();
    let (mut tap, head, reader) =
        start_tap(Command::new(kshark_bin()).args(["tap", "--port", "0", "-n", "sock-shop", "--engine", engine, "--no-tui", "--format", "ndjson", "--duration", "16s", "--inventory"]).arg(&inv), "kshark tap");
    assert!(head.contains("tapping 12 pod addresses on 12 interfaces"), "{head}");
    lab(&["traffic", "--rate", "20", "--duration", "13s"]);
    std::thread::sleep(Duration::from_secs(3));
    let t_user = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    std::fs::write(&inv, serde_json::to_vec(&full).unwrap()).unwrap();
    tap.wait_for("now also capturing on", "the new pod");
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write(&inv, without("carts")).unwrap();
    let t_carts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(tap.child.wait().unwrap().success(), "{}", tap.stderr());
    let entries: Vec<Value> = reader.join().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let time = |e: &Value| epoch(e["timestamp"].as_str().unwrap());
    let touches = |e: &Value, app: &str| ["src", "dst"].iter().any(|s| e[s]["pod"]["labels"]["name"] == app);
    // user's own traffic (user -> user-db) only once it was in the inventory
    let user_db: Vec<f64> = entries.iter().filter(|e| e["src"]["pod"]["labels"]["name"] == "user" && e["protocol"] == "http").map(time).collect();
    assert!(!user_db.is_empty(), "{engine}: no traffic from the pod that appeared");
    assert!(user_db.iter().all(|t| *t > t_user), "{engine}: user's traffic before it was targeted");
    // carts is let go: its veth is left, and its DNS lookups (to kube-dns, not tapped)
    // are no longer seen; its calls to carts-db still are, as carts-db is tapped
    let carts_dns: Vec<f64> = entries.iter().filter(|e| e["protocol"] == "dns" && e["src"]["ip"] == "10.244.1.14").map(time).collect();
    assert!(carts_dns.iter().any(|t| *t < t_carts), "{engine}: no DNS lookups from carts before it went");
    assert!(carts_dns.iter().all(|t| *t < t_carts + 3.0), "{engine}: carts' DNS lookups still captured 3 s after it went");
    assert!(tap.stderr().contains("no longer capturing on ksl-"), "{}", tap.stderr());
    assert!(entries.iter().any(|e| e["src"]["ip"] == "10.244.1.14" && touches(e, "carts-db") && time(e) > t_carts + 3.0));
    lab(&["traffic", "--stop"]);
}

#[test]
fn tap_follows_pods_as_they_come_and_go() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    need_root();
    need("dnsmasq");
    follows_pods("ebpf");
    follows_pods("libpcap");
    lab(&["down"]);
}

/// The lab's control plane through the `kube` client with the lab's own credentials.
/// (The client lives on the runtime it was made on.)
fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The sock-shop pods of one app, as the API has them.
fn pods_of(rt: &tokio::runtime::Runtime, c: &kube::Client, app: &str) -> Vec<k8s_openapi::api::core::v1::Pod> {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(c.clone(), "sock-shop");
    rt.block_on(api.list(&kube::api::ListParams::default().labels(&format!("name={app}")))).unwrap().items
}

fn scale(rt: &tokio::runtime::Runtime, c: &kube::Client, app: &str, n: i32) {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(c.clone(), "sock-shop");
    let patch = kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": n}}));
    rt.block_on(api.patch_scale(app, &Default::default(), &patch)).unwrap();
}

/// `lab up` runs a real kube-apiserver (etcd, controller-manager, scheduler) and `tap
/// -n sock-shop` names both ends from it: pod, Deployment, namespace, Service. Deleting a
/// pod and scaling Deployments while tapping show within seconds; nothing from outside
/// sock-shop is captured; kshark's token reads what it needs and nothing else.
#[test]
fn lab_api_server_names_both_ends_and_follows_deletes_and_scaling() {
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    need_root();
    need("dnsmasq");
    lab(&["down"]);
    let up = lab(&["up"]);
    assert!(up.contains("API server: https://127.0.0.1:16443") && up.contains("kubeconfig: /run/kshark-lab/kubeconfig"), "{up}");
    let user_veth = up.lines().find(|l| l.starts_with("user ")).and_then(|l| l.split_whitespace().find(|w| w.starts_with("ksl-"))).unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let admin = lab_api(&rt, "/run/kshark-lab/admin.kubeconfig");

    // kshark's own token: get/list/watch what identity reads, nothing more
    let reader = lab_api(&rt, "/run/kshark-lab/kubeconfig");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(reader.clone());
    assert!(rt.block_on(pods.list(&Default::default())).unwrap().items.len() >= 15);
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::all(reader.clone());
    match rt.block_on(secrets.list(&Default::default())) {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("kshark's token read secrets: {other:?}"),
    }
    let deploys: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(reader, "sock-shop");
    let patch = kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 3}}));
    assert!(rt.block_on(deploys.patch_scale("user", &Default::default(), &patch)).is_err(), "kshark's token can scale");

    let (mut tap, head, reader) = start_tap(Command::new(kshark_bin()).args(["tap", "--port", "0", "-n", "sock-shop", "--no-tui", "--format", "ndjson", "--duration", "26s"]), "kshark tap");
    assert!(head.contains("identity from the API server https://127.0.0.1:16443"), "{head}");
    let t0 = Instant::now();
    lab(&["traffic", "--rate", "20", "--duration", "24s"]);
    std::thread::sleep(Duration::from_secs(5));

    // delete catalogue's pod: the controller makes another, the lab's kubelet gives it
    // the same address
    let old = pods_of(&rt, &admin, "catalogue").remove(0).metadata.name.unwrap();
    let pod_api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(admin.clone(), "sock-shop");
    let t_del = now_secs();
    rt.block_on(pod_api.delete(&old, &Default::default())).unwrap();
    let new = poll("a replacement catalogue pod running as 10.244.1.12", 10, || {
        pods_of(&rt, &admin, "catalogue").into_iter().find_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            (ip == "10.244.1.12" && p.metadata.name.as_deref() != Some(&old)).then(|| p.metadata.name.unwrap())
        })
    });
    let t_new = now_secs();
    // a second replica has no namespace to play it: Pending, saying why
    scale(&rt, &admin, "catalogue", 2);
    poll("the second catalogue replica pending with its reason", 10, || {
        pods_of(&rt, &admin, "catalogue").into_iter().find(|p| {
            let st = p.status.as_ref();
            st.and_then(|s| s.reason.as_deref()) == Some("LabSlotTaken") && st.and_then(|s| s.message.as_deref()).is_some_and(|m| m.contains(&new))
        })
    });
    scale(&rt, &admin, "catalogue", 1);
    std::thread::sleep(Duration::from_secs(12).saturating_sub(t0.elapsed()));
    // scale user to nothing: its pod goes, and so does its veth from the capture
    let t_scale = now_secs();
    scale(&rt, &admin, "user", 0);
    tap.wait_for(&format!("no longer capturing on {user_veth}"), "tap letting user go");
    let let_go = now_secs() - t_scale;
    assert!(tap.child.wait().unwrap().success(), "{}", tap.stderr());
    let entries: Vec<Value> = reader.join().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lab(&["traffic", "--stop"]);
    let time = |e: &Value| epoch(e["timestamp"].as_str().unwrap());

    assert!(entries.len() > 200, "only {} entries", entries.len());
    let served = ["front-end", "catalogue", "catalogue-db", "carts", "carts-db", "orders", "orders-db", "payment", "shipping", "rabbitmq", "user", "user-db"];
    let mut both_named = 0;
    for e in &entries {
        let ns = [e["src"]["namespace"].as_str(), e["dst"]["namespace"].as_str()];
        // between a pod's deletion and its replacement's start no pod holds the address,
        // but the lab's process behind it goes on (and its DNS lookups are seen until the
        // capture lets the address go): those ends are rightly unnamed
        let t = time(e);
        let between = |s: &str| match e[s]["ip"].as_str() {
            Some("10.244.1.12") => t > t_del - 1.0 && t < t_new + 1.0,
            Some("10.244.1.22") => t > t_scale - 1.0,
            _ => false,
        };
        let unnamed_in_between = ["src", "dst"].iter().any(|s| e[s]["pod"].is_null() && between(s));
        assert!(ns.contains(&Some("sock-shop")) || unnamed_in_between, "an entry outside sock-shop: {e}");
        let mut sides = 0;
        for side in ["src", "dst"] {
            let s = &e[side];
            let Some(app) = s["pod"]["labels"]["name"].as_str() else { continue };
            assert_eq!(s["pod"]["workload"], serde_json::json!({"kind": "Deployment", "name": app}), "{e}");
            assert_eq!(s["pod"]["node"], "kshark-lab");
            assert_eq!(s["namespace"], s["pod"]["namespace"]);
            if served.contains(&app) && s["service"]["name"] == app {
                sides += 1;
            }
        }
        both_named += usize::from(sides == 2);
    }
    assert!(both_named > 100, "only {both_named} entries with pod, Deployment and Service on both ends");
    // catalogue: the old name until it was deleted, the new one within seconds after
    let at_catalogue: Vec<(f64, &str)> = entries
        .iter()
        .flat_map(|e| ["src", "dst"].map(|s| (time(e), &e[s])))
        .filter(|(_, s)| s["ip"] == "10.244.1.12")
        .map(|(t, s)| (t, s["pod"]["name"].as_str().unwrap_or("(none)")))
        .collect();
    assert!(at_catalogue.iter().any(|(t, n)| *t < t_del && *n == old), "no entry named {old} before its deletion");
    let late: Vec<_> = at_catalogue.iter().filter(|(t, _)| *t > t_del + 3.0).collect();
    assert!(!late.is_empty() && late.iter().all(|(_, n)| *n == new), "after the deletion catalogue should be {new}: {late:?}");
    assert!(at_catalogue.iter().filter(|(t, _)| *t < t_del - 1.5).all(|(_, n)| *n == old));
    // user: gone from names and from the capture within seconds of scaling to zero
    assert!(let_go < 5.0, "the capture let user go {let_go:.1} s after it was scaled to 0");
    let user_named_late = entries.iter().filter(|e| time(e) > t_scale + 3.0).flat_map(|e| ["src", "dst"].map(|s| &e[s])).any(|s| s["pod"]["labels"]["name"] == "user");
    assert!(!user_named_late, "user still named 3 s after it was scaled to 0");
    // kube-dns answers load-test too, but neither is in sock-shop: none of it is captured
    assert!(!entries.iter().any(|e| e["src"]["ip"] == "10.244.1.30" && e["dst"]["ip"] == "10.244.1.10"));
    eprintln!("{} entries, {both_named} named on both ends; catalogue renamed to {new}; user let go in {let_go:.1} s", entries.len());
    lab(&["down"]);
    assert_eq!(leftovers(), Vec::<String>::new(), "lab down left things behind");
}
