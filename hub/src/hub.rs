//! The hub's core: one writer thread that commits batches to the [`Store`] (several at a
//! time when they queue up), then hands what it stored to the live subscribers and the
//! metrics, in commit order. Subscribers have bounded queues: one that falls behind is
//! cut loose (its stream ends with a reason, and a counter counts it) rather than holding
//! up ingest or the others.

use crate::filter::Filter;
use crate::join::{Joiner, Offer, Peer};
use crate::metrics::Metrics;
use crate::record::Block;
use crate::store::{now_ns, Batch, Committed, Query, Reader, Retention, Store};
use crate::Error;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One stored entry on its way to a subscriber. It holds what it costs the hub (its
/// share of its batch's memory, or its own copy) against the subscriber's budget until
/// it is dropped.
#[derive(Debug)]
pub struct Live {
    /// The store's sequence number.
    pub seq: i64,
    data: bytes::Bytes,
    charge: usize,
    held: Arc<AtomicUsize>,
}

impl Live {
    /// The entry's JSON.
    pub fn full(&self) -> bytes::Bytes {
        self.data.clone()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.held.fetch_sub(self.charge, Relaxed);
    }
}

/// Every counter the hub keeps.
#[derive(Debug, Default)]
pub struct Counters {
    pub batches: AtomicU64,
    pub duplicate_batches: AtomicU64,
    pub malformed_batches: AtomicU64,
    pub entries: AtomicU64,
    pub refused_workers: AtomicU64,
    pub refused_readers: AtomicU64,
    pub subscribers_cut: AtomicU64,
    pub retention_deleted: AtomicU64,
    pub store_errors: AtomicU64,
    /// Connections refused because the hub had as many as it takes.
    pub connections_refused: AtomicU64,
    /// Connections closed for sending no request headers in time, or for being idle.
    pub connections_timed_out: AtomicU64,
    /// Requests refused for their `Host` or `Origin` (cross-site, DNS rebinding).
    pub refused_origins: AtomicU64,
    /// Filters refused for their cost, or that ran out of time.
    pub filters_refused: AtomicU64,
    /// Queries stopped because their client left, their time ran out, or the hub stopped.
    pub queries_cancelled: AtomicU64,
    /// Worker messages over the size limit (batches, stats), refused.
    pub oversized_messages: AtomicU64,
    /// Batches that waited for the hub's decompression budget.
    pub decode_waits: AtomicU64,
    /// Batches refused for their number (far beyond the worker's last).
    pub refused_batch_numbers: AtomicU64,
    /// Live streams refused: as many were open as the hub serves.
    pub streams_refused: AtomicU64,
    /// Exchanges seen by two nodes' workers, stored as one entry (see [`crate::join`]).
    pub joined: AtomicU64,
    /// Such observations stored alone: their other side did not come in time.
    pub join_alone: AtomicU64,
    /// Of those, the ones stored at once because the join held as many as it may.
    pub join_overflow: AtomicU64,
    /// Observations waiting for their other side now.
    pub join_held: AtomicU64,
}

struct Subscriber {
    id: u64,
    filter: Arc<Filter>,
    tx: tokio::sync::mpsc::Sender<Live>,
    cut: Arc<Cut>,
    /// Bytes its queued entries hold.
    held: Arc<AtomicUsize>,
}

/// That a subscription was cut loose, and a wake-up for whoever is stuck sending to it.
#[derive(Default)]
struct Cut {
    done: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

/// A live subscription: matching entries as they are stored. When the hub cuts it loose
/// (it held too much) the channel closes and [`Subscription::was_cut`] says so; a sender
/// stuck on a client that does not read learns it from [`Subscription::cut_loose`], and
/// should drop the subscription, and with it what is queued.
pub struct Subscription {
    pub rx: tokio::sync::mpsc::Receiver<Live>,
    cut: Arc<Cut>,
}

impl Subscription {
    pub fn was_cut(&self) -> bool {
        self.cut.done.load(Relaxed)
    }

    /// Resolves once the hub has cut this subscription loose.
    pub async fn cut_loose(&self) {
        if !self.was_cut() {
            self.cut.wake.notified().await;
        }
    }
}

/// What a worker last reported.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    pub connected: bool,
    pub last_seen: i64,
    pub stats: Value,
    /// When it last connected (a reconnected worker resends what it holds).
    pub since: Instant,
}

/// A node's time without a worker (its traffic was not captured then).
#[derive(Clone, Debug, Default)]
struct NodeGaps {
    since: Option<Instant>,
    gaps: u64,
    total: Duration,
}

/// The node a worker captures on: its id is `NODE/RUN` (see `kshark worker`).
pub fn node_of_worker(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(n, _)| n)
}

