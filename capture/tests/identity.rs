//! The identity cache fed by the real `kube` client from a small replay server that
//! answers list and `?watch=true` requests with the lists and watch streams recorded
//! from a real API server (../shared/fixtures/k8s): names at a time, address reuse,
//! deletions, and a relist after the watch's resource version expired (410 Gone).

use kshark_capture::identity::{Identity, Nanos, Shared};
use kshark_capture::kube_watch::{self, KubeSource};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/k8s");
    assert!(p.join("api_v1_pods.json").exists(), "the shared fixtures are missing: expected {}", p.display());
    p
}

fn load(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(name)).unwrap()).unwrap()
}

fn ts(s: &str) -> Nanos {
    // RFC 3339 seconds, as the API server writes them
    let t: jiff::Timestamp = s.parse().unwrap();
    t.as_nanosecond() as Nanos
}

/// What the replay server answers, per resource path.
struct Script {
    /// Lists, in order (the last one repeats).
    lists: Vec<Value>,
    /// Watch streams, in order (after the last, the watch stays open and quiet).
    watches: Vec<Vec<Value>>,
    lists_served: usize,
    watches_served: usize,
}

struct Server {
    port: u16,
    scripts: Arc<Mutex<HashMap<String, Script>>>,
    requests: Arc<AtomicUsize>,
}

fn respond(mut s: TcpStream, scripts: Arc<Mutex<HashMap<String, Script>>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let body_for = |code: u16, v: &Value| {
        let b = v.to_string();
        format!("HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len())
    };
    let mut scripts = scripts.lock().unwrap();
    let Some(sc) = scripts.get_mut(path) else {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"});
        let _ = s.write_all(body_for(404, &status).as_bytes());
        return;
    };
    if !watch {
        let i = sc.lists_served.min(sc.lists.len() - 1);
        sc.lists_served += 1;
        let _ = s.write_all(body_for(200, &sc.lists[i]).as_bytes());
        return;
    }
    let events = sc.watches.get(sc.watches_served).cloned();
    sc.watches_served += 1;
    drop(scripts);
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    match events {
        Some(evs) => {
            for e in evs {
                let line = format!("{e}\n");
                let _ = s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes());
            }
            let _ = s.write_all(b"0\r\n\r\n");
        }
        None => {
            // quiet until the client goes away
            let mut buf = [0u8; 64];
            let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
            let _ = (&s).read(&mut buf);
        }
    }
}

impl Server {
    fn start(scripts: HashMap<String, Script>) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let scripts = Arc::new(Mutex::new(scripts));
        let requests = Arc::new(AtomicUsize::new(0));
        let (sc, rq) = (scripts.clone(), requests.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                rq.fetch_add(1, Ordering::Relaxed);
                let sc = sc.clone();
                std::thread::spawn(move || respond(s, sc));
            }
        });
        Server { port, scripts, requests }
    }

    fn kubeconfig(&self, dir: &std::path::Path) -> PathBuf {
        let p = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: replay\n  cluster:\n    server: http://127.0.0.1:{}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: replay\n    user: u\ncurrent-context: c\n",
            self.port
        );
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn quiet(list: Value) -> Script {
    Script { lists: vec![list], watches: vec![], lists_served: 0, watches_served: 0 }
}

