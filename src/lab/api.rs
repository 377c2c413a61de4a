//! The lab's control plane: a real etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on 127.0.0.1 (ports of their own, so a cluster already on this machine
//! is left alone), with the sock-shop as Deployments and headless Services. Pods are
//! created by the controller manager's ReplicaSets and bound by the scheduler; the lab's
//! kubelet (`kubelet.rs`) gives each the address of the network namespace that plays it.
//!
//! Credentials: a private CA and a serving certificate made with `openssl`, and static
//! tokens: one for the lab itself (`system:masters`, in `admin.kubeconfig`) and one for
//! kshark (user `kshark`, bound to a ClusterRole of get/list/watch on exactly what the
//! identity cache reads), in the kubeconfig that `tap` picks up.

use super::{lab_path, start_process, PodDef, DIR, KUBECONFIG, PODS, SUBNET};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use kshark_capture::kube_watch::{client_for, KubeSource};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The API server's port on 127.0.0.1.
pub const API_PORT: u16 = 16443;
const ETCD_CLIENT: u16 = 23790;
const ETCD_PEER: u16 = 23800;
/// The one node: the machine the lab runs on.
pub const NODE: &str = "kshark-lab";
/// The lab's own credentials (`system:masters`), for its controllers and its kubelet.
pub const ADMIN_KUBECONFIG: &str = "/run/kshark-lab/admin.kubeconfig";
/// The control plane's processes, in the order they start (and stop in reverse).
pub const PROCESSES: &[&str] = &["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"];
const K8S_VERSION: &str = "1.20.2";
const READER_ROLE: &str = "kshark-reader";

/// Where `scripts/k8s.sh` caches the control plane's binaries, if they are there.
pub fn bindir() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KSHARK_K8S_BIN") {
        dirs.push(d.into());
    }
    let rel = format!("k8s-{K8S_VERSION}/bin");
    if let Some(c) = std::env::var_os("KSHARK_CACHE") {
        dirs.push(Path::new(&c).join(&rel));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(Path::new(&h).join(".cache/kshark").join(&rel));
    }
    dirs.push(Path::new("/root/.cache/kshark").join(&rel));
    for d in dirs {
        if ["kube-apiserver", "kube-controller-manager", "kube-scheduler"].iter().all(|b| d.join(b).is_file()) {
            return Ok(d);
        }
        tried.push(d.display().to_string());
    }
    Err(format!(
        "the lab's API server needs kube-apiserver, kube-controller-manager and kube-scheduler {K8S_VERSION} (looked in {}): \
         build them with `bash scripts/k8s.sh` (about 5 minutes, once), or run `kshark lab up --no-api` for names from a file",
        tried.join(", ")
    ))
}

fn openssl(args: &[&str]) -> Result<(), String> {
    super::run("openssl", args)
}

