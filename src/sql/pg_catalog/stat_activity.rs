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

/// The sessions now, as a table.
pub fn table(activity: &Activity) -> DfResult<MemTable> {
    let schema = schema();
    let ts = |micros: Option<i64>| ScalarValue::TimestampMicrosecond(micros, Some("UTC".into()));
    let rows: Vec<Vec<(&str, ScalarValue)>> = activity
        .backends()
        .iter()
        .map(|b| {
            let doing = b.doing();
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
