//! The snapshot of one table: a lock-free consistent read, streamed in chunks.
//!
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` gives an MVCC view without locks; MariaDB's
//! `binlog_snapshot_file/position` status variables name the exact binlog position of that
//! view. MySQL has none, so there the view is bracketed by watermarks ([`ViewPosition`],
//! `open_view`). The applier keeps binlog events of the table that come after the position
//! (after the low watermark) and applies them once the last chunk is in (see `super` for the
//! merge).
//!
//! Tables with a primary key are read in key-ordered chunks, one query per chunk inside the
//! snapshot transaction (`WHERE key > last ORDER BY key LIMIT n`: InnoDB's clustered index,
//! so no sort, and MySQL's own collation decides the order and the comparison). A chunk
//! read holds one of `SNAPSHOT_PARALLELISM` read permits, which are granted in turn (tokio's
//! semaphore is fair), so the open snapshots of several tables interleave chunk by chunk
//! and a small table is not stuck behind a big one. Each chunk carries the key of its last
//! row, which the applier stores with the chunk; a snapshot cut short by a crash or a
//! reconnect resumes after that key instead of starting over. Tables without a usable key
//! are read by one unordered query holding a permit throughout.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use tokio::sync::{mpsc, Semaphore};

use super::position::BinlogPosition;
use super::schema::{quote_upstream, upstream, TableSpec};
use super::types::{ColumnBuilder, Kind};
use super::{Message, Unit};
use crate::error::{Error, Result};

/// The upstream key columns a snapshot can be ordered and resumed by: the primary key when
/// MySQL orders and compares it the way a literal does (not ENUM/SET, whose order is their
/// index, nor floats, whose text may not round-trip). `None`: read unordered, never resumed.
pub fn resume_key(spec: &TableSpec) -> Option<Vec<usize>> {
    let key: Vec<usize> = spec.key.iter().copied().filter(|&i| spec.is_upstream(i)).collect();
    let plain = key.iter().all(|&i| {
        !matches!(
            spec.columns[i].kind,
            Kind::Enum { .. } | Kind::Set { .. } | Kind::Float32 | Kind::Float64 | Kind::Bit
        )
    });
    (!key.is_empty() && plain).then_some(key)
}

/// A key value as a literal MySQL compares like the column: numbers bare, binary strings as
/// hex, everything else as a utf8mb4 string from hex (no escaping to get wrong; it takes the
/// column's collation).
fn literal(kind: &Kind, raw: &[u8]) -> Result<String> {
    let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
    Ok(match kind {
        Kind::Int16 | Kind::Int32 | Kind::MediumInt | Kind::Int64 | Kind::Decimal { .. } | Kind::DecimalText => {
            let text = std::str::from_utf8(raw).unwrap_or("");
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.') {
                return Err(Error::Internal(format!("unexpected numeric key value {text:?}")));
            }
            text.to_string()
        }
        Kind::Binary | Kind::FixedBinary { .. } => format!("X'{hex}'"),
        _ => format!("_utf8mb4 X'{hex}'"),
    })
}

/// `(k1, k2) > (v1, v2)` spelled so any MySQL uses the key's index: `k1 > v1 OR (k1 = v1 AND
/// k2 > v2)`.
fn after_condition(spec: &TableSpec, key: &[usize], after: &[Vec<u8>]) -> Result<String> {
    let name = |i: usize| super::schema::backticked(&spec.columns[i].name);
    let mut alternatives = Vec::new();
    for (pos, &col) in key.iter().enumerate() {
        let mut terms = Vec::new();
        for (&c, v) in key[..pos].iter().zip(after) {
            terms.push(format!("{} = {}", name(c), literal(&spec.columns[c].kind, v)?));
        }
        terms.push(format!("{} > {}", name(col), literal(&spec.columns[col].kind, &after[pos])?));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    Ok(alternatives.join(" OR "))
}

/// What one unit's snapshot reads: unit `idx` of the source, into batches of `schema` of up
/// to `chunk_size` rows, after key `after` when it resumes.
#[derive(Clone)]
pub struct SnapshotTask {
    pub opts: mysql_async::Opts,
    pub idx: usize,
    pub unit: Unit,
    pub schema: SchemaRef,
    pub chunk_size: usize,
    pub after: Option<Vec<Vec<u8>>>,
    pub view_position: ViewPosition,
    /// Connections that may read this one table at once (`SNAPSHOT_PARALLELISM`): a big
    /// table with an integer leading key is read as key ranges by that many.
    pub parallelism: usize,
}

/// How a snapshot learns where its consistent view lies in the binlog (`SNAPSHOT_POSITION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ViewPosition {
    /// The exact position where the server reports it (MariaDB, Percona Server), watermarks
    /// otherwise (MySQL).
    #[default]
    Auto,
    /// Only the exact position; a server without `binlog_snapshot_*` status is refused.
    Exact,
    /// Always watermarks, also where the exact position is known.
    Watermark,
}

/// Where an open snapshot transaction's view lies: exactly at `position`, or — with
/// `replay_from` — somewhere after `replay_from` and at or before `position`.
struct ViewAt {
    position: BinlogPosition,
    replay_from: Option<BinlogPosition>,
}

/// Times a table without a primary key retries its watermarks before the snapshot fails (and
/// the source retries it with backoff).
const MULTISET_ATTEMPTS: usize = 100;

/// Opens the snapshot transaction of `unit` on `conn` and finds its binlog position.
///
/// MariaDB names it exactly (`binlog_snapshot_file/position`). MySQL has no such status, so
/// the view is bracketed by watermarks: the binlog end before `START TRANSACTION WITH
/// CONSISTENT SNAPSHOT` (low) and after it (high). A keyed table is then exact anyway: the
/// applier replays every binlog change after low onto the snapshot rows, after them, and
/// finishes once the binlog is past high. Each change carries the whole row image and the
/// table applies it as an upsert by key, so a change the view already holds is applied
/// again harmlessly and every key ends as its last change left it (see `super`). A multiset
/// cannot tell a change it holds from one it lacks, so its view must not have moved between
/// the watermarks: when the binlog between them touches the table (`SHOW BINLOG EVENTS`), the
/// transaction is rolled back and opened again.
async fn open_view(conn: &mut mysql_async::Conn, mode: ViewPosition, unit: &Unit) -> Result<ViewAt> {
    let keyed = !unit.spec.key.is_empty();
    for _ in 0..MULTISET_ATTEMPTS {
        let low = match mode {
            ViewPosition::Exact => None,
            _ => Some(super::current_position(conn).await?),
        };
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(upstream)?;
        if mode != ViewPosition::Watermark {
            let status: Vec<(String, String)> =
                conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await.map_err(upstream)?;
            let get = |n: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
            if let (Some(file), Some(pos)) = (get("Binlog_snapshot_file"), get("Binlog_snapshot_position")) {
                let position = BinlogPosition { file, pos: pos.parse().unwrap_or(0) };
                return Ok(ViewAt { position, replay_from: None });
            }
        }
        let Some(low) = low else {
            return Err(Error::FeatureNotSupported(
                "SNAPSHOT_POSITION = 'exact' needs the binlog_snapshot_file/position status of MariaDB or \
                 Percona Server; use SNAPSHOT_POSITION = 'auto' (watermarks on MySQL)"
                    .into(),
            ));
        };
        let high = super::current_position(conn).await?;
        if keyed {
            return Ok(ViewAt { position: high, replay_from: Some(low) });
        }
        if low == high || !touched_between(conn, &low, &high, &unit.spec.database, &unit.upstream_table).await? {
            return Ok(ViewAt { position: high, replay_from: None });
        }
        tracing::debug!(
            table = %quote_upstream(&unit.spec.database, &unit.upstream_table), %low, %high,
            "a table without a key changed between its snapshot's watermarks: opening the snapshot again"
        );
        conn.query_drop("ROLLBACK").await.map_err(upstream)?;
        tokio::task::yield_now().await;
    }
    Err(Error::FeatureNotSupported(format!(
        "{} has no primary key and was written to each of {MULTISET_ATTEMPTS} times its snapshot began: without \
         an exact snapshot position (MySQL) a table without a key needs a moment without writes to it; the \
         source retries, or give the table a primary key",
        quote_upstream(&unit.spec.database, &unit.upstream_table)
    )))
}

/// Whether the binlog between `low` and `high` holds changes to `db.table` (a table map of
/// it, or a statement naming it); a window across files counts as touched.
async fn touched_between(
    conn: &mut mysql_async::Conn,
    low: &BinlogPosition,
    high: &BinlogPosition,
    db: &str,
    table: &str,
) -> Result<bool> {
    if low.file != high.file {
        return Ok(true);
    }
    let sql = format!(
        "SHOW BINLOG EVENTS IN '{}' FROM {} LIMIT 10000",
        low.file.replace('\\', "\\\\").replace('\'', "''"),
        low.pos
    );
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.map_err(upstream)?;
    let mapped = format!("({db}.{table})");
    let named = table.to_ascii_lowercase();
    let mut reached_high = false;
    for row in &rows {
        let text = |i: usize| match row.as_ref(i) {
            Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let (kind, info) = (text(2), text(5));
        let end: u64 = row.get_opt(4).and_then(|v| v.ok()).unwrap_or(0);
        if end > high.pos {
            reached_high = true;
            break;
        }
        let touches = match kind.as_str() {
            "Table_map" => info.ends_with(&mapped),
            "Query" => info.to_ascii_lowercase().contains(&named),
            _ => false,
        };
        if touches {
            return Ok(true);
        }
        reached_high |= end == high.pos;
    }
    // Read the whole window, or assume the worst.
    Ok(!reached_high && rows.len() >= 10000)
}

/// Reads unit `idx` and sends `SnapshotStart`, `SnapshotRows`..., `SnapshotDone`; with
/// `after`, only the rows whose key comes after it (a resumed snapshot).
pub async fn snapshot_table(task: SnapshotTask, reads: Arc<Semaphore>, tx: mpsc::Sender<Message>) -> Result<()> {
    let mut conn = open_connection(&task.opts).await?;
    let ViewAt { position, replay_from } = open_view(&mut conn, task.view_position, &task.unit).await?;
    let spec = task.unit.spec.clone();
    let estimate: Option<u64> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&spec.database, &task.unit.upstream_table),
        )
        .await
        .map_err(upstream)?
        .flatten();
    let chunks_total = estimate.unwrap_or(0).div_ceil(task.chunk_size as u64).max(1);
    let plan = ReadPlan::new(&task);
    let ranges = match (&plan.key, &task.after) {
        (Some(_), None) if task.parallelism > 1 && estimate.unwrap_or(0) >= (2 * task.chunk_size) as u64 => {
            key_ranges(&mut conn, &plan, task.parallelism * 4).await?
        }
        _ => None,
    };
    let Some(ranges) = ranges else {
        let start = Message::SnapshotStart {
            table: task.idx,
            position,
            replay_from,
            chunks_total,
            rows_estimate: estimate,
            ranges: 0,
        };
        tx.send(start).await.map_err(closed)?;
        let (work, idx) = (Arc::new(RangeQueue::single(task.after.clone())), task.idx);
        read_ranges(conn, plan, work, reads, task, tx.clone()).await?;
        return tx.send(Message::SnapshotDone { table: idx }).await.map_err(closed);
    };
    // Key ranges over several connections, each with its own consistent view at its own
    // position. The table is then a mix of views between the earliest and the latest: the
    // applier keeps the binlog's changes after the earliest and applies them after the rows,
    // and finishes once the binlog is past the latest — the watermark merge (`open_view`),
    // exact for a keyed table because each change is a whole row image upserted by key.
    let mut conns = vec![(conn, ViewAt { position, replay_from })];
    for _ in 1..task.parallelism {
        let mut c = open_connection(&task.opts).await?;
        let view = open_view(&mut c, task.view_position, &task.unit).await?;
        conns.push((c, view));
    }
    let latest = conns.iter().map(|(_, v)| v.position.clone()).max().expect("one view");
    let earliest =
        conns.iter().map(|(_, v)| v.replay_from.clone().unwrap_or_else(|| v.position.clone())).min().expect("one view");
    let replay_from = (earliest != latest).then_some(earliest);
    tracing::debug!(
        table = %quote_upstream(&spec.database, &task.unit.upstream_table), ranges = ranges.len(),
        connections = conns.len(), "snapshot in key ranges"
    );
    let start = Message::SnapshotStart {
        table: task.idx,
        position: latest,
        replay_from,
        chunks_total,
        rows_estimate: estimate,
        ranges: ranges.len() as u64,
    };
    tx.send(start).await.map_err(closed)?;
    let work = Arc::new(RangeQueue::new(ranges));
    let task = Arc::new(task);
    let mut workers = tokio::task::JoinSet::new();
    for (c, _) in conns {
        let (plan, work, reads, task, tx) = (plan.clone(), work.clone(), reads.clone(), task.clone(), tx.clone());
        workers.spawn(async move { read_ranges(c, plan, work, reads, SnapshotTask::clone(&task), tx).await });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| Error::Internal(format!("snapshot reader: {e}")))??;
    }
    tx.send(Message::SnapshotDone { table: task.idx }).await.map_err(closed)
}