pub fn random_token() -> Result<String, String> {
    let mut b = [0u8; 24];
    use std::io::Read;
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A CA, the API server's certificate, the service-account key pair, the tokens.
fn pki() -> Result<(String, String), String> {
    let d = lab_path("pki");
    make_pki(&d, "IP:127.0.0.1, DNS:localhost, DNS:kubernetes.default.svc")?;
    let (admin, reader) = (random_token()?, random_token()?);
    fs::write(d.join("tokens.csv"), format!("{admin},lab-admin,lab-admin,\"system:masters\"\n{reader},kshark,kshark\n"))
        .map_err(|e| format!("{}: {e}", d.display()))?;
    Ok((admin, reader))
}

/// In `d`: a CA (ca.key, ca.crt), the API server's serving certificate for `sans`
/// (apiserver.key, apiserver.crt), and the service-account key pair (sa.key, sa.pub).
pub fn make_pki(d: &Path, sans: &str) -> Result<(), String> {
    fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    let p = |f: &str| d.join(f).display().to_string();
    let mut ca = vec!["req", "-x509"];
    ca.extend(EC);
    let (ca_key, ca_crt) = (p("ca.key"), p("ca.crt"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_crt, "-days", "3650", "-subj", "/CN=kshark-lab-ca"]);
    openssl(&ca)?;
    sign(d, "apiserver", "/CN=kube-apiserver", &format!("extendedKeyUsage = serverAuth\nsubjectAltName = {sans}\n"))?;
    let (sa_key, sa_pub) = (p("sa.key"), p("sa.pub"));
    openssl(&["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", &sa_key])?;
    openssl(&["ec", "-in", &sa_key, "-pubout", "-out", &sa_pub])
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// NAME.key and NAME.crt in `d`, signed by the CA there, for `subject` with the
/// extensions `ext` (extendedKeyUsage and the like).
pub fn sign(d: &Path, name: &str, subject: &str, ext: &str) -> Result<(), String> {
    let p = |f: &str| d.join(f).display().to_string();
    let cnf = p(&format!("{name}.cnf"));
    fs::write(&cnf, format!("[req]\ndistinguished_name = dn\n[dn]\n[v3]\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\n{ext}"))
        .map_err(|e| format!("{cnf}: {e}"))?;
    let (key, csr, crt) = (p(&format!("{name}.key")), p(&format!("{name}.csr")), p(&format!("{name}.crt")));
    let mut req = vec!["req"];
    req.extend(EC);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(&req)?;
    let (ca_key, ca_crt) = (p("ca.key"), p("ca.crt"));
    openssl(&["x509", "-req", "-in", &csr, "-CA", &ca_crt, "-CAkey", &ca_key, "-CAcreateserial", "-out", &crt, "-days", "3650", "-extfile", &cnf, "-extensions", "v3"])
}

fn kubeconfig(user: &str, token: &str) -> Value {
    kubeconfig_for(&format!("https://127.0.0.1:{API_PORT}"), &format!("{DIR}/pki/ca.crt"), user, token)
}

/// A kubeconfig for `server` (trusting `ca`) that presents `token`.
pub fn kubeconfig_for(server: &str, ca: &str, user: &str, token: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kshark-lab", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "kshark-lab", "context": {"cluster": "kshark-lab", "user": user}}],
        "current-context": "kshark-lab",
    })
}

/// Writes a file whole (through a rename), readable by root only.
pub fn write_private(path: &str, v: &Value) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = format!("{path}.tmp");
    let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
    std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(v).unwrap_or_default()).map_err(|e| format!("{tmp}: {e}"))?;
    fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("tokio: {e}"))
}

pub async fn admin_client() -> Result<Client, String> {
    admin_client_at(ADMIN_KUBECONFIG).await
}

pub async fn admin_client_at(kubeconfig: &str) -> Result<Client, String> {
    client_for(&KubeSource::Kubeconfig(kubeconfig.into())).await.map(|(c, _)| c)
}

fn last_log_line(name: &str) -> String {
    let log = fs::read_to_string(lab_path(&format!("log/{name}.log"))).unwrap_or_default();
    log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").to_string()
}

fn check_alive(names: &[&str]) -> Result<(), String> {
    for n in names {
        if !super::read_pid(n).is_some_and(super::pid_alive) {
            return Err(format!("{n} exited ({DIR}/log/{n}.log): {}", last_log_line(n)));
        }
    }
    Ok(())
}

fn start_argv(name: &str, argv: Vec<String>, netns: Option<&str>) -> Result<i32, String> {
    start_process(name, &argv.iter().map(String::as_str).collect::<Vec<_>>(), netns)
}

/// etcd for one member `name`, its data in `dir`/etcd, on 127.0.0.1's `client` and `peer` ports.
pub fn etcd_args(etcd: &Path, name: &str, dir: &str, client: u16, peer: u16) -> Vec<String> {
    let (c, p) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
    vec![
        etcd.display().to_string(),
        format!("--name={name}"),
        format!("--data-dir={dir}/etcd"),
        format!("--listen-client-urls={c}"),
        format!("--advertise-client-urls={c}"),
        format!("--listen-peer-urls={p}"),
        format!("--initial-advertise-peer-urls={p}"),
        format!("--initial-cluster={name}={p}"),
        "--unsafe-no-fsync".into(),
    ]
}

/// What every lab's kube-apiserver is given: etcd on `etcd_port`, listening on
/// `address:port`, the certificates and tokens `make_pki` made in `dir`/pki, ServiceAccount
/// tokens, the Service range 10.96.0.0/12. Authorization and admission are the caller's.
pub fn apiserver_args(bin: &Path, dir: &str, address: &str, port: u16, etcd_port: u16) -> Vec<String> {
    let pki = |f: &str| format!("{dir}/pki/{f}");
    vec![
        bin.join("kube-apiserver").display().to_string(),
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        format!("--bind-address={address}"),
        format!("--advertise-address={address}"),
        format!("--secure-port={port}"),
        "--insecure-port=0".into(),
        "--profiling=false".into(),
        format!("--tls-cert-file={}", pki("apiserver.crt")),
        format!("--tls-private-key-file={}", pki("apiserver.key")),
        format!("--client-ca-file={}", pki("ca.crt")),
        format!("--token-auth-file={}", pki("tokens.csv")),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-key-file={}", pki("sa.pub")),
        format!("--service-account-signing-key-file={}", pki("sa.key")),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        format!("--cert-dir={dir}/pki/serving"),
    ]
}

