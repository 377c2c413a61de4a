"""kshark's lab: small sock-shop services, each run in its own network namespace ("pod").

    python sockshop.py serve ROLE PORT      a service (see ROLES)
    python sockshop.py load RATE SECONDS ERRORS SLOW [COUNT]
                                            the load generator: RATE requests/s to
                                            front-end for SECONDS (0: until stopped) or
                                            COUNT requests, a share ERRORS of failing
                                            calls and SLOW of slow ones
    python sockshop.py dns                  the cluster lab's DNS: dnsmasq answering
                                            NAME.NS.svc.cluster.local with each Service's
                                            ClusterIP, kept from the API every second

With LEDGER set (the cluster lab), every call a service or the load generator makes is
appended to $LEDGER/$POD.ndjson: time, caller, Service, method, path and status.

They call each other as sock-shop does, by short names resolved through the lab's DNS
server (dnsmasq as kube-dns: catalogue -> catalogue.sock-shop.svc.cluster.local via the
search path in the namespace's resolv.conf): HTTP/1.1 everywhere, and gRPC from orders
to payment (sockshop.Payment/Authorise, payment.proto; messages encoded by hand so the
only dependency is grpcio). A service writes $LAB_DIR/ready/$POD once it listens.

With LAB_STORES=real (the cluster lab), the stores are real servers from Debian, run in
their pods by this script, and the services use them through their Python clients (each
call also written to the ledger, with its protocol):
    catalogue-db     MariaDB (socksdb.sock), queried by catalogue with PyMySQL
    carts-db         Redis (a hash per cart), used by carts
    session-db       Redis, front-end's sessions (as the real sock-shop's)
    orders-db        PostgreSQL (orders), written by orders with psycopg2
    user-db          PostgreSQL (customer), read by user
    rabbitmq         RabbitMQ: shipping publishes to the queue shipping-task over AMQP,
                     and queue-master consumes it (and acks each message)
The real sock-shop keeps carts, orders and users in MongoDB, which Debian does not ship.
Without it (the namespace lab) they are small REST stand-ins.

With LAB_TLS set (the cluster lab: a directory with tls.crt and tls.key), user serves
HTTPS on 443 and payment gRPC over TLS, and their callers (front-end and orders) check
that certificate: TLS between pods, as many shops run it.
"""
import json
import os
import random
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LAB_DIR = os.environ.get("LAB_DIR", "/run/kshark-lab")
POD = os.environ.get("POD", "?")
POD_NAMESPACE = os.environ.get("POD_NAMESPACE", "")
LEDGER = os.environ.get("LEDGER")
_ledger_lock = threading.Lock()


def record(start, url, method, path, status, error=None):
    """One line of the ledger: the call as its caller saw it."""
    if not LEDGER:
        return
    host = url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    labels = host.split(".")
    if host.replace(".", "").isdigit() and os.environ.get("LOAD_SERVICE"):
        # called by a node's address (a NodePort): the Service behind it
        labels = [os.environ["LOAD_SERVICE"], "sock-shop"]
    line = {
        "time": start,
        "end": time.time(),
        "caller": POD,
        "caller_namespace": POD_NAMESPACE,
        "service": labels[0],
        "service_namespace": labels[1] if len(labels) > 1 else POD_NAMESPACE,
        "method": method,
        "path": path,
        "status": status,
    }
    append(line, error)


def append(line, error=None):
    """Appends one call to this pod's ledger file."""
    if error:
        line["error"] = error
    with _ledger_lock:
        with open(os.path.join(LEDGER, POD + ".ndjson"), "a") as f:
            f.write(json.dumps(line) + "\n")


def record_store(start, service, protocol, method, target, status, query=None, error=None):
    """One line of the ledger for a call to a store: its protocol, the command (method)
    and its table, key or queue (target), and the SQL text where there is one."""
    if not LEDGER:
        return
    line = {"time": start, "end": time.time(), "caller": POD, "caller_namespace": POD_NAMESPACE, "service": service,
            "service_namespace": POD_NAMESPACE, "protocol": protocol, "method": method, "target": target, "status": status}
    if query is not None:
        line["query"] = query
    append(line, error)


