//! kshark in a real two-node Kubernetes cluster (`kshark lab up`): kubelets, containerd,
//! the bridge CNI, kube-proxy's ClusterIP DNAT, cluster DNS. The test builds kshark's
//! image from the binary under test, deploys it with `kshark tap` (a hub Deployment and a
//! worker DaemonSet on both nodes, the hub port-forwarded through the kubelet), drives a
//! fixed number of calls with `lab traffic`, and compares what the hub streamed with the
//! ledger the sock-shop wrote of every call it made. Then `kshark clean` and `lab down`
//! must leave nothing behind.
//!
//! Needs root, containerd, runc, the CNI plugins, iptables, conntrack, the Kubernetes
//! binaries and the images (`bash scripts/setup.sh` builds and installs all of it); when
//! one is missing the test fails and says which.

mod common;
use common::lab::{kshark_bin, need_root, poll};
use common::Kill;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const KC: &str = "/run/kshark-cluster/admin.kubeconfig";
const LEDGER: &str = "/run/kshark-cluster/ledger";

fn run(args: &[&str]) -> String {
    let o = Command::new(kshark_bin()).args(args).output().expect("run kshark");
    let text = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(o.status.success(), "kshark {} failed: {text}", args.join(" "));
    text
}

/// Whatever happens, the cluster goes: a failed test must not leave it for the next.
struct Down;
impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(kshark_bin()).args(["clean", "--kubeconfig", KC]).output();
        let _ = Command::new(kshark_bin()).args(["lab", "down"]).output();
    }
}

/// An entry's RFC 3339 timestamp as seconds since the epoch.
fn secs(e: &Value) -> f64 {
    let t = e["timestamp"].as_str().unwrap_or("");
    let n = |a: usize, b: usize| t.get(a..b).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // days from the civil date (Howard Hinnant's algorithm)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    let frac: f64 = t.get(19..t.len() - 1).and_then(|f| format!("0{f}").parse().ok()).unwrap_or(0.0);
    (days * 86400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)) as f64 + frac
}

/// Now, as seconds since the epoch.
fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

