//! The binlog reader: one replication connection per source, decoded into transactions.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use tokio::sync::mpsc;

use super::position::{clean_file_name, BinlogPosition};
use super::rows::RowDecoder;
use super::schema::{added_values, describe, evolve, quote_upstream, upstream, Evolution, TableSpec};
use super::types::Cell;
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
    let mut conn = mysql_async::Conn::new(opts.clone()).await.map_err(upstream)?;
    let shards = ShardWatch::new(&units)?;
    // MariaDB's own GTID / checkpoint events instead of dummies; heartbeats every second.
    conn.query_drop("SET @mariadb_slave_capability=4").await.map_err(upstream)?;
    conn.query_drop("SET @master_heartbeat_period=1000000000").await.map_err(upstream)?;
    let request = BinlogStreamRequest::new(server_id).with_filename(start.file.as_bytes()).with_pos(start.pos);
    let lost = |e| stream_error(e, &start);
    let mut stream = conn.get_binlog_stream(request).await.map_err(lost)?;
    let mut file = start.file.clone();
    let mut pending: Vec<(usize, RowChange)> = Vec::new();
    let mut broken: Vec<bool> = vec![false; units.len()];
    // Unit by upstream database and table: a rows event finds its unit without a scan.
    let mut unit_of: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        unit_of.entry(u.spec.database.as_str()).or_default().entry(u.upstream_table.as_str()).or_insert(i);
    }
    let mut seen_format_description = false;
    // Decode plans per (unit, table id), made when a table map is first used.
    let mut decoders: std::collections::HashMap<(usize, u64), RowDecoder> = Default::default();
    let mut scratch: Vec<RowChange> = Vec::new();
    // The GTID of the transaction being read (MariaDB `domain-server-seq`, MySQL `uuid:gno`).
    let mut gtid: Option<String> = None;
    while let Some(event) = stream.next().await {
        let event = event.map_err(lost)?;
        let end = BinlogPosition { file: file.clone(), pos: event.header().log_pos() as u64 };
        let timestamp = event.header().timestamp();
        if let Some(g) = transaction_gtid(&event) {
            gtid = Some(g);
        }
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
                let Some(&idx) = unit_of.get(db.as_ref()).and_then(|t| t.get(name.as_ref())) else {
                    continue;
                };
                if broken[idx] {
                    continue;
                }
                let unit = &units[idx];
                let spec = &unit.spec;
                // Rows written before the ALTER TABLE that gave the table its columns are
                // already applied (the read may restart earlier for another table).
                if spec.since.as_ref().is_some_and(|since| end <= *since) {
                    continue;
                }
                if tme.columns_count() as usize != spec.upstream_count() {
                    broken[idx] = true;
                    let message = format!(
                        "upstream table {} now has {} columns, {} were captured: its schema changed \
                         (ALTER TABLE). The table is frozen at binlog position {end}; recreate the \
                         source to capture the new schema.",
                        quote_upstream(&spec.database, &unit.upstream_table),
                        tme.columns_count(),
                        spec.upstream_count()
                    );
                    tx.send(Message::TableError { table: idx, message }).await.map_err(closed)?;
                    continue;
                }
                if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
                    broken[idx] = true;
                    let message = format!(
                        "the binlog has partial JSON updates of {} (binlog_row_value_options = PARTIAL_JSON), \
                         which do not carry the whole row: set binlog_row_value_options = '' upstream, then capture \
                         the table again (ALTER SOURCE ... DROP TABLE, ADD TABLE)",
                        quote_upstream(&spec.database, &unit.upstream_table)
                    );
                    tx.send(Message::TableError { table: idx, message }).await.map_err(closed)?;
                    continue;
                }
                // One decode plan per table map (a table's id changes when its definition
                // does); the first use checks the table map's column names.
                let plan_key = (idx, rows.table_id());
                if !decoders.contains_key(&plan_key) {
                    if let Some(message) = unexpected_columns(tme, unit, &end) {
                        broken[idx] = true;
                        tx.send(Message::TableError { table: idx, message }).await.map_err(closed)?;
                        continue;
                    }
                    if decoders.len() >= 4096 {
                        decoders.clear();
                    }
                    match RowDecoder::plan(tme, spec, &unit.upstream_table) {
                        Ok(plan) => decoders.insert(plan_key, plan),
                        Err(e) => {
                            broken[idx] = true;
                            let message = format!(
                                "cannot decode binlog rows of {}: {e}",
                                quote_upstream(&spec.database, &unit.upstream_table)
                            );
                            tx.send(Message::TableError { table: idx, message }).await.map_err(closed)?;
                            continue;
                        }
                    };
                }
                let decoder = &decoders[&plan_key];
                // The few types left to mysql_common could panic on a value it does not
                // expect: contain it to this table.
                scratch.clear();
                let decoded =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode(&rows, &mut scratch)))
                        .unwrap_or_else(|_| Err(Error::Internal("the binlog row decoder panicked".into())));
                match decoded {
                    Ok(()) => pending.extend(scratch.drain(..).map(|c| (idx, c))),
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
                let gtid = gtid.clone();
                tx.send(Message::Transaction { end, timestamp, gtid, changes }).await.map_err(closed)?;
            }
            EventData::QueryEvent(q) => {
                let sql = q.query().to_string();
                let upper = sql.trim_start().to_ascii_uppercase();
                if upper.starts_with("BEGIN") || upper.starts_with("XA ") {
                    continue;
                }
                if upper.starts_with("COMMIT") {
                    let changes = std::mem::take(&mut pending);
                    let gtid = gtid.clone();
                    tx.send(Message::Transaction { end, timestamp, gtid, changes }).await.map_err(closed)?;
                    continue;
                }
                let schema = q.schema().to_string();
                if let Some((table, shard)) = shards.created(&sql, &schema) {
                    let rejected = shards.check(&opts, table, &shard).await?;
                    let joins = rejected.is_none();
                    tx.send(Message::NewShard { end: end.clone(), table, shard, rejected }).await.map_err(closed)?;
                    if joins {
                        // The source restarts with the new unit from this position.
                        return Ok(());
                    }
                    tx.send(Message::Transaction { end, timestamp, gtid: gtid.clone(), changes: vec![] })
                        .await
                        .map_err(closed)?;
                    continue;
                }
                let mut evolved = Vec::new();
                for (idx, unit) in units.iter().enumerate() {
                    if mentions(&sql, &schema, &unit.spec.database, &unit.upstream_table) {
                        if broken[idx] || unit.spec.since.as_ref().is_some_and(|since| end <= *since) {
                            continue;
                        }
                        if keeps_rows(&upper) {
                            let shards: Vec<String> = match unit.spec.shards.is_empty() {
                                true => Vec::new(),
                                false => units
                                    .iter()
                                    .filter(|u| u.table == unit.table)
                                    .map(|u| u.upstream_table.clone())
                                    .collect(),
                            };
                            match follow_alter(&opts, unit, &shards, &end).await? {
                                Ok(None) => {}
                                Ok(Some((spec, values))) => evolved.push((idx, spec, values)),
                                Err(why) => {
                                    broken[idx] = true;
                                    let message = format!(
                                        "upstream {sql} cannot be followed: {why}. The table is frozen at binlog \
                                         position {end}; capture it again with ALTER SOURCE ... DROP TABLE {t} \
                                         CASCADE, then ALTER SOURCE ... ADD TABLE {db}.{up}",
                                        t = crate::ident::quote_ident(&unit.spec.name),
                                        db = unit.spec.database,
                                        up = unit.upstream_table,
                                    );
                                    tx.send(Message::TableError { table: idx, message }).await.map_err(closed)?;
                                }
                            }
                            continue;
                        }
                        let truncate = upper.starts_with("TRUNCATE");
                        if !truncate {
                            broken[idx] = true;
                        }
                        tx.send(Message::Ddl { end: end.clone(), table: idx, statement: sql.clone(), truncate })
                            .await
                            .map_err(closed)?;
                    }
                }
                if !evolved.is_empty() {
                    // Later row events have the new columns: the source restarts its read
                    // after the ALTER with the new descriptions.
                    tx.send(Message::SchemaChange { end, gtid: gtid.clone(), tables: evolved })
                        .await
                        .map_err(closed)?;
                    return Ok(());
                }
                let gtid = gtid.clone();
                tx.send(Message::Transaction { end, timestamp, gtid, changes: vec![] }).await.map_err(closed)?;
            }
            EventData::FormatDescriptionEvent(_) => seen_format_description = true,
            EventData::HeartbeatEvent => {
                // The server sends heartbeats only when it has nothing else to send, so its
                // position is a transaction boundary; `pending` is checked all the same.
                let between_transactions = pending.is_empty() && end.pos >= 4;
                tx.send(Message::Heartbeat { position: end, between_transactions }).await.map_err(closed)?;
            }
            _ => {}
        }
    }
    Err(Error::ConnectionException {
        sqlstate: "08006",
        message: "the binlog stream ended (upstream closed the connection)".into(),
    })
}