URL = {
    "catalogue": "http://catalogue",
    "carts": "http://carts",
    "orders": "http://orders",
    "user": "http://user",
    "shipping": "http://shipping",
    "catalogue-db": "http://catalogue-db:3306",
    "carts-db": "http://carts-db:27017",
    "orders-db": "http://orders-db:27017",
    "user-db": "http://user-db:27017",
    "rabbitmq": "http://rabbitmq:15672",
    "front-end": "http://front-end:8079",
}
LAB_TLS = os.environ.get("LAB_TLS")
if LAB_TLS:
    URL["user"] = "https://user"
_client_tls = None


def client_tls():
    """The TLS context callers use: the lab's certificate is the one trusted."""
    global _client_tls
    if _client_tls is None:
        import ssl
        _client_tls = ssl.create_default_context(cafile=os.path.join(LAB_TLS, "tls.crt"))
    return _client_tls

SOCKS = [
    {"id": "3395a43e-2d88-40de-b95f-e00e1502085b", "name": "Colourful", "price": 18.0, "count": 438},
    {"id": "510a0d7e-8e83-4193-b483-e27e09ddc34d", "name": "SuperSport XL", "price": 15.0, "count": 820},
    {"id": "808a2de1-1aaa-4c25-a9b9-6612e8f29a38", "name": "Crossed", "price": 17.32, "count": 738},
    {"id": "819e1fbf-8b7e-4f6d-811f-693534916a8b", "name": "Figueroa", "price": 14.0, "count": 808},
    {"id": "a0a4f044-b040-410d-8ead-4de0446aec7e", "name": "Nerd leg", "price": 7.99, "count": 115},
]


