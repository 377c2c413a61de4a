//! Capture plus dissection, and nothing after: the live benchmark's measure of the
//! engines themselves (`bench/capture.py`). Packets come from the engine, go through the
//! sharded worker exactly as `kshark tap` and `kshark worker` run it, and become entries,
//! which each shard counts and drops where `tap` names, filters and encodes them.
//!
//!     sudo dissect_live IFACE ebpf|libpcap SECONDS [SHARDS]
//!
//! Ends after SECONDS, or on SIGINT or SIGTERM.
//!
//! Says "capturing with ENGINE" once attached, then one JSON line of every counter (stderr).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kshark_capture::source::{Iface, Plan, Source};
use kshark_capture::worker::{self, WorkerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: dissect_live IFACE ebpf|libpcap SECONDS [SHARDS]");
        std::process::exit(2);
    }
    let plan = Plan { ifaces: vec![Iface::named(&args[1])], targets: None };
    let source: Box<dyn Source> = match args[2].as_str() {
        "ebpf" => Box::new(kshark_capture::ebpf::EbpfSource::open(&plan).unwrap_or_else(|e| fail(e))),
        "libpcap" => Box::new(kshark_capture::live_pcap::PcapSource::open(&plan).unwrap_or_else(|e| fail(e))),
        other => fail(format!("unknown engine {other}")),
    };
    let secs: f64 = args[3].parse().unwrap_or_else(|_| fail("SECONDS is a number"));
    let mut cfg = WorkerConfig::new(kshark_dissect::Config::default());
    if let Some(n) = args.get(4) {
        cfg.shards = n.parse().unwrap_or_else(|_| fail("SHARDS is a number"));
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    eprintln!("capturing with {} on {}", source.engine(), args[1]);
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let counter = std::thread::spawn(move || rx.iter().sum::<u64>());
    let until = Instant::now() + Duration::from_secs_f64(secs);
    std::thread::spawn(move || {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        STOP.store(true, Ordering::Relaxed);
    });
    let mut st = worker::run(source, &cfg, &STOP, || None, |_| Count, tx).unwrap_or_else(|e| fail(e));
    st.entries = counter.join().unwrap_or(0);
    eprintln!("{}", st.to_json());
}

/// Counts a shard's entries and drops them on the shard.
struct Count;

impl worker::Post for Count {
    type Out = u64;
    fn post(&mut self, entries: std::vec::Drain<'_, kshark_dissect::Entry>) -> Option<u64> {
        let n = entries.len() as u64;
        drop(entries);
        (n > 0).then_some(n)
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("dissect_live: {e}");
    std::process::exit(1)
}