/// MariaDB's GTID event type (mysql_common decodes MySQL's, not this one).
const MARIADB_GTID_EVENT: u8 = 162;

/// The GTID a GTID event gives the transaction that follows it.
///
/// MariaDB (event 162): body `seq_no u64 LE, domain_id u32 LE, flags u8, ...`, the server id
/// from the event header → `domain-server-seq`. MySQL 5.7/8 (GTID_EVENT, decoded by
/// mysql_common): the source UUID and the transaction number → `uuid:gno` (tagged GTIDs of
/// 8.4 → `uuid:tag:gno`).
pub(super) fn transaction_gtid(event: &mysql_async::binlog::events::Event) -> Option<String> {
    let header = event.header();
    if header.event_type_raw() == MARIADB_GTID_EVENT {
        let d = event.data();
        let seq = u64::from_le_bytes(d.get(0..8)?.try_into().ok()?);
        let domain = u32::from_le_bytes(d.get(8..12)?.try_into().ok()?);
        return Some(format!("{domain}-{}-{seq}", header.server_id()));
    }
    if header.event_type_raw() == mysql_async::binlog::EventType::GTID_EVENT as u8
        || header.event_type_raw() == mysql_async::binlog::EventType::GTID_TAGGED_LOG_EVENT as u8
    {
        if let Ok(Some(EventData::GtidEvent(g))) = event.read_data() {
            return Some(mysql_gtid(&g));
        }
    }
    None
}

