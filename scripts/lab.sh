#!/usr/bin/env bash
# The main job on a machine with no cluster: installs what is needed (scripts/setup.sh),
# builds kshark, starts the local sock-shop lab (`kshark nslab up`: network namespaces posing as pods), turns its traffic on,
# and taps it live for 20 s (`kshark tap -n sock-shop`), printing each entry as it
# completes. The lab stays up afterwards; `./target/release/kshark nslab down` removes
# all of it.
#
#   bash scripts/lab.sh [SECONDS]     (as root; the real two-node cluster is `kshark lab up`)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "lab: needs root (network namespaces, veths, eBPF): run it in a root shell" >&2; exit 1; }
SECS="${1:-20}"
bash scripts/setup.sh
echo "lab: building kshark (release)"
cargo build --release --quiet --bin kshark
K=./target/release/kshark
$K nslab up
$K nslab traffic --rate 10
echo
echo "lab: tapping sock-shop for ${SECS}s (eBPF when it loads, else libpcap)"
$K tap -n sock-shop --no-tui --format table --duration "${SECS}s" --proto /run/kshark-lab/payment.proto
echo
echo "lab: still up. Watch it: $K tap -n sock-shop   (the terminal UI; --no-tui prints)"
echo "     in the browser:    $K tap -n sock-shop --web   (then http://127.0.0.1:8899/)"
echo "     as NDJSON:         $K tap -n sock-shop --no-tui --format ndjson | jq ."
echo "     remove it:         $K nslab down"
