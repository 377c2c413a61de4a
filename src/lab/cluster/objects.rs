//! The cluster's credentials, its control plane's processes, and what it runs: the DNS,
//! the sock-shop spread over both nodes, and the load generator.

use super::node::NODES;
use super::{path, start, write, API_PORT, DIR, DNS_IP, ETCD_CLIENT, ETCD_PEER, HOST_IP, LAB_IMAGE, LEDGER};
use crate::lab::api::{kubeconfig_for, make_pki, random_token, sign, write_private};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const SERVICES: &str = include_str!("../../../deploy/lab/sockshop.py");
const PAYMENT_PROTO: &str = include_str!("../../../deploy/lab/payment.proto");

/// One Deployment of the lab: its app, namespace, what it runs, its port, and its node.
pub struct App {
    pub app: &'static str,
    pub namespace: &'static str,
    pub role: &'static str,
    pub port: u16,
    pub node: usize,
}

/// Placed so that many calls cross nodes (front-end on 1 calls catalogue, orders and user
/// on 2) and some stay on one (orders and payment on 2, front-end and carts on 1). The
/// stores are real servers (`sockshop.py`, LAB_STORES): catalogue-db MariaDB, carts-db and
/// session-db Redis, orders-db and user-db PostgreSQL (the real sock-shop's MongoDB is not
/// in Debian), rabbitmq RabbitMQ; most of their callers are on the other node.
pub const APPS: &[App] = &[
    App { app: "kube-dns", namespace: "kube-system", role: "dns", port: 53, node: 0 },
    App { app: "front-end", namespace: "sock-shop", role: "front-end", port: 8079, node: 0 },
    App { app: "catalogue", namespace: "sock-shop", role: "catalogue", port: 80, node: 1 },
    App { app: "catalogue-db", namespace: "sock-shop", role: "catalogue-db", port: 3306, node: 0 },
    App { app: "session-db", namespace: "sock-shop", role: "session-db", port: 6379, node: 1 },
    App { app: "carts", namespace: "sock-shop", role: "carts", port: 80, node: 0 },
    App { app: "carts-db", namespace: "sock-shop", role: "carts-db", port: 6379, node: 1 },
    App { app: "orders", namespace: "sock-shop", role: "orders", port: 80, node: 1 },
    App { app: "orders-db", namespace: "sock-shop", role: "orders-db", port: 5432, node: 0 },
    App { app: "payment", namespace: "sock-shop", role: "payment", port: 50051, node: 1 },
    App { app: "shipping", namespace: "sock-shop", role: "shipping", port: 80, node: 0 },
    App { app: "queue-master", namespace: "sock-shop", role: "queue-master", port: 0, node: 1 },
    App { app: "rabbitmq", namespace: "sock-shop", role: "rabbitmq", port: 5672, node: 0 },
    // HTTPS (front-end and orders call it over TLS)
    App { app: "user", namespace: "sock-shop", role: "user", port: 443, node: 1 },
    App { app: "user-db", namespace: "sock-shop", role: "user-db", port: 5432, node: 0 },
];
/// The load generator's node: front-end is on the other, so its calls cross.
pub const LOAD_NODE: &str = "kshark-node-2";

/// front-end's NodePort (the real sock-shop's).
pub const FRONT_END_NODE_PORT: u16 = 30001;

pub struct Tokens {
    admin: String,
    reader: String,
}

fn api_url() -> String {
    format!("https://{HOST_IP}:{API_PORT}")
}

fn pki(f: &str) -> String {
    format!("{DIR}/pki/{f}")
}

