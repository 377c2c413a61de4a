//! The hub against hostile clients, as an attacker would try it: one test per finding of
//! the hostile-input probe (issue 20), each against a real `kshark hub` process, then a
//! soak that does all of it at once while a worker ingests at full speed. Cross-site
//! pages in a real browser are in `tests/web.rs`
//! (`pages_on_other_origins_and_rebound_names_read_nothing`).
//!
//! Memory is read from the hub's `/proc/PID/status` (VmRSS now, VmHWM the peak).

mod common;

use common::{corpus, http_get, kshark, stderr, Hub};
use futures_util::{SinkExt, StreamExt};
use kshark_hub::client::HubAddr;
use kshark_hub::record::encode_batch;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn proc_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

fn rss_mb(hub: &Hub) -> u64 {
    proc_kb(hub.child.id(), "VmRSS:") / 1024
}

fn peak_mb(hub: &Hub) -> u64 {
    proc_kb(hub.child.id(), "VmHWM:") / 1024
}

fn stats(hub: &Hub) -> Value {
    let (_, _, body) = http_get(&format!("127.0.0.1:{}", hub.port), "/api/stats", None);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A valid entry, `body` bytes of body text (one letter repeated: it compresses well).
fn entry(id: &str, path: &str, body: usize) -> String {
    entry_with(id, path, "x".repeat(body))
}

/// A valid entry whose body is hex of a pseudo-random sequence (it hardly compresses).
fn noisy_entry(id: &str, path: &str, body: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let text: String = (0..body)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            b"0123456789abcdef"[(x >> 60) as usize] as char
        })
        .collect();
    entry_with(id, path, text)
}

fn entry_with(id: &str, path: &str, text: String) -> String {
    let body = text.len();
    json!({"id": id, "timestamp": "2026-12-01T00:00:00Z", "protocol": "http", "transport": "tcp",
        "src": {"ip": "10.0.0.1", "port": 40000}, "dst": {"ip": "10.0.0.2", "port": 80},
        "request": {"method": "GET", "path": path, "headers": {"host": "shop"}, "body": {"size": body, "text": text}},
        "response": {"status_code": 200, "headers": {}, "body": {"size": 0}}})
    .to_string()
}

fn worker_token(hub_data: &std::path::Path) -> String {
    std::fs::read_to_string(hub_data.join("worker-token")).unwrap().trim().to_string()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A worker's ingest connection.
async fn ingest(hub: &Hub, token: &str, worker: &str) -> kshark_hub::client::Socket {
    let addr = HubAddr::parse(&hub.url(), Some(token.into()), None).unwrap();
    addr.websocket(&format!("/api/ingest?worker={worker}")).await.unwrap()
}

/// A worker's connection again, once the hub has let its last one go.
async fn reconnect(hub: &Hub, token: &str, worker: &str) -> kshark_hub::client::Socket {
    let addr = HubAddr::parse(&hub.url(), Some(token.into()), None).unwrap();
    let t = Instant::now();
    loop {
        match addr.websocket(&format!("/api/ingest?worker={worker}")).await {
            Ok(s) => return s,
            Err(e) if t.elapsed() < Duration::from_secs(5) && e.to_string().contains("409") => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Sends batches and waits for each one's answer.
async fn ship(sock: &mut kshark_hub::client::Socket, batches: Vec<Vec<u8>>) -> Vec<Value> {
    let n = batches.len();
    let (mut tx, mut rx) = sock.split();
    let send = async move {
        for b in batches {
            tx.send(Message::Binary(b.into())).await.unwrap();
        }
    };
    let recv = async move {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(60), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => out.push(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(_))) => {}
                other => panic!("no answer for batch {} of {n}: {other:?}", out.len() + 1),
            }
        }
        out
    };
    futures_util::join!(send, recv).1
}

/// A request with headers of our choosing: status and body (read up to its
/// Content-Length, or to the end: the connection may be kept open).
fn raw(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(head_end) = r.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&r[..head_end]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|n| n.trim().parse::<usize>().ok());
            if len.is_some_and(|n| r.len() >= head_end + 4 + n) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => r.extend_from_slice(&buf[..n]),
        }
    }
    let r = String::from_utf8_lossy(&r).into_owned();
    let status = r.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, r.split_once("\r\n\r\n").map(|b| b.1.to_string()).unwrap_or_default())
}