def call(method, url, body=None, timeout=5.0):
    """One HTTP/1.1 call; returns (status, parsed JSON or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", "User-Agent": "sock-shop/" + POD})
    path = "/" + url.split("//", 1)[-1].split("/", 1)[-1] if "/" in url.split("//", 1)[-1] else "/"
    start = time.time()
    try:
        ctx = client_tls() if url.startswith("https://") else None
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            raw = r.read()
            record(start, url, method, path, r.status)
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        e.read()
        record(start, url, method, path, e.code)
        return e.code, None
    except Exception as e:  # noqa: BLE001 - an upstream that is down is a 503, not a crash
        print(f"{POD}: {method} {url}: {e}", flush=True)
        record(start, url, method, path, None, str(e))
        return 503, None


# --- protobuf by hand: sockshop.AuthoriseRequest / AuthoriseResponse ------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(b, i):
    v, shift = 0, 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, i


def pb_string(field, s):
    t = s.encode()
    return varint(field << 3 | 2) + varint(len(t)) + t


def fields(b):
    i, out = 0, {}
    while i < len(b):
        key, i = read_varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            out[f], i = read_varint(b, i)
        elif wt == 1:
            out[f] = struct.unpack("<d", b[i:i + 8])[0]
            i += 8
        elif wt == 2:
            n, i = read_varint(b, i)
            out[f] = b[i:i + n]
            i += n
        elif wt == 5:
            i += 4
        else:
            raise ValueError("bad wire type")
    return out


def auth_request(customer, amount, order):
    return pb_string(1, customer) + b"\x11" + struct.pack("<d", amount) + pb_string(3, order)


def auth_response(ok, message):
    return (b"\x08\x01" if ok else b"") + pb_string(2, message)


# --- services ------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sock-shop"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null") if n else None

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        path, _, query = self.path.partition("?")
        try:
            status, body = ROLE_FN(method, path, query, self)
        except Exception as e:  # noqa: BLE001 - a bug in a lab service is a 500, as in a real one
            status, body = 500, {"error": str(e)}
        self.reply(status, body)


def front_end(method, path, query, h):
    if STORES:
        # the session, in session-db (Redis), as the real front-end keeps it
        try:
            redis_call("session-db", "HINCRBY", "session:" + h.client_address[0], "hits", 1)
        except Exception:  # noqa: BLE001 - a page without its session still answers
            pass
    if path == "/" or path == "/index.html":
        return 200, {"page": "index"}
    if path == "/catalogue":
        return call("GET", URL["catalogue"] + "/catalogue?" + query)
    if path.startswith("/catalogue/"):
        return call("GET", URL["catalogue"] + path)
    if path == "/cart" and method == "GET":
        return call("GET", URL["carts"] + "/carts/57a98d98e4b00679b4e9ae4b/items" + ("?fail=1" if "fail" in query else ""))
    if path == "/cart" and method == "POST":
        return call("POST", URL["carts"] + "/carts/57a98d98e4b00679b4e9ae4b/items", h.body())
    if path == "/login":
        return call("GET", URL["user"] + "/login")
    if path.startswith("/customers/"):
        return call("GET", URL["user"] + path)
    if path == "/orders" and method == "POST":
        return call("POST", URL["orders"] + "/orders", h.body())
    return 404, {"error": "not found", "path": path}


def catalogue(method, path, query, h):
    if "slow" in query:
        time.sleep(random.uniform(0.3, 0.8))
    if STORES:
        cols = "SELECT sock_id AS id, name, price, count FROM sock"
        try:
            if path == "/catalogue":
                rows = sql("catalogue-db", "mysql", cols + " ORDER BY name", table="sock")
            elif path.startswith("/catalogue/"):
                rows = sql("catalogue-db", "mysql", cols + " WHERE sock_id = %s", (path.rsplit("/", 1)[1],), table="sock")
                if not rows:
                    return 404, {"error": "Not found"}
            else:
                return 404, {"error": "not found"}
        except Exception as e:  # noqa: BLE001
            return 503, {"error": "catalogue-db: %s" % e}
        for r in rows:
            r["price"] = float(r["price"])
        return 200, rows if path == "/catalogue" else rows[0]
    if path == "/catalogue":
        st, rows = call("GET", URL["catalogue-db"] + "/socks")
        return st, rows
    if path.startswith("/catalogue/"):
        sid = path.rsplit("/", 1)[1]
        st, row = call("GET", URL["catalogue-db"] + "/socks/" + sid)
        return (404, {"error": "Not found"}) if st == 404 else (st, row)
    return 404, {"error": "not found"}


def database(method, path, query, h):
    """A document store with a REST API, one per service that keeps data."""
    if POD.startswith("catalogue-db"):
        if path == "/socks":
            return 200, SOCKS
        for s in SOCKS:
            if path == "/socks/" + s["id"]:
                return 200, s
        return 404, {"error": "no such document"}
    if method == "POST":
        doc = h.body() or {}
        doc["_id"] = "%024x" % random.getrandbits(96)
        return 201, doc
    return 200, [{"_id": "57a98d98e4b00679b4e9ae4b", "items": 2}]


def carts(method, path, query, h):
    if "fail" in query:
        return 500, {"error": "carts-db connection reset"}
    if STORES:
        key = "cart:" + path.split("/")[2] if path.count("/") >= 2 else "cart:?"
        try:
            if method == "POST":
                item = (h.body() or {}).get("itemId", "?")
                return 201, {"itemId": item, "quantity": redis_call("carts-db", "HINCRBY", key, item, 1)}
            items = redis_call("carts-db", "HGETALL", key)
        except Exception as e:  # noqa: BLE001
            return 503, {"error": "carts-db: %s" % e}
        return 200, [{"itemId": k, "quantity": int(v)} for k, v in sorted(items.items())]
    if method == "POST":
        return call("POST", URL["carts-db"] + "/carts", h.body())
    return call("GET", URL["carts-db"] + "/carts?customer=57a98d98e4b00679b4e9ae4b")


def user(method, path, query, h):
    if path == "/login":
        return 200, {"user": {"id": "57a98d98e4b00679b4e9ae4b", "username": "user"}}
    if STORES and path.startswith("/customers/"):
        try:
            rows = sql("user-db", "postgresql", "SELECT id, username, first_name, last_name FROM customer WHERE id = %s",
                       (path.rsplit("/", 1)[1],), table="customer")
        except Exception as e:  # noqa: BLE001
            return 503, {"error": "user-db: %s" % e}
        return (200, {"customer": rows[0]}) if rows else (404, {"error": "no such customer"})
    if path.startswith("/customers/"):
        st, rows = call("GET", URL["user-db"] + "/customers/" + path.rsplit("/", 1)[1])
        return st, {"customer": rows}
    return 404, {"error": "not found"}


def shipping(method, path, query, h):
    body = h.body()
    if STORES:
        try:
            publish(body)
        except Exception as e:  # noqa: BLE001
            return 503, {"error": "rabbitmq: %s" % e}
        return 201, {"shipment": body}
    call("POST", URL["rabbitmq"] + "/api/exchanges/%2F/shipping-task/publish", {"payload": json.dumps(body)})
    return 201, {"shipment": body}


QUEUE = []


def rabbitmq(method, path, query, h):
    if method == "POST":
        QUEUE.append(h.body())
        return 200, {"routed": True}
    items = QUEUE[:]
    del QUEUE[:len(items)]
    return 200, items


_channel = None
_stub = None


def payment_stub():
    global _channel, _stub
    if _stub is None:
        import grpc
        if LAB_TLS:
            creds = grpc.ssl_channel_credentials(open(os.path.join(LAB_TLS, "tls.crt"), "rb").read())
            _channel = grpc.secure_channel("payment:50051", creds)
        else:
            _channel = grpc.insecure_channel("payment:50051")
        _stub = _channel.unary_unary(
            "/sockshop.Payment/Authorise",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
    return _stub


def orders(method, path, query, h):
    import grpc
    order = h.body() or {}
    call("GET", URL["carts"] + "/carts/57a98d98e4b00679b4e9ae4b/items")
    call("GET", URL["user"] + "/customers/57a98d98e4b00679b4e9ae4b")
    oid = "%016x" % random.getrandbits(64)
    start = time.time()
    try:
        raw = payment_stub()(auth_request("57a98d98e4b00679b4e9ae4b", float(order.get("amount", 20.0)), oid), timeout=5)
        record(start, "grpc://payment", "POST", "/sockshop.Payment/Authorise", "OK")
    except grpc.RpcError as e:
        record(start, "grpc://payment", "POST", "/sockshop.Payment/Authorise", e.code().name)
        return 500, {"error": "payment: " + e.code().name}
    f = fields(raw)
    if not f.get(1):
        return 406, {"error": f.get(2, b"").decode()}
    call("POST", URL["shipping"] + "/shipping", {"order": oid})
    if STORES:
        try:
            sql("orders-db", "postgresql", "INSERT INTO orders (id, customer, amount) VALUES (%s, %s, %s) RETURNING id",
                (oid, "57a98d98e4b00679b4e9ae4b", float(order.get("amount", 20.0))), table="orders")
        except Exception as e:  # noqa: BLE001
            return 503, {"error": "orders-db: %s" % e}
        return 201, {"id": oid, "amount": order.get("amount", 20.0)}
    return call("POST", URL["orders-db"] + "/orders", {"order": oid, "amount": order.get("amount", 20.0)})


# --- the real stores (LAB_STORES=real) --------------------------------------------------------

STORES = os.environ.get("LAB_STORES") == "real"


class Store:
    """One connection to a store, shared by a service's threads under a lock, opened again
    after a failure (as a pool of one)."""

    def __init__(self, connect):
        self.connect = connect
        self.conn = None
        self.lock = threading.Lock()

    def use(self, fn):
        with self.lock:
            try:
                if self.conn is None:
                    self.conn = self.connect()
                return fn(self.conn)
            except Exception:
                try:
                    if self.conn is not None:
                        self.conn.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass
                self.conn = None
                raise


def _mysql():
    import pymysql
    return pymysql.connect(host="catalogue-db", port=3306, user="catalogue_user", password="default_password",
                           database="socksdb", connect_timeout=5, read_timeout=5, write_timeout=5, autocommit=True)


def _postgres(host, user):
    import psycopg2
    c = psycopg2.connect(host=host, port=5432, user=user, password=user + "-password", dbname="data", connect_timeout=5)
    c.autocommit = True
    return c


STORE = {}


def store(name):
    if name not in STORE:
        if name == "catalogue-db":
            STORE[name] = Store(_mysql)
        elif name in ("orders-db", "user-db"):
            STORE[name] = Store(lambda: _postgres(name, name.split("-")[0]))
        elif name in ("carts-db", "session-db"):
            import redis
            STORE[name] = redis.Redis(host=name, port=6379, socket_timeout=5, socket_connect_timeout=5, decode_responses=True)
    return STORE[name]


def sql(service, protocol, query, args=(), table=""):
    """One SQL statement on a store; its rows (as dicts). The statement's text as sent
    (the client fills in the arguments) goes to the ledger."""
    start = time.time()
    method = "COM_QUERY" if protocol == "mysql" else "Query"
    text = None

    def run(conn):
        nonlocal text
        cur = conn.cursor()
        try:
            text = cur.mogrify(query, args)
            text = text.decode() if isinstance(text, bytes) else text
            cur.execute(text)
            cols = [d[0] for d in cur.description] if cur.description else []
            return [dict(zip(cols, r)) for r in cur.fetchall()] if cols else []
        finally:
            cur.close()

    try:
        rows = store(service).use(run)
    except Exception as e:  # noqa: BLE001 - a store that fails is the service's 503
        print(f"{POD}: {service}: {e}", flush=True)
        record_store(start, service, protocol, method, table, None, text, str(e))
        raise
    record_store(start, service, protocol, method, table, "OK", text)
    return rows


def redis_call(service, command, *args):
    start = time.time()
    try:
        out = store(service).execute_command(command, *args)
    except Exception as e:  # noqa: BLE001
        print(f"{POD}: {service}: {e}", flush=True)
        record_store(start, service, "redis", command, str(args[0]) if args else "", None, error=str(e))
        raise
    record_store(start, service, "redis", command, str(args[0]) if args else "", "OK")
    return out


def amqp_params():
    import pika
    return pika.ConnectionParameters(host="rabbitmq", port=5672, credentials=pika.PlainCredentials("guest", "guest"),
                                     heartbeat=0, blocked_connection_timeout=5, socket_timeout=5, connection_attempts=1)


class Publisher:
    """shipping's AMQP connection and channel, with the queue declared."""

    def __init__(self):
        import pika
        self.conn = pika.BlockingConnection(amqp_params())
        self.ch = self.conn.channel()
        self.ch.queue_declare("shipping-task", durable=True)

    def close(self):
        self.conn.close()


