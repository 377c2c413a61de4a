"""Writes a container image as a `docker save` archive (what `ctr images import` and
`docker load` read), from layer tarballs that already exist: no registry, no daemon.

    python3 archive.py OUT.tar NAME:TAG --entrypoint '["/pause"]' LAYER.tar [LAYER.tar ...]

Each layer is an uncompressed tar of files as they sit in the image; its digest is the
image's diff_id, so the same base layer gives the same image every time.
"""
import argparse
import hashlib
import json
import os
import tarfile
import time


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(path):
    """A layer's sha256, cached beside it (the base layer is 200 MB; hashing it takes a second)."""
    side = path + ".sha256"
    st = os.stat(path)
    stamp = f"{st.st_size} {st.st_mtime_ns}"
    try:
        with open(side) as f:
            got_stamp, got = f.read().split("\n")[:2]
        if got_stamp == stamp:
            return got
    except (OSError, ValueError):
        pass
    d = sha256(path)
    with open(side, "w") as f:
        f.write(f"{stamp}\n{d}\n")
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("name")
    ap.add_argument("layers", nargs="+")
    ap.add_argument("--entrypoint", default="null")
    ap.add_argument("--cmd", default="null")
    ap.add_argument("--user", default="")
    a = ap.parse_args()
    diff_ids = [digest(p) for p in a.layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": json.loads(a.entrypoint),
            "Cmd": json.loads(a.cmd),
            "User": a.user,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kshark deploy/image/build.sh"} for _ in diff_ids],
    }
    raw = json.dumps(config, sort_keys=True).encode()
    cfg_name = hashlib.sha256(raw).hexdigest() + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": [a.name], "Layers": [d + "/layer.tar" for d in diff_ids]}]
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:

        def add_bytes(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            import io

            t.addfile(info, io.BytesIO(data))

        add_bytes(cfg_name, raw)
        for d, p in zip(diff_ids, a.layers):
            t.add(p, arcname=d + "/layer.tar")
        add_bytes("manifest.json", json.dumps(manifest).encode())
        add_bytes("repositories", json.dumps({a.name.rsplit(":", 1)[0]: {a.name.rsplit(":", 1)[1]: diff_ids[-1]}}).encode())
    os.replace(tmp, a.out)
    print(f"image: {a.name} -> {a.out} ({len(diff_ids)} layers, config {cfg_name[:12]})")


if __name__ == "__main__":
    main()