#[test]
fn tap_deployed_into_a_real_two_node_cluster_names_every_call_through_its_clusterip() {
    need_root();
    let _down = Down;
    let up = run(&["lab", "up"]);
    for want in ["kshark-node-1", "kshark-node-2", "10.96.0.10", "containerd://1.6"] {
        assert!(up.contains(want), "`lab up` does not print {want}: {up}");
    }
    // kshark's own image, from the binary under test, into both nodes' containerd
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/image/build.sh");
    let o = Command::new("bash").arg(&script).args(["kshark", kshark_bin()]).output().unwrap();
    assert!(o.status.success(), "image build: {}", common::stderr(&o));
    run(&["lab", "load"]);

    // (ended with the test, a failed one too: before `Down`, which was made first)
    let mut tap = Kill(
        Command::new(kshark_bin())
            .args(["tap", "-n", "sock-shop", "--kubeconfig", KC, "--no-tui", "--format", "ndjson", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = BufReader::new(tap.0.stderr.take().unwrap());
    let (etx, erx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            let _ = etx.send(l);
        }
    });
    let out = BufReader::new(tap.0.stdout.take().unwrap());
    let (otx, orx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&l) {
                let _ = otx.send(v);
            }
        }
    });
    // the rollout, with progress, on both nodes, and the port-forward through the kubelet
    let mut said = Vec::new();
    poll("the hub and two workers ready, and the hub forwarded", 240, || {
        while let Ok(l) = erx.try_recv() {
            said.push(l);
        }
        if let Ok(Some(st)) = tap.0.try_wait() {
            panic!("tap exited ({st}): {}", said.join("\n"));
        }
        said.iter().any(|l| l.contains("forwarded to http://127.0.0.1:")).then_some(())
    });
    let text = said.join("\n");
    assert!(text.contains("workers 2/2 ready"), "no progress of two workers: {text}");
    let kubectl = up.lines().find_map(|l| l.strip_prefix("kubectl: ")).and_then(|l| l.split_whitespace().next()).expect("`lab up` names kubectl").to_string();
    let kc = |args: &[&str]| -> String {
        let o = Command::new(&kubectl).arg("--kubeconfig").arg(KC).args(args).output().unwrap();
        assert!(o.status.success(), "kubectl {}: {}", args.join(" "), common::stderr(&o));
        common::stdout(&o)
    };
    let port = text.split("forwarded to http://127.0.0.1:").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).unwrap().to_string();
    let reader = kc(&["-n", "kshark", "get", "secret", "kshark-token", "-o", "go-template={{index .data \"reader-token\" | base64decode}}"]);
    let stats = || -> Option<Value> {
        let o = Command::new("curl").args(["-s", "-m", "5", "-H", &format!("Authorization: Bearer {}", reader.trim()), &format!("http://127.0.0.1:{port}/api/stats")]).output().ok()?;
        serde_json::from_slice(&o.stdout).ok()
    };
    // both workers capture their own node's pods (give them a moment to attach)
    std::thread::sleep(Duration::from_secs(4));

    let mut all: Vec<Value> = Vec::new();
    // the stores' calls found, by protocol, over all phases
    let mut stores: HashMap<String, usize> = HashMap::new();
    // phase 1: calls between the sock-shop's pods, through ClusterIPs, on and across nodes
    let cross = phase(1, &orx, &mut all, &mut stores, 40, &[]);
    assert!(cross >= 20, "too few calls crossed nodes ({cross}): the placement should make many");
    let st = poll("the hub's stats", 30, stats);
    assert!(st["hub"]["joined"].as_u64().unwrap_or(0) >= cross as u64, "the hub joined fewer exchanges than crossed nodes: {}", st["hub"]);

    // phase 2: a worker pod deleted; the DaemonSet brings it back, capture resumes, and
    // the time its node was not captured is counted, not silent
    let old = kc(&["-n", "kshark", "get", "pods", "-l", "app.kubernetes.io/name=kshark-worker", "--field-selector", "spec.nodeName=kshark-node-2", "-o", "name"]);
    let old = old.trim().to_string();
    assert!(old.starts_with("pod/"), "no worker on kshark-node-2: {old}");
    let gap_from = now_secs();
    kc(&["-n", "kshark", "delete", &old, "--wait=true"]);
    poll("a new worker on kshark-node-2, connected", 120, || {
        let st = stats()?;
        let n2 = &st["nodes"]["kshark-node-2"];
        (n2["gaps"].as_u64() == Some(1) && n2["captured"] == true).then_some(())
    });
    // node-2 was not captured, or only in part, from the deletion until its new worker
    // had attached to every pod: an exchange in flight at either edge is seen by one
    // worker only in part (the old one stopped after the request, the new one began
    // after it), and is a half by nature
    let gap = gap_from..now_secs() + 4.0;
    eprintln!("cluster: node-2 without its whole capture from {:.1} to {:.1}", gap.start, gap.end);
    let st = stats().unwrap();
    assert!(st["nodes"]["kshark-node-2"]["uncaptured_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{}", st["nodes"]);
    std::thread::sleep(Duration::from_secs(4));
    phase(2, &orx, &mut all, &mut stores, 24, &[]);

    // phase 3: front-end called at node-1's NodePort from node-2's own network (a
    // hostNetwork pod): kube-proxy rewrites both ends, and the caller is named as the node
    // whose address the call came from, not guessed
    phase(3, &orx, &mut all, &mut stores, 16, &["--node-port", "kshark-node-1"]);
    // and its ClusterIP from node-2's own network: masqueraded by node-2, named node-2
    phase(4, &orx, &mut all, &mut stores, 16, &["--host-network"]);

    // phase 5: the hub's pod deleted while the sock-shop calls; the stopping hub takes no
    // more batches, the workers keep them, reconnect to the new hub and resend; tap's
    // port-forward and stream follow it; every call is there once
    std::thread::sleep(Duration::from_secs(4));
    let hub_pod = kc(&["-n", "kshark", "get", "pods", "-l", "app.kubernetes.io/name=kshark-hub", "-o", "name"]).trim().to_string();
    kc(&["-n", "kshark", "delete", &hub_pod, "--wait=false"]);
    phase(5, &orx, &mut all, &mut stores, 24, &[]);
    said.extend(erx.try_iter());
    let text = said.join("\n");
    assert!(text.contains("reconnected to the hub"), "tap's stream did not reconnect: {text}");
    let st = poll("the new hub's stats", 60, stats);
    let resent: u64 = st["workers"].as_object().map(|w| w.values().filter_map(|w| w.pointer("/stats/ship/batches_resent").and_then(Value::as_u64)).sum()).unwrap_or(0);
    eprintln!("cluster: after the hub's pod was replaced, the workers resent {resent} batches; the new hub: {}", st["hub"]);
    let _ = tap.0.kill();
    let _ = tap.0.wait();
    // the real stores: SQL on MariaDB and PostgreSQL, Redis commands, AMQP publishes and
    // acks, each between named pods
    for p in ["mysql", "postgresql", "redis", "amqp"] {
        assert!(stores.get(p).copied().unwrap_or(0) > 0, "no {p} call to a store in the ledgers: {stores:?}");
    }
    assert!(
        all.iter().any(|e| e["protocol"] == "amqp" && s(e, "/request/method") == "basic.deliver" && s(e, "/dst/pod/name").starts_with("queue-master-") && s(e, "/src/pod/name").starts_with("rabbitmq-")),
        "no delivery from rabbitmq to queue-master"
    );
    let dump: String = all.iter().map(|e| format!("{e}\n")).collect();
    let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-entries.ndjson"), dump);

    // no halves: every HTTP entry of the sock-shop has both a request and a response
    let (edge, halves): (Vec<&Value>, Vec<&Value>) = all
        .iter()
        .filter(|e| e["protocol"] == "http" && (e["request"].is_null() || e["response"].is_null()))
        .partition(|e| s(e, "/node") == "kshark-node-2" && gap.contains(&secs(e)));
    if !edge.is_empty() {
        eprintln!("cluster: {} halves at the edges of node-2's worker restart (not captured in part), e.g. {}", edge.len(), edge[0]);
    }
    assert!(halves.is_empty(), "{} unpaired halves, e.g. {}", halves.len(), halves[0]);
    // TLS between pods read as plaintext: front-end (node-1) to user's HTTPS (node-2), each
    // side read at its own node and joined at the hub; orders to payment's gRPC over TLS
    let tls_user: Vec<&Value> = all.iter().filter(|e| e["capture_source"] == "ebpf_tls" && s(e, "/dst/service/name") == "user").collect();
    assert!(!tls_user.is_empty(), "no call to user's HTTPS read as plaintext");
    assert!(tls_user.iter().all(|e| e["tls"]["library"] == "openssl" && e["protocol"] == "http"), "{}", tls_user[0]);
    assert!(
        tls_user.iter().any(|e| s(e, "/src/pod/name").starts_with("front-end-") && e["observed"] == "both" && s(e, "/dst/pod/name").starts_with("user-")),
        "no front-end -> user HTTPS call joined from both nodes: {}",
        tls_user[0]
    );
    let tls_payment: Vec<&Value> = all.iter().filter(|e| e["capture_source"] == "ebpf_tls" && e["protocol"] == "grpc").collect();
    assert!(
        tls_payment.iter().any(|e| s(e, "/src/pod/name").starts_with("orders-") && s(e, "/dst/service/name") == "payment" && s(e, "/request/method") == "Authorise"),
        "no orders -> payment gRPC over TLS read as plaintext: {:?}",
        tls_payment.first()
    );
    // (no call is read twice, with both ends traced on one node: each phase finds every
    // HTTP entry between sock-shop pods among the ledger's calls, and a server's copy
    // would be one more)
    eprintln!("cluster: {} HTTPS calls to user and {} gRPC calls over TLS read as plaintext", tls_user.len(), tls_payment.len());
    // DNS went through the ClusterIP of the cluster's DNS, answered by its pod
    assert!(
        all.iter().any(|e| e["protocol"] == "dns" && s(e, "/dst/ip") == "10.96.0.10" && s(e, "/dst/pod/name").starts_with("kube-dns-")),
        "no DNS exchange through 10.96.0.10 named with the pod that answered"
    );

    // clean and down leave nothing
    let c = run(&["clean", "--kubeconfig", KC]);
    assert!(c.contains("Namespace kshark"), "{c}");
    let d = run(&["lab", "down"]);
    assert!(d.contains("processes") && d.contains("bridge ksk-br0"), "{d}");
    assert!(!Path::new("/run/kshark-cluster").exists());
    assert!(!Path::new("/sys/fs/cgroup/pids/kshark-lab").exists(), "cgroups left");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(!common::stdout(&links).contains("ksk-"), "links left: {}", common::stdout(&links));
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!common::stdout(&netns).contains("ksk-"), "namespaces left");
    let pods_netns: Vec<String> = std::fs::read_dir("/run/netns").into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("cni-")).collect();
    assert!(pods_netns.is_empty(), "pod network namespaces left: {pods_netns:?}");
    let ps = Command::new("sh").args(["-c", "ps -eo args | grep -E 'kshark-cluster|containerd-shim' | grep -v grep || true"]).output().unwrap();
    assert!(common::stdout(&ps).trim().is_empty(), "processes left: {}", common::stdout(&ps));
    assert_eq!(run(&["lab", "status"]).trim(), "lab: down (start it with `kshark lab up`)");
}

