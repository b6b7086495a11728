//! The MySQL/MariaDB source: lock-free snapshots merged with one binlog stream.
//!
//! # The merge
//! Each captured table goes through three phases, driven by one applier task that receives,
//! over one channel, decoded binlog transactions ([`binlog`], row images by [`rows`]) and snapshot chunks
//! ([`snapshot`]):
//! 1. **Pending**: its snapshot has not started. Binlog changes of the table are buffered.
//! 2. **Loading** at position `S`: the snapshot transaction reads the table as of binlog
//!    position `S` (`binlog_snapshot_position`, exact, no locks). Buffered changes at or
//!    before `S` are dropped (the snapshot contains them); later ones are kept. Chunks are
//!    applied as they arrive. Where the server gives no exact position (MySQL), a keyed
//!    table loads at the low watermark `L` instead: its view lies somewhere between `L` and
//!    the high watermark `H`, the changes after `L` are kept (those the view holds apply
//!    again harmlessly: whole row images, upserted by key), and the phase ends only once
//!    the binlog is past `H`.
//! 3. **Streaming**: after the last chunk the kept changes are applied in binlog order, then
//!    every later transaction is applied as it arrives.
//!
//! No key is ever ordered or matched in Rust (only an UPDATE's own before and after keys are
//! checked for byte equality, to send just its new image), so collations cannot break the
//! merge, and tables
//! without a primary key get an exact multiset. The binlog reader starts at a position taken
//! before any snapshot begins, so nothing between the two is missed.
//!
//! # Atomicity and restarts
//! All changes of one upstream transaction to streaming tables are committed with one
//! [`Dataflow::commit`](crate::dataflow::Dataflow::commit), together with the source's progress (binlog position, which tables are
//! streaming) — the binlog is the write-ahead log. After a restart the source resumes from the
//! stored position; tables whose snapshot had not finished are emptied and snapshotted again.

pub mod binlog;
mod kind;
pub mod position;
pub mod rows;
pub mod schema;
pub mod snapshot;
pub mod types;

pub use kind::{BinlogCatchUp, MySql};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use self::binlog::RowChange;
use self::position::BinlogPosition;
use self::schema::{upstream, TableSpec};
use self::types::Cell;
use super::{SourceHandle, SourceProbe, SourceStatus, TableStatus};
use crate::catalog::{Catalog, Namespace};
use crate::change::{ApplyMode, ChangeBatch, CommitOrigin};
use crate::error::{Error, Result};
use crate::state::{keys, StateStore, TableState, WriteBatch};

/// Staged bytes above which the applier writes a checkpoint itself instead of waiting for
/// the interval.
const STAGED_LIMIT: usize = 256 << 20;

/// What the binlog reader and the snapshot readers tell the applier.
pub enum Message {
    Transaction {
        end: BinlogPosition,
        timestamp: u32,
        /// The transaction's GTID, when the upstream writes them.
        gtid: Option<String>,
        changes: Vec<(usize, RowChange)>,
    },
    Ddl {
        end: BinlogPosition,
        table: usize,
        statement: String,
        truncate: bool,
    },
    /// The upstream is idle at `position` (after a rotation, in a new file): the stored
    /// position may move there when no transaction is half read.
    Heartbeat {
        position: BinlogPosition,
        between_transactions: bool,
    },
    TableError {
        table: usize,
        message: String,
    },
    /// A snapshot's view is open: exactly at `position`, or — with `replay_from`, the low
    /// watermark where the server gives no exact position (MySQL) — somewhere after
    /// `replay_from` and at or before `position`.
    SnapshotStart {
        table: usize,
        position: BinlogPosition,
        replay_from: Option<BinlogPosition>,
        chunks_total: u64,
        /// The upstream's estimate of the table's rows (InnoDB's `TABLE_ROWS`), if any.
        rows_estimate: Option<u64>,
    },
    /// A chunk of a snapshot; `last_key` is its last row's key (text values) when the
    /// snapshot is read in key order and can be resumed after it.
    SnapshotRows {
        table: usize,
        batch: RecordBatch,
        last_key: Option<Vec<Vec<u8>>>,
    },
    SnapshotDone {
        table: usize,
    },
    /// An upstream `ALTER TABLE` at `end` changed captured tables in a way they follow: per
    /// unit, its new description and the values existing rows got in the added columns
    /// (`None`: not constants; the unit is snapshotted again). The binlog reader stops after
    /// sending it; the source restarts its read after the ALTER with the new descriptions.
    SchemaChange {
        end: BinlogPosition,
        gtid: Option<String>,
        tables: Vec<(usize, TableSpec, Option<Vec<Cell>>)>,
    },
    /// `CREATE TABLE` of a table matching the shard pattern of captured table `table`:
    /// `rejected` says why it is not merged (its columns differ), or it joins the table.
    NewShard {
        end: BinlogPosition,
        table: usize,
        shard: String,
        rejected: Option<String>,
    },
}

/// What the run loop does after a message.
enum Flow {
    Continue,
    /// The set of units changed: restart the run from the stored position.
    Restart,
}

/// Options of `CREATE SOURCE ... WITH (...)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceOptions {
    pub server_id: u32,
    pub snapshot: bool,
    pub chunk_size: usize,
    pub parallelism: usize,
    /// How a snapshot finds where its view lies in the binlog (`SNAPSHOT_POSITION`).
    #[serde(default)]
    pub snapshot_position: snapshot::ViewPosition,
}

impl SourceOptions {
    /// Reads and checks the options.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = SourceOptions {
            server_id: 5400,
            snapshot: true,
            chunk_size: 8192,
            parallelism: 2,
            snapshot_position: snapshot::ViewPosition::Auto,
        };
        for (k, v) in options {
            let num = |max: u64| -> Result<u64> {
                v.parse::<u64>().ok().filter(|n| *n >= 1 && *n <= max).ok_or_else(|| {
                    Error::InvalidParameterValue(format!("{k} must be a number from 1 to {max}, got {v}"))
                })
            };
            match k.as_str() {
                "SERVER_ID" => o.server_id = num(u32::MAX as u64)? as u32,
                "CHUNK_SIZE" => o.chunk_size = num(1 << 24)? as usize,
                "SNAPSHOT_PARALLELISM" => o.parallelism = num(64)? as usize,
                "SNAPSHOT" => {
                    o.snapshot = match v.to_ascii_lowercase().as_str() {
                        "initial" => true,
                        "never" => false,
                        _ => {
                            return Err(Error::InvalidParameterValue(format!(
                                "SNAPSHOT must be 'initial' or 'never', got '{v}'"
                            )))
                        }
                    }
                }
                "SNAPSHOT_POSITION" => {
                    o.snapshot_position = match v.to_ascii_lowercase().as_str() {
                        "auto" => snapshot::ViewPosition::Auto,
                        "exact" => snapshot::ViewPosition::Exact,
                        "watermark" | "watermarks" => snapshot::ViewPosition::Watermark,
                        _ => {
                            return Err(Error::InvalidParameterValue(format!(
                                "SNAPSHOT_POSITION must be 'auto', 'exact' or 'watermark', got '{v}'"
                            )))
                        }
                    }
                }
                other => {
                    return Err(Error::InvalidParameterValue(format!(
                        "unknown source option {other} (valid: SERVER_ID, SNAPSHOT, CHUNK_SIZE, \
                         SNAPSHOT_PARALLELISM, SNAPSHOT_POSITION)"
                    )))
                }
            }
        }
        Ok(o)
    }
}

