//! `kshark`: the command line. Parses arguments, wires the library crates together, and
//! turns failures into one-line messages and exit codes (0 ok, 1 runtime failure, 2 bad
//! usage or bad input).

/// mimalloc: entries are many small strings made and freed per exchange; glibc's malloc
/// took a sixth of `kshark read`'s time on HTTP/2 captures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod deploy;
mod hubcmd;
mod lab;
mod read;
mod schema;
mod tap;
mod tuicmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kshark",
    version,
    about = "Wireshark for Kubernetes: see the HTTP, gRPC and DNS traffic between workloads",
    long_about = "kshark captures packets, reassembles TCP, and turns the traffic into \
request/response entries (HTTP/1.x, HTTP/2, gRPC and DNS), names both ends from Kubernetes, and prints them as NDJSON, HAR or a table.",
    after_help = "Examples:\n  kshark read capture.pcap                 a table on a terminal, NDJSON when piped\n  kshark read a.pcap b.pcapng --format har --output flows.har\n  tcpdump -w - -i lo port 80 | kshark read -\n\nRun `kshark help read` for the details of a command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dissect pcap or pcapng files into entries
    Read(read::ReadArgs),
    /// Capture live traffic of pods (or interfaces) and show it in the terminal UI (or print it)
    Tap(tap::TapArgs),
    /// Run the hub: ingest from workers, storage, the query API and live stream
    Hub(hubcmd::HubArgs),
    /// The per-node capture worker: capture, dissect, name, and ship entries to a hub
    Worker(tap::WorkerArgs),
    /// Print entries from a hub: stored ones matching a filter, then new ones (-f)
    Observe(hubcmd::ObserveArgs),
    /// The terminal UI on a running hub
    Tui(tuicmd::TuiArgs),
    /// A real two-node Kubernetes cluster on this machine with the sock-shop in it (needs root)
    Lab(lab::cluster::ClusterArgs),
    /// A quicker local sock-shop: network namespaces posing as pods, no cluster (needs root)
    Nslab(lab::LabArgs),
    /// Remove everything kshark put into a cluster (what carries its label), and say what
    Clean(deploy::CleanArgs),
}

/// A failure with its exit code.
pub enum Failure {
    /// Bad usage or bad input: exit 2.
    Input(String),
    /// Something went wrong while running: exit 1.
    Runtime(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Read(args) => read::run(args),
        Command::Tap(args) => tap::run(args),
        Command::Hub(args) => hubcmd::hub(args),
        Command::Worker(args) => tap::worker(args),
        Command::Observe(args) => hubcmd::observe(args),
        Command::Tui(args) => tuicmd::tui(args),
        Command::Lab(args) => lab::cluster::main(args),
        Command::Nslab(args) => lab::main(args),
        Command::Clean(args) => deploy::clean(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(m)) => {
            eprintln!("kshark: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("kshark: {m}");
            ExitCode::from(1)
        }
    }
}