/// A connection set up as snapshots need it.
async fn open_connection(opts: &mysql_async::Opts) -> Result<mysql_async::Conn> {
    let mut conn = mysql_async::Conn::new(opts.clone()).await.map_err(upstream)?;
    // TIMESTAMP values in UTC, whatever the server's or the user's time zone.
    conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4").await.map_err(upstream)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(upstream)?;
    Ok(conn)
}

/// The queries of one unit's snapshot.
#[derive(Clone)]
struct ReadPlan {
    /// `SELECT <upstream columns> FROM <table>`.
    select: String,
    /// The upstream table, quoted.
    from: String,
    /// The leading key column is an integer (a table can be split into key ranges).
    integer_key: bool,
    /// The key the read is ordered and resumed by ([`resume_key`]).
    key: Option<Vec<usize>>,
    /// The key columns, quoted, in the selected columns' order.
    order: Vec<String>,
    /// Where each key column is among the selected columns.
    key_at: Vec<usize>,
}

impl ReadPlan {
    fn new(task: &SnapshotTask) -> ReadPlan {
        let spec = &task.unit.spec;
        let upstream_columns = spec.upstream_indexes();
        let columns: Vec<String> =
            upstream_columns.iter().map(|&i| super::schema::backticked(&spec.columns[i].name)).collect();
        let selected = |local: usize| upstream_columns.iter().position(|&i| i == local).unwrap_or(local);
        let key = resume_key(spec);
        let key_cols = key.clone().unwrap_or_default();
        let from = quote_upstream(&spec.database, &task.unit.upstream_table);
        let integer_key = key_cols.first().is_some_and(|&k| {
            matches!(spec.columns[k].kind, Kind::Int16 | Kind::Int32 | Kind::MediumInt | Kind::Int64)
        });
        ReadPlan {
            select: format!("SELECT {} FROM {from}", columns.join(", ")),
            from,
            integer_key,
            order: key_cols.iter().map(|&i| columns[selected(i)].clone()).collect(),
            key_at: key_cols.iter().map(|&i| selected(i)).collect(),
            key,
        }
    }
}

