#!/usr/bin/env bash
# The database, queue and WebSocket parsers' speed, against tshark, on traffic recorded
# from real peers under load.
#
#   bench/l7.sh [--keep]
#
# 1. Starts real servers on loopback (redis-server, PostgreSQL, MariaDB, RabbitMQ,
#    mosquitto, a Python websockets echo server) and drives each with its own load tool
#    or client (redis-benchmark, pgbench -M extended, mariadb-slap, pika, mosquitto_pub,
#    websockets), bounded in count, while tcpdump records everything into one capture.
# 2. Cuts the capture by protocol (tcpdump -r with a port filter) and times, on each part
#    and on the whole: `kshark read --format ndjson` and tshark with the same protocols'
#    dissectors (`-T json -J "resp pgsql mysql amqp mqtt websocket"`, told the ports), best
#    of three. Prints MB/s, entries per second and the ratio to tshark.
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
for t in tcpdump tshark redis-server redis-benchmark mariadbd mariadb-slap mosquitto mosquitto_pub rabbitmq-server; do
  command -v "$t" >/dev/null || { echo "bench/l7: $t is missing: run scripts/setup.sh first" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/l7: tcpdump needs root to capture on lo" >&2; exit 1; }
VENV="${KSHARK_CACHE:-$HOME/.cache/kshark}/venv"
cargo build -q --release --bin kshark
K=$PWD/target/release/kshark
D=$(mktemp -d)
chmod 755 "$D"
PIDS=()
EPMD_BEFORE=0; pgrep -x epmd >/dev/null && EPMD_BEFORE=1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port); PP=$(port); MP=$(port); AP=$(port); QP=$(port); WP=$(port)
RMQ_ENV=(RABBITMQ_NODE_PORT=$AP RABBITMQ_NODENAME=kbench$AP@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT=$(port)
         RABBITMQ_MNESIA_BASE=$D/rmq/mnesia RABBITMQ_LOG_BASE=$D/rmq/log RABBITMQ_ENABLED_PLUGINS_FILE=$D/rmq/plugins
         RABBITMQ_FEATURE_FLAGS_FILE=$D/rmq/ff RABBITMQ_CONFIG_FILE=$D/rmq/none)
cleanup() {
  env "${RMQ_ENV[@]}" rabbitmqctl -n "kbench$AP@localhost" stop >/dev/null 2>&1 || true
  [ "$EPMD_BEFORE" = 1 ] || epmd -kill >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  [ "$KEEP" = 1 ] && echo "bench/l7: kept $D" || rm -rf "$D"
}
trap cleanup EXIT

