//! The entries' last steps, on the dissector threads that made them: named (identity,
//! conntrack for a ClusterIP, the node's own addresses), marked for the hub's join,
//! redacted, filtered and encoded; and the TLS tracer's report.

use kshark_capture::identity::Shared;
use kshark_capture::worker;
use kshark_dissect::export::table;
use kshark_dissect::Entry;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shard's batch of entries, finished on the shard's thread: named, filtered, encoded.
pub(super) struct Finished {
    /// Entries the shard completed (before the filter).
    pub(super) seen: u64,
    /// Each kept entry's JSON.
    pub(super) lines: Vec<String>,
    /// The kept entries as table rows, for `--format table`.
    pub(super) rows: String,
}

/// Server-side copies of connections this node rewrote (kube-proxy's DNAT), left out as
/// their client-side copies were taken.
pub(super) static NAT_COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Naming, the filter and JSON encoding run on the dissector threads: the entries are
/// freed where they were made, and only one string per entry crosses to the output.
pub(super) struct Finish {
    pub(super) id: Shared,
    /// The node's connection tracking: who answered a ClusterIP (kube-proxy's DNAT).
    pub(super) ct: kshark_capture::conntrack::Conntrack,
    pub(super) redact: Arc<kshark_dissect::redact::Redactor>,
    pub(super) filter: Option<Arc<kshark_hub::Filter>>,
    pub(super) table_rows: bool,
    /// The pods the tap's workers capture (the same on every node).
    pub(super) captured: Arc<Selection>,
    /// This worker's node and its own addresses (see `Targeting::own`).
    pub(super) own: (Option<String>, Arc<std::sync::RwLock<HashSet<std::net::IpAddr>>>),
    /// Whether an entry with an end the identity does not know waits for it (see
    /// [`NAME_WAIT`]).
    pub(super) wait_names: bool,
    /// Those entries, each with when its wait ends.
    pub(super) late: std::collections::VecDeque<(Instant, Entry)>,
    /// For TLS plaintext: the library of each connection.
    pub(super) tls_libs: Option<kshark_capture::tls::ConnLibs>,
}

/// How long an entry whose end is an address in a private range that no pod, Service or
/// node holds waits for the API's news (a pod seconds old calls before its address is
/// known: the kubelet reports it after the CNI gave it, and the watch follows).
const NAME_WAIT: Duration = Duration::from_secs(2);

/// Entries waiting for a name, at most, per shard; beyond it they go out unnamed.
const MAX_LATE: usize = 10_000;

/// Entries named only after waiting for the API, and entries still unnamed after the wait.
pub(super) static NAMED_LATE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub(super) static UNNAMED_AFTER_WAIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An end no object names: an address in a private range (a pod's, most likely) that is
/// neither a pod, a Service nor a node.
fn unnamed(ep: &kshark_dissect::entry::Endpoint) -> bool {
    let private = match ep.ip {
        std::net::IpAddr::V4(a) => a.is_private() || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64),
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xfe00) == 0xfc00,
    };
    private && ep.pod.is_none() && ep.service.is_none() && !ep.name.starts_with("node/")
}

/// Which pods a tap captures: its namespaces (or all) and its name pattern.
pub(super) struct Selection {
    pub(super) namespaces: Vec<String>,
    pub(super) all: bool,
    pub(super) pattern: Option<regex::Regex>,
}

impl Selection {
    fn wants(&self, ep: &kshark_dissect::entry::Endpoint) -> bool {
        let name = ep.pod.as_ref().and_then(|p| p.get("name")).and_then(serde_json::Value::as_str).unwrap_or("");
        (self.all || ep.namespace.as_ref().is_some_and(|n| self.namespaces.contains(n))) && self.pattern.as_ref().is_none_or(|r| r.is_match(name))
    }
}

