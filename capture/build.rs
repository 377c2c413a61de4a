//! Compiles the eBPF program (ebpf/capture.bpf.c) with Debian's `clang -target bpf`
//! (packages clang and libbpf-dev). Without clang the crate still builds: the eBPF engine
//! then reports why it is missing, and `--engine auto` uses libpcap.
use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("capture.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let src = "ebpf/capture.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        // <asm/types.h> is in the multiarch include folder on Debian
        .arg(format!("-I/usr/include/{arch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .output();
    let error = match result {
        Ok(o) if o.status.success() => String::new(),
        Ok(o) => format!(
            "{clang} could not compile {src} (apt-get install clang libbpf-dev): {}",
            String::from_utf8_lossy(&o.stderr).lines().find(|l| l.contains("error")).unwrap_or("").trim()
        ),
        Err(e) => format!("{clang} was not found when kshark was built ({e}); apt-get install clang libbpf-dev and rebuild"),
    };
    if !error.is_empty() {
        println!("cargo:warning=eBPF engine disabled: {error}");
        fs::write(&out, b"").unwrap();
    }
    println!("cargo:rustc-env=KSHARK_BPF_ERROR={error}");
}