/// One phase: `n` calls of `lab traffic`, then every call of the ledger is found among the
/// entries the hub streamed, exactly once, with its caller, the Service, the answering pod
/// and the node or nodes that saw it; and no other HTTP entry between sock-shop pods in the
/// phase's time. Returns how many calls crossed nodes.
fn phase(k: u32, orx: &std::sync::mpsc::Receiver<Value>, all: &mut Vec<Value>, stores: &mut HashMap<String, usize>, n: u32, traffic: &[&str]) -> usize {
    all.extend(orx.try_iter());
    for f in std::fs::read_dir(LEDGER).unwrap().flatten() {
        let _ = std::fs::remove_file(f.path());
    }
    let count = n.to_string();
    let mut args = vec!["lab", "traffic", "--rate", "8", "--count", &count, "--errors", "0.1", "--slow", "0", "--wait"];
    args.extend_from_slice(traffic);
    let t = run(&args);
    assert!(t.contains(&format!("load: done, {n} requests")), "phase {k}: {t}");
    let mut ledger: Vec<Value> = Vec::new();
    for f in std::fs::read_dir(LEDGER).unwrap().flatten() {
        if f.path().extension().is_some_and(|e| e == "ndjson") {
            ledger.extend(std::fs::read_to_string(f.path()).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
    }
    ledger.sort_by(|a, b| a["time"].as_f64().unwrap_or(0.0).total_cmp(&b["time"].as_f64().unwrap_or(0.0)));
    let calls: Vec<&Value> = ledger.iter().filter(|c| c["status"].is_u64()).collect();
    // every load call is at least front-end's (HTTP) and its session's (Redis)
    assert!(calls.len() as u32 >= n, "phase {k}: the ledger has only {} HTTP calls", calls.len());
    assert!(ledger.len() as u32 >= n * 2, "phase {k}: the ledger has only {} calls in all", ledger.len());
    let (first, last) = (calls[0]["time"].as_f64().unwrap(), calls.iter().map(|c| c["end"].as_f64().unwrap()).fold(0.0, f64::max));
    let in_phase = |e: &Value| (first - 0.2..last + 0.2).contains(&secs(e));
    // entries come until every call is there (the join waits up to 2 s for an exchange's
    // other side, a restarted hub up to 15 s), then a moment more for any duplicate
    let mut entries: Vec<Value> = Vec::new();
    let t0 = std::time::Instant::now();
    loop {
        entries.extend(orx.try_iter());
        let http = entries.iter().filter(|e| e["protocol"] == "http" && in_phase(e)).count();
        if (http >= calls.len() && t0.elapsed() > Duration::from_secs(5)) || t0.elapsed() > Duration::from_secs(45) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(3));
    entries.extend(orx.try_iter());
    all.extend(entries.iter().cloned());
    // kept for a look when this fails
    let dump: String = entries.iter().map(|e| format!("{e}\n")).collect();
    let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cluster-phase{k}.ndjson")), dump);
    let entries: Vec<Value> = entries.into_iter().filter(|e| in_phase(e)).collect();
    let pod_node: HashMap<String, String> = all
        .iter()
        .flat_map(|e| [&e["src"], &e["dst"]])
        .filter_map(|ep| Some((ep.pointer("/pod/name")?.as_str()?.to_string(), ep.pointer("/pod/node")?.as_str()?.to_string())))
        .collect();
    let mut cross = 0;
    let mut used = vec![false; entries.len()];
    // the entry of this call: one that began while the caller waited for it (the
    // nearest to its start), not taken by another
    let take = |c: &Value, ok: &dyn Fn(&Value) -> bool, used: &mut Vec<bool>| -> Option<usize> {
        let (t, end) = (c["time"].as_f64().unwrap_or(0.0), c["end"].as_f64().unwrap_or(0.0));
        let best = (0..entries.len())
            .filter(|&i| !used[i] && ok(&entries[i]) && (t - 0.2..end + 0.2).contains(&secs(&entries[i])))
            .min_by(|&a, &b| (secs(&entries[a]) - t).abs().total_cmp(&(secs(&entries[b]) - t).abs()))?;
        used[best] = true;
        Some(best)
    };
    for c in &calls {
        let (caller, svc, method) = (s(c, "/caller"), s(c, "/service"), s(c, "/method"));
        // the entry's path is without the query
        let path = s(c, "/path").split('?').next().unwrap_or("");
        let status = c["status"].as_u64().unwrap();
        let same = |e: &&Value| {
            e["protocol"] == "http"
                && s(e, "/src/pod/name") == caller
                && s(e, "/request/method") == method
                && s(e, "/request/path") == path
                && e.pointer("/response/status_code").and_then(Value::as_u64) == Some(status)
        };
        if s(c, "/caller_namespace") != "sock-shop" {
            // the load generator is not tapped (`-n sock-shop`): its calls are seen once,
            // at the answering pod's veth, named with the Service that pod backs. Its pod
            // is seconds old when it calls: the worker waits for the API's news of its
            // address rather than name it by address. On the node's own network, it is
            // the node whose address kube-proxy's masquerade gave the call
            let want = if caller.starts_with("load-test-host-") { "" } else { caller };
            let from_it = |e: &Value| {
                e["protocol"] == "http"
                    && s(e, "/src/pod/name") == want
                    && s(e, "/request/method") == method
                    && s(e, "/request/path") == path
                    && e.pointer("/response/status_code").and_then(Value::as_u64) == Some(status)
            };
            let i = take(c, &|e| from_it(e) && s(e, "/dst/service/name") == svc, &mut used).unwrap_or_else(|| panic!("phase {k}: a call from outside the tapped namespace not found: {c}"));
            assert!(s(&entries[i], "/dst/pod/name").starts_with(&format!("{svc}-")), "{}", entries[i]);
            assert!(entries[i].get("nodes").is_none(), "a call from an uncaptured pod is not joined: {}", entries[i]);
            if caller.starts_with("load-test-host-") {
                // through node-1's NodePort: masqueraded there, so it comes from node-1's
                // address (its pod bridge's, or its own on the other node); through the
                // ClusterIP from node-2's network: masqueraded by node-2
                let node = if traffic.contains(&"--node-port") { "node/kshark-node-1" } else { "node/kshark-node-2" };
                assert_eq!(s(&entries[i], "/src/name"), node, "a call from a node's network not named as the node: {}", entries[i]);
            }
            continue;
        }
        // the client's side: the Service it called (the ClusterIP), the pod that answered
        let i = take(c, &|e| same(&e) && s(e, "/dst/name") == svc && s(e, "/dst/service/name") == svc, &mut used)
            .unwrap_or_else(|| panic!("phase {k}: a call not found at the hub from its client's side: {c}"));
        let e = &entries[i];
        let answering = s(e, "/dst/pod/name");
        assert!(answering.starts_with(&format!("{svc}-")), "the answering pod of {c} is not named: {}", e["dst"]);
        assert!(e.pointer("/dst/pod/ip").is_some(), "no answering address: {}", e["dst"]);
        let caller_node = pod_node.get(caller).cloned().unwrap_or_default();
        assert_eq!(s(e, "/node"), caller_node, "the client's side is seen by the caller's node: {e}");
        // the server's side: a copy at the answering pod's veth, by the pod's address. On
        // the caller's node (kube-proxy rewrote it there) it is left out; a call to the
        // other node is seen there too, and the hub joins the two into this one entry
        let answer_node = pod_node.get(answering).cloned().unwrap_or_default();
        if answer_node != caller_node {
            cross += 1;
            assert_eq!(e["nodes"], serde_json::json!([caller_node, answer_node]), "phase {k}: {e}");
            assert_eq!(e["observed"], "both", "phase {k}: {e}");
            let (client, server) = (e["elapsed_time"].as_i64().unwrap_or(0), e["server_elapsed_time"].as_i64().unwrap_or(0));
            // (read from TLS, the times are when the library calls returned, not when the
            // packets passed: the server's last write may return after the client's read
            // did, so a millisecond of slack)
            let slack = if e["capture_source"] == "ebpf_tls" { 1000 } else { 0 };
            assert!(0 < server && server <= client + slack, "the server took {server} µs, the client waited {client} µs: {e}");
            assert_eq!(e["network_time"].as_i64(), Some(client - server), "{e}");
        } else {
            assert!(e.get("nodes").is_none(), "a call within one node is not joined: {e}");
        }
    }
    // the stores' calls (SQL, Redis commands, AMQP publishes and acks), each found once
    // from its caller's side, named with the Service and the pod that answered, joined
    // where it crossed nodes
    let store_calls: Vec<&Value> = ledger.iter().filter(|c| c["protocol"].is_string() && c["status"] == "OK").collect();
    let mut by_protocol: HashMap<String, usize> = HashMap::new();
    let mut store_used = vec![false; entries.len()];
    let same_store = |c: &Value, e: &Value| {
        e["protocol"] == c["protocol"]
            && s(e, "/src/pod/name") == s(c, "/caller")
            && s(e, "/dst/service/name") == s(c, "/service")
            && s(e, "/request/method") == s(c, "/method")
            && (c["query"].is_null() || e.pointer("/request/query") == Some(&c["query"]))
            && (c["target"] == "" || s(e, "/request/target") == s(c, "/target"))
    };
    for c in &store_calls {
        let i = take(c, &|e| same_store(c, e), &mut store_used).unwrap_or_else(|| panic!("phase {k}: a call to a store not found at the hub: {c}"));
        let e = &entries[i];
        let (svc, caller) = (s(c, "/service"), s(c, "/caller"));
        assert!(s(e, "/dst/pod/name").starts_with(&format!("{svc}-")), "the store's pod is not named: {e}");
        let (caller_node, answer_node) = (pod_node.get(caller).cloned().unwrap_or_default(), pod_node.get(s(e, "/dst/pod/name")).cloned().unwrap_or_default());
        if caller_node != answer_node {
            assert_eq!(e["nodes"], serde_json::json!([caller_node, answer_node]), "phase {k}: a store call across nodes not joined: {e}");
        } else {
            assert!(e.get("nodes").is_none(), "a store call within one node is not joined: {e}");
        }
        if !(s(c, "/method") == "basic.ack" || s(c, "/method") == "basic.publish") {
            assert!(e["response"].is_object(), "phase {k}: a store call without its reply: {e}");
        }
        *by_protocol.entry(s(c, "/protocol").to_string()).or_default() += 1;
        if s(c, "/method") == "basic.ack" {
            // the delivery it acks, sent unasked by the broker through the Service's
            // connection: one entry, the broker's pod named (conntrack, from the
            // consumer's side), joined from both nodes
            let is_delivery = |e: &Value| e["protocol"] == "amqp" && s(e, "/request/method") == "basic.deliver" && s(e, "/dst/pod/name") == caller;
            let d = take(c, &|e| is_delivery(e), &mut store_used).unwrap_or_else(|| panic!("phase {k}: no delivery before the ack {c}"));
            let d = &entries[d];
            assert!(s(d, "/src/pod/name").starts_with("rabbitmq-"), "phase {k}: the broker of a delivery is not named: {d}");
            if pod_node.get(s(d, "/src/pod/name")) != pod_node.get(caller) {
                assert_eq!(d["observed"], "both", "phase {k}: a delivery across nodes not joined: {d}");
            }
        }
    }
    for (p, n) in &by_protocol {
        *stores.entry(p.clone()).or_default() += n;
    }
    // and none twice: an entry like a ledger's call (its caller, command and text) that
    // no call took, in the ledger's time
    let (first_s, last_s) = (first + 1.0, last - 1.0);
    let delivery = |e: &Value| e["protocol"] == "amqp" && s(e, "/request/method") == "basic.deliver";
    let twice: Vec<&Value> = (0..entries.len())
        .filter(|&i| !store_used[i] && (first_s..last_s).contains(&secs(&entries[i])) && (delivery(&entries[i]) || store_calls.iter().any(|c| same_store(c, &entries[i]))))
        .map(|i| &entries[i])
        .collect();
    assert!(twice.is_empty(), "phase {k}: {} store entries that are no call of the ledger (duplicates?), e.g. {}", twice.len(), twice[0]);
    eprintln!("cluster: phase {k}: store calls found once each: {by_protocol:?}");
    // nothing twice: in the ledger's time, every HTTP entry between sock-shop pods is one
    // of the calls (a same-node call's server-side copy is left out by its node, a
    // cross-node one's joined into the client's)
    let (first, last) = (first + 1.0, last - 1.0);
    let extra: Vec<&Value> = (0..entries.len())
        .filter(|&i| !used[i] && entries[i]["protocol"] == "http" && s(&entries[i], "/src/namespace") == "sock-shop")
        .filter(|&i| (first..last).contains(&secs(&entries[i])))
        .map(|i| &entries[i])
        .collect();
    assert!(extra.is_empty(), "phase {k}: {} HTTP entries that are no call of the ledger (duplicates?), e.g. {}", extra.len(), extra[0]);
    eprintln!("cluster: phase {k} ({first:.1} to {last:.1}): {} calls in the ledger, {} entries at the hub, {cross} calls across nodes", calls.len(), entries.len());
    cross
}
