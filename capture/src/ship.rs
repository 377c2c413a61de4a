//! Shipping entries to a hub: one long-lived WebSocket, entries batched (up to
//! [`ShipConfig::batch_entries`] or [`ShipConfig::linger`], whichever comes first) and
//! LZ4-compressed, each batch kept until the hub acknowledges it. After a lost connection
//! the worker reconnects with back-off and resends every unacknowledged batch; the hub
//! skips those it already has, so nothing is lost or doubled. What waits is bounded
//! ([`ShipConfig::max_buffer_bytes`]): beyond it the oldest batch goes, and is counted.
//! A batch is also sealed once its entries reach [`kshark_hub::record::SEAL_BYTES`], so
//! that it stays under the message limit the hub and the worker share
//! ([`kshark_hub::record::MAX_MESSAGE`]); an entry over
//! [`kshark_hub::record::MAX_ENTRY_BYTES`] is dropped, counted and said.

use kshark_hub::client::{HubAddr, Socket};
use kshark_hub::record::{Encoder, MAX_ENTRY_BYTES, MAX_MESSAGE, SEAL_BYTES};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Bytes, Message};

#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub hub: HubAddr,
    /// This worker's id at the hub (node name and a per-run suffix).
    pub worker: String,
    pub batch_entries: usize,
    pub linger: Duration,
    pub max_buffer_bytes: usize,
}

impl ShipConfig {
    pub fn new(hub: HubAddr, worker: String) -> Self {
        ShipConfig { hub, worker, batch_entries: 2000, linger: Duration::from_millis(100), max_buffer_bytes: 256 << 20 }
    }
}

/// The shipper's counters.
#[derive(Debug, Default)]
pub struct ShipStats {
    pub batches_sent: AtomicU64,
    pub batches_acked: AtomicU64,
    pub batches_resent: AtomicU64,
    pub entries_acked: AtomicU64,
    pub connects: AtomicU64,
    /// Entries dropped because the buffer of unacknowledged batches was full.
    pub ship_drops: AtomicU64,
    /// Entries in batches the hub refused as malformed.
    pub refused_entries: AtomicU64,
    /// Entries too large to ship (over the entry limit).
    pub oversized_entries: AtomicU64,
    /// Entries still unacknowledged when the shipper ended.
    pub unacked_entries: AtomicU64,
    /// Connections the hub closed with a reason (a message over its limit: 1009).
    pub closed_by_hub: AtomicU64,
    pub buffered_bytes: AtomicU64,
}

impl ShipStats {
    /// Entries that never reached the hub: dropped, refused, too large, unacknowledged.
    pub fn lost(&self) -> u64 {
        self.ship_drops.load(Relaxed) + self.refused_entries.load(Relaxed) + self.oversized_entries.load(Relaxed) + self.unacked_entries.load(Relaxed)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "batches_sent": self.batches_sent.load(Relaxed),
            "batches_acked": self.batches_acked.load(Relaxed),
            "batches_resent": self.batches_resent.load(Relaxed),
            "entries_acked": self.entries_acked.load(Relaxed),
            "connects": self.connects.load(Relaxed),
            "ship_drops": self.ship_drops.load(Relaxed),
            "refused_entries": self.refused_entries.load(Relaxed),
            "oversized_entries": self.oversized_entries.load(Relaxed),
            "unacked_entries": self.unacked_entries.load(Relaxed),
            "closed_by_hub": self.closed_by_hub.load(Relaxed),
            "buffered_bytes": self.buffered_bytes.load(Relaxed),
        })
    }
}

enum Msg {
    Entry(String),
    Stats(Value),
}

