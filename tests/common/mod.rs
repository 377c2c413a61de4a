//! Helpers for the binary's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// `../shared/corpus`, or a failure that says it is missing: these tests never pass silently.
pub fn corpus() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    assert!(
        p.join("pcaps").is_dir(),
        "the shared corpus is missing: expected the captures in {} (the project's tests read them from ../shared/corpus beside the checkout)",
        p.display()
    );
    p
}

pub fn kshark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kshark")).args(args).output().expect("run kshark")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn ndjson(o: &Output) -> Vec<serde_json::Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}