/// The worker id under which the hub stores the entries it joined (or stored alone after
/// their wait), numbered like a worker's batches.
pub const JOIN_WORKER: &str = "hub/join";

struct Job {
    worker: Arc<str>,
    block: Block,
    reply: tokio::sync::oneshot::Sender<Result<Committed, Error>>,
    /// The batch's share of the decompression budget, given back once it is committed.
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

pub struct Inner {
    store_path: PathBuf,
    jobs: Mutex<Option<SyncSender<Job>>>,
    subs: Mutex<Vec<Subscriber>>,
    next_sub: AtomicU64,
    pub counters: Counters,
    pub workers: Mutex<HashMap<String, WorkerInfo>>,
    pub metrics: Mutex<Metrics>,
    store_bytes: AtomicU64,
    disk_bytes: AtomicU64,
    subscriber_queue: usize,
    subscriber_bytes: usize,
    /// Decompressed batches in memory, in KiB, hub-wide (see [`DECODE_BUDGET`]).
    pub decode_budget: Arc<tokio::sync::Semaphore>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Worker ids with a connection now.
    connected: Mutex<std::collections::HashSet<String>>,
    /// Per node, the times it had no worker connected after it had one.
    node_gaps: Mutex<HashMap<String, NodeGaps>>,
    stopping: std::sync::atomic::AtomicBool,
    /// Set when the hub is about to stop: batches are no longer taken (their workers keep
    /// them, and resend them to the hub that comes next).
    closing: std::sync::atomic::AtomicBool,
    /// Batches handed to the writer and not yet committed.
    in_flight: AtomicUsize,
}

/// A worker id held by its connection; let go when dropped.
pub struct WorkerClaim {
    hub: Hub,
    id: String,
}

impl WorkerClaim {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for WorkerClaim {
    fn drop(&mut self) {
        self.hub.inner.connected.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// A running hub (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    pub inner: Arc<Inner>,
}

#[derive(Clone, Debug)]
pub struct HubConfig {
    pub data: PathBuf,
    pub retention: Retention,
    /// Entries a subscriber may have waiting before it is cut loose.
    pub subscriber_queue: usize,
    /// Bytes a subscriber's waiting entries may hold before it is cut loose.
    pub subscriber_bytes: usize,
}

/// The time a live subscriber's filter may take over one commit's entries (up to 65,536)
/// on the writer's thread before the subscriber is cut loose.
pub const FILTER_TIME: Duration = Duration::from_millis(250);

/// Live subscribers at once (each one's filter runs on every stored entry).
pub const MAX_SUBSCRIBERS: usize = 64;

/// Memory that decompressed batches may take, hub-wide, from decoding until commit.
pub const DECODE_BUDGET: usize = 128 << 20;

impl HubConfig {
    pub fn new(data: &Path) -> Self {
        HubConfig { data: data.to_path_buf(), retention: Retention::default(), subscriber_queue: 16384, subscriber_bytes: 64 << 20 }
    }
}

impl Hub {
    /// Opens the store and starts the writer thread.
    pub fn start(cfg: &HubConfig) -> Result<Hub, Error> {
        let store = Store::open(&cfg.data, cfg.retention)?;
        let store_bytes = store.used_bytes()?;
        let (tx, rx) = sync_channel::<Job>(256);
        let inner = Arc::new(Inner {
            store_path: store.path().to_path_buf(),
            jobs: Mutex::new(Some(tx)),
            subs: Mutex::new(Vec::new()),
            next_sub: AtomicU64::new(1),
            counters: Counters::default(),
            workers: Mutex::new(HashMap::new()),
            metrics: Mutex::new(Metrics::default()),
            store_bytes: AtomicU64::new(store_bytes),
            disk_bytes: AtomicU64::new(store.disk_bytes()),
            subscriber_queue: cfg.subscriber_queue.max(1),
            subscriber_bytes: cfg.subscriber_bytes.max(1),
            decode_budget: Arc::new(tokio::sync::Semaphore::new(DECODE_BUDGET >> 10)),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            connected: Mutex::new(Default::default()),
            node_gaps: Mutex::new(HashMap::new()),
            stopping: Default::default(),
            closing: Default::default(),
            in_flight: AtomicUsize::new(0),
        });
        let hub = Hub { inner: inner.clone() };
        let h = hub.clone();
        // what waited for its other side before a restart waits again, from now
        let mut joiner = Joiner::default();
        hub.restore_held(&store, &mut joiner);
        let t = std::thread::Builder::new().name("hub-writer".into()).spawn(move || h.writer(store, joiner, rx)).map_err(|e| Error::Store(e.to_string()))?;
        *inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        let h = hub.clone();
        let reader = hub.reader()?;
        let c = std::thread::Builder::new().name("hub-checkpoint".into()).spawn(move || h.checkpointer(reader)).map_err(|e| Error::Store(e.to_string()))?;
        *inner.checkpointer.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
        Ok(hub)
    }

