//! The store: one SQLite database (WAL mode) in the hub's data directory.
//!
//! Entries are kept by batch, as blocks: `blocks` holds, per batch, the `seq` of its
//! first entry (entries are numbered in the order the hub committed them; a block's are
//! `first..first+n`), its entries' times (each, and the block's lowest and highest, so a
//! time range skips whole blocks), when it was stored (`at`, for age retention), and its
//! entries' slim forms, LZ4-compressed: what filters read. `fulls` holds the batch's LZ4
//! bytes as the worker sent them: the full entries, apart, so a scan reads only the slim
//! forms. A few rows per batch rather than two per entry is what lets the writer keep
//! up with 200,000 entries a second. `workers` holds the last batch committed from each
//! worker, in the same transaction as the batch: after a crash a batch is either wholly
//! stored and known, or neither, which is what makes resending safe.

use crate::filter::Filter;
use crate::record::Block;
use crate::Error;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the store may keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Bytes of database pages in use (slim rows, bodies and indexes).
    pub max_bytes: Option<u64>,
    /// How long after it was stored an entry is kept.
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Parses `--retention`: sizes (`500MB`, `2GiB`, `1G`) and durations (`24h`, `30m`,
    /// `7d`), comma-separated to give both.
    pub fn parse(s: &str) -> Result<Retention, String> {
        let mut r = Retention::default();
        if s.trim().is_empty() {
            return Err("empty: give a size (500MB, 2GiB), an age (24h, 7d), or both (2GiB,24h)".into());
        }
        // an age in ns must fit the store's clock (i64 ns: 292 years)
        let age = |ns: Option<i128>| -> Result<Duration, String> {
            match ns {
                Some(ns) if ns > 0 && ns <= i64::MAX as i128 => Ok(Duration::from_nanos(ns as u64)),
                Some(ns) if ns > 0 => Err("is longer than the store can count (292 years)".into()),
                _ => Err("must be longer than zero".into()),
            }
        };
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!("{s:?} has an empty part"));
            }
            let what = |e: String| format!("{part:?} {e}");
            if let Some(size) = parse_size(part) {
                r.max_bytes = Some(size.ok_or_else(|| what("is not a size this store can keep (more than zero, under 16 EiB)".into()))?);
            } else if let Some(d) = part.strip_suffix('d').and_then(|n| n.parse::<u64>().ok()) {
                r.max_age = Some(age(Some(d as i128 * 86_400_000_000_000)).map_err(what)?);
            } else if let Some(ns) = crate::filter::parse_duration(part) {
                r.max_age = Some(age(Some(ns)).map_err(what)?);
            } else {
                return Err(format!("{part:?} is neither a size (500MB, 2GiB) nor a duration (24h, 7d)"));
            }
        }
        Ok(r)
    }
}

/// `Some(None)`: a size's syntax, but zero or too big.
fn parse_size(s: &str) -> Option<Option<u64>> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let n: f64 = s[..split].parse().ok()?;
    let mult = match s[split..].trim().to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1048576.0,
        "g" | "gb" => 1e9,
        "gib" => 1073741824.0,
        "t" | "tb" => 1e12,
        "tib" => 1099511627776.0,
        _ => return None,
    };
    let b = n * mult;
    Some((1.0..1.8e19).contains(&b).then_some(b as u64))
}

/// The part of a size limit left to the WAL: a quarter, from 64 KiB to 1 GiB.
fn wal_share(max: u64) -> u64 {
    (max / 4).clamp(64 << 10, 1 << 30)
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// A batch to commit: from which worker, and the batch.
pub struct Batch<'a> {
    pub worker: &'a str,
    pub block: &'a Block,
}

/// What happened to a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Stored; its entries' seqs start here.
    Stored(i64),
    /// Already stored before (a resend after a lost acknowledgement): nothing done.
    Duplicate,
    /// Refused: its number is far beyond the worker's last (`last`), where no worker's
    /// resend can be; taking it would make the worker's next batches look like resends.
    TooFar { last: Option<u64> },
}

/// How far beyond a worker's last batch (or, for a worker not seen yet, beyond 0) a
/// batch's number may be. A worker numbers its batches from 1, one after another.
pub const MAX_BATCH_GAP: u64 = 1_000_000;

/// The writer's handle (one per hub).
pub struct Store {
    path: PathBuf,
    conn: Connection,
    workers: HashMap<String, u64>,
    retention: Retention,
    next_seq: i64,
}