/// Connection options from a `CREATE CONNECTION ... TO MYSQL` option map.
pub fn connection_opts(options: &BTreeMap<String, String>) -> Result<mysql_async::Opts> {
    let host = options.get("HOST").cloned().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = options
        .get("PORT")
        .map_or(Ok(3306), |p| p.parse().map_err(|_| Error::InvalidParameterValue(format!("bad PORT {p}"))))?;
    let builder = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(options.get("USER").cloned())
        .pass(options.get("PASSWORD").cloned())
        .prefer_socket(false)
        .wait_timeout(Some(28800));
    Ok(builder.into())
}

/// The server's current binlog end (`SHOW MASTER STATUS`; MySQL 8.4 calls it BINARY LOG STATUS).
pub async fn current_position(conn: &mut mysql_async::Conn) -> Result<BinlogPosition> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        // MySQL 8.4 removed the old spelling (a syntax error there); any other error is
        // the answer, and the usual one is a missing grant.
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query_first("SHOW BINARY LOG STATUS").await.map_err(upstream)?
        }
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1227 | 1045 | 1142) => {
            return Err(Error::InsufficientPrivilege {
                message: format!("the upstream user may not read the binlog position: {}", e.message),
                hint: "Grant it upstream: GRANT BINLOG MONITOR, REPLICATION SLAVE, SELECT ON *.* TO 'user'@'%' \
                       (MariaDB; on MySQL: REPLICATION CLIENT, REPLICATION SLAVE, SELECT)."
                    .into(),
            })
        }
        Err(e) => return Err(upstream(e)),
    };
    let row = row.ok_or_else(|| Error::InvalidParameterValue(
        "the upstream server has no binary log: start it with log_bin (and binlog_format=ROW, binlog_row_image=FULL)".into(),
    ))?;
    let file: String = row.get(0).ok_or_else(|| Error::Internal("SHOW MASTER STATUS without a file".into()))?;
    let pos: u64 = row.get(1).ok_or_else(|| Error::Internal("SHOW MASTER STATUS without a position".into()))?;
    Ok(BinlogPosition { file, pos })
}

/// Checks that the upstream server can feed a source, with the fix in each error.
pub async fn check_upstream(conn: &mut mysql_async::Conn, server_id: u32) -> Result<()> {
    let vars: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin', 'binlog_format', 'binlog_row_image', 'server_id')",
        )
        .await
        .map_err(upstream)?;
    let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_ascii_uppercase());
    let fix = |what: &str| {
        Error::InvalidParameterValue(format!(
            "upstream {what}; Headwater needs log_bin=ON, binlog_format=ROW, binlog_row_image=FULL \
         (and binlog_row_metadata=FULL on MariaDB/MySQL 8) in the server's configuration"
        ))
    };
    if get("log_bin").as_deref() != Some("ON") {
        return Err(fix("binary logging is off"));
    }
    if get("binlog_format").as_deref() != Some("ROW") {
        return Err(fix(&format!("binlog_format is {}", get("binlog_format").unwrap_or_default())));
    }
    if get("binlog_row_image").as_deref() != Some("FULL") {
        return Err(fix(&format!("binlog_row_image is {}", get("binlog_row_image").unwrap_or_default())));
    }
    if get("server_id").as_deref() == Some(server_id.to_string().as_str()) {
        return Err(Error::InvalidParameterValue(format!(
            "SERVER_ID {server_id} is the upstream server's own server_id; choose another with WITH (SERVER_ID = n)"
        )));
    }
    let replicas: Vec<mysql_async::Row> = conn.query("SHOW SLAVE HOSTS").await.unwrap_or_default();
    if replicas.iter().any(|r| r.get::<u32, _>(0) == Some(server_id)) {
        return Err(Error::InvalidParameterValue(format!(
            "SERVER_ID {server_id} is already used by another replica of the upstream server; choose another"
        )));
    }
    current_position(conn).await.map_err(|e| match e {
        Error::DataException { message, .. } if message.contains("denied") => Error::InvalidParameterValue(format!(
            "{message}; grant the user REPLICATION SLAVE, REPLICATION CLIENT (BINLOG MONITOR) and SELECT"
        )),
        other => other,
    })?;
    Ok(())
}

/// The progress a source persists with every commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    position: Option<BinlogPosition>,
    /// Tables whose snapshot is complete.
    streaming: BTreeSet<String>,
    /// Their snapshot positions: after a restart, transactions up to these positions are
    /// already in the table and must not be applied again.
    #[serde(default)]
    snapshot_at: BTreeMap<String, BinlogPosition>,
    /// Snapshots in progress: the chunks already in the table, stored with them, so a crash
    /// or reconnect resumes after the last one instead of starting over.
    #[serde(default)]
    resume: BTreeMap<String, SnapshotResume>,
    /// The GTID of the last applied transaction (shown in `hw_catalog.sources`).
    #[serde(default)]
    gtid: Option<String>,
    /// Shards created upstream after CREATE SOURCE, by local table name: their whole history
    /// is in the binlog after the CREATE TABLE, so they join without a snapshot.
    #[serde(default)]
    new_shards: BTreeMap<String, Vec<String>>,
    /// Tables created upstream that match a shard pattern but differ from the other shards:
    /// `db.table` → (local table, why), shown in `hw_catalog.source_tables` as `error`.
    #[serde(default)]
    rejected_shards: BTreeMap<String, (String, String)>,
    /// Units stopped by something they cannot follow (upstream DDL, a row that does not
    /// decode), by progress name, with the reason: they stay stopped across restarts and
    /// reconnects (the binlog has moved past the cause) until dropped or re-snapshotted.
    #[serde(default)]
    failed: BTreeMap<String, String>,
}

/// How far a key-ordered snapshot got: the table holds every upstream row whose key is at or
/// before `after`, as of binlog position `at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotResume {
    at: BinlogPosition,
    after: Vec<Vec<u8>>,
    rows_copied: u64,
    chunks_done: u64,
}

/// Forgets everything a source has read (ALTER SOURCE ... RESNAPSHOT): it starts again from
/// the upstream's current position with a snapshot of every table, which the caller has
/// emptied.
pub fn reset_progress(store: &dyn StateStore, source_id: u64) -> Result<()> {
    let key = keys::source_progress(source_id);
    // Shards that joined later are part of the definition, not of what was read.
    let new_shards = match store.get(&key)? {
        Some(v) => serde_json::from_slice::<Progress>(&v).map(|p| p.new_shards).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut b = WriteBatch::default();
    if new_shards.is_empty() {
        b.delete(key);
    } else {
        let kept = Progress { new_shards, ..Progress::default() };
        b.put(key, serde_json::to_vec(&kept).map_err(|e| Error::Internal(e.to_string()))?);
    }
    store.apply(b)
}

/// Removes tables from a source's stored progress (ALTER SOURCE), so a table added again
/// under the same name is snapshotted afresh.
pub fn forget_tables(store: &dyn StateStore, source_id: u64, names: &[String]) -> Result<()> {
    let key = keys::source_progress(source_id);
    let Some(v) = store.get(&key)? else { return Ok(()) };
    let mut progress: Progress =
        serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("corrupt source progress: {e}")))?;
    for n in names {
        progress.streaming.remove(n);
        progress.snapshot_at.remove(n);
        progress.resume.remove(n);
        progress.new_shards.remove(n);
        progress.rejected_shards.retain(|_, (table, _)| table != n);
        progress.failed.retain(|unit, _| unit != n && !unit.starts_with(&format!("{n}/")));
    }
    let mut b = WriteBatch::default();
    b.put(key, serde_json::to_vec(&progress).map_err(|e| Error::Internal(e.to_string()))?);
    store.apply(b)
}

