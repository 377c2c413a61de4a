//! The hub's core: one writer thread that commits batches to the [`Store`] (several at a
//! time when they queue up), then hands what it stored to the live subscribers and the
//! metrics, in commit order. Subscribers have bounded queues: one that falls behind is
//! cut loose (its stream ends with a reason, and a counter counts it) rather than holding
//! up ingest or the others.

use crate::filter::Filter;
use crate::metrics::Metrics;
use crate::record::Block;
use crate::store::{now_ns, Batch, Committed, Query, Reader, Retention, Store};
use crate::Error;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One stored entry on its way to subscribers (it shares its batch's memory).
#[derive(Debug)]
pub struct Live {
    /// The store's sequence number.
    pub seq: i64,
    block: Arc<Block>,
    i: usize,
}

impl Live {
    /// The entry's JSON.
    pub fn full(&self) -> bytes::Bytes {
        self.block.full(self.i)
    }

    /// The entry's slim form (see [`crate::record`]).
    pub fn slim(&self) -> &str {
        self.block.slim(self.i)
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
}

struct Subscriber {
    id: u64,
    filter: Arc<Filter>,
    tx: tokio::sync::mpsc::Sender<Live>,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

/// A live subscription: matching entries as they are stored. When the hub cuts it loose
/// (its queue was full) the channel closes and [`Subscription::was_cut`] says so.
pub struct Subscription {
    pub rx: tokio::sync::mpsc::Receiver<Live>,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl Subscription {
    pub fn was_cut(&self) -> bool {
        self.cut.load(Relaxed)
    }
}

/// What a worker last reported.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    pub connected: bool,
    pub last_seen: i64,
    pub stats: Value,
}

struct Job {
    worker: Arc<str>,
    block: Block,
    reply: tokio::sync::oneshot::Sender<Result<Committed, Error>>,
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
    subscriber_queue: usize,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
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
}

impl HubConfig {
    pub fn new(data: &Path) -> Self {
        HubConfig { data: data.to_path_buf(), retention: Retention::default(), subscriber_queue: 16384 }
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
            subscriber_queue: cfg.subscriber_queue.max(1),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
        });
        let hub = Hub { inner: inner.clone() };
        let h = hub.clone();
        let t = std::thread::Builder::new().name("hub-writer".into()).spawn(move || h.writer(store, rx)).map_err(|e| Error::Store(e.to_string()))?;
        *inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        let h = hub.clone();
        let reader = hub.reader()?;
        let c = std::thread::Builder::new().name("hub-checkpoint".into()).spawn(move || h.checkpointer(reader)).map_err(|e| Error::Store(e.to_string()))?;
        *inner.checkpointer.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
        Ok(hub)
    }

    /// Stops taking batches, lets the writer finish what it has, and waits for it.
    pub fn shutdown(&self) {
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
        self.submit(worker, block).await?.await.map_err(|_| Error::Closed)?
    }

    /// Hands a batch to the writer and returns at once with what will say when it is
    /// committed, so a connection can have several batches on their way (they are
    /// committed in the order they were submitted). The writer's queue is bounded: a full
    /// one holds the caller back.
    pub async fn submit(&self, worker: Arc<str>, block: Block) -> Result<tokio::sync::oneshot::Receiver<Result<Committed, Error>>, Error> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let tx = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(Error::Closed)?;
        match tx.try_send(Job { worker, block, reply }) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || tx.send(job).map_err(|_| Error::Closed)).await.map_err(|_| Error::Closed)??;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(Error::Closed),
        }
        Ok(rx)
    }

    /// Subscribes to entries matching `filter` as they are stored.
    pub fn subscribe(&self, filter: Arc<Filter>) -> Subscription {
        let (tx, rx) = tokio::sync::mpsc::channel(self.inner.subscriber_queue);
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let id = self.inner.next_sub.fetch_add(1, Relaxed);
        self.inner.subs.lock().unwrap_or_else(|p| p.into_inner()).push(Subscriber { id, filter, tx, cut: cut.clone() });
        Subscription { rx, cut }
    }

    pub fn subscribers(&self) -> usize {
        self.inner.subs.lock().map_or(0, |s| s.len())
    }

    /// A worker's latest report (its counters), or that it went away.
    pub fn worker_report(&self, worker: &str, connected: bool, stats: Option<Value>) {
        let mut w = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        let e = w.entry(worker.to_string()).or_insert(WorkerInfo { connected, last_seen: 0, stats: Value::Null });
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

    /// `/api/stats`: the hub's counters, each worker's, and drops summed over workers.
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
                "subscribers_cut": c.subscribers_cut.load(Relaxed),
                "retention_deleted": c.retention_deleted.load(Relaxed),
                "store_errors": c.store_errors.load(Relaxed),
                "store_bytes": self.inner.store_bytes.load(Relaxed),
            },
            "workers": workers.iter().map(|(k, w)| (k.clone(), json!({"connected": w.connected, "last_seen": w.last_seen, "stats": w.stats}))).collect::<serde_json::Map<_, _>>(),
        })
    }

    fn writer(&self, mut store: Store, rx: Receiver<Job>) {
        let mut last_retention = Instant::now();
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
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
                self.commit(&mut store, jobs);
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
            }
        }
    }

    fn commit(&self, store: &mut Store, jobs: Vec<Job>) {
        let batches: Vec<Batch<'_>> = jobs.iter().map(|j| Batch { worker: &j.worker, block: &j.block }).collect();
        let result = store.commit(&batches);
        drop(batches);
        let c = &self.inner.counters;
        match result {
            Err(e) => {
                c.store_errors.fetch_add(1, Relaxed);
                eprintln!("kshark hub: {e}");
                for j in jobs {
                    let _ = j.reply.send(Err(Error::Store(e.to_string())));
                }
            }
            Ok(outcomes) => {
                let mut stored: Vec<(i64, Arc<Block>)> = Vec::new();
                let now = now_ns();
                for (j, o) in jobs.into_iter().zip(outcomes) {
                    c.batches.fetch_add(1, Relaxed);
                    match o {
                        Committed::Duplicate => {
                            c.duplicate_batches.fetch_add(1, Relaxed);
                        }
                        Committed::Stored(first) => {
                            c.entries.fetch_add(j.block.len() as u64, Relaxed);
                            if let Ok(mut m) = self.inner.metrics.lock() {
                                m.add(&j.block.tally, now);
                            }
                            stored.push((first, Arc::new(j.block)));
                        }
                    }
                    let _ = j.reply.send(Ok(o));
                }
                self.publish(&stored);
            }
        }
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
            for (first, block) in stored {
                for i in 0..block.len() {
                    let hit = s.filter.is_everything() || s.filter.matches_json(if s.filter.needs_full() { block.full_bytes(i) } else { block.slim(i).as_bytes() }, now);
                    if hit && s.tx.try_send(Live { seq: first + i as i64, block: block.clone(), i }).is_err() {
                        s.cut.store(true, Relaxed);
                        self.inner.counters.subscribers_cut.fetch_add(1, Relaxed);
                        eprintln!("kshark hub: subscriber {} fell {} entries behind: cut loose", s.id, self.inner.subscriber_queue);
                        return false;
                    }
                }
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(batch: u64, from: usize, n: usize) -> Block {
        let lines: Vec<String> = (from..from + n)
            .map(|i| format!(r#"{{"id":"{i}","timestamp":"2026-01-01T00:00:00Z","protocol":"dns","transport":"udp","src":{{"ip":"10.0.0.1","port":1}},"dst":{{"ip":"10.0.0.2","port":53}},"request":null,"response":null}}"#))
            .collect();
        crate::record::decode_batch(crate::record::encode_batch(batch, &lines).into()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_subscriber_is_cut_loose_and_the_others_get_everything() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::start(&HubConfig { subscriber_queue: 50, ..HubConfig::new(dir.path()) }).unwrap();
        let all = Arc::new(Filter::compile("").unwrap());
        let mut slow = hub.subscribe(all.clone());
        let mut fast = hub.subscribe(all);
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while n < 1000 {
                let Some(_) = fast.rx.recv().await else { break };
                n += 1;
                s2.store(n, Relaxed);
            }
            n
        });
        for b in 0..40u64 {
            assert!(matches!(hub.ingest(Arc::from("w"), block(b + 1, b as usize * 25, 25)).await.unwrap(), Committed::Stored(_)));
            // the reader keeps up (never more than one batch, half its queue, waiting)
            let t = Instant::now();
            while seen.load(Relaxed) < (b + 1) * 25 && t.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert_eq!(reader.await.unwrap(), 1000);
        // the slow one got its queue's worth, then its channel closed
        let mut got = 0;
        while slow.rx.recv().await.is_some() {
            got += 1;
        }
        assert!(slow.was_cut());
        assert!((50..1000).contains(&got), "{got}");
        assert_eq!(hub.inner.counters.subscribers_cut.load(Relaxed), 1);
        assert_eq!(hub.stats()["entries"], 1000);
        hub.shutdown();
    }
}
