//! The terminal UI as a person uses it: `kshark tap` replaying a capture, in a real
//! terminal (tmux), driven with send-keys and read with capture-pane.

use kshark_dissect::testkit::{pcap_bytes, udp_frame, TcpConv, C2S, S2C};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().unwrap_or_else(|e| panic!("tmux is missing ({e}): scripts/setup.sh installs it"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tmux session, killed when dropped.
struct Session(String);

impl Session {
    fn start(cmd: &str) -> Session {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!("kshark-tui-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let s = Session(name);
        let _ = Command::new("tmux").args(["kill-session", "-t", &s.0]).output();
        let st = Command::new("tmux")
            .args(["new-session", "-d", "-s", &s.0, "-x", "150", "-y", "40", "bash", "--norc", "--noprofile"])
            .env("TERM", "xterm-256color")
            .status()
            .unwrap_or_else(|e| panic!("tmux is missing ({e}): scripts/setup.sh installs it"));
        assert!(st.success(), "tmux new-session failed");
        s.keys(&[cmd, "Enter"]);
        s
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend_from_slice(keys);
        tmux(&args);
    }

    fn literal(&self, text: &str) {
        tmux(&["send-keys", "-t", &self.0, "-l", text]);
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.0])
    }

    fn wait_for(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if want(&s) {
                return s;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "waited 30 s for {what}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the command's exit line (`EXIT-n-CODE`) and returns the screen.
    fn exited(&self) -> String {
        self.wait_for("the exit", |t| t.lines().any(|l| l.starts_with("EXIT-") && l.trim_end().ends_with("-CODE")))
    }

    /// The terminal as it was before the UI: main screen, cursor shown, mouse given back,
    /// cooked mode.
    fn assert_restored(&self) {
        assert_eq!(self.show("#{alternate_on}"), "0", "the alternate screen is left");
        assert_eq!(self.show("#{cursor_flag}"), "1", "the cursor is back");
        assert_eq!(self.show("#{mouse_any_flag}"), "0", "the mouse is given back");
        self.keys(&["stty -a | grep -o -- '-icanon' || echo COOKED", "Enter"]);
        self.wait_for("the terminal mode", |t| t.contains("COOKED"));
    }

    fn show(&self, format: &str) -> String {
        tmux(&["display-message", "-p", "-t", &self.0, format]).trim().to_string()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).output();
    }
}

fn capture(frames: &[(u64, Vec<u8>)]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&pcap_bytes(1, frames)).unwrap();
    f
}

fn http(port: u16, path: &str, status: &str, body: &str) -> Vec<(u64, Vec<u8>)> {
    let mut c = TcpConv::new(([10, 0, 0, 1], port), ([10, 0, 0, 2], 80), [1000, 5000]);
    c.handshake();
    c.send(C2S, format!("GET {path} HTTP/1.1\r\nHost: shop\r\nUser-Agent: test\r\n\r\n").as_bytes(), &[]);
    c.send(S2C, format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(), &[]);
    c.close();
    c.frames
}

fn tap(file: &std::path::Path) -> String {
    format!("{} tap --replay {} --speed 0 --port 0; echo EXIT-$?-CODE", env!("CARGO_BIN_EXE_kshark"), file.display())
}

#[test]
fn rows_appear_a_filter_narrows_them_enter_shows_the_detail_and_q_leaves_a_clean_terminal() {
    let mut frames = Vec::new();
    for (i, (path, status)) in [("/catalogue", "200 OK"), ("/carts/1", "200 OK"), ("/orders", "503 Service Unavailable"), ("/login", "401 Unauthorized")].into_iter().enumerate() {
        frames.extend(http(40000 + i as u16, path, status, "hello"));
    }
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x05carts\x09sock-shop\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01");
    frames.push((1_700_000_009_000_000_000, udp_frame(([10, 0, 0, 1], 5353), ([10, 0, 0, 53], 53), &q)));
    frames.sort_by_key(|f| f.0);
    let file = capture(&frames);
    let s = Session::start(&tap(file.path()));
    s.wait_for("the five rows", |t| t.contains("Live  5/5") && t.contains("/orders") && t.contains("carts.sock-shop.svc.cluster.local"));
    assert_eq!(s.show("#{alternate_on}"), "1", "the UI runs on the alternate screen");
    assert_eq!(s.show("#{mouse_any_flag}"), "1", "the UI takes the mouse (wheel scrolling)");

    s.keys(&["/"]);
    s.literal("status_code >=");
    s.wait_for("the error position while typing", |t| t.contains("✗") && t.contains("(at 14)"));
    s.literal(" 500");
    s.keys(&["Enter"]);
    let t = s.wait_for("the filtered table", |t| t.contains("filter: status_code >= 500") && t.contains("Live  1/1"));
    assert!(t.contains("/orders") && !t.contains("/catalogue"), "{t}");

    s.keys(&["Enter"]);
    let t = s.wait_for("the detail", |t| t.contains("Request │ Response"));
    assert!(t.contains("user-agent") && t.contains("test"), "{t}");
    s.keys(&["Tab"]);
    s.wait_for("the response", |t| t.contains("Service Unavailable") && t.contains("hello"));

    s.keys(&["q"]);
    s.wait_for("the detail to close", |t| !t.contains("Request │ Response"));
    s.keys(&["q"]);
    let t = s.exited();
    assert!(t.contains("EXIT-0-CODE"), "{t}");
    // what capture said while the UI owned the screen comes after it
    assert!(t.contains("5 entries"), "{t}");
    s.assert_restored();
}

#[test]
fn escape_sequences_in_captured_bodies_do_not_touch_the_terminal() {
    // an OSC that would retitle the pane, one that would write the clipboard, a screen
    // clear, colour, and a carriage return, in a text body
    let evil = "\x1b]0;pwned\x07\x1b]52;c;aGVsbG8=\x07\r\x1b[2J\x1b[31mRED\x1b[0m \x1b[5mblink";
    let file = capture(&http(41000, "/evil", "200 OK", evil));
    let s = Session::start(&tap(file.path()));
    let title = s.show("#{pane_title}");
    s.wait_for("the row", |t| t.contains("/evil"));
    s.keys(&["Enter"]);
    s.keys(&["Tab"]);
    let t = s.wait_for("the body, shown escaped", |t| t.contains("\\x1b]0;pwned"));
    assert!(t.contains("kshark tap") && t.contains("Live  1/1"), "the screen was cleared or moved:\n{t}");
    let with_escapes = tmux(&["capture-pane", "-p", "-e", "-t", &s.0]);
    assert!(!with_escapes.contains("\x1b]") && !with_escapes.contains("\x1b[2J") && !with_escapes.contains("\x1b[5m"), "captured escapes reached the terminal");
    assert_eq!(s.show("#{pane_title}"), title, "the pane's title was changed by captured bytes");
    // Ctrl-C, with the detail open, quits at once and restores the terminal
    s.keys(&["C-c"]);
    s.wait_for("the exit", |t| t.contains("EXIT-0-CODE"));
    assert_eq!(s.show("#{alternate_on}"), "0");
}

#[test]
fn a_panic_in_the_ui_still_restores_the_terminal() {
    let file = capture(&http(42000, "/x", "200 OK", "ok"));
    let s = Session::start(&format!("KSHARK_TEST_PANIC=1 {}", tap(file.path())));
    let t = s.exited();
    assert!(t.contains("EXIT-101-CODE") && t.contains("panicking on purpose"), "{t}");
    s.assert_restored();
}

#[test]
fn a_bad_filter_and_an_absent_hub_are_one_line_each() {
    let o = Command::new(env!("CARGO_BIN_EXE_kshark")).args(["tui", "--filter", "http &&"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("position 7") && e.lines().count() == 1, "{e}");
    // on a terminal, a hub that is not there
    let s = Session::start(&format!("{} tui --hub http://127.0.0.1:1; echo EXIT-$?-CODE", env!("CARGO_BIN_EXE_kshark")));
    let t = s.wait_for("the exit", |t| t.contains("EXIT-1-CODE"));
    assert!(t.contains("kshark: http://127.0.0.1:1: Connection refused"), "{t}");
    assert_eq!(s.show("#{alternate_on}"), "0");
}