/// A captured table: its upstream description and its local rows.
pub struct CapturedTable {
    pub spec: Arc<TableSpec>,
    pub state: Arc<TableState>,
}

impl CapturedTable {
    /// The table's catalog entry (where its description lives).
    fn catalog_entry(&self, catalog: &Catalog) -> Result<crate::catalog::CatalogEntry> {
        catalog
            .get(Namespace::Relation, &self.spec.name)
            .filter(|o| o.entry.id == self.state.id())
            .map(|o| o.entry)
            .ok_or_else(|| Error::Internal(format!("captured table {} is not in the catalog", self.spec.name)))
    }

    /// The Arrow schema of the local table.
    pub fn schema(spec: &TableSpec) -> SchemaRef {
        Arc::new(Schema::new(
            spec.columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(&c.name, c.kind.data_type(), c.nullable && !spec.key.contains(&i)))
                .collect::<Vec<_>>(),
        ))
    }
}

/// How `hw_catalog.source_tables` shows a table that matches a shard pattern but was not
/// merged.
fn rejected_shard_status(name: String, upstream: String, why: String) -> TableStatus {
    TableStatus { name, upstream, state: "error".into(), last_error: Some(why), ..Default::default() }
}

/// One MySQL source.
pub struct MySqlSource {
    pub name: String,
    pub id: u64,
    pub connection: String,
    pub opts: mysql_async::Opts,
    pub options: SourceOptions,
    pub tables: Vec<CapturedTable>,
    pub store: Arc<dyn StateStore>,
    /// Every commit goes through the dataflow, which maintains the views over these tables.
    pub dataflow: Arc<crate::dataflow::Dataflow>,
    /// Where the tables' descriptions live (updated when upstream adds columns). Weak: the
    /// catalog owns the store's lock, and a source task must not keep it alive.
    pub catalog: std::sync::Weak<Catalog>,
}

/// One upstream table feeding a captured table: the table itself, or one of its shards.
/// Phases, progress and status are kept per unit.
#[derive(Clone)]
pub struct Unit {
    /// Index of the captured table in [`MySqlSource::tables`].
    pub table: usize,
    /// How this upstream table is read: the captured table's description, or a shard's own
    /// ([`TableSpec::shard_specs`]).
    pub spec: Arc<TableSpec>,
    /// The captured table's description.
    pub table_spec: Arc<TableSpec>,
    /// The upstream table name (a shard's name for merged shards).
    pub upstream_table: String,
}

impl Unit {
    /// The name under which the unit's progress is stored.
    fn progress_name(&self) -> String {
        if self.spec.shards.is_empty() {
            self.spec.name.clone()
        } else {
            format!("{}/{}", self.spec.name, self.upstream_table)
        }
    }
}

enum Buffered {
    Rows(Vec<RowChange>),
    Truncate,
}

enum Phase {
    Pending(Vec<(BinlogPosition, Buffered)>),
    /// The snapshot read as of `at` is arriving in chunks; later changes wait in `buffer`.
    Loading {
        at: BinlogPosition,
        buffer: Vec<(BinlogPosition, Buffered)>,
        started: Instant,
        /// A resumed snapshot: the rows already copied are as of this older position, and the
        /// changes between it and `at` are applied as the binlog delivers them. The snapshot
        /// is not finished (and its stored position stays here) until they all are.
        catch_up_from: Option<BinlogPosition>,
        /// A view bracketed by watermarks (MySQL): `at` is the low one, this the high one.
        /// The rows are consistent only once the changes up to here are applied after them,
        /// so the snapshot does not finish before the binlog has delivered them.
        settles_at: Option<BinlogPosition>,
        /// The last chunk arrived (waiting for the catch-up).
        read: bool,
    },
    /// Applying transactions as they arrive — except those at or before the snapshot
    /// position, which the binlog reader may still deliver after the snapshot finished
    /// (replaying them would double-count rows of a multiset).
    Streaming(Option<BinlogPosition>),
    Failed,
}

impl MySqlSource {
    /// The capture units of this source, in table order.
    pub fn units(&self) -> Vec<Unit> {
        let new_shards = self.load_progress().map(|p| p.new_shards).unwrap_or_default();
        self.tables
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                let later = new_shards.get(&t.spec.name).cloned().unwrap_or_default();
                t.spec.upstream_tables().into_iter().chain(later).map(move |u| Unit {
                    table: i,
                    spec: t.spec.for_shard(&u).map_or_else(|| t.spec.clone(), |s| Arc::new(s.clone())),
                    table_spec: t.spec.clone(),
                    upstream_table: u,
                })
            })
            .collect()
    }

    /// One status per unit, then one per rejected shard.
    fn table_statuses(&self, units: &[Unit]) -> Vec<TableStatus> {
        let rejected = self.load_progress().map(|p| p.rejected_shards).unwrap_or_default();
        units
            .iter()
            .map(|u| TableStatus {
                name: u.spec.name.clone(),
                upstream: format!("{}.{}", u.spec.database, u.upstream_table),
                state: "pending".into(),
                ..Default::default()
            })
            .chain(rejected.into_iter().map(|(upstream, (name, why))| rejected_shard_status(name, upstream, why)))
            .collect()
    }

    /// Starts the source in the background.
    pub fn start(self) -> SourceHandle {
        let units = self.units();
        let status = Arc::new(Mutex::new(SourceStatus {
            name: self.name.clone(),
            connection: self.connection.clone(),
            state: "starting".into(),
            tables: self.table_statuses(&units),
            ..Default::default()
        }));
        let (applied_tx, applied) = watch::channel(None);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let catch_up = BinlogCatchUp { status: status.clone(), applied, opts: self.opts.clone() };
        let probe = SourceProbe { status: status.clone(), catch_up: Arc::new(catch_up) };
        let runner = Runner { source: Arc::new(self), units, status, applied: applied_tx };
        let task = tokio::spawn(runner.run(shutdown_rx));
        SourceHandle { probe, shutdown, task }
    }

    /// Reads the tables' descriptions again from the catalog (after a schema change).
    fn reload_specs(&mut self) -> Result<()> {
        let catalog = self.catalog.upgrade().ok_or_else(|| Error::Internal("the catalog is gone".into()))?;
        for t in &mut self.tables {
            let details = t.catalog_entry(&catalog)?.details.unwrap_or_default();
            let spec: TableSpec = serde_json::from_value(details)
                .map_err(|e| Error::Storage(format!("corrupt captured table {}: {e}", t.spec.name)))?;
            t.spec = Arc::new(spec);
        }
        Ok(())
    }

    fn progress_key(&self) -> Vec<u8> {
        keys::source_progress(self.id)
    }

    fn load_progress(&self) -> Result<Progress> {
        match self.store.get(&self.progress_key())? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("corrupt source progress: {e}"))),
            None => Ok(Progress::default()),
        }
    }

    fn progress_batch(&self, p: &Progress) -> Result<WriteBatch> {
        let mut b = WriteBatch::default();
        b.put(self.progress_key(), serde_json::to_vec(p).map_err(|e| Error::Internal(e.to_string()))?);
        Ok(b)
    }
}

struct Runner {
    source: Arc<MySqlSource>,
    units: Vec<Unit>,
    status: Arc<Mutex<SourceStatus>>,
    applied: watch::Sender<Option<BinlogPosition>>,
}