/// Splits the key's leading column into `n` ranges between its minimum and maximum in the
/// view open on `conn` (the first range open below, the last open above: rows outside the
/// view's bounds that later views hold are read too). `None` when the leading column is not an
/// integer or the table is too small to split.
async fn key_ranges(conn: &mut mysql_async::Conn, plan: &ReadPlan, n: usize) -> Result<Option<Vec<String>>> {
    let Some(first) = plan.order.first().filter(|_| plan.integer_key) else { return Ok(None) };
    let bounds: Option<(Option<i64>, Option<i64>)> =
        conn.query_first(format!("SELECT MIN({first}), MAX({first}) FROM {}", plan.from)).await.map_err(upstream)?;
    let Some((Some(lo), Some(hi))) = bounds else { return Ok(None) };
    let span = (hi as i128) - (lo as i128) + 1;
    let n = (n as i128).min(span);
    if n < 2 {
        return Ok(None);
    }
    let cut = |j: i128| (lo as i128 + span * j / n) as i64;
    let mut ranges = Vec::with_capacity(n as usize);
    for j in 0..n {
        let cond = match j {
            0 => format!("{first} < {}", cut(1)),
            j if j == n - 1 => format!("{first} >= {}", cut(j)),
            j => format!("{first} >= {} AND {first} < {}", cut(j), cut(j + 1)),
        };
        ranges.push(cond);
    }
    Ok(Some(ranges))
}

