//! The store: one SQLite database (WAL mode) in the hub's data directory.
//!
//! `entries` holds each entry's slim form (what filters read) keyed by `seq`, the order
//! the hub committed them in, with the entry's time (`ts`, indexed) and the time it was
//! stored (`at`, for age retention); `bodies` holds the full JSON, LZ4-compressed, apart,
//! so that a scan reads only slim rows. `workers` holds the last batch committed from each
//! worker, in the same transaction as the batch's entries: after a crash a batch is either
//! wholly stored and known, or neither, which is what makes resending safe.

use crate::filter::Filter;
use crate::record::Record;
use crate::Error;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
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
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(b) = parse_size(part) {
                r.max_bytes = Some(b);
            } else if let Some(d) = part.strip_suffix('d').and_then(|n| n.parse::<u64>().ok()) {
                r.max_age = Some(Duration::from_secs(d * 86400));
            } else if let Some(ns) = crate::filter::parse_duration(part).filter(|n| *n > 0) {
                r.max_age = Some(Duration::from_nanos(ns.min(u64::MAX as i128) as u64));
            } else {
                return Err(format!("{part:?} is neither a size (500MB, 2GiB) nor a duration (24h, 7d)"));
            }
        }
        Ok(r)
    }
}

fn parse_size(s: &str) -> Option<u64> {
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
    Some((n * mult) as u64)
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// A batch to commit: from which worker, its number, its entries.
pub struct Batch<'a> {
    pub worker: &'a str,
    pub batch: u64,
    pub records: &'a [Record],
}

/// What happened to a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    Stored,
    /// Already stored before (a resend after a lost acknowledgement): nothing done.
    Duplicate,
}

/// The writer's handle (one per hub).
pub struct Store {
    path: PathBuf,
    conn: Connection,
    workers: HashMap<String, u64>,
    retention: Retention,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, at INTEGER NOT NULL, slim BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
CREATE TABLE IF NOT EXISTS bodies(seq INTEGER PRIMARY KEY, full BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS workers(worker TEXT PRIMARY KEY, batch INTEGER NOT NULL, at INTEGER NOT NULL);
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
        conn.execute_batch(SCHEMA).map_err(db_err(&path))?;
        let mut workers = HashMap::new();
        {
            let mut st = conn.prepare("SELECT worker, batch FROM workers").map_err(db_err(&path))?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(db_err(&path))?;
            for row in rows {
                let (w, b) = row.map_err(db_err(&path))?;
                workers.insert(w, b as u64);
            }
        }
        Ok(Store { path, conn, workers, retention })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection for queries (any number may run beside the writer).
    pub fn reader(&self) -> Result<Reader, Error> {
        Reader::open(&self.path)
    }

    /// Commits batches in one transaction; a batch already stored is skipped. Returns what
    /// happened to each, and the `seq` of the first entry stored (the rest follow it).
    pub fn commit(&mut self, batches: &[Batch<'_>]) -> Result<(Vec<Committed>, i64), Error> {
        let path = self.path.clone();
        let err = db_err(&path);
        let at = now_ns();
        let tx = self.conn.transaction().map_err(&err)?;
        let mut out = Vec::with_capacity(batches.len());
        let mut first = None;
        {
            let mut ins = tx.prepare_cached("INSERT INTO entries(ts, at, slim) VALUES (?1, ?2, ?3)").map_err(&err)?;
            let mut body = tx.prepare_cached("INSERT INTO bodies(seq, full) VALUES (?1, ?2)").map_err(&err)?;
            let mut mark = tx.prepare_cached("INSERT INTO workers(worker, batch, at) VALUES (?1, ?2, ?3) ON CONFLICT(worker) DO UPDATE SET batch = excluded.batch, at = excluded.at").map_err(&err)?;
            let mut seen: HashMap<&str, u64> = HashMap::new();
            for b in batches {
                let last = seen.get(b.worker).copied().or_else(|| self.workers.get(b.worker).copied());
                if last.is_some_and(|l| b.batch <= l) {
                    out.push(Committed::Duplicate);
                    continue;
                }
                for r in b.records {
                    ins.execute(params![r.ts, at, r.slim_json]).map_err(&err)?;
                    let seq = tx.last_insert_rowid();
                    first.get_or_insert(seq);
                    body.execute(params![seq, r.packed]).map_err(&err)?;
                }
                mark.execute(params![b.worker, b.batch as i64, at]).map_err(&err)?;
                seen.insert(b.worker, b.batch);
                out.push(Committed::Stored);
            }
            for (w, n) in seen {
                self.workers.insert(w.to_string(), n);
            }
        }
        tx.commit().map_err(&err)?;
        Ok((out, first.unwrap_or(0)))
    }

    /// The last batch stored from `worker`.
    pub fn last_batch(&self, worker: &str) -> Option<u64> {
        self.workers.get(worker).copied()
    }

    /// Bytes of database pages in use.
    pub fn used_bytes(&self) -> Result<u64, Error> {
        let q = |p: &str| self.conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0)).map_err(db_err(&self.path));
        Ok(((q("page_count")? - q("freelist_count")?) * q("page_size")?).max(0) as u64)
    }

