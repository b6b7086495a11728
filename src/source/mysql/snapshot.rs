//! The snapshot of one table: a lock-free consistent read, streamed in chunks.
//!
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` gives an MVCC view without locks; MariaDB's
//! `binlog_snapshot_file/position` status variables name the exact binlog position of that
//! view. The applier keeps binlog events of the table that come after it and applies them
//! once the last chunk is in (see `super` for the merge).
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

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use tokio::sync::{mpsc, Semaphore};

use super::position::BinlogPosition;
use super::schema::{quote_upstream, upstream, TableSpec};
use super::types::{Cell, ColumnBuilder, Kind};
use super::{Message, Unit};
use crate::error::{Error, Result};

/// The upstream key columns a snapshot can be ordered and resumed by: the primary key when
/// MySQL orders and compares it the way a literal does (not ENUM/SET, whose order is their
/// index, nor floats, whose text may not round-trip). `None`: read unordered, never resumed.
pub fn resume_key(spec: &TableSpec) -> Option<Vec<usize>> {
    let n = spec.upstream_columns().len();
    let key: Vec<usize> = spec.key.iter().copied().filter(|&i| i < n).collect();
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
    let name = |i: usize| format!("`{}`", spec.columns[i].name.replace('`', "``"));
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
pub struct SnapshotTask {
    pub opts: mysql_async::Opts,
    pub idx: usize,
    pub unit: Unit,
    pub schema: SchemaRef,
    pub chunk_size: usize,
    pub after: Option<Vec<Vec<u8>>>,
}

/// Reads unit `idx` and sends `SnapshotStart`, `SnapshotRows`..., `SnapshotDone`; with
/// `after`, only the rows whose key comes after it (a resumed snapshot).
pub async fn snapshot_table(task: SnapshotTask, reads: &Semaphore, tx: mpsc::Sender<Message>) -> Result<()> {
    let SnapshotTask { opts, idx, unit, schema, chunk_size, after } = task;
    let mut conn = mysql_async::Conn::new(opts).await.map_err(upstream)?;
    // TIMESTAMP values in UTC, whatever the server's or the user's time zone.
    conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4").await.map_err(upstream)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(upstream)?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(upstream)?;
    let status: Vec<(String, String)> = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await.map_err(upstream)?;
    let get = |n: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let (Some(file), Some(pos)) = (get("Binlog_snapshot_file"), get("Binlog_snapshot_position")) else {
        return Err(Error::FeatureNotSupported(
            "a lock-free snapshot needs MariaDB's binlog_snapshot_file/position status (MySQL: not yet)".into(),
        ));
    };
    let position = BinlogPosition { file, pos: pos.parse().unwrap_or(0) };
    let spec = unit.spec.clone();
    let estimate: Option<u64> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&spec.database, &unit.upstream_table),
        )
        .await
        .map_err(upstream)?
        .flatten();
    let chunks_total = estimate.unwrap_or(0).div_ceil(chunk_size as u64).max(1);
    tx.send(Message::SnapshotStart { table: idx, position, chunks_total }).await.map_err(closed)?;

    let upstream_columns = spec.upstream_columns();
    let columns: Vec<String> = upstream_columns.iter().map(|c| format!("`{}`", c.name.replace('`', "``"))).collect();
    let select = format!("SELECT {} FROM {}", columns.join(", "), quote_upstream(&spec.database, &unit.upstream_table));
    let chunk = Chunker { unit: &unit, schema: &schema, idx, tx: &tx };
    match resume_key(&spec) {
        // Key-ordered chunks, one query each (`WHERE key > last ORDER BY key LIMIT n`) in the
        // same transaction, so every chunk is part of the same consistent view; the read
        // permit is held per query, so tables take turns (no table waits for a big one).
        Some(key) => {
            let order: Vec<&str> = key.iter().map(|&i| columns[i].as_str()).collect();
            let mut after = after.filter(|a| a.len() == key.len());
            loop {
                let mut sql = select.clone();
                if let Some(after) = &after {
                    sql.push_str(&format!(" WHERE {}", after_condition(&spec, &key, after)?));
                }
                sql.push_str(&format!(" ORDER BY {} LIMIT {chunk_size}", order.join(", ")));
                let rows: Vec<mysql_async::Row> = {
                    let _permit = reads.acquire().await.map_err(|_| Error::Internal("semaphore closed".into()))?;
                    conn.query(sql).await.map_err(upstream)?
                };
                let Some(last) = rows.last() else { break };
                let last_key: Vec<Vec<u8>> = key.iter().map(|&i| raw_bytes(last, i)).collect();
                let full = rows.len() == chunk_size;
                chunk.send(&rows, Some(last_key.clone())).await?;
                if !full {
                    break;
                }
                after = Some(last_key);
            }
        }
        // No usable key: one unordered read, sent in batches (a crash starts it over).
        None => {
            let _permit = reads.acquire().await.map_err(|_| Error::Internal("semaphore closed".into()))?;
            let mut result = conn.query_iter(select).await.map_err(upstream)?;
            let mut batch = Vec::with_capacity(chunk_size);
            if let Some(mut rows) = result.stream::<mysql_async::Row>().await.map_err(upstream)? {
                while let Some(row) = rows.next().await {
                    batch.push(row.map_err(upstream)?);
                    if batch.len() == chunk_size {
                        chunk.send(&std::mem::take(&mut batch), None).await?;
                    }
                }
            }
            drop(result);
            if !batch.is_empty() {
                chunk.send(&batch, None).await?;
            }
        }
    }
    conn.query_drop("COMMIT").await.map_err(upstream)?;
    tx.send(Message::SnapshotDone { table: idx }).await.map_err(closed)?;
    Ok(())
}

/// Turns rows of one unit's snapshot query into a chunk for the applier.
struct Chunker<'a> {
    unit: &'a Unit,
    schema: &'a SchemaRef,
    idx: usize,
    tx: &'a mpsc::Sender<Message>,
}

impl Chunker<'_> {
    async fn send(&self, rows: &[mysql_async::Row], last_key: Option<Vec<Vec<u8>>>) -> Result<()> {
        let spec = &self.unit.spec;
        let upstream_columns = spec.upstream_columns();
        let mut builders = new_builders(spec)?;
        for row in rows {
            for (i, col) in upstream_columns.iter().enumerate() {
                let raw = match row.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => Some(b.as_slice()),
                    _ => None,
                };
                builders[i].append_text(&col.kind, raw)?;
            }
            if spec.table_name_column {
                builders[upstream_columns.len()].append(Cell::Text(self.unit.upstream_table.clone()))?;
            }
        }
        let batch = finish(self.schema, &mut builders)?;
        self.tx.send(Message::SnapshotRows { table: self.idx, batch, last_key }).await.map_err(closed)
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
