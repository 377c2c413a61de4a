#!/usr/bin/env bash
# kshark's throughput and memory benchmark, with tshark and the bare packet read in the
# same run on the same file.
#
#   bench/run.sh [--size 2G] [--keep] [--capture-only | --no-capture]
#
# 1. Records real traffic on loopback with tcpdump: wrk (keep-alive HTTP/1.1, 16
#    connections) against nginx serving a 32 KiB JSON document and a 4 KiB page, and dig
#    (a batch of queries, bounded) against dnsmasq answering sock-shop names. Recording stops
#    at --size bytes or after 120 s, whichever comes first.
# 2. Times, one after the other: the bare read (every packet through kshark's reader),
#    `kshark read --format ndjson`, and `tshark` dissecting HTTP and DNS with TCP
#    reassembly, printing wall time, throughput and peak memory (RSS) of each.
# 3. The live-capture benchmark (bench/capture.py): each engine (capture plus dissection,
#    and the whole worker shipping to a hub) and `tcpdump -w /dev/null` on the same
#    injected traffic in a network namespace pair: packets per second taken without loss,
#    CPU seconds per million packets, peak memory; the dissector alone on a recording of
#    that traffic; and the worker's memory with 100,000 open connections.
# 4. The filter language (hub/examples/filter_speed.rs): ns per entry of compiled filters
#    over the corpus's entries, next to what parsing an entry's JSON costs.
# Everything listens on 127.0.0.1 or inside the benchmark's own namespaces and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/nginx.sh
SIZE=2G
KEEP=0
CAPTURE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --capture-only) exec python3 bench/capture.py ;;
    --no-capture) CAPTURE=0; shift ;;
    *) echo "usage: bench/run.sh [--size 2G] [--keep] [--capture-only | --no-capture]" >&2; exit 2 ;;
  esac
done
BYTES=$(numfmt --from=iec "$SIZE")
for t in nginx wrk dig dnsmasq tcpdump tshark /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing: run scripts/setup.sh first" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: tcpdump needs root to capture on lo" >&2; exit 1; }

OUT=bench/out
mkdir -p "$OUT/www" "$OUT/nginx"
PCAP="$OUT/http-dns.pcap"
echo "bench: building kshark (release)"
cargo build --release --quiet --bin kshark --example read_packets -p kshark-capture -p kshark

# --- the peers -----------------------------------------------------------------------
python3 - "$OUT/www" <<'PY'
import json, sys, random
random.seed(7)
items = [{"id": "%08x" % random.getrandbits(32), "name": "sock-%d" % i, "description": "a pair of socks, colour %d" % i,
          "price": round(random.uniform(1, 100), 2), "count": random.randint(0, 500), "tag": ["blue", "formal", "sport"][i % 3]}
         for i in range(200)]
doc = json.dumps(items)
while len(doc) < 32 * 1024:
    items += items[:10]; doc = json.dumps(items)
open(sys.argv[1] + "/catalogue.json", "w").write(doc[: 32 * 1024 - 1] + "]")
open(sys.argv[1] + "/index.html", "w").write("<html><body>" + "<p>sock shop</p>" * 250 + "</body></html>")
PY
nginx_conf "$OUT" 18080 2 1024
nginx -c "$PWD/$OUT/nginx/nginx.conf" -p "$PWD/$OUT/nginx" & NGINX=$!
dnsmasq --no-daemon --port=15353 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --address=/catalogue.sock-shop.svc.cluster.local/10.96.0.11 --address=/carts.sock-shop.svc.cluster.local/10.96.0.12 \
  --address=/orders.sock-shop.svc.cluster.local/10.96.0.13 --address=/payment.sock-shop.svc.cluster.local/10.96.0.14 \
  --log-facility=/dev/null & DNSMASQ=$!
cleanup() { kill "$NGINX" "$DNSMASQ" 2>/dev/null || true; [ -n "${TCPDUMP:-}" ] && kill "$TCPDUMP" 2>/dev/null || true; }
trap cleanup EXIT
sleep 1

# --- record ----------------------------------------------------------------------------
rm -f "$PCAP"
tcpdump -i lo -s 0 -B 262144 -U -w "$PCAP" 'tcp port 18080 or udp port 15353' 2>"$OUT/tcpdump.log" & TCPDUMP=$!
sleep 1
for n in catalogue carts orders payment nosuch; do for t in A AAAA SRV; do echo "$n.sock-shop.svc.cluster.local $t"; done; done > "$OUT/queries"
( for i in $(seq 1 400); do dig @127.0.0.1 -p 15353 +tries=1 +time=1 -f "$OUT/queries" >/dev/null 2>&1 || true; done ) & DIG=$!
cat > "$OUT/mix.lua" <<'LUA'
local paths = {"/catalogue.json", "/catalogue.json", "/catalogue.json", "/index.html"}
local i = 0
request = function() i = i + 1; return wrk.format("GET", paths[(i % #paths) + 1]) end
LUA
wrk -t2 -c16 -d120s -s "$OUT/mix.lua" http://127.0.0.1:18080/ > "$OUT/wrk.log" & WRK=$!
START=$(date +%s)
while kill -0 "$WRK" 2>/dev/null; do
  sz=$(stat -c %s "$PCAP" 2>/dev/null || echo 0)
  if [ "$sz" -ge "$BYTES" ] || [ $(( $(date +%s) - START )) -ge 120 ]; then kill "$WRK" 2>/dev/null || true; break; fi
  sleep 0.2
done
wait "$WRK" 2>/dev/null || true
kill "$DIG" 2>/dev/null || true; wait "$DIG" 2>/dev/null || true
sleep 0.5; kill "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true; TCPDUMP=
grep -E "captured|dropped" "$OUT/tcpdump.log" | sed 's/^/tcpdump: /' || true
cleanup; trap - EXIT

# --- measure ---------------------------------------------------------------------------
python3 bench/measure.py "$PCAP" | tee "$OUT/results.txt"
[ "$KEEP" = 1 ] || rm -f "$PCAP"

# --- live capture ------------------------------------------------------------------------
[ "$CAPTURE" = 0 ] || python3 bench/capture.py | tee "$OUT/capture.txt"

# --- filters -----------------------------------------------------------------------------
cargo run --release -q -p kshark-hub --example filter_speed | tee "$OUT/filter.txt"

# --- hub -----------------------------------------------------------------------------------
# 5. The hub (hub/examples/hub_bench.rs): ingest rate through the real WebSocket path, a
#    filtered query over 1,000,000 stored entries, latency to 10 live subscribers at 10,000
#    entries/s, peak memory.
cargo run --release -q -p kshark-hub --example hub_bench | tee "$OUT/hub.txt"

# --- terminal UI ---------------------------------------------------------------------------
# 6. The terminal UI (tui/examples/tui_bench.rs): 5,000 entries/s for 20 s, a tick and a
#    redraw every 40 ms through the crossterm backend; frames/s, frame times, CPU, backlog.
cargo run --release -q -p kshark-tui --example tui_bench | tee "$OUT/tui.txt"

# --- dashboard -------------------------------------------------------------------------------
# 7. The browser dashboard (hub/examples/web_bench.rs + web/e2e/bench.mjs): the page open
#    in headless Chromium for 60 s while the hub gets 5,000 real entries/s; frame
#    intervals, long tasks, JS heap, entries received.
cargo run --release -q -p kshark-hub --example web_bench | tee "$OUT/web.txt"
