//! Capture files as a stream of packets: pcap (micro- and nanosecond, either byte order) and
//! pcapng (any number of interfaces, each with its own link type and timestamp
//! resolution), from a file or standard input, read through `pcap-parser` a buffer at a
//! time so that a file of any size runs in bounded memory. A regular file in the pcap
//! format is mapped instead (`memmap2`) and its packets read in place: the kernel's copy
//! into a read buffer was a fifth of `kshark read`'s reading thread.

use crate::error::Error;
use kshark_dissect::decode::link::linktype;
use kshark_dissect::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub linktype: u32,
    /// The bytes captured (maybe fewer than were on the wire).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}

/// How reading a file ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadSummary {
    pub packets: u64,
    pub bytes: u64,
    /// The file ended inside a block: the last packet was cut short and skipped.
    pub truncated_at: Option<u64>,
    /// Packets on an interface of a link type the dissector cannot decode.
    pub unsupported_packets: u64,
    /// The first such link type.
    pub unsupported_linktype: Option<u32>,
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    resolution: u64,
    offset_secs: i64,
}

/// What a packet block without its interface description is read as.
const DEFAULT_IFACE: Iface = Iface { linktype: linktype::ETHERNET, resolution: 1_000_000, offset_secs: 0 };

const INITIAL_BUFFER: usize = 1 << 20;
const MAX_BUFFER: usize = 256 << 20;

/// A capture file (or standard input, `-`) being read.
pub struct FileSource {
    path: PathBuf,
    input: Input,
}

enum Input {
    /// Read a buffer at a time (pcapng, standard input, pipes).
    Stream { reader: Box<dyn PcapReaderIterator + Send>, capacity: usize },
    /// A regular file in the pcap format, mapped whole: packets are read where they lie.
    /// (Its length is the file's at opening; a file another process cuts short while it
    /// is read would fault, so only files that are regular files are mapped.)
    Mapped(memmap2::Mmap),
}

/// The pcap format's magic numbers (micro- and nanosecond, either byte order).
const PCAP_MAGICS: [u32; 4] = [0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1];
/// pcapng's section header block type (the same in either byte order).
const PCAPNG_MAGIC: u32 = 0x0a0d0d0a;