/// `uuid:gno` (or `uuid:tag:gno`) of a MySQL GTID event.
fn mysql_gtid(g: &mysql_async::binlog::events::GtidEvent) -> String {
    let sid = g.sid();
    let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    let tag = g.tag().map(|t| format!("{}:", t.as_str())).unwrap_or_default();
    format!("{uuid}:{tag}{}", g.gno())
}

fn closed<T>(_: mpsc::error::SendError<T>) -> Error {
    Error::Internal("source applier stopped".into())
}

/// Unit `unit`'s upstream table as described now, with the connection that described it;
/// why not (gone upstream, not describable) as a message.
async fn describe_again(
    opts: &mysql_async::Opts,
    unit: &Unit,
) -> Result<std::result::Result<(mysql_async::Conn, TableSpec), String>> {
    let spec = &unit.spec;
    let mut conn = mysql_async::Conn::new(opts.clone()).await.map_err(upstream)?;
    let now = match describe(&mut conn, &spec.database, &unit.upstream_table, &spec.name).await {
        Ok(now) => now,
        Err(e @ (Error::ConnectionException { .. } | Error::DataException { .. })) => return Err(e),
        Err(e) => return Ok(Err(e.to_string())),
    };
    if now.columns.is_empty() {
        let _ = conn.disconnect().await;
        return Ok(Err("the table no longer exists under this name upstream (dropped or renamed)".into()));
    }
    Ok(Ok((conn, now)))
}