impl worker::Post for Finish {
    type Out = Finished;
    fn post(&mut self, entries: std::vec::Drain<'_, Entry>) -> Option<Finished> {
        self.finish(entries, false)
    }

    fn flush(&mut self) -> Option<Finished> {
        self.finish(Vec::new().drain(..), true)
    }
}

impl Finish {
    /// Names, filters and encodes new entries, and those whose wait for a name is over
    /// (all of them at the end: `last`).
    fn finish(&mut self, entries: std::vec::Drain<'_, Entry>, last: bool) -> Option<Finished> {
        if entries.len() == 0 && self.late.is_empty() {
            return None;
        }
        let inv = self.id.read().unwrap_or_else(|p| p.into_inner());
        // `seen` counts the entries decided here (a waiting one is counted once it goes)
        let mut f = Finished { seen: 0, lines: Vec::with_capacity(entries.len()), rows: String::new() };
        let own = self.own.1.read().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // those that waited: named now if the API has told of their ends meanwhile
        let mut ready: Vec<(Entry, bool)> = Vec::new();
        let mut waiting = std::collections::VecDeque::new();
        for (until, mut e) in self.late.drain(..) {
            inv.tag(&mut e);
            if !unnamed(&e.src) && !unnamed(&e.dst) {
                NAMED_LATE.fetch_add(1, Ordering::Relaxed);
                ready.push((e, false));
            } else if last || now >= until {
                UNNAMED_AFTER_WAIT.fetch_add(1, Ordering::Relaxed);
                ready.push((e, false));
            } else {
                waiting.push_back((until, e));
            }
        }
        self.late = waiting;
        for (mut e, fresh) in ready.into_iter().chain(entries.map(|e| (e, true))) {
            inv.tag(&mut e);
            if let Some(node) = &self.own.0 {
                // an address of this node's own (a pod bridge's, after kube-proxy's
                // masquerade of a NodePort or hostNetwork call): the node
                for ep in [&mut e.src, &mut e.dst] {
                    if ep.pod.is_none() && ep.service.is_none() && own.contains(&ep.ip) {
                        ep.name = format!("node/{node}");
                    }
                }
            }
            if let Some(libs) = self.tls_libs.as_ref().filter(|_| e.capture_source == kshark_dissect::entry::CaptureSource::EbpfTls) {
                let ends = (std::net::SocketAddr::new(e.src.ip, e.src.port), std::net::SocketAddr::new(e.dst.ip, e.dst.port));
                if let Some(l) = libs.read().ok().and_then(|m| m.get(&ends).cloned()) {
                    e.tls = Some(Box::new(kshark_dissect::entry::TlsInfo { library: l.library, version: l.version }));
                }
            }
            if fresh && self.wait_names && !last && (unnamed(&e.src) || unnamed(&e.dst)) && self.late.len() < MAX_LATE {
                self.late.push_back((now + NAME_WAIT, e));
                continue;
            }
            f.seen += 1;
            let (src, dst) = (std::net::SocketAddr::new(e.src.ip, e.src.port), std::net::SocketAddr::new(e.dst.ip, e.dst.port));
            let since = e.timestamp.0;
            // a Service's address (named as the Service, not a pod): who answered it. The
            // Service is the destination of a request, and the source of what a server
            // sends unasked (an AMQP delivery, a Redis push, an MQTT publish)
            let to_service = e.dst.service.is_some() && e.dst.pod.is_none();
            let from_service = !to_service && e.src.service.is_some() && e.src.pod.is_none();
            if to_service || from_service {
                let real = if to_service { self.ct.real_destination(src, dst, since) } else { self.ct.real_destination(dst, src, since) };
                if let Some(real) = real {
                    inv.name_answering(if to_service { &mut e.dst } else { &mut e.src }, real, e.timestamp.0 as i64);
                }
            } else if e.src.pod.is_some() && e.dst.pod.is_some() && (self.ct.addressed(src, dst, since).is_some() || self.ct.addressed(dst, src, since).is_some()) {
                // the server's-veth copy of a connection this node rewrote (its client's
                // packets were taken at the client's veth, so the copy holds what the server
                // sent: responses alone, or messages it sent unasked): its client's copy,
                // the one that says which Service was called, was taken here too
                NAT_COPIES.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // a call between pods on two nodes: the other node's worker sees it too, and
            // the hub joins the two
            e.join = kshark_capture::join::mark(&e, |ep| self.captured.wants(ep)).map(Box::new);
            self.redact.apply(&mut e);
            if !crate::read::keep(self.filter.as_deref(), &e) {
                continue;
            }
            if self.table_rows {
                use std::fmt::Write as _;
                let _ = writeln!(f.rows, "{}", table::row(&e));
            }
            f.lines.push(serde_json::to_string(&e).unwrap_or_default());
        }
        Some(f)
    }
}

/// The TLS tracer's state for `/api/stats` and the UIs: which processes are hooked (with
/// their library and version, their pod, and what was lost of their calls), which have
/// TLS that cannot be read and why, and what was read, left out and lost in all.
pub(super) fn tls_report(st: &std::sync::Mutex<kshark_capture::tls::TlsStats>, procs: &std::sync::Mutex<Vec<kshark_capture::tls::TlsProcess>>, id: &Shared) -> serde_json::Value {
    let t = st.lock().map(|s| *s).unwrap_or_default();
    let inv = id.read().unwrap_or_else(|p| p.into_inner());
    let (mut hooked, mut blind) = (Vec::new(), Vec::new());
    for p in procs.lock().map(|p| p.clone()).unwrap_or_default() {
        let pod = p.addr.and_then(|a| inv.pod_now(&a)).map(|pod| format!("{}/{}", pod.namespace, pod.name));
        match &p.why {
            None => hooked.push(serde_json::json!({
                "pid": p.pid, "process": p.command, "library": p.lib.library, "version": p.lib.version, "pod": pod,
                "ring_full": p.lost[0], "missed_entries": p.lost[1], "no_fd": p.lost[2], "no_socket": p.lost[3],
            })),
            Some(why) => blind.push(serde_json::json!({"pid": p.pid, "process": p.command, "tls": p.lib.library, "why": why, "pod": pod})),
        }
    }
    serde_json::json!({
        "hooked": hooked,
        "not_readable": blind,
        "calls": t.calls, "libraries": t.libraries,
        "out_of_scope": t.out_of_scope, "other_end_copies": t.other_end_copies,
        "no_socket": t.no_socket, "no_fd": t.no_fd, "gap_bytes": t.gap_bytes, "missed_entries": t.missed_entries, "ring_full": t.ring_full, "truncated_calls": t.truncated_calls,
    })
}


/// The summary's lines per process: what was read and lost, and what could not be read,
/// and why.
pub(super) fn tls_lines(r: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    for h in r["hooked"].as_array().into_iter().flatten() {
        let lost: u64 = ["ring_full", "missed_entries", "no_fd", "no_socket"].iter().filter_map(|k| h[*k].as_u64()).sum();
        let lost = if lost > 0 { format!("; {lost} calls lost (ring full {}, entries missed {}, no fd {}, no socket {})", h["ring_full"], h["missed_entries"], h["no_fd"], h["no_socket"]) } else { String::new() };
        let pod = h["pod"].as_str().unwrap_or("the host");
        out.push(format!("hooked pid {} {} in {pod}: {} {}{lost}", h["pid"], s(h, "process"), s(h, "library"), s(h, "version")));
    }
    for b in r["not_readable"].as_array().into_iter().flatten() {
        let pod = b["pod"].as_str().unwrap_or("the host");
        out.push(format!("NOT READABLE pid {} {} in {pod}: {}: {}", b["pid"], s(b, "process"), s(b, "tls"), s(b, "why")));
    }
    out
}
