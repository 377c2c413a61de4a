//! The hub end to end, as processes: `kshark hub`, `kshark worker --read`, `kshark observe`.

mod common;

use common::{corpus, kshark, stderr, stdout, Hub};
use kshark_dissect::testkit::{pcap_bytes, TcpConv, C2S, S2C};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A plain HTTP/1.1 GET to 127.0.0.1: status and body.
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = common::http_get(&format!("127.0.0.1:{port}"), path, token);
    (status, body)
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn observe_returns_what_read_returns_for_the_same_capture_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), "127.0.0.1:0", &[]);
    let token = dir.path().join("hub/worker-token");
    // every capture of the corpus, each through its own worker run
    let mut files: Vec<_> = std::fs::read_dir(corpus().join("pcaps")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for p in &files {
        let o = kshark(&["worker", "--hub", &hub.url(), "--token-file", token.to_str().unwrap(), "--read", p.to_str().unwrap(), "--speed", "0", "--shards", "1", "--node", "n"]);
        assert!(o.status.success(), "worker on {}: {}", p.display(), stderr(&o));
        assert!(stderr(&o).contains("entries acknowledged by the hub"), "{}", stderr(&o));
    }
    let filters = ["true", "http && status_code >= 400", "dns && dns_answers.size() > 0", "grpc || http_version == \"2\"", "request.headers[\"user-agent\"].contains(\"curl\") || response.body.size > 1000"];
    let mut compared = 0;
    for filter in filters {
        let mut want = Vec::new();
        for p in &files {
            let read = kshark(&["read", p.to_str().unwrap(), "--format", "ndjson", "--node", "n", "--filter", filter]);
            assert!(read.status.success(), "{}", stderr(&read));
            want.extend(lines(&stdout(&read)));
        }
        let seen = kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "ndjson", "--filter", filter]);
        assert!(seen.status.success(), "{}", stderr(&seen));
        let mut got = lines(&stdout(&seen));
        want.sort();
        got.sort();
        assert!(got == want, "filter {filter:?}: observe gave {} entries, read {}", got.len(), want.len());
        compared += want.len();
    }
    assert!(compared > 500, "only {compared} entries compared");
    // the Hubble-style flags are the same filter
    let a = kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "ndjson", "--protocol", "http", "--http-status", "4+", "--http-method", "get"]);
    let b = kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "ndjson", "--filter", "http && status_code >= 400 && status_code < 500 && method == \"GET\""]);
    assert_eq!(stdout(&a), stdout(&b));
    assert!(!stdout(&a).is_empty());
    let har = kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "har", "--protocol", "http"]);
    let har: serde_json::Value = serde_json::from_str(&stdout(&har)).expect("HAR is JSON");
    assert!(har["log"]["entries"].as_array().unwrap().len() > 10);
    // a bad filter: 400 with its position, from the API and from observe
    let (status, body) = get(hub.port, "/api/entries?filter=http%20%26%26%20status_code%20%3E%3D%20%22x%22", None);
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["position"], 20, "{v}");
    let o = kshark(&["observe", "--hub", &hub.url(), "--filter", "status_cod > 1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("did you mean `status_code`"), "{}", stderr(&o));
    let (status, body) = get(hub.port, "/api/entries?limit=3&filter=dns", None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap().len(), 3);
    // the dashboard's calls: exports of a filter, a filter's check, golden signals, its page
    let (_, nd) = get(hub.port, "/api/entries?limit=1000000&filter=http&format=ndjson&download=1", None);
    let http = kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "ndjson", "--filter", "http"]);
    assert_eq!(nd.lines().count(), stdout(&http).lines().count());
    let (_, web_har) = get(hub.port, "/api/entries?limit=1000000&filter=http&format=har", None);
    let web_har: serde_json::Value = serde_json::from_str(&web_har).expect("HAR is JSON");
    assert_eq!(web_har["log"]["entries"], har["log"]["entries"], "the dashboard's HAR differs from observe's");
    let (status, body) = get(hub.port, "/api/entries?format=xml", None);
    assert!(status == 400 && body.contains("json, ndjson, har"), "{status} {body}");
    let (status, body) = get(hub.port, "/api/check?filter=http%20%26%26%20status_code%20%3D%20500", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(status == 200 && v["ok"] == false && v["position"] == 20, "{status} {v}");
    let (_, body) = get(hub.port, "/api/check?filter=http", None);
    assert_eq!(body, r#"{"ok":true}"#);
    let (_, body) = get(hub.port, "/api/signals?window=1m", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let requests: u64 = v["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    let all = stdout(&kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "ndjson"])).lines().count() as u64;
    assert_eq!(requests, all, "{v}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", hub.port)).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("content-security-policy: default-src 'self'; script-src 'self'") && page.contains("<div id=\"app\">"), "{page}");
}

/// A capture of `n` HTTP exchanges over `conns` connections, spread over `secs` seconds.
fn many_exchanges(n: usize, conns: usize, secs: f64) -> Vec<u8> {
    let mut frames = Vec::new();
    let per = n / conns;
    for c in 0..conns {
        let mut t = TcpConv::new(([10, 9, (c / 200) as u8, (c % 200) as u8 + 1], 40000 + c as u16), ([10, 9, 255, 1], 8080), [1000, 2000]);
        t.handshake();
        for i in 0..per {
            let req = format!("GET /item/{c}/{i} HTTP/1.1\r\nHost: shop\r\n\r\n");
            t.send(C2S, req.as_bytes(), &[]);
            t.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &[]);
        }
        t.close();
        frames.extend(t.frames);
    }
    // spread evenly over the time given, in order
    common::spread(&mut frames, secs);
    pcap_bytes(1, &frames)
}

