//! The worker loop: one thread polls the source and spreads packets over dissector
//! shards by connection (both directions of a TCP connection, and every fragment of a
//! datagram, land on the same shard); each shard owns a [`Dissector`]. Queues are
//! bounded: when a shard falls behind, whole batches are dropped and counted rather than
//! memory growing. Each shard finishes its own entries with the caller's `post` (naming,
//! filtering, encoding: on the thread that made them, which also frees them) and sends
//! what it returns to one bounded output channel, a batch at a time.

use crate::error::Error;
use crate::source::{self, Plan, Poll, Source, SourceStats};
use kshark_dissect::decode::shard_hash;
use kshark_dissect::{Config, Dissector, Entry, Stats, Timestamp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Packets per batch handed to a shard.
const BATCH: usize = 512;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub dissect: Config,
    /// Dissector threads.
    pub shards: usize,
    /// Batches each shard's queue holds before the source drops.
    pub queue_batches: usize,
    /// How often the plan (interfaces, targets) is asked for again.
    pub replan_every: Duration,
    /// Where the source's counters and the queue drops are put as the run goes (at each
    /// replan tick), for a hub's `/api/stats`.
    pub live_stats: Option<std::sync::Arc<std::sync::Mutex<WorkerStats>>>,
    /// Added to every shard's block of entry ids, so that two workers feeding one output
    /// (packets, and TLS plaintext) never make the same id.
    pub id_offset: u64,
}

impl WorkerConfig {
    pub fn new(dissect: Config) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        WorkerConfig { dissect, shards: cores.clamp(1, 8), queue_batches: 64, replan_every: Duration::from_secs(1), live_stats: None, id_offset: 0 }
    }
}

/// Every stage's counters, for the end-of-run summary and (later) the hub's /api/stats.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    pub engine: &'static str,
    pub source: SourceStats,
    /// Packets dropped because a shard's queue was full.
    pub queue_drops: u64,
    pub dissect: Stats,
    pub entries: u64,
}

impl WorkerStats {
    /// Every counter as one JSON object (the dissector's under `dissect`).
    pub fn to_json(&self) -> serde_json::Value {
        let s = &self.source;
        serde_json::json!({
            "engine": self.engine,
            "packets": s.packets,
            "kernel_drops": s.kernel_drops,
            "ring_drops": s.ring_drops,
            "truncated_packets": s.truncated,
            "incomplete_packets": s.incomplete,
            "filtered_in_kernel": s.filtered,
            "queue_drops": self.queue_drops,
            "entries": self.entries,
            "reassembly_gaps": self.dissect.tcp_gaps,
            "parse_errors": self.dissect.losses().iter().map(|(_, n)| n).sum::<u64>(),
            "dissect": serde_json::to_value(&self.dissect).unwrap_or_default(),
        })
    }

    /// Drops at any stage, by name, the non-zero ones.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        [
            ("kernel", self.source.kernel_drops),
            ("ring", self.source.ring_drops),
            ("queue", self.queue_drops),
            ("incomplete", self.source.incomplete),
            ("truncated", self.source.truncated),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    pkts: Vec<(Timestamp, u32, u32, u32)>,
}

impl Batch {
    fn new() -> Self {
        Batch { data: Vec::with_capacity(BATCH * 256), pkts: Vec::with_capacity(BATCH) }
    }
}

struct Shard {
    tx: SyncSender<Batch>,
    /// Batches the shard is done with, to fill again: fresh 128 KiB buffers for every
    /// batch cost page faults that showed as a tenth of the worker's time.
    free: Receiver<Batch>,
    batch: Batch,
    handle: JoinHandle<Stats>,
}

/// What a shard does with the entries it completed, on its own thread: `None` when
/// there is nothing to send on.
pub trait Post: Send + 'static {
    type Out: Send + 'static;
    fn post(&mut self, entries: std::vec::Drain<'_, Entry>) -> Option<Self::Out>;
    /// At the end of the run: what the stage still holds.
    fn flush(&mut self) -> Option<Self::Out> {
        None
    }
}