impl Runner {
    fn status(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let result = tokio::select! {
                r = self.run_once() => r,
                _ = shutdown.changed() => return,
            };
            match result {
                Err(Error::SourceLost(why)) => {
                    let message = format!(
                        "{why}. Re-snapshot every table of the source with: ALTER SOURCE {} RESNAPSHOT",
                        crate::ident::quote_ident(&self.source.name)
                    );
                    tracing::error!(source = %self.source.name, "{message}");
                    {
                        let mut s = self.status();
                        s.state = "error".into();
                        s.last_error = Some(message);
                    }
                    let _ = shutdown.changed().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(source = %self.source.name, "source stopped: {e}; reconnecting in {backoff:?}");
                    let mut s = self.status();
                    s.state = "reconnecting".into();
                    s.last_error = Some(e.to_string());
                }
                Ok(()) => {
                    // The units changed (a shard joined, a table gained columns): start over
                    // from the stored position.
                    let reloaded = match Arc::get_mut(&mut self.source) {
                        Some(src) => src.reload_specs(),
                        None => Err(Error::Internal("the source is still in use".into())),
                    };
                    if let Err(e) = reloaded {
                        tracing::error!(source = %self.source.name, "cannot restart the source: {e}");
                        {
                            let mut s = self.status();
                            s.state = "error".into();
                            s.last_error = Some(e.to_string());
                        }
                        let _ = shutdown.changed().await;
                        return;
                    }
                    self.units = self.source.units();
                    let fresh = self.source.table_statuses(&self.units);
                    let mut s = self.status();
                    let old = std::mem::replace(&mut s.tables, fresh);
                    for new in s.tables.iter_mut().filter(|t| t.state != "error") {
                        if let Some(o) = old.iter().find(|o| o.upstream == new.upstream) {
                            *new = o.clone();
                        }
                    }
                    backoff = Duration::from_millis(500);
                    continue;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn run_once(&self) -> Result<()> {
        let src = &self.source;
        let mut progress = src.load_progress()?;
        let mut conn = mysql_async::Conn::new(src.opts.clone()).await.map_err(upstream)?;
        let start = match progress.position.clone() {
            Some(p) => p,
            None => {
                let p = current_position(&mut conn).await?;
                if !src.options.snapshot {
                    progress.streaming = self.units.iter().map(Unit::progress_name).collect();
                }
                progress.position = Some(p.clone());
                src.store.apply(src.progress_batch(&progress)?)?;
                p
            }
        };
        if progress.gtid.is_none() {
            // MariaDB maps a position to its GTID state; MySQL has no such function (its
            // GTIDs appear with the first transaction read).
            progress.gtid = conn
                .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (&start.file, start.pos))
                .await
                .ok()
                .flatten()
                .flatten()
                .filter(|g| !g.is_empty());
        }
        drop(conn);
        // Units whose snapshot had not finished (a crash or reconnect cut it short). A keyed
        // table keeps the chunks it has: each unit resumes after its last stored chunk, or
        // starts afresh if none was stored. A multiset cannot tell copied rows apart: it is
        // emptied and every unit of it is snapshotted again.
        let mut to_snapshot: Vec<(usize, Option<Vec<Vec<u8>>>)> = Vec::new();
        let mut binlog_start = start.clone();
        for (ti, t) in src.tables.iter().enumerate() {
            let units: Vec<usize> = (0..self.units.len()).filter(|&u| self.units[u].table == ti).collect();
            let unfinished: Vec<usize> = units
                .iter()
                .copied()
                .filter(|&u| {
                    let name = self.units[u].progress_name();
                    !progress.streaming.contains(&name) && !progress.failed.contains_key(&name)
                })
                .collect();
            if unfinished.is_empty() {
                continue;
            }
            if snapshot::resume_key(&t.spec).is_some() {
                for u in unfinished {
                    let after = progress.resume.get(&self.units[u].progress_name()).map(|r| {
                        tracing::info!(
                            source = %src.name, table = %t.spec.name, rows = r.rows_copied, at = %r.at,
                            "resuming the snapshot after the last stored chunk"
                        );
                        if r.at < binlog_start {
                            binlog_start = r.at.clone();
                        }
                        r.after.clone()
                    });
                    to_snapshot.push((u, after));
                }
            } else {
                truncate(src, t, &mut WriteBatch::default())?;
                for &u in &units {
                    let name = self.units[u].progress_name();
                    progress.streaming.remove(&name);
                    progress.snapshot_at.remove(&name);
                    progress.resume.remove(&name);
                    to_snapshot.push((u, None));
                }
            }
        }
        let mut phases: Vec<Phase> = Vec::with_capacity(self.units.len());
        for u in 0..self.units.len() {
            let name = self.units[u].progress_name();
            if let Some(why) = progress.failed.get(&name) {
                phases.push(Phase::Failed);
                let mut s = self.status();
                s.tables[u].state = "error".into();
                s.tables[u].last_error = Some(why.clone());
            } else if to_snapshot.iter().any(|(x, _)| *x == u) {
                phases.push(Phase::Pending(Vec::new()));
                let mut s = self.status();
                let ts = &mut s.tables[u];
                let (rows, chunks) = progress.resume.get(&name).map_or((0, 0), |r| (r.rows_copied, r.chunks_done));
                (ts.rows_copied, ts.chunks_done) = (rows, chunks);
            } else {
                // Transactions up to `start` are in the table already, and so are those up to
                // its snapshot position; the binlog may replay them when it starts earlier
                // for a resumed snapshot.
                let at = progress.snapshot_at.get(&name).cloned().into_iter().chain(Some(start.clone())).max();
                phases.push(Phase::Streaming(at.filter(|at| *at > binlog_start)));
                self.status().tables[u].state = "streaming".into();
            }
        }
        {
            let mut s = self.status();
            s.state = if to_snapshot.is_empty() { "streaming" } else { "snapshotting" }.into();
            s.position = Some(start.clone());
            s.gtid = progress.gtid.clone();
        }
        self.applied.send_replace(Some(start.clone()));

        let (tx, mut rx) = mpsc::channel::<Message>(64);
        let mut tasks: JoinSet<Result<()>> = JoinSet::new();
        let units = Arc::new(self.units.clone());
        tasks.spawn(binlog::read(src.opts.clone(), src.options.server_id, binlog_start, units, tx.clone()));
        // Snapshots in progress (each an open transaction on its own connection) and chunk
        // reads in flight: up to 4 tables per read permit take turns chunk by chunk.
        let open = Arc::new(Semaphore::new(src.options.parallelism * 4));
        let reads = Arc::new(Semaphore::new(src.options.parallelism));
        for (u, after) in to_snapshot {
            let (tx, open, reads) = (tx.clone(), open.clone(), reads.clone());
            let unit = self.units[u].clone();
            let schema = src.tables[unit.table].state.schema();
            let task = snapshot::SnapshotTask {
                opts: src.opts.clone(),
                idx: u,
                unit,
                schema,
                chunk_size: src.options.chunk_size,
                after,
                view_position: src.options.snapshot_position,
            };
            tasks.spawn(async move {
                let _open = open.acquire_owned().await.map_err(|_| Error::Internal("semaphore closed".into()))?;
                snapshot::snapshot_table(task, &reads, tx).await
            });
        }
        drop(tx);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => {
                        if let Flow::Restart = self.handle(m, &mut phases, &mut progress)? {
                            return Ok(());
                        }
                        // Bound what waits for the next checkpoint (a fast snapshot or a
                        // binlog catch-up can stage faster than the interval writes).
                        if src.store.staged_bytes() > STAGED_LIMIT {
                            src.store.flush()?;
                        }
                    }
                    None => {
                        // Every reader is gone: report the first one's error.
                        while let Some(done) = tasks.join_next().await {
                            match done {
                                Ok(Err(e)) => return Err(e),
                                Err(e) => return Err(Error::Internal(format!("source task failed: {e}"))),
                                Ok(Ok(())) => {}
                            }
                        }
                        return Err(Error::Internal("all source readers stopped".into()));
                    }
                },
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(e) => return Err(Error::Internal(format!("source task failed: {e}"))),
                    }
                }
            }
        }
    }

    /// Handles one message; units it stopped are recorded in the stored progress.
    fn handle(&self, msg: Message, phases: &mut [Phase], progress: &mut Progress) -> Result<Flow> {
        let flow = self.handle_message(msg, phases, progress)?;
        let mut stopped = false;
        for (u, phase) in phases.iter().enumerate() {
            let name = self.units[u].progress_name();
            if matches!(phase, Phase::Failed) && !progress.failed.contains_key(&name) {
                let why = self.status().tables[u].last_error.clone().unwrap_or_default();
                progress.failed.insert(name, why);
                stopped = true;
            }
        }
        if stopped {
            self.source.dataflow.commit(&[], self.source.progress_batch(progress)?)?;
        }
        Ok(flow)
    }

    fn handle_message(&self, msg: Message, phases: &mut [Phase], progress: &mut Progress) -> Result<Flow> {
        let src = &self.source;
        match msg {
            Message::Transaction { end, timestamp, gtid, changes } => {
                // Rows for streaming units, grouped per captured table in commit order;
                // rows for the other units are buffered per unit.
                let mut per_table: BTreeMap<usize, Vec<RowChange>> = BTreeMap::new();
                let mut buffered: BTreeMap<usize, Vec<RowChange>> = BTreeMap::new();
                for (u, c) in changes {
                    match &phases[u] {
                        Phase::Streaming(Some(at)) if end <= *at => {}
                        Phase::Streaming(_) => per_table.entry(self.units[u].table).or_default().push(c),
                        Phase::Pending(_) => buffered.entry(u).or_default().push(c),
                        Phase::Loading { at, .. } if end > *at => buffered.entry(u).or_default().push(c),
                        Phase::Loading { catch_up_from: Some(from), .. } if end > *from => {
                            per_table.entry(self.units[u].table).or_default().push(c)
                        }
                        Phase::Loading { .. } | Phase::Failed => {}
                    }
                }
                for (u, rows) in buffered {
                    if let Phase::Pending(buf) | Phase::Loading { buffer: buf, .. } = &mut phases[u] {
                        buf.push((end.clone(), Buffered::Rows(rows)));
                    }
                }
                let mut batches = Vec::with_capacity(per_table.len());
                for (t, rows) in per_table {
                    batches.push((t, to_batch(&src.tables[t], rows)?));
                }
                // The binlog may replay from before the stored position (a resumed snapshot
                // needs it); the position never goes back.
                if progress.position.as_ref().is_none_or(|p| end > *p) {
                    progress.position = Some(end.clone());
                    if gtid.is_some() {
                        progress.gtid = gtid;
                    }
                }
                // Resumed snapshots whose catch-up this transaction completes.
                let caught_up = self.caught_up(phases, &end, progress);
                let refs: Vec<(&TableState, &ChangeBatch)> =
                    batches.iter().map(|(t, b)| (src.tables[*t].state.as_ref(), b)).collect();
                let origin = CommitOrigin {
                    source: Some(src.name.clone()),
                    file: Some(end.file.clone()),
                    pos: Some(end.pos),
                    ts_ms: timestamp as i64 * 1000,
                    snapshot: false,
                };
                src.dataflow.commit_from(&refs, src.progress_batch(progress)?, &origin)?;
                for u in caught_up {
                    self.finish_snapshot(phases, u, progress)?;
                }
                let lag = (chrono::Utc::now().timestamp() - timestamp as i64).max(0) as f64;
                {
                    let mut s = self.status();
                    s.position = progress.position.clone();
                    s.gtid = progress.gtid.clone();
                    s.lag_seconds = Some(lag);
                    s.last_error = None;
                    if s.state == "reconnecting" || s.state == "starting" {
                        s.state = if phases.iter().all(|p| matches!(p, Phase::Streaming(_) | Phase::Failed)) {
                            "streaming".into()
                        } else {
                            "snapshotting".into()
                        };
                    }
                }
                self.applied.send_replace(progress.position.clone());
            }
            Message::Heartbeat { position, between_transactions } => {
                // An idle upstream whose binlog rotated (FLUSH LOGS, max_binlog_size) moves
                // the stored position to the new file: a restart then does not ask for a file
                // that may have been purged meanwhile, and real_time_recency sees the source
                // caught up with a position in the new file.
                let advanced = between_transactions && progress.position.as_ref().is_none_or(|p| position > *p);
                if advanced {
                    progress.position = Some(position.clone());
                }
                let caught_up = self.caught_up(phases, &position, progress);
                if advanced || !caught_up.is_empty() {
                    src.dataflow.commit(&[], src.progress_batch(progress)?)?;
                }
                for u in caught_up {
                    self.finish_snapshot(phases, u, progress)?;
                }
                {
                    let mut s = self.status();
                    s.lag_seconds = Some(0.0);
                    s.position = progress.position.clone();
                }
                if advanced {
                    self.applied.send_replace(progress.position.clone());
                } else {
                    self.applied.send_modify(|_| {});
                }
            }
            Message::Ddl { end, table: u, statement, truncate: is_truncate } => {
                let unit = &self.units[u];
                if is_truncate {
                    match &mut phases[u] {
                        Phase::Streaming(Some(at)) if end <= *at => {}
                        Phase::Streaming(_) => {
                            let mut batch = src.progress_batch(progress)?;
                            if let Err(message) = truncate_unit(src, unit, &mut batch) {
                                self.fail_unit(phases, u, message);
                            }
                        }
                        Phase::Pending(buf) => buf.push((end, Buffered::Truncate)),
                        Phase::Loading { at, buffer, .. } if end > *at => buffer.push((end, Buffered::Truncate)),
                        Phase::Loading { catch_up_from: Some(from), .. } if end > *from => {
                            if let Err(message) = truncate_unit(src, unit, &mut WriteBatch::default()) {
                                self.fail_unit(phases, u, message);
                            }
                        }
                        Phase::Loading { .. } => {}
                        Phase::Failed => {}
                    }
                } else {
                    let message = format!(
                        "upstream DDL on {}: {statement} — the table is frozen at binlog position {end}; \
                         recreate the source (DROP SOURCE ...; CREATE SOURCE ...) to capture the new schema",
                        schema::quote_upstream(&unit.spec.database, &unit.upstream_table)
                    );
                    self.fail_unit(phases, u, message);
                }
            }
            Message::TableError { table, message } => self.fail_unit(phases, table, message),
            Message::SnapshotStart { table: u, position, replay_from, chunks_total, rows_estimate } => {
                if let Some(n) = rows_estimate {
                    src.tables[self.units[u].table].state.expect_rows(n as usize);
                }
                let name = self.units[u].progress_name();
                let resumed_from = progress.resume.get(&name).map(|r| r.at.clone());
                // Bracketed by watermarks, a keyed table's view lies somewhere after
                // `replay_from`: every change after it is applied after the chunks (row images
                // are idempotent on a keyed table), and the snapshot is not finished before
                // the binlog is past `position`.
                let settles_at = replay_from.is_some().then(|| position.clone());
                let position = replay_from.unwrap_or(position);
                if let Phase::Pending(buf) = std::mem::replace(&mut phases[u], Phase::Failed) {
                    // Changes after `position` wait for the last chunk. A resumed snapshot
                    // also owes the table what happened between its first and this position
                    // (to the rows already copied; for the others the new read has it, and
                    // replaying row images is idempotent on a keyed table).
                    // Changes past `position` already here: the binlog has delivered the
                    // whole catch-up.
                    let delivered = buf.iter().any(|(p, _)| *p >= position);
                    let mut catch_up = Vec::new();
                    let mut kept = Vec::new();
                    for (p, b) in buf {
                        if p > position {
                            kept.push((p, b));
                        } else if resumed_from.as_ref().is_some_and(|from| p > *from) {
                            catch_up.push(b);
                        }
                    }
                    // The rest of the catch-up arrives with the binlog (it may lag behind).
                    let catch_up_from = resumed_from.clone().filter(|from| *from < position && !delivered);
                    if catch_up_from.is_none() {
                        if let Some(r) = progress.resume.get_mut(&name) {
                            r.at = position.clone();
                        }
                    }
                    if resumed_from.is_some() && !self.replay(phases, u, catch_up, progress)? {
                        return Ok(Flow::Continue);
                    }
                    let reader_at = progress.position.as_ref();
                    phases[u] = Phase::Loading {
                        at: position,
                        buffer: kept,
                        started: Instant::now(),
                        catch_up_from,
                        settles_at: settles_at.filter(|high| reader_at.is_none_or(|r| r < high)),
                        read: false,
                    };
                }
                let mut s = self.status();
                let ts = &mut s.tables[u];
                ts.state = "snapshotting".into();
                ts.chunks_total = chunks_total.max(ts.chunks_done);
            }
            Message::SnapshotRows { table: u, batch, last_key } => {
                let n = batch.num_rows() as u64;
                let change = ChangeBatch { weights: vec![1; batch.num_rows()], data: batch, mode: ApplyMode::Upsert };
                let state = &src.tables[self.units[u].table].state;
                // Until a resumed snapshot has caught up, its stored position stays the old one.
                let (elapsed, at) = match &phases[u] {
                    Phase::Loading { at, started, catch_up_from, .. } => {
                        (started.elapsed().as_secs_f64(), Some(catch_up_from.as_ref().unwrap_or(at).clone()))
                    }
                    _ => (0.0, None),
                };
                let (rows_copied, chunks_done) = {
                    let mut s = self.status();
                    let ts = &mut s.tables[u];
                    ts.rows_copied += n;
                    ts.chunks_done += 1;
                    ts.chunks_total = ts.chunks_total.max(ts.chunks_done);
                    if elapsed > 0.0 {
                        ts.rows_per_second = ts.rows_copied as f64 / elapsed;
                    }
                    (ts.rows_copied, ts.chunks_done)
                };
                // The chunk and how far the snapshot got are stored together.
                let extra = match (last_key, at) {
                    (Some(after), Some(at)) => {
                        let r = SnapshotResume { at, after, rows_copied, chunks_done };
                        progress.resume.insert(self.units[u].progress_name(), r);
                        src.progress_batch(progress)?
                    }
                    _ => WriteBatch::default(),
                };
                let origin = CommitOrigin {
                    source: Some(src.name.clone()),
                    snapshot: true,
                    ts_ms: crate::change::now_ms(),
                    ..CommitOrigin::default()
                };
                src.dataflow.commit_from(&[(state.as_ref(), &change)], extra, &origin)?;
            }
            Message::SnapshotDone { table: u } => {
                let mut ready = false;
                if let Phase::Loading { read, catch_up_from, settles_at, .. } = &mut phases[u] {
                    *read = true;
                    ready = catch_up_from.is_none() && settles_at.is_none();
                }
                if ready {
                    self.finish_snapshot(phases, u, progress)?;
                }
            }
            Message::SchemaChange { end, gtid, tables } => {
                let last = tables.len() - 1;
                for (i, (u, spec, values)) in tables.into_iter().enumerate() {
                    let position = (i == last).then_some((&end, &gtid));
                    if matches!(phases[u], Phase::Failed) && position.is_none() {
                        continue;
                    }
                    let changed = if self.units[u].spec.shards.is_empty() {
                        self.change_schema(phases, u, spec, values, position, progress)
                    } else {
                        self.change_shard_schema(phases, u, spec, values.unwrap_or_default(), position, progress)
                    };
                    if let Err(e) = changed {
                        self.fail_unit(phases, u, format!("cannot follow the upstream ALTER TABLE at {end}: {e}"));
                    }
                }
                return Ok(Flow::Restart);
            }
            Message::NewShard { end, table, shard, rejected } => {
                let name = &src.tables[table].spec.name;
                let upstream = format!("{}.{}", src.tables[table].spec.database, shard);
                if let Some(why) = rejected {
                    tracing::warn!(source = %src.name, table = %name, "{why}");
                    let mut s = self.status();
                    if !s.tables.iter().any(|t| t.upstream == upstream) {
                        s.tables.push(rejected_shard_status(name.clone(), upstream.clone(), why.clone()));
                    }
                    drop(s);
                    progress.rejected_shards.insert(upstream, (name.clone(), why));
                    src.dataflow.commit(&[], src.progress_batch(progress)?)?;
                    return Ok(Flow::Continue);
                }
                tracing::info!(source = %src.name, table = %name, %shard, "a new upstream shard joins the table");
                let spec = src.tables[table].spec.clone();
                let unit = Unit { table, spec: spec.clone(), table_spec: spec, upstream_table: shard.clone() };
                progress.new_shards.entry(name.clone()).or_default().push(shard);
                progress.streaming.insert(unit.progress_name());
                // Everything before the CREATE TABLE is applied (messages arrive in order).
                if progress.position.as_ref().is_none_or(|p| end > *p) {
                    progress.position = Some(end);
                }
                src.dataflow.commit(&[], src.progress_batch(progress)?)?;
                return Ok(Flow::Restart);
            }
        }
        Ok(Flow::Continue)
    }

    /// Gives unit `u`'s table its new description `spec` (upstream ADD COLUMN): a streaming
    /// table keeps its rows, which get `values` in the new columns; a table whose snapshot is
    /// not past the ALTER, or whose new values are not constants, is emptied and snapshotted
    /// again with the new columns. One atomic write: the rows, the catalog entry and — with
    /// `position`, for the last table of the ALTER — the source's position after it.
    fn change_schema(
        &self,
        phases: &mut [Phase],
        u: usize,
        mut spec: TableSpec,
        values: Option<Vec<Cell>>,
        position: Option<(&BinlogPosition, &Option<String>)>,
        progress: &mut Progress,
    ) -> Result<()> {
        let src = &self.source;
        let unit = &self.units[u];
        let t = &src.tables[unit.table];
        let catalog = src.catalog.upgrade().ok_or_else(|| Error::Internal("the catalog is gone".into()))?;
        if matches!(phases[u], Phase::Failed) {
            // A stopped table keeps its shape; only the position moves past the ALTER.
            if position.is_some() {
                move_past(progress, position);
                src.dataflow.commit(&[], src.progress_batch(progress)?)?;
            }
            return Ok(());
        }
        let after = |at: &BinlogPosition| spec.since.as_ref().is_some_and(|since| since > at);
        let streaming_past = matches!(&phases[u], Phase::Streaming(at) if at.as_ref().is_none_or(after));
        let old_width = t.spec.columns.len();
        if spec.columns.len() > old_width {
            spec.widened.push((catalog.next_id(), old_width));
        }
        let new_columns = &spec.columns[old_width..];
        if (values.is_none() || !streaming_past) && !src.options.snapshot {
            return Err(Error::FeatureNotSupported(
                "the table needs a new snapshot to get its new columns, and this source was created with \
                 SNAPSHOT = 'never'"
                    .into(),
            ));
        }
        let arrays = match values.filter(|_| streaming_past) {
            Some(values) => one_row(new_columns, values)?,
            None => {
                tracing::info!(source = %src.name, table = %spec.name, "snapshotting the table again with its new columns");
                // The emptied table is stored as not snapshotted, in the same write: a crash
                // before the new columns are stored snapshots it again (and meets the ALTER
                // again, since the position has not moved past it).
                let name = unit.progress_name();
                progress.streaming.remove(&name);
                progress.snapshot_at.remove(&name);
                progress.resume.remove(&name);
                truncate(src, t, &mut src.progress_batch(progress)?)?;
                new_columns.iter().map(|c| datafusion::arrow::array::new_null_array(&c.kind.data_type(), 1)).collect()
            }
        };
        self.store_spec(t, &spec, &arrays, position, progress)?;
        tracing::info!(
            source = %src.name, table = %spec.name, columns = new_columns.len(),
            "the table follows an upstream ALTER TABLE"
        );
        Ok(())
    }

    /// Gives the merged table of shard unit `u` its new description `spec` after an upstream
    /// ALTER TABLE of the shard (see [`schema::merge_shard_change`]): when the table gains
    /// columns, every row gets `values` in them (the other shards' rows too, as their
    /// descriptions say); one atomic write with the catalog entry and — with `position` — the
    /// source's position after the ALTER. A shard whose snapshot is not past the ALTER read
    /// its rows without the new columns: with the table-name column its rows are removed and
    /// it is snapshotted again; without, it stops.
    fn change_shard_schema(
        &self,
        phases: &mut [Phase],
        u: usize,
        mut spec: TableSpec,
        values: Vec<Cell>,
        position: Option<(&BinlogPosition, &Option<String>)>,
        progress: &mut Progress,
    ) -> Result<()> {
        let src = &self.source;
        let unit = &self.units[u];
        let t = &src.tables[unit.table];
        let catalog = src.catalog.upgrade().ok_or_else(|| Error::Internal("the catalog is gone".into()))?;
        if matches!(phases[u], Phase::Failed) {
            move_past(progress, position);
            return src.dataflow.commit(&[], src.progress_batch(progress)?);
        }
        let since = spec.for_shard(&unit.upstream_table).unwrap_or(&spec).since.clone();
        let past = |at: &BinlogPosition| since.as_ref().is_some_and(|since| since > at);
        if !matches!(&phases[u], Phase::Streaming(at) if at.as_ref().is_none_or(past)) {
            if !src.options.snapshot {
                return Err(Error::FeatureNotSupported(
                    "the shard needs a new snapshot to get its new columns, and this source was created with \
                     SNAPSHOT = 'never'"
                        .into(),
                ));
            }
            // Removed and marked not snapshotted in one write (the position stays before the
            // ALTER): a crash here snapshots the shard again and meets the ALTER again.
            tracing::info!(source = %src.name, shard = %unit.upstream_table, "snapshotting the shard again with its new columns");
            let name = unit.progress_name();
            progress.streaming.remove(&name);
            progress.snapshot_at.remove(&name);
            progress.resume.remove(&name);
            truncate_unit(src, unit, &mut src.progress_batch(progress)?).map_err(|why| {
                Error::FeatureNotSupported(format!(
                    "the shard's snapshot did not include the ALTER TABLE, and its rows cannot be read again: {why}"
                ))
            })?;
        }
        let old_width = t.spec.columns.len();
        if spec.columns.len() > old_width {
            spec.widened.push((catalog.next_id(), old_width));
        }
        let arrays = one_row(&spec.columns[old_width..], values)?;
        self.store_spec(t, &spec, &arrays, position, progress)?;
        tracing::info!(
            source = %src.name, table = %spec.name, shard = %unit.upstream_table, columns = arrays.len(),
            "the merged table follows an upstream ALTER TABLE of a shard"
        );
        Ok(())
    }

    /// Stores table `t`'s new description `spec` in one atomic write with — given `position`
    /// — the source's position after the ALTER, and gives every row `arrays` (one value
    /// each) in the columns the table gains.
    fn store_spec(
        &self,
        t: &CapturedTable,
        spec: &TableSpec,
        arrays: &[datafusion::arrow::array::ArrayRef],
        position: Option<(&BinlogPosition, &Option<String>)>,
        progress: &mut Progress,
    ) -> Result<()> {
        let src = &self.source;
        let catalog = src.catalog.upgrade().ok_or_else(|| Error::Internal("the catalog is gone".into()))?;
        let mut entry = t.catalog_entry(&catalog)?;
        entry.create_sql = spec.create_sql();
        entry.details = Some(serde_json::to_value(spec).map_err(|e| Error::Internal(e.to_string()))?);
        let mut batch = WriteBatch::default();
        Catalog::write_entry(&entry, &mut batch)?;
        move_past(progress, position);
        batch.extend(src.progress_batch(progress)?);
        if arrays.is_empty() {
            src.dataflow.commit(&[], batch)?;
        } else {
            src.dataflow.widen_table(&t.state, CapturedTable::schema(spec), arrays, batch)?;
        }
        catalog.replace_entry(entry);
        Ok(())
    }

    /// Units of resumed or watermarked snapshots that the binlog has now delivered up to
    /// their snapshot position (or high watermark): a resumed one's stored position moves up
    /// to it; those whose chunks are all in are returned to be finished.
    fn caught_up(&self, phases: &mut [Phase], reader_at: &BinlogPosition, progress: &mut Progress) -> Vec<usize> {
        let mut finished = Vec::new();
        for (u, phase) in phases.iter_mut().enumerate() {
            if let Phase::Loading { at, catch_up_from, settles_at, read, .. } = phase {
                let mut moved = false;
                if catch_up_from.is_some() && *reader_at >= *at {
                    *catch_up_from = None;
                    moved = true;
                    if let Some(r) = progress.resume.get_mut(&self.units[u].progress_name()) {
                        r.at = at.clone();
                    }
                }
                if settles_at.as_ref().is_some_and(|high| reader_at >= high) {
                    *settles_at = None;
                    moved = true;
                }
                if moved && *read && catch_up_from.is_none() && settles_at.is_none() {
                    finished.push(u);
                }
            }
        }
        finished
    }

    /// The last chunk is in (and a resumed snapshot has caught up): apply what waited, in
    /// order, and stream from now on.
    fn finish_snapshot(&self, phases: &mut [Phase], u: usize, progress: &mut Progress) -> Result<()> {
        let Phase::Loading { at, buffer, .. } = std::mem::replace(&mut phases[u], Phase::Failed) else {
            return Ok(());
        };
        phases[u] = Phase::Streaming(Some(at.clone()));
        let unit = &self.units[u];
        progress.streaming.insert(unit.progress_name());
        progress.snapshot_at.insert(unit.progress_name(), at.clone());
        progress.resume.remove(&unit.progress_name());
        // Replay what happened upstream since the snapshot, in order; the last write also
        // records that the unit is now streaming.
        let buffered = buffer.into_iter().map(|(_, b)| b).collect();
        if !self.replay(phases, u, buffered, progress)? {
            return Ok(());
        }
        let mut s = self.status();
        s.tables[u].state = "streaming".into();
        s.tables[u].chunks_total = s.tables[u].chunks_done;
        if phases.iter().all(|p| matches!(p, Phase::Streaming(_) | Phase::Failed)) {
            s.state = "streaming".into();
        }
        drop(s);
        // Wake real_time_recency waiters: a finished snapshot can complete their wait.
        self.applied.send_modify(|_| {});
        Ok(())
    }

    /// Applies buffered changes of unit `u` in binlog order; the last commit also stores
    /// `progress`. False when a TRUNCATE could not be applied (the unit failed).
    fn replay(&self, phases: &mut [Phase], u: usize, buffered: Vec<Buffered>, progress: &Progress) -> Result<bool> {
        let src = &self.source;
        let unit = &self.units[u];
        let t = &src.tables[unit.table];
        let mut segment: Vec<RowChange> = Vec::new();
        for b in buffered {
            match b {
                Buffered::Rows(rows) => segment.extend(rows),
                Buffered::Truncate => {
                    let change = to_batch(t, std::mem::take(&mut segment))?;
                    src.dataflow.commit(&[(t.state.as_ref(), &change)], WriteBatch::default())?;
                    if let Err(message) = truncate_unit(src, unit, &mut WriteBatch::default()) {
                        self.fail_unit(phases, u, message);
                        return Ok(false);
                    }
                }
            }
        }
        let change = to_batch(t, segment)?;
        src.dataflow.commit(&[(t.state.as_ref(), &change)], src.progress_batch(progress)?)?;
        Ok(true)
    }

    fn fail_unit(&self, phases: &mut [Phase], u: usize, message: String) {
        tracing::error!(source = %self.source.name, table = %self.units[u].spec.name, "{message}");
        phases[u] = Phase::Failed;
        let mut s = self.status();
        s.tables[u].state = "error".into();
        s.tables[u].last_error = Some(message);
    }
}

