use crate::testkit::{assert_split_invariant, C2S, S2C};
use serde_json::json;
use std::io::Write;

const UPGRADE: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn switching(ext: &str) -> Vec<u8> {
    format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{ext}\r\n").into_bytes()
}

fn frame(fin: bool, rsv1: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![(fin as u8) << 7 | (rsv1 as u8) << 6 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n < 65536 => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut p = payload.to_vec();
    if let Some(k) = mask {
        v.extend_from_slice(&k);
        super::wire::unmask(&mut p, k, 0);
    }
    v.extend_from_slice(&p);
    v
}

#[test]
fn fragments_join_and_control_frames_stand_between_them() {
    let k = Some([1, 2, 3, 4]);
    let m = vec![
        (C2S, UPGRADE.to_vec()),
        // the 101 and the server's first message in one segment
        (S2C, [switching(""), frame(true, false, 1, None, b"welcome")].concat()),
        (C2S, [frame(false, false, 1, k, b"Hel"), frame(true, false, 9, k, b"p"), frame(true, false, 0, k, b"lo")].concat()),
        (S2C, [frame(true, false, 10, None, b"p"), frame(true, false, 2, None, &[0xff, 0, 1])].concat()),
        (C2S, frame(true, false, 8, k, b"\x03\xe8bye")),
    ];
    let e = assert_split_invariant(8080, &m);
    let got: Vec<_> = e.iter().map(|x| (x["protocol"].as_str().unwrap(), x["request"]["method"].as_str().unwrap_or(""), x["request"]["direction"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        got,
        [("http", "GET", ""), ("websocket", "text", "server"), ("websocket", "ping", "client"), ("websocket", "text", "client"), ("websocket", "pong", "server"), ("websocket", "binary", "server"), ("websocket", "close", "client")]
    );
    assert_eq!(e[0]["response"]["status_code"], 101);
    assert_eq!(e[3]["request"]["payload"]["text"], "Hello", "fragments joined, unmasked");
    assert_eq!(e[3]["request"]["frames"], 2);
    assert_eq!(e[3]["request"]["target"], "/chat");
    assert_eq!(e[5]["request"]["payload"]["base64"], "/wAB");
    assert_eq!(e[6]["request"]["code"], 1000);
    assert_eq!(e[6]["request"]["reason"], "bye");
    // the server's message was sent by the server: it is the entry's source
    assert_eq!(e[1]["src"]["port"], 8080);
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}

#[test]
fn permessage_deflate_with_context_takeover() {
    // one deflate stream across messages (the default): the second refers to the first
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let cut = |z: &mut flate2::write::DeflateEncoder<Vec<u8>>, text: &[u8]| {
        z.write_all(text).unwrap();
        z.flush().unwrap();
        let mut out = std::mem::take(z.get_mut());
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    };
    let a = cut(&mut z, b"the quick brown fox jumps over the lazy dog");
    let b = cut(&mut z, b"the quick brown fox jumps over the lazy dog again");
    let m = vec![
        (C2S, UPGRADE.to_vec()),
        (S2C, switching("Sec-WebSocket-Extensions: permessage-deflate\r\n")),
        (S2C, [frame(true, true, 1, None, &a), frame(false, true, 1, None, &b[..3]), frame(true, false, 0, None, &b[3..])].concat()),
    ];
    let e = assert_split_invariant(8080, &m);
    assert_eq!(e[1]["request"]["payload"]["text"], "the quick brown fox jumps over the lazy dog");
    assert_eq!(e[1]["request"]["compressed"], true);
    assert_eq!(e[2]["request"]["payload"]["text"], "the quick brown fox jumps over the lazy dog again");
    assert!(e.iter().all(|x| x["anomalies"] == json!([])), "{e:?}");
}
