"""A real gRPC server and client (grpcio) on 127.0.0.1, for kshark's tests and benchmark.

    python grpc_peer.py PORT [ROUNDS]

Serves kshark.test.Echo (tests/peers/echo.proto) on 127.0.0.1:PORT and calls it ROUNDS
times (default 1) over one channel: Unary (its request gzip-compressed), ClientStream
(3 messages), ServerStream (3 replies, gzip-compressed by the server), Bidi (2 and 2) and
Fail (NOT_FOUND with a message). Messages are encoded by hand (no generated code), so the
only dependency is grpcio. Prints one line per round with what was answered, then exits.
"""
import sys
from concurrent import futures

import grpc


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(text, n):
    t = text.encode()
    return b"\x0a" + varint(len(t)) + t + b"\x10" + varint(n)


def decode(b):
    """field 1 (string) and field 2 (varint) of a Req/Resp"""
    i, text, n = 0, "", 0
    while i < len(b):
        key = b[i]
        i += 1
        if key == 0x0A:
            ln = b[i]
            i += 1
            text = b[i:i + ln].decode()
            i += ln
        elif key == 0x10:
            v, shift = 0, 0
            while True:
                x = b[i]
                i += 1
                v |= (x & 0x7F) << shift
                shift += 7
                if not x & 0x80:
                    break
            n = v
        else:
            raise ValueError("unexpected field")
    return text, n


def unary(req, ctx):
    text, n = decode(req)
    return encode("echo " + text, n)


def client_stream(it, ctx):
    texts = [decode(r)[0] for r in it]
    return encode("+".join(texts), len(texts))


def server_stream(req, ctx):
    ctx.set_compression(grpc.Compression.Gzip)
    text, n = decode(req)
    for i in range(n):
        yield encode("%s #%d %s" % (text, i, "x" * 40), i)


def bidi(it, ctx):
    for r in it:
        text, n = decode(r)
        yield encode(text.upper(), n)


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: caf\u00e9")


def main():
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    ident = lambda b: b
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, ident, ident),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("kshark.test.Echo", handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    call = lambda kind, name: getattr(ch, kind)("/kshark.test.Echo/" + name, request_serializer=ident, response_deserializer=ident)
    for r in range(rounds):
        a = decode(call("unary_unary", "Unary")(encode("hello %d" % r, 7), compression=grpc.Compression.Gzip, timeout=10))
        b = decode(call("stream_unary", "ClientStream")(iter([encode(t, 1) for t in "abc"]), timeout=10))
        c = [decode(m) for m in call("unary_stream", "ServerStream")(encode("tick", 3), timeout=10)]
        d = [decode(m) for m in call("stream_stream", "Bidi")(iter([encode("ping", 1), encode("pong", 2)]), timeout=10)]
        try:
            call("unary_unary", "Fail")(encode("missing", 0), timeout=10)
            e = "ok?"
        except grpc.RpcError as err:
            e = "%s %s" % (err.code().name, err.details())
        if rounds == 1 or r == rounds - 1:
            print("round", r, a, b, len(c), d, e, flush=True)
    ch.close()
    server.stop(0)


if __name__ == "__main__":
    main()