_publisher = Store(Publisher)


def publish(body):
    import pika
    start = time.time()

    def send(p):
        p.ch.basic_publish(exchange="", routing_key="shipping-task", body=json.dumps(body).encode(),
                         properties=pika.BasicProperties(content_type="application/json", delivery_mode=2))
    try:
        _publisher.use(send)
    except Exception as e:  # noqa: BLE001
        print(f"{POD}: rabbitmq: {e}", flush=True)
        record_store(start, "rabbitmq", "amqp", "basic.publish", "shipping-task", None, error=str(e))
        raise
    record_store(start, "rabbitmq", "amqp", "basic.publish", "shipping-task", "OK")


def wait_listening(port, proc, what, secs=120):
    import socket
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            sys.exit(f"{POD}: {what} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() - t0 > secs:
                sys.exit(f"{POD}: {what} does not listen on {port} after {secs} s")
            time.sleep(0.2)


def serve_store(role, port):
    """Runs the store's server in this pod, fills it, says ready, and waits on it."""
    import subprocess
    if role == "catalogue-db":
        data = "/tmp/mysql"
        subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + data, "--user=root", "--skip-test-db",
                        "--auth-root-authentication-method=socket"], check=True, stdout=subprocess.DEVNULL)
        d = subprocess.Popen(["mariadbd", "--no-defaults", "--datadir=" + data, "--user=root", "--socket=/tmp/mysqld.sock",
                              "--port=%d" % port, "--bind-address=0.0.0.0", "--skip-name-resolve", "--skip-log-bin",
                              "--innodb-buffer-pool-size=16M", "--pid-file=/tmp/mysqld.pid"])
        wait_listening(port, d, "mariadbd")
        rows = ",".join("('%s','%s',%s,%d)" % (x["id"], x["name"], x["price"], x["count"]) for x in SOCKS)
        subprocess.run(["mariadb", "--no-defaults", "-S", "/tmp/mysqld.sock", "-u", "root"], check=True, input=(
            "CREATE DATABASE socksdb; CREATE USER 'catalogue_user'@'%' IDENTIFIED BY 'default_password';"
            "GRANT SELECT ON socksdb.* TO 'catalogue_user'@'%'; USE socksdb;"
            "CREATE TABLE sock (sock_id VARCHAR(40) PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2), count INT);"
            "INSERT INTO sock VALUES " + rows + ";").encode())
    elif role in ("carts-db", "session-db"):
        d = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "0.0.0.0", "--protected-mode", "no",
                              "--save", "", "--appendonly", "no", "--dir", "/tmp"])
        wait_listening(port, d, "redis-server")
    elif role in ("orders-db", "user-db"):
        import glob
        import shutil
        bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        data = "/tmp/pg"
        os.makedirs(data, exist_ok=True)
        shutil.chown(data, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run(as_pg + [bindir + "/initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--auth-local=trust",
                                "--auth-host=scram-sha-256"], check=True, stdout=subprocess.DEVNULL)
        with open(data + "/pg_hba.conf", "a") as f:
            f.write("host all all 0.0.0.0/0 scram-sha-256\n")
        d = subprocess.Popen(as_pg + [bindir + "/postgres", "-D", data, "-p", str(port), "-c", "listen_addresses=*",
                                      "-c", "unix_socket_directories=/tmp", "-c", "shared_buffers=16MB", "-c", "jit=off",
                                      "-c", "max_connections=20", "-c", "password_encryption=scram-sha-256"])
        wait_listening(port, d, "postgres")
        user = role.split("-")[0]
        schema = {
            "orders": "CREATE TABLE orders (id text PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL, created timestamptz DEFAULT now());",
            "user": "CREATE TABLE customer (id text PRIMARY KEY, username text NOT NULL, first_name text, last_name text);"
                    "INSERT INTO customer VALUES ('57a98d98e4b00679b4e9ae4b', 'user', 'User', 'Name');",
        }[user]
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/tmp", "-p", str(port), "-U", "postgres"]
        subprocess.run(as_pg + psql + ["-c", f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{user}-password'", "-c", f"CREATE DATABASE data OWNER \"{user}\""],
                       check=True)
        subprocess.run(as_pg + psql + ["-d", "data", "-c", f"SET ROLE \"{user}\"; " + schema], check=True)
    elif role == "rabbitmq":
        base = "/tmp/rabbitmq"
        for sub in ("mnesia", "log"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        with open(base + "/rabbitmq.conf", "w") as f:
            # guest from other pods (the broker allows it only on loopback by default)
            f.write("loopback_users = none\nlisteners.tcp.default = %d\n" % port)
        open(base + "/enabled_plugins", "w").write("[].\n")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", base], check=True)
        env = dict(os.environ, RABBITMQ_NODENAME="rabbit@localhost", RABBITMQ_MNESIA_BASE=base + "/mnesia",
                   RABBITMQ_LOG_BASE=base + "/log", RABBITMQ_CONFIG_FILE=base + "/rabbitmq.conf",
                   RABBITMQ_ENABLED_PLUGINS_FILE=base + "/enabled_plugins")
        d = subprocess.Popen(["rabbitmq-server"], env=env)
        wait_listening(port, d, "rabbitmq-server")
    else:
        sys.exit(f"{POD}: no store {role}")
    print(f"{POD}: {role} ready on {port}", flush=True)
    ready()
    sys.exit(d.wait())


def consume():
    """queue-master: consumes shipping-task over AMQP and acks each message."""
    import pika

    def on_message(ch, method, props, body):
        start = time.time()
        ch.basic_ack(method.delivery_tag)
        record_store(start, "rabbitmq", "amqp", "basic.ack", "", "OK")

    said = False
    while True:
        try:
            conn = pika.BlockingConnection(amqp_params())
            ch = conn.channel()
            ch.queue_declare("shipping-task", durable=True)
            ch.basic_qos(prefetch_count=10)
            ch.basic_consume("shipping-task", on_message)
            if not said:
                ready()
                said = True
            ch.start_consuming()
        except Exception as e:  # noqa: BLE001 - the broker not there yet, or gone: again
            print(f"{POD}: rabbitmq: {e}", flush=True)
            time.sleep(1.0)


ROLES = {
    "front-end": front_end,
    "catalogue": catalogue,
    "catalogue-db": database,
    "carts": carts,
    "carts-db": database,
    "orders": orders,
    "orders-db": database,
    "user": user,
    "user-db": database,
    "shipping": shipping,
    "rabbitmq": rabbitmq,
}
ROLE_FN = None


def ready():
    os.makedirs(os.path.join(LAB_DIR, "ready"), exist_ok=True)
    open(os.path.join(LAB_DIR, "ready", POD), "w").close()


# --- the cluster lab's DNS ---------------------------------------------------------------

HOSTS = "/tmp/cluster-hosts"


def services():
    """Every Service's ClusterIP, from the API with the pod's ServiceAccount."""
    import ssl

    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    with open(sa + "/token") as f:
        token = f.read().strip()
    ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
    url = "https://%s:%s/api/v1/services" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
        items = json.loads(r.read())["items"]
    lines = []
    for s in items:
        ip = s["spec"].get("clusterIP")
        if ip and ip != "None":
            lines.append("%s %s.%s.svc.cluster.local" % (ip, s["metadata"]["name"], s["metadata"]["namespace"]))
    return "\n".join(sorted(lines)) + "\n"


def dns():
    import signal
    import subprocess

    hosts = services()
    with open(HOSTS, "w") as f:
        f.write(hosts)
    d = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--addn-hosts=" + HOSTS,
                          "--local=/cluster.local/", "--pid-file=", "--user=root", "--cache-size=0", "--log-facility=-"])
    print(f"dns: dnsmasq serving {hosts.count(chr(10))} Services", flush=True)
    while d.poll() is None:
        time.sleep(1.0)
        try:
            now = services()
        except Exception as e:  # noqa: BLE001 - the API away for a moment: keep the old records
            print(f"dns: services: {e}", flush=True)
            continue
        if now != hosts:
            hosts = now
            with open(HOSTS + ".tmp", "w") as f:
                f.write(hosts)
            os.replace(HOSTS + ".tmp", HOSTS)
            d.send_signal(signal.SIGHUP)
            print(f"dns: {hosts.count(chr(10))} Services", flush=True)
    sys.exit(d.returncode)


def serve_payment(port):
    from concurrent import futures

    import grpc

    def authorise(raw, ctx):
        f = fields(raw)
        amount = f.get(2, 0.0)
        if amount < 0:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount must not be negative")
        if amount > 100:
            return auth_response(False, "Payment declined: amount exceeds 100.00")
        return auth_response(True, "Payment authorised")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.unary_unary_rpc_method_handler(authorise, request_deserializer=lambda b: b, response_serializer=lambda b: b)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("sockshop.Payment", {"Authorise": handler})])
    if LAB_TLS:
        key, crt = (open(os.path.join(LAB_TLS, n), "rb").read() for n in ("tls.key", "tls.crt"))
        server.add_secure_port(f"0.0.0.0:{port}", grpc.ssl_server_credentials([(key, crt)]))
    else:
        server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    ready()
    server.wait_for_termination()


