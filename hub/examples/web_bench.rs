//! The dashboard under load: a hub (API and dashboard on 127.0.0.1) fed real entries (the
//! shared corpus's, cycled) at 5,000 a second, with the page open in headless Chromium
//! for 60 s. `web/e2e/bench.mjs` measures what a user would feel: frame times, long tasks
//! on the page's main thread, JS heap over the minute, and whether every entry reached
//! the page. Bounded: the feed stops after the measuring does.
//!
//!   cargo run --release -p kshark-hub --example web_bench [-- SECONDS]

mod shared;

use kshark_hub::api::{self, Access};
use kshark_hub::record::{decode_batch, encode_batch};
use kshark_hub::{Hub, HubConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RATE: u64 = 5000;
/// A batch every 50 ms, as a worker's flush would bring them.
const TICK_MS: u64 = 50;

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let lines = shared::corpus_lines();
    let mean = lines.iter().map(String::len).sum::<usize>() / lines.len();
    println!("web: {} corpus entries (mean {mean} bytes of JSON), {RATE}/s for {secs} s to the page in headless Chromium", lines.len());

    let data = tempfile::tempdir().unwrap();
    let hub = Hub::start(&HubConfig::new(data.path())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(hub.clone(), Access::loopback(listener.local_addr().unwrap(), "bench-token", "bench-reader"), true);
    rt.spawn(api::serve(listener, router, None, std::future::pending(), api::ServeLimits::default(), hub.clone()));

    let go = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (hub, go, stop, sent) = (hub.clone(), go.clone(), stop.clone(), sent.clone());
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            while !go.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let start = Instant::now();
            let (mut n, mut i) = (0u64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let due = start + Duration::from_millis(TICK_MS * n);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let batch: Vec<String> = (0..RATE * TICK_MS / 1000).map(|_| {
                    i += 1;
                    shared::with_id(&lines[i % lines.len()], &format!("w{i}"))
                }).collect();
                let block = decode_batch(encode_batch(n, &batch).into()).expect("the corpus's entries decode");
                let k = batch.len() as u64;
                if handle.block_on(hub.submit(Arc::from("bench"), block, None)).is_ok() {
                    sent.fetch_add(k, Ordering::Relaxed);
                }
            }
        })
    };

    // the page loads first; the feed starts when the measuring does (the script's cue)
    let mut node = std::process::Command::new("node")
        .arg(root.join("web/e2e/bench.mjs"))
        .env("HUB", &url)
        .env("SECS", secs.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node (scripts/setup.sh installs what the dashboard needs)");
    let out = node.stdout.take().unwrap();
    use std::io::BufRead;
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        if line == "measuring" {
            go.store(true, Ordering::Relaxed);
            continue;
        }
        println!("{line}");
    }
    stop.store(true, Ordering::Relaxed);
    let status = node.wait().unwrap();
    feeder.join().unwrap();
    println!("web: the hub took {} entries ({}/s) while the page was measured", sent.load(Ordering::Relaxed), sent.load(Ordering::Relaxed) / secs.max(1));
    assert!(status.success(), "the page's measurement failed");
}
