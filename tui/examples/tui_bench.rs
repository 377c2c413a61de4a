//! The terminal UI under load: entries arriving at 5,000 a second for 20 s (real entries:
//! the shared corpus's, cycled), the UI ticking and redrawing every 40 ms as `run` does,
//! drawn through the crossterm backend (the escape sequences a terminal would get, written
//! to a sink). It reports frames a second, frame times, CPU use, and whether the UI kept
//! up (every entry sent is shown or counted; none waiting at the end). By the end the
//! table holds its full 100,000 entries.
//!
//!   cargo run --release -p kshark-tui --example tui_bench

use kshark_tui::app::{App, AppEvent};
use kshark_tui::source::{Refused, Source, Updates};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RATE: f64 = 5000.0;
const SECS: u64 = 20;

struct Generator {
    lines: Vec<Arc<str>>,
    start: Instant,
    sent: Arc<AtomicU64>,
}

impl Source for Generator {
    fn poll(&mut self) -> Updates {
        let due = (self.start.elapsed().as_secs_f64() * RATE) as u64;
        let sent = self.sent.load(Ordering::Relaxed);
        // a fresh copy each, as entries from the hub are
        let entries = (sent..due).map(|i| Arc::from(&*self.lines[i as usize % self.lines.len()])).collect();
        self.sent.store(due.max(sent), Ordering::Relaxed);
        Updates { entries, ..Default::default() }
    }
    fn set_filter(&mut self, _: &str) -> Result<(), Refused> {
        Ok(())
    }
    fn describe(&self) -> String {
        "generator".into()
    }
}

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (the shared corpus is needed)", dir.display())).flatten().map(|e| e.path()).collect();
    files.sort();
    let mut lines: Vec<Arc<str>> = Vec::new();
    for f in files {
        let Ok(mut src) = kshark_capture::FileSource::open(&f) else { continue };
        let mut d = kshark_dissect::Dissector::new(Default::default());
        let _ = kshark_capture::pipeline::dissect_file(&mut src, &mut d, |e| lines.push(Arc::from(serde_json::to_string(&e).unwrap())));
    }
    let mean = lines.iter().map(|l| l.len()).sum::<usize>() / lines.len().max(1);
    println!("tui: {} corpus entries (mean {mean} bytes of JSON) at {RATE} a second for {SECS} s, 160x50", lines.len());
    let sent = Arc::new(AtomicU64::new(0));
    let source = Generator { lines, start: Instant::now(), sent: sent.clone() };
    let mut app = App::new(Box::new(source), "bench", "", (160, 50));
    let mut term = Terminal::new(CrosstermBackend::new(std::io::sink())).unwrap();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut frames: Vec<f64> = Vec::new();
    let mut next = Instant::now();
    while start.elapsed() < Duration::from_secs(SECS) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += Duration::from_millis(40);
        let t = Instant::now();
        app.handle_event(AppEvent::Tick(start.elapsed()));
        term.draw(|f| f.render_widget(&app, f.area())).unwrap();
        frames.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    // one more tick takes what arrived during the last frame: what is left is lag
    let before = sent.load(Ordering::Relaxed);
    app.handle_event(AppEvent::Tick(start.elapsed()));
    let shown = app.rows.len() as u64;
    let sent_n = sent.load(Ordering::Relaxed);
    let last_tick = sent_n - before;
    frames.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| frames[((frames.len() as f64 * p) as usize).min(frames.len() - 1)];
    println!(
        "tui: {:.1} frames/s; frame (tick + draw) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; CPU {:.0}% of one core",
        frames.len() as f64 / wall,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        cpu / wall * 100.0
    );
    println!(
        "tui: {sent_n} entries sent, {} kept in the table (its limit is {}), {} dropped by the UI; {last_tick} arrived in the final tick (no backlog: nothing waits)",
        shown,
        kshark_tui::app::HISTORY,
        app.ui_drops()
    );
    let hwm = std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).unwrap_or(0.0);
    println!("tui: peak memory {:.0} MB (the table keeps each of its 100,000 entries, LZ4-compressed, for the detail)", hwm / 1024.0);
}
