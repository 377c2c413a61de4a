//! Joining the two observations of one exchange into one entry.
//!
//! A call from a pod on one node to a pod on another passes both nodes, and each node's
//! worker makes an entry of it, marked with `join` (`side`, `peer`, `key`; see
//! kshark-capture's `join`). The hub holds a marked entry until the other side's arrives,
//! then stores one entry: the client's (it names the Service that was called), with
//! `nodes` (both), `observed: "both"`, `server_elapsed_time` (the time the server took,
//! taken at the server's pod) beside `elapsed_time` (the time the client waited) and
//! `network_time` (the difference). An entry whose other side does not come is stored
//! alone, with `observed` saying which side it is.
//!
//! How long to wait depends on the other node's worker: while it is connected, [`WAIT`]
//! after the entry came (or after that worker reconnected, for it to resend what it
//! holds); while it is away, [`ABSENT_WAIT`]; a node that never had a worker is not
//! waited for, except in the hub's first [`ABSENT_WAIT`], when workers are still
//! reconnecting after a restart. What is held is stored with the batch that brought it
//! (the store's `pending` table), so that a batch is acknowledged only once everything
//! in it is stored, and a restarted hub resumes the wait.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an observation waits for its other side while the other node's worker is
/// connected (workers send a batch at least every 100 ms).
pub const WAIT: Duration = Duration::from_secs(2);

/// How long it waits while the other node's worker is away (reconnecting, restarting).
pub const ABSENT_WAIT: Duration = Duration::from_secs(15);

/// Observations held at once; beyond it an observation is stored alone, and counted.
pub const MAX_HELD: usize = 200_000;

/// The bytes (of entry JSON) held at once, at most; beyond it as beyond [`MAX_HELD`].
pub const MAX_HELD_BYTES: usize = 256 << 20;

/// How far apart the two sides' timestamps may be beyond the client's elapsed time (the
/// nodes' clocks may differ that much).
const SKEW_NS: i64 = 1_000_000_000;

/// Where the other node's worker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Connected since then.
    Connected(Instant),
    /// It had a worker at this hub, not connected now.
    Away,
    /// It never had a worker at this hub.
    Unknown,
}

/// One side of an exchange, waiting.
#[derive(Debug)]
struct Held {
    id: u64,
    client: bool,
    peer: String,
    /// The request's first byte, ns.
    ts: i64,
    elapsed_us: Option<i64>,
    came: Instant,
    /// Its JSON's length, against [`MAX_HELD_BYTES`].
    bytes: usize,
    entry: Value,
}

/// What became of an observation offered to the joiner.
#[derive(Debug)]
pub enum Offer {
    /// Joined with the other side, which was held as `released`: store `entry`.
    Joined { entry: Value, released: u64 },
    /// Held as `id` until its other side comes (store `text` as pending).
    Held { id: u64 },
    /// Not worth waiting for (the other node has no worker, or too much is held):
    /// store `entry` now.
    Alone(Value),
}

/// The join's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct JoinCounts {
    /// Exchanges stored as one entry from two observations.
    pub joined: u64,
    /// Observations stored alone: their other side did not come in time.
    pub alone: u64,
    /// Of those, the ones stored alone at once because too much was held.
    pub overflow: u64,
}

/// The observations waiting for their other side, by key.
pub struct Joiner {
    held: HashMap<String, Vec<Held>>,
    count: usize,
    bytes: usize,
    next_id: u64,
    started: Instant,
    pub counts: JoinCounts,
}

/// An entry's `join` mark, read.
struct Mark {
    client: bool,
    peer: String,
    key: String,
}

fn mark_of(e: &Value) -> Option<Mark> {
    let j = e.get("join")?;
    let client = match j.get("side")?.as_str()? {
        "client" => true,
        "server" => false,
        _ => return None,
    };
    Some(Mark { client, peer: j.get("peer")?.as_str()?.to_string(), key: j.get("key")?.as_str()?.to_string() })
}

