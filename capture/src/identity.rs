//! The identity cache: who held an address *at a given time*. Fed by the Kubernetes
//! watches ([`crate::kube_watch`]) or by inventory files ([`crate::inventory`]), it
//! names both ends of an entry: a pod (with namespace, labels, workload and node), a
//! Service's ClusterIP, the Services a pod backs, or a node's own address (where
//! hostNetwork pods share it, the node is named and no pod is guessed).
//!
//! Addresses are reused as pods come and go, so each address keeps a short history of
//! tenures `[from, until)`; an entry is named by the tenure covering its timestamp.
//! `from` is when the holder started (the pod's `status.startTime`, else its creation;
//! objects from a file hold their address for all time), `until` is when its deletion
//! was seen or when the next holder started, whichever is first.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kshark_dissect::entry::Endpoint;
use kshark_dissect::Entry;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Nanoseconds since the Unix epoch, as entry timestamps are.
pub type Nanos = i64;
/// How long ended tenures are kept, after their end was seen, for naming late entries.
const HISTORY_NS: Nanos = 15 * 60 * 1_000_000_000;
/// An entry slightly older than its holder's recorded start (seconds precision, clocks)
/// is still named by it when nobody else held the address.
const SLACK_NS: Nanos = 2_000_000_000;
/// Tenures kept per address at most.
const MAX_TENURES: usize = 16;

#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The controlling owner as the pod names it: (kind, name).
    pub owner: Option<(String, String)>,
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// When it started holding its address (ns), if known.
    pub since: Option<Nanos>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub cluster_ips: Vec<IpAddr>,
    pub selector: BTreeMap<String, String>,
    pub since: Option<Nanos>,
}

#[derive(Clone, Debug)]
struct Tenure<T> {
    from: Nanos,
    until: Nanos,
    /// When the end was learnt (history is kept for a while after that).
    ended_seen: Nanos,
    val: Arc<T>,
}

/// One address's holders over time, oldest first.
#[derive(Clone, Debug)]
struct History<T>(Vec<Tenure<T>>);

impl<T> Default for History<T> {
    fn default() -> Self {
        History(Vec::new())
    }
}

/// What holds addresses: a pod (its own) or a Service (its ClusterIPs).
trait Holder {
    /// Tells one object from another of the same name (uid and name).
    fn identity(&self) -> (&str, &str);
    fn addrs(&self) -> &[IpAddr];
    fn since(&self) -> Option<Nanos>;
}

impl Holder for PodInfo {
    fn identity(&self) -> (&str, &str) {
        (&self.uid, &self.name)
    }
    fn addrs(&self) -> &[IpAddr] {
        &self.ips
    }
    fn since(&self) -> Option<Nanos> {
        self.since
    }
}

impl Holder for ServiceInfo {
    fn identity(&self) -> (&str, &str) {
        (&self.uid, &self.name)
    }
    fn addrs(&self) -> &[IpAddr] {
        &self.cluster_ips
    }
    fn since(&self) -> Option<Nanos> {
        self.since
    }
}

impl<T: Holder> History<T> {
    /// `val` holds the address from `from` on (an update when it already does).
    fn open(&mut self, from: Nanos, at: Nanos, val: Arc<T>) {
        if let Some(t) = self.0.iter_mut().rev().find(|t| t.until == Nanos::MAX && t.val.identity() == val.identity()) {
            t.val = val;
            return;
        }
        // whoever held it before gave it up when this one started
        for t in &mut self.0 {
            if t.until > from {
                t.until = from.max(t.from);
                t.ended_seen = at;
            }
        }
        self.0.push(Tenure { from, until: Nanos::MAX, ended_seen: Nanos::MAX, val });
        self.0.sort_by_key(|t| t.from);
        if self.0.len() > MAX_TENURES {
            self.0.remove(0);
        }
    }

    fn close(&mut self, at: Nanos, holder: &T) {
        for t in &mut self.0 {
            if t.until == Nanos::MAX && t.val.identity() == holder.identity() {
                t.until = at.max(t.from);
                t.ended_seen = at;
            }
        }
    }

