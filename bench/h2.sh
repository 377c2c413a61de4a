#!/usr/bin/env bash
# kshark's HTTP/2 and gRPC benchmark: real peers, recorded, then kshark against tshark on
# the same file in the same run.
#
#   bench/h2.sh [--requests N] [--rounds N] [--keep]
#
# 1. Records on loopback with tcpdump: h2load (HTTP/2 prior knowledge, 16 connections, 10
#    concurrent streams each, N requests, default 200000) against nghttpd serving a 4 KiB
#    page and a 1 KiB JSON document; then tests/peers/grpc_peer.py (Python grpcio: unary,
#    client/server/bidirectional streaming, an error, gzip) for N rounds (default 3000).
# 2. Times the bare read, `kshark read --format ndjson` and tshark (told where HTTP/2 runs
#    with -d tcp.port==N,http2, which kshark does not need), with bench/measure.py.
# Everything listens on 127.0.0.1, is bounded in count, and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
REQS=200000
ROUNDS=3000
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: bench/h2.sh [--requests N] [--rounds N] [--keep]" >&2; exit 2 ;;
  esac
done
PY="${KSHARK_CACHE:-$HOME/.cache/kshark}/venv/bin/python"
for t in nghttpd h2load tcpdump tshark /usr/bin/time "$PY"; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing: run scripts/setup.sh first" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: tcpdump needs root to capture on lo" >&2; exit 1; }

OUT=bench/out
mkdir -p "$OUT/h2www"
PCAP="$OUT/h2-grpc.pcap"
H2PORT=18443
GRPCPORT=18451
echo "bench: building kshark (release)"
cargo build --release --quiet --bin kshark --example read_packets -p kshark-capture -p kshark
python3 - "$OUT/h2www" <<'PY'
import json, sys
open(sys.argv[1] + "/index.html", "w").write("<html><body>" + "<p>sock shop</p>" * 250 + "</body></html>")
open(sys.argv[1] + "/item.json", "w").write(json.dumps([{"id": i, "name": "sock-%d" % i, "price": 9.99} for i in range(24)]))
PY
nghttpd --no-tls -d "$OUT/h2www" "$H2PORT" >/dev/null 2>&1 & NGHTTPD=$!
cleanup() { kill "$NGHTTPD" 2>/dev/null || true; [ -n "${TCPDUMP:-}" ] && kill "$TCPDUMP" 2>/dev/null || true; }
trap cleanup EXIT
sleep 1

rm -f "$PCAP"
tcpdump -i lo -s 0 -B 262144 -U -Z root -w "$PCAP" "tcp port $H2PORT or tcp port $GRPCPORT" 2>"$OUT/tcpdump.log" & TCPDUMP=$!
sleep 1
echo "bench: h2load, $REQS requests"
timeout 300 h2load -n "$REQS" -c 16 -m 10 "http://127.0.0.1:$H2PORT/index.html" "http://127.0.0.1:$H2PORT/item.json" > "$OUT/h2load.log" || true
grep -E "requests:|status codes:" "$OUT/h2load.log" | sed 's/^/h2load: /'
echo "bench: gRPC, $ROUNDS rounds of 5 calls"
timeout 600 "$PY" tests/peers/grpc_peer.py "$GRPCPORT" "$ROUNDS"
sleep 1; kill -INT "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true; TCPDUMP=
grep -E "captured|dropped" "$OUT/tcpdump.log" | sed 's/^/tcpdump: /' || true
cleanup; trap - EXIT

python3 bench/measure.py "$PCAP" --http2-ports "$H2PORT,$GRPCPORT" | tee "$OUT/results-h2.txt"
[ "$KEEP" = 1 ] || rm -f "$PCAP"