fn timestamp_ns(e: &Value) -> i64 {
    e.get("timestamp").and_then(Value::as_str).and_then(crate::filter::parse_timestamp).and_then(|t| i64::try_from(t).ok()).unwrap_or(0)
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner { held: HashMap::new(), count: 0, bytes: 0, next_id: 1, started: Instant::now(), counts: JoinCounts::default() }
    }
}

impl Joiner {
    /// Observations held now.
    pub fn held(&self) -> usize {
        self.count
    }

    /// Whether an entry carries a `join` mark the joiner can read.
    pub fn is_marked(e: &Value) -> bool {
        mark_of(e).is_some()
    }

    /// Takes back what a store held (after a restart, or after a failed commit): the wait
    /// starts again from now.
    pub fn restore(&mut self, id: u64, entry: Value, bytes: usize) {
        self.next_id = self.next_id.max(id + 1);
        if let Some(m) = mark_of(&entry) {
            self.insert(id, m, entry, bytes, Instant::now());
        }
    }

    /// Forgets everything held (before [`Joiner::restore`] from the store).
    pub fn clear(&mut self) {
        self.held.clear();
        self.count = 0;
        self.bytes = 0;
    }

    fn insert(&mut self, id: u64, m: Mark, entry: Value, bytes: usize, came: Instant) {
        let ts = timestamp_ns(&entry);
        let elapsed_us = entry.get("elapsed_time").and_then(Value::as_i64);
        self.held.entry(m.key).or_default().push(Held { id, client: m.client, peer: m.peer, ts, elapsed_us, came, bytes, entry });
        self.count += 1;
        self.bytes += bytes;
    }

    /// [`Joiner::offer_sized`], the entry's size taken from its JSON.
    pub fn offer(&mut self, entry: Value, now: Instant, peer: impl Fn(&str) -> Peer) -> Offer {
        let bytes = entry.to_string().len();
        self.offer_sized(entry, bytes, now, peer)
    }

    /// Offers a marked entry (`bytes`: its JSON's length): it is joined with its other
    /// side if that is held, else held itself (or, when waiting is pointless or too much
    /// is held, handed back to be stored alone).
    pub fn offer_sized(&mut self, entry: Value, bytes: usize, now: Instant, peer: impl Fn(&str) -> Peer) -> Offer {
        let Some(m) = mark_of(&entry) else {
            return Offer::Alone(finish_alone(entry));
        };
        if let Some(list) = self.held.get_mut(&m.key) {
            let ts = timestamp_ns(&entry);
            let elapsed = entry.get("elapsed_time").and_then(Value::as_i64);
            // the other side nearest in time, within the client's elapsed time and the skew
            let best = list
                .iter()
                .enumerate()
                .filter(|(_, h)| h.client != m.client)
                .filter(|(_, h)| {
                    let client_elapsed = if m.client { elapsed } else { h.elapsed_us };
                    (h.ts - ts).abs() <= client_elapsed.unwrap_or(0).max(0) * 1000 + SKEW_NS
                })
                .min_by_key(|(_, h)| (h.ts - ts).abs())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let other = list.swap_remove(i);
                if list.is_empty() {
                    self.held.remove(&m.key);
                }
                self.count -= 1;
                self.bytes -= other.bytes;
                self.counts.joined += 1;
                let (c, s) = if m.client { (entry, other.entry) } else { (other.entry, entry) };
                return Offer::Joined { entry: merge(c, s), released: other.id };
            }
        }
        let waits = match peer(&m.peer) {
            Peer::Connected(_) | Peer::Away => true,
            Peer::Unknown => now.duration_since(self.started) < ABSENT_WAIT,
        };
        if !waits || self.count >= MAX_HELD || self.bytes + bytes > MAX_HELD_BYTES {
            self.counts.alone += 1;
            if waits {
                self.counts.overflow += 1;
            }
            return Offer::Alone(finish_alone(entry));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert(id, m, entry, bytes, now);
        Offer::Held { id }
    }