fn shard_loop<P: Post>(mut d: Dissector, rx: Receiver<Batch>, free: SyncSender<Batch>, mut post: P, out: SyncSender<P::Out>, live: bool) -> Stats {
    // entries go out a batch at a time: one wake-up of the reader per batch, not per entry
    let mut emit = |d: &mut Dissector| {
        if let Some(v) = post.post(d.drain_entries()) {
            // the receiver gone means the run is over: keep draining, nobody listens
            let _ = out.send(v);
        }
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(mut b) => {
                for &(ts, lt, off, len) in &b.pkts {
                    d.packet(ts, lt, &b.data[off as usize..(off + len) as usize]);
                }
                emit(&mut d);
                b.data.clear();
                b.pkts.clear();
                let _ = free.try_send(b);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if live {
            d.tick(source::now());
            emit(&mut d);
        }
    }
    d.finish();
    emit(&mut d);
    if let Some(v) = post.flush() {
        let _ = out.send(v);
    }
    d.stats().clone()
}

/// Puts a packet into its shard's batch, handing the batch over when full.
fn dispatch(shards: &mut [Shard], p: crate::source::RawPacket<'_>, drops: &mut u64, flush: &impl Fn(&mut Shard, &mut u64)) {
    let n = shards.len();
    let i = if n == 1 { 0 } else { (shard_hash(p.linktype, p.data) % n as u64) as usize };
    let s = &mut shards[i];
    let off = s.batch.data.len() as u32;
    s.batch.data.extend_from_slice(p.data);
    s.batch.pkts.push((p.ts, p.linktype, off, p.data.len() as u32));
    if s.batch.pkts.len() >= BATCH {
        flush(s, drops);
    }
}

/// Runs `source` until it ends or `stop` is set, calling `replan` every
/// `replan_every` for a new plan (`None`: unchanged). Shard `i` finishes its entries with
/// `post(i)` and what that returns goes to `out`. Returns every stage's counters.
pub fn run<P: Post>(
    mut source: Box<dyn Source>,
    cfg: &WorkerConfig,
    stop: &AtomicBool,
    mut replan: impl FnMut() -> Option<Plan>,
    post: impl Fn(usize) -> P,
    out: SyncSender<P::Out>,
) -> Result<WorkerStats, Error> {
    let live = source.live();
    let n = cfg.shards.max(1);
    let mut shards: Vec<Shard> = (0..n)
        .map(|i| {
            let (tx, rx) = sync_channel::<Batch>(cfg.queue_batches.max(1));
            let (free_tx, free_rx) = sync_channel::<Batch>(8);
            let mut d = Dissector::new(cfg.dissect.clone());
            // entry ids stay unique across shards: each shard numbers its own block
            d.set_id_base(((i as u64) << 28) + cfg.id_offset);
            let out = out.clone();
            let post = post(i);
            let handle = std::thread::Builder::new()
                .name(format!("kshark-dissect-{i}"))
                .spawn(move || shard_loop(d, rx, free_tx, post, out, live))
                .expect("spawn dissector thread");
            Shard { tx, free: free_rx, batch: Batch::new(), handle }
        })
        .collect();
    drop(out);
    let mut queue_drops = 0u64;
    // A partial batch that finds the queue full waits (and fills up) rather than being
    // dropped: paced sources hand over a few packets per poll, and a queue of tiny batches
    // would otherwise drop after a few milliseconds' stall. Only a full batch is dropped.
    let flush = |s: &mut Shard, drops: &mut u64| {
        if s.batch.pkts.is_empty() {
            return;
        }
        let b = std::mem::take(&mut s.batch);
        match s.tx.try_send(b) {
            Ok(()) => s.batch = s.free.try_recv().unwrap_or_else(|_| Batch::new()),
            Err(TrySendError::Full(b)) if b.pkts.len() < BATCH => s.batch = b,
            Err(TrySendError::Full(mut b)) | Err(TrySendError::Disconnected(mut b)) => {
                *drops += b.pkts.len() as u64;
                b.data.clear();
                b.pkts.clear();
                s.batch = b;
            }
        }
    };
    let mut last_plan = Instant::now();
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        if last_plan.elapsed() >= cfg.replan_every {
            last_plan = Instant::now();
            if let Some(l) = &cfg.live_stats {
                if let Ok(mut l) = l.lock() {
                    l.engine = source.engine();
                    l.source = source.stats();
                    l.queue_drops = queue_drops;
                }
            }
            if let Some(plan) = replan() {
                if let Err(e) = source.apply(&plan) {
                    result = Err(e);
                    break;
                }
            }
        }
        // At low rates this (and the eBPF ring's 1 MiB wake-up) sets how many packets each
        // wake-up of the shards brings: every wake-up starts with cold caches, and at 20 ms
        // and 256 KiB the shards took 10 to 20% more CPU per packet, at every rate.
        let polled = source.poll(Duration::from_millis(100), &mut |p| dispatch(&mut shards, p, &mut queue_drops, &flush));
        for s in &mut shards {
            flush(s, &mut queue_drops);
        }
        match polled {
            Ok(Poll::More) => {}
            Ok(Poll::End) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    source.flush(&mut |p| dispatch(&mut shards, p, &mut queue_drops, &flush));
    // the last partial batches wait for room: the shards are still draining
    for s in &mut shards {
        let b = std::mem::take(&mut s.batch);
        if !b.pkts.is_empty() {
            if let Err(e) = s.tx.send(b) {
                queue_drops += e.0.pkts.len() as u64;
            }
        }
    }
    let source_stats = source.stats();
    let engine = source.engine();
    drop(source); // detaches from the kernel before the shards finish
    let mut dissect = Stats::default();
    for s in shards {
        drop(s.tx);
        match s.handle.join() {
            Ok(st) => dissect.add(&st),
            Err(_) => result = Err(Error::Capture { engine, iface: "*".into(), detail: "a dissector thread panicked".into() }),
        }
    }
    result?;
    Ok(WorkerStats { engine, source: source_stats, queue_drops, entries: 0, dissect })
}
