//! The lab's kubelet (`kshark lab kubelet`, started by `lab up`): the part of a kubelet
//! the lab needs. Each network namespace of the lab is one "slot" that plays the pods of
//! one app (Deployment); a pod bound to the lab's node gets its slot's address, phase
//! Running and Ready, or stays Pending with the reason when the slot is taken (a second
//! replica) or the app has none. A pod being deleted is finalized at once, as a kubelet
//! does once its containers have stopped, so its replacement takes the same address.
//! The processes in the namespaces run whatever the API says: the API decides the names.

use super::api::{self, NODE};
use super::{PodDef, PODS};
use crate::Failure;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

pub fn main() -> Result<(), Failure> {
    let rt = api::runtime().map_err(Failure::Runtime)?;
    rt.block_on(async {
        let client = api::admin_client().await?;
        let pods: Api<Pod> = Api::all(client.clone());
        let mut events = watcher(pods, watcher::Config::default().fields(&format!("spec.nodeName={NODE}"))).default_backoff().boxed();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        eprintln!("kubelet: node {NODE}, {} slots", PODS.len());
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    None => return Err("the pod watch ended".to_string()),
                    Some(Err(e)) => { eprintln!("kubelet: watch: {e}"); continue; }
                    Some(Ok(_)) => {}
                },
                _ = tick.tick() => {}
            }
            if let Err(e) = reconcile(&client).await {
                eprintln!("kubelet: {e}");
            }
        }
    })
    .map_err(Failure::Runtime)
}

fn slot_of(p: &Pod) -> Option<&'static PodDef> {
    let app = p.labels().get("name")?;
    PODS.iter().find(|d| d.app == app && Some(d.namespace) == p.namespace().as_deref())
}

fn deleting(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

/// One pass over the node's pods: finalize deletions, give free slots to waiting pods.
async fn reconcile(client: &Client) -> Result<(), String> {
    let mut pods = api::lab_pods(client).await?;
    // oldest first: the pod that came first keeps (or gets) its slot
    pods.sort_by(|a, b| a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let mut held: HashMap<String, String> = HashMap::new();
    for p in &pods {
        if let (Some(ip), false) = (api::pod_ip(p), deleting(p)) {
            held.insert(ip.to_string(), p.name_any());
        }
    }
    for p in pods.iter().filter(|p| deleting(p)) {
        let ns = p.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: p.uid(), resource_version: None }), ..Default::default() };
        match api.delete(&p.name_any(), &dp).await {
            Ok(_) => eprintln!("kubelet: {ns}/{} stopped and removed", p.name_any()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => eprintln!("kubelet: delete {ns}/{}: {e}", p.name_any()),
        }
    }
    for p in pods.iter().filter(|p| !deleting(p) && api::pod_ip(p).is_none()) {
        let ns = p.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let name = p.name_any();
        let patch = match slot_of(p) {
            None => pending(p, "NoLabSlot", "no network namespace of the lab plays this app".into()),
            Some(d) => {
                let ip = d.ip().to_string();
                match held.get(&ip) {
                    Some(holder) => pending(
                        p,
                        "LabSlotTaken",
                        format!("the lab has one network namespace per app: {ip} ({}) is held by pod {holder}", d.netns()),
                    ),
                    None => {
                        held.insert(ip.clone(), name.clone());
                        eprintln!("kubelet: {ns}/{name} running as {ip} in {}", d.netns());
                        Some(running(p, &ip))
                    }
                }
            }
        };
        if let Some(patch) = patch {
            if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                eprintln!("kubelet: status of {ns}/{name}: {e}");
            }
        }
    }
    Ok(())
}

/// A Pending status with the reason, unless the pod says so already.
fn pending(p: &Pod, reason: &str, message: String) -> Option<serde_json::Value> {
    let st = p.status.as_ref();
    if st.and_then(|s| s.message.as_deref()) == Some(message.as_str()) {
        return None;
    }
    eprintln!("kubelet: {}/{} pending: {message}", p.namespace().unwrap_or_default(), p.name_any());
    Some(json!({"status": {
        "phase": "Pending", "reason": reason, "message": message,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": reason, "message": message, "lastTransitionTime": api::now_rfc3339()},
        ],
    }}))
}

fn running(p: &Pod, ip: &str) -> serde_json::Value {
    let now = api::now_rfc3339();
    let containers: Vec<_> = p
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({"name": c.name, "ready": true, "started": true, "restartCount": 0, "image": c.image, "imageID": "",
                   "containerID": format!("kshark-lab://{}", p.uid().unwrap_or_default()), "state": {"running": {"startedAt": now}}})
        })
        .collect();
    json!({"status": {
        "phase": "Running", "reason": null, "message": null,
        "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "startTime": now,
        "containerStatuses": containers,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
    }})
}
