"""Python peers for kshark's TLS tests (Python's ssl and urllib, and grpcio).

    tlspeers.py http-serve CERT KEY      an HTTP server over TLS and one in plain, the same
                                         handler; prints "TLS_PORT PLAIN_PORT"
    tlspeers.py http-get URL             urllib: a GET and a POST with a JSON body
    tlspeers.py http-loop URL SECONDS    one keep-alive connection, a GET every 200 ms
    tlspeers.py grpc-serve CERT KEY      a gRPC server over TLS and one insecure; prints ports
    tlspeers.py grpc-call TARGET [CERT]  two unary calls, over TLS when CERT is given

Each client keeps its connection half a second after its calls (the tracer looks a
connection's socket up when its first call is read)."""
import json
import os
import ssl
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/catalogue"):
            self.answer(200, "application/json", json.dumps([{"id": i, "name": f"sock {i}"} for i in range(40)]).encode())
        else:
            self.answer(404, "text/plain", b"not here\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.answer(201, "application/json", body)


def serve_forever(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


def http_serve(cert, key):
    tls = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    serve_forever(tls)
    serve_forever(plain)
    print(tls.server_address[1], plain.server_address[1], flush=True)
    while True:
        time.sleep(3600)


def http_get(url):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # one connection for both calls: urllib opens one per call, so use http.client
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    if u.scheme == "https":
        c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
    else:
        c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("GET", "/catalogue?size=40", headers={"X-Kshark-Test": "python"})
    r = c.getresponse()
    r.read()
    c.request("POST", "/orders", body=json.dumps({"order": 7, "items": ["sock"]}), headers={"Content-Type": "application/json", "X-Kshark-Test": "python"})
    r = c.getresponse()
    r.read()
    # and urllib itself, twice, each on a connection of its own closed at once
    # (Connection: close): the next one may get the same fd and the same SSL* address
    for size in (3, 4):
        req = urllib.request.Request(url + f"/catalogue?size={size}", headers={"X-Kshark-Test": "urllib"})
        with urllib.request.urlopen(req, context=ctx if u.scheme == "https" else None) as r:
            r.read()
    time.sleep(0.5)
    c.close()


def http_loop(url, seconds):
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
    end = time.time() + float(seconds)
    i = 0
    while time.time() < end:
        c.request("GET", f"/catalogue?loop={i}", headers={"X-Kshark-Test": "loop"})
        c.getresponse().read()
        i += 1
        time.sleep(0.2)
    c.close()


def grpc_serve(cert, key):
    import grpc
    from concurrent import futures

    def authorise(req, ctx):
        if req == b"bad":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount must not be negative")
        return b"authorised:" + req

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    h = grpc.unary_unary_rpc_method_handler(authorise, request_deserializer=lambda b: b, response_serializer=lambda b: b)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("sockshop.Payment", {"Authorise": h})])
    creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
    tls = server.add_secure_port("127.0.0.1:0", creds)
    plain = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(tls, plain, flush=True)
    server.wait_for_termination()


def grpc_call(target, cert=None):
    import grpc
    if cert:
        creds = grpc.ssl_channel_credentials(open(cert, "rb").read())
        ch = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    else:
        ch = grpc.insecure_channel(target)
    call = ch.unary_unary("/sockshop.Payment/Authorise", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    print(call(b"amount=12.50", timeout=5))
    try:
        call(b"bad", timeout=5)
    except grpc.RpcError as e:
        print(e.code())
    time.sleep(float(os.environ.get("LINGER", "0.5")))
    ch.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"http-serve": http_serve, "http-get": http_get, "http-loop": http_loop, "grpc-serve": grpc_serve, "grpc-call": grpc_call}[cmd](*args)
