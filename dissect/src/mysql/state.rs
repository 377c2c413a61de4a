//! A MySQL (or MariaDB) connection: the greeting, the login and its authentication
//! exchange, then one command at a time with its reply: OK, ERR, a text or binary result
//! set (possibly several), a prepared statement's definition, or LOCAL INFILE.
//!
//! Payloads over 16 MB continue in the next packet and are joined; with compression
//! negotiated (or recognised on a connection joined mid-way) packets are unwrapped and
//! inflated first.

use super::wire::{self, cap, Reader};
use crate::entry::Fields;
use crate::fields;
use crate::flow::Dir;
use crate::l7::{self, Exchanges, Msg};
use crate::proto::{Switch, TcpParser};
use crate::stream::{Cx, Progress, StreamParser};
use crate::time::Timestamp;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;

const MAX_COLUMNS: usize = 64;
const MAX_STATEMENTS: usize = 4096;
/// The most a compressed packet may inflate to (its header says; more is refused).
const MAX_INFLATED: usize = 1 << 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The server's greeting comes first.
    Greeting,
    /// The client's login comes next.
    Login,
    /// The authentication exchange, until the server's OK or ERR.
    Auth,
    Command,
    /// TLS: nothing more can be read.
    Encrypted,
}

/// Where the reply to the command in flight is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Idle,
    First,
    Columns(u64),
    ColumnsEnd,
    Rows,
    /// COM_STMT_PREPARE's reply: parameter definitions, then columns, each run followed by
    /// an EOF unless CLIENT_DEPRECATE_EOF.
    Params { left: u64, cols: u64 },
    ParamsEof { cols: u64 },
    PrepColumns(u64),
    PrepColumnsEof,
    /// COM_FIELD_LIST: column definitions until EOF.
    FieldList,
    /// LOCAL INFILE: the client sends the file, then an empty packet.
    Infile,
}

/// What the reply said so far.
#[derive(Debug, Default)]
struct Acc {
    start: Option<Timestamp>,
    size: u64,
    rows: u64,
    columns: Vec<String>,
    affected: Option<u64>,
    insert_id: Option<u64>,
    warnings: u16,
    error: Option<Value>,
    status: Option<String>,
    statement_id: Option<u32>,
}

pub struct Mysql {
    x: Exchanges,
    phase: Phase,
    reply: Reply,
    /// The command in flight: its byte, and for a prepare its text.
    command: Option<(u8, Option<String>)>,
    acc: Acc,
    server_caps: u32,
    client_caps: u32,
    server_version: Option<String>,
    statements: HashMap<u32, String>,
    /// A payload of 16 MB - 1 continues in the next packet: what was gathered (its first
    /// `Limits::max_body` bytes) and its whole length so far.
    partial: [Option<(Vec<u8>, usize)>; 2],
    /// A packet too long to hold, passed through as it comes: bytes left, and whether its
    /// payload continues in the next packet.
    big: [Option<(usize, bool)>; 2],
    /// Packets come wrapped in compressed ones; the inflated bytes not yet read.
    compressed: bool,
    inner: [Vec<u8>; 2],
}

impl Mysql {
    pub fn new(client: Dir, from_greeting: bool, compressed: bool) -> Self {
        Mysql {
            x: Exchanges::new("mysql", client),
            phase: if from_greeting { Phase::Greeting } else { Phase::Command },
            reply: Reply::Idle,
            command: None,
            acc: Acc::default(),
            server_caps: 0,
            client_caps: 0,
            server_version: None,
            statements: HashMap::new(),
            partial: Default::default(),
            big: [None, None],
            compressed,
            inner: Default::default(),
        }
    }

    fn deprecate_eof(&self) -> bool {
        self.server_caps & self.client_caps & cap::DEPRECATE_EOF != 0
    }

    /// One whole payload, sent in `dir`.
    fn payload(&mut self, dir: Dir, p: &[u8], size: u64, cx: &mut Cx<'_>) {
        cx.stats.l7_messages += 1;
        if dir == self.x.client() {
            self.client(p, size, cx)
        } else {
            self.server(p, size, cx)
        }
    }

