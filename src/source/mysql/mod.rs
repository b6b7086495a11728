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
mod handlers;
mod kind;
mod options;
pub mod position;
mod progress;
pub mod rows;
mod runner;
pub mod schema;
mod schema_change;
pub mod snapshot;
pub mod types;
mod upstream;

pub use kind::{BinlogCatchUp, MySql};
pub use options::{connection_opts, SourceOptions};
pub use progress::{forget_tables, reset_progress};
pub use upstream::{check_upstream, current_position};

use handlers::{to_batch, truncate, truncate_unit};
use progress::{move_past, Progress};

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
use self::types::{Cell, Kind};
use super::{SourceHandle, SourceProbe, SourceStatus, TableStatus};
use crate::catalog::{Catalog, Namespace};
use crate::change::{ApplyMode, ChangeBatch, CommitOrigin};
use crate::error::{Error, Result};
use crate::state::{keys, CheckpointedStore, StateStore, TableState, WriteBatch};

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
    /// watermark where the server gives no exact position (MySQL), or the earliest of the views
    /// of a snapshot read in key ranges — somewhere after `replay_from` and at or before
    /// `position`.
    SnapshotStart {
        table: usize,
        position: BinlogPosition,
        replay_from: Option<BinlogPosition>,
        chunks_total: u64,
        /// The upstream's estimate of the table's rows (InnoDB's `TABLE_ROWS`), if any.
        rows_estimate: Option<u64>,
        /// Key ranges read over several connections (0: one sequential read).
        ranges: u64,
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

/// How far a key-ordered snapshot got: the table holds every upstream row whose key is at or
/// before `after`, as of binlog position `at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotResume {
    at: BinlogPosition,
    after: Vec<Vec<u8>>,
    rows_copied: u64,
    chunks_done: u64,
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
                .map(|(i, c)| {
                    let field = Field::new(&c.name, c.kind.data_type(), c.nullable && !spec.key.contains(&i));
                    match c.kind {
                        Kind::Text { json: true, .. } => crate::types::PgText::Jsonb.mark(field),
                        _ => field,
                    }
                })
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
    pub store: Arc<CheckpointedStore>,
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
        let new_shards = self.load_progress().map(|p| p.new_shards.into_map()).unwrap_or_default();
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
        let rejected = self.load_progress().map(|p| p.rejected_shards.into_map()).unwrap_or_default();
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
            kind: "mysql",
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

    fn load_progress(&self) -> Result<Progress> {
        Progress::load(self.store.as_ref(), self.id)
    }

    /// The progress to commit: its position and what changed since the last call.
    fn progress_batch(&self, p: &mut Progress) -> Result<WriteBatch> {
        p.write(self.id)
    }
}

struct Runner {
    source: Arc<MySqlSource>,
    units: Vec<Unit>,
    status: Arc<Mutex<SourceStatus>>,
    applied: watch::Sender<Option<BinlogPosition>>,
}