/// One range of a table's key: its condition (`None`: the whole table), and the key a resumed
/// read starts after.
type KeyRange = (Option<String>, Option<Vec<Vec<u8>>>);

/// The ranges of one table left to read, taken in order by the connections reading it.
struct RangeQueue {
    ranges: Vec<KeyRange>,
    next: std::sync::atomic::AtomicUsize,
}

impl RangeQueue {
    fn single(after: Option<Vec<Vec<u8>>>) -> RangeQueue {
        RangeQueue { ranges: vec![(None, after)], next: Default::default() }
    }

    fn new(conditions: Vec<String>) -> RangeQueue {
        RangeQueue { ranges: conditions.into_iter().map(|c| (Some(c), None)).collect(), next: Default::default() }
    }

    fn take(&self) -> Option<(usize, &KeyRange)> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ranges.get(i).map(|r| (i, r))
    }
}

/// Reads ranges from `work` on `conn` (its snapshot transaction open) until none is left,
/// then commits the transaction. Only the first range's chunks carry their last key to be
/// stored for a resume: it is the one that starts at the table's beginning, so a snapshot cut
/// short resumes after it (rows of later ranges already copied are read again, harmlessly).
async fn read_ranges(
    mut conn: mysql_async::Conn,
    plan: ReadPlan,
    work: Arc<RangeQueue>,
    reads: Arc<Semaphore>,
    task: SnapshotTask,
    tx: mpsc::Sender<Message>,
) -> Result<()> {
    let chunk_size = task.chunk_size;
    // Chunks are turned into Arrow batches by a task of their own, so the next chunk's query
    // runs upstream (and its rows are parsed here) while the previous one is converted.
    let (rows_tx, rows_rx) = mpsc::channel(1);
    let chunker = Chunker { unit: task.unit.clone(), schema: task.schema.clone(), idx: task.idx, tx };
    let converter = tokio::spawn(chunker.run(rows_rx));
    let spec = &task.unit.spec;
    let read = async {
        while let Some((range_index, (range, resume_after))) = work.take() {
            match &plan.key {
                // Key-ordered chunks, one query each (`WHERE key > last ORDER BY key LIMIT
                // n`) in the same transaction, so every chunk is part of the same consistent
                // view; the read permit is held per query, so tables take turns (no table
                // waits for a big one).
                Some(key) => {
                    let mut after = resume_after.clone().filter(|a| a.len() == key.len());
                    loop {
                        let mut conditions: Vec<String> = range.iter().cloned().collect();
                        if let Some(after) = &after {
                            conditions.push(format!("({})", after_condition(spec, key, after)?));
                        }
                        let mut sql = plan.select.clone();
                        if !conditions.is_empty() {
                            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
                        }
                        sql.push_str(&format!(" ORDER BY {} LIMIT {chunk_size}", plan.order.join(", ")));
                        let rows: Vec<mysql_async::Row> = {
                            let _permit =
                                reads.acquire().await.map_err(|_| Error::Internal("semaphore closed".into()))?;
                            conn.query(sql).await.map_err(upstream)?
                        };
                        let Some(last) = rows.last() else { break };
                        let last_key: Vec<Vec<u8>> = plan.key_at.iter().map(|&i| raw_bytes(last, i)).collect();
                        let full = rows.len() == chunk_size;
                        let stored = (range_index == 0).then(|| last_key.clone());
                        rows_tx.send((rows, stored)).await.map_err(closed)?;
                        if !full {
                            break;
                        }
                        after = Some(last_key);
                    }
                }
                // No usable key: one unordered read, sent in batches (a crash starts it over).
                None => {
                    let _permit = reads.acquire().await.map_err(|_| Error::Internal("semaphore closed".into()))?;
                    let mut result = conn.query_iter(plan.select.clone()).await.map_err(upstream)?;
                    let mut batch = Vec::with_capacity(chunk_size);
                    if let Some(mut rows) = result.stream::<mysql_async::Row>().await.map_err(upstream)? {
                        while let Some(row) = rows.next().await {
                            batch.push(row.map_err(upstream)?);
                            if batch.len() == chunk_size {
                                rows_tx.send((std::mem::take(&mut batch), None)).await.map_err(closed)?;
                            }
                        }
                    }
                    drop(result);
                    if !batch.is_empty() {
                        rows_tx.send((batch, None)).await.map_err(closed)?;
                    }
                }
            }
        }
        drop(rows_tx);
        Ok::<_, Error>(())
    };
    let read = read.await;
    // The converter's own error explains a closed channel better than the reader's.
    let converted = converter.await.map_err(|e| Error::Internal(format!("snapshot converter: {e}")))?;
    converted?;
    read?;
    conn.query_drop("COMMIT").await.map_err(upstream)?;
    Ok(())
}

