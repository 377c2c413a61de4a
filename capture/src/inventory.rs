//! Identity from inventory files: the JSON of `kubectl get pods,services,endpoints -A -o
//! json` (a `List`, an API server's own `PodList`/`ServiceList`/..., or a single
//! object; several files add up). Pods, Services, Endpoints, EndpointSlices, Nodes,
//! ReplicaSets and Jobs are read into an [`Identity`] cache whose objects hold their
//! addresses for all time (a file is a snapshot, with no history): for offline reading
//! and for the lab when it has no API server.

use crate::error::Error;
use crate::identity::{Identity, Object};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Reads the files into one cache.
pub fn load(paths: &[PathBuf]) -> Result<Identity, Error> {
    let mut objs = Vec::new();
    for p in paths {
        objs.extend(read(p)?);
    }
    let mut id = Identity::timeless();
    id.extend(objs, 0);
    Ok(id)
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<Box<T>, String> {
    T::deserialize(v).map(Box::new).map_err(|e| e.to_string())
}

/// The objects of one file that identity uses (others are passed over).
pub fn read(path: &Path) -> Result<Vec<Object>, Error> {
    let bad = |detail: String| Error::Inventory { path: path.to_path_buf(), detail };
    let text = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let items: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
        Some(a) => a.iter().collect(),
        None if v.get("kind").is_some() => vec![&v],
        None => return Err(bad("expected the output of `kubectl get pods,services,endpoints -A -o json` (a List with items)".into())),
    };
    // an API server's own lists (PodList, ServiceList) leave `kind` off their items
    let list_kind = v.get("kind").and_then(Value::as_str).and_then(|k| k.strip_suffix("List")).filter(|k| !k.is_empty());
    let mut out = Vec::new();
    for (i, it) in items.into_iter().enumerate() {
        let kind = it.get("kind").and_then(Value::as_str).or(list_kind);
        let o = match kind {
            Some("Pod") => typed(it).map(Object::Pod),
            Some("Service") => typed(it).map(Object::Service),
            Some("Endpoints") => typed(it).map(Object::Endpoints),
            // v1beta1 slices carry the same fields identity reads
            Some("EndpointSlice") => typed(it).map(Object::EndpointSlice),
            Some("Node") => typed(it).map(Object::Node),
            Some("ReplicaSet") => typed(it).map(Object::ReplicaSet),
            Some("Job") => typed(it).map(Object::Job),
            _ => continue,
        };
        out.push(o.map_err(|e| bad(format!("item {i} ({}): {e}", kind.unwrap_or("?"))))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kshark_dissect::Entry;
    use std::net::{IpAddr, Ipv4Addr};

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
        let inv = load(&[f.join("api_v1_pods.json"), f.join("api_v1_services.json")]).unwrap();
        assert_eq!(inv.pods().count(), 14);
        let carts = inv.pods().find(|p| p.name.starts_with("carts-") && !p.name.starts_with("carts-db")).unwrap().clone();
        // no ReplicaSets in these files: the Deployment comes from the pod template hash
        assert_eq!(inv.workload(&carts), Some(("Deployment".into(), "carts".into())));
        // no Endpoints either: the Services' selectors say which it backs
        assert_eq!(inv.services_of(&carts), ["carts"]);
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
        let inv = load(&[path]).unwrap();
        let names = |v: Vec<std::sync::Arc<crate::identity::PodInfo>>| v.into_iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(inv.select(&["shop".into()], false, None)), ["catalogue-1", "front-end-1"]);
        let re = regex::Regex::new("^cat").unwrap();
        assert_eq!(names(inv.select(&["shop".into()], false, Some(&re))), ["catalogue-1"]);
        assert_eq!(names(inv.select(&[], true, None)).len(), 2);
        assert_eq!(inv.pod_at(&"fd00::2".parse().unwrap(), 0).unwrap().name, "catalogue-1");
        assert!(inv.pod_at(&IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)), 0).is_none());
    }

    #[test]
    fn bad_files_say_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = load(std::slice::from_ref(&path)).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("not JSON"), "{e}");
        std::fs::write(&path, "[1, 2]").unwrap();
        let e = load(&[path]).unwrap_err().to_string();
        assert!(e.contains("kubectl get pods,services,endpoints -A -o json"), "{e}");
        let e = load(&[dir.path().join("missing.json")]).unwrap_err().to_string();
        assert!(e.contains("missing.json") && e.contains("cannot read"), "{e}");
    }
}