/// A table's description after an upstream `ALTER TABLE` of `unit` at `end`: `Ok(None)`
/// when nothing the local table holds changed, else its new description with the values
/// existing rows got in the new columns, or why it cannot be followed.
///
/// A table of its own: `None` values mean they are not constants, and a new snapshot is
/// needed. A shard of a merged table (`shards`: all of that table's upstream tables): the
/// description is the merged table's (see [`super::schema::merge_shard_change`]) and the
/// values are always constants (possibly none), since the other shards' rows get them too.
/// The table is described now, which may already be past a later ALTER: the table-map check
/// on the following row events catches that (the table then stops rather than mis-decode).
async fn follow_alter(
    opts: &mysql_async::Opts,
    unit: &Unit,
    shards: &[String],
    end: &BinlogPosition,
) -> Result<std::result::Result<Option<(TableSpec, Option<Vec<Cell>>)>, String>> {
    let spec = &unit.spec;
    let (mut conn, now) = match describe_again(opts, unit).await? {
        Ok(described) => described,
        Err(why) => return Ok(Err(why)),
    };
    let outcome = match evolve(spec, &now) {
        Err(why) => Err(why),
        Ok(Evolution::Unchanged) => Ok(None),
        Ok(Evolution::Changed { spec: mut evolved, added, present }) => {
            let columns: Vec<_> = present.iter().chain(&added).map(|&i| evolved.columns[i].clone()).collect();
            match added_values(&mut conn, &spec.database, &unit.upstream_table, &columns).await {
                Ok(Some(values)) if !shards.is_empty() => super::schema::merge_shard_change(
                    &unit.table_spec,
                    shards,
                    &unit.upstream_table,
                    spec,
                    *evolved,
                    &added,
                    &present,
                    &values,
                    end,
                )
                .map(|(merged, values)| Some((merged, Some(values)))),
                Ok(None) if !shards.is_empty() => Err("a shard of a merged table can gain columns only with \
                                                       constant defaults (the other shards' rows get the same \
                                                       value); this one is computed per row"
                    .into()),
                // `None`: not constants; the table is snapshotted again (on MySQL too, with
                // watermarks: see snapshot.rs).
                Ok(values) => {
                    evolved.since = Some(end.clone());
                    Ok(Some((*evolved, values)))
                }
                Err(e @ (Error::ConnectionException { .. } | Error::DataException { .. })) => return Err(e),
                Err(e) => Err(format!("the new columns' values cannot be read: {e}")),
            }
        }
    };
    let _ = conn.disconnect().await;
    Ok(outcome)
}

/// Why a table-map event's column names (binlog_row_metadata=FULL) are not the captured
/// table's upstream columns — a schema change this source did not follow — or `None`.
fn unexpected_columns(
    tme: &mysql_async::binlog::events::TableMapEvent<'_>,
    unit: &Unit,
    end: &BinlogPosition,
) -> Option<String> {
    use mysql_async::binlog::events::OptionalMetadataField;
    let names: Vec<String> = tme.iter_optional_meta().find_map(|f| match f {
        Ok(OptionalMetadataField::ColumnName(names)) => {
            names.iter_names().map(|n| n.ok().map(|n| n.name().into_owned())).collect::<Option<Vec<_>>>()
        }
        _ => None,
    })?;
    let spec = &unit.spec;
    let captured = spec.upstream_columns();
    let mut expected = vec![String::new(); captured.len()];
    for (i, c) in captured.iter().enumerate() {
        *expected.get_mut(spec.upstream_position(i))? = c.name.clone();
    }
    (names != expected).then(|| {
        format!(
            "upstream table {} has columns ({}) at binlog position {end}, but ({}) were captured: its schema \
             changed in a way this source did not follow. The table is frozen; capture it again with ALTER SOURCE \
             ... DROP TABLE {} CASCADE, then ALTER SOURCE ... ADD TABLE",
            quote_upstream(&spec.database, &unit.upstream_table),
            names.join(", "),
            expected.join(", "),
            crate::ident::quote_ident(&spec.name)
        )
    })
}

/// Watches for `CREATE TABLE` of new shards of the captured tables merged from a pattern.
struct ShardWatch {
    /// Per pattern table: its index, spec, pattern and the shards already captured.
    patterns: Vec<(usize, Arc<TableSpec>, regex::Regex, Vec<String>)>,
}

impl ShardWatch {
    fn new(units: &[Unit]) -> Result<Self> {
        let mut patterns: Vec<(usize, Arc<TableSpec>, regex::Regex, Vec<String>)> = Vec::new();
        for u in units.iter().filter(|u| !u.spec.shards.is_empty()) {
            match patterns.iter_mut().find(|p| p.0 == u.table) {
                Some(p) => p.3.push(u.upstream_table.clone()),
                None => {
                    let re = regex::Regex::new(&format!("^(?:{})$", u.spec.table))
                        .map_err(|e| Error::Internal(format!("stored shard pattern {}: {e}", u.spec.table)))?;
                    patterns.push((u.table, u.table_spec.clone(), re, vec![u.upstream_table.clone()]));
                }
            }
        }
        Ok(ShardWatch { patterns })
    }