def queue_master():
    ready()
    while True:
        call("GET", URL["rabbitmq"] + "/api/queues/%2F/shipping-task/get")
        time.sleep(1.0)


STORE_ROLES = ("catalogue-db", "carts-db", "session-db", "orders-db", "user-db", "rabbitmq")


def serve(role, port):
    global ROLE_FN
    if role == "payment":
        return serve_payment(port)
    if STORES and role in STORE_ROLES:
        return serve_store(role, port)
    if role == "queue-master":
        return consume() if STORES else queue_master()
    ROLE_FN = ROLES[role]
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    if LAB_TLS and role == "user":
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(LAB_TLS, "tls.crt"), os.path.join(LAB_TLS, "tls.key"))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    ready()
    server.serve_forever()


# --- load generator --------------------------------------------------------------------------

def load(rate, seconds, errors, slow, count=0, base=None):
    # another namespace: the name says which; or a node's address and the NodePort
    fe = base or "http://front-end.sock-shop:8079"
    normal = [
        (30, "GET", "/catalogue", None),
        (20, "GET", "/catalogue/" + SOCKS[1]["id"], None),
        (10, "GET", "/", None),
        (10, "GET", "/cart", None),
        (10, "POST", "/cart", {"itemId": SOCKS[0]["id"], "unitPrice": 18.0}),
        (8, "GET", "/login", None),
        (4, "GET", "/customers/57a98d98e4b00679b4e9ae4b", None),
        (8, "POST", "/orders", {"amount": 33.0}),
    ]
    failing = [
        (1, "GET", "/catalogue/no-such-sock", None),  # 404 from catalogue
        (1, "GET", "/cart?fail=1", None),  # 500 from carts
        (1, "POST", "/orders", {"amount": 250.0}),  # payment declines: 406
    ]
    slowed = [(1, "GET", "/catalogue?slow=1", None)]

    def pick(choices):
        total = sum(c[0] for c in choices)
        x = random.uniform(0, total)
        for c in choices:
            x -= c[0]
            if x <= 0:
                return c
        return choices[-1]

    counts = {}
    lock = threading.Lock()
    sem = threading.Semaphore(32)

    def one(method, path, body):
        try:
            st, _ = call(method, fe + path, body, timeout=10)
            with lock:
                counts[st] = counts.get(st, 0) + 1
        finally:
            sem.release()

    ready()
    start = time.monotonic()
    n = 0
    last_report = start
    while (seconds <= 0 or time.monotonic() - start < seconds) and (count <= 0 or n < count):
        r = random.random()
        choice = pick(failing) if r < errors else pick(slowed) if r < errors + slow else pick(normal)
        sem.acquire()
        threading.Thread(target=one, args=choice[1:], daemon=True).start()
        n += 1
        due = start + n / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            with lock:
                print(f"load: {n} requests sent; statuses {dict(sorted(counts.items()))}", flush=True)
    for _ in range(32):
        sem.acquire()
    summary = f"load: done, {n} requests; statuses {dict(sorted(counts.items()))}"
    print(summary, flush=True)
    if LEDGER:
        with open(os.path.join(LEDGER, POD + ".summary"), "w") as f:
            f.write(summary + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "load":
        load(float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]) if len(sys.argv) > 6 else 0, sys.argv[7] if len(sys.argv) > 7 else None)
    elif sys.argv[1] == "dns":
        dns()
    elif sys.argv[1] == "dns-ready":
        sys.exit(0 if os.path.exists(HOSTS) and os.path.getsize(HOSTS) > 0 else 1)
    else:
        sys.exit(__doc__)
