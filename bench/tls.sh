#!/usr/bin/env bash
# What reading TLS as plaintext (uprobes on OpenSSL) costs the traced processes, and kshark.
#
#   bench/tls.sh [SECONDS]
#
# wrk (OpenSSL) against nginx (OpenSSL) over HTTPS on loopback, keep-alive HTTP/1.1, one
# thread and 8 connections, a 1 KiB document, for SECONDS (default 10) each:
#   1. without kshark;
#   2. with `kshark tap -i lo --tls off` (packets only: the TLS records are captured but
#      not read);
#   3. with `kshark tap -i lo` (the default --tls auto: both wrk's and nginx's SSL_read and
#      SSL_write hooked, the plaintext dissected into entries).
# Then the same with a Go client against a Go server (tests/go/tlspeer, Debian's Go: h2
# over TLS, crypto/tls hooked by kshark), 8 connections.
# Prints requests per second of each, the drop against 1, and kshark's CPU per request
# (user + system, from /proc) in 2 and 3. Everything listens on 127.0.0.1 and stops by
# itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
for t in nginx wrk openssl go; do
  command -v "$t" >/dev/null || { echo "bench/tls: $t is missing: run scripts/setup.sh first" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/tls: uprobes need root" >&2; exit 1; }
cargo build -q --release
K=target/release/kshark
D=$(mktemp -d)
NGINX_PID=
GO_PID=
cleanup() { [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null; [ -n "$GO_PID" ] && kill "$GO_PID" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
mkdir -p "$D/www"
head -c 1024 /dev/zero | tr '\0' 'x' > "$D/www/doc.txt"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$D/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; error_log $D/error.log; pid $D/nginx.pid;
events { worker_connections 256; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $D/t1; proxy_temp_path $D/t2; fastcgi_temp_path $D/t3; uwsgi_temp_path $D/t4; scgi_temp_path $D/t5;
  server { listen 127.0.0.1:$PORT ssl; ssl_certificate $D/cert.pem; ssl_certificate_key $D/key.pem; root $D/www; } }
EOF
nginx -c "$D/nginx.conf" & NGINX_PID=$!
sleep 1
URL="https://127.0.0.1:$PORT/doc.txt"

# as fast as it goes, or paced (PACE=1): 10 connections each waiting 1 ms between
# requests, about 10,000 requests/s in all
echo 'function delay() return 1 end' > "$D/pace.lua"
rps() {
  if [ "${CLIENT:-wrk}" = go ]; then
    "$D/tlspeer" load "$GO_URL" "$SECS" 8 "$([ "${PACE:-0}" = 1 ] && echo 10000 || echo 0)" | awk '/requests\/s/ {print $2}'
  elif [ "${PACE:-0}" = 1 ]; then wrk -t1 -c10 -d"${SECS}s" -s "$D/pace.lua" "$URL"; else wrk -t1 -c8 -d"${SECS}s" "$URL"; fi | awk '/Requests\/sec/ {print $2} /^[0-9]/ {print}'
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_with() {
  local label="$1"; shift
  "$K" tap -i lo --port 0 --no-tui --format ndjson "$@" > "$D/out.ndjson" 2> "$D/err.txt" &
  local kp=$!
  sleep 3
  local c0; c0=$(cpu "$kp")
  local r; r=$(rps)
  local c1; c1=$(cpu "$kp")
  kill -INT "$kp"; wait "$kp" || true
  local entries; entries=$(wc -l < "$D/out.ndjson")
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$label" "$r" "$BASE" "$c0" "$c1" "$hz" "$SECS" "$entries" <<'PY'
import sys
label, r, base, c0, c1, hz, secs, entries = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
cpu = (c1 - c0) / hz
reqs = r * secs
print(f"{label:<34} {r:>10,.0f} req/s  {100 * (r - base) / base:+6.1f}%   kshark {cpu:5.2f} CPU s, {1e6 * cpu / max(reqs, 1):6.1f} µs per request; {entries:,} entries")
PY
}

# CLIENT's requests, as fast as it goes and paced: without kshark, with the tap not
# reading TLS, and with it reading TLS
compare() {
  local what="$1"
  for PACE in 0 1; do
    if [ "$PACE" = 1 ]; then echo "-- $what, paced: about 10,000 requests/s"; else echo "-- $what, as fast as it goes"; fi
    BASE=$(rps)
    printf '%-34s %10s req/s\n' "no kshark" "$(printf '%.0f' "$BASE")"
    run_with "with kshark tap -i lo --tls off" --tls off
    run_with "with kshark tap -i lo (TLS read)"
    grep "kshark: TLS: [0-9]" "$D/err.txt" | tail -1
  done
}

CLIENT=wrk compare "wrk -> nginx over HTTPS"

# Go's crypto/tls: a Go client against a Go server, h2 over TLS
(cd tests/go/tlspeer && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$D/gocache" go build -o "$D/tlspeer" .)
GO_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GO_PLAIN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$D/tlspeer" serve "$D/cert.pem" "$D/key.pem" "127.0.0.1:$GO_PORT" "127.0.0.1:$GO_PLAIN" 2>/dev/null & GO_PID=$!
sleep 1
GO_URL="https://127.0.0.1:$GO_PORT"
CLIENT=go compare "Go client -> Go server (h2 over TLS)"