    /// The captured table and shard name when `sql` creates a new matching table.
    fn created(&self, sql: &str, default_schema: &str) -> Option<(usize, String)> {
        if self.patterns.is_empty() {
            return None;
        }
        let (db, name) = created_table(sql)?;
        let db = db.unwrap_or_else(|| default_schema.to_string());
        self.patterns
            .iter()
            .find(|(_, spec, re, known)| spec.database == db && re.is_match(&name) && !known.contains(&name))
            .map(|(t, ..)| (*t, name))
    }

    /// `None` when the new shard has the merged table's columns and key; else why not.
    async fn check(&self, opts: &mysql_async::Opts, table: usize, shard: &str) -> Result<Option<String>> {
        let (_, spec, ..) = self.patterns.iter().find(|p| p.0 == table).expect("pattern of a found table");
        let mut conn = mysql_async::Conn::new(opts.clone()).await.map_err(upstream)?;
        let found = super::schema::describe(&mut conn, &spec.database, shard, &spec.name).await;
        // The merged key also holds the table-name column (INCLUDE TABLE NAME), which the
        // shard itself does not have.
        let upstream_key: Vec<usize> = spec.key.iter().copied().filter(|&k| spec.is_upstream(k)).collect();
        let _ = conn.disconnect().await;
        Ok(match found {
            Ok(new) if new.columns.iter().collect::<Vec<_>>() == spec.upstream_columns() && new.key == upstream_key => {
                None
            }
            Ok(_) => Some(format!(
                "upstream table {} matches the shard pattern of {} but its columns or key differ from the other \
                 shards, so it is not merged; make it identical (then ALTER SOURCE ... RESNAPSHOT) or rename it",
                quote_upstream(&spec.database, shard),
                spec.name
            )),
            Err(e) => Some(format!("new shard {} could not be described: {e}", quote_upstream(&spec.database, shard))),
        })
    }
}

/// `(database, table)` of a `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] [db.]name ...`. Names
/// keep their case (table names are case-sensitive on Linux); only keywords are folded.
fn created_table(sql: &str) -> Option<(Option<String>, String)> {
    let normalized = sql.replace('`', "");
    let words: Vec<&str> =
        normalized.split(|c: char| c.is_whitespace() || c == '(' || c == ';').filter(|w| !w.is_empty()).collect();
    let is = |i: usize, kw: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(kw));
    let mut i = 1;
    if !is(0, "create") {
        return None;
    }
    if is(i, "or") && is(i + 1, "replace") {
        i += 2;
    }
    if !is(i, "table") {
        return None;
    }
    i += 1;
    if is(i, "if") && is(i + 1, "not") && is(i + 2, "exists") {
        i += 3;
    }
    let name = words.get(i)?;
    Some(match name.split_once('.') {
        Some((db, t)) => (Some(db.to_string()), t.to_string()),
        None => (None, name.to_string()),
    })
}