    /// Takes `id` for one connection, or `None` when another has it.
    pub fn claim_worker(&self, id: &str) -> Option<WorkerClaim> {
        self.inner.connected.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string()).then(|| WorkerClaim { hub: self.clone(), id: id.to_string() })
    }

    /// Whether the hub is stopping (queries stop, streams end).
    pub fn stopping(&self) -> bool {
        self.inner.stopping.load(Relaxed)
    }

    /// The first step of a stop: batches are no longer taken (a worker's connection is
    /// closed at its next batch, which it keeps), and what was taken is committed and
    /// handed to the live streams before they end (within `grace`). Acknowledged entries
    /// thus reach the streams even when the store goes with the hub (an emptyDir).
    pub async fn close_ingest(&self, grace: Duration) {
        self.inner.closing.store(true, Relaxed);
        let t = Instant::now();
        while self.inner.in_flight.load(Relaxed) > 0 && t.elapsed() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether batches are still taken (see [`Hub::close_ingest`]).
    pub fn takes_batches(&self) -> bool {
        !self.inner.closing.load(Relaxed)
    }

    /// The start of a stop: running queries stop, live streams end (their channels
    /// close), so that connections can finish.
    pub fn begin_stop(&self) {
        self.inner.stopping.store(true, Relaxed);
        self.inner.subs.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Stops taking batches, lets the writer finish what it has, and waits for it.
    pub fn shutdown(&self) {
        self.begin_stop();
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        if let Some(t) = self.inner.checkpointer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }

    /// Checkpoints the store's WAL every 200 ms, until the hub shuts down.
    fn checkpointer(&self, reader: Reader) {
        let mut failing = false;
        while self.inner.jobs.lock().map(|j| j.is_some()).unwrap_or(false) {
            std::thread::sleep(Duration::from_millis(200));
            match reader.checkpoint() {
                Ok(()) => failing = false,
                Err(e) => {
                    // said once, not every 200 ms
                    if !std::mem::replace(&mut failing, true) {
                        self.inner.counters.store_errors.fetch_add(1, Relaxed);
                        eprintln!("kshark hub: checkpoint: {e}");
                    }
                }
            }
        }
    }

    pub fn reader(&self) -> Result<Reader, Error> {
        Reader::open(&self.inner.store_path)
    }

    /// Stores a batch from `worker`; resolves once it is committed (or known already).
    pub async fn ingest(&self, worker: Arc<str>, block: Block) -> Result<Committed, Error> {
        self.submit(worker, block, None).await?.await.map_err(|_| Error::Closed)?
    }

    /// Hands a batch to the writer and returns at once with what will say when it is
    /// committed, so a connection can have several batches on their way (they are
    /// committed in the order they were submitted). The writer's queue is bounded: a full
    /// one holds the caller back.
    pub async fn submit(&self, worker: Arc<str>, block: Block, budget: Option<tokio::sync::OwnedSemaphorePermit>) -> Result<tokio::sync::oneshot::Receiver<Result<Committed, Error>>, Error> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let tx = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(Error::Closed)?;
        self.inner.in_flight.fetch_add(1, Relaxed);
        let sent = match tx.try_send(Job { worker, block, reply, _budget: budget }) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(job)) => tokio::task::spawn_blocking(move || tx.send(job).map_err(|_| Error::Closed)).await.map_err(|_| Error::Closed).and_then(|r| r),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(Error::Closed),
        };
        if let Err(e) = sent {
            self.inner.in_flight.fetch_sub(1, Relaxed);
            return Err(e);
        }
        Ok(rx)
    }