/// The layout's version, in `PRAGMA user_version`.
const VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blocks(first INTEGER PRIMARY KEY, n INTEGER NOT NULL, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, at INTEGER NOT NULL, ts BLOB NOT NULL, slim BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_at ON blocks(at);
CREATE TABLE IF NOT EXISTS fulls(first INTEGER PRIMARY KEY, full BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS workers(worker TEXT PRIMARY KEY, batch INTEGER NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending(id INTEGER PRIMARY KEY, entry TEXT NOT NULL);
";

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Store(format!("{}: {e}", path.display()))
}

fn open_conn(path: &Path) -> Result<Connection, Error> {
    let c = Connection::open(path).map_err(db_err(path))?;
    // WAL: readers beside the writer; NORMAL: a commit is in the WAL file before it is
    // acknowledged, which a killed process cannot lose (a power cut may lose the last ones)
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=16384; PRAGMA temp_store=MEMORY;").map_err(db_err(path))?;
    Ok(c)
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, retention: Retention) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        let path = dir.join("kshark.db");
        let conn = open_conn(&path)?;
        // checkpoints (copying the WAL into the database, with an fsync) are the hub's
        // checkpoint thread's work ([`Reader::checkpoint`]), not the writer's: a commit
        // that did one would hold up everything behind it. This is the backstop (1 GiB).
        conn.execute_batch("PRAGMA wal_autocheckpoint=262144").map_err(db_err(&path))?;
        let path2 = path.clone();
        let err = db_err(&path2);
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(&err)?;
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0)).map_err(&err)?;
        if version != VERSION && (version != 0 || tables > 0) {
            return Err(Error::Store(format!("{}: a store of another kshark version (layout {version}, this one reads {VERSION}): move it away or give another --data", path.display())));
        }
        // freed pages go back to the file system (`incremental_vacuum` after retention),
        // so that a size limit bounds the files on disk, not only the pages in use. The
        // mode must be set before the first table, or by a VACUUM outside WAL mode (a
        // store made before is converted once)
        let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).map_err(&err)?;
        if auto_vacuum != 2 {
            if tables > 0 {
                eprintln!("kshark hub: {}: switching the store to incremental vacuum (once)", path.display());
            }
            conn.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA auto_vacuum=INCREMENTAL; VACUUM; PRAGMA journal_mode=WAL;").map_err(&err)?;
        }
        if let Some(max) = retention.max_bytes {
            // the WAL counts against the limit: checkpoints start once it holds its share
            // of it, and a reset WAL is truncated to that
            let share = wal_share(max);
            conn.execute_batch(&format!("PRAGMA wal_autocheckpoint={}; PRAGMA journal_size_limit={share};", (share / 4096).max(16))).map_err(&err)?;
        }
        conn.execute_batch(SCHEMA).map_err(&err)?;
        conn.execute_batch(&format!("PRAGMA user_version = {VERSION}")).map_err(&err)?;
        let mut workers = HashMap::new();
        {
            let mut st = conn.prepare("SELECT worker, batch FROM workers").map_err(&err)?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(&err)?;
            for row in rows {
                let (w, b) = row.map_err(&err)?;
                workers.insert(w, b as u64);
            }
        }
        // seqs are never reused, even once retention has deleted every block
        let next_seq: i64 = conn
            .query_row("SELECT max(coalesce((SELECT max(first + n) FROM blocks), 1), coalesce((SELECT value FROM meta WHERE key = 'next_seq'), 1))", [], |r| r.get(0))
            .map_err(&err)?;
        Ok(Store { path, conn, workers, retention, next_seq })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection for queries (any number may run beside the writer).
    pub fn reader(&self) -> Result<Reader, Error> {
        Reader::open(&self.path)
    }

    /// Commits batches in one transaction; a batch already stored is skipped. Returns what
    /// happened to each.
    pub fn commit(&mut self, batches: &[Batch<'_>]) -> Result<Vec<Committed>, Error> {
        self.commit_holding(batches, &[], &[])
    }

    /// [`Store::commit`], and in the same transaction: entries taken out of the batches to
    /// wait for their other side (`hold`: kept in the `pending` table under their id),
    /// and held ones that were joined or waited long enough (`release`: removed, as what
    /// became of them is in `batches`). A batch is thus acknowledged only once all of it
    /// is stored, one way or the other.
    pub fn commit_holding(&mut self, batches: &[Batch<'_>], hold: &[(u64, String)], release: &[u64]) -> Result<Vec<Committed>, Error> {
        let path = self.path.clone();
        let err = db_err(&path);
        let at = now_ns();
        let tx = self.conn.transaction().map_err(&err)?;
        let mut out = Vec::with_capacity(batches.len());
        let mut seq = self.next_seq;
        let mut seen: HashMap<&str, u64> = HashMap::new();
        {
            let mut block = tx.prepare_cached("INSERT INTO blocks(first, n, min_ts, max_ts, at, ts, slim) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)").map_err(&err)?;
            let mut full = tx.prepare_cached("INSERT INTO fulls(first, full) VALUES (?1, ?2)").map_err(&err)?;
            let mut mark = tx.prepare_cached("INSERT INTO workers(worker, batch, at) VALUES (?1, ?2, ?3) ON CONFLICT(worker) DO UPDATE SET batch = excluded.batch, at = excluded.at").map_err(&err)?;
            for b in batches {
                let last = seen.get(b.worker).copied().or_else(|| self.workers.get(b.worker).copied());
                if last.is_some_and(|l| b.block.batch <= l) {
                    out.push(Committed::Duplicate);
                    continue;
                }
                if b.block.batch > last.unwrap_or(0).saturating_add(MAX_BATCH_GAP) {
                    out.push(Committed::TooFar { last });
                    continue;
                }
                let blk = b.block;
                if !blk.is_empty() {
                    let ts: Vec<u8> = blk.ts.iter().flat_map(|t| t.to_le_bytes()).collect();
                    let (lo, hi) = (blk.ts.iter().min().copied().unwrap_or(0), blk.ts.iter().max().copied().unwrap_or(0));
                    block.execute(params![seq, blk.len() as i64, lo, hi, at, ts, &blk.slim_packed]).map_err(&err)?;
                    full.execute(params![seq, &blk.wire[..]]).map_err(&err)?;
                }
                mark.execute(params![b.worker, blk.batch as i64, at]).map_err(&err)?;
                seen.insert(b.worker, blk.batch);
                out.push(Committed::Stored(seq));
                seq += blk.len() as i64;
            }
        }
        if !hold.is_empty() || !release.is_empty() {
            let mut put = tx.prepare_cached("INSERT OR REPLACE INTO pending(id, entry) VALUES (?1, ?2)").map_err(&err)?;
            for (id, entry) in hold {
                put.execute(params![*id as i64, entry]).map_err(&err)?;
            }
            let mut del = tx.prepare_cached("DELETE FROM pending WHERE id = ?1").map_err(&err)?;
            for id in release {
                del.execute([*id as i64]).map_err(&err)?;
            }
        }
        if seq != self.next_seq {
            tx.execute("INSERT INTO meta(key, value) VALUES ('next_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [seq]).map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        self.next_seq = seq;
        for (w, n) in seen {
            self.workers.insert(w.to_string(), n);
        }
        Ok(out)
    }

    /// The entries held for their other side (see [`Store::commit_holding`]), by id.
    pub fn pending(&self) -> Result<Vec<(u64, String)>, Error> {
        let err = db_err(&self.path);
        let mut st = self.conn.prepare("SELECT id, entry FROM pending ORDER BY id").map_err(&err)?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))).map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    /// The last batch stored from `worker`.
    pub fn last_batch(&self, worker: &str) -> Option<u64> {
        self.workers.get(worker).copied()
    }

    /// Bytes the store takes: its pages in use, and its WAL file.
    pub fn used_bytes(&self) -> Result<u64, Error> {
        Ok(self.page_bytes()? + self.wal_bytes())
    }

    fn page_bytes(&self) -> Result<u64, Error> {
        let q = |p: &str| self.conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0)).map_err(db_err(&self.path));
        Ok(((q("page_count")? - q("freelist_count")?) * q("page_size")?).max(0) as u64)
    }

    fn wal_bytes(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// Bytes of the store's files on disk (the database and its WAL).
    pub fn disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len()) + self.wal_bytes()
    }

    /// Deletes what retention no longer allows, oldest first, a block (a batch) at a
    /// time, in steps that keep ingest going; returns how many entries went.
    pub fn enforce_retention(&mut self, now: i64) -> Result<u64, Error> {
        let path = self.path.clone();
        let err = db_err(&path);
        let mut deleted = 0;
        if let Some(age) = self.retention.max_age {
            let cutoff = now.saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64);
            let upto: Option<i64> = self.conn.query_row("SELECT max(first) FROM blocks WHERE at < ?1", [cutoff], |r| r.get(0)).map_err(&err)?;
            if let Some(upto) = upto {
                deleted += self.delete_through(upto)?;
            }
            self.conn.execute("DELETE FROM workers WHERE at < ?1", [cutoff.min(now - 7 * 86_400_000_000_000)]).map_err(&err)?;
        }
        if let Some(max) = self.retention.max_bytes {
            // the pages in use are kept under the limit less the WAL's share (checkpoints
            // start once the WAL holds a quarter of the limit: see `open`), down to 90% of
            // that, so that the next check is not at once
            let max = max - wal_share(max).min(max / 2);
            for _ in 0..64 {
                let used = self.page_bytes()?;
                if used <= max {
                    break;
                }
                let blocks: i64 = self.conn.query_row("SELECT count(*) FROM blocks", [], |r| r.get(0)).map_err(&err)?;
                if blocks == 0 {
                    break;
                }
                let excess = (used - max) as f64 + max as f64 * 0.1;
                let k = ((blocks as f64 * excess / used as f64).ceil() as i64).clamp(1, 5_000);
                let upto: Option<i64> = self.conn.query_row("SELECT first FROM blocks ORDER BY first LIMIT 1 OFFSET ?1", [k - 1], |r| r.get(0)).optional().map_err(&err)?;
                let Some(upto) = upto else { break };
                deleted += self.delete_through(upto)?;
            }
        }
        if deleted > 0 {
            // the freed pages leave the file, and the WAL is copied back and cut short
            // stepped to its end: each step frees a page
            {
                let mut st = self.conn.prepare("PRAGMA incremental_vacuum").map_err(&err)?;
                let mut rows = st.query([]).map_err(&err)?;
                while rows.next().map_err(&err)?.is_some() {}
            }
            if self.retention.max_bytes.is_some() {
                // best effort: a reader holding the WAL makes it wait, and not for long
                let _ = self.conn.busy_timeout(Duration::from_millis(100));
                let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                let _ = self.conn.busy_timeout(Duration::from_millis(5000));
            }
        }
        Ok(deleted)
    }

    /// Deletes the blocks whose first entry is at or before `upto`.
    fn delete_through(&mut self, upto: i64) -> Result<u64, Error> {
        let err = db_err(&self.path);
        let mut total = 0;
        loop {
            let tx = self.conn.transaction().map_err(&err)?;
            // a step: up to 200 blocks
            let end: Option<i64> = tx.query_row("SELECT max(first) FROM (SELECT first FROM blocks WHERE first <= ?1 ORDER BY first LIMIT 200)", [upto], |r| r.get(0)).map_err(&err)?;
            let Some(end) = end else { break };
            let n: i64 = tx.query_row("SELECT coalesce(sum(n), 0) FROM blocks WHERE first <= ?1", [end], |r| r.get(0)).map_err(&err)?;
            tx.execute("DELETE FROM blocks WHERE first <= ?1", [end]).map_err(&err)?;
            tx.execute("DELETE FROM fulls WHERE first <= ?1", [end]).map_err(&err)?;
            tx.commit().map_err(&err)?;
            total += n as u64;
            if end >= upto {
                break;
            }
        }
        Ok(total)
    }
}

