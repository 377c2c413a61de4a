#!/usr/bin/env bash
# Offline read against tshark and against a bare packet read, on an HTTP/1.1 mix of small
# and 8 KB answers, measured side by side in one run.
#
#   bench/read.sh [--size 240M] [--keep] [--runs 3] [--small 100] [--large 8192] [--connections 8]
#
# 1. Records real traffic on loopback with tcpdump: wrk (keep-alive HTTP/1.1, one thread,
#    8 connections) against nginx serving a ~100-byte JSON answer and an 8 KB one, half
#    each, until the file reaches --size or 30 s have passed. (`--small 4096 --large 32768
#    --connections 16` is the shape of bench/run.sh's capture.)
# 2. Times, on that file, each --runs times (the best is kept):
#    - the bare read: `tcpdump -r FILE -w /dev/null`, and kshark's own packet reader;
#    - `kshark read FILE --format ndjson > /dev/null` (every entry, bodies included);
#    - `tshark -r FILE -T json -J 'http dns'` (once: it is slow).
# 3. Prints both ratios: kshark's speed as a share of the bare read's, and kshark against
#    tshark.
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/nginx.sh
SIZE=240M
KEEP=0
RUNS=3
SMALL=100
LARGE=8192
CONNS=8
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL="$2"; shift 2 ;;
    --large) LARGE="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "usage: bench/read.sh [--size 240M] [--keep] [--runs 3] [--small 100] [--large 8192] [--connections 8]" >&2; exit 2 ;;
  esac
done
BYTES=$(numfmt --from=iec "$SIZE")
for t in nginx wrk tcpdump tshark; do
  command -v "$t" >/dev/null || { echo "bench/read: $t is missing: run scripts/setup.sh first" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/read: tcpdump needs root to capture on lo" >&2; exit 1; }
cargo build --release --quiet --bin kshark --example read_packets -p kshark-capture -p kshark
OUT=bench/out/read
mkdir -p "$OUT/www" "$OUT/nginx"
PCAP="$OUT/http-mix.pcap"
python3 - "$OUT/www" "$SMALL" "$LARGE" <<'PY'
import json, sys
def doc(n):
    """A JSON array of sock records, n bytes long (a short object when n is small)."""
    small = json.dumps({"id": "57a98d98e4b00679b4e9ae4b", "status": "ok", "items": 2, "total": 36.0})
    if n <= len(small) + 8:
        return small + " " * max(0, n - len(small))
    rows, i = [], 0
    while len(json.dumps(rows)) < n:
        rows.append({"id": "%08x" % (i * 2654435761 % 2**32), "name": "sock-%d" % i, "price": round(1 + i * 0.37, 2), "tag": ["blue", "formal", "sport"][i % 3]})
        i += 1
    return json.dumps(rows)[: n - 1] + "]"
open(sys.argv[1] + "/small.json", "w").write(doc(int(sys.argv[2])))
open(sys.argv[1] + "/large.json", "w").write(doc(int(sys.argv[3])))
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nginx_conf "$OUT" "$PORT" 1 256
nginx -c "$PWD/$OUT/nginx/nginx.conf" -p "$PWD/$OUT/nginx" & NGINX=$!
TCPDUMP=
cleanup() { kill "$NGINX" 2>/dev/null || true; [ -n "$TCPDUMP" ] && kill "$TCPDUMP" 2>/dev/null || true; }
trap cleanup EXIT
sleep 1
rm -f "$PCAP"
tcpdump -i lo -s 0 -B 262144 -U -w "$PCAP" "tcp port $PORT" 2>"$OUT/tcpdump.log" & TCPDUMP=$!
sleep 1
cat > "$OUT/mix.lua" <<'LUA'
local i = 0
request = function() i = i + 1; if i % 2 == 0 then return wrk.format("GET", "/large.json") end; return wrk.format("GET", "/small.json") end
LUA
wrk -t1 -c"$CONNS" -d30s -s "$OUT/mix.lua" "http://127.0.0.1:$PORT/" > "$OUT/wrk.log" & WRK=$!
START=$(date +%s)
while kill -0 "$WRK" 2>/dev/null; do
  sz=$(stat -c %s "$PCAP" 2>/dev/null || echo 0)
  if [ "$sz" -ge "$BYTES" ] || [ $(( $(date +%s) - START )) -ge 30 ]; then kill "$WRK" 2>/dev/null || true; break; fi
  sleep 0.1
done
wait "$WRK" 2>/dev/null || true
sleep 0.5; kill "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true; TCPDUMP=
grep -E "captured|dropped" "$OUT/tcpdump.log" | sed 's/^/tcpdump: /' || true
cleanup; trap - EXIT

python3 - "$PCAP" "$RUNS" <<'PY' | tee "$OUT/results.txt"
import json, os, resource, subprocess, sys, time
cap, runs = sys.argv[1], int(sys.argv[2])
rel = "target/release"
size = os.path.getsize(cap)

def timed(cmd, n):
    """The best wall time of n runs, and the CPU seconds of that run."""
    best = None
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if best is None or wall < best[0]:
            best = (wall, cpu, r.stderr.decode())
    return best

bare = timed(["tcpdump", "-r", cap, "-w", "/dev/null"], runs)
own = timed([rel + "/examples/read_packets", cap], runs)
k = timed([rel + "/kshark", "read", cap, "--format", "ndjson", "--stats"], runs)
stats = json.loads([l for l in k[2].splitlines() if l.startswith("{")][-1])
t = timed(["tshark", "-r", cap, "-T", "json", "-J", "http dns"], 1)
print("capture: %s, %.1f MB, %d packets, %d entries (%d HTTP requests)" % (cap, size / 1e6, stats["packets"], stats["entries"], stats["http_requests"]))
print("%-44s %8s %10s %8s" % ("", "wall s", "MB/s", "cpu s"))
for name, r in [("bare read: tcpdump -r FILE -w /dev/null", bare), ("bare read: kshark's packet reader", own),
                ("kshark read --format ndjson", k), ("tshark -T json -J 'http dns'", t)]:
    print("%-44s %8.3f %10.1f %8.2f" % (name, r[0], size / 1e6 / r[0], r[1]))
print("kshark read vs the bare read (tcpdump): %.0f%% of its speed (goal: 50%%)" % (100 * bare[0] / k[0]))
print("kshark read vs tshark: %.1fx faster (goal: 30x)" % (t[0] / k[0]))
PY
[ "$KEEP" = 1 ] || rm -f "$PCAP"