    /// Subscribes to entries matching `filter` as they are stored.
    pub fn subscribe(&self, filter: Arc<Filter>) -> Subscription {
        self.subscribe_within(filter, usize::MAX).expect("no limit")
    }

    /// Subscribes unless `most` subscriptions are open already (counted and added in
    /// one step, so that streams arriving together cannot pass the limit).
    pub fn subscribe_within(&self, filter: Arc<Filter>, most: usize) -> Option<Subscription> {
        let (tx, rx) = tokio::sync::mpsc::channel(self.inner.subscriber_queue);
        let cut = Arc::new(Cut::default());
        let id = self.inner.next_sub.fetch_add(1, Relaxed);
        let mut subs = self.inner.subs.lock().unwrap_or_else(|p| p.into_inner());
        // those whose streams have ended go (otherwise only a commit prunes them)
        subs.retain(|s| !s.tx.is_closed());
        if subs.len() >= most {
            return None;
        }
        subs.push(Subscriber { id, filter, tx, cut: cut.clone(), held: Arc::new(AtomicUsize::new(0)) });
        Some(Subscription { rx, cut })
    }

    pub fn subscribers(&self) -> usize {
        self.inner.subs.lock().map_or(0, |s| s.iter().filter(|s| !s.tx.is_closed()).count())
    }

    /// Bytes the live subscribers' waiting entries hold, together.
    pub fn subscribers_held(&self) -> usize {
        self.inner.subs.lock().map_or(0, |s| s.iter().map(|s| s.held.load(Relaxed)).sum())
    }

    /// A worker's latest report (its counters), or that it went away.
    pub fn worker_report(&self, worker: &str, connected: bool, stats: Option<Value>) {
        let mut w = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        let was = w.get(worker).is_some_and(|i| i.connected);
        if was != connected && worker != "tap" {
            // a node whose last worker left is not captured until one comes back: counted
            let node = node_of_worker(worker);
            let others = w.iter().any(|(id, i)| id != worker && i.connected && node_of_worker(id) == node);
            let mut gaps = self.inner.node_gaps.lock().unwrap_or_else(|p| p.into_inner());
            let g = gaps.entry(node.to_string()).or_default();
            match (connected, g.since.take()) {
                (true, Some(since)) => g.total += since.elapsed(),
                (false, _) if !others => {
                    g.since = Some(Instant::now());
                    g.gaps += 1;
                    eprintln!("kshark hub: node {node} has no worker now (its worker {worker} left): its traffic is not captured until one comes back");
                }
                (_, since) => g.since = since,
            }
        }
        let e = w.entry(worker.to_string()).or_insert(WorkerInfo { connected: false, last_seen: 0, stats: Value::Null, since: Instant::now() });
        if connected && !e.connected {
            e.since = Instant::now();
        }
        e.connected = connected;
        e.last_seen = now_ns();
        if let Some(s) = stats {
            e.stats = s;
        }
    }