/// The CA, the API server's certificate (for every name a client in or out of the cluster
/// uses), its client certificate for kubelets, and tokens for the admin, kshark's
/// read-only identity, each node's kubelet (Node authorizer) and kube-proxy.
pub fn credentials(_bin: &Path) -> Result<Tokens, String> {
    let d = path("pki");
    make_pki(&d, &format!("IP:{HOST_IP}, IP:127.0.0.1, IP:10.96.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"))?;
    sign(&d, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "extendedKeyUsage = clientAuth\n")?;
    let admin = random_token()?;
    let reader = random_token()?;
    let proxy = random_token()?;
    let mut csv = format!("{admin},lab-admin,lab-admin,\"system:masters\"\n{reader},kshark,kshark\n{proxy},system:kube-proxy,kube-proxy\n");
    for n in &NODES {
        let t = random_token()?;
        csv += &format!("{t},system:node:{0},node-{0},\"system:nodes\"\n", n.name);
        write_private(&n.dir().join("kubelet.kubeconfig").display().to_string(), &kubeconfig_for(&api_url(), &pki("ca.crt"), &format!("system:node:{}", n.name), &t))?;
        write_private(&n.dir().join("kube-proxy.kubeconfig").display().to_string(), &kubeconfig_for(&api_url(), &pki("ca.crt"), "system:kube-proxy", &proxy))?;
    }
    write(&d.join("tokens.csv"), &csv)?;
    write_private(super::ADMIN_KUBECONFIG, &kubeconfig_for(&api_url(), &pki("ca.crt"), "lab-admin", &admin))?;
    write_private(&format!("{DIR}/kshark.kubeconfig"), &kubeconfig_for(&api_url(), &pki("ca.crt"), "kshark", &reader))?;
    Ok(Tokens { admin, reader })
}

/// etcd and the API server (Node and RBAC authorization, ServiceAccount tokens, the
/// `kubernetes` Service's endpoint on the host bridge).
pub fn control_plane(bin: &Path) -> Result<(), String> {
    let etcd = crate::lab::which("etcd").ok_or("etcd is missing (apt-get install etcd-server)")?;
    let etcd_argv = crate::lab::api::etcd_args(&etcd, "kshark-lab", DIR, ETCD_CLIENT, ETCD_PEER);
    start("etcd", &etcd_argv.iter().map(String::as_str).collect::<Vec<_>>(), None)?;
    let mut api = crate::lab::api::apiserver_args(bin, DIR, HOST_IP, API_PORT, ETCD_CLIENT);
    api.extend(
        [
            "--allow-privileged=true".to_string(),
            format!("--kubelet-client-certificate={}", pki("kubelet-client.crt")),
            format!("--kubelet-client-key={}", pki("kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
        ],
    );
    start("kube-apiserver", &api.iter().map(String::as_str).collect::<Vec<_>>(), None)?;
    Ok(())
}

/// The controller manager and the scheduler, once the API answers.
pub fn after_api(bin: &Path) -> Result<(), String> {
    let s = |p: &Path| p.display().to_string();
    let kc = super::ADMIN_KUBECONFIG;
    start(
        "kube-controller-manager",
        &[
            &s(&bin.join("kube-controller-manager")),
            &format!("--kubeconfig={kc}"),
            "--secure-port=0",
            "--port=0",
            "--leader-elect=false",
            &format!("--service-account-private-key-file={}", pki("sa.key")),
            &format!("--root-ca-file={}", pki("ca.crt")),
            &format!("--cluster-cidr={}", super::CLUSTER_CIDR),
            "--node-monitor-grace-period=20s",
            "--pod-eviction-timeout=30s",
        ],
        None,
    )?;
    start("kube-scheduler", &[&s(&bin.join("kube-scheduler")), &format!("--kubeconfig={kc}"), "--secure-port=0", "--port=0", "--leader-elect=false"], None)?;
    Ok(())
}

fn labels(app: &str) -> Value {
    json!({"name": app, "app.kubernetes.io/part-of": "kshark-lab"})
}

/// The lab's code as a ConfigMap in `ns` (the image is the Debian base only), with the
/// certificate and key the services' TLS uses (user's HTTPS, payment's gRPC).
fn code(ns: &str, tls: &(String, String)) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "lab-code", "namespace": ns, "labels": {"app.kubernetes.io/part-of": "kshark-lab"}},
           "data": {"sockshop.py": SERVICES, "payment.proto": PAYMENT_PROTO, "tls.crt": tls.0, "tls.key": tls.1}})
}