impl FileSource {
    /// Opens a capture file; `-` is standard input.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let input: Box<dyn Read + Send> = if path == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            let file = File::open(path).map_err(|source| Error::Open { path: path.to_path_buf(), source })?;
            if file.metadata().is_ok_and(|m| m.is_file() && m.len() >= 24) {
                // SAFETY: the map is only read; see `Input::Mapped` for a file changed
                // under it
                if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
                    let magic = u32::from_le_bytes([map[0], map[1], map[2], map[3]]);
                    if PCAP_MAGICS.contains(&magic) {
                        let _ = map.advise(memmap2::Advice::Sequential);
                        return Ok(FileSource { path: path.to_path_buf(), input: Input::Mapped(map) });
                    }
                }
            }
            Box::new(file)
        };
        Self::from_reader(path, input)
    }

    /// Reads a capture from any byte stream; `name` is used in messages.
    pub fn from_reader(name: &Path, mut input: Box<dyn Read + Send>) -> Result<Self, Error> {
        let path = name.to_path_buf();
        // read the start ourselves: to say what the file is when it is not a capture, and
        // because the capture reader wants a whole header in its first read
        let mut head = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < head.len() {
            match input.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Open { path, source }),
            }
        }
        head.truncate(got);
        if got == 0 {
            return Err(Error::Empty { path });
        }
        let magic = u32::from_le_bytes([head[0], head[1], head.get(2).copied().unwrap_or(0), head.get(3).copied().unwrap_or(0)]);
        if got < 4 || !(PCAP_MAGICS.contains(&magic) || magic == PCAPNG_MAGIC) {
            let first_bytes = head[..got.min(4)].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
            return Err(Error::NotACapture { path, first_bytes });
        }
        let chained: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(head).chain(input));
        let reader = pcap_parser::create_reader(INITIAL_BUFFER, chained).map_err(|e| Error::Corrupt {
            path: path.clone(),
            offset: 0,
            detail: describe(&e),
        })?;
        Ok(FileSource { path, input: Input::Stream { reader, capacity: INITIAL_BUFFER } })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` for each packet in file order. A file cut short ends the stream early with
    /// `truncated_at` set; broken data in the middle is an error.
    pub fn for_each_packet(&mut self, mut f: impl FnMut(Packet<'_>)) -> Result<ReadSummary, Error> {
        let (reader, capacity) = match &mut self.input {
            Input::Mapped(map) => return for_each_mapped(&self.path, map, f),
            Input::Stream { reader, capacity } => (reader, capacity),
        };
        let mut sum = ReadSummary::default();
        let mut ifaces: Vec<Iface> = Vec::new();
        let mut legacy: Option<(u32, bool)> = None;
        let mut offset: u64 = 0;
        loop {
            match reader.next() {
                Ok((n, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => legacy = Some((h.network.0 as u32, h.is_nanosecond_precision())),
                        PcapBlockOwned::Legacy(b) => {
                            let (lt, ns) = legacy.unwrap_or((linktype::ETHERNET, false));
                            emit(&mut sum, legacy_packet(&b, lt, ns), &mut f);
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => ifaces.push(Iface {
                            linktype: idb.linktype.0 as u32,
                            resolution: idb.ts_resolution().unwrap_or(1_000_000),
                            offset_secs: idb.if_tsoffset,
                        }),
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let iface = ifaces.get(epb.if_id as usize).copied().unwrap_or(DEFAULT_IFACE);
                            let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                            let nanos = (raw as u128 * 1_000_000_000 / iface.resolution.max(1) as u128) as i128
                                + iface.offset_secs as i128 * 1_000_000_000;
                            let caplen = (epb.caplen as usize).min(epb.data.len());
                            let p = Packet { ts: Timestamp(nanos.clamp(0, u64::MAX as i128) as u64), linktype: iface.linktype, data: &epb.data[..caplen], orig_len: epb.origlen };
                            emit(&mut sum, p, &mut f);
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // no timestamp and always interface 0
                            let iface = ifaces.first().copied().unwrap_or(DEFAULT_IFACE);
                            let p = Packet { ts: Timestamp(0), linktype: iface.linktype, data: spb.data, orig_len: spb.origlen };
                            emit(&mut sum, p, &mut f);
                        }
                        PcapBlockOwned::NG(_) => {}
                    }
                    offset += n as u64;
                    reader.consume(n);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::UnexpectedEof) => {
                    sum.truncated_at = Some(offset);
                    break;
                }
                Err(PcapError::Incomplete(_)) => {
                    if reader.refill().is_err() {
                        return Err(Error::Read { path: self.path.clone(), offset });
                    }
                }
                Err(PcapError::BufferTooSmall) => {
                    if *capacity >= MAX_BUFFER || !reader.grow(*capacity * 2) {
                        return Err(Error::Corrupt { path: self.path.clone(), offset, detail: format!("a block larger than {} MiB", MAX_BUFFER >> 20) });
                    }
                    *capacity *= 2;
                    if reader.refill().is_err() {
                        return Err(Error::Read { path: self.path.clone(), offset });
                    }
                }
                Err(e) => {
                    let detail = describe(&e);
                    return Err(Error::Corrupt { path: self.path.clone(), offset, detail });
                }
            }
        }
        Ok(sum)
    }
}

/// The packets of a mapped pcap file, in file order, as `for_each_packet` gives them: a
/// file cut short (a record longer than what is left) ends with `truncated_at`. (No buffer
/// limits a record here: one that is really there is read, however long.)
fn for_each_mapped(path: &Path, map: &[u8], mut f: impl FnMut(Packet<'_>)) -> Result<ReadSummary, Error> {
    let mut sum = ReadSummary::default();
    let corrupt = |offset: usize, detail: String| Error::Corrupt { path: path.to_path_buf(), offset: offset as u64, detail };
    let (mut rem, header) = match pcap_parser::pcap::parse_pcap_header(map) {
        Ok(h) => h,
        Err(pcap_parser::nom::Err::Incomplete(_)) => {
            sum.truncated_at = Some(0);
            return Ok(sum);
        }
        Err(pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e)) => return Err(corrupt(0, describe(&e))),
    };
    let (be, ns, lt) = (header.is_bigendian(), header.is_nanosecond_precision(), header.network.0 as u32);
    while !rem.is_empty() {
        let offset = map.len() - rem.len();
        let frame = if be { pcap_parser::pcap::parse_pcap_frame_be(rem) } else { pcap_parser::pcap::parse_pcap_frame(rem) };
        match frame {
            Ok((next, b)) => {
                emit(&mut sum, legacy_packet(&b, lt, ns), &mut f);
                rem = next;
            }
            Err(pcap_parser::nom::Err::Incomplete(_)) => {
                sum.truncated_at = Some(offset as u64);
                break;
            }
            Err(pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e)) => return Err(corrupt(offset, describe(&e))),
        }
    }
    Ok(sum)
}

/// A pcap record as a packet: its link type is the file's, its fraction of a second in
/// micro- or nanoseconds (`ns`).
fn legacy_packet<'a>(b: &pcap_parser::LegacyPcapBlock<'a>, linktype: u32, ns: bool) -> Packet<'a> {
    let frac = if ns { b.ts_usec as u64 } else { b.ts_usec as u64 * 1000 };
    Packet { ts: Timestamp::from_parts(b.ts_sec as u64, frac), linktype, data: b.data, orig_len: b.origlen }
}

fn emit(sum: &mut ReadSummary, p: Packet<'_>, f: &mut impl FnMut(Packet<'_>)) {
    sum.packets += 1;
    sum.bytes += p.data.len() as u64;
    if !linktype::is_supported(p.linktype) {
        sum.unsupported_packets += 1;
        sum.unsupported_linktype.get_or_insert(p.linktype);
    }
    f(p)
}

fn describe<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::HeaderNotRecognized => "the header is not pcap or pcapng".into(),
        PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => format!("malformed block ({k:?})"),
        PcapError::ReadError => "read error".into(),
        PcapError::UnexpectedEof | PcapError::Eof => "unexpected end of file".into(),
        PcapError::BufferTooSmall => "block too large".into(),
        PcapError::Incomplete(_) => "incomplete block".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(ns: bool, frames: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(if ns { 0xa1b23c4du32 } else { 0xa1b2c3d4 }).to_le_bytes());
        b.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]);
        for (i, f) in frames.iter().enumerate() {
            b.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
            b.extend_from_slice(&123u32.to_le_bytes());
            b.extend_from_slice(&(f.len() as u32).to_le_bytes());
            b.extend_from_slice(&(f.len() as u32).to_le_bytes());
            b.extend_from_slice(f);
        }
        b
    }

    fn read(bytes: Vec<u8>) -> Result<(Vec<(u64, usize)>, ReadSummary), Error> {
        let mut src = FileSource::from_reader(Path::new("t.pcap"), Box::new(std::io::Cursor::new(bytes)))?;
        let mut got = Vec::new();
        let sum = src.for_each_packet(|p| got.push((p.ts.0, p.data.len())))?;
        Ok((got, sum))
    }

    #[test]
    fn micro_and_nano_resolution() {
        let (us, _) = read(pcap(false, &[&[0; 20]])).unwrap();
        let (ns, _) = read(pcap(true, &[&[0; 20]])).unwrap();
        assert_eq!(us[0].0, 1_700_000_000_000_123_000);
        assert_eq!(ns[0].0, 1_700_000_000_000_000_123);
    }

    #[test]
    fn truncated_file_keeps_what_is_whole() {
        let mut b = pcap(false, &[&[0; 20], &[0; 30]]);
        b.truncate(b.len() - 5);
        let (got, sum) = read(b).unwrap();
        assert_eq!(got.len(), 1);
        assert!(sum.truncated_at.is_some());
    }

    #[test]
    fn a_mapped_file_reads_as_the_stream_does() {
        let dir = std::env::temp_dir().join(format!("kshark-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let whole = pcap(false, &[&[1; 20], &[2; 30], &[3; 1]]);
        let mut cut = whole.clone();
        cut.truncate(cut.len() - 5);
        let mut header_only = pcap(true, &[]);
        header_only.extend_from_slice(&[0; 7]);
        // a record that claims 1 GiB
        let mut giant = pcap(false, &[&[1; 20]]);
        giant.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0x40]);
        giant.extend_from_slice(&[0; 64]);
        for (i, bytes) in [whole, cut, header_only, giant].into_iter().enumerate() {
            let f = dir.join(format!("{i}.pcap"));
            std::fs::write(&f, &bytes).unwrap();
            let mut src = FileSource::open(&f).unwrap();
            assert!(matches!(src.input, Input::Mapped(_)));
            let mut got = Vec::new();
            let mapped = src.for_each_packet(|p| got.push((p.ts.0, p.data.to_vec())));
            let mut want = Vec::new();
            let streamed = FileSource::from_reader(&f, Box::new(std::io::Cursor::new(bytes))).unwrap().for_each_packet(|p| want.push((p.ts.0, p.data.to_vec())));
            assert_eq!(got, want, "file {i}");
            match (mapped, streamed) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "file {i}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "file {i}"),
                (a, b) => panic!("file {i}: mapped {a:?}, streamed {b:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_a_capture_says_so() {
        let e = read(b"hello world, not a pcap".to_vec()).err().unwrap();
        assert_eq!(e.to_string(), "t.pcap: not a pcap or pcapng file (it starts with 68 65 6c 6c)");
        assert!(matches!(read(Vec::new()), Err(Error::Empty { .. })));
    }
}
