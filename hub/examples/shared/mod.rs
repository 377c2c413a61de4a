//! What the hub's benchmarks share: the shared corpus's entries, as JSON lines.

/// Every entry `kshark read` makes of the shared corpus's captures (beside the checkout).
pub fn corpus_lines() -> Vec<String> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (the shared corpus is needed)", dir.display())).flatten().map(|e| e.path()).collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(mut src) = kshark_capture::FileSource::open(&f) else { continue };
        let mut d = kshark_dissect::Dissector::new(Default::default());
        let _ = kshark_capture::pipeline::dissect_file(&mut src, &mut d, |e| out.push(serde_json::to_string(&e).unwrap()));
    }
    out
}

/// `line` (an entry's JSON, as the dissector writes it: its id first) with another id. A
/// batch's ids must be unique, and the corpus is cycled.
pub fn with_id(line: &str, id: &str) -> String {
    let rest = line.strip_prefix("{\"id\":\"").expect("an entry starts with its id");
    let end = rest.find('"').expect("the id ends");
    format!("{{\"id\":\"{id}\"{}", &rest[end + 1..])
}
