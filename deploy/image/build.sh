#!/usr/bin/env bash
# Container images for the lab's cluster and for kshark itself, built offline: no
# registry and no Docker daemon. The base is Debian bookworm made by debootstrap from
# Debian's archive (minbase plus python3, python3-grpcio, dnsmasq, libpcap and iproute2).
# The lab's image adds a layer with the sock-shop's real stores (MariaDB, PostgreSQL,
# Redis, RabbitMQ) and their Python clients, installed with apt-get in a chroot over the
# base (an overlay mount: the layer is what the install wrote, as a Dockerfile's RUN).
# Images are `docker save` archives that `ctr images import` and `docker load` read.
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
# the lab layer's packages (its cache key: change the list and the layer is built again)
DB_PKGS="mariadb-server mariadb-client postgresql redis-server rabbitmq-server python3-pymysql python3-psycopg2 python3-redis python3-pika"
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
    # the lab's layer: the stores, installed over the base in an overlay (once per list)
    STAMP=$(echo "$DB_PKGS" | sha256sum | cut -c1-12)
    if [ ! -s "$OUT/lab-layer.tar" ] || [ "$(cat "$OUT/lab-layer.stamp" 2>/dev/null)" != "$STAMP" ] || [ "$OUT/base-layer.tar" -nt "$OUT/lab-layer.tar" ]; then
      T0=$SECONDS
      L=$OUT/lab.tmp
      umount "$L/merged/proc" "$L/merged/dev" 2>/dev/null || true
      umount "$L/merged" 2>/dev/null || true
      rm -rf "$L"; mkdir -p "$L/lower" "$L/upper" "$L/work" "$L/merged"
      tar -xf "$OUT/base-layer.tar" -C "$L/lower"
      mount -t overlay overlay -o "lowerdir=$L/lower,upperdir=$L/upper,workdir=$L/work" "$L/merged"
      M=$L/merged
      cp /etc/resolv.conf "$M/etc/resolv.conf"
      # no service starts during the install (as in an image build)
      printf '#!/bin/sh\nexit 101\n' > "$M/usr/sbin/policy-rc.d"; chmod 0755 "$M/usr/sbin/policy-rc.d"
      mount -t proc proc "$M/proc"
      mount --bind /dev "$M/dev"
      say "apt-get install $DB_PKGS (over the base)"
      ok=1
      { chroot "$M" apt-get update -qq && chroot "$M" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $DB_PKGS; } >"$OUT/lab-layer.log" 2>&1 || ok=0
      umount "$M/proc" "$M/dev"
      rm -f "$M/usr/sbin/policy-rc.d"; : > "$M/etc/resolv.conf"
      umount "$M"
      [ "$ok" = 1 ] || { tail -5 "$OUT/lab-layer.log" >&2; rm -rf "$L"; echo "image: the lab layer's install failed; the log is $OUT/lab-layer.log" >&2; exit 1; }
      # what the image does not need: package lists and caches, documentation, the
      # packages' default databases (each pod makes its own); removed from the upper
      # layer only, so the base's own files stay as they are
      U=$L/upper
      rm -rf "$U/var/cache/apt" "$U/var/cache/debconf"/*-old "$U/var/lib/apt/lists" "$U/var/log"/* "$U/usr/share/doc" "$U/usr/share/man" "$U/usr/share/locale" \
        "$U/var/lib/mysql"/* "$U/var/lib/postgresql"/*/main "$U/etc/postgresql"/*/main "$U/var/lib/rabbitmq/mnesia" "$U/tmp"/* "$U/run"/* "$U/root/.cache"
      # overlayfs writes a deletion as a 0/0 device and an emptied directory as opaque:
      # a layer writes them as .wh. files (the OCI image spec)
      python3 - "$U" <<'PY'
import os, sys
for d, dirs, files in os.walk(sys.argv[1]):
    for n in dirs + files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        if os.path.stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            os.remove(p)
            open(os.path.join(d, ".wh." + n), "w").close()
    try:
        if os.getxattr(d, "trusted.overlay.opaque") == b"y":
            open(os.path.join(d, ".wh..wh..opq"), "w").close()
    except OSError:
        pass
PY
      tar --numeric-owner --xattrs -C "$U" -cf "$OUT/lab-layer.tar.tmp" .
      mv "$OUT/lab-layer.tar.tmp" "$OUT/lab-layer.tar"
      echo "$STAMP" > "$OUT/lab-layer.stamp"
      rm -rf "$L"
      say "lab layer built in $((SECONDS - T0)) s: $(du -h "$OUT/lab-layer.tar" | cut -f1)"
    fi
    python3 "$HERE/archive.py" "$OUT/lab.tar" kshark.local/lab:1 "$OUT/base-layer.tar" "$OUT/lab-layer.tar" --cmd '["python3"]'
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