/// Turns rows of one unit's snapshot query into chunks for the applier, in order.
struct Chunker {
    unit: Unit,
    schema: SchemaRef,
    idx: usize,
    tx: mpsc::Sender<Message>,
}

/// Rows of one chunk, and the key of its last row (`None` for an unordered read).
type RawChunk = (Vec<mysql_async::Row>, Option<Vec<Vec<u8>>>);

impl Chunker {
    /// Converts and forwards every chunk until the reader closes `chunks`.
    async fn run(self, mut chunks: mpsc::Receiver<RawChunk>) -> Result<()> {
        while let Some((rows, last_key)) = chunks.recv().await {
            let batch = self.convert(&rows)?;
            drop(rows);
            self.tx.send(Message::SnapshotRows { table: self.idx, batch, last_key }).await.map_err(closed)?;
        }
        Ok(())
    }

    fn convert(&self, rows: &[mysql_async::Row]) -> Result<RecordBatch> {
        let spec = &self.unit.spec;
        let upstream_columns = spec.upstream_indexes();
        let fixed = spec.fixed_cells(&self.unit.upstream_table);
        let mut builders = new_builders(spec)?;
        for row in rows {
            for (i, &local) in upstream_columns.iter().enumerate() {
                let raw = match row.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => Some(b.as_slice()),
                    _ => None,
                };
                builders[local].append_text(&spec.columns[local].kind, raw)?;
            }
            for (i, value) in &fixed {
                builders[*i].append(value.clone())?;
            }
        }
        finish(&self.schema, &mut builders)
    }
}

fn raw_bytes(row: &mysql_async::Row, i: usize) -> Vec<u8> {
    match row.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => b.clone(),
        _ => Vec::new(),
    }
}

pub fn new_builders(spec: &TableSpec) -> Result<Vec<ColumnBuilder>> {
    spec.columns.iter().map(|c| ColumnBuilder::new(&c.kind)).collect()
}

pub fn finish(schema: &SchemaRef, builders: &mut [ColumnBuilder]) -> Result<RecordBatch> {
    let columns = builders.iter_mut().map(|b| b.finish()).collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn closed<T>(_: mpsc::error::SendError<T>) -> Error {
    Error::Internal("source applier stopped".into())
}