/// The sock-shop's certificate and key (made once with openssl, kept in the lab's
/// directory): self-signed, for the names user and payment are called by.
fn lab_cert() -> Result<(String, String), String> {
    let (crt, key) = (path("tls.crt"), path("tls.key"));
    if !crt.exists() || !key.exists() {
        let names: Vec<String> = ["user", "payment"].iter().flat_map(|n| [n.to_string(), format!("{n}.sock-shop"), format!("{n}.sock-shop.svc"), format!("{n}.sock-shop.svc.cluster.local")]).map(|n| format!("DNS:{n}")).collect();
        let o = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=sock-shop", "-addext"])
            .arg(format!("subjectAltName={}", names.join(",")))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .map_err(|e| format!("openssl (for the sock-shop's certificate): {e}"))?;
        if !o.status.success() {
            return Err(format!("openssl req: {}", String::from_utf8_lossy(&o.stderr).trim()));
        }
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok((read(&crt)?, read(&key)?))
}

/// A container of the lab's image running `sockshop.py ARGS`, with the code and the ledger mounted.
fn container(name: &str, args: &[String], port: u16, protocol: &str) -> Value {
    let mut argv = vec![json!("python3"), json!("/lab/sockshop.py")];
    argv.extend(args.iter().map(|a| json!(a)));
    let mut c = json!({
        "name": name,
        "image": LAB_IMAGE,
        "imagePullPolicy": "Never",
        "command": argv,
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "LEDGER", "value": "/ledger"},
            {"name": "LAB_DIR", "value": "/tmp"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "GRPC_DNS_RESOLVER", "value": "native"},
            {"name": "LAB_TLS", "value": "/lab"},
            {"name": "LAB_STORES", "value": "real"},
        ],
        "volumeMounts": [{"name": "code", "mountPath": "/lab", "readOnly": true}, {"name": "ledger", "mountPath": "/ledger"}],
    });
    if port != 0 {
        c["ports"] = json!([{"containerPort": port, "protocol": protocol}]);
        c["readinessProbe"] = if protocol == "UDP" {
            json!({"exec": {"command": ["python3", "/lab/sockshop.py", "dns-ready"]}, "periodSeconds": 2})
        } else if STORES.contains(&name) {
            // a store is ready once it is filled (its server listens before)
            json!({"exec": {"command": ["sh", "-c", "test -e /tmp/ready/$POD"]}, "periodSeconds": 1})
        } else {
            json!({"tcpSocket": {"port": port}, "periodSeconds": 2})
        };
    }
    c
}

fn volumes() -> Value {
    json!([{"name": "code", "configMap": {"name": "lab-code"}}, {"name": "ledger", "hostPath": {"path": LEDGER, "type": "DirectoryOrCreate"}}])
}

fn deployment(a: &App) -> Value {
    let protocol = if a.role == "dns" { "UDP" } else { "TCP" };
    let args = if a.role == "dns" { vec!["dns".to_string()] } else { vec!["serve".into(), a.role.into(), a.port.to_string()] };
    let mut spec = json!({
        "nodeSelector": {"kubernetes.io/hostname": NODES[a.node].name},
        "containers": [container(a.app, &args, a.port, protocol)],
        "volumes": volumes(),
        "terminationGracePeriodSeconds": 2,
        "enableServiceLinks": false,
    });
    if a.role == "dns" {
        spec["serviceAccountName"] = json!("kube-dns");
        spec["dnsPolicy"] = json!("Default");
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": a.app, "namespace": a.namespace, "labels": labels(a.app)},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"name": a.app}}, "template": {"metadata": {"labels": labels(a.app)}, "spec": spec}},
    })
}

fn service(a: &App) -> Value {
    let ports = if a.role == "dns" {
        json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])
    } else {
        json!([{"name": "main", "port": a.port, "targetPort": a.port, "protocol": "TCP"}])
    };
    let mut spec = json!({"selector": {"name": a.app}, "ports": ports});
    if a.app == "front-end" {
        // as the real sock-shop: front-end is also reached on every node's port 30001
        spec["type"] = json!("NodePort");
        spec["ports"][0]["nodePort"] = json!(FRONT_END_NODE_PORT);
    }
    if a.role == "dns" {
        spec["clusterIP"] = json!(DNS_IP);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": a.app, "namespace": a.namespace, "labels": labels(a.app)}, "spec": spec})
}