/// Starts the control plane, creates the sock-shop in it, starts the lab's kubelet and
/// waits until every pod runs; then writes the inventory and kshark's kubeconfig.
pub fn start(bin: &Path) -> Result<(), String> {
    let etcd = super::which("etcd").ok_or("the lab's API server needs etcd (apt-get install etcd-server; scripts/setup.sh does)")?;
    let t = Instant::now();
    let (admin, reader) = pki()?;
    let s = |p: &Path| p.display().to_string();
    let pki = |f: &str| format!("{DIR}/pki/{f}");
    start_argv("etcd", etcd_args(&etcd, "lab", DIR, ETCD_CLIENT, ETCD_PEER), None)?;
    let mut api = apiserver_args(bin, DIR, "127.0.0.1", API_PORT, ETCD_CLIENT);
    api.extend(["--authorization-mode=RBAC", "--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount"].map(String::from));
    start_argv("kube-apiserver", api, None)?;
    write_private(ADMIN_KUBECONFIG, &kubeconfig("lab-admin", &admin))?;
    let rt = runtime()?;
    rt.block_on(async {
        let client = admin_client().await?;
        wait_ready(&client).await?;
        say!("lab: API server up on https://127.0.0.1:{API_PORT} in {:.1} s", t.elapsed().as_secs_f64());
        let kc = ADMIN_KUBECONFIG;
        start_process(
            "kube-controller-manager",
            &[
                &s(&bin.join("kube-controller-manager")),
                &format!("--kubeconfig={kc}"),
                "--secure-port=0",
                "--port=0",
                "--leader-elect=false",
                "--controllers=*,-nodelifecycle",
                &format!("--service-account-private-key-file={}", pki("sa.key")),
                &format!("--root-ca-file={}", pki("ca.crt")),
                "--use-service-account-credentials=false",
            ],
            None,
        )?;
        start_process("kube-scheduler", &[&s(&bin.join("kube-scheduler")), &format!("--kubeconfig={kc}"), "--secure-port=0", "--port=0", "--leader-elect=false"], None)?;
        create_objects(&client).await?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find kshark's own binary: {e}"))?;
        start_process("kubelet", &[&s(&exe), "nslab", "kubelet"], None)?;
        wait_running(&client).await?;
        let inv = snapshot(&client).await?;
        fs::write(super::INVENTORY, serde_json::to_vec_pretty(&inv).unwrap_or_default()).map_err(|e| format!("{}: {e}", super::INVENTORY))?;
        Ok::<(), String>(())
    })?;
    write_private(KUBECONFIG, &kubeconfig("kshark", &reader))?;
    say!("lab: control plane and {} pods running in {:.1} s", PODS.len(), t.elapsed().as_secs_f64());
    Ok(())
}

async fn wait_ready(client: &Client) -> Result<(), String> {
    wait_api(client, || check_alive(&["etcd", "kube-apiserver"])).await
}

/// Waits (up to 90 s) until the API server answers, failing early when `alive` says its
/// processes died.
pub async fn wait_api(client: &Client, alive: impl Fn() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let ns: Api<Namespace> = Api::all(client.clone());
    loop {
        alive()?;
        match ns.get("kube-system").await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("API server not ready after 90 s: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub(super) async fn create<K>(api: &Api<K>, v: Value) -> Result<(), String>
where
    K: kube::Resource<DynamicType = ()> + Clone + k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v.clone()).map_err(|e| format!("lab object {}: {e}", v["metadata"]["name"]))?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(format!("create {} {}: {e}", K::kind(&()), v["metadata"]["name"])),
    }
}

