//! Identity from an inventory file: the JSON of `kubectl get pods,services -A -o json`
//! (a `List`, or a single object; several files add up). It names addresses (pod IPs and
//! Service cluster IPs) and selects the pods `tap` targets. The live Kubernetes watch
//! arrives with its own cache; this is its offline form.

use crate::error::Error;
use kshark_dissect::entry::Endpoint;
use kshark_dissect::Entry;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// (kind, name) of the workload: the Deployment behind a ReplicaSet, else the owner.
    pub workload: Option<(String, String)>,
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub cluster_ips: Vec<IpAddr>,
    pub selector: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pod_by_ip: HashMap<IpAddr, usize>,
    svc_by_ip: HashMap<IpAddr, usize>,
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn ips(list: &Value, key: Option<&str>) -> Vec<IpAddr> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| match key {
            Some(k) => v.get(k)?.as_str()?.parse().ok(),
            None => v.as_str()?.parse().ok(),
        })
        .collect()
}

fn workload(meta: &Value, labels: &BTreeMap<String, String>) -> Option<(String, String)> {
    let owners = meta.get("ownerReferences")?.as_array()?;
    let o = owners.iter().find(|o| o.get("controller").and_then(Value::as_bool) == Some(true)).or(owners.first())?;
    let kind = o.get("kind")?.as_str()?;
    let name = o.get("name")?.as_str()?;
    if kind == "ReplicaSet" {
        if let Some(base) = labels.get("pod-template-hash").and_then(|h| name.strip_suffix(h.as_str())?.strip_suffix('-')) {
            return Some(("Deployment".into(), base.to_string()));
        }
    }
    Some((kind.to_string(), name.to_string()))
}