    /// The oldest and newest `seq` stored.
    fn seq_range(&self) -> Result<Option<(i64, i64)>, Error> {
        self.conn
            .query_row("SELECT min(seq), max(seq) FROM entries", [], |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)))
            .map_err(db_err(&self.path))
    }

    /// Deletes what retention no longer allows, oldest first, in steps that keep ingest
    /// going; returns how many entries went.
    pub fn enforce_retention(&mut self, now: i64) -> Result<u64, Error> {
        let mut deleted = 0;
        if let Some(age) = self.retention.max_age {
            let cutoff = now.saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64);
            if let Some(upto) = self.last_stored_before(cutoff)? {
                deleted += self.delete_through(upto)?;
            }
            self.conn.execute("DELETE FROM workers WHERE at < ?1", [cutoff.min(now - 7 * 86_400_000_000_000)]).map_err(db_err(&self.path))?;
        }
        if let Some(max) = self.retention.max_bytes {
            // down to 90% of the limit, so that the next check is not at once
            for _ in 0..64 {
                let used = self.used_bytes()?;
                let Some((lo, hi)) = self.seq_range()? else { break };
                if used <= max {
                    break;
                }
                let count = (hi - lo + 1) as f64;
                let excess = (used - max) as f64 + max as f64 * 0.1;
                let n = ((count * excess / used as f64).ceil() as i64).clamp(1, 50_000);
                deleted += self.delete_through(lo + n - 1)?;
            }
        }
        Ok(deleted)
    }

    /// The newest `seq` stored before `cutoff` (stored times rise with `seq`).
    fn last_stored_before(&self, cutoff: i64) -> Result<Option<i64>, Error> {
        let Some((mut lo, mut hi)) = self.seq_range()? else { return Ok(None) };
        let at = |seq: i64| -> Result<Option<(i64, i64)>, Error> {
            self.conn
                .query_row("SELECT seq, at FROM entries WHERE seq >= ?1 ORDER BY seq LIMIT 1", [seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err(&self.path))
        };
        if at(lo)?.is_none_or(|(_, a)| a >= cutoff) {
            return Ok(None);
        }
        // invariant: the entry at or after lo is older than cutoff
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            match at(mid)? {
                Some((s, a)) if a < cutoff => lo = s.max(mid),
                _ => hi = mid - 1,
            }
        }
        Ok(Some(lo))
    }

    fn delete_through(&mut self, upto: i64) -> Result<u64, Error> {
        let mut total = 0;
        loop {
            let tx = self.conn.transaction().map_err(db_err(&self.path))?;
            let first: Option<i64> = tx.query_row("SELECT min(seq) FROM entries", [], |r| r.get(0)).map_err(db_err(&self.path))?;
            let Some(first) = first.filter(|f| *f <= upto) else { break };
            let end = upto.min(first + 49_999);
            let n = tx.execute("DELETE FROM entries WHERE seq <= ?1", [end]).map_err(db_err(&self.path))?;
            tx.execute("DELETE FROM bodies WHERE seq <= ?1", [end]).map_err(db_err(&self.path))?;
            tx.commit().map_err(db_err(&self.path))?;
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
}

/// A read connection.
pub struct Reader {
    path: PathBuf,
    conn: Connection,
}

/// Rows read at a time; each read is a short transaction.
const CHUNK: usize = 8192;

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, Error> {
        Ok(Reader { path: path.to_path_buf(), conn: open_conn(path)? })
    }

    /// Entries stored.
    pub fn count(&self) -> Result<u64, Error> {
        self.conn.query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err(&self.path))
    }

    /// The matching entries' JSON, oldest first (the order they were stored in), newest
    /// `limit` of them. Rows are read newest first in chunks; each chunk's filtering is
    /// spread over the cores.
    pub fn query(&self, q: &Query<'_>) -> Result<Vec<(i64, String)>, Error> {
        let err = db_err(&self.path);
        let full = q.filter.needs_full();
        let sql = if full {
            "SELECT e.seq, b.full FROM entries e JOIN bodies b ON b.seq = e.seq WHERE e.seq < ?1 AND e.ts >= ?2 ORDER BY e.seq DESC LIMIT ?3"
        } else {
            "SELECT seq, slim FROM entries WHERE seq < ?1 AND ts >= ?2 ORDER BY seq DESC LIMIT ?3"
        };
        let mut st = self.conn.prepare_cached(sql).map_err(&err)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let mut cursor = i64::MAX;
        let mut picked: Vec<i64> = Vec::new();
        let everything = q.filter.is_everything();
        while picked.len() < q.limit {
            let want = if everything { (q.limit - picked.len()).min(CHUNK) } else { CHUNK };
            let rows: Vec<(i64, Vec<u8>)> = st
                .query_map(params![cursor, q.since.unwrap_or(i64::MIN), want as i64], |r| Ok((r.get(0)?, if everything { Vec::new() } else { r.get(1)? })))
                .map_err(&err)?
                .collect::<Result<_, _>>()
                .map_err(&err)?;
            let Some(last) = rows.last() else { break };
            cursor = last.0;
            let n = rows.len();
            let keep = if everything { vec![true; n] } else { filter_rows(&rows, q, full, threads) };
            picked.extend(rows.iter().zip(keep).filter(|(_, k)| *k).map(|(r, _)| r.0).take(q.limit - picked.len()));
            if n < want {
                break;
            }
        }
        picked.reverse();
        self.bodies(&picked)
    }

    /// The full JSON of these entries, in this order, with their seqs.
    pub fn bodies(&self, seqs: &[i64]) -> Result<Vec<(i64, String)>, Error> {
        let err = db_err(&self.path);
        let mut st = self.conn.prepare_cached("SELECT full FROM bodies WHERE seq = ?1").map_err(&err)?;
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            let Some(packed) = st.query_row([s], |r| r.get::<_, Vec<u8>>(0)).optional().map_err(&err)? else { continue };
            out.push((*s, unpack(&packed).map_err(|m| Error::Store(format!("{}: entry {s}: {m}", self.path.display())))?));
        }
        Ok(out)
    }
}

