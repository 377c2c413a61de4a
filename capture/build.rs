//! Compiles the eBPF programs (ebpf/capture.bpf.c, the packet capture, and ebpf/tls.bpf.c,
//! the TLS plaintext uprobes) with Debian's `clang -target bpf` (packages clang and
//! libbpf-dev). Without clang the crate still builds: the eBPF engine and the TLS tracer
//! then report why they are missing, and `--engine auto` uses libpcap.
use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    compile("ebpf/capture.bpf.c", "capture.bpf.o", "KSHARK_BPF_ERROR");
    compile("ebpf/tls.bpf.c", "tls.bpf.o", "KSHARK_TLS_BPF_ERROR");
}

/// Compiles `src` to OUT_DIR/`obj`; what went wrong (or nothing) goes to the env var `error_var`.
fn compile(src: &str, obj: &str, error_var: &str) {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join(obj);
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    println!("cargo:rerun-if-changed={src}");
    let (arch, target) = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => ("aarch64-linux-gnu", "arm64"),
        _ => ("x86_64-linux-gnu", "x86"),
    };
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        // the uprobes read the traced function's arguments from its registers
        .arg(format!("-D__TARGET_ARCH_{target}"))
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
        println!("cargo:warning=eBPF program {src} disabled: {error}");
        fs::write(&out, b"").unwrap();
    }
    println!("cargo:rustc-env={error_var}={error}");
}
