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
    Ndjson(Box<dyn Write>, Vec<u8>),
    Table(Box<dyn Write>),
    Har(HarWriter<Box<dyn Write>>),
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
    let out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(BufWriter::with_capacity(
            256 << 10,
            File::create(p).map_err(|e| Failure::Runtime(format!("{}: cannot write: {e}", p.display())))?,
        )),
        None => Box::new(BufWriter::with_capacity(256 << 10, io::stdout().lock())),
    };
    let format = a.format.unwrap_or(if a.output.is_none() && io::stdout().is_terminal() { Format::Table } else { Format::Ndjson });
    let mut sink = match format {
        Format::Ndjson => Sink::Ndjson(out, Vec::with_capacity(BLOCK + (256 << 10))),
        Format::Table => {
            let mut out = out;
            writeln!(out, "{}", table::header()).map_err(write_err)?;
            Sink::Table(out)
        }
        Format::Har => Sink::Har(HarWriter::new(out).map_err(write_err)?),
    };
    let mut total = Stats::default();
    let mut prev: Option<Dissector> = None;
    let mut failed: Option<Failure> = None;
    for path in &a.files {
        let mut src = FileSource::open(path).map_err(capture_err)?;
        let mut d = Dissector::new(config.clone());
        if let Some(p) = &prev {
            d.continue_ids_from(p);
        }
        let mut write_error: Option<io::Error> = None;
        let res = pipeline::dissect_file(&mut src, &mut d, |mut e| {
            if let Some(id) = &identity {
                id.tag(&mut e);
            }
            redact.apply(&mut e);
            if write_error.is_none() && keep(filter.as_ref(), &e) {
                if let Err(err) = sink.put(&e) {
                    write_error = Some(err);
                }
            }
        });
        if let Some(e) = write_error {
            if broken_pipe(&e) {
                return Ok(());
            }
            return Err(write_err(e));
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
    match sink.finish() {
        Err(e) if broken_pipe(&e) => {}
        Err(e) => return Err(write_err(e)),
        Ok(()) => {}
    }
    if a.stats {
        eprintln!("{}", serde_json::to_string(&total).unwrap_or_default());
    }
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
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