    fn at(&self, ts: Nanos) -> Option<&Arc<T>> {
        let covering = |slack: Nanos| self.0.iter().rev().find(|t| t.from.saturating_sub(slack) <= ts && ts < t.until);
        covering(0).or_else(|| covering(SLACK_NS)).map(|t| &t.val)
    }

    fn prune(&mut self, now: Nanos) {
        self.0.retain(|t| t.until == Nanos::MAX || t.ended_seen > now.saturating_sub(HISTORY_NS));
    }

    fn current(&self) -> Option<&Arc<T>> {
        self.0.iter().rev().find(|t| t.until == Nanos::MAX).map(|t| &t.val)
    }
}

/// The current holders of one kind by namespace/name, and every address's history.
#[derive(Debug)]
struct Holders<T> {
    current: HashMap<String, Arc<T>>,
    by_ip: HashMap<IpAddr, History<T>>,
}

impl<T> Default for Holders<T> {
    fn default() -> Self {
        Holders { current: HashMap::new(), by_ip: HashMap::new() }
    }
}

impl<T: Holder> Holders<T> {
    /// Added or changed at `at`; it holds its addresses from `from`.
    fn put(&mut self, key: &str, info: T, from: Nanos, at: Nanos) {
        let info = Arc::new(info);
        if let Some(old) = self.current.get(key) {
            // an address it no longer has was given up now
            for ip in old.addrs().iter().filter(|ip| !info.addrs().contains(ip)) {
                if let Some(h) = self.by_ip.get_mut(ip) {
                    h.close(at, old);
                }
            }
        }
        for ip in info.addrs() {
            self.by_ip.entry(*ip).or_default().open(from, at, info.clone());
        }
        self.current.insert(key.to_string(), info);
    }

    fn remove(&mut self, key: &str, at: Nanos) {
        if let Some(old) = self.current.remove(key) {
            for ip in old.addrs() {
                if let Some(h) = self.by_ip.get_mut(ip) {
                    h.close(at, &old);
                }
            }
        }
    }

    fn prune(&mut self, now: Nanos) {
        self.by_ip.values_mut().for_each(|h| h.prune(now));
        self.by_ip.retain(|_, h| !h.0.is_empty());
    }
}

/// Which kind of object a relist replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Node,
    ReplicaSet,
    Job,
}

/// An object the cache understands.
#[derive(Clone, Debug)]
pub enum Object {
    Pod(Box<Pod>),
    Service(Box<Service>),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
    Node(Box<Node>),
    ReplicaSet(Box<ReplicaSet>),
    Job(Box<Job>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Node(_) => Kind::Node,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::Job(_) => Kind::Job,
        }
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
        }
    }

    /// namespace/name: the key objects of one kind are known by.
    fn key(&self) -> String {
        let m = self.meta();
        format!("{}/{}", m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""))
    }
}

fn nanos(t: &Option<Time>) -> Option<Nanos> {
    t.as_ref().map(|t| t.0.as_nanosecond().clamp(Nanos::MIN as i128, Nanos::MAX as i128) as Nanos)
}

fn controller(meta: &ObjectMeta) -> Option<(String, String)> {
    let owners = meta.owner_references.as_ref()?;
    let o = owners.iter().find(|o| o.controller == Some(true)).or(owners.first())?;
    Some((o.kind.clone(), o.name.clone()))
}

fn parse_ips<'a>(it: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    it.into_iter().filter_map(|s| s.parse().ok()).collect()
}

fn pod_info(p: &Pod) -> PodInfo {
    let m = &p.metadata;
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let mut ips = parse_ips(status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|i| &i.ip));
    if ips.is_empty() {
        ips = parse_ips(status.and_then(|s| s.pod_ip.as_ref()));
    }
    PodInfo {
        uid: m.uid.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
        labels: m.labels.clone().unwrap_or_default(),
        owner: controller(m),
        node: spec.and_then(|s| s.node_name.clone()),
        ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        since: nanos(&status.and_then(|s| s.start_time.clone())).or_else(|| nanos(&m.creation_timestamp)),
    }
}