/// Whether a DDL statement (upper-cased) keeps the table's rows, so that following it is a
/// matter of the table's new description: `ALTER TABLE`, `CREATE`/`DROP INDEX` — but not the
/// partition and tablespace operations that remove or replace rows without row events.
fn keeps_rows(upper: &str) -> bool {
    let words: Vec<&str> = upper.split_whitespace().collect();
    let text = words.join(" ");
    let index = matches!(words.first(), Some(&"CREATE" | &"DROP"))
        && words.iter().skip(1).take(3).take_while(|w| **w != "TABLE").any(|w| *w == "INDEX");
    // `ALTER IGNORE ... ADD UNIQUE` (MariaDB) drops duplicate rows without row events.
    let replaces_rows = ["TRUNCATE PARTITION", "DROP PARTITION", "EXCHANGE PARTITION", "TABLESPACE", "ALTER IGNORE"]
        .iter()
        .any(|op| text.contains(op));
    (words.first() == Some(&"ALTER") || index) && !replaces_rows
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

#[cfg(test)]
mod tests {
    use mysql_async::binlog::events::{Event, FormatDescriptionEvent};
    use mysql_async::binlog::BinlogVersion;

    use super::*;

    /// An event as the server sends it (v4 header, no checksum): `type`, server id 7, body.
    fn event(event_type: u8, body: &[u8]) -> Event {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1_700_000_000u32.to_le_bytes()); // timestamp
        bytes.push(event_type);
        bytes.extend_from_slice(&7u32.to_le_bytes()); // server id
        bytes.extend_from_slice(&(19 + body.len() as u32).to_le_bytes()); // event size
        bytes.extend_from_slice(&1234u32.to_le_bytes()); // log_pos
        bytes.extend_from_slice(&0u16.to_le_bytes()); // flags
        bytes.extend_from_slice(body);
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
        Event::read(&fde, &bytes[..]).expect("event")
    }

    #[test]
    fn created_tables() {
        assert_eq!(created_table("CREATE TABLE s.orders_3 (id INT)"), Some((Some("s".into()), "orders_3".into())));
        assert_eq!(
            created_table("create table if not exists `s`.`Orders_4`(id int)"),
            Some((Some("s".into()), "Orders_4".into()))
        );
        assert_eq!(created_table("CREATE OR REPLACE TABLE orders_5 LIKE orders_0"), Some((None, "orders_5".into())));
        assert_eq!(created_table("CREATE INDEX i ON orders_1 (id)"), None);
        assert_eq!(created_table("ALTER TABLE orders_1 ADD c INT"), None);
    }

    #[test]
    fn ddl_that_keeps_rows() {
        for sql in [
            "ALTER TABLE t ADD COLUMN c INT",
            "ALTER TABLE t ADD INDEX i (c)",
            "CREATE INDEX i ON t (c)",
            "CREATE UNIQUE INDEX i ON t (c)",
            "DROP INDEX i ON t",
            "ALTER TABLE t REORGANIZE PARTITION p0 INTO (PARTITION p1 VALUES LESS THAN (10))",
        ] {
            assert!(keeps_rows(sql), "{sql}");
        }
        for sql in [
            "ALTER TABLE t TRUNCATE PARTITION p0",
            "ALTER TABLE t DROP  PARTITION p0",
            "ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE u",
            "ALTER TABLE t DISCARD TABLESPACE",
            "DROP TABLE t",
            "RENAME TABLE t TO u",
            "CREATE OR REPLACE TABLE t (id INT)",
            "DROP TABLE index_t",
            "ALTER IGNORE TABLE t ADD UNIQUE (c)",
        ] {
            assert!(!keeps_rows(sql), "{sql}");
        }
    }

    #[test]
    fn mariadb_gtid_event() {
        // seq_no 18, domain 0, flags: standalone (0x01), 6 bytes of padding.
        let mut body = 18u64.to_le_bytes().to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(0x01);
        body.extend_from_slice(&[0; 6]);
        assert_eq!(transaction_gtid(&event(MARIADB_GTID_EVENT, &body)).as_deref(), Some("0-7-18"));
        // Domain 3, sequence 2^40.
        let mut body = (1u64 << 40).to_le_bytes().to_vec();
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&[0; 7]);
        assert_eq!(transaction_gtid(&event(MARIADB_GTID_EVENT, &body)).as_deref(), Some("3-7-1099511627776"));
        // A truncated body is no GTID, not a panic.
        assert_eq!(transaction_gtid(&event(MARIADB_GTID_EVENT, &[1, 2, 3])), None);
    }

    #[test]
    fn mysql_gtid_event() {
        // MySQL 5.7/8.0 GTID_LOG_EVENT body: flags, source UUID, GNO, then the logical clock
        // (type code 2, last_committed, sequence_number).
        let uuid = [0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62];
        let mut body = vec![0x01];
        body.extend_from_slice(&uuid);
        body.extend_from_slice(&23u64.to_le_bytes());
        body.push(2);
        body.extend_from_slice(&22u64.to_le_bytes());
        body.extend_from_slice(&23u64.to_le_bytes());
        let gtid = transaction_gtid(&event(0x21, &body));
        assert_eq!(gtid.as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23"));
        // Other events carry none.
        assert_eq!(transaction_gtid(&event(0x10, &5u64.to_le_bytes())), None);
    }
}
