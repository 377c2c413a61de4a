//! Into a cluster, against the lab's real API server (kube-apiserver 1.20 from Debian's
//! source, with etcd, controller-manager and scheduler; root, as CI runs): the manifests
//! `tap --dry-run` prints pass the API server's own server-side dry run (and a broken one
//! does not); `tap --deploy` applies every object and shows its progress; the
//! ServiceAccount can do what identity needs and nothing else (SubjectAccessReview); a
//! worker started with the DaemonSet's own args and a hub with the Deployment's ship
//! the lab's live traffic; `clean` leaves nothing with kshark's label.
//!
//! What cannot run here: pulling the image and starting its containers (the lab has no
//! container runtime), so the rollout never completes and the port-forward (through a
//! kubelet) is not reached; the README gives the commands for kind and minikube.

mod common;
use common::lab::{kshark_bin, lab, lab_api, need, need_root, poll};
use common::{stderr, stdout, Hub};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};
use std::process::Command;

const ADMIN: &str = "/run/kshark-lab/admin.kubeconfig";
const LABEL: &str = "app.kubernetes.io/managed-by=kshark";

fn dynamic(rt: &tokio::runtime::Runtime, c: &kube::Client, o: &Value) -> Api<DynamicObject> {
    let (g, v) = o["apiVersion"].as_str().unwrap().split_once('/').unwrap_or(("", o["apiVersion"].as_str().unwrap()));
    let (ar, caps) = rt.block_on(kube::discovery::pinned_kind(c, &GroupVersionKind::gvk(g, v, o["kind"].as_str().unwrap()))).unwrap();
    match (caps.scope, o["metadata"]["namespace"].as_str()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(c.clone(), ns, &ar),
        _ => Api::all_with(c.clone(), &ar),
    }
}

/// Everything with kshark's label, over the kinds it creates.
fn labelled(rt: &tokio::runtime::Runtime, c: &kube::Client) -> Vec<String> {
    let mut v = Vec::new();
    for (g, ver, k) in [("apps", "v1", "DaemonSet"), ("apps", "v1", "Deployment"), ("", "v1", "Service"), ("", "v1", "Secret"), ("", "v1", "ServiceAccount"), ("", "v1", "Pod"), ("rbac.authorization.k8s.io", "v1", "ClusterRole"), ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"), ("", "v1", "Namespace")] {
        let (ar, _) = rt.block_on(kube::discovery::pinned_kind(c, &GroupVersionKind::gvk(g, ver, k))).unwrap();
        let api: Api<DynamicObject> = Api::all_with(c.clone(), &ar);
        for o in rt.block_on(api.list(&ListParams::default().labels(LABEL))).unwrap().items {
            v.push(format!("{k} {}", o.metadata.name.unwrap_or_default()));
        }
    }
    v
}

fn can(rt: &tokio::runtime::Runtime, c: &kube::Client, verb: &str, resource: &str, group: &str, ns: Option<&str>) -> bool {
    let sar: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {"user": "system:serviceaccount:kshark:kshark", "groups": ["system:serviceaccounts", "system:serviceaccounts:kshark", "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": ns}}
    }))
    .unwrap();
    let api: Api<SubjectAccessReview> = Api::all(c.clone());
    let r = rt.block_on(api.create(&PostParams::default(), &sar)).unwrap();
    r.status.unwrap().allowed
}