fn service_info(s: &Service) -> ServiceInfo {
    let m = &s.metadata;
    let spec = s.spec.as_ref();
    let mut cluster_ips = parse_ips(spec.and_then(|s| s.cluster_ips.as_ref()).into_iter().flatten());
    if cluster_ips.is_empty() {
        cluster_ips = parse_ips(spec.and_then(|s| s.cluster_ip.as_ref()));
    }
    ServiceInfo {
        uid: m.uid.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
        cluster_ips,
        selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
        since: nanos(&m.creation_timestamp),
    }
}

/// The cache. Not locked itself: share it as [`Shared`].
#[derive(Default, Debug)]
pub struct Identity {
    /// namespace/name → the current object of each kind.
    objects: HashMap<Kind, BTreeMap<String, Object>>,
    pods: Holders<PodInfo>,
    services: Holders<ServiceInfo>,
    nodes: HashMap<IpAddr, String>,
    /// namespace/pod → the Services it backs (from Endpoints or EndpointSlices).
    backs: HashMap<String, BTreeSet<String>>,
    /// namespace/ReplicaSet or Job → its controller (Deployment, CronJob, ...).
    owners: HashMap<String, (String, String)>,
    /// Objects from a file: they hold their addresses for all time.
    timeless: bool,
    version: u64,
}

/// The cache shared between the watch (writer) and its readers.
pub type Shared = Arc<RwLock<Identity>>;

impl Identity {
    /// A cache whose objects hold their addresses for all time (inventory files, which
    /// are a snapshot with no history).
    pub fn timeless() -> Self {
        Identity { timeless: true, ..Default::default() }
    }

    /// Bumped by every change, so a reader can tell whether to look again.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// An object was added or changed, seen at `at`.
    pub fn apply(&mut self, obj: Object, at: Nanos) {
        self.extend(vec![obj], at);
    }

    /// Objects added or changed, seen at `at` (the Services' backing pods are worked
    /// out once for all of them).
    pub fn extend(&mut self, objs: Vec<Object>, at: Nanos) {
        let mut rebuild = false;
        for o in objs {
            rebuild |= self.put(o, at);
        }
        if rebuild {
            self.rebuild_backs();
        }
        self.version += 1;
    }

    /// An object was deleted, seen at `at`.
    pub fn delete(&mut self, obj: &Object, at: Nanos) {
        if self.forget(obj.kind(), &obj.key(), at) {
            self.rebuild_backs();
        }
        self.prune(at);
        self.version += 1;
    }

    /// A relist of one kind: `objs` is everything there is now. What is missing was
    /// deleted while the watch was away (closed at `at`); naming goes on throughout.
    pub fn relist(&mut self, kind: Kind, objs: Vec<Object>, at: Nanos) {
        let listed: BTreeSet<String> = objs.iter().map(Object::key).collect();
        let gone: Vec<String> = self.objects.get(&kind).into_iter().flat_map(|m| m.keys()).filter(|k| !listed.contains(*k)).cloned().collect();
        for k in gone {
            self.forget(kind, &k, at);
        }
        for o in objs {
            self.put(o, at);
        }
        if matches!(kind, Kind::Endpoints | Kind::EndpointSlice) {
            self.rebuild_backs();
        }
        self.prune(at);
        self.version += 1;
    }

    /// Files the object; true when the backing index must be rebuilt.
    fn put(&mut self, obj: Object, at: Nanos) -> bool {
        let key = obj.key();
        let from = |since: Option<Nanos>| if self.timeless { Nanos::MIN } else { since.unwrap_or(at).min(at) };
        match &obj {
            Object::Pod(p) => {
                let info = pod_info(p);
                let f = from(info.since());
                self.pods.put(&key, info, f, at);
            }
            Object::Service(s) => {
                let info = service_info(s);
                let f = from(info.since());
                self.services.put(&key, info, f, at);
            }
            Object::Node(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                self.nodes.retain(|_, v| *v != name);
                for a in n.status.as_ref().and_then(|s| s.addresses.as_ref()).into_iter().flatten() {
                    if a.type_ == "InternalIP" || a.type_ == "ExternalIP" {
                        if let Ok(ip) = a.address.parse() {
                            self.nodes.insert(ip, name.clone());
                        }
                    }
                }
            }
            Object::ReplicaSet(_) | Object::Job(_) => match controller(obj.meta()) {
                Some(o) => {
                    self.owners.insert(key.clone(), o);
                }
                None => {
                    self.owners.remove(&key);
                }
            },
            Object::Endpoints(_) | Object::EndpointSlice(_) => {}
        }
        let kind = obj.kind();
        self.objects.entry(kind).or_default().insert(key, obj);
        matches!(kind, Kind::Endpoints | Kind::EndpointSlice)
    }

