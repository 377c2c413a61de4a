#!/usr/bin/env bash
# kshark's main job, on a machine with no cluster: record real traffic between real peers
# on loopback (curl and nginx over keep-alive HTTP/1.1, dig and dnsmasq answering
# sock-shop names, nghttp and nghttpd over HTTP/2, a Python grpcio client and server doing
# unary and streaming calls), then dissect the capture with `kshark read`, gRPC messages
# typed from tests/peers/echo.proto.
# Writes target/demo/demo.pcap, demo.ndjson and demo.har; prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "demo: tcpdump needs root to capture on lo" >&2; exit 1; }
echo "demo: building kshark"
cargo build --release --quiet --bin kshark
D="$PWD/target/demo"
rm -rf "$D"; mkdir -p "$D/www" "$D/nginx"
echo '[{"id":"3395a43e","name":"Holy","price":99.99,"tag":["magic","action"]},{"id":"510a0d7e","name":"Crossed","price":17.32}]' > "$D/www/catalogue.json"
echo "<html><body><h1>sock shop</h1></body></html>" > "$D/www/index.html"
cat > "$D/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $D/nginx/nginx.pid;
error_log $D/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $D/nginx; proxy_temp_path $D/nginx; fastcgi_temp_path $D/nginx; uwsgi_temp_path $D/nginx; scgi_temp_path $D/nginx;
  types { application/json json; text/html html; }
  gzip on; gzip_types application/json; gzip_min_length 10;
  server {
    listen 127.0.0.1:18081;
    root $D/www;
    location /orders { return 201 '{"id":"o-1","status":"created"}'; }
    location /health { return 204; }
  }
}
CONF
nginx -c "$D/nginx/nginx.conf" -p "$D/nginx" & NGINX=$!
nghttpd --no-tls -d "$D/www" 18082 >/dev/null 2>&1 & NGHTTPD=$!
dnsmasq --no-daemon --port=15354 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --address=/catalogue.sock-shop.svc.cluster.local/10.96.0.11 --address=/carts.sock-shop.svc.cluster.local/10.96.0.12 \
  --srv-host=_http._tcp.catalogue.sock-shop.svc.cluster.local,catalogue.sock-shop.svc.cluster.local,80 \
  --log-facility=/dev/null 2>/dev/null & DNSMASQ=$!
TCPDUMP=
cleanup() { kill $NGINX $NGHTTPD $DNSMASQ ${TCPDUMP:-} 2>/dev/null || true; }
trap cleanup EXIT
sleep 1
tcpdump -i lo -s 0 -U --immediate-mode -Z root -w "$D/demo.pcap" 'tcp port 18081 or tcp port 18082 or tcp port 18083 or udp port 15354' 2>/dev/null & TCPDUMP=$!
sleep 1
for q in "catalogue.sock-shop.svc.cluster.local A" "carts.sock-shop.svc.cluster.local A" \
         "_http._tcp.catalogue.sock-shop.svc.cluster.local SRV" "front-end.sock-shop.svc.cluster.local A"; do
  dig @127.0.0.1 -p 15354 +tries=1 +time=2 $q >/dev/null || true
done
B=http://127.0.0.1:18081
curl -s -o /dev/null $B/index.html -o /dev/null $B/catalogue.json -H 'Accept-Encoding: gzip' \
     -o /dev/null "$B/catalogue.json?tags=magic&page=2" -o /dev/null $B/health -o /dev/null $B/missing || true
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"customer":"c-1","items":["3395a43e"]}' $B/orders || true
curl -s -o /dev/null -I $B/index.html || true
# HTTP/2 with prior knowledge: three concurrent streams on one connection
nghttp -n http://127.0.0.1:18082/index.html http://127.0.0.1:18082/catalogue.json http://127.0.0.1:18082/missing || true
# gRPC: unary, client/server/bidirectional streaming, a failing call
"${KSHARK_CACHE:-$HOME/.cache/kshark}/venv/bin/python" tests/peers/grpc_peer.py 18083 >/dev/null || true
sleep 1
kill $TCPDUMP; wait $TCPDUMP 2>/dev/null || true; TCPDUMP=
cleanup; trap - EXIT
K=./target/release/kshark
$K read "$D/demo.pcap" --format ndjson --proto tests/peers/echo.proto --output "$D/demo.ndjson"
$K read "$D/demo.pcap" --format har --output "$D/demo.har"
$K read "$D/demo.pcap" --format table
echo
echo "demo: entries in $D/demo.ndjson, HAR in $D/demo.har, the capture in $D/demo.pcap"
