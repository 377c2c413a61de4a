//! `kshark tap` against a cluster and `kshark clean`: the objects of `deploy/kubernetes/`
//! (embedded), made for this tap (image, targets, a token), printed (`--dry-run`) or
//! applied through the API server with server-side apply; then waiting for the hub and
//! the workers with progress shown, port-forwarding the hub to 127.0.0.1, and opening the
//! terminal UI (or printing entries, or pointing at the dashboard). `clean` deletes what
//! carries kshark's label and says what.

use crate::tap::CaptureArgs;
use crate::Failure;
use clap::Args;
use kshark_capture::kube_watch::{client_for, KubeSource};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use kube::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MANIFESTS: &[(&str, &str)] = &[
    ("namespace.yaml", include_str!("../deploy/kubernetes/namespace.yaml")),
    ("rbac.yaml", include_str!("../deploy/kubernetes/rbac.yaml")),
    ("hub.yaml", include_str!("../deploy/kubernetes/hub.yaml")),
    ("worker.yaml", include_str!("../deploy/kubernetes/worker.yaml")),
];
pub const NAMESPACE: &str = "kshark";
const SECRET: &str = "kshark-token";
/// What every object kshark puts into a cluster carries (and `clean` looks for).
pub const LABEL: &str = "app.kubernetes.io/managed-by=kshark";
const MANAGER: &str = "kshark";
/// The image the manifests name, replaced by `--image` / `--registry`.
const IMAGE: &str = "kshark:0.1.0";

#[derive(Args, Clone, Debug, Default)]
pub struct DeployArgs {
    /// Deploy a hub and workers into the cluster (the default when a kubeconfig other than
    /// the lab's is what `tap` would use, and no -i, --replay or --inventory is given)
    #[arg(long, conflicts_with = "local")]
    pub deploy: bool,
    /// Capture on this machine even when a cluster's kubeconfig is at hand
    #[arg(long)]
    pub local: bool,
    /// Print the manifests that would be applied (YAML) and exit
    #[arg(long)]
    pub dry_run: bool,
    /// The image of the hub and the workers [default: kshark:VERSION, or REGISTRY/kshark:VERSION]
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Registry (and path) for the default image, e.g. registry.internal:5000/tools
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// How long to wait for the hub and the workers to be ready
    #[arg(long, value_parser = crate::tap::parse_duration, default_value = "5m", value_name = "D")]
    pub wait: Duration,
}

impl DeployArgs {
    fn image(&self) -> String {
        match (&self.image, &self.registry) {
            (Some(i), _) => i.clone(),
            (None, Some(r)) => format!("{}/{IMAGE}", r.trim_end_matches('/')),
            (None, None) => IMAGE.to_string(),
        }
    }
}

/// Whether this tap deploys into a cluster rather than capturing here.
pub fn wanted(d: &DeployArgs, c: &CaptureArgs) -> bool {
    if d.local || !c.inventory.is_empty() || !c.ifaces.is_empty() || c.replay.is_some() {
        return false;
    }
    if d.deploy || d.dry_run {
        return true;
    }
    match &c.kubeconfig {
        Some(k) => k != std::path::Path::new(crate::lab::KUBECONFIG),
        None => {
            // the lab's API server (its files are root's) means capturing here
            let lab = std::fs::File::open(crate::lab::KUBECONFIG).is_ok();
            !lab && !crate::tap::in_cluster() && crate::tap::user_kubeconfig()
        }
    }
}

/// The worker's targeting flags, as tap was given them.
fn worker_targets(c: &CaptureArgs) -> Vec<String> {
    let mut v = Vec::new();
    if c.all || c.namespaces.is_empty() {
        v.push("-A".to_string());
    }
    for n in &c.namespaces {
        v.extend(["-n".to_string(), n.clone()]);
    }
    if let Some(f) = &c.filter {
        v.extend(["--filter".to_string(), f.clone()]);
    }
    let engine = match c.engine {
        crate::tap::Engine::Auto => "auto",
        crate::tap::Engine::Ebpf => "ebpf",
        crate::tap::Engine::Libpcap => "libpcap",
    };
    v.extend(["--engine".to_string(), engine.to_string()]);
    if let Some(r) = &c.pattern {
        v.push(r.clone());
    }
    v
}