    fn client(&mut self, p: &[u8], size: u64, cx: &mut Cx<'_>) {
        match self.phase {
            Phase::Greeting | Phase::Login => {
                let Some(l) = wire::login(p) else { return };
                self.client_caps = l.capabilities;
                let text = |v: Option<&[u8]>| v.map(|v| l7::text(v, 256));
                let db = text(l.database);
                let f = fields! {"method" => "Login", "target" => db.clone(), "user" => text(l.user), "database" => db, "auth_plugin" => text(l.auth_plugin), "ssl" => l.ssl_only};
                self.x.request(None, Msg::new(f, cx.ts_at(0), cx.ts, size), cx);
                if l.ssl_only {
                    let r = fields! {"status" => "tls", "error" => Value::Null, "server_version" => self.server_version.clone()};
                    self.x.reply(None, Msg::new(r, cx.ts, cx.ts, 0), cx);
                    self.phase = Phase::Encrypted;
                } else {
                    self.phase = Phase::Auth;
                    self.acc = Acc::default();
                }
            }
            // authentication data (scrambles, passwords, public key requests): never shown
            Phase::Auth | Phase::Encrypted => {}
            Phase::Command if self.reply == Reply::Infile => {
                if p.is_empty() {
                    self.reply = Reply::First;
                }
            }
            Phase::Command => self.command(p, size, cx),
        }
    }

    fn command(&mut self, p: &[u8], size: u64, cx: &mut Cx<'_>) {
        let Some(&c) = p.first() else { return };
        let name = wire::command_name(c).map_or_else(|| format!("COM_{c}"), str::to_string);
        let body = &p[1..];
        let cap_body = cx.limits.max_body;
        let mut f = fields! {"method" => name, "target" => Value::Null};
        let mut text = None;
        match c {
            // COM_QUERY, COM_STMT_PREPARE: the statement (after query attributes, when sent)
            3 | 0x16 => {
                let mut q = body;
                if c == 3 && self.client_caps & self.server_caps & cap::QUERY_ATTRIBUTES != 0 {
                    let mut r = Reader::new(body);
                    if let (Some(0), Some(_)) = (r.lenenc(), r.lenenc()) {
                        q = r.rest();
                    }
                }
                let s = l7::text(q, cap_body);
                f.insert("target".into(), json!(l7::sql_table(&s)));
                // the payload may be the first part of a longer one (`size` says)
                let whole = (size as usize).saturating_sub(4 + 1 + (body.len() - q.len()));
                f.insert("query".into(), l7::value_part(q, whole, cap_body));
                text = Some(s);
            }
            // COM_INIT_DB, COM_CREATE_DB, COM_DROP_DB, COM_FIELD_LIST: a name
            2 | 5 | 6 | 4 => {
                let name = body.split(|b| *b == 0).next().unwrap_or_default();
                f.insert("target".into(), json!(l7::text(name, 256)));
            }
            0x17..=0x1a | 0x1c => {
                let id = Reader::new(body).u32();
                if let Some(id) = id {
                    f.insert("statement_id".into(), json!(id));
                    if let Some(q) = self.statements.get(&id) {
                        f.insert("target".into(), json!(l7::sql_table(q)));
                        f.insert("query".into(), json!(q));
                    }
                    if c == 0x19 {
                        self.statements.remove(&id);
                    }
                }
            }
            0x11 => {
                let user = body.split(|b| *b == 0).next().unwrap_or_default();
                f.insert("user".into(), json!(l7::text(user, 256)));
            }
            _ => {}
        }
        let m = Msg::new(f, cx.ts_at(0), cx.ts, size);
        // COM_QUIT, COM_STMT_SEND_LONG_DATA and COM_STMT_CLOSE have no reply
        if matches!(c, 0x01 | 0x18 | 0x19) {
            self.x.alone(self.x.client(), m, cx);
            return;
        }
        if self.command.is_some() {
            // a command while one is in flight: the earlier reply was not seen
            self.finish_reply(cx, true);
        }
        self.x.request(None, m, cx);
        self.command = Some((c, text));
        self.acc = Acc::default();
        self.reply = Reply::First;
        if c == 0x11 {
            self.phase = Phase::Auth;
        }
    }