    /// Drops the object; true when the backing index must be rebuilt.
    fn forget(&mut self, kind: Kind, key: &str, at: Nanos) -> bool {
        let Some(obj) = self.objects.get_mut(&kind).and_then(|m| m.remove(key)) else { return false };
        match kind {
            Kind::Pod => self.pods.remove(key, at),
            Kind::Service => self.services.remove(key, at),
            Kind::Node => {
                let name = obj.meta().name.clone().unwrap_or_default();
                self.nodes.retain(|_, v| *v != name);
            }
            Kind::ReplicaSet | Kind::Job => {
                self.owners.remove(key);
            }
            Kind::Endpoints | Kind::EndpointSlice => return true,
        }
        false
    }

    fn prune(&mut self, now: Nanos) {
        self.pods.prune(now);
        self.services.prune(now);
    }

    fn rebuild_backs(&mut self) {
        let mut backs: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut add = |ns: &str, svc: &str, r: Option<&k8s_openapi::api::core::v1::ObjectReference>| {
            if let Some(r) = r.filter(|r| r.kind.as_deref() == Some("Pod")) {
                let pns = r.namespace.as_deref().unwrap_or(ns);
                backs.entry(format!("{pns}/{}", r.name.as_deref().unwrap_or(""))).or_default().insert(svc.to_string());
            }
        };
        for o in self.objects.get(&Kind::Endpoints).into_iter().flat_map(|m| m.values()) {
            if let Object::Endpoints(e) = o {
                let ns = e.metadata.namespace.as_deref().unwrap_or("default");
                let svc = e.metadata.name.as_deref().unwrap_or("");
                for s in e.subsets.iter().flatten() {
                    for a in s.addresses.iter().flatten().chain(s.not_ready_addresses.iter().flatten()) {
                        add(ns, svc, a.target_ref.as_ref());
                    }
                }
            }
        }
        for o in self.objects.get(&Kind::EndpointSlice).into_iter().flat_map(|m| m.values()) {
            if let Object::EndpointSlice(s) = o {
                let ns = s.metadata.namespace.as_deref().unwrap_or("default");
                let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")) else { continue };
                for ep in &s.endpoints {
                    add(ns, svc, ep.target_ref.as_ref());
                }
            }
        }
        // A pod keeps the Services it backed while its name is kept: Endpoints drop a
        // pod as soon as it terminates, before its last exchanges are named.
        let known: HashSet<String> = self.pods.by_ip.values().flat_map(|h| h.0.iter()).map(|t| format!("{}/{}", t.val.namespace, t.val.name)).collect();
        for (k, v) in std::mem::take(&mut self.backs) {
            if known.contains(&k) {
                backs.entry(k).or_insert(v);
            }
        }
        self.backs = backs;
    }

    /// The pod that held `ip` at `ts` (not hostNetwork pods: they share their node's).
    pub fn pod_at(&self, ip: &IpAddr, ts: Nanos) -> Option<&Arc<PodInfo>> {
        self.pods.by_ip.get(ip)?.at(ts).filter(|p| !p.host_network)
    }

    pub fn service_at(&self, ip: &IpAddr, ts: Nanos) -> Option<&Arc<ServiceInfo>> {
        self.services.by_ip.get(ip)?.at(ts)
    }

    /// The node whose own address `ip` is.
    pub fn node(&self, ip: &IpAddr) -> Option<&str> {
        self.nodes.get(ip).map(String::as_str)
    }

