//! Tests of the hub's core (`hub.rs`): subscribers, the join, node gaps.
use super::*;

fn block(batch: u64, from: usize, n: usize) -> Block {
    let lines: Vec<String> = (from..from + n)
        .map(|i| format!(r#"{{"id":"{i}","timestamp":"2026-01-01T00:00:00Z","protocol":"dns","transport":"udp","src":{{"ip":"10.0.0.1","port":1}},"dst":{{"ip":"10.0.0.2","port":53}},"request":null,"response":null}}"#))
        .collect();
    crate::record::decode_batch(crate::record::encode_batch(batch, &lines).into()).unwrap()
}

fn observation(side: &str, node: &str, peer: &str, id: &str, ts: &str) -> String {
    json!({
        "id": id, "timestamp": ts, "protocol": "http", "transport": "tcp", "node": node,
        "src": {"ip": "10.244.11.6", "port": 41000, "pod": {"name": "front-end", "node": "n1"}},
        "dst": {"ip": "10.96.0.20", "port": 80, "pod": {"name": "catalogue-1", "node": "n2"}},
        "request": {"method": "GET", "path": "/x"}, "response": {"status_code": 200},
        "elapsed_time": if side == "client" { 900 } else { 600 }, "anomalies": [],
        "join": {"side": side, "peer": peer, "key": "tcp 10.244.11.6:41000 10.244.12.5:80"},
    })
    .to_string()
}

fn plain(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","timestamp":"2026-01-01T00:00:00Z","protocol":"dns","transport":"udp","src":{{"ip":"10.0.0.1","port":1}},"dst":{{"ip":"10.0.0.2","port":53}},"request":null,"response":null}}"#
    )
}

fn batch_of(n: u64, lines: &[String]) -> Block {
    crate::record::decode_batch(crate::record::encode_batch(n, lines).into()).unwrap()
}

async fn all(hub: &Hub) -> Vec<Value> {
    let f = Filter::compile("").unwrap();
    hub.query(&Query { filter: &f, since: None, limit: 1000, now: 0, stop: None }).unwrap().into_iter().map(|(_, j)| serde_json::from_str(&j).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_observations_of_one_call_are_stored_and_streamed_as_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&HubConfig::new(dir.path())).unwrap();
    let mut live = hub.subscribe(Arc::new(Filter::compile("").unwrap()));
    hub.worker_report("n1/1", true, None);
    hub.worker_report("n2/1", true, None);
    // the client's side comes with an unmarked entry; it alone is stored at once
    let c = observation("client", "n1", "n2", "c1", "2026-01-01T00:00:00.000000000Z");
    hub.ingest(Arc::from("n1/1"), batch_of(1, &[c, plain("p1")])).await.unwrap();
    assert_eq!(all(&hub).await.len(), 1);
    assert_eq!(hub.stats()["hub"]["join_held"], 1);
    let s = observation("server", "n2", "n1", "s1", "2026-01-01T00:00:00.000100000Z");
    hub.ingest(Arc::from("n2/1"), batch_of(1, &[s])).await.unwrap();
    let stored = all(&hub).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    let e = stored.iter().find(|e| e["protocol"] == "http").unwrap();
    assert_eq!((e["id"].as_str(), &e["nodes"], e["observed"].as_str()), (Some("c1"), &json!(["n1", "n2"]), Some("both")));
    assert_eq!((e["server_elapsed_time"].as_i64(), e["network_time"].as_i64()), (Some(600), Some(300)));
    assert!(e.get("join").is_none());
    let mut streamed = [live.rx.recv().await.unwrap(), live.rx.recv().await.unwrap()];
    streamed.sort_by_key(|l| l.seq);
    let last: Value = serde_json::from_slice(&streamed[1].full()).unwrap();
    assert_eq!(last["observed"], "both");
    let st = hub.stats();
    assert_eq!((st["hub"]["joined"].as_u64(), st["hub"]["join_held"].as_u64(), st["entries"].as_u64()), (Some(1), Some(0), Some(2)));
    // a node whose worker leaves is not captured until another comes: said, and timed
    assert_eq!(st["nodes"]["n2"]["captured"], true);
    hub.worker_report("n2/1", false, None);
    assert_eq!((&hub.stats()["nodes"]["n2"]["captured"], &hub.stats()["nodes"]["n2"]["gaps"]), (&json!(false), &json!(1)));
    tokio::time::sleep(Duration::from_millis(120)).await;
    hub.worker_report("n2/2", true, None);
    let n2 = &hub.stats()["nodes"]["n2"];
    assert_eq!((&n2["captured"], &n2["gaps"]), (&json!(true), &json!(1)));
    assert!(n2["uncaptured_seconds"].as_f64().unwrap() >= 0.1, "{n2}");
    hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_side_survives_a_hub_restart_and_a_lonely_one_is_stored_after_its_wait() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&HubConfig::new(dir.path())).unwrap();
    hub.worker_report("n1/1", true, None);
    hub.worker_report("n2/1", true, None);
    let c = observation("client", "n1", "n2", "c1", "2026-01-01T00:00:00Z");
    assert!(matches!(hub.ingest(Arc::from("n1/1"), batch_of(1, std::slice::from_ref(&c))).await.unwrap(), Committed::Stored(_)));
    hub.shutdown();
    // acknowledged, so held in the store: the restarted hub joins it
    let hub = Hub::start(&HubConfig::new(dir.path())).unwrap();
    assert_eq!(hub.stats()["hub"]["join_held"], 1);
    // the worker's resend of that batch is a duplicate, not a second observation
    assert!(matches!(hub.ingest(Arc::from("n1/1"), batch_of(1, &[c])).await.unwrap(), Committed::Duplicate));
    hub.worker_report("n1/1", true, None);
    hub.worker_report("n2/2", true, None);
    hub.ingest(Arc::from("n2/2"), batch_of(1, &[observation("server", "n2", "n1", "s1", "2026-01-01T00:00:00.0002Z")])).await.unwrap();
    let stored = all(&hub).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["observed"], "both");
    // a side whose other never comes is stored alone once its wait is over
    hub.ingest(Arc::from("n2/2"), batch_of(2, &[observation("server", "n2", "n1", "s2", "2026-01-01T00:00:09Z")])).await.unwrap();
    assert_eq!(all(&hub).await.len(), 1);
    let t = Instant::now();
    while all(&hub).await.len() < 2 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = all(&hub).await;
    assert_eq!(stored.len(), 2);
    assert_eq!((stored[1]["observed"].as_str(), &stored[1]["nodes"]), (Some("server"), &json!(["n2"])));
    assert!(t.elapsed() >= crate::join::WAIT / 2, "it waited for its other side");
    assert_eq!(hub.stats()["hub"]["join_alone"], 1);
    hub.shutdown();
    assert_eq!(Store::open(dir.path(), Retention::default()).unwrap().pending().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_cut_loose_and_the_others_get_everything() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&HubConfig { subscriber_queue: 50, ..HubConfig::new(dir.path()) }).unwrap();
    let all = Arc::new(Filter::compile("").unwrap());
    let mut slow = hub.subscribe(all.clone());
    let mut fast = hub.subscribe(all);
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < 1000 {
            let Some(_) = fast.rx.recv().await else { break };
            n += 1;
            s2.store(n, Relaxed);
        }
        n
    });
    for b in 0..40u64 {
        assert!(matches!(hub.ingest(Arc::from("w"), block(b + 1, b as usize * 25, 25)).await.unwrap(), Committed::Stored(_)));
        // the reader keeps up (never more than one batch, half its queue, waiting)
        let t = Instant::now();
        while seen.load(Relaxed) < (b + 1) * 25 && t.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(reader.await.unwrap(), 1000);
    // the slow one got its queue's worth, then its channel closed
    let mut got = 0;
    while slow.rx.recv().await.is_some() {
        got += 1;
    }
    assert!(slow.was_cut());
    assert!((50..1000).contains(&got), "{got}");
    assert_eq!(hub.inner.counters.subscribers_cut.load(Relaxed), 1);
    assert_eq!(hub.stats()["entries"], 1000);
    hub.shutdown();
}
