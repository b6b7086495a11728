//! `hw_catalog`: Headwater's own system tables, built from live status at query time.
//!
//! - `hw_catalog.sources`: one row per source — state, binlog file/position, GTID, lag, last error.
//! - `hw_catalog.source_tables`: one row per captured table — state, rows copied, chunks
//!   done/total, snapshot rows/s, last error.
//! - `hw_catalog.checkpoints`: one row — checkpoints written, when the last one was, what it
//!   wrote (keys, bytes) and how long it took, what is staged for the next, the last error, table images written.
//! - `hw_catalog.sinks`: one row per sink — relation, topic, envelope, delivery, state,
//!   messages sent, commits waiting (and how old the oldest is), the last error.
//! - `hw_catalog.relations`: one row per table and materialized view — its source (captured
//!   tables), rows, and the memory its state holds (rows, plus a view's operator state).
//! - `hw_catalog.views`: one row per materialized view — its state (`running`, `errored`:
//!   its query fails on rows of its inputs, `input errored`: a view it reads is errored,
//!   `failed`: it stopped and is computed again when its inputs change), how many rows fail,
//!   the error a read reports (SQLSTATE, message, where) and which view holds it.
//!
//! The same figures are exported for Prometheus by [`crate::metrics`].

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;

use crate::catalog::{Catalog, Relation};
use crate::dataflow::{Dataflow, ViewInfo};
use crate::sink::{SinkRegistry, SinkStatus};
use crate::source::{SourceRegistry, SourceStatus};
use crate::sql::parser::ObjectType;
use crate::state::{CheckpointStats, CheckpointedStore};

const TABLES: [&str; 6] = ["sources", "source_tables", "checkpoints", "sinks", "relations", "views"];

/// The `hw_catalog` schema.
pub struct HwCatalogSchema {
    sources: Weak<SourceRegistry>,
    sinks: Weak<SinkRegistry>,
    checkpoints: Weak<CheckpointedStore>,
    catalog: Weak<Catalog>,
    dataflow: Weak<Dataflow>,
}

/// The size of one table or materialized view (`hw_catalog.relations`, and metrics).
#[derive(Debug, Clone)]
pub struct RelationSize {
    pub name: String,
    /// `table` or `materialized view`.
    pub kind: &'static str,
    /// The source a captured table belongs to.
    pub source: Option<String>,
    pub rows: i64,
    /// Bytes of state in memory: the rows, plus a view's operator state.
    pub memory_bytes: u64,
    /// A view's operator state alone (join indexes, groups, multisets); 0 for tables.
    pub operator_bytes: u64,
}

/// Every table and materialized view with its size, by name.
pub fn relation_sizes(catalog: &Catalog, dataflow: &Dataflow) -> Vec<RelationSize> {
    let views: std::collections::HashMap<u64, usize> =
        dataflow.views().into_iter().map(|v| (v.id, v.state_bytes)).collect();
    let mut out = Vec::new();
    for kind in [ObjectType::Table, ObjectType::MaterializedView] {
        for obj in catalog.list(kind) {
            let Some(Relation::Table { state, .. }) = &obj.relation else { continue };
            let operator_bytes = views.get(&obj.entry.id).copied().unwrap_or(0) as u64;
            out.push(RelationSize {
                name: obj.entry.name.clone(),
                kind: kind.noun(),
                source: obj.entry.depends_on.iter().find_map(|d| d.strip_prefix("source:")).map(str::to_string),
                rows: state.row_count(),
                memory_bytes: state.memory_bytes() as u64 + operator_bytes,
                operator_bytes,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

impl std::fmt::Debug for HwCatalogSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HwCatalogSchema")
    }
}

impl std::fmt::Debug for SourceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceRegistry")
    }
}

impl HwCatalogSchema {
    /// Reads status from `sources` (held weakly, like the public schema holds the catalog).
    pub fn new(
        sources: &Arc<SourceRegistry>,
        sinks: &Arc<SinkRegistry>,
        checkpoints: &Arc<CheckpointedStore>,
        catalog: &Arc<Catalog>,
        dataflow: &Arc<Dataflow>,
    ) -> Self {
        HwCatalogSchema {
            sources: Arc::downgrade(sources),
            sinks: Arc::downgrade(sinks),
            checkpoints: Arc::downgrade(checkpoints),
            catalog: Arc::downgrade(catalog),
            dataflow: Arc::downgrade(dataflow),
        }
    }
}

fn field(name: &str, t: DataType) -> Field {
    Field::new(name, t, true)
}

fn sources_table(statuses: &[SourceStatus]) -> datafusion::error::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        field("name", DataType::Utf8),
        field("type", DataType::Utf8),
        field("connection", DataType::Utf8),
        field("state", DataType::Utf8),
        field("binlog_file", DataType::Utf8),
        field("binlog_position", DataType::UInt64),
        field("gtid", DataType::Utf8),
        field("lag_seconds", DataType::Float64),
        field("tables", DataType::Int64),
        field("last_error", DataType::Utf8),
        field("offsets", DataType::Utf8),
        field("lag_messages", DataType::UInt64),
    ]));
    let col = |f: &dyn Fn(&SourceStatus) -> Option<String>| -> ArrayRef {
        Arc::new(statuses.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        col(&|s| Some(s.name.clone())),
        col(&|s| Some(s.kind.to_string())),
        col(&|s| Some(s.connection.clone())),
        col(&|s| Some(s.state.clone())),
        col(&|s| s.position.as_ref().map(|p| p.file.clone())),
        Arc::new(statuses.iter().map(|s| s.position.as_ref().map(|p| p.pos)).collect::<UInt64Array>()),
        col(&|s| s.gtid.clone()),
        Arc::new(statuses.iter().map(|s| s.lag_seconds).collect::<Float64Array>()),
        Arc::new(statuses.iter().map(|s| Some(s.tables.len() as i64)).collect::<Int64Array>()),
        col(&|s| s.last_error.clone()),
        col(&|s| s.offsets.clone()),
        Arc::new(statuses.iter().map(|s| s.lag_messages).collect::<UInt64Array>()),
    ];
    RecordBatch::try_new(schema, columns).map_err(Into::into)
}