/// A query: entries matching `filter`, with time at or after `since` (ns), the newest
/// `limit` of them.
pub struct Query<'a> {
    pub filter: &'a Filter,
    pub since: Option<i64>,
    pub limit: usize,
    /// What `now()` is in the filter, ns.
    pub now: i128,
    /// Asked between runs of blocks: `true` stops the query ([`Error::Cancelled`]), when
    /// its client left, its time ran out, or the hub is stopping.
    pub stop: Option<&'a (dyn Fn() -> bool + Sync)>,
}

impl Query<'_> {
    fn stopped(&self) -> Result<(), Error> {
        match self.stop {
            Some(f) if f() => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
}

/// A read connection.
pub struct Reader {
    path: PathBuf,
    conn: Connection,
}

/// A stored block as a query reads it.
struct Stored {
    first: i64,
    n: i64,
    min_ts: i64,
    ts: Vec<u8>,
    /// The slim forms, or (for filters that need them) the full entries, compressed.
    data: Vec<u8>,
}

/// Entries a query reads before it looks at what it found (in blocks, newest first).
const CHUNK: i64 = 32_768;

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, Error> {
        let conn = open_conn(path)?;
        // a query reads each block once, newest first: a small page cache is enough, and
        // several queries at once must not each take the writer's 64 MiB
        conn.execute_batch("PRAGMA cache_size=-8192").map_err(db_err(path))?;
        Ok(Reader { path: path.to_path_buf(), conn })
    }

    /// Copies what it can of the WAL into the database, without holding up the writer or
    /// readers (SQLite's PASSIVE checkpoint).
    pub fn checkpoint(&self) -> Result<(), Error> {
        self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(db_err(&self.path))
    }

    /// Entries stored.
    pub fn count(&self) -> Result<u64, Error> {
        self.conn.query_row("SELECT coalesce(sum(n), 0) FROM blocks", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err(&self.path))
    }

    /// The matching entries' JSON, oldest first (the order they were stored in), the
    /// newest `limit` of them, with their seqs, gathered in memory: see
    /// [`Reader::query_each`] for answers of any size.
    pub fn query(&self, q: &Query<'_>) -> Result<Vec<(i64, String)>, Error> {
        let mut out = Vec::new();
        self.query_each(q, &mut |seq, json| {
            out.push((seq, String::from_utf8_lossy(json).into_owned()));
            true
        })?;
        Ok(out)
    }

    /// The matching entries, oldest first, the newest `limit` of them, each handed to
    /// `each` (its seq and JSON) as it is read: what is held at a time is the matches'
    /// seqs and a few blocks. `each` returning `false` ends the query. Blocks are read
    /// newest first; the filtering of each run of blocks is spread over the cores.
    pub fn query_each(&self, q: &Query<'_>, each: &mut dyn FnMut(i64, &[u8]) -> bool) -> Result<(), Error> {
        let err = db_err(&self.path);
        let full = q.filter.needs_full();
        let everything = q.filter.is_everything();
        let since = q.since.unwrap_or(i64::MIN);
        let sql = match (everything, full) {
            (true, _) => "SELECT first, n, min_ts, ts, x'' FROM blocks WHERE first < ?1 AND max_ts >= ?2 ORDER BY first DESC LIMIT 1",
            (false, false) => "SELECT first, n, min_ts, ts, slim FROM blocks WHERE first < ?1 AND max_ts >= ?2 ORDER BY first DESC LIMIT 1",
            (false, true) => "SELECT b.first, b.n, b.min_ts, b.ts, f.full FROM blocks b JOIN fulls f ON f.first = b.first WHERE b.first < ?1 AND b.max_ts >= ?2 ORDER BY b.first DESC LIMIT 1",
        };
        let mut st = self.conn.prepare_cached(sql).map_err(&err)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let mut cursor = i64::MAX;
        // newest first
        let mut picked: Vec<i64> = Vec::new();
        'scan: while picked.len() < q.limit {
            q.stopped()?;
            // a run of blocks, newest first, of about CHUNK entries
            let mut run: Vec<Stored> = Vec::new();
            let mut entries = 0;
            let want = if everything { CHUNK.min((q.limit - picked.len()) as i64) } else { CHUNK };
            while entries < want {
                let row = st
                    .query_row(params![cursor, since], |r| Ok(Stored { first: r.get(0)?, n: r.get(1)?, min_ts: r.get(2)?, ts: r.get(3)?, data: r.get(4)? }))
                    .optional()
                    .map_err(&err)?;
                let Some(row) = row else { break };
                cursor = row.first;
                entries += row.n;
                run.push(row);
            }
            if run.is_empty() {
                break;
            }
            for found in scan_run(&run, q, since, full, threads) {
                let found = found.map_err(|m| Error::Store(format!("{}: {m}", self.path.display())))?;
                for hit in found.into_iter().rev() {
                    picked.push(hit);
                    if picked.len() >= q.limit {
                        break 'scan;
                    }
                }
            }
        }
        picked.reverse();
        self.bodies(&picked, q, each)
    }

    /// Hands the full JSON of these entries (in this order) to `each`, read from their
    /// blocks a few at a time; blocks are unpacked over the cores.
    fn bodies(&self, picked: &[i64], q: &Query<'_>, each: &mut dyn FnMut(i64, &[u8]) -> bool) -> Result<(), Error> {
        let err = db_err(&self.path);
        let mut st = self.conn.prepare_cached("SELECT b.first, b.n, f.full FROM blocks b JOIN fulls f ON f.first = b.first WHERE b.first <= ?1 ORDER BY b.first DESC LIMIT 1").map_err(&err)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        // blocks to unpack: (first, packed, [(place, seq)])
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut last: Option<(i64, i64)> = None;
        let mut flush = |wanted: &mut Vec<Wanted>| -> Result<bool, Error> {
            q.stopped()?;
            let mut done = unpack_blocks(wanted, threads).map_err(|m| Error::Store(format!("{}: {m}", self.path.display())))?;
            wanted.clear();
            done.sort_unstable_by_key(|d| d.0);
            Ok(done.into_iter().all(|(_, seq, json)| each(seq, json.as_bytes())))
        };
        for (place, &seq) in picked.iter().enumerate() {
            if !last.is_some_and(|(first, n)| seq >= first && seq < first + n) {
                // deleted by retention meanwhile: left out
                let Some((first, n, packed)) = st.query_row([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))).optional().map_err(&err)? else { continue };
                last = Some((first, n));
                if wanted.len() >= 4 * threads && !flush(&mut wanted)? {
                    return Ok(());
                }
                wanted.push((first, packed, Vec::new()));
            }
            if let Some(w) = wanted.last_mut() {
                w.2.push((place, seq));
            }
        }
        flush(&mut wanted)?;
        Ok(())
    }
}