/// The container args of the first container of `kind` among `objects`.
fn args(objects: &[Value], kind: &str) -> Vec<String> {
    let o = objects.iter().find(|o| o["kind"] == kind).unwrap();
    o["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

#[test]
fn deploy_into_the_lab_api_server_then_clean() {
    need_root();
    need("dnsmasq");
    lab(&["down"]);
    let up = lab(&["up"]);
    assert!(up.contains("API server: https://127.0.0.1:16443"), "{up}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let admin = lab_api(&rt, ADMIN);

    // --dry-run: YAML that the API server's own validation takes, stored nowhere
    let o = Command::new(kshark_bin()).args(["tap", "-n", "sock-shop", "--dry-run", "--registry", "registry.internal:5000/tools"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let objects: Vec<Value> = serde_saphyr::from_multiple(&stdout(&o)).expect("the dry run is YAML");
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "Secret", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "DaemonSet"]);
    assert!(objects.iter().all(|o| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kshark"), "an object without kshark's label");
    assert!(args(&objects, "DaemonSet").ends_with(&["-n".into(), "sock-shop".into(), "--engine".into(), "auto".into()]), "{:?}", args(&objects, "DaemonSet"));
    let image = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, "registry.internal:5000/tools/kshark:0.1.0");
    let mut dry = PatchParams::apply("kshark-test").force();
    dry.dry_run = true;
    // the namespace must exist for its objects' dry run: it is created for real, first
    rt.block_on(dynamic(&rt, &admin, &objects[0]).patch("kshark", &PatchParams::apply("kshark-test"), &Patch::Apply(&objects[0]))).unwrap();
    for o in &objects[1..] {
        let name = o["metadata"]["name"].as_str().unwrap();
        rt.block_on(dynamic(&rt, &admin, o).patch(name, &dry, &Patch::Apply(o))).unwrap_or_else(|e| panic!("the API server refused {} {name}: {e}", o["kind"]));
    }
    // the check can fail: a DaemonSet whose container has no image is refused
    let mut broken = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap().clone();
    broken["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("image");
    let refused = rt.block_on(dynamic(&rt, &admin, &broken).patch("kshark-worker", &dry, &Patch::Apply(&broken)));
    assert!(matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422), "{refused:?}");
    assert!(labelled(&rt, &admin) == ["Namespace kshark"], "a dry run stored something: {:?}", labelled(&rt, &admin));

    // applying creates every object, with progress, and says why it is not ready
    let o = Command::new(kshark_bin()).args(["tap", "-n", "sock-shop", "--deploy", "--kubeconfig", ADMIN, "--wait", "6s", "--no-tui"]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for what in ["applied Namespace kshark", "applied Secret kshark-token", "applied ClusterRole kshark", "applied Deployment kshark-hub", "applied DaemonSet kshark-worker", "hub 0/1 available", "not ready after 6s"] {
        assert!(err.contains(what), "no {what:?} in: {err}");
    }
    let have = labelled(&rt, &admin);
    for want in ["Namespace kshark", "Secret kshark-token", "ServiceAccount kshark", "ClusterRole kshark", "ClusterRoleBinding kshark", "Deployment kshark-hub", "Service kshark-hub", "DaemonSet kshark-worker"] {
        assert!(have.iter().any(|h| h == want), "{want} not created: {have:?}");
    }
    // again (an upgrade; without --deploy, as a kubeconfig other than the lab's reader
    // one means a cluster to deploy into): the same objects, the same token
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(admin.clone(), "kshark");
    let token = || rt.block_on(secrets.get("kshark-token")).unwrap().data.unwrap()["token"].0.clone();
    let before = token();
    let o = Command::new(kshark_bin()).args(["tap", "-n", "sock-shop", "--kubeconfig", ADMIN, "--wait", "1s", "--no-tui"]).output().unwrap();
    assert!(stderr(&o).contains("applied DaemonSet kshark-worker"), "{}", stderr(&o));
    assert_eq!(token(), before, "an upgrade changed the token");

    // what the ServiceAccount may do: read what identity reads, nothing else
    for (verb, res, group) in [("watch", "pods", ""), ("list", "services", ""), ("list", "endpointslices", "discovery.k8s.io"), ("get", "replicasets", "apps"), ("watch", "nodes", "")] {
        assert!(can(&rt, &admin, verb, res, group, None), "the ServiceAccount cannot {verb} {res}");
    }
    for (verb, res, group, ns) in [("get", "secrets", "", Some("kshark")), ("list", "secrets", "", None), ("create", "pods", "", Some("sock-shop")), ("delete", "pods", "", Some("sock-shop")), ("patch", "daemonsets", "apps", Some("kshark"))] {
        assert!(!can(&rt, &admin, verb, res, group, ns), "the ServiceAccount can {verb} {res}");
    }

    // a worker as the DaemonSet runs it (its args, its token from a file) ships the lab's
    // live traffic to a hub run as the Deployment runs it
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", String::from_utf8(before).unwrap())).unwrap();
    let hub_args = args(&objects, "Deployment");
    assert_eq!(hub_args[..3], ["hub", "--listen", "0.0.0.0:8899"]);
    let reader_file = dir.path().join("reader-token");
    std::fs::write(&reader_file, "a-reader-token-not-the-workers\n").unwrap();
    let extra: Vec<String> = hub_args[3..]
        .iter()
        .map(|a| match a.as_str() {
            "/etc/kshark/token" => token_file.to_str().unwrap().to_string(),
            "/etc/kshark/reader-token" => reader_file.to_str().unwrap().to_string(),
            _ => a.clone(),
        })
        .collect();
    let data_at = extra.iter().position(|a| a == "--data").unwrap();
    let extra: Vec<&str> = extra.iter().enumerate().filter(|(i, _)| *i != data_at && *i != data_at + 1).map(|(_, a)| a.as_str()).collect();
    let hub = Hub::start(&dir.path().join("data"), "127.0.0.1:0", &extra);
    let worker: Vec<String> = args(&objects, "DaemonSet")
        .into_iter()
        .map(|a| match a.as_str() {
            "http://kshark-hub.kshark.svc:8899" => hub.url(),
            "/etc/kshark/token" => token_file.to_str().unwrap().to_string(),
            "$(NODE_NAME)" => "kshark-lab".to_string(),
            _ => a,
        })
        .collect();
    lab(&["traffic", "--rate", "20", "--duration", "10s"]);
    // in a pod its credentials are the ServiceAccount's; here, the lab's reader token
    let o = Command::new(kshark_bin()).args(&worker).args(["--kubeconfig", "/run/kshark-lab/kubeconfig", "--duration", "6s"]).output().unwrap();
    assert!(o.status.success(), "the DaemonSet's worker: {}", stderr(&o));
    let seen = Command::new(kshark_bin()).args(["observe", "--hub", &hub.url(), "--all", "--format", "ndjson", "--filter", "http && src.pod.name != \"\" && dst.namespace == \"sock-shop\""]).output().unwrap();
    let n = stdout(&seen).lines().count();
    assert!(n > 10, "the hub got {n} named sock-shop entries from the DaemonSet's worker: {}\n{}", stderr(&o), hub.log.lock().unwrap());
    lab(&["traffic", "--stop"]);

    // clean: says what it removed, and nothing with the label is left
    let o = Command::new(kshark_bin()).args(["clean", "--kubeconfig", ADMIN]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for what in ["deleted DaemonSet kshark/kshark-worker", "deleted ClusterRole kshark", "deleted Namespace kshark"] {
        assert!(err.contains(what), "no {what:?} in: {err}");
    }
    poll("nothing of kshark's left", 90, || labelled(&rt, &admin).is_empty().then_some(()));
    let o = Command::new(kshark_bin()).args(["clean", "--kubeconfig", ADMIN]).output().unwrap();
    assert!(o.status.success() && stderr(&o).contains("nothing of kshark's"), "{}", stderr(&o));
    lab(&["down"]);
}
