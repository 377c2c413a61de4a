use super::wire;
use crate::testkit::{assert_split_invariant, C2S, S2C};
use serde_json::json;

fn doc(elements: &[u8]) -> Vec<u8> {
    [&((elements.len() + 5) as i32).to_le_bytes()[..], elements, &[0]].concat()
}

fn msg(request_id: i32, response_to: i32, op: i32, body: &[u8]) -> Vec<u8> {
    [&((body.len() + 16) as i32).to_le_bytes()[..], &request_id.to_le_bytes(), &response_to.to_le_bytes(), &op.to_le_bytes(), body].concat()
}

fn op_msg(flags: u32, d: &[u8]) -> Vec<u8> {
    [&flags.to_le_bytes()[..], &[0], d].concat()
}

#[test]
fn op_msg_commands_replies_and_errors() {
    let find = doc(b"\x02find\0\x06\0\0\0users\0\x02$db\0\x05\0\0\0shop\0");
    let ok = doc(b"\x01ok\0\0\0\0\0\0\0\xf0\x3f");
    let insert = doc(b"\x02insert\0\x07\0\0\0orders\0\x02$db\0\x05\0\0\0shop\0");
    let failed = doc(b"\x01ok\0\0\0\0\0\0\0\0\0\x02errmsg\0\x0a\0\0\0dup key!!\0\x10code\0\x7c\x2b\0\0\x02codeName\0\x0d\0\0\0DuplicateKey\0");
    let m = vec![
        (C2S, [msg(7, 0, wire::OP_MSG, &op_msg(0, &find)), msg(8, 0, wire::OP_MSG, &op_msg(0, &insert))].concat()),
        // replies out of order: paired by responseTo
        (S2C, [msg(100, 8, wire::OP_MSG, &op_msg(0, &failed)), msg(101, 7, wire::OP_MSG, &op_msg(0, &ok))].concat()),
    ];
    let e = assert_split_invariant(27017, &m);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["request"]["method"], "insert");
    assert_eq!(e[0]["request"]["target"], "shop.orders");
    assert_eq!(e[0]["response"]["ok"], 0.0);
    assert_eq!(e[0]["response"]["status"], "DuplicateKey");
    assert_eq!(e[0]["response"]["error"]["code"], 11132);
    assert_eq!(e[1]["request"]["method"], "find");
    assert_eq!(e[1]["request"]["target"], "shop.users");
    assert_eq!(e[1]["request"]["document"]["find"], "users");
    assert_eq!(e[1]["response"]["status"], "ok");
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}

#[test]
fn op_query_reply_and_compressed_messages() {
    let is_master = doc(b"\x10isMaster\0\x01\0\0\0");
    let query = [&0i32.to_le_bytes()[..], b"admin.$cmd\0", &0i32.to_le_bytes(), &(-1i32).to_le_bytes(), &is_master].concat();
    let reply_doc = doc(b"\x08ismaster\0\x01\x01ok\0\0\0\0\0\0\0\xf0\x3f");
    let reply = [&0i32.to_le_bytes()[..], &0i64.to_le_bytes(), &0i32.to_le_bytes(), &1i32.to_le_bytes(), &reply_doc].concat();
    // a ping compressed with snappy, and its reply with zlib
    let ping = op_msg(0, &doc(b"\x10ping\0\x01\0\0\0\x02$db\0\x06\0\0\0admin\0"));
    let snappy = snap::raw::Encoder::new().compress_vec(&ping).unwrap();
    let pong = op_msg(0, &doc(b"\x01ok\0\0\0\0\0\0\0\xf0\x3f"));
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &pong).unwrap();
    let zlib = z.finish().unwrap();
    let comp = |op: i32, n: usize, id: u8, data: &[u8]| [&op.to_le_bytes()[..], &(n as i32).to_le_bytes(), &[id], data].concat();
    let m = vec![
        (C2S, msg(1, 0, wire::OP_QUERY, &query)),
        (S2C, msg(2, 1, wire::OP_REPLY, &reply)),
        (C2S, msg(3, 0, wire::OP_COMPRESSED, &comp(wire::OP_MSG, ping.len(), 1, &snappy))),
        (S2C, msg(4, 3, wire::OP_COMPRESSED, &comp(wire::OP_MSG, pong.len(), 2, &zlib))),
    ];
    let e = assert_split_invariant(27017, &m);
    assert_eq!(e[0]["request"]["method"], "isMaster");
    assert_eq!(e[0]["request"]["op"], "OP_QUERY");
    assert_eq!(e[0]["request"]["target"], "admin");
    assert_eq!(e[0]["response"]["op"], "OP_REPLY");
    assert_eq!(e[0]["response"]["document"]["ismaster"], true);
    assert_eq!(e[1]["request"]["method"], "ping");
    assert_eq!(e[1]["request"]["compressed"], true);
    assert_eq!(e[1]["response"]["compressed"], true);
    assert_eq!(e[1]["response"]["status"], "ok");
}

#[test]
fn passwords_and_sasl_payloads_are_hidden() {
    let create = doc(b"\x02createUser\0\x04\0\0\0bob\0\x02pwd\0\x07\0\0\0hunter\0\x02$db\0\x06\0\0\0admin\0");
    let sasl = doc(b"\x10saslStart\0\x01\0\0\0\x05payload\0\x07\0\0\0\0n,,n=bo\x02$db\0\x06\0\0\0admin\0");
    let m = vec![(C2S, [msg(1, 0, wire::OP_MSG, &op_msg(0, &create)), msg(2, 0, wire::OP_MSG, &op_msg(0, &sasl))].concat())];
    let (e, _) = crate::testkit::conversation(27017, &m, 0);
    let text = serde_json::to_string(&e).unwrap();
    assert!(!text.contains("hunter") && !text.contains("bi49LG49Ym8"), "{text}");
    assert_eq!(e[0]["request"]["document"]["pwd"], "[redacted]", "{e:?}");
    assert_eq!(e[1]["request"]["document"]["payload"], "[redacted]");
}
