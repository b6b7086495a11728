//! The binlog reader: one replication connection per source, decoded into transactions.

use std::sync::Arc;

use futures::StreamExt;
use mysql_async::binlog::events::EventData;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use tokio::sync::mpsc;

use super::position::{clean_file_name, BinlogPosition};
use super::schema::{quote_upstream, upstream};
use super::types::{cell_from_binlog, Cell};
use super::{Message, Unit};
use crate::error::{Error, Result};

/// One row image change: insert (after only), update (both), delete (before only).
#[derive(Debug, Clone)]
pub struct RowChange {
    pub before: Option<Vec<Cell>>,
    pub after: Option<Vec<Cell>>,
}

/// Error 1236 (ER_MASTER_FATAL_ERROR_READING_BINLOG): the server no longer has the binlog
/// at `start` (purged, or the file is gone) — the changes since are lost to this source.
fn stream_error(e: mysql_async::Error, start: &BinlogPosition) -> Error {
    match &e {
        mysql_async::Error::Server(s) if s.code == 1236 => Error::SourceLost(format!(
            "the upstream server no longer has the binlog at {start} ({}): changes made since then cannot be \
             read, so this source stopped rather than miss them",
            s.message
        )),
        _ => upstream(e),
    }
}

/// Streams the binlog from `start` and sends transactions of captured tables to the applier.
pub async fn read(
    opts: mysql_async::Opts,
    server_id: u32,
    start: BinlogPosition,
    units: Arc<Vec<Unit>>,
    tx: mpsc::Sender<Message>,
) -> Result<()> {
    let mut conn = mysql_async::Conn::new(opts).await.map_err(upstream)?;
    // MariaDB's own GTID / checkpoint events instead of dummies; heartbeats every second.
    conn.query_drop("SET @mariadb_slave_capability=4").await.map_err(upstream)?;
    conn.query_drop("SET @master_heartbeat_period=1000000000").await.map_err(upstream)?;
    let request = BinlogStreamRequest::new(server_id).with_filename(start.file.as_bytes()).with_pos(start.pos);
    let lost = |e| stream_error(e, &start);
    let mut stream = conn.get_binlog_stream(request).await.map_err(lost)?;
    let mut file = start.file.clone();
    let mut pending: Vec<(usize, RowChange)> = Vec::new();
    let mut broken: Vec<bool> = vec![false; units.len()];
    let mut seen_format_description = false;
    while let Some(event) = stream.next().await {
        let event = event.map_err(lost)?;
        let end = BinlogPosition { file: file.clone(), pos: event.header().log_pos() as u64 };
        let timestamp = event.header().timestamp();
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            // MariaDB's GTID (162), GTID_LIST (163), BINLOG_CHECKPOINT (161) are unknown to
            // mysql_common; a GTID starts a transaction, which needs no action here.
            Ok(None) | Err(_) => continue,
        };
        match data {
            EventData::RotateEvent(r) => {
                file = clean_file_name(r.name_raw(), !seen_format_description);
            }
            EventData::RowsEvent(rows) => {
                let Some(tme) = stream.get_tme(rows.table_id()) else { continue };
                let db = tme.database_name();
                let name = tme.table_name();
                let Some(idx) = units.iter().position(|u| u.spec.database == db && u.upstream_table == name) else {
                    continue;
                };
                if broken[idx] {
                    continue;
                }
                let unit = &units[idx];
                let spec = &unit.spec;
                if tme.columns_count() as usize != spec.upstream_columns().len() {
                    broken[idx] = true;
                    let message = format!(
                        "upstream table {} now has {} columns, {} were captured: its schema changed \
                         (ALTER TABLE). The table is frozen at binlog position {end}; recreate the \
                         source to capture the new schema.",
                        quote_upstream(&spec.database, &unit.upstream_table),
                        tme.columns_count(),
                        spec.upstream_columns().len()
                    );
                    tx.send(Message::TableError { table: idx, message }).await.map_err(closed)?;
                    continue;
                }
                // mysql_common can panic on some values (see docs/types.md): contain it to
                // this table.
                let decoded: Result<Vec<RowChange>> = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    rows.rows(tme)
                        .map(|row| {
                            let (before, after) = row.map_err(|e| Error::Internal(format!("binlog row: {e}")))?;
                            let before = before.map(|r| decode_row(unit, &r)).transpose()?;
                            let after = after.map(|r| decode_row(unit, &r)).transpose()?;
                            Ok(RowChange { before, after })
                        })
                        .collect()
                }))
                .unwrap_or_else(|_| Err(Error::Internal("the binlog row decoder panicked".into())));
                match decoded {
                    Ok(changes) => pending.extend(changes.into_iter().map(|c| (idx, c))),
                    Err(e) => {
                        // Never apply a row that did not decode: this table stops, the others go on.
                        broken[idx] = true;
                        let table = quote_upstream(&spec.database, &unit.upstream_table);
                        let message = format!("cannot decode a binlog row of {table} at {end}: {e}");
                        tx.send(Message::TableError { table: idx, message }).await.map_err(closed)?;
                    }
                }
            }
            EventData::XidEvent(_) => {
                let changes = std::mem::take(&mut pending);
                tx.send(Message::Transaction { end, timestamp, changes }).await.map_err(closed)?;
            }
            EventData::QueryEvent(q) => {
                let sql = q.query().to_string();
                let upper = sql.trim_start().to_ascii_uppercase();
                if upper.starts_with("BEGIN") || upper.starts_with("XA ") {
                    continue;
                }
                if upper.starts_with("COMMIT") {
                    let changes = std::mem::take(&mut pending);
                    tx.send(Message::Transaction { end, timestamp, changes }).await.map_err(closed)?;
                    continue;
                }
                let schema = q.schema().to_string();
                for (idx, unit) in units.iter().enumerate() {
                    if mentions(&sql, &schema, &unit.spec.database, &unit.upstream_table) {
                        let truncate = upper.starts_with("TRUNCATE");
                        if !truncate {
                            broken[idx] = true;
                        }
                        tx.send(Message::Ddl { end: end.clone(), table: idx, statement: sql.clone(), truncate })
                            .await
                            .map_err(closed)?;
                    }
                }
                tx.send(Message::Transaction { end, timestamp, changes: vec![] }).await.map_err(closed)?;
            }
            EventData::FormatDescriptionEvent(_) => seen_format_description = true,
            EventData::HeartbeatEvent => {
                tx.send(Message::Heartbeat { position: end }).await.map_err(closed)?;
            }
            _ => {}
        }
    }
    Err(Error::DataException {
        sqlstate: "08006",
        message: "the binlog stream ended (upstream closed the connection)".into(),
    })
}