/// The objects for this tap: the embedded manifests with the image and the workers'
/// targets set, and the token Secret.
pub fn objects(d: &DeployArgs, c: &CaptureArgs, tokens: &Tokens) -> Result<Vec<Value>, Failure> {
    let image = d.image();
    let mut out = Vec::new();
    for (file, text) in MANIFESTS {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| Failure::Runtime(format!("deploy/kubernetes/{file}: {e}")))?;
        for mut o in docs.into_iter().filter(|o| !o.is_null()) {
            if let Some(containers) = o.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut) {
                for ctr in containers {
                    ctr["image"] = json!(image);
                    if ctr["name"] == "worker" {
                        let args = ctr["args"].as_array_mut().expect("the worker's args");
                        args.retain(|a| a != "-A");
                        args.extend(worker_targets(c).into_iter().map(Value::from));
                    }
                }
            }
            out.push(o);
        }
    }
    out.insert(
        1,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": SECRET, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "kshark", "app.kubernetes.io/managed-by": "kshark"}},
               "stringData": {"token": tokens.worker, "reader-token": tokens.reader}}),
    );
    Ok(out)
}

pub fn yaml(objects: &[Value]) -> String {
    objects.iter().map(|o| serde_saphyr::to_string(o).unwrap_or_default()).collect::<Vec<_>>().join("---\n")
}

fn describe(o: &Value) -> String {
    format!("{} {}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?"))
}

async fn api_for(client: &Client, o: &Value) -> Result<Api<DynamicObject>, Failure> {
    let (group, version) = match o["apiVersion"].as_str().unwrap_or("").split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), o["apiVersion"].as_str().unwrap_or("").to_string()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, o["kind"].as_str().unwrap_or(""));
    let (ar, caps) = pinned_kind(client, &gvk).await.map_err(|e| Failure::Runtime(format!("{}: the API server does not serve it: {e}", describe(o))))?;
    Ok(match (caps.scope, o["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    })
}

/// Server-side apply of every object (`dry_run`: the API server checks them, stores
/// nothing). Returns what each became.
pub async fn apply(client: &Client, objects: &[Value], dry_run: bool) -> Result<Vec<String>, Failure> {
    let mut done = Vec::new();
    let mut pp = PatchParams::apply(MANAGER).force();
    pp.dry_run = dry_run;
    for o in objects {
        let api = api_for(client, o).await?;
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(name, &pp, &Patch::Apply(o)).await.map_err(|e| Failure::Runtime(format!("{}: {e}", describe(o))))?;
        done.push(describe(o));
    }
    Ok(done)
}

/// The workers' token and the readers' (two: reading must not imply writing).
pub struct Tokens {
    pub worker: String,
    pub reader: String,
}

impl Tokens {
    pub fn new() -> Result<Tokens, Failure> {
        let new = || crate::hubcmd::new_token().map_err(|e| Failure::Runtime(e.to_string()));
        Ok(Tokens { worker: new()?, reader: new()? })
    }
}

/// The tokens: the cluster's Secret's when it has them (an upgrade keeps them), else new
/// ones.
async fn tokens(client: &Client) -> Result<Tokens, Failure> {
    let mut t = Tokens::new()?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), NAMESPACE);
    if let Ok(s) = secrets.get(SECRET).await {
        let key = |k: &str| s.data.as_ref().and_then(|d| d.get(k)).and_then(|b| String::from_utf8(b.0.clone()).ok()).map(|t| t.trim().to_string());
        if let Some(w) = key("token") {
            t.worker = w;
        }
        if let Some(r) = key("reader-token").filter(|r| *r != t.worker) {
            t.reader = r;
        }
    }
    Ok(t)
}

/// Why the pods that are not ready are not (their phase, a container's waiting reason).
async fn pod_states(client: &Client) -> String {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let Ok(list) = pods.list(&ListParams::default().labels(LABEL)).await else { return String::new() };
    let mut v = Vec::new();
    for p in list.items {
        let st = p.status.unwrap_or_default();
        let waiting = st.container_statuses.iter().flatten().filter_map(|c| c.state.as_ref()?.waiting.as_ref()).map(|w| format!("{}{}", w.reason.clone().unwrap_or_default(), w.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())).next();
        let cond = st.conditions.iter().flatten().find(|c| c.status != "True").and_then(|c| c.message.clone());
        v.push(format!("{} {}{}", p.metadata.name.unwrap_or_default(), st.phase.unwrap_or_default(), waiting.or(cond).map(|w| format!(" ({w})")).unwrap_or_default()));
    }
    v.join("; ")
}

