//! The lab for the tests that need it (root): running `kshark lab`, its API server.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn kshark_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kshark")
}

pub fn need_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "the lab and live capture need root (namespaces, veths, eBPF): run the tests as root, as CI does");
}

pub fn need(tool: &str) {
    let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().any(|d| Path::new(d).join(tool).exists());
    assert!(found, "{tool} is missing: run `sudo bash scripts/setup.sh`");
}

pub fn lab(args: &[&str]) -> String {
    let o = Command::new(kshark_bin()).arg("nslab").args(args).output().expect("run kshark nslab");
    let text = format!("{}{}", super::stdout(&o), super::stderr(&o));
    assert!(o.status.success(), "kshark nslab {} failed: {text}", args.join(" "));
    text
}

pub fn lab_api(rt: &tokio::runtime::Runtime, kubeconfig: &str) -> kube::Client {
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("the lab's kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        kube::Client::try_from(cfg).unwrap()
    })
}

pub fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