/// A running shipper (its own thread and runtime).
pub struct Shipper {
    tx: Option<mpsc::Sender<Msg>>,
    pub stats: Arc<ShipStats>,
    thread: Option<std::thread::JoinHandle<()>>,
    deadline: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Shipper {
    pub fn start(cfg: ShipConfig) -> std::io::Result<Shipper> {
        let (tx, rx) = mpsc::channel(8192);
        let stats = Arc::new(ShipStats::default());
        let deadline = Arc::new(std::sync::Mutex::new(None));
        let (s, d) = (stats.clone(), deadline.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name("ship".into()).spawn(move || rt.block_on(run(cfg, rx, s, d)))?;
        Ok(Shipper { tx: Some(tx), stats, thread: Some(thread), deadline })
    }

    /// Queues one entry's JSON (waits while the shipper's inbox is full).
    pub fn send(&self, entry: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.blocking_send(Msg::Entry(entry));
        }
    }

    /// Sends the worker's counters to the hub (for `/api/stats`).
    pub fn report(&self, stats: Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Msg::Stats(stats));
        }
    }

    /// Sends what is left and waits for the hub to acknowledge it, up to `wait`.
    pub fn finish(mut self, wait: Duration) -> Arc<ShipStats> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + wait);
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats.clone()
    }
}

struct Pending {
    batch: u64,
    bytes: Bytes,
    entries: usize,
}

/// The worker's counters, for the hub's `/api/stats` (lost with the connection if it drops:
/// the next ones follow within a second, and the last are sent again on reconnecting).
async fn send_stats(sock: Option<&mut Socket>, v: &Value) {
    if let Some(s) = sock {
        let _ = s.send(Message::Text(serde_json::json!({"stats": v}).to_string().into())).await;
    }
}

/// The worker reads only acknowledgements: a small read buffer (tungstenite zeroes the
/// whole buffer, 128 KiB by default, each time it tries a read).
const ACK_READS: usize = 4096;

