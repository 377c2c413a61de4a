use kshark_hub::record::{decode_batch, encode_batch};
use kshark_hub::store::{Batch, Store, Retention, Query};
use kshark_hub::Filter;
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let Ok(mut src) = kshark_capture::FileSource::open(&f) else { continue };
        let mut d = kshark_dissect::Dissector::new(Default::default());
        let _ = kshark_capture::pipeline::dissect_file(&mut src, &mut d, |e| lines.push(serde_json::to_string(&e).unwrap()));
    }
    lines.retain(|l| l.len() <= 4096);
    let tmp = tempfile::tempdir().unwrap();
    let mut st = Store::open(tmp.path(), Retention::default()).unwrap();
    for b in 0..500 {
        let part: Vec<&str> = (0..2000).map(|i| lines[(b*2000+i) % lines.len()].as_str()).collect();
        let blk = decode_batch(encode_batch(b as u64 + 1, &part).into()).unwrap();
        st.commit(&[Batch { worker: "w", block: &blk }]).unwrap();
    }
    let r = st.reader().unwrap();
    for expr in std::env::args().skip(1) {
        let f = Filter::compile(&expr).unwrap();
        for _ in 0..3 {
        let t = Instant::now();
        let got = r.query(&Query { filter: &f, since: None, limit: 1_000_000, now: 0 }).unwrap();
        println!("{:.3} s {} {expr}", t.elapsed().as_secs_f64(), got.len());
        }
    }
}