impl Inventory {
    pub fn load(paths: &[PathBuf]) -> Result<Self, Error> {
        let mut inv = Inventory::default();
        for p in paths {
            inv.add_file(p)?;
        }
        inv.index();
        Ok(inv)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), Error> {
        let bad = |detail: String| Error::Inventory { path: path.to_path_buf(), detail };
        let text = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let items: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
            Some(a) => a.iter().collect(),
            None if v.get("kind").is_some() => vec![&v],
            None => return Err(bad("expected the output of `kubectl get pods,services -A -o json` (a List with items)".into())),
        };
        // an API server's own lists (PodList, ServiceList) leave `kind` off their items
        let list_kind = v.get("kind").and_then(Value::as_str).and_then(|k| k.strip_suffix("List")).filter(|k| !k.is_empty());
        for it in items {
            let meta = it.get("metadata").unwrap_or(&Value::Null);
            let name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("default").to_string();
            let spec = it.get("spec").unwrap_or(&Value::Null);
            match it.get("kind").and_then(Value::as_str).or(list_kind) {
                Some("Pod") => {
                    let status = it.get("status").unwrap_or(&Value::Null);
                    let mut addrs = ips(status.get("podIPs").unwrap_or(&Value::Null), Some("ip"));
                    if addrs.is_empty() {
                        addrs.extend(status.get("podIP").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok()));
                    }
                    let labels = strings(meta.get("labels").unwrap_or(&Value::Null));
                    self.pods.push(Pod {
                        workload: workload(meta, &labels),
                        name,
                        namespace,
                        labels,
                        node: spec.get("nodeName").and_then(Value::as_str).map(String::from),
                        ips: addrs,
                        host_network: spec.get("hostNetwork").and_then(Value::as_bool).unwrap_or(false),
                    });
                }
                Some("Service") => {
                    let mut cluster_ips = ips(spec.get("clusterIPs").unwrap_or(&Value::Null), None);
                    if cluster_ips.is_empty() {
                        cluster_ips.extend(spec.get("clusterIP").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok()));
                    }
                    self.services.push(Service {
                        name,
                        namespace,
                        cluster_ips,
                        selector: strings(spec.get("selector").unwrap_or(&Value::Null)),
                    });
                }
                _ => {} // Endpoints and others: the pods and services say enough here
            }
        }
        Ok(())
    }

    fn index(&mut self) {
        self.pod_by_ip.clear();
        self.svc_by_ip.clear();
        for (i, p) in self.pods.iter().enumerate() {
            // hostNetwork pods share the node's address: it names the node, not them
            if !p.host_network {
                for a in &p.ips {
                    self.pod_by_ip.insert(*a, i);
                }
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            for a in &s.cluster_ips {
                self.svc_by_ip.insert(*a, i);
            }
        }
    }

    pub fn pod(&self, ip: &IpAddr) -> Option<&Pod> {
        self.pod_by_ip.get(ip).map(|&i| &self.pods[i])
    }

    /// The first Service (by name) in the pod's namespace whose selector it matches.
    pub fn service_of(&self, pod: &Pod) -> Option<&Service> {
        let mut m: Vec<&Service> = self
            .services
            .iter()
            .filter(|s| s.namespace == pod.namespace && !s.selector.is_empty())
            .filter(|s| s.selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
            .collect();
        m.sort_by(|a, b| a.name.cmp(&b.name));
        m.first().copied()
    }

    /// Pods of the given namespaces (all with `all`), narrowed by a name pattern, that
    /// have an address.
    pub fn select(&self, namespaces: &[String], all: bool, pattern: Option<&regex::Regex>) -> Vec<&Pod> {
        self.pods
            .iter()
            .filter(|p| all || namespaces.contains(&p.namespace))
            .filter(|p| pattern.is_none_or(|r| r.is_match(&p.name)))
            .filter(|p| !p.ips.is_empty() && !p.host_network)
            .collect()
    }

    fn name(&self, ep: &mut Endpoint) {
        if let Some(p) = self.pod(&ep.ip) {
            ep.name = p.name.clone();
            ep.namespace = Some(p.namespace.clone());
            ep.pod = Some(json!({
                "name": p.name,
                "namespace": p.namespace,
                "labels": p.labels,
                "workload": p.workload.as_ref().map(|(k, n)| json!({"kind": k, "name": n})),
                "node": p.node,
            }));
            ep.service = self.service_of(p).map(|s| json!({"name": s.name, "namespace": s.namespace}));
        } else if let Some(s) = self.svc_by_ip.get(&ep.ip).map(|&i| &self.services[i]) {
            ep.name = s.name.clone();
            ep.namespace = Some(s.namespace.clone());
            ep.service = Some(json!({"name": s.name, "namespace": s.namespace}));
        }
    }

    /// Names both ends of an entry.
    pub fn tag(&self, e: &mut Entry) {
        self.name(&mut e.src);
        self.name(&mut e.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// A real HTTP exchange between two addresses, through the dissector.
    fn http_entry(client: IpAddr, server: IpAddr) -> Entry {
        use kshark_dissect::testkit::{TcpConv, C2S, S2C};
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(v) => v.octets(),
            IpAddr::V6(_) => panic!("IPv4 only"),
        };
        let mut c = TcpConv::new((v4(client), 40000), (v4(server), 80), [1, 2]);
        c.handshake().send(C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[]).send(S2C, b"HTTP/1.1 204 No Content\r\n\r\n", &[]);
        let mut d = kshark_dissect::Dissector::new(Default::default());
        for (ts, f) in &c.frames {
            d.packet(kshark_dissect::Timestamp(*ts), 1, f);
        }
        d.finish();
        let e = d.drain_entries().next().expect("an entry");
        e
    }

    fn fixtures() -> PathBuf {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/k8s");
        assert!(p.join("api_v1_pods.json").exists(), "the shared fixtures are missing: expected {}", p.display());
        p
    }

    #[test]
    fn reads_an_api_servers_lists_and_names_pods_with_their_workload_and_service() {
        let f = fixtures();
        let inv = Inventory::load(&[f.join("api_v1_pods.json"), f.join("api_v1_services.json")]).unwrap();
        assert_eq!(inv.pods.len(), 14);
        let carts = inv.pods.iter().find(|p| p.name.starts_with("carts-")).unwrap();
        assert_eq!(carts.workload, Some(("Deployment".into(), "carts".into())));
        assert_eq!(inv.service_of(carts).map(|s| s.name.as_str()), Some("carts"));
        let ip = carts.ips[0];
        let mut e = http_entry(ip, "10.103.33.1".parse().unwrap());
        inv.tag(&mut e);
        assert_eq!(e.src.name, carts.name);
        assert_eq!(e.src.pod.as_ref().unwrap()["workload"]["name"], "carts");
        // a Service's ClusterIP names the Service
        assert_eq!(e.dst.name, "carts");
        assert_eq!(e.dst.service.as_ref().unwrap()["namespace"], "sock-shop");
        assert!(e.dst.pod.is_none());
    }

    #[test]
    fn selects_by_namespace_and_pattern_and_leaves_host_network_pods_unnamed() {
        let doc = serde_json::json!({"kind": "List", "items": [
            {"kind": "Pod", "metadata": {"name": "front-end-1", "namespace": "shop"}, "status": {"podIP": "10.0.0.1"}},
            {"kind": "Pod", "metadata": {"name": "catalogue-1", "namespace": "shop"}, "status": {"podIPs": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}]}},
            {"kind": "Pod", "metadata": {"name": "kube-proxy-x", "namespace": "kube-system"}, "spec": {"hostNetwork": true}, "status": {"podIP": "192.168.1.5"}},
            {"kind": "Pod", "metadata": {"name": "pending", "namespace": "shop"}, "status": {}},
        ]});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let inv = Inventory::load(&[path]).unwrap();
        let names = |v: Vec<&Pod>| v.into_iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(inv.select(&["shop".into()], false, None)), ["front-end-1", "catalogue-1"]);
        let re = regex::Regex::new("^cat").unwrap();
        assert_eq!(names(inv.select(&["shop".into()], false, Some(&re))), ["catalogue-1"]);
        assert_eq!(names(inv.select(&[], true, None)).len(), 2);
        assert_eq!(inv.pod(&"fd00::2".parse().unwrap()).unwrap().name, "catalogue-1");
        assert!(inv.pod(&IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5))).is_none());
    }

    #[test]
    fn bad_files_say_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = Inventory::load(std::slice::from_ref(&path)).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("not JSON"), "{e}");
        std::fs::write(&path, "[1, 2]").unwrap();
        let e = Inventory::load(&[path]).unwrap_err().to_string();
        assert!(e.contains("kubectl get pods,services -A -o json"), "{e}");
        let e = Inventory::load(&[dir.path().join("missing.json")]).unwrap_err().to_string();
        assert!(e.contains("missing.json") && e.contains("cannot read"), "{e}");
    }
}