    /// The workload a pod belongs to: (kind, name), following ReplicaSets to their
    /// Deployment and Jobs to their CronJob.
    pub fn workload(&self, p: &PodInfo) -> Option<(String, String)> {
        let (kind, name) = p.owner.clone()?;
        if let Some(up) = self.owners.get(&format!("{}/{name}", p.namespace)) {
            return Some(up.clone());
        }
        if kind == "ReplicaSet" && !self.objects.get(&Kind::ReplicaSet).is_some_and(|m| m.contains_key(&format!("{}/{name}", p.namespace))) {
            // the ReplicaSet itself is not known (a file without them): its name is the
            // Deployment's plus the pod template hash
            if let Some(base) = p.labels.get("pod-template-hash").and_then(|h| name.strip_suffix(h.as_str())?.strip_suffix('-')) {
                return Some(("Deployment".into(), base.to_string()));
            }
        }
        Some((kind, name))
    }

    /// The Services a pod backs: from Endpoints/EndpointSlices when there are any, else
    /// by the Services' selectors.
    pub fn services_of(&self, p: &PodInfo) -> Vec<String> {
        if let Some(s) = self.backs.get(&format!("{}/{}", p.namespace, p.name)) {
            return s.iter().cloned().collect();
        }
        if !self.backs.is_empty() {
            return Vec::new();
        }
        let mut v: Vec<String> = self
            .services
            .current
            .values()
            .filter(|s| s.namespace == p.namespace && !s.selector.is_empty())
            .filter(|s| s.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .map(|s| s.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Current pods of the given namespaces (every one with `all`), narrowed by a name
    /// pattern, that have an address of their own.
    pub fn select(&self, namespaces: &[String], all: bool, pattern: Option<&regex::Regex>) -> Vec<Arc<PodInfo>> {
        let mut v: Vec<Arc<PodInfo>> = self
            .pods
            .current
            .values()
            .filter(|p| all || namespaces.contains(&p.namespace))
            .filter(|p| pattern.is_none_or(|r| r.is_match(&p.name)))
            .filter(|p| !p.ips.is_empty() && !p.host_network)
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        v
    }

    /// Every pod known now.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods.current.values()
    }

    /// The pod currently holding `ip`.
    pub fn pod_now(&self, ip: &IpAddr) -> Option<&Arc<PodInfo>> {
        self.pods.by_ip.get(ip)?.current().filter(|p| !p.host_network)
    }

    fn pod_json(&self, p: &PodInfo) -> Box<serde_json::Value> {
        Box::new(json!({
            "name": p.name,
            "namespace": p.namespace,
            "labels": p.labels,
            "workload": self.workload(p).map(|(k, n)| json!({"kind": k, "name": n})),
            "node": p.node,
        }))
    }

    /// Names the pod that answered at `real` a connection whose client addressed `ep` (a
    /// Service's ClusterIP that the node rewrote): `ep` keeps the address and the Service
    /// the client called, and gains `pod` with the address that answered (`ip`, `port`).
    pub fn name_answering(&self, ep: &mut Endpoint, real: std::net::SocketAddr, ts: Nanos) {
        let mut pod = match self.pod_at(&real.ip(), ts) {
            Some(p) => self.pod_json(p),
            None => match self.node(&real.ip()) {
                Some(n) => Box::new(json!({"node": n})),
                None => Box::new(json!({})),
            },
        };
        pod["ip"] = json!(real.ip().to_string());
        pod["port"] = json!(real.port());
        ep.pod = Some(pod);
    }

    fn name(&self, ep: &mut Endpoint, ts: Nanos) {
        if let Some(p) = self.pod_at(&ep.ip, ts) {
            ep.name = p.name.clone();
            ep.namespace = Some(p.namespace.clone());
            ep.pod = Some(self.pod_json(p));
            ep.service = self.services_of(p).first().map(|s| Box::new(json!({"name": s, "namespace": p.namespace})));
        } else if let Some(s) = self.service_at(&ep.ip, ts) {
            ep.name = s.name.clone();
            ep.namespace = Some(s.namespace.clone());
            ep.service = Some(Box::new(json!({"name": s.name, "namespace": s.namespace})));
        } else if let Some(n) = self.node(&ep.ip) {
            // the node itself or any hostNetwork pod on it: say the node, guess no pod
            ep.name = format!("node/{n}");
        }
    }

    /// Names both ends of an entry as they were at its timestamp.
    pub fn tag(&self, e: &mut Entry) {
        let ts = e.timestamp.0 as Nanos;
        self.name(&mut e.src, ts);
        self.name(&mut e.dst, ts);
    }
}