/// Unpacks blocks (over `threads`) and takes the entries asked of each: (place, seq, JSON).
fn unpack_blocks(wanted: &[Wanted], threads: usize) -> Result<Vec<(usize, i64, String)>, String> {
    let one = |(first, packed, want): &Wanted| -> Result<Vec<(usize, i64, String)>, String> {
        let text = crate::record::decompress(packed).map_err(|e| format!("block {first}: {e}"))?;
        let lines: Vec<&[u8]> = split_lines(&text).skip(1).filter(|l| !l.is_empty()).collect();
        let mut got = Vec::with_capacity(want.len());
        for (place, seq) in want {
            if let Some(l) = usize::try_from(seq - first).ok().and_then(|i| lines.get(i)) {
                got.push((*place, *seq, String::from_utf8(l.to_vec()).map_err(|_| format!("block {first}: not UTF-8"))?));
            }
        }
        Ok(got)
    };
    if threads <= 1 || wanted.len() < 2 {
        return wanted.iter().map(one).collect::<Result<Vec<_>, _>>().map(|v| v.into_iter().flatten().collect());
    }
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads.min(wanted.len())).map(|t| s.spawn(move || wanted.iter().skip(t).step_by(threads).map(one).collect::<Vec<_>>())).collect();
        let mut all = Vec::new();
        for p in parts {
            for r in p.join().map_err(|_| "a query thread failed".to_string())? {
                all.extend(r?);
            }
        }
        Ok(all)
    })
}

