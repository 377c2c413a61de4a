//! Builds the dashboard (`web/`, TypeScript through Vite) into `OUT_DIR` and writes the
//! table of its files that `src/web.rs` embeds, so the binary serves every asset itself.
//!
//! `scripts/setup.sh` installs `web/node_modules` (`npm ci`); without it the build stops
//! and says so. Cargo reruns this when anything under `web/` that the build reads changes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let web = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../web");
    for p in ["src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json"] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=KSHARK_WEB_DIST");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // a dashboard built elsewhere (e.g. a container build's node stage)
    let dist = match std::env::var_os("KSHARK_WEB_DIST") {
        Some(d) => PathBuf::from(d),
        None => {
            let dist = out.join("web");
            build(&web, &dist);
            dist
        }
    };
    if !dist.join("index.html").is_file() {
        fail(&format!("{} has no index.html", dist.display()));
    }
    let mut files = Vec::new();
    walk(&dist, &dist, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for (rel, path) in &files {
        table.push_str(&format!("    ({rel:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    table.push(']');
    std::fs::write(out.join("web_assets.rs"), table).unwrap();
}

fn build(web: &Path, dist: &Path) {
    if !web.join("node_modules/.bin/vite").exists() {
        fail("web/node_modules is missing: run `bash scripts/setup.sh` (it runs `npm ci` in web/), or set KSHARK_WEB_DIST to a built dashboard");
    }
    let status = Command::new("npm")
        .current_dir(web)
        .args(["run", "--silent", "build", "--", "--outDir"])
        .arg(dist)
        .args(["--emptyOutDir", "--logLevel", "warn"])
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("`npm run build` in web/ failed ({s}); its output is above")),
        Err(e) => fail(&format!("cannot run npm ({e}): Node.js and npm are needed to build the dashboard (scripts/setup.sh)")),
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, files);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            files.push((format!("/{rel}"), p));
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("kshark-hub: the dashboard cannot be built: {msg}");
    std::process::exit(1);
}
