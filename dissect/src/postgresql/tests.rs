use crate::testkit::{assert_split_invariant, conversation, C2S, S2C};
use serde_json::json;

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn untyped(code: u32, body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32 + 8).to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn startup() -> Vec<(usize, Vec<u8>)> {
    vec![
        (C2S, untyped(super::wire::SSL_REQUEST, b"")),
        (S2C, b"N".to_vec()),
        (C2S, untyped(super::wire::PROTOCOL_3, b"user\0bob\0database\0shop\0\0")),
        (S2C, cat(&[msg(b'R', &5i32.to_be_bytes()), msg(b'R', &0i32.to_be_bytes()), msg(b'S', b"server_version\x0016.1\0"), msg(b'K', &[0; 8]), msg(b'Z', b"I")])),
    ]
}

#[test]
fn startup_queries_and_errors() {
    let mut msgs = startup();
    msgs.push((C2S, msg(b'Q', b"SELECT id FROM users\0")));
    let row_desc = cat(&[msg(b'T', &[&1i16.to_be_bytes()[..], b"id\0", &[0; 18]].concat()), msg(b'D', b"\0\x01\0\0\0\x011"), msg(b'D', b"\0\x01\0\0\0\x012")]);
    msgs.push((S2C, cat(&[row_desc, msg(b'C', b"SELECT 2\0"), msg(b'Z', b"I")])));
    msgs.push((C2S, msg(b'Q', b"SELECT * FROM nope\0")));
    msgs.push((S2C, cat(&[msg(b'E', b"SERROR\0C42P01\0Mrelation \"nope\" does not exist\0\0"), msg(b'Z', b"I")])));
    let e = assert_split_invariant(5432, &msgs);
    let methods: Vec<_> = e.iter().map(|x| x["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["SSLRequest", "Startup", "Query", "Query"]);
    assert_eq!(e[0]["response"]["status"], "refused");
    assert_eq!(e[1]["request"]["user"], "bob");
    assert_eq!(e[1]["request"]["target"], "shop");
    assert_eq!(e[1]["response"]["auth"], json!(["md5", "ok"]));
    assert_eq!(e[1]["response"]["server_version"], "16.1");
    assert_eq!(e[2]["request"]["target"], "users");
    assert_eq!(e[2]["response"]["command_tag"], "SELECT 2");
    assert_eq!(e[2]["response"]["rows"], 2);
    assert_eq!(e[2]["response"]["columns"], json!(["id"]));
    assert_eq!(e[3]["response"]["status"], "42P01");
    assert_eq!(e[3]["response"]["error"]["code"], "42P01");
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}

#[test]
fn extended_protocol_batches_and_a_skipped_execute() {
    let bind = |v: &[u8]| msg(b'B', &[&b"\0s1\0\0\0\0\x01"[..], &(v.len() as i32).to_be_bytes(), v, b"\0\0"].concat());
    let mut msgs = startup();
    msgs.push((C2S, cat(&[msg(b'P', b"s1\0SELECT name FROM items WHERE id = $1\0\0\0"), bind(b"7"), msg(b'E', b"\0\0\0\0\0"), msg(b'S', b"")])));
    msgs.push((S2C, cat(&[msg(b'1', b""), msg(b'2', b""), msg(b'D', b"\0\x01\0\0\0\x01x"), msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I")])));
    // two executions in one batch; the first fails, the server skips the second
    msgs.push((C2S, cat(&[bind(b"x"), msg(b'E', b"\0\0\0\0\0"), bind(b"8"), msg(b'E', b"\0\0\0\0\0"), msg(b'S', b"")])));
    msgs.push((S2C, cat(&[msg(b'E', b"SERROR\0C22P02\0Minvalid input syntax\0\0"), msg(b'Z', b"I")])));
    let e = assert_split_invariant(5432, &msgs);
    let ex: Vec<_> = e.iter().filter(|x| x["request"]["method"] == "Execute").collect();
    assert_eq!(ex.len(), 3, "{e:?}");
    assert_eq!(ex[0]["request"]["query"], "SELECT name FROM items WHERE id = $1");
    assert_eq!(ex[0]["request"]["parameters"], json!(["7"]));
    assert_eq!(ex[0]["request"]["target"], "items");
    assert_eq!(ex[0]["response"]["command_tag"], "SELECT 1");
    assert_eq!(ex[1]["response"]["status"], "22P02");
    assert_eq!(ex[2]["response"]["status"], "skipped");
}

#[test]
fn copy_in_and_a_failed_login() {
    let mut msgs = startup();
    msgs.push((C2S, msg(b'Q', b"COPY t FROM STDIN\0")));
    msgs.push((S2C, msg(b'G', b"\0\0\x01\0\0")));
    msgs.push((C2S, cat(&[msg(b'd', b"1\n"), msg(b'd', b"2\n"), msg(b'c', b"")])));
    msgs.push((S2C, cat(&[msg(b'C', b"COPY 2\0"), msg(b'Z', b"I")])));
    let (e, st) = conversation(5432, &msgs, 0);
    let copy = e.iter().find(|x| x["request"]["method"] == "Query").unwrap();
    assert_eq!(copy["response"]["command_tag"], "COPY 2");
    assert_eq!(copy["response"]["copy"], "in");
    assert_eq!(st.l7_malformed, 0);

    let msgs = vec![
        (C2S, untyped(super::wire::PROTOCOL_3, b"user\0eve\0\0")),
        (S2C, msg(b'E', b"SFATAL\0C28P01\0Mpassword authentication failed for user \"eve\"\0\0")),
    ];
    let e = assert_split_invariant(9999, &msgs);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["response"]["status"], "28P01");
    assert_eq!(e[0]["response"]["error"]["severity"], "FATAL");
}

#[test]
fn tls_accepted_ends_the_reading_quietly() {
    let msgs = vec![(C2S, untyped(super::wire::SSL_REQUEST, b"")), (S2C, b"S".to_vec()), (C2S, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec())];
    let (e, st) = conversation(5432, &msgs, 0);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["response"]["status"], "accepted");
    assert_eq!((st.l7_malformed, st.parse_desyncs), (0, 0));
}