/// Waits for the hub to be available and every scheduled worker ready, saying how far.
async fn wait_ready(client: &Client, limit: Duration) -> Result<(), Failure> {
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let daemons: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let hub = deploys.get("kshark-hub").await.ok().and_then(|d| d.status).map(|s| s.available_replicas.unwrap_or(0)).unwrap_or(0);
        let (ready, want) = daemons.get("kshark-worker").await.ok().and_then(|d| d.status).map(|s| (s.number_ready, s.desired_number_scheduled)).unwrap_or((0, 0));
        let now = format!("hub {hub}/1 available, workers {ready}/{want} ready");
        if now != last {
            eprintln!("kshark: {now}");
            last = now;
        }
        if hub >= 1 && want > 0 && ready >= want {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(Failure::Runtime(format!("not ready after {}s ({last}): {}", limit.as_secs(), pod_states(client).await)));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The hub pod to forward to: running, ready, and not on its way out.
async fn hub_pod(pods: &Api<k8s_openapi::api::core::v1::Pod>) -> Result<String, Failure> {
    let list = pods.list(&ListParams::default().labels("app.kubernetes.io/name=kshark-hub")).await.map_err(|e| Failure::Runtime(format!("the hub's pod: {e}")))?;
    let ready = |p: &k8s_openapi::api::core::v1::Pod| {
        p.metadata.deletion_timestamp.is_none() && p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    list.items.into_iter().find(ready).and_then(|p| p.metadata.name).ok_or_else(|| Failure::Runtime("no ready hub pod to forward to".into()))
}

/// Forwards 127.0.0.1:`port` to the hub pod's 8899 (one API port-forward per connection).
/// When the hub pod is replaced (deleted, rescheduled, rolled out) the next connections go
/// to the new one, so that clients that reconnect find it.
async fn port_forward(client: &Client, port: u16) -> Result<std::net::SocketAddr, Failure> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = hub_pod(&pods).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| Failure::Runtime(format!("cannot listen on 127.0.0.1:{port} for the port-forward: {e} (use --port N)")))?;
    let addr = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
    eprintln!("kshark: hub pod {NAMESPACE}/{pod} forwarded to http://{addr}");
    let current = std::sync::Arc::new(tokio::sync::Mutex::new(pod));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (pods, current) = (pods.clone(), current.clone());
            tokio::spawn(async move {
                let pod = current.lock().await.clone();
                let pf = match pods.portforward(&pod, &[8899]).await {
                    Ok(pf) => Ok(pf),
                    Err(first) => {
                        // the pod went away: forward to the one that replaced it, if ready
                        let mut cur = current.lock().await;
                        match hub_pod(&pods).await {
                            Ok(new) if new != *cur => {
                                eprintln!("kshark: hub pod {NAMESPACE}/{pod} is gone; forwarding to {NAMESPACE}/{new}");
                                *cur = new.clone();
                                drop(cur);
                                pods.portforward(&new, &[8899]).await.map_err(|e| format!("{new}: {e}"))
                            }
                            _ => Err(format!("{pod}: {first}")),
                        }
                    }
                };
                match pf {
                    Ok(mut pf) => {
                        if let Some(mut upstream) = pf.take_stream(8899) {
                            let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                        }
                    }
                    Err(e) => eprintln!("kshark: port-forward to {e}"),
                }
            });
        }
    });
    Ok(addr)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| Failure::Runtime(e.to_string()))
}

fn source(c: &CaptureArgs) -> KubeSource {
    c.kubeconfig.clone().map(KubeSource::Kubeconfig).unwrap_or(KubeSource::Infer)
}

