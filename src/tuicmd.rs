//! `kshark tui --hub URL`, and the terminal UI `tap` opens over its in-process hub.

use crate::tap::{CaptureArgs, Sink, STOP};
use crate::Failure;
use clap::Args;
use kshark_hub::client::HubAddr;
use kshark_tui::source::HubSource;
use std::io::{IsTerminal, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark tui                                   the hub on 127.0.0.1:8899\n  kshark tui --hub http://127.0.0.1:8899 --filter 'http && status_code >= 500'\n  kshark tui --hub https://hub.example:8899 --ca-file ca.pem --token-file reader-token\n\nKeys: ? in the UI lists them all. / filters (on the hub), Enter opens an entry,\n2 shows the services, y writes the entry as JSON, curl or HAR, q quits.")]
pub struct TuiArgs {
    /// The hub
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8899")]
    hub: String,
    /// Start with this filter (the language of `--filter` everywhere)
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// The hub's reader token, when it listens beyond loopback
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// Trust this CA (PEM) for an https:// hub
    #[arg(long, value_name = "F")]
    ca_file: Option<PathBuf>,
}

fn need_terminal() -> Result<(), Failure> {
    if !is_terminal() {
        return Err(Failure::Input("the terminal UI needs a terminal (for scripts: kshark observe, or tap --no-tui)".into()));
    }
    Ok(())
}

pub fn is_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// The UI on a hub reached at `addr` (`kshark tui`, and tap's port-forward to a cluster's
/// hub); the caller has made sure there is a terminal.
pub fn attach(addr: HubAddr, filter: String) -> Result<(), Failure> {
    let shown = addr.display();
    let source = HubSource::connect(addr, &filter).map_err(|r| Failure::Runtime(r.message))?;
    kshark_tui::run(Box::new(source), &format!("hub {shown}"), &filter, &|| false).map_err(|e| Failure::Runtime(e.to_string()))
}

pub fn tui(a: TuiArgs) -> Result<(), Failure> {
    let filter = a.filter.unwrap_or_default();
    crate::read::compile_filter(Some(&filter).filter(|f| !f.is_empty()).map(String::as_str))?;
    need_terminal()?;
    let token = a.token_file.as_deref().map(kshark_hub::client::read_token).transpose().map_err(|e| Failure::Input(e.to_string()))?;
    let addr = HubAddr::parse(&a.hub, token, a.ca_file).map_err(|e| Failure::Input(e.to_string()))?;
    attach(addr, filter)
}

/// Standard error sent to a file while the UI owns the terminal, and put back (with
/// what was written meanwhile) when dropped.
struct Quiet {
    saved: i32,
    file: std::fs::File,
}

impl Quiet {
    fn start() -> Option<Quiet> {
        let mut file = tempfile_in_tmp()?;
        let _ = file.flush();
        use std::os::fd::AsRawFd;
        // SAFETY: dup/dup2 on descriptors this process owns; stderr is put back in drop.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 || unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
            return None;
        }
        Some(Quiet { saved, file })
    }
}

fn tempfile_in_tmp() -> Option<std::fs::File> {
    let p = std::env::temp_dir().join(format!("kshark-tap-{}.log", std::process::id()));
    let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&p).ok()?;
    let _ = std::fs::remove_file(&p);
    Some(f)
}

impl Drop for Quiet {
    fn drop(&mut self) {
        // SAFETY: puts back the descriptor saved in start.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
        let mut said = String::new();
        if self.file.rewind().is_ok() && self.file.read_to_string(&mut said).is_ok() {
            eprint!("{said}");
        }
    }
}

/// `tap` with the UI: capture on a thread feeding the in-process hub, the UI on this
/// one reading that hub's API, as `kshark tui` would.
pub fn tap(capture: CaptureArgs, port: u16, web: bool) -> Result<(), Failure> {
    need_terminal()?;
    let title = format!("tap {}", std::env::args().skip(2).collect::<Vec<_>>().join(" "));
    let (tx, rx) = std::sync::mpsc::channel();
    let quiet = Quiet::start();
    let cap = std::thread::spawn(move || crate::tap::capture(&capture, Sink::Print { format: None, port, web, announce: Some(tx) }));
    // the hub starts once capture is sure to run: a capture that fails says why first
    let addr = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(a) => break a,
            Err(_) if cap.is_finished() => {
                drop(quiet);
                return cap.join().map_err(|_| Failure::Runtime("the capture thread panicked".into()))?;
            }
            Err(_) => {}
        }
    };
    let ui = HubAddr::parse(&format!("http://{addr}"), None, None)
        .map_err(|e| Failure::Runtime(e.to_string()))
        .and_then(|a| HubSource::connect(a, "").map_err(|r| Failure::Runtime(r.message)))
        .and_then(|source| kshark_tui::run(Box::new(source), &title, "", &|| STOP.load(Ordering::Relaxed)).map_err(|e| Failure::Runtime(e.to_string())));
    STOP.store(true, Ordering::Relaxed);
    let captured = cap.join().map_err(|_| Failure::Runtime("the capture thread panicked".into()));
    drop(quiet);
    ui?;
    captured?
}