    fn server(&mut self, p: &[u8], size: u64, cx: &mut Cx<'_>) {
        let first = p.first().copied();
        match self.phase {
            Phase::Greeting => {
                if let Some(g) = wire::greeting(p) {
                    self.server_caps = g.capabilities;
                    self.server_version = Some(l7::text(g.version, 64));
                    self.phase = Phase::Login;
                } else if let Some((code, state, msg)) = wire::err(p) {
                    // refused before any login (too many connections, host blocked)
                    let e = error(code, state, msg);
                    let m = Msg::new(fields! {"method" => "Error", "target" => Value::Null, "status" => code.to_string(), "error" => e}, cx.ts_at(0), cx.ts, size);
                    self.x.alone(self.x.client().flip(), m, cx);
                }
                return;
            }
            Phase::Login | Phase::Encrypted => return,
            _ => {}
        }
        self.acc.start.get_or_insert(cx.ts_at(0));
        self.acc.size += size;
        if self.phase == Phase::Auth {
            match first {
                Some(0x00) => {
                    self.acc.status = Some("OK".into());
                    self.end_auth(cx);
                }
                Some(0xff) => {
                    self.take_err(p);
                    self.end_auth(cx);
                }
                // an auth switch or more data: the exchange goes on
                _ => {}
            }
            return;
        }
        match self.reply {
            Reply::Idle => {}
            Reply::First => match first {
                Some(0x00) if self.command.as_ref().is_some_and(|c| c.0 == 0x16) => {
                    let mut r = Reader::new(&p[1..]);
                    let (id, cols, params) = (r.u32(), r.u16().unwrap_or(0), r.u16().unwrap_or(0));
                    if let Some(id) = id {
                        self.acc.statement_id = Some(id);
                        if let Some(q) = self.command.as_ref().and_then(|c| c.1.clone()) {
                            if self.statements.len() >= MAX_STATEMENTS {
                                self.statements.clear();
                            }
                            self.statements.insert(id, q);
                        }
                    }
                    self.acc.status = Some("OK".into());
                    self.reply = Reply::Params { left: params as u64, cols: cols as u64 };
                    if params == 0 {
                        self.after_params(cols as u64, cx);
                    }
                }
                Some(0x00) | Some(0xfe) if p.len() < 0xff_ffff => {
                    self.take_ok(p);
                    self.finish_if_last(p, cx);
                }
                Some(0xff) => {
                    self.take_err(p);
                    self.finish_reply(cx, false);
                }
                Some(0xfb) => self.reply = Reply::Infile,
                _ if self.command.as_ref().is_some_and(|c| c.0 == 4) => {
                    self.column(p);
                    self.reply = Reply::FieldList;
                }
                _ if self.command.as_ref().is_some_and(|c| matches!(c.0, 9 | 0x0e)) => {
                    // COM_STATISTICS answers with a string
                    self.acc.status = Some(l7::text(p, 128));
                    self.finish_reply(cx, false);
                }
                _ => match Reader::new(p).lenenc() {
                    Some(n) if n > 0 => {
                        self.acc.columns.clear();
                        self.reply = Reply::Columns(n);
                    }
                    _ => self.finish_reply(cx, false),
                },
            },
            Reply::Columns(n) => {
                self.column(p);
                self.reply = if n > 1 {
                    Reply::Columns(n - 1)
                } else if self.deprecate_eof() {
                    Reply::Rows
                } else {
                    Reply::ColumnsEnd
                };
            }
            Reply::ColumnsEnd => {
                // the EOF after the columns; a connection joined mid-way may lack it
                self.reply = Reply::Rows;
                if !wire::is_eof(p) {
                    self.row_or_end(p, cx);
                }
            }
            Reply::Rows => self.row_or_end(p, cx),
            Reply::Params { left, cols } => {
                self.reply = Reply::Params { left: left - 1, cols };
                if left == 1 {
                    if self.deprecate_eof() {
                        self.after_params(cols, cx);
                    } else {
                        self.reply = Reply::ParamsEof { cols };
                    }
                }
            }
            Reply::ParamsEof { cols } => self.after_params(cols, cx),
            Reply::PrepColumns(left) => {
                self.column(p);
                self.reply = Reply::PrepColumns(left - 1);
                if left == 1 {
                    if self.deprecate_eof() {
                        self.finish_reply(cx, false);
                    } else {
                        self.reply = Reply::PrepColumnsEof;
                    }
                }
            }
            Reply::PrepColumnsEof => self.finish_reply(cx, false),
            Reply::FieldList => {
                if wire::is_eof(p) || first == Some(0xff) {
                    if first == Some(0xff) {
                        self.take_err(p);
                    }
                    self.finish_reply(cx, false);
                } else {
                    self.column(p);
                }
            }
            Reply::Infile => {}
        }
    }

    /// A prepare's parameters are read: its columns next, if it has any.
    fn after_params(&mut self, cols: u64, cx: &mut Cx<'_>) {
        if cols == 0 {
            self.finish_reply(cx, false);
        } else {
            self.reply = Reply::PrepColumns(cols);
        }
    }

    fn row_or_end(&mut self, p: &[u8], cx: &mut Cx<'_>) {
        match p.first() {
            Some(0xfe) if p.len() < 9 || self.deprecate_eof() && p.len() < 0xff_ffff => {
                self.take_ok(p);
                self.finish_if_last(p, cx);
            }
            Some(0xff) => {
                self.take_err(p);
                self.finish_reply(cx, false);
            }
            _ => self.acc.rows += 1,
        }
    }

