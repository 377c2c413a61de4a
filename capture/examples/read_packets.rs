//! The bare cost of reading a capture: every packet through the same streaming reader
//! `kshark read` uses, and nothing else. The benchmark's baseline.

fn main() {
    let path = std::env::args().nth(1).expect("usage: read_packets FILE");
    let mut src = kshark_capture::FileSource::open(std::path::Path::new(&path)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let mut sum = 0u64;
    let s = src
        .for_each_packet(|p| sum = sum.wrapping_add(p.data.first().copied().unwrap_or(0) as u64))
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    println!("{} packets, {} bytes (checksum {sum})", s.packets, s.bytes);
}