pub fn unpack(packed: &[u8]) -> Result<String, String> {
    let raw = lz4_flex::decompress_size_prepended(packed).map_err(|e| e.to_string())?;
    String::from_utf8(raw).map_err(|e| e.to_string())
}

fn filter_rows(rows: &[(i64, Vec<u8>)], q: &Query<'_>, full: bool, threads: usize) -> Vec<bool> {
    let one = |r: &(i64, Vec<u8>)| -> bool {
        let parsed: Option<Value> = if full { unpack(&r.1).ok().and_then(|s| serde_json::from_str(&s).ok()) } else { serde_json::from_slice(&r.1).ok() };
        parsed.is_some_and(|v| q.filter.matches_at(&v, q.now))
    };
    if threads <= 1 || rows.len() < 512 {
        return rows.iter().map(one).collect();
    }
    let per = rows.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows.chunks(per).map(|c| s.spawn(move || c.iter().map(one).collect::<Vec<bool>>())).collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize, status: u16) -> Record {
        let line = format!(
            r#"{{"id":"{i}","timestamp":"2026-01-01T00:00:{:02}Z","protocol":"http","transport":"tcp","src":{{"ip":"10.0.0.1","port":1}},"dst":{{"ip":"10.0.0.2","port":80}},"request":{{"method":"GET","path":"/p{i}","headers":{{"x":"{}"}}}},"response":{{"status_code":{status}}}}}"#,
            i % 60,
            "y".repeat(200)
        );
        Record::from_json(&line, &"test").unwrap()
    }

    fn ids(rows: &[(i64, String)]) -> Vec<String> {
        rows.iter().map(|(_, j)| serde_json::from_str::<Value>(j).unwrap()["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn batches_are_stored_once_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Record> = (0..5).map(|i| rec(i, 200)).collect();
        {
            let mut s = Store::open(dir.path(), Retention::default()).unwrap();
            let (out, first) = s.commit(&[Batch { worker: "w", batch: 1, records: &recs[..3] }, Batch { worker: "w", batch: 1, records: &recs[..3] }]).unwrap();
            assert_eq!(out, vec![Committed::Stored, Committed::Duplicate]);
            assert_eq!(first, 1);
        }
        let mut s = Store::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(s.last_batch("w"), Some(1));
        assert_eq!(s.commit(&[Batch { worker: "w", batch: 1, records: &recs[..3] }]).unwrap().0, vec![Committed::Duplicate]);
        assert_eq!(s.commit(&[Batch { worker: "w", batch: 2, records: &recs[3..] }]).unwrap(), (vec![Committed::Stored], 4));
        assert_eq!(s.commit(&[Batch { worker: "other", batch: 1, records: &recs[..1] }]).unwrap().0, vec![Committed::Stored]);
        let r = s.reader().unwrap();
        assert_eq!(r.count().unwrap(), 6);
        let all = Filter::compile("").unwrap();
        let q = |f: &Filter, limit| r.query(&Query { filter: f, since: None, limit, now: 0 }).unwrap();
        assert_eq!(ids(&q(&all, 100)), ["0", "1", "2", "3", "4", "0"]);
        // the newest two, oldest first
        assert_eq!(ids(&q(&all, 2)), ["4", "0"]);
        let f = Filter::compile(r#"path.endsWith("3") || path == "/p1""#).unwrap();
        assert!(!f.needs_full());
        assert_eq!(ids(&q(&f, 100)), ["1", "3"]);
        // headers are not in the slim form: such a filter reads the full entry
        let h = Filter::compile(r#"request.headers["x"].startsWith("yy") && path == "/p2""#).unwrap();
        assert!(h.needs_full());
        assert_eq!(ids(&q(&h, 100)), ["2"]);
        let since = r.query(&Query { filter: &all, since: Some(1_767_225_603_000_000_000), limit: 100, now: 0 }).unwrap();
        assert_eq!(ids(&since), ["3", "4"]);
    }

    #[test]
    fn retention_deletes_the_oldest_by_age_and_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let mut s = Store::open(dir.path(), Retention { max_age: Some(hour), max_bytes: None }).unwrap();
        let recs: Vec<Record> = (0..2000).map(|i| rec(i, 200)).collect();
        s.commit(&[Batch { worker: "w", batch: 1, records: &recs[..1000] }]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let between = now_ns();
        std::thread::sleep(Duration::from_millis(5));
        s.commit(&[Batch { worker: "w", batch: 2, records: &recs[1000..] }]).unwrap();
        assert_eq!(s.enforce_retention(now_ns()).unwrap(), 0);
        // an hour after `between`: the first batch is too old, the second is not
        assert_eq!(s.enforce_retention(between + hour.as_nanos() as i64).unwrap(), 1000);
        let r = s.reader().unwrap();
        assert_eq!(r.count().unwrap(), 1000);
        assert_eq!(ids(&r.query(&Query { filter: &Filter::compile("").unwrap(), since: None, limit: 1, now: 0 }).unwrap()), ["1999"]);

        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), Retention { max_age: None, max_bytes: Some(300_000) }).unwrap();
        for b in 0..10 {
            s.commit(&[Batch { worker: "w", batch: b + 1, records: &recs[b as usize * 200..(b as usize + 1) * 200] }]).unwrap();
        }
        assert!(s.used_bytes().unwrap() > 300_000);
        let gone = s.enforce_retention(now_ns()).unwrap();
        assert!(gone > 0 && gone < 2000, "{gone}");
        assert!(s.used_bytes().unwrap() <= 300_000, "{}", s.used_bytes().unwrap());
        // what is left is the newest
        let left = s.reader().unwrap().query(&Query { filter: &Filter::compile("").unwrap(), since: None, limit: 5000, now: 0 }).unwrap();
        assert_eq!(left.len() as u64, 2000 - gone);
        assert_eq!(ids(&left).last().map(String::as_str), Some("1999"));
    }

    #[test]
    fn retention_parses_sizes_and_durations() {
        assert_eq!(Retention::parse("500MB").unwrap().max_bytes, Some(500_000_000));
        assert_eq!(Retention::parse("2GiB,24h").unwrap(), Retention { max_bytes: Some(2 << 30), max_age: Some(Duration::from_secs(86400)) });
        assert_eq!(Retention::parse("7d").unwrap().max_age, Some(Duration::from_secs(7 * 86400)));
        assert!(Retention::parse("lots").is_err());
    }
}
