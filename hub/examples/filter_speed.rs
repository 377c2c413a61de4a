//! How fast compiled filters run: every entry of the shared corpus (dissected and named
//! as in tests/filter.rs), each filter evaluated over them until 1,000,000 evaluations,
//! printing ns per entry; and, for scale, what parsing an entry's JSON costs.
//!
//!   cargo run --release -p kshark-hub --example filter_speed

use kshark_hub::Filter;
use serde_json::Value;
use std::time::Instant;

fn main() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (the shared corpus is needed)", dir.display())).flatten().map(|e| e.path()).collect();
    files.sort();
    let mut entries: Vec<Value> = Vec::new();
    for f in files {
        let Ok(mut src) = kshark_capture::FileSource::open(&f) else { continue };
        let mut d = kshark_dissect::Dissector::new(Default::default());
        let _ = kshark_capture::pipeline::dissect_file(&mut src, &mut d, |e| entries.push(serde_json::to_value(&e).unwrap()));
    }
    let texts: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    const N: usize = 1_000_000;
    println!("{} corpus entries (mean {} bytes of JSON), {N} evaluations per filter", entries.len(), texts.iter().map(String::len).sum::<usize>() / texts.len());
    for expr in [
        "http",
        "http && status_code >= 400",
        "dst.port == 53 || dst.port == 5353",
        "path.startsWith('/images') && method == 'GET'",
        "path.matches('\\\\.(png|jpg|gif)$')",
        "request.headers['user-agent'].contains('Mozilla')",
        "dns_questions.exists(q, q.endsWith('.com'))",
        "'ns-1' in namespaces || size(anomalies) > 0",
        "now() - timestamp < duration('5m')",
    ] {
        let t = Instant::now();
        let f = Filter::compile(expr).unwrap();
        let compile = t.elapsed();
        let t = Instant::now();
        let mut hits = 0usize;
        for e in entries.iter().cycle().take(N) {
            hits += usize::from(f.matches(e));
        }
        let el = t.elapsed();
        println!("{:>7.1} ns/entry  {:>8} matched  compile {:>6.1} µs  {expr}", el.as_nanos() as f64 / N as f64, hits, compile.as_nanos() as f64 / 1e3);
    }
    let t = Instant::now();
    let mut n = 0usize;
    for s in texts.iter().cycle().take(N) {
        n += serde_json::from_str::<Value>(s).map_or(0, |v| usize::from(v.is_object()));
    }
    println!("{:>7.1} ns/entry  parsing the entry's JSON into a Value ({n})", t.elapsed().as_nanos() as f64 / N as f64);
}