#[test]
fn a_hub_killed_mid_ingest_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("many.pcap");
    std::fs::write(&pcap, many_exchanges(12_000, 100, 6.0)).unwrap();
    let read = kshark(&["read", pcap.to_str().unwrap(), "--format", "ndjson", "--node", "n"]);
    let want: BTreeSet<String> = lines(&stdout(&read)).into_iter().collect();
    assert_eq!(want.len(), 12_000);
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    let port = hub.port;
    let url = hub.url();
    let token = data.join("worker-token");
    let worker = Command::new(env!("CARGO_BIN_EXE_kshark"))
        .args(["worker", "--hub", &url, "--token-file", token.to_str().unwrap(), "--read", pcap.to_str().unwrap(), "--speed", "1", "--shards", "1", "--node", "n"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // mid-ingest: some stored, more to come
    let t0 = Instant::now();
    loop {
        let (_, body) = get(port, "/api/stats", None);
        let stored = serde_json::from_str::<serde_json::Value>(&body).map(|v| v["entries"].as_u64().unwrap_or(0)).unwrap_or(0);
        if stored > 1500 {
            assert!(stored < 10_000, "the worker finished before the kill: {stored}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "nothing stored after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    hub.kill9();
    std::thread::sleep(Duration::from_millis(700));
    let hub = Hub::start(&data, &format!("127.0.0.1:{port}"), &[]);
    let out = worker.wait_with_output().unwrap();
    let werr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{werr}");
    assert!(werr.contains("resending"), "the worker did not notice the restart: {werr}");
    // the replay is live: times and ids are today's, so exchanges are known by their path
    assert!(werr.contains("no drops"), "the capture itself dropped packets, so this test cannot judge the hub: {werr}");
    let path = |l: &String| serde_json::from_str::<serde_json::Value>(l).unwrap()["request"]["path"].as_str().unwrap().to_string();
    let want: BTreeSet<String> = want.iter().map(path).collect();
    let seen = kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "ndjson"]);
    let got: Vec<String> = lines(&stdout(&seen)).iter().map(path).collect();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "duplicates stored");
    let lost: Vec<_> = want.difference(&unique).collect();
    assert!(lost.is_empty() && unique.len() == want.len(), "{} lost, e.g. {:?}; worker: {werr}", lost.len(), lost.first());
    let (_, stats) = get(hub.port, "/api/stats", None);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    eprintln!("after the restart: {}", stats["hub"]);
}

#[test]
fn wrong_tokens_and_malformed_batches_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    let bad = dir.path().join("bad-token");
    std::fs::write(&bad, "not-the-token\n").unwrap();
    let p = corpus().join("pcaps/deepflow_http.pcap");
    let o = kshark(&["worker", "--hub", &hub.url(), "--token-file", bad.to_str().unwrap(), "--read", p.to_str().unwrap(), "--speed", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("401") && stderr(&o).contains("wrong or missing worker token"), "{}", stderr(&o));

    // a worker with the right token sends a batch with one bad entry, then garbage
    let token = std::fs::read_to_string(data.join("worker-token")).unwrap().trim().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let addr = kshark_hub::client::HubAddr::parse(&hub.url(), Some(token), None).unwrap();
        let mut ws = addr.websocket("/api/ingest?worker=test").await.unwrap();
        let good = r#"{"id":"1","timestamp":"2026-01-01T00:00:00Z","protocol":"http","transport":"tcp","src":{"ip":"10.0.0.1","port":1},"dst":{"ip":"10.0.0.2","port":80},"request":null,"response":null}"#;
        let bad = good.replace(r#""timestamp":"2026-01-01T00:00:00Z""#, r#""timestamp":"yesterday""#);
        ws.send(Message::Binary(kshark_hub::record::encode_batch(1, &[good, &bad]).into())).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!(v["refused"], 1, "{v}");
        assert!(v["error"].as_str().unwrap().contains("entry 2: `timestamp` \"yesterday\" is not RFC 3339"), "{v}");
        ws.send(Message::Binary(b"\x10\0\0\0not lz4 at all".to_vec().into())).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert!(reply.to_text().unwrap().contains("batch is not LZ4"), "{reply}");
    });
    let (_, stats) = get(hub.port, "/api/stats", None);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["entries"], 0, "{stats}");
    assert_eq!(stats["hub"]["malformed_batches"], 2, "{stats}");
    assert!(stats["hub"]["refused_workers"].as_u64().unwrap() >= 1, "{stats}");
    assert!(hub.log.lock().unwrap().contains("malformed batch"), "the hub says nothing about the refusal");
}