fn closed<T>(_: mpsc::error::SendError<T>) -> Error {
    Error::Internal("source applier stopped".into())
}

fn decode_row(unit: &Unit, row: &mysql_async::binlog::row::BinlogRow) -> Result<Vec<Cell>> {
    let mut cells: Vec<Cell> = unit
        .spec
        .upstream_columns()
        .iter()
        .enumerate()
        .map(|(i, col)| match row.as_ref(i) {
            None => Ok(Cell::Null),
            Some(BinlogValue::Value(v)) => cell_from_binlog(&col.kind, v),
            Some(other) => {
                let v: mysql_async::Value = other
                    .clone()
                    .try_into()
                    .map_err(|e| Error::Internal(format!("cannot decode JSON value of {}: {e}", col.name)))?;
                cell_from_binlog(&col.kind, &v)
            }
        })
        .collect::<Result<_>>()?;
    if unit.spec.table_name_column {
        cells.push(Cell::Text(unit.upstream_table.clone()));
    }
    Ok(cells)
}

/// Whether a DDL statement names the table (`t`, `db.t`, with or without backquotes).
fn mentions(sql: &str, default_schema: &str, database: &str, table: &str) -> bool {
    let normalized = sql.replace('`', "").to_ascii_lowercase();
    let table = table.to_ascii_lowercase();
    let qualified = format!("{}.{}", database.to_ascii_lowercase(), table);
    let words: Vec<&str> = normalized
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .collect();
    let is_ddl = matches!(words.first().copied(), Some("alter" | "drop" | "truncate" | "rename" | "create"));
    is_ddl && words.iter().any(|w| *w == qualified || (*w == table && default_schema.eq_ignore_ascii_case(database)))
}