fn source_tables_table(statuses: &[SourceStatus]) -> datafusion::error::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        field("source", DataType::Utf8),
        field("table_name", DataType::Utf8),
        field("upstream_table", DataType::Utf8),
        field("state", DataType::Utf8),
        field("rows_copied", DataType::UInt64),
        field("chunks_done", DataType::UInt64),
        field("chunks_total", DataType::UInt64),
        field("rows_per_second", DataType::Float64),
        field("last_error", DataType::Utf8),
        field("snapshot_ranges", DataType::UInt64),
    ]));
    let rows: Vec<(&SourceStatus, &crate::source::TableStatus)> =
        statuses.iter().flat_map(|s| s.tables.iter().map(move |t| (s, t))).collect();
    let text = |f: &dyn Fn(&(&SourceStatus, &crate::source::TableStatus)) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let num = |f: &dyn Fn(&crate::source::TableStatus) -> u64| -> ArrayRef {
        Arc::new(rows.iter().map(|(_, t)| Some(f(t))).collect::<UInt64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|(s, _)| Some(s.name.clone())),
        text(&|(_, t)| Some(t.name.clone())),
        text(&|(_, t)| Some(t.upstream.clone())),
        text(&|(_, t)| Some(t.state.clone())),
        num(&|t| t.rows_copied),
        num(&|t| t.chunks_done),
        num(&|t| t.chunks_total),
        Arc::new(rows.iter().map(|(_, t)| Some(t.rows_per_second)).collect::<Float64Array>()),
        text(&|(_, t)| t.last_error.clone()),
        num(&|t| t.snapshot_ranges),
    ];
    RecordBatch::try_new(schema, columns).map_err(Into::into)
}

fn checkpoints_table(c: &CheckpointStats) -> datafusion::error::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        field("checkpoints", DataType::UInt64),
        field("last_checkpoint_at", DataType::Utf8),
        field("last_duration_ms", DataType::Float64),
        field("last_keys", DataType::UInt64),
        field("last_bytes", DataType::UInt64),
        field("total_keys", DataType::UInt64),
        field("total_bytes", DataType::UInt64),
        field("staged_keys", DataType::UInt64),
        field("staged_bytes", DataType::UInt64),
        field("last_error", DataType::Utf8),
        field("images", DataType::UInt64),
    ]));
    let at = c.last_at.map(|t| chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M:%S%.3f+00").to_string());
    let n = |v: u64| -> ArrayRef { Arc::new(UInt64Array::from(vec![v])) };
    let columns: Vec<ArrayRef> = vec![
        n(c.count),
        Arc::new(StringArray::from(vec![at])),
        Arc::new(Float64Array::from(vec![c.last_duration.as_secs_f64() * 1000.0])),
        n(c.last_keys as u64),
        n(c.last_bytes as u64),
        n(c.total_keys),
        n(c.total_bytes),
        n(c.staged_keys as u64),
        n(c.staged_bytes as u64),
        Arc::new(StringArray::from(vec![c.last_error.clone()])),
        n(c.images),
    ];
    RecordBatch::try_new(schema, columns).map_err(Into::into)
}

