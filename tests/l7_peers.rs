//! Real database, queue and WebSocket peers from Debian (and PyPI) on loopback, recorded
//! with tcpdump, read back by `kshark read`:
//! - Redis: redis-server with redis-cli (commands, MULTI/EXEC, an error, pub/sub) and
//!   redis-benchmark (pipelined SET and GET);
//! - PostgreSQL: a cluster made by initdb, psql (simple queries, an error, a failed login)
//!   and pgbench (the extended protocol);
//! - MariaDB: mariadbd with the mariadb client (login, queries, an error, a bad database)
//!   and mariadb-admin (ping, status);
//! - RabbitMQ: rabbitmq-server with pika from PyPI (declare, publish, get, consume, ack, a
//!   failing declare);
//! - MQTT: mosquitto with mosquitto_pub and mosquitto_sub, MQTT 3.1.1 and 5, QoS 0 to 2;
//! - WebSocket: Python's `websockets` (Debian), server and client, with permessage-deflate.
//!
//! Kafka and MongoDB have no server in Debian and none can be had from the registries this
//! machine reaches (no Maven Central, no MongoDB downloads): they are graded on the corpus
//! alone (tests/corpus_l7.rs). Needs root (tcpdump on lo) and `bash scripts/setup.sh`.

mod common;
use common::peer::{free_port, need, read, venv_python, wait_port, Tcpdump};
use common::Kill;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    o
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(o.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn of<'a>(e: &'a [Value], protocol: &str) -> Vec<&'a Value> {
    e.iter().filter(|x| x["protocol"] == protocol).collect()
}

fn methods(e: &[&Value]) -> Vec<String> {
    e.iter().map(|x| x["request"]["method"].as_str().unwrap_or("").to_string()).collect()
}

fn find<'a>(e: &[&'a Value], method: &str) -> &'a Value {
    e.iter().find(|x| x["request"]["method"] == method).unwrap_or_else(|| panic!("no {method} among {:?}", methods(e)))
}