fn encode(s: &str) -> String {
    kshark_hub::client::encode(s)
}

/// Stores `n` entries of `body` bytes through the worker protocol, `per` to a batch,
/// made as they are sent.
fn fill(hub: &Hub, data: &std::path::Path, worker: &str, n: usize, body: usize, per: usize) {
    let token = worker_token(data);
    rt().block_on(async {
        let mut s = ingest(hub, &token, worker).await;
        let batches = n.div_ceil(per);
        let mut b = 0;
        while b < batches {
            let group: Vec<Vec<u8>> = (b..(b + 8).min(batches))
                .map(|b| {
                    let lines: Vec<String> = (b * per..((b + 1) * per).min(n)).map(|i| entry(&format!("{worker}{i}"), &format!("/item/{i}"), body)).collect();
                    encode_batch(b as u64 + 1, &lines)
                })
                .collect();
            b += group.len();
            for reply in ship(&mut s, group).await {
                assert!(reply.get("ack").is_some(), "{reply}");
            }
        }
    });
}

/// Forgets the process's peak memory (VmHWM), so that the next peak is of what follows.
fn reset_peak(hub: &Hub) {
    std::fs::write(format!("/proc/{}/clear_refs", hub.child.id()), "5").expect("resetting a process's peak needs /proc/PID/clear_refs (root, Linux)");
}

