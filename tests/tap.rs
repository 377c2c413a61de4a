//! `kshark tap` without capture privileges: a capture replayed as live traffic through the
//! sharded worker gives the same entries as `kshark read`, and bad usage is one line.

mod common;
use common::{corpus, kshark, ndjson, stderr};
use serde_json::Value;

/// What identifies an exchange regardless of which shard made it or when it was printed.
fn key(e: &Value) -> String {
    format!(
        "{} {}:{} > {}:{} {} {} {}",
        e["protocol"], e["src"]["ip"], e["src"]["port"], e["dst"]["ip"], e["dst"]["port"],
        e["request"]["method"], e["request"]["url"], e["response"]["status_code"]
    ) + &e["request"]["questions"].to_string() + &e["request"]["path"].to_string()
}

#[test]
fn replay_through_shards_gives_what_read_gives() {
    for file in ["sv_datasets-04-http-dns.pcap", "deepflow_grpc-server-stream.pcap", "arkime_http-content-gzip.pcap"] {
        let path = corpus().join("pcaps").join(file);
        let path = path.to_str().unwrap();
        let read = kshark(&["read", path, "--format", "ndjson"]);
        assert!(read.status.success(), "{}", stderr(&read));
        let mut want: Vec<String> = ndjson(&read).iter().map(key).collect();
        for shards in ["1", "3"] {
            let tap = kshark(&["tap", "--port", "0", "--replay", path, "--speed", "0", "--no-tui", "--format", "ndjson", "--shards", shards]);
            assert!(tap.status.success(), "{}", stderr(&tap));
            let mut got: Vec<String> = ndjson(&tap).iter().map(key).collect();
            want.sort();
            got.sort();
            assert!(!got.is_empty());
            assert_eq!(got, want, "{file} with {shards} shards");
            let err = stderr(&tap);
            assert!(err.contains("no drops"), "{err}");
        }
    }
}

#[test]
fn replay_at_the_recorded_pace_takes_the_recorded_time() {
    // a capture with a gap of a few seconds between its packets: played at its pace it takes them
    let path = corpus().join("pcaps/sv_dns-tcp-ts-gap.pcap");
    let t = std::time::Instant::now();
    let o = kshark(&["tap", "--port", "0", "--replay", path.to_str().unwrap(), "--speed", "1", "--no-tui", "--format", "ndjson"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fast = std::time::Instant::now();
    let o2 = kshark(&["tap", "--port", "0", "--replay", path.to_str().unwrap(), "--speed", "0", "--no-tui", "--format", "ndjson"]);
    assert!(o2.status.success());
    let (paced, quick) = (fast - t, fast.elapsed());
    assert!(paced > quick, "paced {paced:?} vs as fast as possible {quick:?}");
    // paced entries carry times moved to now
    let e = &ndjson(&o)[0];
    assert!(e["timestamp"].as_str().unwrap() > "2026-", "{}", e["timestamp"]);
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    for (args, says) in [
        (vec!["tap", "--port", "0", "--no-tui"], "say what to tap"),
        (vec!["tap", "--port", "0", "-n", "x", "--no-tui", "--inventory", "/nonexistent.json"], "/nonexistent.json"),
        (vec!["tap", "--port", "0", "[", "-i", "lo", "--no-tui"], "POD_REGEX"),
        (vec!["tap", "--port", "0", "-i", "lo", "--duration", "5 parsecs"], "unknown unit"),
        (vec!["tap", "--port", "0", "-i", "lo", "--no-tui", "--filter", "dns &&"], "position 6"),
    ] {
        let o = kshark(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn tap_filter_gives_what_read_filter_gives() {
    let path = corpus().join("pcaps/sv_datasets-04-http-dns.pcap");
    let path = path.to_str().unwrap();
    let filter = "dns && dns_questions.exists(q, q.endsWith('example.com'))";
    let read = kshark(&["read", path, "--format", "ndjson", "--filter", filter]);
    let all = ndjson(&kshark(&["read", path, "--format", "ndjson"]));
    let mut want: Vec<String> = ndjson(&read).iter().map(key).collect();
    assert!(!want.is_empty() && want.len() < all.len(), "the capture would not tell");
    let tap = kshark(&["tap", "--port", "0", "--replay", path, "--speed", "0", "--no-tui", "--format", "ndjson", "--filter", filter]);
    assert!(tap.status.success(), "{}", stderr(&tap));
    let mut got: Vec<String> = ndjson(&tap).iter().map(key).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(stderr(&tap).contains(&format!("{} entries ({} matched the filter)", all.len(), want.len())), "{}", stderr(&tap));
}

/// `tap --web` serves the dashboard beside the API; after a replay ends it stays up, with
/// what was captured, until it is told to stop; without `--web` there is no page.
#[test]
fn tap_web_serves_the_dashboard_until_stopped() {
    use std::io::{BufRead, BufReader};
    let path = corpus().join("pcaps/zeek_http_bro.org.pcap");
    let get = |addr: &str, path: &str| {
        let (_, head, body) = common::http_get(addr, path, None);
        head + &body
    };
    for web in [true, false] {
        let mut args = vec!["tap", "--replay", path.to_str().unwrap(), "--speed", "0", "--no-tui", "--port", "0"];
        if web {
            args.push("--web");
        } else {
            args.extend(["--duration", "30s"]);
        }
        // killed if an assertion fails first: the tap would otherwise serve on, forever
        struct Killed(std::process::Child);
        impl Drop for Killed {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Killed(std::process::Command::new(env!("CARGO_BIN_EXE_kshark")).args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap());
        let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines().map_while(Result::ok);
        let mut log = String::new();
        let addr = loop {
            let l = lines.next().unwrap_or_else(|| panic!("tap ended early: {log}"));
            log += &l;
            if let Some(a) = l.strip_prefix("kshark: hub API on http://") {
                break a.split(' ').next().unwrap().to_string();
            }
        };
        if web {
            for l in lines.by_ref() {
                log += &l;
                if l.contains("the dashboard stays up") {
                    break;
                }
            }
            assert!(log.contains(&format!("dashboard on http://{addr}/")), "{log}");
            let page = get(&addr, "/");
            assert!(page.starts_with("HTTP/1.1 200") && page.contains("<div id=\"app\">"), "{page}");
            // stored a moment after they were captured
            let want = ndjson(&kshark(&["read", path.to_str().unwrap(), "--format", "ndjson"])).len();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut n = 0;
            while n != want && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let entries = get(&addr, "/api/entries?limit=1000");
                n = serde_json::from_str::<Vec<Value>>(entries.split_once("\r\n\r\n").unwrap().1).unwrap().len();
            }
            assert_eq!(n, want);
        } else {
            assert!(get(&addr, "/").starts_with("HTTP/1.1 404"), "a page without --web");
        }
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
        let status = child.0.wait().unwrap();
        assert!(status.success(), "{status}: {log}");
    }
}