#[test]
fn redis_cli_and_benchmark() {
    let (server, cli, bench) = (need("redis-server"), need("redis-cli"), need("redis-benchmark"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cap = Tcpdump::start(&format!("tcp port {port}"));
    let _srv = Kill(
        Command::new(server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let p = port.to_string();
    let cli = |args: &[&str]| ok(Command::new(&cli).args(["-h", "127.0.0.1", "-p", &p]).args(args));
    cli(&["SET", "user:42", "alice"]);
    cli(&["GET", "user:42"]);
    cli(&["LPUSH", "user:42", "x"]); // WRONGTYPE
    let sub = Kill(Command::new(need("redis-cli")).args(["-h", "127.0.0.1", "-p", &p, "SUBSCRIBE", "news"]).stdout(Stdio::piped()).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(400));
    cli(&["PUBLISH", "news", "hello"]);
    std::thread::sleep(Duration::from_millis(300));
    drop(sub);
    // MULTI/EXEC through one connection (redis-cli reads commands from stdin)
    let mut c = Command::new(need("redis-cli")).args(["-h", "127.0.0.1", "-p", &p]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"MULTI\nINCR n\nINCR n\nEXEC\n").unwrap();
    drop(c.stdin.take());
    c.wait().unwrap();
    ok(Command::new(bench).args(["-h", "127.0.0.1", "-p", &p, "-n", "200", "-c", "2", "-P", "4", "-t", "set,get", "-q"]));
    let (pcap, _keep) = cap.stop();
    let e = read(&pcap, &[]);
    let r = of(&e, "redis");
    let get = r.iter().find(|x| x["request"]["method"] == "GET" && x["request"]["target"] == "user:42").expect("the GET of user:42");
    assert_eq!(get["response"]["value"], "alice");
    let wrong = find(&r, "LPUSH");
    assert_eq!(wrong["response"]["status"], "WRONGTYPE");
    assert!(!wrong["response"]["error"].is_null());
    let pushed = r.iter().find(|x| x["request"]["method"] == "MESSAGE").expect("the pushed message");
    assert_eq!(pushed["request"]["target"], "news");
    assert_eq!(find(&r, "EXEC")["response"]["type"], "array");
    // redis-benchmark's pipelined requests: every one paired
    let sets = r.iter().filter(|x| x["request"]["method"] == "SET" && x["response"]["status"] == "OK").count();
    let gets = r.iter().filter(|x| x["request"]["method"] == "GET").count();
    assert!(sets >= 201 && gets >= 201, "SET {sets}, GET {gets} of redis-benchmark's 200 each");
    let unpaired: Vec<_> = r.iter().filter(|x| x["anomalies"].as_array().is_some_and(|a| !a.is_empty()) && x["request"]["method"] != "SUBSCRIBE").collect();
    assert!(unpaired.is_empty(), "{unpaired:?}");
}

/// A PostgreSQL cluster of its own in a temporary directory, run as the `postgres` user.
struct Postgres {
    _server: Kill,
    port: u16,
    _dir: tempfile::TempDir,
}

fn pg_bin(name: &str) -> std::path::PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql").expect("postgresql is missing: run `bash scripts/setup.sh`").flatten().map(|d| d.path()).collect();
    versions.sort();
    let p = versions.last().expect("a PostgreSQL version").join("bin").join(name);
    assert!(p.exists(), "{} is missing: run `bash scripts/setup.sh`", p.display());
    p
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        ok(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()));
        ok(Command::new("runuser").args(["-u", "postgres", "--"]).arg(pg_bin("initdb")).args(["-A", "md5", "-U", "postgres"]).arg(format!("--pwfile={}", pw.display())).arg("-D").arg(&data));
        let port = free_port();
        let server = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_port(port);
        Postgres { _server: Kill(server), port, _dir: dir }
    }
}

#[test]
fn postgresql_psql_and_pgbench() {
    let pg = Postgres::start();
    let cap = Tcpdump::start(&format!("tcp port {}", pg.port));
    let p = pg.port.to_string();
    let psql = |sql: &str, password: &str| {
        run(Command::new(pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres", "-d", "postgres", "-X", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "prefer"))
    };
    assert!(psql("CREATE TABLE items(id int, name text); INSERT INTO items VALUES (1, 'pen'), (2, 'ink');", "secret").status.success());
    assert!(psql("SELECT name FROM items WHERE id > 0", "secret").status.success());
    assert!(!psql("SELECT * FROM nope", "secret").status.success());
    assert!(!psql("SELECT 1", "wrong").status.success());
    let bench = |args: &[&str]| ok(Command::new(pg_bin("pgbench")).args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres"]).args(args).arg("postgres").env("PGPASSWORD", "secret"));
    // tables filled on the server (a COPY of 100,000 rows would be a burst tcpdump may drop)
    bench(&["-i", "-s", "1", "-q", "-I", "dtGp"]);
    let mut copy = Command::new(pg_bin("psql"));
    copy.args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres", "-d", "postgres", "-X", "-c", "COPY items FROM STDIN"]).env("PGPASSWORD", "secret").stdin(Stdio::piped());
    let mut c = copy.spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"3\tcap\n4\tnib\n").unwrap();
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());
    bench(&["-M", "extended", "-c", "2", "-t", "20", "-S"]);
    let (pcap, _keep) = cap.stop();
    let e = read(&pcap, &[]);
    let q = of(&e, "postgresql");
    // psql asks for TLS first; this server has none
    assert_eq!(find(&q, "SSLRequest")["response"]["status"], "refused");
    let logins: Vec<_> = q.iter().filter(|x| x["request"]["method"] == "Startup").collect();
    assert!(logins.iter().any(|x| x["response"]["status"] == "OK" && x["response"]["auth"].to_string().contains("md5")), "{logins:?}");
    assert!(logins.iter().any(|x| x["response"]["status"] == "28P01"), "the wrong password: {logins:?}");
    let select = q.iter().find(|x| x["request"]["method"] == "Query" && x["request"]["query"].as_str().is_some_and(|s| s.starts_with("SELECT name"))).unwrap();
    assert_eq!(select["request"]["target"], "items");
    assert_eq!(select["response"]["command_tag"], "SELECT 2");
    assert_eq!(select["response"]["rows"], 2);
    let nope = q.iter().find(|x| x["request"]["target"] == "nope").unwrap();
    assert_eq!(nope["response"]["error"]["code"], "42P01");
    // pgbench -M extended -S: 40 SELECTs on pgbench_accounts through Parse/Bind/Execute
    let executes: Vec<_> = q.iter().filter(|x| x["request"]["method"] == "Execute" && x["request"]["target"] == "pgbench_accounts").collect();
    assert!(executes.len() >= 40, "{} Executes", executes.len());
    assert!(executes.iter().all(|x| x["response"]["command_tag"] == "SELECT 1" && x["request"]["parameters"].as_array().is_some_and(|a| a.len() == 1)));
    let copies: Vec<_> = q.iter().filter(|x| x["request"]["query"].as_str().is_some_and(|s| s.to_ascii_lowercase().starts_with("copy"))).collect();
    assert!(!copies.is_empty() && copies.iter().all(|x| x["response"]["copy"] == "in" && x["response"]["command_tag"].as_str().is_some_and(|t| t.starts_with("COPY"))), "psql's COPY FROM STDIN: {copies:?}");
    assert!(!serde_json::to_string(&e).unwrap().contains("secret"));
}

#[test]
fn mariadb_client_and_admin() {
    let (install, server, client, admin) = (need("mariadb-install-db"), need("mariadbd"), need("mariadb"), need("mariadb-admin"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(Command::new(install).args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"]).arg(format!("--datadir={}", data.display())));
    let port = free_port();
    let _srv = Kill(
        Command::new(server)
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--skip-log-bin"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let cap = Tcpdump::start(&format!("tcp port {port}"));
    let p = port.to_string();
    let sql = |db: &str, q: &str| run(Command::new(&client).args(["--no-defaults", "-h", "127.0.0.1", "-P", &p, "-u", "root", "--skip-ssl", "-D", db, "-e", q]));
    assert!(sql("mysql", "CREATE DATABASE shop; CREATE TABLE shop.items(id INT, name TEXT); INSERT INTO shop.items VALUES (1,'pen'),(2,'ink')").status.success());
    assert!(sql("shop", "SELECT name FROM items").status.success());
    assert!(!sql("shop", "SELECT * FROM nope").status.success());
    assert!(!sql("nodb", "SELECT 1").status.success());
    ok(Command::new(admin).args(["--no-defaults", "-h", "127.0.0.1", "-P", &p, "-u", "root", "--skip-ssl", "ping", "status"]));
    let (pcap, _keep) = cap.stop();
    let e = read(&pcap, &[]);
    let m = of(&e, "mysql");
    let logins: Vec<_> = m.iter().filter(|x| x["request"]["method"] == "Login").collect();
    assert!(logins.iter().any(|x| x["request"]["user"] == "root" && x["response"]["status"] == "OK"), "{logins:?}");
    assert!(logins.iter().any(|x| x["request"]["database"] == "nodb" && x["response"]["error"]["code"] == 1049), "a login to a missing database: {logins:?}");
    let select = m.iter().find(|x| x["request"]["query"] == "SELECT name FROM items").unwrap();
    assert_eq!(select["request"]["target"], "items");
    assert_eq!(select["response"]["rows"], 2);
    assert_eq!(select["response"]["columns"], serde_json::json!(["name"]));
    let nope = m.iter().find(|x| x["request"]["target"] == "nope").unwrap();
    assert_eq!(nope["response"]["error"]["sql_state"], "42S02");
    let insert = m.iter().find(|x| x["request"]["query"].as_str().is_some_and(|q| q.starts_with("INSERT"))).unwrap();
    assert_eq!(insert["response"]["affected_rows"], 2);
    assert_eq!(find(&m, "COM_PING")["response"]["status"], "OK");
    assert!(m.iter().any(|x| x["request"]["method"] == "COM_STATISTICS"));
    assert!(m.iter().any(|x| x["request"]["method"] == "COM_QUIT" && x["response"].is_null() && x["anomalies"] == serde_json::json!([])));
}

#[test]
fn rabbitmq_with_pika() {
    let server = need("rabbitmq-server");
    let py = venv_python("pika");
    // Debian's rabbitmq-server runs the broker as the `rabbitmq` user
    let dir = tempfile::tempdir().unwrap();
    for d in ["mnesia", "log"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    ok(Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(dir.path()));
    let epmd_before = run(Command::new("pgrep").args(["-x", "epmd"])).status.success();
    let port = free_port();
    let node = format!("kshark{port}@localhost");
    let mut env: Vec<(&str, std::ffi::OsString)> = vec![
        ("RABBITMQ_NODE_PORT", port.to_string().into()),
        ("RABBITMQ_NODENAME", node.clone().into()),
        ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
        ("RABBITMQ_DIST_PORT", free_port().to_string().into()),
    ];
    for (k, f) in [("RABBITMQ_MNESIA_BASE", "mnesia"), ("RABBITMQ_LOG_BASE", "log"), ("RABBITMQ_ENABLED_PLUGINS_FILE", "plugins"), ("RABBITMQ_FEATURE_FLAGS_FILE", "feature_flags"), ("RABBITMQ_CONFIG_FILE", "none")] {
        env.push((k, dir.path().join(f).into_os_string()));
    }
    /// Stops the broker (its Erlang VM outlives the script that started it) and the port
    /// mapper it started, however the test ends.
    struct Broker(Vec<(&'static str, std::ffi::OsString)>, String, bool, #[allow(dead_code)] Kill);
    impl Drop for Broker {
        fn drop(&mut self) {
            let _ = Command::new("rabbitmqctl").envs(self.0.iter().cloned()).args(["-n", &self.1, "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
            if !self.2 {
                let _ = Command::new("epmd").arg("-kill").stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
    }
    let child = Command::new(server).envs(env.iter().cloned()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _broker = Broker(env, node.clone(), epmd_before, Kill(child));
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(90), "rabbitmq-server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let cap = Tcpdump::start(&format!("tcp port {port}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/amqp_peer.py");
    ok(Command::new(&py).arg(script).arg(port.to_string()));
    let (pcap, _keep) = cap.stop();
    let e = read(&pcap, &[]);
    let a = of(&e, "amqp");
    let ms = methods(&a);
    for want in ["connection.start", "connection.tune", "connection.open", "channel.open", "queue.declare", "basic.publish", "basic.get", "basic.consume", "basic.deliver", "basic.ack"] {
        assert!(ms.iter().any(|m| m == want), "{want} missing from {ms:?}");
    }
    let publish = a.iter().find(|x| x["request"]["method"] == "basic.publish").unwrap();
    assert_eq!(publish["request"]["target"], "kshark-q");
    assert_eq!(publish["request"]["body"]["text"], "order 1");
    let get = find(&a, "basic.get");
    assert_eq!(get["response"]["method"], "basic.get-ok");
    assert_eq!(get["response"]["body"]["text"], "order 1");
    let failed = a.iter().find(|x| x["request"]["method"] == "queue.declare" && x["request"]["target"] == "missing").unwrap();
    assert_eq!(failed["response"]["error"]["reply_code"], 404);
    assert!(!serde_json::to_string(&e).unwrap().contains("guest\\u0000guest"), "credentials are never shown");
}

#[test]
fn mosquitto_pub_and_sub() {
    let (broker, publ, sub) = (need("mosquitto"), need("mosquitto_pub"), need("mosquitto_sub"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("m.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")).unwrap();
    let _b = Kill(Command::new(broker).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    wait_port(port);
    let cap = Tcpdump::start(&format!("tcp port {port}"));
    let p = port.to_string();
    let s = Kill(Command::new(sub).args(["-h", "127.0.0.1", "-p", &p, "-t", "shop/#", "-q", "1", "-C", "3", "-V", "mqttv311"]).stdout(Stdio::null()).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(400));
    for (qos, v) in [("0", "mqttv311"), ("1", "mqttv5"), ("2", "mqttv311")] {
        ok(Command::new(&publ).args(["-h", "127.0.0.1", "-p", &p, "-t", &format!("shop/q{qos}"), "-m", &format!("hello {qos}"), "-q", qos, "-V", v]));
    }
    let t0 = Instant::now();
    let mut s = s;
    while s.0.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (pcap, _keep) = cap.stop();
    let e = read(&pcap, &[]);
    let m = of(&e, "mqtt");
    let connects: Vec<_> = m.iter().filter(|x| x["request"]["method"] == "CONNECT").collect();
    assert_eq!(connects.len(), 4, "{:?}", methods(&m));
    assert!(connects.iter().any(|x| x["request"]["version"] == 5));
    assert!(connects.iter().all(|x| x["response"]["status"] == "Connection Accepted" || x["response"]["status"] == "Success"));
    let sub = find(&m, "SUBSCRIBE");
    assert_eq!(sub["request"]["target"], "shop/#");
    assert_eq!(sub["response"]["packet_type"], "SUBACK");
    let q2 = m.iter().find(|x| x["request"]["method"] == "PUBLISH" && x["request"]["target"] == "shop/q2" && x["request"]["qos"] == 2).unwrap();
    assert_eq!(q2["response"]["packet_type"], "PUBCOMP");
    let q1 = m.iter().find(|x| x["request"]["target"] == "shop/q1" && x["src"]["port"] != x["dst"]["port"] && x["request"]["qos"] == 1).unwrap();
    assert_eq!(q1["response"]["packet_type"], "PUBACK");
    // the broker delivers to the subscriber: publishes sent from the broker's port
    let delivered = m.iter().filter(|x| x["request"]["method"] == "PUBLISH" && x["src"]["port"] == port).count();
    assert_eq!(delivered, 3, "{:?}", methods(&m));
    assert!(m.iter().all(|x| x["anomalies"] == serde_json::json!([])), "{m:?}");
}

#[test]
fn websockets_with_permessage_deflate() {
    let py = Path::new("/usr/bin/python3");
    let ok_import = run(Command::new(py).args(["-c", "import websockets"])).status.success();
    assert!(ok_import, "python3-websockets is missing: run `bash scripts/setup.sh`");
    let port = free_port();
    let cap = Tcpdump::start(&format!("tcp port {port}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_peer.py");
    ok(Command::new(py).arg(script).arg(port.to_string()));
    let (pcap, _keep) = cap.stop();
    let e = read(&pcap, &[]);
    let up = e.iter().find(|x| x["protocol"] == "http").expect("the upgrade");
    assert_eq!(up["response"]["status_code"], 101);
    let w = of(&e, "websocket");
    let texts: Vec<_> = w.iter().filter(|x| x["request"]["method"] == "text").map(|x| (x["request"]["direction"].as_str().unwrap(), x["request"]["payload"]["text"].as_str().unwrap_or(""))).collect();
    let long = "kshark ".repeat(200);
    assert_eq!(texts, [("client", "hello"), ("server", "echo: hello"), ("client", long.as_str()), ("server", format!("echo: {long}").as_str())]);
    assert!(w.iter().filter(|x| x["request"]["method"] == "text").all(|x| x["request"]["compressed"] == true), "permessage-deflate is websockets' default");
    assert!(w.iter().any(|x| x["request"]["method"] == "binary" && x["request"]["payload"]["base64"] == "AAECAw=="), "{:?}", w.iter().filter(|x| x["request"]["method"] == "binary").collect::<Vec<_>>());
    assert!(w.iter().any(|x| x["request"]["method"] == "ping") && w.iter().any(|x| x["request"]["method"] == "pong"));
    assert!(w.iter().any(|x| x["request"]["method"] == "close" && x["request"]["code"] == 1000));
    assert!(w.iter().all(|x| x["request"]["target"] == "/chat" && x["anomalies"] == serde_json::json!([])), "{w:?}");
}
