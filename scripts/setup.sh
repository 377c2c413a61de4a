#!/usr/bin/env bash
# Installs what kshark's demo, tests and benchmark need on a fresh Debian machine of this
# kind (run as root). Idempotent: packages already there are left alone.
set -euo pipefail
PKGS=(python3 python3-venv tcpdump tshark nginx-light wrk dnsutils dnsmasq-base curl time libpcap-dev
      nghttp2-client nghttp2-server clang libbpf-dev iproute2 util-linux openssl tmux chromium
      containerd runc containernetworking-plugins iptables conntrack debootstrap
      golang-go golang-golang-x-net-dev binutils gnutls-bin python3-grpcio
      redis-server redis-tools postgresql postgresql-contrib mariadb-server mariadb-client rabbitmq-server
      mosquitto mosquitto-clients python3-websockets)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture: no
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust stable) is needed and not found" >&2; exit 1; }

# the dashboard (web/): TypeScript built by Vite into the binary (hub/build.rs), and its
# browser tests (playwright-core driving Debian's chromium); packages from the lockfile
command -v npm >/dev/null || { echo "setup: npm (Node.js) is needed to build the dashboard and not found" >&2; exit 1; }
WEB="$(cd "$(dirname "$0")/../web" && pwd)"
# (`npm install --no-save` takes the lockfile's versions and integrity hashes as `npm ci`
# would; `npm ci` itself refuses here, as this machine's registry lacks some other
# platforms' optional binaries that the lockfile lists)
if [ ! -x "$WEB/node_modules/.bin/vite" ] || [ "$WEB/package-lock.json" -nt "$WEB/node_modules/.package-lock.json" ]; then
  echo "setup: npm install (from package-lock.json) in web/"
  (cd "$WEB" && npm install --no-save --no-audit --no-fund --loglevel=error)
fi

# a real gRPC peer for the tests and the benchmark: Python grpcio from PyPI, in a venv of
# its own outside the repository
VENV="${KSHARK_CACHE:-$HOME/.cache/kshark}/venv"
if ! "$VENV/bin/python" -c "import grpc" 2>/dev/null; then
  echo "setup: installing grpcio into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "grpcio==1.76.0"
fi
# and an AMQP client for the RabbitMQ tests
if ! "$VENV/bin/python" -c "import pika" 2>/dev/null; then
  echo "setup: installing pika into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "pika==1.3.2"
fi

# a real Kubernetes control plane for the lab's API server and the identity tests: built
# from Debian's source package with Debian's Go and cached outside the repository (about
# 5 minutes the first time; a check afterwards)
bash "$(dirname "$0")/k8s.sh"

# the lab cluster's images (a Debian base made by debootstrap, the pod sandbox's pause),
# built offline and cached outside the repository (about a minute the first time)
bash "$(dirname "$0")/../deploy/image/build.sh" base
