//! The dissector alone, on one core: a capture file held in memory goes through one
//! `Dissector` as the worker's shards run it (entries taken every 512 packets and
//! dropped on the same thread), several times; the CPU time of each pass and the best are
//! printed. With no sender sharing the machine and no threads, this is the dissection
//! part of the live benchmark's figures (`bench/capture.py` runs it on a recording of the
//! same traffic).
//!
//!     dissect_file FILE [PASSES]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: dissect_file FILE [PASSES]");
        std::process::exit(2)
    };
    let passes: usize = args.get(2).map_or(5, |s| s.parse().unwrap_or(5)).max(1);
    let mut src = kshark_capture::FileSource::open(std::path::Path::new(path)).unwrap_or_else(|e| {
        eprintln!("dissect_file: {e}");
        std::process::exit(1)
    });
    let mut packets = Vec::new();
    if let Err(e) = src.for_each_packet(|p| packets.push((p.ts, p.linktype, p.data.to_vec()))) {
        eprintln!("dissect_file: {e}");
        std::process::exit(1)
    }
    let mut best = f64::MAX;
    for pass in 1..=passes {
        let mut d = kshark_dissect::Dissector::new(kshark_dissect::Config::default());
        let t0 = cpu_seconds();
        let mut entries = 0usize;
        for (i, (ts, linktype, data)) in packets.iter().enumerate() {
            d.packet(*ts, *linktype, data);
            if i % 512 == 511 {
                entries += d.drain_entries().count();
            }
        }
        d.finish();
        entries += d.drain_entries().count();
        let t = cpu_seconds() - t0;
        best = best.min(t);
        eprintln!("pass {pass}: {} packets, {entries} entries, {t:.3} CPU s, {:.3} s per Mpkt", packets.len(), t / packets.len().max(1) as f64 * 1e6);
    }
    println!("best: {:.3} CPU s per million packets ({:.0} packets/s per core)", best / packets.len().max(1) as f64 * 1e6, packets.len() as f64 / best);
}

/// User + system time of this process.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}
