//! Feeds the identity cache from a Kubernetes API server: watches (kube 5 +
//! k8s-openapi) of Pods, Services, EndpointSlices (v1; core/v1 Endpoints where the
//! server has no v1 slices), Nodes, ReplicaSets and Jobs. kube's watcher relists when
//! a watch's resource version has expired and backs off on errors; a relist replaces
//! one kind's objects in the cache in one step, so naming has no gap while it runs.
//! The watches run on their own thread with a small tokio runtime.

use crate::error::Error;
use crate::identity::{Kind, Nanos, Object, Shared};
use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Client, Config};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the API server and credentials come from.
#[derive(Clone, Debug)]
pub enum KubeSource {
    /// `--kubeconfig PATH`.
    Kubeconfig(PathBuf),
    /// `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account.
    Infer,
}

impl KubeSource {
    fn describe(&self) -> String {
        match self {
            KubeSource::Kubeconfig(p) => format!("kubeconfig {}", p.display()),
            KubeSource::Infer => "the Kubernetes API (KUBECONFIG, ~/.kube/config or in-cluster)".into(),
        }
    }
}

/// A running set of watches; dropping it stops them.
pub struct Watch {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The server and whether it had v1 EndpointSlices, for the start-up line.
    pub description: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now() -> Nanos {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as Nanos)
}

enum Ev {
    Apply(Object),
    Delete(Object),
    Init,
    InitApply(Object),
    InitDone,
}

type Events = BoxStream<'static, (Kind, Result<Ev, watcher::Error>)>;

fn watch_kind<K>(client: &Client, kind: Kind, wrap: fn(K) -> Object) -> Events
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |r| {
            let ev = r.map(|e| match e {
                watcher::Event::Apply(o) => Ev::Apply(wrap(o)),
                watcher::Event::Delete(o) => Ev::Delete(wrap(o)),
                watcher::Event::Init => Ev::Init,
                watcher::Event::InitApply(o) => Ev::InitApply(wrap(o)),
                watcher::Event::InitDone => Ev::InitDone,
            });
            (kind, ev)
        })
        .boxed()
}

/// A client for the source, and the server's URL.
pub async fn client_for(src: &KubeSource) -> Result<(Client, String), String> {
    let config = match src {
        KubeSource::Kubeconfig(p) => {
            let kc = Kubeconfig::read_from(p).map_err(|e| format!("cannot read kubeconfig {}: {e}", p.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| format!("kubeconfig {}: {e}", p.display()))?
        }
        KubeSource::Infer => Config::infer().await.map_err(|e| format!("no Kubernetes API found (KUBECONFIG, ~/.kube/config, in-cluster): {e}"))?,
    };
    let url = config.cluster_url.to_string();
    Ok((Client::try_from(config).map_err(|e| format!("API server {url}: {e}"))?, url))
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Connects, starts the watches and waits (up to `wait`) until every kind has been
/// listed once, so that the first entries are named. Errors say what and where: an
/// unreachable server, a refused token, a forbidden list.
pub fn start(src: KubeSource, shared: Shared, wait: Duration) -> Result<Watch, Error> {
    let fail = |detail: String| Error::Kube { from: src.describe(), detail };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(e.to_string()))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let src2 = src.clone();
    let thread = std::thread::Builder::new()
        .name("kshark-kube".into())
        .spawn(move || rt.block_on(run(src2, shared, ready_tx, stop_rx)))
        .map_err(|e| fail(e.to_string()))?;
    let mut w = Watch { stop: Some(stop_tx), thread: Some(thread), description: String::new() };
    match ready_rx.recv_timeout(wait) {
        Ok(Ok(d)) => {
            w.description = d;
            Ok(w)
        }
        Ok(Err(e)) => Err(fail(e)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(fail("the watch thread ended before the first lists".into())),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(fail(format!("the API server did not list pods, services and endpoints within {} s", wait.as_secs()))),
    }
}

async fn run(src: KubeSource, shared: Shared, ready: std::sync::mpsc::Sender<Result<String, String>>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let (client, url) = match client_for(&src).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // one list of pods up front: an unreachable server or a refused token is an error
    // now, not a watcher retrying quietly
    if let Err(e) = Api::<Pod>::all(client.clone()).list(&ListParams::default().limit(1)).await {
        let _ = ready.send(Err(format!("API server {url}: cannot list pods: {e}")));
        return;
    }
    let slices_v1 = match Api::<EndpointSlice>::all(client.clone()).list(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(e) if matches!(status_code(&e), Some(404) | Some(403)) => false,
        Err(e) => {
            let _ = ready.send(Err(format!("API server {url}: cannot list endpointslices: {e}")));
            return;
        }
    };
    let mut streams: Vec<Events> = vec![
        watch_kind::<Pod>(&client, Kind::Pod, |o| Object::Pod(Box::new(o))),
        watch_kind::<Service>(&client, Kind::Service, |o| Object::Service(Box::new(o))),
        watch_kind::<Node>(&client, Kind::Node, |o| Object::Node(Box::new(o))),
        watch_kind::<ReplicaSet>(&client, Kind::ReplicaSet, |o| Object::ReplicaSet(Box::new(o))),
        watch_kind::<Job>(&client, Kind::Job, |o| Object::Job(Box::new(o))),
    ];
    let ep_kind = if slices_v1 {
        streams.push(watch_kind::<EndpointSlice>(&client, Kind::EndpointSlice, |o| Object::EndpointSlice(Box::new(o))));
        Kind::EndpointSlice
    } else {
        streams.push(watch_kind::<Endpoints>(&client, Kind::Endpoints, |o| Object::Endpoints(Box::new(o))));
        Kind::Endpoints
    };
    let description = format!(
        "{url} ({})",
        if slices_v1 { "EndpointSlices v1" } else { "no v1 EndpointSlices: using core/v1 Endpoints" }
    );
    let needed: HashSet<Kind> = [Kind::Pod, Kind::Service, ep_kind].into();
    let mut listed: HashSet<Kind> = HashSet::new();
    let mut ready = Some(ready);
    let mut buffers: HashMap<Kind, Vec<Object>> = HashMap::new();
    let mut last_error: HashMap<Kind, Instant> = HashMap::new();
    let mut all = stream::select_all(streams);
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            n = all.next() => n,
        };
        let Some((kind, ev)) = next else { break };
        let at = now();
        match ev {
            Ok(Ev::Apply(o)) => shared.write().map(|mut c| c.apply(o, at)).unwrap_or(()),
            Ok(Ev::Delete(o)) => shared.write().map(|mut c| c.delete(&o, at)).unwrap_or(()),
            Ok(Ev::Init) => {
                buffers.insert(kind, Vec::new());
            }
            Ok(Ev::InitApply(o)) => buffers.entry(kind).or_default().push(o),
            Ok(Ev::InitDone) => {
                let objs = buffers.remove(&kind).unwrap_or_default();
                if let Ok(mut c) = shared.write() {
                    c.relist(kind, objs, at);
                }
                listed.insert(kind);
                if needed.is_subset(&listed) {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(description.clone()));
                    }
                }
            }
            Err(e) => {
                // one line per kind at most every 30 s; the watcher backs off and retries
                let t = last_error.entry(kind).or_insert_with(|| Instant::now() - Duration::from_secs(60));
                if t.elapsed() >= Duration::from_secs(30) {
                    *t = Instant::now();
                    eprintln!("kshark: watching {kind:?} on {url}: {e}; retrying");
                }
            }
        }
    }
}