    /// Stored entries matching a query (their JSON, oldest first), with their seqs.
    pub fn query(&self, q: &Query<'_>) -> Result<Vec<(i64, String)>, Error> {
        self.reader()?.query(q)
    }

    /// Stored entries matching a query, handed to `each` as they are read (see
    /// [`Reader::query_each`]).
    pub fn query_each(&self, q: &Query<'_>, each: &mut dyn FnMut(i64, &[u8]) -> bool) -> Result<(), Error> {
        self.reader()?.query_each(q, each)
    }

    /// `/api/stats`: the hub's counters, each worker's, and drops summed over workers.
    /// Where the worker of `node` is, for the join's wait.
    fn peer(workers: &HashMap<String, WorkerInfo>, node: &str) -> Peer {
        let mut seen = Peer::Unknown;
        for (id, w) in workers {
            if node_of_worker(id) == node {
                if w.connected {
                    return Peer::Connected(w.since);
                }
                seen = Peer::Away;
            }
        }
        seen
    }

    pub fn stats(&self) -> Value {
        let c = &self.inner.counters;
        let workers = self.inner.workers.lock().map(|w| w.clone()).unwrap_or_default();
        let mut drops: std::collections::BTreeMap<String, u64> = Default::default();
        let mut packets = 0;
        let mut bytes = 0;
        for w in workers.values() {
            packets += w.stats.get("packets").and_then(Value::as_u64).unwrap_or(0);
            // a worker's bytes are the dissector's count of what it was given
            bytes += w.stats.get("bytes").or_else(|| w.stats.pointer("/dissect/bytes")).and_then(Value::as_u64).unwrap_or(0);
            for k in ["kernel_drops", "ring_drops", "queue_drops", "ship_drops"] {
                *drops.entry(k.to_string()).or_default() += w.stats.get(k).and_then(Value::as_u64).unwrap_or(0);
            }
        }
        drops.insert("subscribers_cut".into(), c.subscribers_cut.load(Relaxed));
        // what is not captured, and why: pods whose interface a connected worker could not
        // find, and nodes without a worker
        let mut not_pods: Vec<Value> = Vec::new();
        for (id, w) in workers.iter().filter(|(_, w)| w.connected) {
            for p in w.stats.get("uncaptured_pods").and_then(Value::as_array).into_iter().flatten() {
                let mut p = p.clone();
                p["node"] = json!(node_of_worker(id));
                not_pods.push(p);
            }
        }
        let gaps = self.inner.node_gaps.lock().map(|g| g.clone()).unwrap_or_default();
        let not_nodes: Vec<&String> = gaps.iter().filter(|(_, g)| g.since.is_some()).map(|(n, _)| n).collect();
        drops.insert("malformed_batches".into(), c.malformed_batches.load(Relaxed));
        json!({
            "packets": packets,
            "bytes": bytes,
            "entries": c.entries.load(Relaxed),
            "drops": drops,
            "hub": {
                "batches": c.batches.load(Relaxed),
                "duplicate_batches": c.duplicate_batches.load(Relaxed),
                "malformed_batches": c.malformed_batches.load(Relaxed),
                "entries_stored": c.entries.load(Relaxed),
                "refused_workers": c.refused_workers.load(Relaxed),
                "refused_readers": c.refused_readers.load(Relaxed),
                "subscribers": self.subscribers(),
                "subscribers_held_bytes": self.subscribers_held(),
                "subscribers_cut": c.subscribers_cut.load(Relaxed),
                "retention_deleted": c.retention_deleted.load(Relaxed),
                "store_errors": c.store_errors.load(Relaxed),
                "store_bytes": self.inner.store_bytes.load(Relaxed),
                "disk_bytes": self.inner.disk_bytes.load(Relaxed),
                "connections_refused": c.connections_refused.load(Relaxed),
                "connections_timed_out": c.connections_timed_out.load(Relaxed),
                "refused_origins": c.refused_origins.load(Relaxed),
                "filters_refused": c.filters_refused.load(Relaxed),
                "queries_cancelled": c.queries_cancelled.load(Relaxed),
                "oversized_messages": c.oversized_messages.load(Relaxed),
                "decode_waits": c.decode_waits.load(Relaxed),
                "refused_batch_numbers": c.refused_batch_numbers.load(Relaxed),
                "streams_refused": c.streams_refused.load(Relaxed),
                "joined": c.joined.load(Relaxed),
                "join_alone": c.join_alone.load(Relaxed),
                "join_overflow": c.join_overflow.load(Relaxed),
                "join_held": c.join_held.load(Relaxed),
            },
            "not_captured": {"pods": not_pods, "nodes": not_nodes},
            "nodes": gaps.iter().map(|(n, g)| {
                let down = g.total + g.since.map_or(Duration::ZERO, |s| s.elapsed());
                (n.clone(), json!({"captured": g.since.is_none(), "gaps": g.gaps, "uncaptured_seconds": (down.as_secs_f64() * 10.0).round() / 10.0}))
            }).collect::<serde_json::Map<_, _>>(),
            "workers": workers.iter().map(|(k, w)| (k.clone(), json!({"connected": w.connected, "last_seen": w.last_seen, "stats": w.stats}))).collect::<serde_json::Map<_, _>>(),
        })
    }

