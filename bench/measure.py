#!/usr/bin/env python3
"""Times the bare packet read, `kshark read` and tshark on one capture, one after the other.

usage: bench/measure.py CAPTURE [--http2-ports P1,P2]
With --http2-ports, tshark is told those ports carry HTTP/2 and both tools count HTTP/2
streams and gRPC messages instead of HTTP/1 requests and DNS messages.
Prints a table (wall time, throughput, CPU time, peak RSS, what each one found) and the
ratios that the README's performance table reports. Needs /usr/bin/time (Debian's `time`).
"""
import json, os, subprocess, sys, tempfile

cap = sys.argv[1]
h2_ports = sys.argv[3].split(",") if len(sys.argv) > 3 and sys.argv[2] == "--http2-ports" else None
size = os.path.getsize(cap)
root = os.path.dirname(os.path.abspath(__file__)) + "/.."
rel = os.path.join(root, "target/release")


def timed(cmd, stdout):
    with tempfile.NamedTemporaryFile("r") as tf, tempfile.NamedTemporaryFile("r") as err:
        subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%e %U %S %M"] + cmd, stdout=stdout,
                       stderr=open(err.name, "w"), check=True)
        wall, user, sys_, rss = tf.read().split()[-4:]
        return float(wall), float(user) + float(sys_), int(rss) * 1024, open(err.name).read()


rows = []
with open(os.devnull, "w") as null:
    w, cpu, rss, out = timed([rel + "/examples/read_packets", cap], subprocess.PIPE)
    rows.append(("bare read (kshark's reader)", w, cpu, rss, "-"))
    w, cpu, rss, err = timed([rel + "/kshark", "read", cap, "--format", "ndjson", "--stats"], null)
    stats = json.loads([l for l in err.splitlines() if l.startswith("{")][-1])
    if h2_ports:
        found = "%d entries (%d h2 streams, %d grpc msgs)" % (stats["entries"], stats["h2_streams"], stats["grpc_messages"])
    else:
        found = "%d entries (%d http req, %d dns msgs)" % (stats["entries"], stats["http_requests"], stats["dns_messages"])
    rows.append(("kshark read --format ndjson", w, cpu, rss, found))
    kshark_wall = w
    with tempfile.NamedTemporaryFile("w+") as tout:
      if h2_ports:
        decode = sum((["-d", "tcp.port==%s,http2" % p] for p in h2_ports), [])
        w, cpu, rss, _ = timed(["tshark", "-n", "-r", cap] + decode + ["-Y", "http2.headers.method or grpc.message_length",
                                "-T", "fields", "-e", "http2.headers.method", "-e", "grpc.message_length"], tout)
        lines = [l for l in open(tout.name).read().splitlines()]
        req = sum(len([x for x in l.split("\t")[0].split(",") if x]) for l in lines)
        msgs = sum(len([x for x in l.split("\t")[-1].split(",") if x]) for l in lines)
        rows.append(("tshark (HTTP/2 + gRPC, reassembly)", w, cpu, rss, "%d h2 requests, %d grpc msgs" % (req, msgs)))
        tshark_wall = w
      else:
        w, cpu, rss, _ = timed(["tshark", "-n", "-r", cap, "-Y", "http.request or http.response or dns",
                                "-T", "fields", "-e", "http.request.method", "-e", "http.response.code", "-e", "dns.id"], tout)
        lines = [l for l in open(tout.name).read().splitlines()]
        req = sum(1 for l in lines if l.split("\t")[0])
        dns = sum(1 for l in lines if l.split("\t")[-1])
        rows.append(("tshark (HTTP + DNS, reassembly)", w, cpu, rss, "%d http req, %d dns msgs" % (req, dns)))
        tshark_wall = w

print("capture: %s, %.1f MB" % (cap, size / 1e6))
print("%-34s %9s %11s %9s %10s  %s" % ("", "wall s", "MB/s", "cpu s", "peak RSS", "found"))
for name, w, cpu, rss, found in rows:
    print("%-34s %9.2f %11.1f %9.2f %8.1f MB  %s" % (name, w, size / 1e6 / w, cpu, rss / 1e6, found))
k = rows[1]
print("kshark throughput: %.2f GB/s per core (single-threaded: wall = one core)" % (size / 1e9 / k[1]))
print("kshark vs tshark: %.1fx faster" % (tshark_wall / kshark_wall))
print("kshark vs bare read: %.1fx the cost of reading the packets" % (k[1] / rows[0][1]))
