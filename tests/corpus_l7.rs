//! Every capture of the shared L7 corpus (Redis, PostgreSQL, MySQL, Kafka, AMQP, MongoDB,
//! MQTT, WebSocket) through `kshark read`, graded by the shared `score_l7.py` against
//! tshark's reading: no failed capture, no schema error, and every operation tshark found
//! matched, except where tshark (or the oracle's JSON) is wrong. Those are listed here with
//! the bytes that show it, and the test fails if any other operation is missed.
//!
//! Where tshark is wrong:
//! - Redis (deepflow_redis_redis, deepflow_redis_redis-debug, zeek_pop3_redis-50-pings): the
//!   oracle's JSON repeats the key `resp.bulk_string.value` inside one array and only the
//!   last survives, so each command is counted by its last argument. Frame 1 of
//!   deepflow_redis_redis is `2a 32 0d 0a 24 33 0d 0a 47 45 54 0d 0a 24 31 38 ...`
//!   (`*2 $3 GET $18 user_conf_config_1`): a GET, counted by the oracle as
//!   `USER_CONF_CONFIG_1`. kshark reads `GET` with target `user_conf_config_1`.
//! - zeek_mysql_caching_sha2_password frame 22 (`00 01 00 05 ca 33 89 2e ...`): a 256-byte
//!   packet with sequence id 5 inside the login, the password encrypted with the server's
//!   RSA key after AuthMoreData; tshark reads its first byte (0xca) as command 202.
//!   zeek_mysql_mysql8-navicat-login-failed has the same with command 125.
//! - deepflow_mysql_partial-packet-compressed frame 1 (`41 00 00 00 00 00 00 3d 00 00 00 03
//!   53 45 4c 45 43 54 ...`): a compressed packet (65 bytes, sequence 0, stored) holding
//!   COM_QUERY `SELECT * FROM \`process\` ...`; tshark, told only the port, reads a login.
//!   kshark reads the two queries of the capture.
//! - deepflow_kafka_11-join-group-v7 and deepflow_kafka_14-sync-group-v5: the decode-as in
//!   MANIFEST.tsv names the client's port, so tshark reads the client's request (`00 00 00
//!   8d 00 0b 00 07`: API 11, JoinGroup, version 7) as a response and the broker's response
//!   as a "Produce v120" request. kshark reads JoinGroup and SyncGroup.
//!
//! Where kshark reads more (extras, not failures): the oracle's JSON keeps one of several
//! messages in one frame (ten MQTT PUBLISH in deepflow_mqtt_mqtt_one_packet_multi_publish,
//! an AMQP publish beside its content in deepflow_amqp_amqp3); SSLRequests are entries
//! (tshark does not count them as operations); MongoDB's commands (tshark counts none).

mod common;
use std::collections::BTreeSet;
use std::process::Command;

/// The operations tshark's oracle counts that kshark, rightly, does not: (capture, key).
const TSHARK_WRONG: &[(&str, &str)] = &[
    ("deepflow_redis_redis-debug.pcap", "299"),
    ("deepflow_redis_redis-debug.pcap", "XXX"),
    ("deepflow_redis_redis.pcap", "1 1 HTTP://127.0.0.1:20013/V2/POD-GROUPS"),
    ("deepflow_redis_redis.pcap", "USER_CONF_CONFIG_1"),
    ("deepflow_redis_redis.pcap", "VERIFY_CODE"),
    ("zeek_pop3_redis-50-pings.pcap", "5.0.8"),
    ("zeek_pop3_redis-50-pings.pcap", "REDIS-PY"),
    ("zeek_pop3_redis-50-pings.pcap", "ZEEK"),
    ("zeek_mysql_caching_sha2_password.pcap", "COM_202"),
    ("zeek_mysql_mysql8-navicat-login-failed.pcap", "COM_125"),
    ("deepflow_mysql_partial-packet-compressed.pcap", "LOGIN"),
    ("deepflow_kafka_11-join-group-v7.pcap", "PRODUCE"),
    ("deepflow_kafka_14-sync-group-v5.pcap", "PRODUCE"),
];

#[test]
fn l7_corpus_matches_tshark_where_tshark_is_right() {
    let corpus = common::corpus().join("../corpus-l7");
    assert!(corpus.join("oracle").is_dir(), "{} is missing: the L7 corpus is read from ../shared/corpus-l7", corpus.display());
    let bin = env!("CARGO_BIN_EXE_kshark");
    let out = Command::new("python3")
        .arg(corpus.join("../tools/score_l7.py"))
        .args(["--oracle", corpus.join("oracle").to_str().unwrap()])
        .args(["--pcaps", corpus.join("pcaps").to_str().unwrap()])
        .args(["--run", &format!("{bin} read {{}} --format ndjson"), "-v"])
        .output()
        .expect("python3 runs score_l7.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "score_l7.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let last = text.lines().last().unwrap_or_default();
    eprintln!("{last}");
    assert!(last.contains("schema errors: 0"), "{last}");
    assert!(last.contains("failed captures: 0"), "{last}");
    // every operation tshark counts and kshark does not, by capture
    let mut missed = BTreeSet::new();
    let mut capture = String::new();
    for l in text.lines() {
        if !l.starts_with(' ') {
            capture = l.split_whitespace().next().unwrap_or_default().to_string();
            continue;
        }
        // "    redis        GET                          tshark 1, reader 0"
        let Some((left, counts)) = l.rsplit_once("tshark ") else { continue };
        let (t, r) = counts.split_once(", reader ").expect("tshark N, reader M");
        let (t, r): (u64, u64) = (t.trim().parse().unwrap(), r.trim().parse().unwrap());
        if t > r {
            let key = left.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
            missed.insert((capture.clone(), key));
        }
    }
    let known: BTreeSet<(String, String)> = TSHARK_WRONG.iter().map(|(c, k)| (c.to_string(), k.to_string())).collect();
    let unexplained: Vec<_> = missed.difference(&known).collect();
    assert!(unexplained.is_empty(), "operations tshark found that kshark missed: {unexplained:?}\n{text}");
    // and the matched share: all but the operations above
    let matched: u64 = last.split('(').nth(1).and_then(|s| s.split('/').next()).and_then(|s| s.parse().ok()).expect("M/N matched");
    assert!(matched >= 357, "{last}");
}