echo "bench/l7: starting the servers"
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$D" >/dev/null & PIDS+=($!)
mkdir -p "$D/pg" && echo secret > "$D/pg/pw" && chown -R postgres:postgres "$D/pg"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
runuser -u postgres -- "$PGBIN/initdb" -A md5 -U postgres --pwfile="$D/pg/pw" -D "$D/pg/data" >/dev/null
runuser -u postgres -- "$PGBIN/postgres" -D "$D/pg/data" -p "$PP" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$D/pg" >/dev/null 2>&1 & PIDS+=($!)
mariadb-install-db --no-defaults --user=root --auth-root-authentication-method=normal --skip-test-db --datadir="$D/my" >/dev/null
mariadbd --no-defaults --user=root --bind-address=127.0.0.1 --skip-log-bin --datadir="$D/my" --socket="$D/my.sock" --port="$MP" >/dev/null 2>&1 & PIDS+=($!)
mkdir -p "$D/rmq/mnesia" "$D/rmq/log" && chown -R rabbitmq:rabbitmq "$D/rmq"
env "${RMQ_ENV[@]}" rabbitmq-server >/dev/null 2>&1 & PIDS+=($!)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$QP" > "$D/mq.conf"
mosquitto -c "$D/mq.conf" >/dev/null 2>&1 & PIDS+=($!)
wait_port() { for _ in $(seq 1 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "bench/l7: nothing listens on $1" >&2; exit 1; }
for p in $RP $PP $MP $AP $QP; do wait_port "$p"; done
export PGPASSWORD=secret
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PP" -U postgres -i -s 1 -q -I dtGp postgres >/dev/null 2>&1

echo "bench/l7: recording the load"
PCAP=$D/l7.pcap
tcpdump -i lo -U -B 65536 -s 0 -w "$PCAP" "tcp port $RP or tcp port $PP or tcp port $MP or tcp port $AP or tcp port $QP or tcp port $WP" 2>/dev/null & TD=$!
PIDS+=($TD)
sleep 1
redis-benchmark -h 127.0.0.1 -p "$RP" -n 100000 -c 4 -P 8 -t set,get,incr,lpush,hset -q >/dev/null
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PP" -U postgres -M extended -S -c 4 -t 5000 postgres >/dev/null 2>&1
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PP" -U postgres -M simple -c 2 -t 2000 postgres >/dev/null 2>&1
mariadb-slap --no-defaults -h 127.0.0.1 -P "$MP" -u root --skip-ssl --concurrency=4 --iterations=2 --number-of-queries=4000 --auto-generate-sql --auto-generate-sql-load-type=mixed >/dev/null 2>&1
"$VENV/bin/python" - "$AP" <<'PY'
import sys, pika
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
ch = c.channel()
ch.queue_declare("bench")
for i in range(20000):
    ch.basic_publish("", "bench", b"order %d" % i)
n = 0
for m, p, b in ch.consume("bench", inactivity_timeout=2):
    if m is None:
        break
    ch.basic_ack(m.delivery_tag)
    n += 1
c.close()
PY
for q in 0 1 2; do mosquitto_pub -h 127.0.0.1 -p "$QP" -t "bench/q$q" -q "$q" -l < <(seq 1 5000 | sed 's/^/reading /') ; done
/usr/bin/python3 - "$WP" <<'PY'
import asyncio, sys, websockets
port = int(sys.argv[1])
async def echo(ws, *_):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", port):
        async with websockets.connect(f"ws://127.0.0.1:{port}/feed") as ws:
            for i in range(20000):
                await ws.send("tick %d %s" % (i, "x" * (i % 200)))
                await ws.recv()
asyncio.run(main())
PY
sleep 1
kill -INT "$TD"; wait "$TD" 2>/dev/null || true

cut() { tcpdump -r "$PCAP" -w "$D/$1.pcap" "tcp port $2" 2>/dev/null; }
cut redis "$RP"; cut postgresql "$PP"; cut mysql "$MP"; cut amqp "$AP"; cut mqtt "$QP"; cut websocket "$WP"
cp "$PCAP" "$D/all.pcap"
DECODE=(-d "tcp.port==$RP,resp" -d "tcp.port==$PP,pgsql" -d "tcp.port==$MP,mysql" -d "tcp.port==$AP,amqp" -d "tcp.port==$QP,mqtt" -d "tcp.port==$WP,http")
best() { # best wall time of three runs of the command, in seconds
  local b=
  for _ in 1 2 3; do
    local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    b=$(python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); b=sys.argv[3]; print(t if not b or t < float(b) else b)" "$t0" "$t1" "$b")
  done
  echo "$b"
}
printf '%-11s %9s %9s %11s %12s %12s %8s\n' part MB entries "kshark s" "kshark MB/s" "tshark s" ratio
for part in redis postgresql mysql amqp mqtt websocket all; do
  f="$D/$part.pcap"
  mb=$(python3 -c "import os,sys; print('%.1f' % (os.path.getsize(sys.argv[1]) / 1e6))" "$f")
  n=$("$K" read "$f" --format ndjson 2>/dev/null | wc -l)
  tk=$(best "$K" read "$f" --format ndjson)
  tt=$(best tshark -n -r "$f" "${DECODE[@]}" -T json -J "resp pgsql mysql amqp mqtt websocket")
  python3 -c "import sys; p,mb,n,tk,tt=sys.argv[1],float(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4]),float(sys.argv[5]); print('%-11s %9.1f %9d %11.3f %12.1f %12.2f %7.1fx' % (p, mb, n, tk, mb/tk, tt, tt/tk))" "$part" "$mb" "$n" "$tk" "$tt"
done