    fn writer(&self, mut store: Store, mut joiner: Joiner, rx: Receiver<Job>) {
        let mut last_retention = Instant::now();
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(first) = first {
                // group commit: whatever else is waiting, up to a bound
                let mut jobs = vec![first];
                let mut n = jobs[0].block.len();
                while n < 65536 {
                    match rx.try_recv() {
                        Ok(j) => {
                            n += j.block.len();
                            jobs.push(j);
                        }
                        Err(_) => break,
                    }
                }
                self.commit(&mut store, &mut joiner, jobs);
            } else if joiner.held() > 0 {
                // observations whose wait is over are stored even when nothing comes
                self.commit(&mut store, &mut joiner, Vec::new());
            }
            if last_retention.elapsed() >= Duration::from_secs(1) {
                last_retention = Instant::now();
                match store.enforce_retention(now_ns()) {
                    Ok(n) => {
                        self.inner.counters.retention_deleted.fetch_add(n, Relaxed);
                    }
                    Err(e) => {
                        self.inner.counters.store_errors.fetch_add(1, Relaxed);
                        eprintln!("kshark hub: retention: {e}");
                    }
                }
                if let Ok(b) = store.used_bytes() {
                    self.inner.store_bytes.store(b, Relaxed);
                }
                self.inner.disk_bytes.store(store.disk_bytes(), Relaxed);
            }
        }
    }

    /// Takes back what the store holds for the join (at start, and after a failed commit,
    /// whose changes to the joiner were not stored).
    fn restore_held(&self, store: &Store, joiner: &mut Joiner) {
        joiner.clear();
        match store.pending() {
            Ok(rows) => {
                for (id, text) in rows {
                    match serde_json::from_str::<Value>(&text) {
                        Ok(v) => joiner.restore(id, v, text.len()),
                        Err(e) => eprintln!("kshark hub: held entry {id} is not JSON ({e}): left in the store"),
                    }
                }
            }
            Err(e) => {
                self.inner.counters.store_errors.fetch_add(1, Relaxed);
                eprintln!("kshark hub: reading the entries held for joining: {e}");
            }
        }
        self.inner.counters.join_held.store(joiner.held() as u64, Relaxed);
    }