    fn column(&mut self, p: &[u8]) {
        if self.acc.columns.len() < MAX_COLUMNS {
            if let Some(n) = wire::column_name(p) {
                self.acc.columns.push(l7::text(n, 64));
            }
        }
    }

    fn take_ok(&mut self, p: &[u8]) {
        if p.first() == Some(&0xfe) && p.len() < 9 {
            // an EOF: warnings, status
            let mut r = Reader::new(&p[1..]);
            self.acc.warnings = self.acc.warnings.max(r.u16().unwrap_or(0));
            return;
        }
        if let Some((affected, id, _, warnings)) = wire::ok(p) {
            *self.acc.affected.get_or_insert(0) += affected;
            if id > 0 {
                self.acc.insert_id = Some(id);
            }
            self.acc.warnings = self.acc.warnings.max(warnings);
        }
    }

    fn take_err(&mut self, p: &[u8]) {
        if let Some((code, state, msg)) = wire::err(p) {
            self.acc.status = Some(code.to_string());
            self.acc.error = Some(error(code, state, msg));
        }
    }

    /// After an OK or EOF: the reply ends unless the server said more results follow.
    fn finish_if_last(&mut self, p: &[u8], cx: &mut Cx<'_>) {
        let status = if p.len() < 9 && p.first() == Some(&0xfe) {
            Reader::new(p.get(3..).unwrap_or_default()).u16().unwrap_or(0)
        } else {
            wire::ok(p).map_or(0, |o| o.2)
        };
        // SERVER_MORE_RESULTS_EXISTS
        if status & 0x0008 != 0 {
            self.reply = Reply::First;
        } else {
            self.finish_reply(cx, false);
        }
    }

    fn end_auth(&mut self, cx: &mut Cx<'_>) {
        self.phase = Phase::Command;
        if self.client_caps & self.server_caps & cap::COMPRESS != 0 {
            self.compressed = true;
        }
        let mut r = self.reply_fields();
        r.insert("server_version".into(), json!(self.server_version));
        let a = std::mem::take(&mut self.acc);
        self.command = None;
        self.reply = Reply::Idle;
        self.x.reply(None, Msg::new(r, a.start.unwrap_or(cx.ts), cx.ts, a.size), cx);
    }

    fn reply_fields(&self) -> Fields {
        let a = &self.acc;
        let status = a.status.clone().unwrap_or_else(|| "OK".into());
        let mut f = fields! {"status" => status, "error" => a.error.clone().unwrap_or(Value::Null)};
        if a.rows > 0 || !a.columns.is_empty() {
            f.insert("rows".into(), json!(a.rows));
        }
        if !a.columns.is_empty() {
            f.insert("columns".into(), json!(a.columns));
        }
        if let Some(n) = a.affected {
            f.insert("affected_rows".into(), json!(n));
        }
        if let Some(n) = a.insert_id {
            f.insert("last_insert_id".into(), json!(n));
        }
        if a.warnings > 0 {
            f.insert("warnings".into(), json!(a.warnings));
        }
        if let Some(id) = a.statement_id {
            f.insert("statement_id".into(), json!(id));
        }
        f
    }

    /// The command's reply is complete (or, `unseen`, never came): its entry goes.
    fn finish_reply(&mut self, cx: &mut Cx<'_>, unseen: bool) {
        if self.command.take().is_none() {
            return;
        }
        self.reply = Reply::Idle;
        if unseen {
            self.acc = Acc::default();
            self.x.give_up_oldest(cx);
            return;
        }
        let f = self.reply_fields();
        let a = std::mem::take(&mut self.acc);
        self.x.reply(None, Msg::new(f, a.start.unwrap_or(cx.ts), cx.ts, a.size), cx);
    }

    /// One packet's payload (`whole`: the packet ends it); a payload continued from the
    /// packet before is joined to it, keeping its first `Limits::max_body` bytes.
    fn piece(&mut self, dir: Dir, p: &[u8], len: usize, ends: bool, cx: &mut Cx<'_>) {
        let d = dir.idx();
        let cap = cx.limits.max_body;
        if self.partial[d].is_none() && ends && p.len() == len {
            return self.payload(dir, p, (len + 4) as u64, cx);
        }
        let (head, total) = self.partial[d].get_or_insert_with(|| (Vec::new(), 0));
        head.extend_from_slice(&p[..p.len().min(cap.saturating_sub(head.len()))]);
        *total += len;
        if ends {
            let (head, total) = self.partial[d].take().expect("just set");
            self.payload(dir, &head, (total + 4) as u64, cx);
        }
    }