fn sinks_table(statuses: &[SinkStatus]) -> datafusion::error::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        field("name", DataType::Utf8),
        field("relation", DataType::Utf8),
        field("connection", DataType::Utf8),
        field("topic", DataType::Utf8),
        field("envelope", DataType::Utf8),
        field("delivery", DataType::Utf8),
        field("state", DataType::Utf8),
        field("messages_sent", DataType::UInt64),
        field("snapshot_messages", DataType::UInt64),
        field("batches", DataType::UInt64),
        field("pending_commits", DataType::UInt64),
        field("lag_seconds", DataType::Float64),
        field("last_error", DataType::Utf8),
    ]));
    let text = |f: &dyn Fn(&SinkStatus) -> Option<String>| -> ArrayRef {
        Arc::new(statuses.iter().map(f).collect::<StringArray>())
    };
    let num = |f: &dyn Fn(&SinkStatus) -> u64| -> ArrayRef {
        Arc::new(statuses.iter().map(|s| Some(f(s))).collect::<UInt64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|s| Some(s.name.clone())),
        text(&|s| Some(s.relation.clone())),
        text(&|s| Some(s.connection.clone())),
        text(&|s| Some(s.topic.clone())),
        text(&|s| Some(s.envelope.clone())),
        text(&|s| Some(s.delivery.clone())),
        text(&|s| Some(s.state.clone())),
        num(&|s| s.messages_sent),
        num(&|s| s.snapshot_messages),
        num(&|s| s.batches),
        num(&|s| s.pending_commits),
        Arc::new(statuses.iter().map(|s| Some(s.lag_seconds)).collect::<Float64Array>()),
        text(&|s| s.last_error.clone()),
    ];
    RecordBatch::try_new(schema, columns).map_err(Into::into)
}

fn relations_table(sizes: &[RelationSize]) -> datafusion::error::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        field("name", DataType::Utf8),
        field("type", DataType::Utf8),
        field("source", DataType::Utf8),
        field("rows", DataType::Int64),
        field("memory_bytes", DataType::UInt64),
        field("operator_bytes", DataType::UInt64),
        field("bytes_per_row", DataType::Float64),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(sizes.iter().map(|r| Some(r.name.clone())).collect::<StringArray>()),
        Arc::new(sizes.iter().map(|r| Some(r.kind)).collect::<StringArray>()),
        Arc::new(sizes.iter().map(|r| r.source.clone()).collect::<StringArray>()),
        Arc::new(sizes.iter().map(|r| Some(r.rows)).collect::<Int64Array>()),
        Arc::new(sizes.iter().map(|r| Some(r.memory_bytes)).collect::<UInt64Array>()),
        Arc::new(sizes.iter().map(|r| Some(r.operator_bytes)).collect::<UInt64Array>()),
        Arc::new(
            sizes.iter().map(|r| (r.rows > 0).then(|| r.memory_bytes as f64 / r.rows as f64)).collect::<Float64Array>(),
        ),
    ];
    RecordBatch::try_new(schema, columns).map_err(Into::into)
}

/// A view's state as `hw_catalog.views` and the metrics name it.
pub fn view_state(v: &ViewInfo) -> &'static str {
    match (&v.errors, v.failed) {
        (_, true) => "failed",
        (Some(e), false) if e.view == v.name => "errored",
        (Some(_), false) => "input errored",
        (None, false) => "running",
    }
}

fn views_table(views: &[ViewInfo]) -> datafusion::error::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        field("name", DataType::Utf8),
        field("state", DataType::Utf8),
        field("error_count", DataType::Int64),
        field("error_sqlstate", DataType::Utf8),
        field("error", DataType::Utf8),
        field("error_context", DataType::Utf8),
        field("error_view", DataType::Utf8),
        field("rows", DataType::Int64),
        field("operator_bytes", DataType::UInt64),
        field("startup", DataType::Utf8),
    ]));
    let text = |f: &dyn Fn(&ViewInfo) -> Option<String>| -> ArrayRef {
        Arc::new(views.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|v| Some(v.name.clone())),
        text(&|v| Some(view_state(v).to_string())),
        Arc::new(views.iter().map(|v| Some(v.error_count + i64::from(v.failed))).collect::<Int64Array>()),
        text(&|v| v.errors.as_ref().map(|e| e.first.sqlstate.clone())),
        text(&|v| v.errors.as_ref().map(|e| e.first.message.clone())),
        text(&|v| v.errors.as_ref().map(|e| e.first.context.clone())),
        text(&|v| v.errors.as_ref().map(|e| e.view.clone())),
        Arc::new(views.iter().map(|v| Some(v.rows)).collect::<Int64Array>()),
        Arc::new(views.iter().map(|v| Some(v.state_bytes as u64)).collect::<UInt64Array>()),
        text(&|v| Some(if v.loaded { "loaded" } else { "computed" }.to_string())),
    ];
    RecordBatch::try_new(schema, columns).map_err(Into::into)
}

#[async_trait]
impl SchemaProvider for HwCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let statuses = self.sources.upgrade().map(|s| s.statuses()).unwrap_or_default();
        let batch = match name {
            "sources" => sources_table(&statuses)?,
            "source_tables" => source_tables_table(&statuses)?,
            "sinks" => sinks_table(&self.sinks.upgrade().map(|s| s.statuses()).unwrap_or_default())?,
            "checkpoints" => checkpoints_table(&self.checkpoints.upgrade().map(|c| c.stats()).unwrap_or_default())?,
            "relations" => {
                let sizes = match (self.catalog.upgrade(), self.dataflow.upgrade()) {
                    (Some(c), Some(d)) => relation_sizes(&c, &d),
                    _ => Vec::new(),
                };
                relations_table(&sizes)?
            }
            "views" => views_table(&self.dataflow.upgrade().map(|d| d.views()).unwrap_or_default())?,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