    /// The join stage (see [`crate::join`]): marked entries are taken out of the batches
    /// they came in, to be held or joined; what was joined, or waited long enough, goes
    /// into one more batch of the hub's own.
    fn join(&self, store: &Store, joiner: &mut Joiner, jobs: &mut [Job]) -> (Option<Block>, Vec<(u64, String)>, Vec<u64>) {
        const MARK: &[u8] = b"\"join\":{";
        let now = Instant::now();
        let marked = jobs.iter().any(|j| memchr::memmem::find(&j.block.text, MARK).is_some());
        if !marked && joiner.held() == 0 {
            return (None, Vec::new(), Vec::new());
        }
        let workers = self.inner.workers.lock().map(|w| w.clone()).unwrap_or_default();
        let peer = |n: &str| Hub::peer(&workers, n);
        let (mut hold, mut release, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let mut last: HashMap<Arc<str>, u64> = HashMap::new();
        for j in jobs.iter_mut() {
            if memchr::memmem::find(&j.block.text, MARK).is_none() {
                continue;
            }
            // a batch the store has already (a resend) or will refuse goes on as it is
            let prev = last.get(&j.worker).copied().or_else(|| store.last_batch(&j.worker));
            if prev.is_some_and(|l| j.block.batch <= l) || j.block.batch > prev.unwrap_or(0).saturating_add(crate::store::MAX_BATCH_GAP) {
                continue;
            }
            last.insert(j.worker.clone(), j.block.batch);
            let mut kept: Vec<&str> = Vec::with_capacity(j.block.len());
            for i in 0..j.block.len() {
                let line = j.block.full_bytes(i);
                let text = std::str::from_utf8(line).unwrap_or_default();
                let v = memchr::memmem::find(line, MARK).and_then(|_| serde_json::from_slice::<Value>(line).ok()).filter(Joiner::is_marked);
                let Some(v) = v else {
                    kept.push(text);
                    continue;
                };
                match joiner.offer_sized(v, line.len(), now, peer) {
                    Offer::Held { id } => hold.push((id, text.to_string())),
                    Offer::Joined { entry, released } => {
                        release.push(released);
                        out.push(entry);
                    }
                    Offer::Alone(entry) => out.push(entry),
                }
            }
            if kept.len() != j.block.len() {
                match crate::record::decode_batch(crate::record::encode_batch(j.block.batch, &kept).into()) {
                    Ok(b) => j.block = b,
                    Err(e) => eprintln!("kshark hub: re-packing batch {} of {}: {e}", j.block.batch, j.worker),
                }
            }
        }
        for (id, entry) in joiner.due(now, peer) {
            release.push(id);
            out.push(entry);
        }
        let c = &self.inner.counters;
        c.joined.store(joiner.counts.joined, Relaxed);
        c.join_alone.store(joiner.counts.alone, Relaxed);
        c.join_overflow.store(joiner.counts.overflow, Relaxed);
        c.join_held.store(joiner.held() as u64, Relaxed);
        if out.is_empty() {
            return (None, hold, release);
        }
        // ids are unique per worker; two nodes' may meet here
        let mut ids = std::collections::HashSet::new();
        let lines: Vec<String> = out
            .into_iter()
            .map(|mut e| {
                let id = e.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                if !ids.insert(id.clone()) {
                    let again = format!("{id}-{}", ids.len());
                    ids.insert(again.clone());
                    e["id"] = json!(again);
                }
                e.to_string()
            })
            .collect();
        let n = store.last_batch(JOIN_WORKER).unwrap_or(0) + 1;
        match crate::record::decode_batch(crate::record::encode_batch(n, &lines).into()) {
            Ok(b) => (Some(b), hold, release),
            Err(e) => {
                // cannot be (the entries were each a valid one): said, and kept held
                eprintln!("kshark hub: the joined entries' batch: {e}");
                (None, hold, Vec::new())
            }
        }
    }

    fn commit(&self, store: &mut Store, joiner: &mut Joiner, mut jobs: Vec<Job>) {
        let n_jobs = jobs.len();
        let (joined, hold, release) = self.join(store, joiner, &mut jobs);
        let mut batches: Vec<Batch<'_>> = jobs.iter().map(|j| Batch { worker: &j.worker, block: &j.block }).collect();
        if let Some(b) = &joined {
            batches.push(Batch { worker: JOIN_WORKER, block: b });
        }
        let result = store.commit_holding(&batches, &hold, &release);
        drop(batches);
        let c = &self.inner.counters;
        match result {
            Err(e) => {
                c.store_errors.fetch_add(1, Relaxed);
                eprintln!("kshark hub: {e}");
                for j in jobs {
                    let _ = j.reply.send(Err(Error::Store(e.to_string())));
                }
                self.restore_held(store, joiner);
            }
            Ok(mut outcomes) => {
                let mut stored: Vec<(i64, Arc<Block>)> = Vec::new();
                let now = now_ns();
                let keep = |block: Block, first: i64, stored: &mut Vec<(i64, Arc<Block>)>| {
                    c.entries.fetch_add(block.len() as u64, Relaxed);
                    if let Ok(mut m) = self.inner.metrics.lock() {
                        m.add(&block.tally, now);
                    }
                    stored.push((first, Arc::new(block)));
                };
                let joined_outcome = joined.is_some().then(|| outcomes.pop()).flatten();
                for (j, o) in jobs.into_iter().zip(outcomes) {
                    c.batches.fetch_add(1, Relaxed);
                    match o {
                        Committed::Duplicate => {
                            c.duplicate_batches.fetch_add(1, Relaxed);
                        }
                        Committed::TooFar { .. } => {
                            c.refused_batch_numbers.fetch_add(1, Relaxed);
                        }
                        Committed::Stored(first) => keep(j.block, first, &mut stored),
                    }
                    let _ = j.reply.send(Ok(o));
                }
                if let (Some(b), Some(Committed::Stored(first))) = (joined, joined_outcome) {
                    keep(b, first, &mut stored);
                }
                self.publish(&stored);
            }
        }
        self.inner.in_flight.fetch_sub(n_jobs, Relaxed);
    }

    fn publish(&self, stored: &[(i64, Arc<Block>)]) {
        if stored.is_empty() {
            return;
        }
        let mut subs = self.inner.subs.lock().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return;
        }
        let now = now_ns() as i128;
        subs.retain(|s| {
            if s.tx.is_closed() {
                return false;
            }
            let Err(why) = self.deliver(s, stored, now) else { return true };
            s.cut.done.store(true, Relaxed);
            // stored as a permit when nobody waits yet
            s.cut.wake.notify_one();
            self.inner.counters.subscribers_cut.fetch_add(1, Relaxed);
            eprintln!("kshark hub: subscriber {}: {why}: cut loose", s.id);
            false
        });
    }