/// Finding 1 (the part without a browser): `Host` names that are not the hub's are
/// refused, and `Origin`s that are not its own, with one-line reasons; API responses
/// carry security headers.
#[test]
fn foreign_hosts_and_origins_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), "127.0.0.1:0", &["--allowed-host", "kshark.example.com"]);
    let port = hub.port;
    let (status, body) = raw(port, "GET /api/entries HTTP/1.1\r\nHost: evil.example:8899\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("--allowed-host"), "{body}");
    let (status, _) = raw(port, "GET /api/entries HTTP/1.1\r\nHost: kshark.example.com\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    let (status, body) = raw(port, &format!("GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not this hub's own"), "{body}");
    let (status, _) = raw(port, &format!("GET /api/check?filter=http HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nConnection: close\r\n\r\n"));
    assert_eq!(status, 403);
    // its own origin is fine
    let (status, _) = raw(port, &format!("GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nSec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n"));
    assert_eq!(status, 200);
    let (_, head, _) = http_get(&format!("127.0.0.1:{port}"), "/api/stats", None);
    let head = head.to_ascii_lowercase();
    for h in ["x-content-type-options: nosniff", "x-frame-options: deny", "referrer-policy: no-referrer", "cross-origin-resource-policy: same-origin", "content-security-policy: default-src 'none'", "cache-control: no-store"] {
        assert!(head.contains(h), "no {h:?} in {head}");
    }
    assert_eq!(stats(&hub)["hub"]["refused_origins"], 3);
}

/// Finding 2: a filter's cost is bounded before it is compiled, compiling runs off the
/// request threads, and a pattern built from the entry is refused.
#[test]
fn costly_filters_are_refused_quickly_and_the_api_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    fill(&hub, &data, "f", 4000, 10, 2000);
    let addr = format!("127.0.0.1:{}", hub.port);
    // the probe's filter: 1,200 heavy regexes; and 500 of them (under the length limit, so
    // the regex limit is what refuses it)
    let (status, _, body) = http_get(&addr, &format!("/api/check?filter={}", encode(&vec![r#"path.matches("\\w{20}")"#; 1200].join(" || "))), None);
    assert!(status == 414 || (status == 200 && body.contains("limit")), "{status} {body}");
    let heavy = vec![r#"path.matches("\\w{20}")"#; 500].join(" || ");
    let t = Instant::now();
    // four at once, as the probe did, while the API is asked something else
    let askers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, heavy) = (addr.clone(), heavy.clone());
            std::thread::spawn(move || http_get(&addr, &format!("/api/entries?filter={}", encode(&heavy)), None))
        })
        .collect();
    let (status, _, _) = http_get(&addr, "/api/stats", None);
    assert_eq!(status, 200);
    for a in askers {
        let (status, _, body) = a.join().unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("more than 16 regular expressions"), "{body}");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "costly filters took {:?}", t.elapsed());
    // sixteen regexes of the heaviest kind allowed: each bounded in memory
    let sixteen = vec![r#"path.matches("\\w{5}")"#; 16].join(" || ");
    let (status, _, body) = http_get(&addr, &format!("/api/entries?limit=10&filter={}", encode(&sixteen)), None);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http_get(&addr, &format!("/api/check?filter={}", encode(r#"path.matches("\\w{200}")"#)), None);
    assert!(status == 200 && body.contains("bad regex"), "{body}");
    // a pattern from the entry: one regex per entry, refused
    let (status, _, body) = http_get(&addr, &format!("/api/entries?filter={}", encode(r#"path.matches(path + "x")"#)), None);
    assert!(status == 400 && body.contains("quoted pattern"), "{body}");
    assert!(peak_mb(&hub) < 200, "the hub peaked at {} MB", peak_mb(&hub));
    assert!(stats(&hub)["hub"]["filters_refused"].as_u64().unwrap() >= 5);
}

/// Upgrades `s` to a stream of `filter`, and then never reads from it.
fn never_reading(port: u16, filter: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /api/stream?filter={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", encode(filter)).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    s
}

/// Finding 3: subscribers that never read are cut by the bytes they hold, and what a
/// selective one holds is its own entries, not the batches they came in.
#[test]
fn subscribers_that_never_read_are_cut_by_the_bytes_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    // one wants everything, one a tenth; neither reads
    let all = never_reading(hub.port, "true");
    let tenth = never_reading(hub.port, r#"path.endsWith("0")"#);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_mb(&hub);
    // 1,500 entries of 100 KB (150 MB), ten to a batch
    fill(&hub, &data, "w", 1500, 100_000, 10);
    std::thread::sleep(Duration::from_secs(2));
    let grew = rss_mb(&hub).saturating_sub(before);
    let s = stats(&hub);
    eprintln!("two subscribers that never read, 150 MB stored: the hub grew by {grew} MB; {}", s["hub"]);
    assert_eq!(s["hub"]["subscribers_cut"], 1, "{}", s["hub"]);
    assert!(hub.log.lock().unwrap().contains("cut loose"));
    // the selective one holds its 150 entries (15 MB), not the 150 batches they were in
    let held = s["hub"]["subscribers_held_bytes"].as_u64().unwrap();
    // (what its socket's buffers took is no longer held)
    assert!(held > 5_000_000 && held < 20_000_000, "the one that wants a tenth holds {held} bytes");
    assert!(grew < 200, "the hub grew by {grew} MB");
    // the one cut loose is let go at once, with what it had queued: its connection is
    // closed, not left to the idle timeout (60 s)
    let mut all = all;
    all.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    let end = all.read_to_end(&mut sink);
    assert!(!matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)), "the cut subscriber's connection is still open ({} bytes read)", sink.len());
    drop(tenth);
}

/// Finding 4: a large answer is streamed (the hub's memory does not grow with it), and
/// its query stops when its client leaves.
#[test]
fn large_answers_are_streamed_and_stop_when_the_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    let port = hub.port;
    fill(&hub, &data, "w", 300_000, 10, 2000);
    std::thread::sleep(Duration::from_secs(1));
    reset_peak(&hub);
    let before = peak_mb(&hub);
    let t = Instant::now();
    let (status, _, body) = http_get(&format!("127.0.0.1:{port}"), "/api/entries?limit=1000000&format=ndjson", None);
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 300_000);
    let grew = peak_mb(&hub).saturating_sub(before);
    eprintln!("300,000 entries ({} MB) streamed in {:?}; the hub's peak rose by {grew} MB", body.len() >> 20, t.elapsed());
    assert!(grew < 60, "one answer of {} MB raised the hub's peak by {grew} MB", body.len() >> 20);
    // a client that leaves after the first bytes: its query stops
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /api/entries?limit=1000000&filter={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", encode(r#"request.body.text.contains("x")"#)).unwrap();
    let mut first = [0u8; 4096];
    let _ = s.read(&mut first).unwrap();
    drop(s);
    let t = Instant::now();
    while stats(&hub)["hub"]["queries_cancelled"] == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the query went on after its client left");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finding 5: connections that send nothing are closed after the header-read timeout,
/// idle ones after the idle timeout, and beyond the cap new ones are refused; all counted.
#[test]
fn idle_and_slow_connections_are_closed_and_the_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), "127.0.0.1:0", &["--max-connections", "50", "--header-timeout", "1s", "--idle-timeout", "2s"]);
    let conns: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(("127.0.0.1", hub.port)).unwrap()).collect();
    let t = Instant::now();
    let mut closed = 0;
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 64];
        // closed by the hub: end of stream (or a reset), well before our own timeout
        if matches!(c.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 60);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let s = stats(&hub);
    assert!(s["hub"]["connections_refused"].as_u64().unwrap() >= 10, "{}", s["hub"]);
    assert!(s["hub"]["connections_timed_out"].as_u64().unwrap() >= 50, "{}", s["hub"]);
    // a keep-alive connection that goes quiet after a request is closed too
    let mut c = TcpStream::connect(("127.0.0.1", hub.port)).unwrap();
    write!(c, "GET /api/stats HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(t.elapsed() < Duration::from_secs(5), "an idle keep-alive connection stayed {:?}", t.elapsed());
}

/// A capture of `n` HTTP exchanges with `body`-byte responses, on 10 connections.
fn big_bodies(n: usize, body: usize) -> Vec<u8> {
    use kshark_dissect::testkit::{pcap_bytes, TcpConv, C2S, S2C};
    let mut frames = Vec::new();
    for c in 0..10 {
        let mut t = TcpConv::new(([10, 9, 0, c as u8 + 1], 40000 + c as u16), ([10, 9, 255, 1], 8080), [1000, 2000]);
        t.handshake();
        for i in 0..n / 10 {
            t.send(C2S, format!("GET /big/{c}/{i} HTTP/1.1\r\nHost: shop\r\n\r\n").as_bytes(), &[]);
            let text: String = (0..body).map(|k| (b'a' + ((k * 7 + i) % 26) as u8) as char).collect();
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body}\r\n\r\n{text}");
            t.send(S2C, resp.as_bytes(), &vec![1448; resp.len() / 1448]);
        }
        t.close();
        frames.extend(t.frames);
    }
    // spread over 4 s, replayed at that pace (as fast as it reads, one shard drops)
    common::spread(&mut frames, 4.0);
    pcap_bytes(1, &frames)
}

/// Finding 6: a worker's large batches are split by bytes, below the message limit they
/// share with the hub; a message over it is refused, counted and said on both sides.
#[test]
fn four_hundred_exchanges_with_64_kib_bodies_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    let pcap = dir.path().join("big.pcap");
    std::fs::write(&pcap, big_bodies(400, 64 << 10)).unwrap();
    let token = data.join("worker-token");
    let o = kshark(&["worker", "--hub", &hub.url(), "--token-file", token.to_str().unwrap(), "--read", pcap.to_str().unwrap(), "--speed", "1", "--shards", "1", "--stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("400 entries acknowledged"), "{}", stderr(&o));
    let s = stats(&hub);
    assert_eq!(s["entries"], 400, "{s}");
    let ship: Value = serde_json::from_str(stderr(&o).lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(ship["ship"]["connects"], 1, "the worker reconnected: {}", ship["ship"]);
    assert!(ship["ship"]["batches_sent"].as_u64().unwrap() >= 7, "batches were not split by bytes: {}", ship["ship"]);

    // a message over the limit, sent by hand: refused with 1009, counted, said
    let w = worker_token(&data);
    rt().block_on(async {
        let mut s = ingest(&hub, &w, "oversized").await;
        // the hub may close before all of it is sent
        let _ = s.send(Message::Binary(vec![0u8; kshark_hub::record::MAX_MESSAGE + 1].into())).await;
        while let Some(Ok(m)) = s.next().await {
            if let Message::Close(Some(f)) = m {
                assert_eq!(u16::from(f.code), 1009, "{}", f.reason);
                assert!(f.reason.contains("limit"), "{}", f.reason);
                break;
            }
        }
    });
    assert_eq!(stats(&hub)["hub"]["oversized_messages"], 1);
    assert!(hub.log.lock().unwrap().contains("over the limit of 16777216 bytes"));
}

/// Findings 7 and 8: decompression bombs, lies about sizes, huge and deep entries, huge
/// counters, lone surrogates; batch numbers far beyond a worker's last, and a second
/// connection under a connected worker's id.
#[test]
fn bombs_lies_and_takeovers_are_refused_before_they_cost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    let w = worker_token(&data);
    let before = peak_mb(&hub);
    rt().block_on(async {
        // 29 bytes that declare 256 MiB
        let mut s = ingest(&hub, &w, "bomber").await;
        let mut lie = (256u32 << 20).to_le_bytes().to_vec();
        lie.extend_from_slice(&[0x1f; 25]);
        s.send(Message::Binary(lie.into())).await.unwrap();
        let reply = s.next().await.unwrap().unwrap();
        assert!(reply.to_text().unwrap().contains("over the limit"), "{reply}");
        drop(s);
        // LZ4 bombs: 60 MiB of valid entries in well under 1 MB each, eight per
        // connection on two connections at once
        let line = entry("x", "/bomb", 100);
        let per = (60 << 20) / (line.len() + 1);
        let bomb = |n: u64, worker: &str| {
            let lines: Vec<String> = (0..per).map(|i| line.replace("\"id\":\"x\"", &format!("\"id\":\"{worker}-{n}-{i}\""))).collect();
            encode_batch(n, &lines)
        };
        let a: Vec<Vec<u8>> = (1..=8).map(|n| bomb(n, "a")).collect();
        let b: Vec<Vec<u8>> = (1..=8).map(|n| bomb(n, "b")).collect();
        eprintln!("bomb: {} KB each, {} entries", a[0].len() >> 10, per);
        let (mut sa, mut sb) = (ingest(&hub, &w, "bomb-a").await, ingest(&hub, &w, "bomb-b").await);
        let (ra, rb) = futures_util::join!(ship(&mut sa, a), ship(&mut sb, b));
        // taken (they are valid), but within the budget
        assert!(ra.iter().chain(&rb).all(|r| r.get("ack").is_some()), "{ra:?} {rb:?}");

        // an entry over the entry limit, nesting, lone surrogates, duplicate ids
        let mut s = ingest(&hub, &w, "shapes").await;
        let huge = entry("h", "/huge", 5 << 20);
        let deep = entry("d", "/deep", 1).replace("\"response\":", &format!("\"x\":{}1{},\"response\":", "[".repeat(1_000_000), "]".repeat(1_000_000)));
        let lone = entry("l", "/lone", 1).replace("\"/lone\"", "\"/lone\\ud800\"");
        let replies = ship(&mut s, vec![encode_batch(1, &[huge]), encode_batch(2, &[deep]), encode_batch(3, &[entry("u", "/u", 1), entry("u", "/u", 1)]), encode_batch(4, &[lone])]).await;
        assert!(replies[0]["error"].as_str().unwrap().contains("over the limit of 4194304 for an entry"), "{}", replies[0]);
        assert!(replies[1]["error"].as_str().unwrap().contains("nested deeper than 64"), "{}", replies[1]);
        assert!(replies[2]["error"].as_str().unwrap().contains("appears twice"), "{}", replies[2]);
        assert_eq!(replies[3]["ack"], 4, "{}", replies[3]);
        // counters far over the limit are ignored (and counted)
        s.send(Message::Text(json!({"stats": {"junk": "y".repeat(200_000)}}).to_string().into())).await.unwrap();

        // a second connection under a connected worker's id is refused
        let addr = HubAddr::parse(&hub.url(), Some(w.clone()), None).unwrap();
        let taken = addr.websocket("/api/ingest?worker=shapes").await.expect_err("a second connection under the same id");
        assert!(taken.to_string().contains("409") && taken.to_string().contains("connected already"), "{taken}");
        // batch 2^64-1 under another worker's id: refused, and that worker's next batch is
        // still taken
        let mut s2 = ingest(&hub, &w, "victim").await;
        let r = ship(&mut s2, vec![encode_batch(1, &[entry("v1", "/v", 1)])]).await;
        assert_eq!(r[0]["ack"], 1);
        drop(s2);
        let mut evil = reconnect(&hub, &w, "victim").await;
        let r = ship(&mut evil, vec![encode_batch(u64::MAX, &[entry("v-evil", "/evil", 1)])]).await;
        assert!(r[0]["refused"] == json!(u64::MAX) && r[0]["error"].as_str().unwrap().contains("far beyond"), "{}", r[0]);
        drop(evil);
        let mut s2 = reconnect(&hub, &w, "victim").await;
        let r = ship(&mut s2, vec![encode_batch(2, &[entry("v2", "/v2", 1)])]).await;
        assert_eq!(r[0]["ack"], 2);
    });
    let grew = peak_mb(&hub).saturating_sub(before);
    assert!(grew < 512, "bombs raised the hub's peak by {grew} MB");
    eprintln!("bombs: the hub's peak rose by {grew} MB");
    let s = stats(&hub);
    assert!(s["hub"]["oversized_messages"].as_u64().unwrap() >= 1, "{}", s["hub"]);
    assert_eq!(s["hub"]["refused_batch_numbers"], 1, "{}", s["hub"]);
    assert!(s["workers"]["shapes"]["stats"].is_null(), "oversized counters were kept");
    // the mended entry reads as valid JSON, and the victim's entries are both there
    let (_, _, body) = http_get(&format!("127.0.0.1:{}", hub.port), &format!("/api/entries?format=ndjson&filter={}", encode(r#"path.startsWith("/lone") || path.startsWith("/v")"#)), None);
    let got: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).expect("valid JSON")).collect();
    let paths: Vec<&str> = got.iter().map(|e| e["request"]["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/lone\u{fffd}", "/v", "/v2"]);
}

/// Finding 9: a size limit bounds the files on disk; empty and overflowing values are
/// refused.
#[test]
fn retention_bounds_the_files_and_refuses_nonsense() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "213503982334602d", "2MB,", "0B"] {
        // refused at once; a hub that takes it runs (and is stopped here)
        let mut child = std::process::Command::new(common::bin())
            .args(["hub", "--listen", "127.0.0.1:0", "--data", dir.path().join("x").to_str().unwrap(), "--retention", bad])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        assert_eq!(status.and_then(|s| s.code()), Some(2), "--retention {bad:?} was taken: {err}");
    }
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &["--retention", "2MB"]);
    // ~30 MB of entries, in many batches
    for round in 0..15 {
        let token = worker_token(&data);
        rt().block_on(async {
            let mut s = ingest(&hub, &token, &format!("r{round}")).await;
            let batches: Vec<Vec<u8>> = (0..10).map(|b| encode_batch(b + 1, &(0..100).map(|i| noisy_entry(&format!("{round}-{b}-{i}"), "/r", 2000, round * 10_000 + b * 100 + i)).collect::<Vec<_>>())).collect();
            ship(&mut s, batches).await;
        });
    }
    let files = || std::fs::read_dir(&data).unwrap().filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("kshark.db")).map(|e| e.metadata().unwrap().len()).sum::<u64>();
    let t = Instant::now();
    while files() > 2_000_000 {
        assert!(t.elapsed() < Duration::from_secs(10), "the store's files stay at {} bytes over a 2 MB limit: {:?} {}", files(), std::fs::read_dir(&data).unwrap().filter_map(Result::ok).map(|e| (e.file_name(), e.metadata().unwrap().len())).collect::<Vec<_>>(), stats(&hub)["hub"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = stats(&hub);
    assert!(s["hub"]["retention_deleted"].as_u64().unwrap() > 10_000, "{}", s["hub"]);
    eprintln!("files {} bytes after 15,000 entries of 2 KB under --retention 2MB", files());
}

/// The hub stops within 5 s of SIGTERM, whatever its clients are doing.
#[test]
fn the_hub_stops_within_seconds_with_streams_queries_and_idle_clients() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let mut hub = Hub::start(&data, "127.0.0.1:0", &[]);
    fill(&hub, &data, "f", 100_000, 200, 2000);
    let port = hub.port;
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET /api/stream?last=100000&filter={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", encode(r#"request.body.text.contains("x")"#)).unwrap();
        streams.push(s);
    }
    // the probe's query that went on after its client left: a pattern made from each
    // entry (refused now; it compiled a regex per entry)
    let mut left = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(left, "GET /api/entries?limit=1000000&filter={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", encode(r#"path.matches(path + "[a-z]{1,20}")"#)).unwrap();
    drop(left);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(hub.child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(s) = hub.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "the hub is still running {:?} after SIGTERM", t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", hub.log.lock().unwrap());
    drop((idle, streams));
}

/// Everything at once for a while: a worker ingests at full speed while cross-site
/// requests, bomb batches, regex-heavy filters and subscribers that never read hit the
/// hub. Its memory stays under 512 MB and the worker's entries are all stored, once.
#[test]
fn soak_everything_at_once_stays_under_512_mb_and_loses_nothing() {
    let secs: u64 = std::env::var("KSHARK_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Hub::start(&data, "127.0.0.1:0", &[]);
    let port = hub.port;
    let w = worker_token(&data);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut attackers = Vec::new();
    // cross-site and rebinding requests
    let s = stop.clone();
    attackers.push(std::thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let (a, _) = raw(port, "GET /api/entries?limit=1000 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
            let (b, _) = raw(port, &format!("GET /api/entries?limit=1000 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n"));
            assert!(a == 421 && b == 403, "{a} {b}");
            n += 2;
        }
        n
    }));
    // regex-heavy filters, allowed and refused, on queries and streams
    let s = stop.clone();
    attackers.push(std::thread::spawn(move || {
        let heavy = encode(&vec![r#"path.matches("\\w{20}")"#; 1200].join(" || "));
        let sixteen = encode(&vec![r#"path.matches("[a-z]+/[0-9]+x")"#; 16].join(" || "));
        let mut n = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let (a, _, _) = http_get(&format!("127.0.0.1:{port}"), &format!("/api/check?filter={heavy}"), None);
            let (b, _, _) = http_get(&format!("127.0.0.1:{port}"), &format!("/api/entries?limit=2000&filter={sixteen}"), None);
            assert!(a == 200 && b == 200, "{a} {b}");
            n += 2;
        }
        n
    }));
    // subscribers that never read, coming back as they are cut
    let s = stop.clone();
    attackers.push(std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut n = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            held.retain(|c: &TcpStream| c.peer_addr().is_ok());
            while held.len() < 8 {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                write!(c, "GET /api/stream?filter={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", encode(if n.is_multiple_of(2) { "true" } else { r#"path.endsWith("7")"# })).unwrap();
                held.push(c);
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        n
    }));
    // bombs and lies from a token holder
    let (s, token, hub_url) = (stop.clone(), w.clone(), hub.url());
    attackers.push(std::thread::spawn(move || {
        let line = entry("x", "/bomb", 100);
        let per = (40 << 20) / (line.len() + 1);
        let mut n = 0u64;
        let rt = rt();
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            rt.block_on(async {
                let addr = HubAddr::parse(&hub_url, Some(token.clone()), None).unwrap();
                let Ok(mut sock) = addr.websocket(&format!("/api/ingest?worker=bomber-{n}")).await else { return };
                let lines: Vec<String> = (0..per).map(|i| line.replace("\"id\":\"x\"", &format!("\"id\":\"b{n}-{i}\""))).collect();
                let mut lie = (64u32 << 20).to_le_bytes().to_vec();
                lie.extend_from_slice(&[7; 25]);
                let _ = sock.send(Message::Binary(lie.into())).await;
                // a real bomb (40 MB in well under 1 MB), its first entry broken: decompressed,
                // then refused whole
                let mut broken = vec!["{\"id\":".to_string()];
                broken.extend(lines);
                let _ = sock.send(Message::Binary(encode_batch(1, &broken).into())).await;
                let _ = tokio::time::timeout(Duration::from_secs(20), async { while let Some(Ok(m)) = sock.next().await { if m.to_text().is_ok_and(|t| t.contains("refused\":1")) { break; } } }).await;
            });
            n += 1;
        }
        n
    }));
    // the worker: corpus entries cycled, as fast as the hub takes them
    let lines: Vec<String> = {
        let files: Vec<_> = std::fs::read_dir(corpus().join("pcaps")).unwrap().map(|e| e.unwrap().path()).collect();
        let mut all = Vec::new();
        for f in files.iter().take(20) {
            let o = kshark(&["read", f.to_str().unwrap(), "--format", "ndjson"]);
            all.extend(String::from_utf8_lossy(&o.stdout).lines().map(str::to_string));
        }
        all
    };
    assert!(lines.len() > 100);
    let sampler = {
        let s = stop.clone();
        let pid = hub.child.id();
        std::thread::spawn(move || {
            let mut most = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(proc_kb(pid, "VmRSS:") / 1024);
                std::thread::sleep(Duration::from_millis(200));
            }
            most
        })
    };
    let sent = rt().block_on(async {
        let mut sock = ingest(&hub, &w, "soak-worker").await;
        let mut batch = 0u64;
        let mut sent = 0usize;
        while Instant::now() < until {
            let group: Vec<Vec<u8>> = (0..8)
                .map(|_| {
                    batch += 1;
                    let entries: Vec<String> = (0..2000).map(|i| {
                        let l = &lines[(sent + i) % lines.len()];
                        let v: Value = serde_json::from_str(l).unwrap();
                        let mut v = v;
                        v["id"] = json!(format!("soak-{batch}-{i}"));
                        v.to_string()
                    }).collect();
                    sent += entries.len();
                    encode_batch(batch, &entries)
                })
                .collect();
            for r in ship(&mut sock, group).await {
                assert!(r.get("ack").is_some(), "{r}");
            }
        }
        sent
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.join().unwrap();
    let counts: Vec<u64> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    let s = stats(&hub);
    eprintln!("soak {secs} s: {sent} entries ingested; attacks {counts:?}; hub RSS at most {most} MB (peak {} MB); {}", peak_mb(&hub), s["hub"]);
    assert!(most < 512, "the hub's RSS reached {most} MB");
    // nothing lost, nothing twice: every entry the worker sent is stored once
    let (_, _, body) = http_get(&format!("127.0.0.1:{port}"), &format!("/api/entries?limit=100000000&format=ndjson&filter={}", encode(r#"id.startsWith("soak-")"#)), None);
    let ids: std::collections::HashSet<String> = body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(body.lines().count(), sent, "stored {} of {sent}", body.lines().count());
    assert_eq!(ids.len(), sent, "duplicates stored");
    assert!(counts.iter().all(|n| *n > 0), "an attacker never ran: {counts:?}");
}

/// Every live stream's filter runs on every stored entry, on the writer's thread: at most
/// 64 are served at once, and the next is refused with a reason, counted.
#[test]
fn live_streams_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), "127.0.0.1:0", &[]);
    let open: Vec<TcpStream> = (0..kshark_hub::hub::MAX_SUBSCRIBERS).map(|_| never_reading(hub.port, "http")).collect();
    let (status, body) = raw(hub.port, "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("live streams are open"), "{body}");
    assert_eq!(stats(&hub)["hub"]["streams_refused"], 1);
    // one goes, and another may come
    drop(open);
    let t = Instant::now();
    while stats(&hub)["hub"]["subscribers"].as_u64().unwrap() >= kshark_hub::hub::MAX_SUBSCRIBERS as u64 {
        assert!(t.elapsed() < Duration::from_secs(5), "closed streams still count");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(never_reading(hub.port, "http"));
}