/// A block's matching entries' seqs.
type Hits = Vec<i64>;

/// A block to unpack: its first seq, its packed bytes, and the entries wanted of it
/// (their place in the answer, and seq).
type Wanted = (i64, Vec<u8>, Vec<(usize, i64)>);

/// The lines of `t` (found by memchr), the last one whether or not a newline ends it.
fn split_lines(t: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let rest = t.get(start..)?;
        let n = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        start += n + 1;
        Some(&rest[..n])
    })
}

/// Each block's matching entries' seqs, oldest first, for a run of blocks in the run's
/// order.
fn scan_run(run: &[Stored], q: &Query<'_>, since: i64, full: bool, threads: usize) -> Vec<Result<Hits, String>> {
    let one = |b: &Stored| -> Result<Hits, String> {
        let ts = |i: usize| b.ts.get(i * 8..i * 8 + 8).map_or(i64::MIN, |t| i64::from_le_bytes(t.try_into().unwrap_or_default()));
        let in_time = |i: usize| b.min_ts >= since || ts(i) >= since;
        if q.filter.is_everything() {
            return Ok((0..b.n as usize).filter(|i| in_time(*i)).map(|i| b.first + i as i64).collect());
        }
        let text = crate::record::decompress(&b.data).map_err(|e| format!("block {}: {e}", b.first))?;
        // lines by memchr; a full block's first line is the batch header
        let mut lines = split_lines(&text);
        if full {
            lines.next();
        }
        let mut out = Vec::new();
        for (i, l) in lines.filter(|l| !l.is_empty()).enumerate() {
            if in_time(i) && q.filter.matches_json(l, q.now) {
                out.push(b.first + i as i64);
            }
        }
        Ok(out)
    };
    if threads <= 1 || run.len() < 2 || q.filter.is_everything() {
        return run.iter().map(one).collect();
    }
    // blocks dealt out in turn, so each thread gets old and new alike
    let mut out: Vec<Option<Result<Hits, String>>> = (0..run.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads.min(run.len())).map(|t| s.spawn(move || run.iter().enumerate().skip(t).step_by(threads).map(|(i, b)| (i, one(b))).collect::<Vec<_>>())).collect();
        for p in parts {
            for (i, r) in p.join().unwrap_or_default() {
                out[i] = Some(r);
            }
        }
    });
    out.into_iter().map(|r| r.unwrap_or_else(|| Err("a query thread failed".into()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode_batch, encode_batch};
    use serde_json::Value;

    fn line(i: usize, status: u16) -> String {
        format!(
            r#"{{"id":"{i}","timestamp":"2026-01-01T00:00:{:02}Z","protocol":"http","transport":"tcp","src":{{"ip":"10.0.0.1","port":1}},"dst":{{"ip":"10.0.0.2","port":80}},"request":{{"method":"GET","path":"/p{i}","headers":{{"x":"{}"}}}},"response":{{"status_code":{status}}}}}"#,
            i % 60,
            "y".repeat(200)
        )
    }

    fn block(batch: u64, ids: std::ops::Range<usize>) -> Block {
        let lines: Vec<String> = ids.map(|i| line(i, 200)).collect();
        decode_batch(encode_batch(batch, &lines).into()).unwrap()
    }

    fn ids(rows: &[(i64, String)]) -> Vec<String> {
        rows.iter().map(|(_, j)| serde_json::from_str::<Value>(j).unwrap()["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn batches_are_stored_once_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (b1, b2, other) = (block(1, 0..3), block(2, 3..5), block(1, 0..1));
        {
            let mut s = Store::open(dir.path(), Retention::default()).unwrap();
            let out = s.commit(&[Batch { worker: "w", block: &b1 }, Batch { worker: "w", block: &b1 }]).unwrap();
            assert_eq!(out, vec![Committed::Stored(1), Committed::Duplicate]);
        }
        let mut s = Store::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(s.last_batch("w"), Some(1));
        assert_eq!(s.commit(&[Batch { worker: "w", block: &b1 }]).unwrap(), vec![Committed::Duplicate]);
        assert_eq!(s.commit(&[Batch { worker: "w", block: &b2 }]).unwrap(), vec![Committed::Stored(4)]);
        assert_eq!(s.commit(&[Batch { worker: "other", block: &other }]).unwrap(), vec![Committed::Stored(6)]);
        // a number far beyond the worker's last is refused, and takes nothing over
        let far = block(u64::MAX, 9..10);
        assert_eq!(s.commit(&[Batch { worker: "w", block: &far }]).unwrap(), vec![Committed::TooFar { last: Some(2) }]);
        assert_eq!(s.commit(&[Batch { worker: "new", block: &far }]).unwrap(), vec![Committed::TooFar { last: None }]);
        assert_eq!(s.last_batch("w"), Some(2));
        let r = s.reader().unwrap();
        assert_eq!(r.count().unwrap(), 6);
        let all = Filter::compile("").unwrap();
        let q = |f: &Filter, limit| r.query(&Query { filter: f, since: None, limit, now: 0, stop: None }).unwrap();
        assert_eq!(ids(&q(&all, 100)), ["0", "1", "2", "3", "4", "0"]);
        assert_eq!(q(&all, 100).iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        // the newest two, oldest first
        assert_eq!(ids(&q(&all, 2)), ["4", "0"]);
        let f = Filter::compile(r#"path.endsWith("3") || path == "/p1""#).unwrap();
        assert!(!f.needs_full());
        assert_eq!(ids(&q(&f, 100)), ["1", "3"]);
        assert_eq!(ids(&q(&f, 1)), ["3"]);
        // headers are not in the slim form: such a filter reads the full entry
        let h = Filter::compile(r#"request.headers["x"].startsWith("yy") && path == "/p2""#).unwrap();
        assert!(h.needs_full());
        assert_eq!(ids(&q(&h, 100)), ["2"]);
        let since = r.query(&Query { filter: &all, since: Some(1_767_225_603_000_000_000), limit: 100, now: 0, stop: None }).unwrap();
        assert_eq!(ids(&since), ["3", "4"]);
        let since = r.query(&Query { filter: &f, since: Some(1_767_225_602_000_000_000), limit: 100, now: 0, stop: None }).unwrap();
        assert_eq!(ids(&since), ["3"]);
    }

    #[test]
    fn a_query_over_many_blocks_takes_the_newest_matches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), Retention::default()).unwrap();
        let blocks: Vec<Block> = (0..40).map(|b| block(b as u64 + 1, b * 1000..(b + 1) * 1000)).collect();
        for b in &blocks {
            s.commit(&[Batch { worker: "w", block: b }]).unwrap();
        }
        let r = s.reader().unwrap();
        // every 7th entry: 5,715 of 40,000, spread over runs of blocks and threads
        let f = Filter::compile("int(id) % 7 == 0").unwrap();
        let got = r.query(&Query { filter: &f, since: None, limit: 1_000_000, now: 0, stop: None }).unwrap();
        let want: Vec<String> = (0..40_000).filter(|i| i % 7 == 0).map(|i| i.to_string()).collect();
        assert_eq!(ids(&got), want);
        let got = r.query(&Query { filter: &f, since: None, limit: 10, now: 0, stop: None }).unwrap();
        assert_eq!(ids(&got), want[want.len() - 10..]);
        let all = r.query(&Query { filter: &Filter::compile("").unwrap(), since: None, limit: 1500, now: 0, stop: None }).unwrap();
        assert_eq!(all.first().map(|r| r.0), Some(38_501));
        assert_eq!(all.len(), 1500);
    }

    #[test]
    fn an_older_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("kshark.db")).unwrap();
        c.execute_batch("CREATE TABLE entries(seq INTEGER PRIMARY KEY, slim BLOB)").unwrap();
        drop(c);
        let e = Store::open(dir.path(), Retention::default()).err().unwrap().to_string();
        assert!(e.contains("another kshark version") && e.contains("--data"), "{e}");
    }

    #[test]
    fn retention_deletes_the_oldest_by_age_and_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let mut s = Store::open(dir.path(), Retention { max_age: Some(hour), max_bytes: None }).unwrap();
        s.commit(&[Batch { worker: "w", block: &block(1, 0..1000) }]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let between = now_ns();
        std::thread::sleep(Duration::from_millis(5));
        s.commit(&[Batch { worker: "w", block: &block(2, 1000..2000) }]).unwrap();
        assert_eq!(s.enforce_retention(now_ns()).unwrap(), 0);
        // an hour after `between`: the first batch is too old, the second is not
        assert_eq!(s.enforce_retention(between + hour.as_nanos() as i64).unwrap(), 1000);
        let r = s.reader().unwrap();
        assert_eq!(r.count().unwrap(), 1000);
        assert_eq!(ids(&r.query(&Query { filter: &Filter::compile("").unwrap(), since: None, limit: 1, now: 0, stop: None }).unwrap()), ["1999"]);
        // everything gone, and the store reopened: seqs go on from where they were
        assert_eq!(s.enforce_retention(now_ns() + 2 * hour.as_nanos() as i64).unwrap(), 1000);
        drop((r, s));
        let mut s = Store::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(s.commit(&[Batch { worker: "w", block: &block(3, 0..1) }]).unwrap(), [Committed::Stored(2001)]);

        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), Retention { max_age: None, max_bytes: Some(100_000) }).unwrap();
        for b in 0..20 {
            s.commit(&[Batch { worker: "w", block: &block(b + 1, b as usize * 200..(b as usize + 1) * 200) }]).unwrap();
        }
        assert!(s.used_bytes().unwrap() > 100_000, "{}", s.used_bytes().unwrap());
        let gone = s.enforce_retention(now_ns()).unwrap();
        assert!(gone > 0 && gone < 4000, "{gone}");
        assert!(s.used_bytes().unwrap() <= 100_000, "{}", s.used_bytes().unwrap());
        // and the files shrank with it
        assert!(s.disk_bytes() <= 100_000, "the files hold {} bytes", s.disk_bytes());
        // what is left is the newest, whole batches
        let left = s.reader().unwrap().query(&Query { filter: &Filter::compile("").unwrap(), since: None, limit: 5000, now: 0, stop: None }).unwrap();
        assert_eq!(left.len() as u64, 4000 - gone);
        assert_eq!(gone % 200, 0);
        assert_eq!(ids(&left).last().map(String::as_str), Some("3999"));
    }

    #[test]
    fn retention_parses_sizes_and_durations() {
        assert_eq!(Retention::parse("500MB").unwrap().max_bytes, Some(500_000_000));
        assert_eq!(Retention::parse("2GiB,24h").unwrap(), Retention { max_bytes: Some(2 << 30), max_age: Some(Duration::from_secs(86400)) });
        assert_eq!(Retention::parse("7d").unwrap().max_age, Some(Duration::from_secs(7 * 86400)));
        assert!(Retention::parse("lots").is_err());
        // nothing, or what cannot be counted, is refused rather than read as no limit
        for bad in ["", " ", "2GiB,", "213503982334602d", "0B", "99999999999999999999TiB", "0s", "-5m"] {
            assert!(Retention::parse(bad).is_err(), "{bad:?} was taken: {:?}", Retention::parse(bad));
        }
        assert_eq!(Retention::parse("106751d").unwrap().max_age, Some(Duration::from_secs(106751 * 86400)));
    }
}