/// Everything the lab runs, applied through the API.
pub async fn create(client: &Client, tokens: &Tokens) -> Result<(), String> {
    let _ = (&tokens.admin, &tokens.reader);
    let mut objs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sock-shop"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "loadtest"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kube-dns", "namespace": "kube-system"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kshark-lab:dns"},
               "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "kshark-lab:dns"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kshark-lab:dns"},
               "subjects": [{"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"}]}),
        // kshark's own read-only identity (the kubeconfig `kshark.kubeconfig`)
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kshark-lab:reader"},
               "rules": [{"apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes"], "verbs": ["get", "list", "watch"]},
                         {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
                         {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
                         {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "kshark-lab:reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kshark-lab:reader"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kshark"}]}),
    ];
    let tls = lab_cert()?;
    for ns in ["kube-system", "sock-shop", "loadtest"] {
        objs.push(code(ns, &tls));
    }
    for a in APPS {
        if a.port != 0 {
            objs.push(service(a));
        }
        objs.push(deployment(a));
    }
    crate::deploy::apply(client, &objs, false).await.map_err(|e| match e {
        crate::Failure::Input(m) | crate::Failure::Runtime(m) => m,
    })?;
    Ok(())
}

/// The Deployments whose pods run a real store.
const STORES: &[&str] = &["catalogue-db", "carts-db", "session-db", "orders-db", "user-db", "rabbitmq"];

const LOAD_LABEL: &str = "app.kubernetes.io/part-of=kshark-lab-load";

/// Deletes the load generator's pods; whether there were any.
pub async fn stop_load(client: &Client) -> Result<bool, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "loadtest");
    let list = pods.list(&ListParams::default().labels(LOAD_LABEL)).await.map_err(|e| format!("list load pods: {e}"))?;
    let any = list.items.iter().any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
    for p in list.items {
        let name = p.metadata.name.unwrap_or_default();
        let _ = pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
    }
    Ok(any)
}

/// Starts the load generator's pod on LOAD_NODE; its name. With `host`, the pod is on the
/// node's own network (hostNetwork), and with `node_port` it calls front-end at that node
/// address's NodePort: kube-proxy rewrites both ends of such calls (DNAT to a pod, and
/// masquerade).
#[allow(clippy::too_many_arguments)]
pub async fn start_load(client: &Client, rate: f64, secs: f64, count: u64, errors: f64, slow: f64, host: bool, node_port: Option<&str>) -> Result<String, String> {
    let host = host || node_port.is_some();
    let name = format!("load-test-{}{}", if host { "host-" } else { "" }, &random_token()?[..8]);
    let mut args: Vec<String> = vec!["load".into(), rate.to_string(), secs.to_string(), errors.to_string(), slow.to_string(), count.to_string()];
    if let Some(ip) = node_port {
        args.push(format!("http://{ip}:{FRONT_END_NODE_PORT}"));
    }
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "loadtest", "labels": {"name": "load-test", "app.kubernetes.io/part-of": "kshark-lab-load"}},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": LOAD_NODE}, "containers": [container("load-test", &args, 0, "TCP")],
                 "volumes": volumes(), "terminationGracePeriodSeconds": 1, "enableServiceLinks": false},
    });
    if host {
        pod["spec"]["hostNetwork"] = json!(true);
        pod["spec"]["dnsPolicy"] = json!("ClusterFirstWithHostNet");
        if let Some(env) = pod["spec"]["containers"][0]["env"].as_array_mut() {
            env.push(json!({"name": "LOAD_SERVICE", "value": "front-end"}));
        }
    }
    let p: Pod = serde_json::from_value(pod).map_err(|e| e.to_string())?;
    Api::<Pod>::namespaced(client.clone(), "loadtest").create(&PostParams::default(), &p).await.map_err(|e| format!("create the load pod: {e}"))?;
    Ok(name)
}

/// Waits for the load pod to finish; its summary line (the load generator writes it to the ledger directory).
pub async fn wait_load(client: &Client, name: &str) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "loadtest");
    let start = Instant::now();
    loop {
        let p = pods.get(name).await.map_err(|e| format!("the load pod {name}: {e}"))?;
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => break,
            Some("Failed") => return Err(format!("the load pod {name} failed: {}", super::pod_state(&p))),
            _ => {}
        }
        if start.elapsed() > Duration::from_secs(3600) {
            return Err(format!("the load pod {name} still runs after an hour"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(std::fs::read_to_string(format!("{LEDGER}/{name}.summary")).unwrap_or_else(|_| format!("load: {name} done")).trim().to_string())
}
