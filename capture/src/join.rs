//! Marking an exchange that two nodes' workers see: a call from a pod on one node to a
//! pod on another passes both nodes, and each worker makes an entry of it (the client's
//! side with the Service it called, the server's side with the time the server took). The
//! hub joins the two into one entry (kshark-hub's `join`); this says which side an entry
//! is, which node has the other, and the key both sides compute alike.

use kshark_dissect::entry::{Endpoint, Join, Request, Transport};
use kshark_dissect::Entry;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// The node an endpoint's pod runs on, when it is a pod.
fn node_of(ep: &Endpoint) -> Option<&str> {
    ep.pod.as_ref()?.get("node")?.as_str().filter(|n| !n.is_empty())
}

/// An end's own address: where a Service was called, the answering pod's that conntrack
/// named (`pod.ip`, `pod.port`); the other node sees the connection with it. (The Service
/// is at `dst` for a request, and at `src` for what a server sends unasked, such as an
/// AMQP delivery or a Redis push.)
fn real(ep: &Endpoint) -> SocketAddr {
    let pod = ep.pod.as_deref();
    let ip = pod.and_then(|p| p.get("ip")).and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok()).unwrap_or(ep.ip);
    let port = pod.and_then(|p| p.get("port")).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(ep.port);
    SocketAddr::new(ip, port)
}

/// The mark for `e`, taken on node `e.node`, or `None` when no other node's worker sees
/// it: both pods are here, the other end is not a pod (a node, an outside address), or
/// it is a pod the workers do not capture (`captured` says which they do: all workers of
/// one tap select pods alike).
pub fn mark(e: &Entry, captured: impl Fn(&Endpoint) -> bool) -> Option<Join> {
    let own = &*e.node;
    let (client, server) = (node_of(&e.src)?, node_of(&e.dst)?);
    let (side, peer) = if client == own && server != own && captured(&e.dst) {
        ("client", server)
    } else if server == own && client != own && captured(&e.src) {
        ("server", client)
    } else {
        return None;
    };
    let transport = match e.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    let mut key = format!("{transport} {} {}", real(&e.src), real(&e.dst));
    // what tells apart exchanges that may overlap on one connection or flow
    match e.request.as_deref() {
        Some(Request::Http(r)) => {
            if let Some(h2) = &r.http2 {
                key.push_str(&format!(" stream {}", h2.stream_id));
            }
        }
        Some(Request::Grpc(r)) => key.push_str(&format!(" stream {}", r.http2.stream_id)),
        Some(Request::Dns(r)) => key.push_str(&format!(" id {}", r.id)),
        // protocols that match replies by an id (Kafka's correlation id, MongoDB's requestID)
        Some(Request::Fields(f)) => {
            if let Some(id) = f.get("correlation_id").or_else(|| f.get("request_id")) {
                key.push_str(&format!(" id {id}"));
            }
        }
        None => {}
    }
    Some(Join { side, peer: peer.to_string(), key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kshark_dissect::entry::{CaptureSource, Protocol};
    use kshark_dissect::Timestamp;
    use serde_json::json;

    fn entry(node: &str, src: (&str, u16, Option<&str>), dst: (&str, u16, Option<Value>)) -> Entry {
        let mut s = Endpoint::new(src.0.parse().unwrap(), src.1);
        s.pod = src.2.map(|n| Box::new(json!({"name": "client", "node": n})));
        let mut d = Endpoint::new(dst.0.parse().unwrap(), dst.1);
        d.pod = dst.2.map(Box::new);
        Entry {
            id: "1".into(),
            timestamp: Timestamp(0),
            protocol: Protocol::HTTP,
            http_version: None,
            transport: Transport::Tcp,
            src: s,
            dst: d,
            request: None,
            response: None,
            elapsed_time: None,
            request_size: 0,
            response_size: 0,
            node: node.into(),
            capture_source: CaptureSource::Ebpf,
            conn_id: String::new(),
            anomalies: vec![],
            join: None,
            tls: None,
        }
    }

    #[test]
    fn both_sides_of_a_call_through_a_service_get_one_key() {
        // node-1's copy: the client called the ClusterIP; conntrack named the pod on node-2
        let client = entry("n1", ("10.244.11.6", 41000, Some("n1")), ("10.96.4.2", 80, Some(json!({"name": "cat", "node": "n2", "ip": "10.244.12.5", "port": 8080}))));
        // node-2's copy: the same connection after the DNAT
        let server = entry("n2", ("10.244.11.6", 41000, Some("n1")), ("10.244.12.5", 8080, Some(json!({"name": "cat", "node": "n2"}))));
        let (c, s) = (mark(&client, |_| true).unwrap(), mark(&server, |_| true).unwrap());
        assert_eq!((c.side, c.peer.as_str(), s.side, s.peer.as_str()), ("client", "n2", "server", "n1"));
        assert_eq!(c.key, s.key);
        assert_eq!(c.key, "tcp 10.244.11.6:41000 10.244.12.5:8080");
    }

    #[test]
    fn a_message_the_server_sends_unasked_through_a_service_gets_one_key_too() {
        // an AMQP delivery: from the broker (src) to its consumer. node-2's copy: the
        // consumer's connection to the ClusterIP, the broker's pod named by conntrack
        let mut client = entry("n2", ("10.96.4.9", 5672, None), ("10.244.12.4", 56178, Some(json!({"name": "qm", "node": "n2"}))));
        client.src.pod = Some(Box::new(json!({"name": "rabbitmq", "node": "n1", "ip": "10.244.11.2", "port": 5672})));
        // node-1's copy, at the broker's veth
        let server = entry("n1", ("10.244.11.2", 5672, Some("n1")), ("10.244.12.4", 56178, Some(json!({"name": "qm", "node": "n2"}))));
        let (c, s) = (mark(&client, |_| true).unwrap(), mark(&server, |_| true).unwrap());
        assert_eq!(c.key, s.key);
        assert_eq!(c.key, "tcp 10.244.11.2:5672 10.244.12.4:56178");
        assert_eq!((c.peer.as_str(), s.peer.as_str()), ("n1", "n2"));
        assert_ne!(c.side, s.side);
    }

    #[test]
    fn no_mark_on_one_node_or_without_two_pods() {
        assert!(mark(&entry("n1", ("10.244.11.6", 1, Some("n1")), ("10.244.11.7", 80, Some(json!({"node": "n1"})))), |_| true).is_none());
        // the other end is a node or outside: nobody else sees it
        assert!(mark(&entry("n1", ("10.244.11.6", 1, Some("n1")), ("172.30.0.12", 80, None)), |_| true).is_none());
        assert!(mark(&entry("n1", ("172.30.0.12", 1, None), ("10.244.11.6", 80, Some(json!({"node": "n1"})))), |_| true).is_none());
        // a worker that sees neither pod as its own (not its node) marks nothing
        assert!(mark(&entry("n3", ("10.244.11.6", 1, Some("n1")), ("10.244.12.6", 80, Some(json!({"node": "n2"})))), |_| true).is_none());
        // a pod the other node's worker does not capture (outside the tapped namespaces)
        let to_other = entry("n1", ("10.244.11.6", 1, Some("n1")), ("10.244.12.6", 80, Some(json!({"node": "n2"}))));
        assert!(mark(&to_other, |_| true).is_some());
        assert!(mark(&to_other, |_| false).is_none());
    }
}