    /// Queues what `s` wants of `stored`; or says why it must be cut loose.
    fn deliver(&self, s: &Subscriber, stored: &[(i64, Arc<Block>)], now: i128) -> Result<(), String> {
        let mut hits = Vec::new();
        let started = Instant::now();
        for (first, block) in stored {
            hits.clear();
            for i in 0..block.len() {
                if s.filter.is_everything() || s.filter.matches_json(if s.filter.needs_full() { block.full_bytes(i) } else { block.slim(i).as_bytes() }, now) {
                    hits.push(i);
                }
            }
            // filters run on the writer's thread: one that costs it too much would slow
            // ingest for everyone
            if started.elapsed() > FILTER_TIME {
                return Err(format!("its filter took over {} ms on one commit", FILTER_TIME.as_millis()));
            }
            if hits.is_empty() {
                continue;
            }
            // most of the batch: its entries share the batch, each charged its share; a
            // few: copied out, so that they do not pin the whole batch
            let dense = hits.len() * 4 >= block.len();
            let share = block.mem_bytes().div_ceil(hits.len());
            for &i in &hits {
                let (data, charge) = if dense { (block.full(i), share) } else { (bytes::Bytes::copy_from_slice(block.full_bytes(i)), block.full_bytes(i).len() + 64) };
                let held = s.held.fetch_add(charge, Relaxed) + charge;
                let live = Live { seq: first + i as i64, data, charge, held: s.held.clone() };
                if held > self.inner.subscriber_bytes || s.tx.try_send(live).is_err() {
                    return Err(format!("fell behind ({} MB or {} entries waiting)", held >> 20, self.inner.subscriber_queue));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