    /// The observations whose wait is over, taken out and made ready to store alone, with
    /// the ids they were held as.
    pub fn due(&mut self, now: Instant, peer: impl Fn(&str) -> Peer) -> Vec<(u64, Value)> {
        let mut out = Vec::new();
        let mut freed = 0;
        let started = self.started;
        self.held.retain(|_, list| {
            let mut i = 0;
            while i < list.len() {
                let h = &list[i];
                let over = match peer(&h.peer) {
                    Peer::Connected(since) => now.saturating_duration_since(h.came.max(since)) >= WAIT,
                    Peer::Away => now.saturating_duration_since(h.came) >= ABSENT_WAIT,
                    Peer::Unknown => now.saturating_duration_since(h.came.max(started)) >= ABSENT_WAIT || now.duration_since(started) >= ABSENT_WAIT,
                };
                if over {
                    let h = list.swap_remove(i);
                    freed += h.bytes;
                    out.push((h.id, finish_alone(h.entry)));
                } else {
                    i += 1;
                }
            }
            !list.is_empty()
        });
        self.count -= out.len();
        self.bytes -= freed;
        self.counts.alone += out.len() as u64;
        out
    }
}

/// An observation stored without its other side: `nodes` (its own) and `observed` (which
/// side it is), without the mark.
fn finish_alone(mut e: Value) -> Value {
    let side = mark_of(&e).map(|m| if m.client { "client" } else { "server" });
    if let Some(o) = e.as_object_mut() {
        o.remove("join");
        let node = o.get("node").cloned().unwrap_or(Value::Null);
        o.insert("nodes".into(), json!([node]));
        if let Some(side) = side {
            o.insert("observed".into(), json!(side));
        }
    }
    e
}

