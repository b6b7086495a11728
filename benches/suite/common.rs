//! Helpers shared by the benchmarks: a client of an in-process server, a table's state by
//! name, and the `order_extension` rows the view and memory benchmarks both load.
#![allow(dead_code)]

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use headwater::catalog::{Namespace, Relation};
use headwater::sql::Engine;
use headwater::state::TableState;

/// A tokio-postgres client of the Headwater server listening on `port`.
pub async fn client(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=bench dbname=headwater"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

/// The rows of table (or materialized view) `name`.
pub fn table(engine: &Engine, name: &str) -> Arc<TableState> {
    match engine.catalog().get(Namespace::Relation, name).and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => state,
        _ => panic!("{name} is not a table"),
    }
}

/// `order_extension` rows for `ids`: every third order is a web order.
pub fn extension(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, true),
    ]));
    let channel: Vec<&str> = ids.iter().map(|i| ["web", "app", "store"][(i % 3) as usize]).collect();
    let columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(channel))];
    RecordBatch::try_new(schema, columns).unwrap()
}