fn deployment(p: &PodDef) -> Value {
    let ports: Vec<Value> = (p.port != 0).then(|| json!({"containerPort": p.port, "protocol": p.protocol()})).into_iter().collect();
    json!({
        "metadata": {"name": p.app, "namespace": p.namespace, "labels": {"name": p.app, "app.kubernetes.io/part-of": "kshark-lab"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"name": p.app}},
            "template": {
                "metadata": {"labels": {"name": p.app}},
                "spec": {"containers": [{"name": p.app, "image": format!("kshark-lab/{}", p.role), "ports": ports}]},
            },
        },
    })
}

fn service(p: &PodDef) -> Value {
    json!({
        "metadata": {"name": p.app, "namespace": p.namespace, "labels": {"name": p.app, "app.kubernetes.io/part-of": "kshark-lab"}},
        "spec": {"clusterIP": "None", "selector": {"name": p.app}, "ports": [{"port": p.port, "targetPort": p.port, "protocol": p.protocol()}]},
    })
}

async fn create_objects(client: &Client) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let cidr = format!("{}.{}.{}.0/24", SUBNET[0], SUBNET[1], SUBNET[2]);
    create(&nodes, json!({"metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}}, "spec": {"podCIDR": cidr}})).await?;
    // admission marks a new node not-ready with a taint; no node lifecycle controller runs here to lift it
    let pp = PatchParams::default();
    nodes.patch(NODE, &pp, &Patch::Merge(json!({"spec": {"taints": null}}))).await.map_err(|e| format!("node {NODE}: {e}"))?;
    let cap = json!({"cpu": "8", "memory": "32Gi", "pods": "110"});
    let now = now_rfc3339();
    let status = json!({"status": {
        "capacity": cap, "allocatable": cap,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kshark lab kubelet", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    nodes.patch_status(NODE, &pp, &Patch::Merge(status)).await.map_err(|e| format!("node {NODE} status: {e}"))?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut seen: Vec<&str> = Vec::new();
    for p in PODS.iter().filter(|p| p.namespace != "kube-system") {
        if !seen.contains(&p.namespace) {
            seen.push(p.namespace);
            create(&namespaces, json!({"metadata": {"name": p.namespace}})).await?;
        }
    }
    let rules = json!([
        {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]},
    ]);
    create(&Api::<ClusterRole>::all(client.clone()), json!({"metadata": {"name": READER_ROLE}, "rules": rules})).await?;
    create(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        json!({"metadata": {"name": READER_ROLE}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READER_ROLE},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kshark"}]}),
    )
    .await?;
    for p in PODS {
        create(&Api::<Deployment>::namespaced(client.clone(), p.namespace), deployment(p)).await?;
        if p.port != 0 {
            create(&Api::<Service>::namespaced(client.clone(), p.namespace), service(p)).await?;
        }
    }
    Ok(())
}

pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The lab's pods as the API has them, each with the slot (network namespace) it holds.
pub async fn lab_pods(client: &Client) -> Result<Vec<Pod>, String> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods.list(&ListParams::default().fields(&format!("spec.nodeName={NODE}"))).await.map_err(|e| format!("list pods: {e}"))?;
    Ok(list.items)
}

pub fn pod_ip(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.pod_ip.as_deref()
}

async fn wait_running(client: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        check_alive(PROCESSES)?;
        let pods = lab_pods(client).await?;
        let waiting: Vec<&str> = PODS.iter().filter(|d| !pods.iter().any(|p| pod_ip(p) == Some(&d.ip().to_string()))).map(|d| d.app).collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("pods not running after 60 s: {} (see {DIR}/log/)", waiting.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pods, Services and Endpoints as `kubectl get pods,services,endpoints -A -o json` prints them.
async fn snapshot(client: &Client) -> Result<Value, String> {
    let lp = ListParams::default();
    let mut items: Vec<Value> = Vec::new();
    let err = |what: &'static str| move |e: kube::Error| format!("list {what}: {e}");
    for p in Api::<Pod>::all(client.clone()).list(&lp).await.map_err(err("pods"))? {
        items.push(serde_json::to_value(p).unwrap_or_default());
    }
    for s in Api::<Service>::all(client.clone()).list(&lp).await.map_err(err("services"))? {
        items.push(serde_json::to_value(s).unwrap_or_default());
    }
    for e in Api::<Endpoints>::all(client.clone()).list(&lp).await.map_err(err("endpoints"))? {
        items.push(serde_json::to_value(e).unwrap_or_default());
    }
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}))
}

/// Whether the control plane is up (every process alive).
pub fn running() -> bool {
    check_alive(PROCESSES).is_ok()
}
