use crate::testkit::{assert_split_invariant, conversation, C2S, S2C};
use serde_json::json;

fn m(dir: usize, b: &[u8]) -> (usize, Vec<u8>) {
    (dir, b.to_vec())
}

#[test]
fn pipelined_commands_pair_in_order() {
    let msgs = [
        m(C2S, b"*2\r\n$3\r\nGET\r\n$7\r\nuser:42\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"),
        m(S2C, b"$5\r\nalice\r\n+OK\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    ];
    let e = assert_split_invariant(7777, &msgs);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0]["protocol"], "redis");
    assert_eq!(e[0]["request"]["method"], "GET");
    assert_eq!(e[0]["request"]["target"], "user:42");
    assert_eq!(e[0]["response"]["value"], "alice");
    assert_eq!(e[0]["response"]["status"], "OK");
    assert_eq!(e[1]["request"]["args"], json!(["k", "v1"]));
    assert_eq!(e[1]["response"]["type"], "simple");
    assert_eq!(e[2]["response"]["type"], "error");
    assert_eq!(e[2]["response"]["status"], "WRONGTYPE");
    assert!(e[2]["response"]["error"].as_str().unwrap().starts_with("WRONGTYPE"));
    assert!(e.iter().all(|x| x["anomalies"] == json!([])));
}

#[test]
fn multi_exec_and_resp3() {
    let msgs = [
        m(C2S, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"),
        m(S2C, b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        m(C2S, b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\n*1\r\n$4\r\nEXEC\r\n"),
        m(S2C, b"+OK\r\n+QUEUED\r\n*1\r\n:1\r\n"),
    ];
    let e = assert_split_invariant(6379, &msgs);
    let methods: Vec<_> = e.iter().map(|x| x["request"]["method"].as_str().unwrap().to_string()).collect();
    assert_eq!(methods, ["HELLO", "MULTI", "INCR", "EXEC"]);
    assert_eq!(e[0]["response"]["type"], "map");
    assert_eq!(e[0]["response"]["value"], json!({"server": "redis"}));
    assert_eq!(e[2]["response"]["status"], "QUEUED");
    assert_eq!(e[3]["response"]["value"], json!([1]));
}

#[test]
fn pubsub_confirmations_join_their_command_and_messages_stand_alone() {
    let msgs = [
        m(C2S, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n"),
        m(S2C, b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"),
    ];
    let e = assert_split_invariant(6379, &msgs);
    assert_eq!(e.len(), 2, "{e:?}");
    let sub = e.iter().find(|x| x["request"]["method"] == "SUBSCRIBE").unwrap();
    assert_eq!(sub["response"]["value"].as_array().unwrap().len(), 2);
    let msg = e.iter().find(|x| x["request"]["method"] == "MESSAGE").unwrap();
    assert_eq!(msg["request"]["target"], "a");
    assert_eq!(msg["response"], json!(null));
    assert_eq!(msg["anomalies"], json!([]), "a push expects no reply");
}

#[test]
fn inline_commands_on_redis_ports_and_passwords_hidden() {
    let msgs = [m(C2S, b"PING\r\n"), m(S2C, b"+PONG\r\n"), m(C2S, b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n"), m(S2C, b"+OK\r\n")];
    let (e, _) = conversation(6379, &msgs, 0);
    assert_eq!(e[0]["request"]["method"], "PING");
    assert_eq!(e[0]["response"]["status"], "PONG");
    assert_eq!(e[1]["request"]["args"], json!(["[redacted]"]));
    assert!(!serde_json::to_string(&e).unwrap().contains("secret"));
    // the same words on another port are not taken for Redis
    let (e, _) = conversation(8000, &msgs[..2], 0);
    assert!(e.is_empty());
}

#[test]
fn garbage_after_a_command_desyncs_and_is_counted() {
    let msgs = [m(C2S, b"*1\r\n$4\r\nPING\r\n"), m(S2C, b"+PONG\r\n"), m(C2S, b"*1\r\n$4\r\nPING\r\n\x00\x01garbage\r\n")];
    let (e, st) = conversation(6379, &msgs, 0);
    assert_eq!(e.len(), 2);
    assert_eq!(e[1]["anomalies"], json!(["no_response"]));
    assert_eq!(st.l7_malformed, 1);
}
