//! Sources: where upstream changes enter Headwater (life of a change, step 1).
//!
//! A source captures upstream tables into local tables ([`crate::state::TableState`], one per
//! upstream table, owned by the source in the catalog) and keeps them up to date. Each kind of
//! upstream system implements [`SourceKind`]; the SQL layer (`CREATE SOURCE`, `ALTER SOURCE`,
//! start-up) drives sources only through it and never names a kind's types. Two kinds:
//! [`mysql`] (a lock-free consistent snapshot per table merged with one binlog stream per
//! source) and [`kafka`] (one topic of JSON messages — Debezium, Canal, upsert or append-only
//! — into one table, its offsets stored with the rows they produced).
//!
//! What a running source hands the engine:
//! - its changes: [`crate::change::ChangeBatch`]es with their [`crate::change::CommitOrigin`],
//!   committed through [`crate::dataflow::Dataflow::commit_from`] together with its progress
//!   (a write to the store in the same batch, so rows and position are durable together);
//! - its status: a [`SourceHandle`] registered in the engine's [`SourceRegistry`], through
//!   which `hw_catalog.sources` / `hw_catalog.source_tables` show its progress,
//!   `real_time_recency` waits for it ([`CatchUp`]), and `DROP SOURCE` stops it.

pub mod kafka;
pub mod mysql;
mod registry;
mod selection;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::Catalog;
use crate::dataflow::Dataflow;
use crate::error::Result;
use crate::state::{CheckpointedStore, StateStore, TableState};

pub use kafka::KAFKA_TOPIC_OPTIONS;
pub use registry::{CatchUp, SourceHandle, SourceProbe, SourceRegistry, SourceStatus, TableStatus};
pub use selection::{TableRef, TableSelection};

/// `CREATE SOURCE`'s inputs for a kind: the connection's options (secrets resolved) and the
/// source's own options, keys upper-case.
pub struct SourceConfig<'a> {
    /// The source's name.
    pub source_name: &'a str,
    /// The connection's name, for messages.
    pub connection_name: &'a str,
    pub connection: &'a BTreeMap<String, String>,
    pub options: &'a BTreeMap<String, String>,
    /// The columns the statement declares (a Kafka source's), planned by the SQL layer; only
    /// at `CREATE SOURCE` (a running source's tables are in [`SourceRun::tables`]).
    pub declared: Option<&'a DeclaredTable>,
}

/// A table whose columns the user declared in `CREATE SOURCE name (columns) FROM ...` (or a
/// kind inferred from upstream).
#[derive(Debug)]
pub struct DeclaredTable {
    pub schema: SchemaRef,
    /// The PRIMARY KEY's columns.
    pub key: Option<Vec<usize>>,
    /// `CREATE TABLE name (columns)`.
    pub create_sql: String,
}

/// A table a source will capture, as discovered upstream: what the catalog needs to create
/// its local table.
pub struct TableDef {
    /// The local table's name.
    pub name: String,
    /// Where it comes from, for messages (`db.table`).
    pub upstream: String,
    pub schema: SchemaRef,
    /// Its key columns (`None`: a multiset).
    pub key: Option<Vec<usize>>,
    /// Its `SHOW CREATE TABLE` text.
    pub create_sql: String,
    /// The kind's own description of the table, kept in the catalog entry's `details` and
    /// handed back to the kind at every start ([`SourceRun::tables`]). A kind whose tables can
    /// gain columns upstream records each widening as `"widened": [[object_id, width], ...]`
    /// (the width the table had before catalog object `object_id` was created), which views
    /// created before a widening read to keep their columns.
    pub details: serde_json::Value,
}

/// Everything a source needs to run: its identity, its tables and the engine's parts.
pub struct SourceRun {
    pub name: String,
    /// The source's catalog id (its stored progress is keyed by it).
    pub id: u64,
    /// Each captured table's `details` ([`TableDef::details`]) and local rows, oldest first.
    pub tables: Vec<(serde_json::Value, Arc<TableState>)>,
    /// The engine's store (the source's progress is written with its commits).
    pub store: Arc<CheckpointedStore>,
    /// Every commit goes through the dataflow, which maintains the views over the tables.
    pub dataflow: Arc<Dataflow>,
    /// Where the tables' descriptions live (a kind updates them when upstream adds columns).
    /// Weak: the catalog owns the store's lock, and a source task must not keep it alive.
    pub catalog: Weak<Catalog>,
}

/// One kind of upstream system. Stateless: the running sources are the [`SourceHandle`]s it
/// starts, and what they have read is in the store.
#[async_trait::async_trait]
pub trait SourceKind: Send + Sync {
    /// The connection kind a source of this kind reads through (`MYSQL`).
    fn connection_kind(&self) -> &'static str;

    /// Checks the options, reaches the upstream and describes each table `selection` names
    /// (`CREATE SOURCE`, `ALTER SOURCE ... ADD TABLE`). With `check_upstream` (a new source)
    /// it also checks that the upstream can be captured (an altered source, running, has
    /// shown that). Errors say what to fix: 08001 (unreachable), 22023 (a bad option or an
    /// upstream not configured for capture), 42P01 (no such table), 42501 (missing grants).
    async fn discover(
        &self,
        config: &SourceConfig<'_>,
        selection: &TableSelection,
        check_upstream: bool,
    ) -> Result<Vec<TableDef>>;

    /// A captured table's definition from its stored `details` (start-up restores the table
    /// with it).
    fn table_def(&self, name: &str, details: &serde_json::Value) -> Result<TableDef>;

    /// The upstream a captured table comes from, from its `details` (to refuse capturing one
    /// table twice).
    fn upstream_of(&self, details: &serde_json::Value) -> Option<String>;

    /// Starts capturing in the background, resuming from the stored progress.
    fn start(&self, config: &SourceConfig<'_>, run: SourceRun) -> Result<SourceHandle>;

    /// Forgets what was read of these tables (they are dropped, or added again and must be
    /// read from the start).
    fn forget_tables(&self, store: &dyn StateStore, source_id: u64, tables: &[String]) -> Result<()>;

    /// `ALTER SOURCE ... RESNAPSHOT`: forgets every stored position (the caller has emptied
    /// the tables; the next start snapshots them again).
    fn reset(&self, store: &dyn StateStore, source_id: u64) -> Result<()>;

    /// A table's `details` without upstream positions (after [`SourceKind::reset`]); `None`
    /// when they hold none.
    fn details_without_positions(&self, details: &serde_json::Value) -> Option<serde_json::Value>;
}

/// The kind of source that reads through connections of `connection_kind`.
pub fn kind(connection_kind: &str) -> Option<&'static dyn SourceKind> {
    static MYSQL: mysql::MySql = mysql::MySql;
    static KAFKA: kafka::Kafka = kafka::Kafka;
    let kinds: [&'static dyn SourceKind; 2] = [&MYSQL, &KAFKA];
    kinds.into_iter().find(|k| k.connection_kind().eq_ignore_ascii_case(connection_kind))
}
