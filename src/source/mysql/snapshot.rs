//! The snapshot of one table: a lock-free consistent read, streamed in chunks.
//!
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` gives an MVCC view without locks; MariaDB's
//! `binlog_snapshot_file/position` status variables name the exact binlog position of that
//! view. The applier keeps binlog events of the table that come after it and applies them
//! once the last chunk is in (see `super` for the merge).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;

use super::position::BinlogPosition;
use super::schema::{quote_upstream, upstream, TableSpec};
use super::types::{cell_from_text, Cell, ColumnBuilder};
use super::{Message, Unit};
use crate::error::{Error, Result};

/// Reads unit `idx` and sends `SnapshotStart`, `SnapshotRows`..., `SnapshotDone`.
pub async fn snapshot_table(
    opts: mysql_async::Opts,
    idx: usize,
    unit: Unit,
    schema: SchemaRef,
    chunk_size: usize,
    tx: mpsc::Sender<Message>,
) -> Result<()> {
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
    let sql = format!("SELECT {} FROM {}", columns.join(", "), quote_upstream(&spec.database, &unit.upstream_table));
    let mut result = conn.query_iter(sql).await.map_err(upstream)?;
    let mut builders = new_builders(&spec)?;
    let mut in_chunk = 0usize;
    if let Some(mut rows) = result.stream::<mysql_async::Row>().await.map_err(upstream)? {
        while let Some(row) = rows.next().await {
            let row = row.map_err(upstream)?;
            for (i, col) in upstream_columns.iter().enumerate() {
                let raw = match row.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => Some(b.as_slice()),
                    _ => None,
                };
                builders[i].append(cell_from_text(&col.kind, raw)?)?;
            }
            if spec.table_name_column {
                builders[upstream_columns.len()].append(Cell::Text(unit.upstream_table.clone()))?;
            }
            in_chunk += 1;
            if in_chunk == chunk_size {
                let batch = finish(&schema, &mut builders)?;
                tx.send(Message::SnapshotRows { table: idx, batch }).await.map_err(closed)?;
                in_chunk = 0;
            }
        }
    }
    drop(result);
    if in_chunk > 0 {
        let batch = finish(&schema, &mut builders)?;
        tx.send(Message::SnapshotRows { table: idx, batch }).await.map_err(closed)?;
    }
    conn.query_drop("COMMIT").await.map_err(upstream)?;
    tx.send(Message::SnapshotDone { table: idx }).await.map_err(closed)?;
    Ok(())
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