/// The list after applying a watch stream to it.
fn replay_onto(list: &Value, events: &[Value]) -> Value {
    let mut items: Vec<Value> = list["items"].as_array().unwrap().clone();
    for e in events {
        let o = &e["object"];
        let uid = o["metadata"]["uid"].clone();
        match e["type"].as_str().unwrap() {
            "ADDED" | "MODIFIED" => match items.iter_mut().find(|i| i["metadata"]["uid"] == uid) {
                Some(i) => *i = o.clone(),
                None => items.push(o.clone()),
            },
            "DELETED" => items.retain(|i| i["metadata"]["uid"] != uid),
            _ => {}
        }
    }
    let rv = events.iter().rev().find_map(|e| e["object"]["metadata"]["resourceVersion"].as_str()).unwrap_or("1");
    json!({"kind": list["kind"], "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items})
}

fn wait_until(what: &str, id: &Shared, mut f: impl FnMut(&Identity) -> bool) {
    let t0 = Instant::now();
    while !f(&id.read().unwrap()) {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watches_name_addresses_at_their_time_through_reuse_deletion_and_relist() {
    let pods_list = load("api_v1_pods.json");
    let events: Vec<Value> = std::fs::read_to_string(fixtures().join("watch_pods.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let final_list = replay_onto(&pods_list, &events);
    // the relist after 410 Gone: one pod was deleted while the watch was away
    let gone = final_list["items"].as_array().unwrap().iter().find(|p| p["metadata"]["name"].as_str().unwrap().starts_with("front-end-")).unwrap().clone();
    let gone_name = gone["metadata"]["name"].as_str().unwrap().to_string();
    let gone_ip: IpAddr = gone["status"]["podIP"].as_str().unwrap().parse().unwrap();
    let mut relist = final_list.clone();
    relist["items"].as_array_mut().unwrap().retain(|p| p["metadata"]["name"] != gone["metadata"]["name"]);
    let expired = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old resource version: 1 (2)", "reason": "Expired", "code": 410}});

    let mut scripts = HashMap::new();
    scripts.insert(
        "/api/v1/pods".to_string(),
        // the probe's list, the watcher's list, then the relist after 410
        Script { lists: vec![pods_list.clone(), pods_list.clone(), relist.clone()], watches: vec![events.clone(), vec![expired]], lists_served: 0, watches_served: 0 },
    );
    scripts.insert("/api/v1/services".into(), quiet(load("api_v1_services.json")));
    scripts.insert("/api/v1/endpoints".into(), quiet(load("api_v1_endpoints.json")));
    scripts.insert("/api/v1/nodes".into(), quiet(load("api_v1_nodes.json")));
    scripts.insert("/apis/apps/v1/replicasets".into(), quiet(load("apis_apps_v1_replicasets.json")));
    scripts.insert("/apis/batch/v1/jobs".into(), quiet(json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {"resourceVersion": "542"}, "items": []})));
    // no /apis/discovery.k8s.io/v1/endpointslices: a 1.20 server answers 404 there
    let server = Server::start(scripts);
    let dir = tempfile::tempdir().unwrap();
    let id: Shared = Arc::new(RwLock::new(Identity::default()));
    let w = kube_watch::start(KubeSource::Kubeconfig(server.kubeconfig(dir.path())), id.clone(), Duration::from_secs(20)).expect("watch starts");
    assert!(w.description.contains("core/v1 Endpoints"), "{}", w.description);

    // the relist has happened once the gone pod is no longer current
    wait_until("the relist", &id, |c| c.pod_now(&gone_ip).is_none() && c.pods().count() == relist["items"].as_array().unwrap().len());
    assert!(server.scripts.lock().unwrap()["/api/v1/pods"].lists_served >= 3, "no relist after 410");
    assert!(server.requests.load(Ordering::Relaxed) >= 10);
    let c = id.read().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as Nanos;

    // names at a time: every pod that held an address, one second into its holding
    let mut holders: Vec<(IpAddr, Nanos, String)> = Vec::new();
    for o in pods_list["items"].as_array().unwrap().iter().chain(events.iter().map(|e| &e["object"])) {
        if let (Some(ip), Some(start)) = (o["status"]["podIP"].as_str(), o["status"]["startTime"].as_str()) {
            let h = (ip.parse().unwrap(), ts(start), o["metadata"]["name"].as_str().unwrap().to_string());
            if !holders.contains(&h) {
                holders.push(h);
            }
        }
    }
    let mut checked = 0;
    for (ip, start, name) in &holders {
        let at = start + 1_000_000_000;
        // only where no other holder of the address started within that second
        if holders.iter().any(|(i, s, n)| i == ip && n != name && *s > *start && *s <= at) {
            continue;
        }
        let got = c.pod_at(ip, at).map(|p| p.name.clone());
        assert_eq!(got.as_deref(), Some(name.as_str()), "{ip} at {name}'s start + 1 s");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} holders checked");

    // address reuse: 10.244.2.5 went from three payment pods to a carts pod
    let reused: IpAddr = "10.244.2.5".parse().unwrap();
    let names: Vec<&String> = holders.iter().filter(|(i, _, _)| *i == reused).map(|(_, _, n)| n).collect();
    assert!(names.len() >= 4, "{names:?}");
    assert!(c.pod_now(&reused).unwrap().name.starts_with("carts-"));

    // the pod deleted during the relist: named in its time, not after
    assert!(c.pod_at(&gone_ip, now + 1).is_none());
    let gone_start = ts(gone["status"]["startTime"].as_str().unwrap());
    assert_eq!(c.pod_at(&gone_ip, gone_start + 1_000_000_000).map(|p| p.name.clone()), Some(gone_name));

    // workload through the ReplicaSet's owner, Services through Endpoints, nodes
    // a carts pod the recorded Endpoints list as backing the Service
    let eps = load("api_v1_endpoints.json");
    let backing = eps["items"].as_array().unwrap().iter().find(|e| e["metadata"]["name"] == "carts").unwrap()["subsets"][0]["addresses"].as_array().unwrap().iter().map(|a| a["targetRef"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let carts = c.pods().find(|p| backing.contains(&p.name)).expect("a backing carts pod").clone();
    assert_eq!(c.workload(&carts), Some(("Deployment".into(), "carts".into())));
    assert_eq!(c.services_of(&carts), ["carts"]);
    let svc_ip: IpAddr = load("api_v1_services.json")["items"].as_array().unwrap().iter().find(|s| s["metadata"]["name"] == "catalogue").unwrap()["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(c.service_at(&svc_ip, now).unwrap().name, "catalogue");
    let node_ip: IpAddr = load("api_v1_nodes.json")["items"][0]["status"]["addresses"].as_array().unwrap().iter().find(|a| a["type"] == "InternalIP").unwrap()["address"].as_str().unwrap().parse().unwrap();
    assert!(c.node(&node_ip).is_some());
    drop(c);
    drop(w);
}

#[test]
fn an_unreachable_server_or_a_refused_list_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // nothing listens on this port
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = Server { port, scripts: Arc::new(Mutex::new(HashMap::new())), requests: Arc::new(AtomicUsize::new(0)) };
    let id: Shared = Arc::new(RwLock::new(Identity::default()));
    let e = kube_watch::start(KubeSource::Kubeconfig(dead.kubeconfig(dir.path())), id.clone(), Duration::from_secs(10)).err().expect("an error").to_string();
    assert!(e.contains("cannot list pods") && e.contains(&port.to_string()), "{e}");
    // a server without pods (404 everywhere) is refused the same way, saying so
    let empty = Server::start(HashMap::new());
    let e = kube_watch::start(KubeSource::Kubeconfig(empty.kubeconfig(dir.path())), id, Duration::from_secs(10)).err().expect("an error").to_string();
    assert!(e.contains("cannot list pods"), "{e}");
    let e = kube_watch::start(KubeSource::Kubeconfig(dir.path().join("nope")), Arc::new(RwLock::new(Identity::default())), Duration::from_secs(5)).err().unwrap().to_string();
    assert!(e.contains("cannot read kubeconfig") && e.contains("nope"), "{e}");
}

/// Endpoints drop a pod the moment it terminates, before its last exchanges are named:
/// the pod keeps the Service it backed for as long as its name is kept.
#[test]
fn a_terminating_pod_keeps_the_service_it_backed() {
    use kshark_capture::identity::Object;
    let at = ts("2024-01-01T00:00:10Z");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "catalogue-1", "namespace": "shop", "uid": "u1", "labels": {"name": "catalogue"}},
        "status": {"podIP": "10.0.0.7", "startTime": "2024-01-01T00:00:00Z"},
    }))
    .unwrap();
    let eps = |addrs: Value| -> Object {
        Object::Endpoints(Box::new(
            serde_json::from_value(json!({"metadata": {"name": "catalogue", "namespace": "shop"}, "subsets": [{"addresses": addrs}]})).unwrap(),
        ))
    };
    let mut id = Identity::default();
    id.extend(vec![Object::Pod(Box::new(pod.clone())), eps(json!([{"ip": "10.0.0.7", "targetRef": {"kind": "Pod", "name": "catalogue-1", "namespace": "shop"}}]))], at);
    let p = id.pod_now(&"10.0.0.7".parse().unwrap()).unwrap().clone();
    assert_eq!(id.services_of(&p), ["catalogue"]);
    // terminating: out of the Endpoints, then deleted
    id.apply(eps(json!([])), at + 1_000_000_000);
    assert_eq!(id.services_of(&p), ["catalogue"]);
    id.delete(&Object::Pod(Box::new(pod)), at + 2_000_000_000);
    let before = id.pod_at(&"10.0.0.7".parse().unwrap(), at + 500_000_000).unwrap().clone();
    assert_eq!(id.services_of(&before), ["catalogue"]);
    // an unrelated pod that never backed it gets nothing from the history
    let other: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "catalogue-2", "namespace": "shop", "uid": "u2", "labels": {"name": "catalogue"}},
        "status": {"podIP": "10.0.0.8", "startTime": "2024-01-01T00:00:11Z"},
    }))
    .unwrap();
    id.apply(Object::Pod(Box::new(other)), at + 3_000_000_000);
    let p2 = id.pod_now(&"10.0.0.8".parse().unwrap()).unwrap().clone();
    assert!(id.services_of(&p2).is_empty());
}
