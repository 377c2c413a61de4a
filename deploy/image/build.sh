#!/usr/bin/env bash
# Container images for the lab's cluster and for kshark itself, built offline: no
# registry and no Docker daemon. The base is Debian bookworm made by debootstrap from
# Debian's archive (minbase plus python3, python3-grpcio, dnsmasq, libpcap and iproute2);
# images are `docker save` archives that `ctr images import` and `docker load` read.
# Everything is cached outside the repository (KSHARK_CACHE, default ~/.cache/kshark).
#
#   bash deploy/image/build.sh base                 # the base layer and the pause image (once; about 2 minutes)
#   bash deploy/image/build.sh kshark [BINARY]      # kshark:0.1.0 from a built kshark (default target/release/kshark)
#   bash deploy/image/build.sh --print-dir          # where the archives are
#
# `kshark lab up` loads base, pause and (when built) kshark into every node; after a new
# build of kshark, `kshark lab load` loads it again. Users with a registry can still use
# deploy/Dockerfile.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE=${KSHARK_CACHE:-$HOME/.cache/kshark}
OUT=$CACHE/images
SUITE=bookworm
MIRROR=${KSHARK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=python3,python3-grpcio,dnsmasq-base,libpcap0.8,ca-certificates,iproute2
say() { echo "image: $*"; }
mkdir -p "$OUT"
case "${1:-}" in
  --print-dir) echo "$OUT"; exit 0 ;;
  base)
    [ "$(id -u)" = 0 ] || { echo "image: debootstrap needs root" >&2; exit 1; }
    if [ ! -s "$OUT/base-layer.tar" ]; then
      command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
      ROOT=$OUT/rootfs.tmp
      rm -rf "$ROOT"
      say "debootstrap $SUITE (minbase + $PKGS) from $MIRROR"
      T0=$SECONDS
      debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOT" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 ||
        { tail -5 "$OUT/debootstrap.log" >&2; echo "image: debootstrap failed; the log is $OUT/debootstrap.log" >&2; exit 1; }
      # an image carries no package caches, no machine identity and no device nodes (the
      # runtime makes /dev, /proc and /sys)
      rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/dev/* "$ROOT"/etc/machine-id
      : > "$ROOT/etc/resolv.conf"
      echo "kshark:x:65532:65532:kshark:/data:/usr/sbin/nologin" >> "$ROOT/etc/passwd"
      echo "kshark:x:65532:" >> "$ROOT/etc/group"
      mkdir -p "$ROOT/data" && chown 65532:65532 "$ROOT/data"
      tar --numeric-owner --xattrs -C "$ROOT" -cf "$OUT/base-layer.tar.tmp" .
      mv "$OUT/base-layer.tar.tmp" "$OUT/base-layer.tar"
      rm -rf "$ROOT"
      say "base layer built in $((SECONDS - T0)) s: $(du -h "$OUT/base-layer.tar" | cut -f1)"
    else
      say "base layer cached: $OUT/base-layer.tar"
    fi
    python3 "$HERE/archive.py" "$OUT/lab.tar" kshark.local/lab:1 "$OUT/base-layer.tar" --cmd '["python3"]'
    if [ ! -s "$OUT/pause-layer.tar" ] || [ "$HERE/pause.c" -nt "$OUT/pause-layer.tar" ]; then
      P=$OUT/pause.tmp; rm -rf "$P"; mkdir -p "$P"
      gcc -static -O2 -s -o "$P/pause" "$HERE/pause.c"
      tar --numeric-owner --owner=0 --group=0 -C "$P" -cf "$OUT/pause-layer.tar" pause
      rm -rf "$P"
    fi
    python3 "$HERE/archive.py" "$OUT/pause.tar" kshark.local/pause:1 "$OUT/pause-layer.tar" --entrypoint '["/pause"]'
    ;;
  kshark)
    BIN=${2:-target/release/kshark}
    [ -x "$BIN" ] || { echo "image: no kshark binary at $BIN (cargo build --release --bin kshark)" >&2; exit 1; }
    [ -s "$OUT/base-layer.tar" ] || { echo "image: the base layer is not built: bash deploy/image/build.sh base" >&2; exit 1; }
    K=$OUT/kshark.tmp; rm -rf "$K"; mkdir -p "$K/usr/local/bin"
    install -m 0755 "$BIN" "$K/usr/local/bin/kshark"
    tar --numeric-owner --owner=0 --group=0 -C "$K" -cf "$OUT/kshark-layer.tar" usr
    rm -rf "$K"
    python3 "$HERE/archive.py" "$OUT/kshark.tar" kshark:0.1.0 "$OUT/base-layer.tar" "$OUT/kshark-layer.tar" \
      --entrypoint '["/usr/local/bin/kshark"]' --cmd '["hub","--listen","0.0.0.0:8899","--data","/data"]' --user 65532
    ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
