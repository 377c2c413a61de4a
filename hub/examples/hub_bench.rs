//! The hub's benchmarks, all on 127.0.0.1 and bounded:
//! 1. ingest: entries per second through the real path (WebSocket batches of 2,000,
//!    LZ4, decoded, committed to SQLite, acknowledged), from a worker-like client;
//! 2. filtered queries over 1,000,000 stored entries, each scanning the whole store:
//!    filters that name a protocol (the literal prefilter passes over the rest), one that
//!    names none (every entry is parsed), and one that needs the full entries;
//! 3. worker-to-subscriber latency: 10 WebSocket subscribers while entries arrive at
//!    10,000 per second for 10 s; p50/p99 from each entry's send time;
//! 4. memory: the process's peak resident size;
//! 5. joining: two workers (nodes n1 and n2) each send both sides' observations of the
//!    same 100,000 calls between their nodes, interleaved; the time until the hub has
//!    stored them as 100,000 joined entries.
//!
//! Entries are the shared corpus's under 4 KB of JSON (its typical API calls), cycled.
//!
//!   cargo run --release -p kshark-hub --example hub_bench

mod shared;

use futures_util::{SinkExt, StreamExt};
use kshark_hub::api::{self, Access};
use kshark_hub::record::encode_batch;
use kshark_hub::store::Query;
use kshark_hub::{Filter, Hub, HubConfig};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// As in the `kshark` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn corpus_lines() -> Vec<String> {
    let mut out = shared::corpus_lines();
    out.retain(|l| l.len() <= 4096);
    out
}

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let lines = corpus_lines();
    let mean = lines.iter().map(String::len).sum::<usize>() / lines.len();
    println!("hub: {} corpus entries under 4 KB (mean {mean} bytes of JSON), cycled", lines.len());
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&HubConfig::new(dir.path())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let token = "bench-token";
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = api::router(hub.clone(), Access::loopback(listener.local_addr().unwrap(), token, "bench-reader"), false);
    rt.spawn(api::serve(listener, router, None, std::future::pending(), api::ServeLimits::default(), hub.clone()));
    let addr = kshark_hub::client::HubAddr::parse(&format!("http://127.0.0.1:{port}"), Some(token.into()), None).unwrap();

    // 1. ingest
    const INGEST: usize = 1_000_000;
    const BATCH: usize = 2000;
    let batches: Vec<Vec<u8>> = (0..INGEST / BATCH)
        .map(|b| {
            let part: Vec<String> = (0..BATCH).map(|i| shared::with_id(&lines[(b * BATCH + i) % lines.len()], &format!("b{b}-{i}"))).collect();
            encode_batch(b as u64 + 1, &part)
        })
        .collect();
    let wire: usize = batches.iter().map(Vec::len).sum();
    println!("memory: {:.0} MB resident before ingest (the corpus and the 1,000,000 entries encoded for sending)", peak_rss_mb());
    let t = Instant::now();
    rt.block_on(async {
        let ws = addr.websocket("/api/ingest?worker=bench").await.unwrap();
        let (mut tx, mut rx) = ws.split();
        let n = batches.len();
        let send = tokio::spawn(async move {
            for b in batches {
                tx.send(Message::Binary(b.into())).await.unwrap();
            }
            tx
        });
        let mut acked = 0;
        while acked < n {
            match rx.next().await {
                Some(Ok(Message::Text(t))) if t.contains("ack") => acked += 1,
                Some(Ok(_)) => {}
                other => panic!("ingest ended: {other:?}"),
            }
        }
        drop(send.await);
    });
    let el = t.elapsed().as_secs_f64();
    println!(
        "ingest: {INGEST} entries in {el:.2} s = {:.0} entries/s ({:.0} MB/s of JSON; {:.1}x LZ4 on the wire)",
        INGEST as f64 / el,
        INGEST as f64 * mean as f64 / el / 1e6,
        (INGEST * mean) as f64 / wire as f64
    );
    println!("ingest: store {:.0} MB for {INGEST} entries; peak RSS so far {:.0} MB", hub.stats()["hub"]["store_bytes"].as_f64().unwrap_or(0.0) / 1e6, peak_rss_mb());

    // 2. queries over the 1,000,000 stored
    let reader = hub.reader().unwrap();
    for expr in ["http && status_code >= 500 && dst.port == 8080", "status_code >= 500 && elapsed_time > 100000", "dns && dns_questions.exists(q, q.endsWith(\".org\"))", "request.headers[\"user-agent\"].contains(\"Wget\")", ""] {
        let f = Filter::compile(expr).unwrap();
        let t = Instant::now();
        let got = reader.query(&Query { filter: &f, since: None, limit: if expr.is_empty() { 1000 } else { 1_000_000 }, now: 0, stop: None }).unwrap();
        println!("query: {:>6.3} s over {INGEST} stored, {:>7} matched{}  {expr:?}", t.elapsed().as_secs_f64(), got.len(), if f.needs_full() { " (full entries)" } else { "" });
    }

    // 3. latency to 10 subscribers at 10,000 entries/s
    const SUBS: usize = 10;
    const RATE: usize = 10_000;
    const SECS: usize = 10;
    let lat = rt.block_on(async {
        let mut subs = Vec::new();
        for _ in 0..SUBS {
            let mut ws = addr.websocket("/api/stream?filter=").await.unwrap();
            subs.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(RATE * SECS);
                while lat.len() < RATE * SECS {
                    let Some(Ok(Message::Text(t))) = ws.next().await else { break };
                    // the send time, from the id the sender gave (`"id":"t<ns>-<n>"`)
                    let sent = t.split_once("\"id\":\"t").and_then(|(_, rest)| rest.split(['"', '-']).next()).and_then(|s| s.parse::<i64>().ok());
                    if let Some(sent) = sent {
                        lat.push(kshark_hub::store::now_ns() - sent);
                    }
                }
                lat
            }));
        }
        let mut ws = addr.websocket("/api/ingest?worker=latency").await.unwrap();
        let per_tick = RATE / 100;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut i = 0;
        for b in 0..(SECS * 100) {
            tick.tick().await;
            let now = kshark_hub::store::now_ns();
            let part: Vec<String> = (0..per_tick)
                .map(|_| {
                    i += 1;
                    let mut v: serde_json::Value = serde_json::from_str(&lines[i % lines.len()]).unwrap();
                    v["id"] = format!("t{now}-{i}").into();
                    v.to_string()
                })
                .collect();
            ws.send(Message::Binary(encode_batch(b as u64 + 1, &part).into())).await.unwrap();
            while let Some(Ok(m)) = tokio::time::timeout(Duration::from_millis(0), ws.next()).await.ok().flatten() {
                drop(m);
            }
        }
        let mut all = Vec::new();
        for s in subs {
            all.extend(tokio::time::timeout(Duration::from_secs(30), s).await.expect("subscribers finish").unwrap());
        }
        all
    });
    let mut lat = lat;
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1e6;
    println!(
        "latency: {} deliveries to {SUBS} subscribers at {RATE} entries/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} cut loose",
        lat.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        hub.stats()["hub"]["subscribers_cut"]
    );
    println!("memory: peak RSS {:.0} MB", peak_rss_mb());

    // 5. joining two nodes' observations of the same calls
    const CALLS: usize = 100_000;
    let side = |client: bool, b: usize| -> Vec<u8> {
        let part: Vec<String> = (b * BATCH..((b + 1) * BATCH).min(CALLS))
            .map(|i| {
                let mut v: serde_json::Value = serde_json::from_str(&lines[i % lines.len()]).unwrap();
                let (node, peer, kind) = if client { ("n1", "n2", "client") } else { ("n2", "n1", "server") };
                v["id"] = format!("{kind}-{i}").into();
                v["node"] = node.into();
                v["join"] = serde_json::json!({"side": kind, "peer": peer, "key": format!("tcp 10.244.1.{}:{} 10.244.2.9:80", i % 250, 1024 + i % 60000)});
                v.to_string()
            })
            .collect();
        encode_batch(b as u64 + 1, &part)
    };
    let (clients, servers): (Vec<_>, Vec<_>) = (0..CALLS.div_ceil(BATCH)).map(|b| (side(true, b), side(false, b))).unzip();
    let before = hub.stats()["hub"]["entries_stored"].as_u64().unwrap_or(0);
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for (worker, batches) in [("n1/bench", clients), ("n2/bench", servers)] {
            let ws = addr.websocket(&format!("/api/ingest?worker={worker}")).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                let n = batches.len();
                let send = tokio::spawn(async move {
                    for b in batches {
                        tx.send(Message::Binary(b.into())).await.unwrap();
                    }
                    tx
                });
                let mut acked = 0;
                while acked < n {
                    match rx.next().await {
                        Some(Ok(Message::Text(t))) if t.contains("ack") => acked += 1,
                        Some(Ok(_)) => {}
                        other => panic!("ingest ended: {other:?}"),
                    }
                }
                send.await.unwrap()
            }));
        }
        let mut keep = Vec::new();
        for t in tasks {
            keep.push(t.await.unwrap());
        }
        // every call stored once, joined
        while hub.stats()["hub"]["joined"].as_u64().unwrap_or(0) < CALLS as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(keep);
    });
    let el = t.elapsed().as_secs_f64();
    let st = hub.stats();
    println!(
        "join: {} observations from two workers in {el:.2} s = {:.0} observations/s, {} joined entries stored ({} alone, {} held)",
        2 * CALLS,
        2.0 * CALLS as f64 / el,
        st["hub"]["entries_stored"].as_u64().unwrap_or(0) - before,
        st["hub"]["join_alone"],
        st["hub"]["join_held"]
    );
    rt.shutdown_timeout(Duration::from_secs(1));
    hub.shutdown();
}