/// `values` as one-row arrays of `columns` (what every existing row gets in added columns).
fn one_row(columns: &[schema::ColumnSpec], values: Vec<Cell>) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    columns
        .iter()
        .zip(values)
        .map(|(c, v)| {
            let mut b = types::ColumnBuilder::new(&c.kind)?;
            b.append(v)?;
            Ok(b.finish())
        })
        .collect()
}

/// Moves the stored position to `position` (after an ALTER: everything before it is applied,
/// as messages arrive in order), unless it is already further.
fn move_past(progress: &mut Progress, position: Option<(&BinlogPosition, &Option<String>)>) {
    if let Some((end, gtid)) = position {
        if progress.position.as_ref().is_none_or(|p| end > p) {
            progress.position = Some(end.clone());
            if gtid.is_some() {
                progress.gtid = gtid.clone();
            }
        }
    }
}

/// Applies an upstream TRUNCATE of one unit: the whole table, or for a shard only its rows,
/// which needs the table-name column to tell them apart.
fn truncate_unit(src: &MySqlSource, unit: &Unit, extra: &mut WriteBatch) -> std::result::Result<(), String> {
    let t = &src.tables[unit.table];
    if unit.spec.shards.is_empty() {
        return truncate(src, t, extra).map_err(|e| e.to_string());
    }
    let Some(name_at) = unit.table_spec.table_name_index() else {
        return Err(format!(
            "TRUNCATE of shard {} cannot be applied to the merged table {} without INCLUDE TABLE NAME; \
             recreate the source with INCLUDE TABLE NAME AS <column>",
            unit.upstream_table, unit.spec.name
        ));
    };
    let all = t.state.snapshot().map_err(|e| e.to_string())?;
    let names = all.column(name_at);
    let mask: datafusion::arrow::array::BooleanArray = names
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .ok_or("the table-name column is not text")?
        .iter()
        .map(|n| Some(n == Some(unit.upstream_table.as_str())))
        .collect();
    let rows = datafusion::arrow::compute::filter_record_batch(&all, &mask).map_err(|e| e.to_string())?;
    let change = ChangeBatch { weights: vec![-1; rows.num_rows()], data: rows, mode: ApplyMode::Upsert };
    src.dataflow.commit(&[(t.state.as_ref(), &change)], std::mem::take(extra)).map_err(|e| e.to_string())
}