/// One entry from the client's observation `c` and the server's `s`.
fn merge(mut c: Value, mut s: Value) -> Value {
    let Some(o) = c.as_object_mut() else { return c };
    o.remove("join");
    let server_node = s.get("node").cloned().unwrap_or(Value::Null);
    let client_node = o.get("node").cloned().unwrap_or(Value::Null);
    o.insert("nodes".into(), json!([client_node, server_node]));
    o.insert("observed".into(), json!("both"));
    // the exchange as the server's side saw it fills what the client's side missed
    for (half, size, anomaly) in [("request", "request_size", "unpaired_response"), ("response", "response_size", "no_response")] {
        if o.get(half).is_none_or(Value::is_null) && s.get(half).is_some_and(|v| !v.is_null()) {
            o.insert(half.into(), s[half].take());
            o.insert(size.into(), s[size].take());
            if let Some(Value::Array(a)) = o.get_mut("anomalies") {
                a.retain(|x| x.as_str() != Some(anomaly));
            }
            if o.get("elapsed_time").is_none_or(Value::is_null) {
                o.insert("elapsed_time".into(), s["elapsed_time"].clone());
            }
        }
    }
    let server_elapsed = s.get("elapsed_time").and_then(Value::as_i64);
    if let Some(se) = server_elapsed {
        o.insert("server_elapsed_time".into(), json!(se));
        if let Some(ce) = o.get("elapsed_time").and_then(Value::as_i64) {
            o.insert("network_time".into(), json!(ce - se));
        }
    }
    // the answering pod, as its own node's worker named it, under what the client's side
    // knew (the address conntrack found)
    if let (Some(Value::Object(sp)), Some(dst)) = (s.pointer_mut("/dst/pod").map(Value::take), o.get_mut("dst")) {
        match dst.get_mut("pod") {
            Some(Value::Object(cp)) => {
                for (k, v) in sp {
                    cp.entry(k).or_insert(v);
                }
            }
            _ => dst["pod"] = Value::Object(sp),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(side: &str, node: &str, peer: &str, key: &str, ts: &str, elapsed: i64) -> Value {
        json!({
            "id": format!("{node}-{ts}"), "timestamp": ts, "protocol": "http", "transport": "tcp", "node": node,
            "src": {"ip": "10.244.11.6", "port": 41000, "pod": {"name": "front-end", "node": "n1"}},
            "dst": if side == "client" { json!({"ip": "10.96.4.2", "port": 80, "service": {"name": "catalogue"}, "pod": {"name": "catalogue-1", "ip": "10.244.12.5", "port": 8080}}) }
                   else { json!({"ip": "10.244.12.5", "port": 8080, "pod": {"name": "catalogue-1", "node": "n2", "labels": {"app": "catalogue"}}}) },
            "request": {"method": "GET"}, "response": {"status_code": 200}, "elapsed_time": elapsed,
            "anomalies": [], "join": {"side": side, "peer": peer, "key": key},
        })
    }

    const T0: &str = "2026-01-01T00:00:00.000000000Z";

    #[test]
    fn the_two_sides_become_one_entry_whichever_comes_first() {
        for server_first in [false, true] {
            let mut j = Joiner::default();
            let now = Instant::now();
            let connected = |_: &str| Peer::Connected(now);
            let c = obs("client", "n1", "n2", "k", T0, 900);
            let s = obs("server", "n2", "n1", "k", "2026-01-01T00:00:00.000100000Z", 700);
            let (first, second) = if server_first { (s, c) } else { (c, s) };
            let Offer::Held { id } = j.offer(first, now, connected) else { panic!("held") };
            let Offer::Joined { entry, released } = j.offer(second, now, connected) else { panic!("joined") };
            assert_eq!(released, id);
            assert_eq!(j.held(), 0);
            assert_eq!(entry["nodes"], json!(["n1", "n2"]));
            assert_eq!(entry["observed"], "both");
            assert_eq!((entry["elapsed_time"].as_i64(), entry["server_elapsed_time"].as_i64(), entry["network_time"].as_i64()), (Some(900), Some(700), Some(200)));
            // the client's view of the destination (the Service), the pod as its node knows it
            assert_eq!(entry["dst"]["service"]["name"], "catalogue");
            assert_eq!(entry["dst"]["ip"], "10.96.4.2");
            assert_eq!(entry["dst"]["pod"]["ip"], "10.244.12.5");
            assert_eq!(entry["dst"]["pod"]["labels"]["app"], "catalogue");
            assert!(entry.get("join").is_none());
            assert_eq!(j.counts.joined, 1);
        }
    }

    #[test]
    fn exchanges_on_one_connection_pair_by_time_and_not_across_sides() {
        let mut j = Joiner::default();
        let now = Instant::now();
        let p = |_: &str| Peer::Connected(now);
        // two client observations on one connection, a second apart, then their servers'
        assert!(matches!(j.offer(obs("client", "n1", "n2", "k", "2026-01-01T00:00:00Z", 500), now, p), Offer::Held { .. }));
        assert!(matches!(j.offer(obs("client", "n1", "n2", "k", "2026-01-01T00:00:01Z", 500), now, p), Offer::Held { .. }));
        let Offer::Joined { entry, .. } = j.offer(obs("server", "n2", "n1", "k", "2026-01-01T00:00:01.000200Z", 100), now, p) else { panic!() };
        assert_eq!(entry["timestamp"], "2026-01-01T00:00:01Z");
        let Offer::Joined { entry, .. } = j.offer(obs("server", "n2", "n1", "k", "2026-01-01T00:00:00.000200Z", 100), now, p) else { panic!() };
        assert_eq!(entry["timestamp"], "2026-01-01T00:00:00Z");
        // a side never joins its own kind, nor an exchange far from it in time
        assert!(matches!(j.offer(obs("client", "n1", "n2", "k", T0, 1), now, p), Offer::Held { .. }));
        assert!(matches!(j.offer(obs("client", "n1", "n2", "k", T0, 1), now, p), Offer::Held { .. }));
        assert!(matches!(j.offer(obs("server", "n2", "n1", "k", "2026-01-01T00:00:05Z", 1), now, p), Offer::Held { .. }));
        assert_eq!(j.held(), 3);
    }

    #[test]
    fn an_observation_waits_as_long_as_its_peer_can_still_send() {
        let mut j = Joiner::default();
        let t = Instant::now();
        let peer = |p: Peer| move |_: &str| p;
        j.offer(obs("client", "n1", "n2", "a", T0, 1), t, peer(Peer::Connected(t)));
        j.offer(obs("server", "n2", "n3", "b", T0, 1), t, peer(Peer::Away));
        // the connected peer's side is due after WAIT, the away one's after ABSENT_WAIT
        assert!(j.due(t + WAIT / 2, peer(Peer::Connected(t))).is_empty());
        let due = j.due(t + WAIT, |p| if p == "n2" { Peer::Connected(t) } else { Peer::Away });
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1["observed"], "client");
        assert_eq!(due[0].1["nodes"], json!(["n1"]));
        assert!(due[0].1.get("join").is_none());
        // a peer that reconnects gets WAIT from then, to resend
        assert!(j.due(t + ABSENT_WAIT - Duration::from_millis(1), peer(Peer::Away)).is_empty());
        assert!(j.due(t + ABSENT_WAIT, peer(Peer::Connected(t + ABSENT_WAIT - Duration::from_secs(1)))).is_empty());
        assert_eq!(j.due(t + ABSENT_WAIT + WAIT, peer(Peer::Connected(t + ABSENT_WAIT - Duration::from_secs(1)))).len(), 1);
        assert_eq!((j.held(), j.counts.alone), (0, 2));
    }

    #[test]
    fn a_node_without_a_worker_is_not_waited_for_once_workers_had_time_to_come() {
        let mut j = Joiner::default();
        let t = j.started;
        assert!(matches!(j.offer(obs("client", "n1", "n9", "k", T0, 1), t, |_| Peer::Unknown), Offer::Held { .. }));
        let Offer::Alone(e) = j.offer(obs("client", "n1", "n9", "k2", T0, 1), t + ABSENT_WAIT, |_| Peer::Unknown) else { panic!() };
        assert_eq!(e["observed"], "client");
        assert_eq!(j.due(t + ABSENT_WAIT, |_| Peer::Unknown).len(), 1);
    }

    #[test]
    fn what_is_held_is_bounded_in_bytes_and_the_rest_is_stored_alone_and_counted() {
        let mut j = Joiner::default();
        let now = Instant::now();
        let p = |_: &str| Peer::Connected(now);
        assert!(matches!(j.offer_sized(obs("client", "n1", "n2", "a", T0, 1), MAX_HELD_BYTES - 10, now, p), Offer::Held { .. }));
        let Offer::Alone(e) = j.offer_sized(obs("client", "n1", "n2", "b", T0, 1), 20, now, p) else { panic!("over the bytes held") };
        assert_eq!(e["observed"], "client");
        assert_eq!((j.counts.overflow, j.held()), (1, 1));
        // what is let go frees its bytes
        assert_eq!(j.due(now + WAIT, p).len(), 1);
        assert!(matches!(j.offer_sized(obs("client", "n1", "n2", "b", T0, 1), 20, now + WAIT, p), Offer::Held { .. }));
    }

    #[test]
    fn what_a_store_held_is_taken_back_and_still_joins() {
        let mut j = Joiner::default();
        let now = Instant::now();
        j.restore(41, obs("client", "n1", "n2", "k", T0, 10), 100);
        let Offer::Joined { released, .. } = j.offer(obs("server", "n2", "n1", "k", T0, 5), now, |_| Peer::Connected(now)) else { panic!() };
        assert_eq!(released, 41);
        let Offer::Held { id } = j.offer(obs("server", "n2", "n1", "k", T0, 5), now, |_| Peer::Connected(now)) else { panic!() };
        assert!(id > 41, "ids go on past what was restored");
    }
}