    /// Whole packets from `data` (inflated ones); returns the bytes read.
    fn packets(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> usize {
        let mut at = 0;
        while let Some((len, _seq)) = wire::header(&data[at..]) {
            let end = at + 4 + len;
            if data.len() < end {
                break;
            }
            self.piece(dir, &data[at + 4..end], len, len != wire::MAX_PAYLOAD, cx);
            at = end;
        }
        at
    }
}

fn error(code: u16, state: Option<&[u8]>, msg: &[u8]) -> Value {
    json!({"code": code, "sql_state": state.map(|s| l7::text(s, 5)), "message": l7::text(msg, 1024)})
}

impl StreamParser for Mysql {
    fn feed(&mut self, dir: Dir, data: &[u8], cx: &mut Cx<'_>) -> Progress {
        if self.phase == Phase::Encrypted {
            return Progress::Consumed(data.len());
        }
        let d = dir.idx();
        if let Some((left, more)) = self.big[d] {
            // the rest of a long packet: its first bytes are kept, the others counted
            let n = left.min(data.len());
            let (head, total) = self.partial[d].get_or_insert_with(|| (Vec::new(), 0));
            head.extend_from_slice(&data[..n.min(cx.limits.max_body.saturating_sub(head.len()))]);
            *total += n;
            self.big[d] = (left > n).then_some((left - n, more));
            if left == n && !more {
                let (head, total) = self.partial[d].take().expect("just set");
                self.payload(dir, &head, (total + 4) as u64, cx);
            }
            return Progress::Consumed(n);
        }
        if !self.compressed {
            let Some((len, _)) = wire::header(data) else { return Progress::NeedMore { consumed: 0, needed: 4 } };
            if len > cx.limits.max_pending_bytes / 2 {
                self.big[d] = Some((len, len == wire::MAX_PAYLOAD));
                return Progress::Consumed(4);
            }
            if data.len() < 4 + len {
                return Progress::NeedMore { consumed: 0, needed: 4 + len };
            }
            self.piece(dir, &data[4..4 + len], len, true, cx);
            return Progress::Consumed(4 + len);
        }
        // a compressed packet: 3 bytes of length, a sequence id, 3 bytes of inflated length
        if data.len() < 7 {
            return Progress::NeedMore { consumed: 0, needed: 7 };
        }
        let clen = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
        let ulen = u32::from_le_bytes([data[4], data[5], data[6], 0]) as usize;
        if data.len() < 7 + clen {
            return Progress::NeedMore { consumed: 0, needed: 7 + clen };
        }
        let body = &data[7..7 + clen];
        if ulen == 0 {
            self.inner[d].extend_from_slice(body);
        } else {
            let mut out = Vec::with_capacity(ulen.min(MAX_INFLATED));
            let r = flate2::read::ZlibDecoder::new(body).take(MAX_INFLATED as u64).read_to_end(&mut out);
            if r.is_err() || out.len() != ulen {
                return malformed(cx);
            }
            self.inner[d].extend_from_slice(&out);
        }
        let inner = std::mem::take(&mut self.inner[d]);
        let n = self.packets(dir, &inner, cx);
        self.inner[d] = inner;
        self.inner[d].drain(..n);
        // a packet longer than this inside compressed ones is not followed
        if self.inner[d].len() > cx.limits.max_pending_bytes * 8 {
            return malformed(cx);
        }
        Progress::Consumed(7 + clen)
    }

    fn on_gap(&mut self, _dir: Dir, _len: u64, cx: &mut Cx<'_>) {
        // packets carry no marker to find again: what waits is given up, nothing more read
        self.x.gap();
        self.x.finish(cx);
        self.command = None;
        self.phase = Phase::Encrypted;
    }

    fn on_close(&mut self, _dir: Dir, leftover: &[u8], cx: &mut Cx<'_>) {
        if !leftover.is_empty() && self.phase != Phase::Encrypted {
            cx.stats.l7_malformed += 1;
        }
    }
}

impl TcpParser for Mysql {
    fn finish(&mut self, cx: &mut Cx<'_>) {
        self.x.finish(cx)
    }

    fn switch(&mut self) -> Option<Switch> {
        (self.phase == Phase::Encrypted).then_some(Switch::Opaque)
    }
}

fn malformed(cx: &mut Cx<'_>) -> Progress {
    cx.stats.l7_malformed += 1;
    Progress::Desync
}