/// `tap` into a cluster. `ui`: what to open once the hub is forwarded.
pub fn tap(d: &DeployArgs, c: &CaptureArgs, port: u16, web: bool, no_tui: bool) -> Result<(), Failure> {
    if d.dry_run {
        // new tokens each time: the printed manifests apply as they stand
        print!("{}", yaml(&objects(d, c, &Tokens::new()?)?));
        return Ok(());
    }
    let rt = runtime()?;
    let (client, token) = rt.block_on(async {
        let (client, url) = client_for(&source(c)).await.map_err(Failure::Runtime)?;
        eprintln!("kshark: deploying into {url} (namespace {NAMESPACE}, image {})", d.image());
        let tokens = tokens(&client).await?;
        for what in apply(&client, &objects(d, c, &tokens)?, false).await? {
            eprintln!("kshark: applied {what}");
        }
        wait_ready(&client, d.wait).await?;
        Ok::<_, Failure>((client, tokens.reader))
    })?;
    let addr = rt.block_on(port_forward(&client, port))?;
    let hub = kshark_hub::client::HubAddr::parse(&format!("http://{addr}"), Some(token), None).map_err(|e| Failure::Runtime(e.to_string()))?;
    if web {
        eprintln!("kshark: dashboard on http://{addr}/ (it asks for the reader token: kubectl -n {NAMESPACE} get secret {SECRET} -o jsonpath='{{.data.reader-token}}' | base64 -d)");
    }
    let _rt = rt; // the port-forward runs on it
    if no_tui || !crate::tuicmd::is_terminal() {
        return crate::hubcmd::follow(hub, c.filter.clone().unwrap_or_default());
    }
    crate::tuicmd::attach(hub, c.filter.clone().unwrap_or_default())
}

#[derive(Args)]
pub struct CleanArgs {
    /// The cluster's kubeconfig [default: KUBECONFIG, ~/.kube/config, in-cluster]
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
}

/// The kinds kshark creates, cluster-scoped and namespaced.
const KINDS: &[(&str, &str, &str)] = &[
    ("apps", "v1", "DaemonSet"),
    ("apps", "v1", "Deployment"),
    ("", "v1", "Service"),
    ("", "v1", "Secret"),
    ("", "v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
    ("", "v1", "Namespace"),
];

/// What carries kshark's label, kind by kind (in `KINDS`' order): the API for the kind, and
/// each object's namespace and name.
async fn labelled(client: &Client) -> Result<Vec<(&'static str, Vec<(Api<DynamicObject>, String, String)>)>, Failure> {
    let mut found = Vec::new();
    for (g, v, k) in KINDS {
        let (ar, _) = pinned_kind(client, &GroupVersionKind::gvk(g, v, k)).await.map_err(|e| Failure::Runtime(format!("{k}: {e}")))?;
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = all.list(&ListParams::default().labels(LABEL)).await.map_err(|e| Failure::Runtime(format!("listing {k}s: {e}")))?;
        let objects = list
            .items
            .into_iter()
            .map(|o| {
                let name = o.metadata.name.unwrap_or_default();
                match o.metadata.namespace {
                    Some(ns) => (Api::namespaced_with(client.clone(), &ns, &ar), format!("{ns}/{name}"), name),
                    None => (all.clone(), name.clone(), name),
                }
            })
            .collect();
        found.push((*k, objects));
    }
    Ok(found)
}

pub fn clean(a: CleanArgs) -> Result<(), Failure> {
    let rt = runtime()?;
    rt.block_on(async {
        let src = a.kubeconfig.map(KubeSource::Kubeconfig).unwrap_or(KubeSource::Infer);
        let (client, url) = client_for(&src).await.map_err(Failure::Runtime)?;
        let found = labelled(&client).await?;
        if found.iter().all(|(_, objects)| objects.is_empty()) {
            eprintln!("kshark clean: nothing of kshark's in {url}");
            return Ok(());
        }
        for (k, objects) in found {
            for (api, shown, name) in objects {
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => eprintln!("kshark clean: deleted {k} {shown}"),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(Failure::Runtime(format!("deleting {k} {shown}: {e}"))),
                }
            }
        }
        // the namespace goes once its contents have
        let start = Instant::now();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        while namespaces.get_opt(NAMESPACE).await.ok().flatten().is_some() {
            if start.elapsed() > Duration::from_secs(60) {
                eprintln!("kshark clean: namespace {NAMESPACE} is still terminating after 60 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    })
}
