#!/bin/bash
# Builds a real Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy and kubectl v1.20.2) from Debian bookworm's `kubernetes` source
# package with Debian's Go, and installs etcd-server, for the lab's cluster (`kshark lab up`).
# The result is cached outside the repository; a second run only checks it.
#
#   sudo bash scripts/k8s.sh            # build (about 9 minutes on 2 cores) or reuse
#   bash scripts/k8s.sh --print-bindir  # where the binaries are (or will be)
#
# KSHARK_CACHE (default ~/.cache/kshark) picks the cache directory.
set -euo pipefail
VERSION=1.20.2
DEBVER=1.20.5+really1.20.2-1.1+deb12u1
CACHE=${KSHARK_CACHE:-$HOME/.cache/kshark}
WORK=$CACHE/k8s-$VERSION
BIN=$WORK/bin
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
if [ "${1:-}" = --print-bindir ]; then echo "$BIN"; exit 0; fi
say() { echo "k8s: $*"; }
have_all() {
  for c in $BINARIES; do [ -x "$BIN/$c" ] || return 1; done
  command -v etcd >/dev/null
}
if have_all; then say "control plane v$VERSION cached in $BIN"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "k8s: building the control plane needs root (apt-get): run with sudo" >&2; exit 1; }
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/src"
say "installing Go, etcd and build tools from Debian"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go rsync make etcd-server golang-github-modern-go-reflect2-dev >/dev/null
# the source package comes from bookworm's deb-src, through a private apt state so the
# machine's own sources are left as they are
echo "deb-src http://deb.debian.org/debian bookworm main" > "$WORK/apt/sources.list"
APTO=(-o "Dir::Etc::sourcelist=$WORK/apt/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache")
cd "$WORK/src"
if [ ! -d "kubernetes-$VERSION" ]; then
  say "downloading Debian's kubernetes $DEBVER source package"
  apt-get "${APTO[@]}" update -qq
  apt-get "${APTO[@]}" source --download-only "kubernetes=$DEBVER" >/dev/null
  tar xzf "kubernetes_1.20.5+really$VERSION.orig.tar.gz"
fi
cd "kubernetes-$VERSION"
# 1.20 vendors modern-go/reflect2 1.0.1, which crashes (json-iterator map encoding,
# under watch load) when built with Go >= 1.18; Debian's 1.0.2 knows newer Go
rm -rf vendor/github.com/modern-go/reflect2
cp -rL /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
export HOME="$WORK/home" GOCACHE="$WORK/gocache" CGO_ENABLED=0 \
  KUBE_GIT_VERSION=v$VERSION KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian-$VERSION
mkdir -p "$HOME"
say "building $BINARIES (about 9 minutes on 2 cores)"
T0=$SECONDS
make WHAT="$(for b in $BINARIES; do printf 'cmd/%s ' "$b"; done)" >"$WORK/build.log" 2>&1 ||
  { tail -20 "$WORK/build.log" >&2; echo "k8s: build failed; the log is $WORK/build.log" >&2; exit 1; }
mkdir -p "$BIN"
for b in $BINARIES; do cp "_output/bin/$b" "$BIN/"; done
rm -rf "$WORK/gocache" _output
say "built in $((SECONDS - T0)) s: $("$BIN/kube-apiserver" --version)"
