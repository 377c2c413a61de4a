//! The capture benchmark's traffic: real HTTP/1.1 exchanges and DNS lookups, as frames
//! injected into an interface through an AF_PACKET socket at a set rate.
//!
//!     blast IFACE PPS SECONDS [CONNS] [hold]
//!
//! CONNS exchanges (default 10,000: handshake, GET, 200 with a JSON body, FIN both ways,
//! and a DNS query and answer) are built once; each pass over them moves the server to a
//! new address, so every pass is new connections. With `hold` each connection stays open
//! after its exchange (no FIN) and one pass is sent: CONNS concurrent connections for
//! the dissector to keep. Sends in batches with sendmmsg, paced to PPS (0: as fast as it
//! can), and prints `sent N packets in S s (R pps)`. Only run it on an interface of a
//! namespace the benchmark made: what it sends goes nowhere else.

use kshark_dissect::testkit::{udp_frame, TcpConv, C2S, S2C};
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn frames(conns: usize, hold: bool) -> Vec<Vec<u8>> {
    let body = br#"[{"id":"3395a43e","name":"Colourful","price":18.0,"count":438},{"id":"510a0d7e","name":"SuperSport XL","price":15.0,"count":820}]"#;
    let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut resp = resp.into_bytes();
    resp.extend_from_slice(body);
    let mut out = Vec::new();
    for i in 0..conns {
        let client = [10, 99, (i >> 16) as u8 & 0x3f, (i >> 8) as u8];
        let port = 1024 + (i % 60_000) as u16;
        let mut c = TcpConv::new((client, port), ([10, 98, 0, 1], 80), [i as u32 * 7919, i as u32 * 104_729]);
        c.handshake();
        c.send(C2S, b"GET /catalogue?size=5 HTTP/1.1\r\nHost: catalogue\r\nUser-Agent: blast\r\nAccept: application/json\r\n\r\n", &[]);
        c.send(S2C, &resp, &[]);
        if !hold {
            c.close();
        }
        out.extend(c.frames.into_iter().map(|(_, f)| f));
        if !hold {
            let id = (i as u16).to_be_bytes();
            let mut q = vec![id[0], id[1], 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in ["catalogue", "sock-shop", "svc", "cluster", "local"] {
                q.push(label.len() as u8);
                q.extend_from_slice(label.as_bytes());
            }
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            let mut a = q.clone();
            a[2] = 0x85;
            a[3] = 0x80;
            a[7] = 1;
            a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 98, 0, 1]);
            out.push(udp_frame((client, port), ([10, 98, 0, 10], 53), &q));
            out.push(udp_frame(([10, 98, 0, 10], 53), (client, port), &a));
        }
    }
    out
}

/// Moves every frame's server address (10.98.x.y) to pass `n`'s: new connections.
fn next_pass(frames: &mut [Vec<u8>], n: u32) {
    let (hi, lo) = ((n >> 8) as u8, n as u8);
    for f in frames {
        for off in [26, 30] {
            if f.len() > off + 4 && f[off] == 10 && f[off + 1] == 98 {
                f[off + 2] = hi;
                f[off + 3] = lo;
            }
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: blast IFACE PPS SECONDS [CONNS] [hold]");
        std::process::exit(2);
    }
    let iface = &a[1];
    let pps: f64 = a[2].parse().expect("PPS");
    let secs: f64 = a[3].parse().expect("SECONDS");
    let conns: usize = a.get(4).map_or(10_000, |s| s.parse().expect("CONNS"));
    let hold = a.get(5).is_some_and(|s| s == "hold");
    let mut frames = frames(conns, hold);

    let ifindex = kshark_capture::netns::ifindex(iface).unwrap_or_else(|| panic!("no interface {iface}"));
    // SAFETY: plain socket(2)/bind(2)/setsockopt(2) calls with valid arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32) };
    assert!(fd >= 0, "AF_PACKET socket: {} (needs root)", std::io::Error::last_os_error());
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    let r = unsafe { libc::bind(fd, &sll as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) };
    assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
    let one: libc::c_int = 1;
    unsafe { libc::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one as *const _ as *const libc::c_void, 4) };

    let start = Instant::now();
    let deadline = Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    let mut pass = 0u32;
    let mut i = 0usize;
    'outer: loop {
        if start.elapsed() >= deadline {
            break;
        }
        let n = BATCH.min(frames.len() - i);
        let mut iov: Vec<libc::iovec> =
            frames[i..i + n].iter().map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() }).collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut done = 0;
        while done < n {
            // SAFETY: msgs and the frames they point at live across the call.
            let r = unsafe { libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::WouldBlock {
                    continue;
                }
                panic!("sendmmsg: {e}");
            }
            done += r as usize;
        }
        sent += n as u64;
        i += n;
        if i == frames.len() {
            i = 0;
            if hold {
                break 'outer;
            }
            pass += 1;
            next_pass(&mut frames, pass);
        }
        if pps > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / pps);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!("sent {sent} packets in {t:.2} s ({:.0} pps)", sent as f64 / t);
}
