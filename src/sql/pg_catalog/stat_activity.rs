//! `pg_stat_activity`: one row per logged-in client session ([`crate::sql::activity`]), with
//! Postgres's columns (those Headwater has no notion of are NULL). A read is a snapshot taken
//! when the statement is planned, as a Postgres transaction's is.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::scalar::ScalarValue;

use crate::sql::activity::Activity;

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns, in Postgres 16's order.
pub fn schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let int = |name: &str| Field::new(name, DataType::Int32, true);
    let time = |name: &str| Field::new(name, timestamp(), true);
    Arc::new(Schema::new(vec![
        int("datid"),
        text("datname"),
        int("pid"),
        int("leader_pid"),
        int("usesysid"),
        text("usename"),
        text("application_name"),
        text("client_addr"),
        text("client_hostname"),
        int("client_port"),
        time("backend_start"),
        time("xact_start"),
        time("query_start"),
        time("state_change"),
        text("wait_event_type"),
        text("wait_event"),
        text("state"),
        Field::new("backend_xid", DataType::Int64, true),
        Field::new("backend_xmin", DataType::Int64, true),
        Field::new("query_id", DataType::Int64, true),
        text("query"),
        text("backend_type"),
    ]))
}

/// Which sessions' statements the reading session may see (a DataFusion config extension
/// each session sets): Postgres shows other roles' queries to superusers and members only.
pub struct Viewer(pub crate::sql::activity::MaySignal);

/// `pg_stat_activity`, read per scan (so per reading session).
#[derive(Debug)]
pub struct StatActivity {
    pub activity: std::sync::Weak<Activity>,
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for StatActivity {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let viewer = state.config().get_extension::<Viewer>();
        let activity = self.activity.upgrade().unwrap_or_default();
        table(&activity, viewer.as_deref())?.scan(state, projection, filters, limit).await
    }
}

/// The sessions now, as a table; other roles' statements hidden from `viewer` unless it may
/// see them.
pub fn table(activity: &Activity, viewer: Option<&Viewer>) -> DfResult<MemTable> {
    let schema = schema();
    let ts = |micros: Option<i64>| ScalarValue::TimestampMicrosecond(micros, Some("UTC".into()));
    let rows: Vec<Vec<(&str, ScalarValue)>> = activity
        .backends()
        .iter()
        .map(|b| {
            let doing = b.doing();
            if viewer.is_some_and(|v| !(v.0)(&b.user)) {
                return vec![
                    ("datname", ScalarValue::Utf8(Some(super::super::DATABASE.to_string()))),
                    ("pid", ScalarValue::Int32(Some(b.pid))),
                    ("usename", ScalarValue::Utf8(Some(b.user.clone()))),
                    ("application_name", ScalarValue::Utf8(Some(b.application_name.clone()))),
                    ("backend_start", ts(Some(b.backend_start))),
                    ("query", ScalarValue::Utf8(Some("<insufficient privilege>".into()))),
                    ("backend_type", ScalarValue::Utf8(Some("client backend".into()))),
                ];
            }
            vec![
                ("datname", ScalarValue::Utf8(Some(super::super::DATABASE.to_string()))),
                ("pid", ScalarValue::Int32(Some(b.pid))),
                ("usename", ScalarValue::Utf8(Some(b.user.clone()))),
                ("application_name", ScalarValue::Utf8(Some(b.application_name.clone()))),
                ("client_addr", ScalarValue::Utf8(b.client_addr.map(|a| a.ip().to_string()))),
                ("client_port", ScalarValue::Int32(b.client_addr.map(|a| a.port() as i32))),
                ("backend_start", ts(Some(b.backend_start))),
                ("query_start", ts(doing.query_start)),
                ("state_change", ts(Some(doing.state_change))),
                ("state", ScalarValue::Utf8(Some(doing.state.to_string()))),
                ("query", ScalarValue::Utf8(Some(doing.query))),
                ("backend_type", ScalarValue::Utf8(Some("client backend".into()))),
            ]
        })
        .collect();
    let batch: RecordBatch = super::batch_of(&schema, &rows)?;
    MemTable::try_new(schema, vec![vec![batch]])
}