async fn run(cfg: ShipConfig, mut rx: mpsc::Receiver<Msg>, st: Arc<ShipStats>, deadline: Arc<std::sync::Mutex<Option<Instant>>>) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut buffered = 0usize;
    let mut next = 1u64;
    let mut current: Vec<String> = Vec::new();
    let mut current_bytes = 0usize;
    let mut said_oversized = false;
    let mut take = |current: &mut Vec<String>, current_bytes: &mut usize, e: String| {
        if e.len() > MAX_ENTRY_BYTES {
            st.oversized_entries.fetch_add(1, Relaxed);
            if !std::mem::replace(&mut said_oversized, true) {
                eprintln!("kshark worker: an entry of {} bytes is over the limit of {MAX_ENTRY_BYTES}: not shipped (counted as oversized_entries)", e.len());
            }
            return;
        }
        *current_bytes += e.len() + 1;
        current.push(e);
    };
    let mut encoder = Encoder::default();
    let mut sock: Option<Socket> = None;
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    let mut last_stats: Option<Value> = None;
    let mut inbox_open = true;
    let mut warned = String::new();
    let path = format!("/api/ingest?worker={}", kshark_hub::client::encode(&cfg.worker));
    let mut tick = tokio::time::interval(cfg.linger);
    loop {
        let finishing = !inbox_open;
        if finishing && current.is_empty() && pending.is_empty() {
            break;
        }
        if finishing && deadline.lock().ok().and_then(|d| *d).is_some_and(|d| Instant::now() >= d) {
            let left: usize = pending.iter().map(|p| p.entries).sum::<usize>() + current.len();
            if left > 0 {
                st.unacked_entries.fetch_add(left as u64, Relaxed);
                eprintln!("kshark worker: {left} entries not acknowledged by {} before the end", cfg.hub.display());
            }
            break;
        }
        if sock.is_none() && Instant::now() >= retry_at {
            match tokio::time::timeout(Duration::from_secs(5), cfg.hub.websocket_reading(&path, ACK_READS)).await.unwrap_or_else(|_| Err(kshark_hub::Error::Serve("connect timed out".into()))) {
                Ok(mut s) => {
                    st.connects.fetch_add(1, Relaxed);
                    if st.connects.load(Relaxed) > 1 || !warned.is_empty() {
                        eprintln!("kshark worker: connected to {}; resending {} unacknowledged batches", cfg.hub.display(), pending.len());
                    }
                    warned.clear();
                    backoff = Duration::from_millis(100);
                    let mut ok = true;
                    for p in &pending {
                        st.batches_resent.fetch_add(1, Relaxed);
                        if s.send(Message::Binary(p.bytes.clone())).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if let Some(v) = &last_stats {
                        send_stats(Some(&mut s), v).await;
                    }
                    sock = ok.then_some(s);
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg != warned {
                        eprintln!("kshark worker: {msg}; retrying (buffering meanwhile)");
                        warned = msg;
                    }
                    if matches!(e, kshark_hub::Error::Refused(_)) {
                        backoff = Duration::from_secs(5);
                    }
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let mut seal = false;
        tokio::select! {
            m = rx.recv(), if inbox_open => match m {
                Some(Msg::Entry(e)) => {
                    take(&mut current, &mut current_bytes, e);
                    // and what else waits, in this one turn: each turn of this loop also
                    // polls the socket for acknowledgements, which is not free
                    while current.len() < cfg.batch_entries && current_bytes < SEAL_BYTES {
                        match rx.try_recv() {
                            Ok(Msg::Entry(e)) => take(&mut current, &mut current_bytes, e),
                            Ok(Msg::Stats(v)) => {
                                send_stats(sock.as_mut(), &v).await;
                                last_stats = Some(v);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    seal = current.len() >= cfg.batch_entries || current_bytes >= SEAL_BYTES;
                }
                Some(Msg::Stats(v)) => {
                    send_stats(sock.as_mut(), &v).await;
                    last_stats = Some(v);
                }
                None => {
                    inbox_open = false;
                    seal = true;
                }
            },
            _ = tick.tick() => seal = true,
            m = async { match sock.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    let done = v.get("ack").or(v.get("refused")).and_then(Value::as_u64);
                    if let Some(n) = done {
                        if let Some(i) = pending.iter().position(|p| p.batch == n) {
                            let p = pending.remove(i).expect("found above");
                            buffered -= p.bytes.len();
                            if v.get("ack").is_some() {
                                st.batches_acked.fetch_add(1, Relaxed);
                                st.entries_acked.fetch_add(p.entries as u64, Relaxed);
                            } else {
                                st.refused_entries.fetch_add(p.entries as u64, Relaxed);
                            }
                        }
                    }
                    if let Some(e) = v.get("error").and_then(Value::as_str) {
                        eprintln!("kshark worker: the hub says: {e}");
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if let Some(f) = frame.filter(|f| u16::from(f.code) != 1000) {
                        st.closed_by_hub.fetch_add(1, Relaxed);
                        eprintln!("kshark worker: the hub closed the connection: {} ({})", f.reason, u16::from(f.code));
                    }
                    sock = None;
                    retry_at = Instant::now() + backoff;
                }
                Some(Err(_)) | None => {
                    sock = None;
                    retry_at = Instant::now() + backoff;
                }
                _ => {}
            },
        }
        if seal && !current.is_empty() {
            let bytes = Bytes::from(encoder.encode(next, &current));
            // sealed at SEAL_BYTES, entries under MAX_ENTRY_BYTES: always under the limit
            debug_assert!(bytes.len() <= MAX_MESSAGE);
            let p = Pending { batch: next, bytes: bytes.clone(), entries: current.len() };
            next += 1;
            current.clear();
            current_bytes = 0;
            buffered += p.bytes.len();
            pending.push_back(p);
            while buffered > cfg.max_buffer_bytes && pending.len() > 1 {
                let old = pending.pop_front().expect("more than one");
                buffered -= old.bytes.len();
                st.ship_drops.fetch_add(old.entries as u64, Relaxed);
            }
            st.batches_sent.fetch_add(1, Relaxed);
            if let Some(s) = sock.as_mut() {
                if s.send(Message::Binary(bytes)).await.is_err() {
                    sock = None;
                    retry_at = Instant::now() + backoff;
                }
            }
        }
        st.buffered_bytes.store(buffered as u64, Relaxed);
        if finishing && sock.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if let Some(mut s) = sock {
        let _ = s.close(None).await;
    }
}