#[test]
fn beyond_loopback_readers_need_the_reader_token_and_the_worker_token_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    // listens on every address, but this test only talks to 127.0.0.1
    let hub = Hub::start(&data, "0.0.0.0:0", &[]);
    assert!(hub.log.lock().unwrap().contains("NOT loopback: readers need the reader token"));
    let worker = std::fs::read_to_string(data.join("worker-token")).unwrap().trim().to_string();
    let reader = std::fs::read_to_string(data.join("reader-token")).unwrap().trim().to_string();
    assert_ne!(worker, reader);
    assert_eq!(get(hub.port, "/api/stats", None).0, 401);
    assert_eq!(get(hub.port, "/api/stats", Some("wrong")).0, 401);
    assert_eq!(get(hub.port, "/api/stats", Some(&worker)).0, 401, "the worker token reads");
    assert_eq!(get(hub.port, "/api/stats", Some(&reader)).0, 200);
    // a token in the URL is no token
    assert_eq!(get(hub.port, &format!("/api/stats?token={reader}"), None).0, 401);
    let o = kshark(&["observe", "--hub", &hub.url()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    let wf = data.join("worker-token");
    let o = kshark(&["observe", "--hub", &hub.url(), "--token-file", wf.to_str().unwrap(), "--format", "ndjson"]);
    assert_eq!(o.status.code(), Some(1), "the worker token reads: {}", stderr(&o));
    let rf = data.join("reader-token");
    let o = kshark(&["observe", "--hub", &hub.url(), "--token-file", rf.to_str().unwrap(), "--format", "ndjson"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // and the reader token does not write
    let p = corpus().join("pcaps/deepflow_http.pcap");
    let o = kshark(&["worker", "--hub", &hub.url(), "--token-file", rf.to_str().unwrap(), "--read", p.to_str().unwrap(), "--speed", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrong or missing worker token"), "{}", stderr(&o));
    // one token for both is refused at start
    let same = Command::new(env!("CARGO_BIN_EXE_kshark")).args(["hub", "--listen", "127.0.0.1:0", "--data", dir.path().join("other").to_str().unwrap(), "--token-file", wf.to_str().unwrap(), "--reader-token-file", wf.to_str().unwrap()]).output().unwrap();
    assert_eq!(same.status.code(), Some(2));
    assert!(stderr(&same).contains("hold the same token"), "{}", stderr(&same));
}

#[test]
fn a_follower_waits_for_a_restarted_hub_and_resumes_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("many.pcap");
    std::fs::write(&pcap, many_exchanges(3_000, 20, 6.0)).unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    let (port, url) = (hub.port, hub.url());
    let mut follower = Command::new(env!("CARGO_BIN_EXE_kshark")).args(["observe", "--hub", &url, "-f", "--last", "0", "--format", "ndjson"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // read as it comes (a full pipe would hold the follower up)
    let (mut fout, mut ferr) = (follower.stdout.take().unwrap(), follower.stderr.take().unwrap());
    let shown = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = fout.read_to_string(&mut s);
        s
    });
    let said = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = ferr.read_to_string(&mut s);
        s
    });
    let token = data.join("worker-token");
    let worker = Command::new(env!("CARGO_BIN_EXE_kshark"))
        .args(["worker", "--hub", &url, "--token-file", token.to_str().unwrap(), "--read", pcap.to_str().unwrap(), "--speed", "1", "--shards", "1", "--node", "n"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while serde_json::from_str::<serde_json::Value>(&get(port, "/api/stats", None).1).map(|v| v["entries"].as_u64().unwrap_or(0)).unwrap_or(0) < 500 {
        assert!(t0.elapsed() < Duration::from_secs(20), "nothing stored after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // a graceful stop (SIGTERM, as Kubernetes does), then the hub again on its port
    let mut hub = hub;
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(hub.child.id() as i32, libc::SIGTERM) };
    let _ = hub.child.wait();
    let old_log = hub.log.lock().unwrap().clone();
    drop(hub);
    std::thread::sleep(Duration::from_millis(1500));
    let hub = Hub::start(&data, &format!("127.0.0.1:{port}"), &[]);
    let out = worker.wait_with_output().unwrap();
    let werr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{werr}");
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(follower.id() as i32, libc::SIGTERM) };
    let status = follower.wait().unwrap();
    let (fout, ferr) = (shown.join().unwrap(), said.join().unwrap());
    assert!(ferr.contains("reconnected to the hub"), "the follower did not wait for the hub: {ferr} ({} lines shown, {status:?}); hub: {old_log}; worker: {werr}", fout.lines().count());
    let id = |l: &String| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string();
    let followed: Vec<String> = lines(&fout).iter().map(id).collect();
    let stored: BTreeSet<String> = lines(&stdout(&kshark(&["observe", "--hub", &hub.url(), "--all", "--format", "ndjson"]))).iter().map(id).collect();
    let unique: BTreeSet<String> = followed.iter().cloned().collect();
    assert_eq!(followed.len(), unique.len(), "the follower showed entries twice");
    assert_eq!(stored.len(), 3_000);
    let missed: Vec<_> = stored.difference(&unique).collect();
    assert!(missed.is_empty(), "the follower missed {} of {}, e.g. {:?}: {ferr}", missed.len(), stored.len(), missed.first());
}
