//! `kshark read`: capture files in, entries out.

use crate::Failure;
use clap::{Args, ValueEnum};
use kshark_capture::{pipeline, Error as CaptureError, FileSource};
use kshark_dissect::export::{har::HarWriter, table};
use kshark_dissect::{Dissector, Entry, Stats};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON entry per line (the default when stdout is not a terminal)
    Ndjson,
    /// A readable table (the default on a terminal)
    Table,
    /// HAR 1.2, HTTP entries only
    Har,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  kshark read capture.pcap\n  kshark read capture.pcapng --filter 'http && status_code >= 500'\n  kshark read dns.pcap --filter '\"example.com\" in dns_questions' --format ndjson\n  kshark read a.pcap b.pcap --format har --output flows.har\n  kshark read grpc.pcap --proto protos/ --format ndjson\n  tcpdump -U -w - -i lo port 8080 | kshark read - --format table\n\nExit codes: 0 success; 1 runtime failure (e.g. cannot write the output); 2 bad usage or\nan unreadable capture file. A capture cut short is read up to the cut, with a warning.")]
pub struct ReadArgs {
    /// Capture files (pcap or pcapng); `-` reads standard input
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Output format [default: table on a terminal, ndjson otherwise]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write to this file instead of standard output
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// The node name entries carry
    #[arg(long, default_value = "local")]
    node: String,
    /// Print every counter (packets, drops, gaps, ...) as JSON on stderr at the end
    #[arg(long)]
    stats: bool,
    /// Name the endpoints from this file (`kubectl get pods,services,endpoints -A -o json`,
    /// or an API server's lists); repeatable
    #[arg(long, value_name = "FILE")]
    inventory: Vec<PathBuf>,
    /// Only entries this filter matches (the language in the README's "Filters", e.g.
    /// 'http && status_code >= 500')
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    #[command(flatten)]
    dissect: crate::schema::DissectArgs,
}

/// Compiles `--filter`; a bad one is bad input (exit 2) with its position.
pub fn compile_filter(expr: Option<&str>) -> Result<Option<kshark_hub::Filter>, Failure> {
    expr.map(|x| kshark_hub::Filter::compile(x).map_err(|e| Failure::Input(format!("--filter {x:?}: {e}")))).transpose()
}

/// Whether an entry passes the filter (none: every entry does).
pub fn keep(f: Option<&kshark_hub::Filter>, e: &Entry) -> bool {
    f.is_none_or(|f| serde_json::to_value(e).is_ok_and(|v| f.matches(&v)))
}

/// Output is built in memory and written in blocks of this size: serde_json writes a string
/// in many small pieces (one per escape), which cost far less appended to a `Vec`.
const BLOCK: usize = 1 << 20;

enum Sink {
    Ndjson(Box<dyn Write + Send>, Vec<u8>),
    Table(Box<dyn Write + Send>),
    Har(HarWriter<Box<dyn Write + Send>>),
}

impl Sink {
    fn put(&mut self, e: &Entry) -> io::Result<()> {
        match self {
            Sink::Ndjson(w, buf) => {
                serde_json::to_writer(&mut *buf, e)?;
                buf.push(b'\n');
                if buf.len() >= BLOCK {
                    w.write_all(buf)?;
                    buf.clear();
                }
                Ok(())
            }
            Sink::Table(w) => writeln!(w, "{}", table::row(e)),
            Sink::Har(h) => h.add(e).map(|_| ()),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Ndjson(mut w, buf) => {
                w.write_all(&buf)?;
                w.flush()
            }
            Sink::Table(mut w) => w.flush(),
            Sink::Har(h) => h.finish().map(|_| ()),
        }
    }
}

fn broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