/// Deletes every row of a captured table (upstream TRUNCATE, snapshot restart).
fn truncate(src: &MySqlSource, t: &CapturedTable, extra: &mut WriteBatch) -> Result<()> {
    let all = t.state.snapshot()?;
    let change = ChangeBatch { weights: vec![-1; all.num_rows()], data: all, mode: ApplyMode::Upsert };
    src.dataflow.commit(&[(t.state.as_ref(), &change)], std::mem::take(extra))
}

/// Row images → an upsert change batch: −before, +after, in order (the cells move into the
/// Arrow builders).
fn to_batch(t: &CapturedTable, rows: Vec<RowChange>) -> Result<ChangeBatch> {
    let mut builders = snapshot::new_builders(&t.spec)?;
    let mut weights = Vec::with_capacity(rows.len() * 2);
    let key = &t.spec.key;
    for mut r in rows {
        // An update that keeps its key needs only the new image: the batch is applied as
        // upserts, and the table knows the row it replaces (a key changed by collation only,
        // 'a' → 'A', differs here and keeps its delete).
        if let (Some(before), Some(after)) = (&r.before, &r.after) {
            if !key.is_empty() && key.iter().all(|&k| before.get(k) == after.get(k)) {
                r.before = None;
            }
        }
        for (cells, w) in [(r.before, -1), (r.after, 1)] {
            let Some(cells) = cells else { continue };
            for (b, c) in builders.iter_mut().zip(cells) {
                b.append(c)?;
            }
            weights.push(w);
        }
    }
    let data = snapshot::finish(&t.state.schema(), &mut builders)?;
    Ok(ChangeBatch { data, weights, mode: ApplyMode::Upsert })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<SourceOptions> {
        SourceOptions::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn options_default_and_snapshot_position() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.server_id, o.snapshot, o.chunk_size, o.parallelism), (5400, true, 8192, 2));
        assert_eq!(o.snapshot_position, snapshot::ViewPosition::Auto);
        for (text, want) in [
            ("auto", snapshot::ViewPosition::Auto),
            ("EXACT", snapshot::ViewPosition::Exact),
            ("watermark", snapshot::ViewPosition::Watermark),
        ] {
            assert_eq!(parse(&[("SNAPSHOT_POSITION", text)]).unwrap().snapshot_position, want);
        }
    }

    #[test]
    fn bad_options_name_the_valid_ones() {
        for bad in [("SNAPSHOT_POSITION", "sometimes"), ("SNAPSHOT", "always"), ("CHUNK_SIZE", "0"), ("NOPE", "1")] {
            let e = parse(&[bad]).unwrap_err();
            assert_eq!(e.sqlstate(), "22023", "{bad:?}: {e}");
            assert!(e.to_string().contains(bad.0), "{bad:?}: {e}");
        }
    }
}