pub fn run(a: ReadArgs) -> Result<(), Failure> {
    let config = a.dissect.config(a.node.clone(), kshark_dissect::entry::CaptureSource::File)?;
    let redact = a.dissect.redactor()?;
    let filter = compile_filter(a.filter.as_deref())?;
    let identity = match a.inventory.is_empty() {
        true => None,
        false => Some(kshark_capture::inventory::load(&a.inventory).map_err(|e| Failure::Input(e.to_string()))?),
    };
    let out: Box<dyn Write + Send> = match &a.output {
        Some(p) => Box::new(BufWriter::with_capacity(
            256 << 10,
            File::create(p).map_err(|e| Failure::Runtime(format!("{}: cannot write: {e}", p.display())))?,
        )),
        None => Box::new(BufWriter::with_capacity(256 << 10, io::stdout())),
    };
    let format = a.format.unwrap_or(if a.output.is_none() && io::stdout().is_terminal() { Format::Table } else { Format::Ndjson });
    let sink = match format {
        Format::Ndjson => Sink::Ndjson(out, Vec::with_capacity(BLOCK + (256 << 10))),
        Format::Table => {
            let mut out = out;
            writeln!(out, "{}", table::header()).map_err(write_err)?;
            Sink::Table(out)
        }
        Format::Har => Sink::Har(HarWriter::new(out).map_err(write_err)?),
    };
    // two stages on two threads: this one reads, dissects, names, masks and filters; the
    // writer encodes the entries (JSON-escaping their bodies, most of the bytes) and
    // writes them, in the order they were made
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Entry>>(8);
    // written batches go back to be freed where they were made (mimalloc frees a block
    // made on another thread through an atomic list, which cost each side a few percent)
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<Entry>>();
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("kshark-write".into())
            .spawn_scoped(scope, move || -> io::Result<()> {
                let mut sink = sink;
                for batch in rx {
                    for e in &batch {
                        sink.put(e)?;
                    }
                    let _ = back_tx.send(batch);
                }
                sink.finish()
            })
            .map_err(|e| Failure::Runtime(format!("cannot start the writer thread: {e}")))?;
        let read = read_files(&a, &config, &redact, filter.as_ref(), identity.as_ref(), (tx, back_rx));
        let written = writer.join().unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")));
        match written {
            Err(e) if broken_pipe(&e) => return Ok(()),
            Err(e) => return Err(write_err(e)),
            Ok(()) => {}
        }
        let (total, failed) = read;
        if a.stats {
            eprintln!("{}", serde_json::to_string(&total).unwrap_or_default());
        }
        match failed {
            Some(f) => Err(f),
            None => Ok(()),
        }
    })
}

/// Entries handed to the writer at a time.
const BATCH: usize = 256;

/// The first stage of `run`: every file dissected in turn, each entry named, masked and
/// filtered, and sent to the writer in batches (none once the writer has stopped). The
/// counters of all files, and what made reading stop.
fn read_files(
    a: &ReadArgs,
    config: &kshark_dissect::Config,
    redact: &kshark_dissect::redact::Redactor,
    filter: Option<&kshark_hub::Filter>,
    identity: Option<&kshark_capture::identity::Identity>,
    (tx, back): (std::sync::mpsc::SyncSender<Vec<Entry>>, std::sync::mpsc::Receiver<Vec<Entry>>),
) -> (Stats, Option<Failure>) {
    let mut total = Stats::default();
    let mut prev: Option<Dissector> = None;
    let mut failed: Option<Failure> = None;
    let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
    let mut open = true;
    for path in &a.files {
        let mut src = match FileSource::open(path) {
            Ok(s) => s,
            Err(e) => {
                failed = Some(capture_err(e));
                break;
            }
        };
        let mut d = Dissector::new(config.clone());
        if let Some(p) = &prev {
            d.continue_ids_from(p);
        }
        let res = pipeline::dissect_file(&mut src, &mut d, |mut e| {
            if !open {
                return;
            }
            if let Some(id) = identity {
                id.tag(&mut e);
            }
            redact.apply(&mut e);
            if keep(filter, &e) {
                batch.push(e);
                if batch.len() >= BATCH {
                    // a written batch back, emptied here, is the next one
                    let next = match back.try_recv() {
                        Ok(mut done) => {
                            done.clear();
                            done
                        }
                        Err(_) => Vec::with_capacity(BATCH),
                    };
                    open = tx.send(std::mem::replace(&mut batch, next)).is_ok();
                }
            }
        });
        if !batch.is_empty() && open {
            open = tx.send(std::mem::take(&mut batch)).is_ok();
        }
        let name = path.display();
        match res {
            Ok(sum) => {
                if let Some(at) = sum.truncated_at {
                    eprintln!("kshark: {name}: the capture ends inside a packet at byte {at}; read up to there");
                }
                if sum.packets > 0 && sum.unsupported_packets == sum.packets {
                    failed = Some(capture_err(CaptureError::UnsupportedLinkType {
                        path: path.clone(),
                        linktype: sum.unsupported_linktype.unwrap_or(0),
                    }));
                }
            }
            Err(e) => failed = Some(capture_err(e)),
        }
        let s = d.stats();
        let losses = s.losses();
        if !losses.is_empty() {
            let what: Vec<String> = losses.iter().map(|(k, n)| format!("{n} {k}")).collect();
            eprintln!("kshark: {name}: {} packets, {} entries; {}", s.packets, s.entries, what.join(", "));
        }
        total.add(s);
        prev = Some(d);
        if failed.is_some() {
            break;
        }
    }
    (total, failed)
}

fn capture_err(e: CaptureError) -> Failure {
    match e {
        CaptureError::Read { .. } => Failure::Runtime(e.to_string()),
        _ => Failure::Input(e.to_string()),
    }
}

fn write_err(e: io::Error) -> Failure {
    Failure::Runtime(format!("cannot write the output: {e}"))
}
