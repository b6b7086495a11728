//! Memory: resident memory and state bytes per row for `HEADWATER_BENCH_ROWS` rows (default
//! 1M) in a table, a join view and an aggregate view, against the raw size of the same rows
//! as Arrow arrays (DESIGN.md's target: state ≤ 2× raw). The engine runs over the real
//! embedded store in a temporary data directory and is checkpointed after each step, so the
//! figures are what a running server holds, not writes waiting for a checkpoint.
//!
//! Run: `scripts/bench.sh memory` (release). Results go to `docs/benchmarks.md`.

use crate::common;
use crate::report;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use headwater::catalog::Namespace;
use headwater::change::ChangeBatch;
use headwater::sql::Engine;
use headwater::state::{CheckpointedStore, WriteBatch};

const CUSTOMERS: i64 = 10_000;

fn orders(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("status", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 7919) % CUSTOMERS).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 31) % 1000).collect::<Vec<_>>())),
        Arc::new(StringArray::from(
            ids.iter().map(|i| ["paid", "shipped", "cancelled"][(i % 3) as usize]).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Bytes of Arrow buffers for `rows` rows built by `make` (the raw size).
fn raw_bytes(rows: i64, make: fn(&[i64]) -> RecordBatch) -> usize {
    let ids: Vec<i64> = (0..rows).collect();
    ids.chunks(100_000).map(|c| make(c).get_array_memory_size()).sum()
}

struct Step {
    what: String,
    rows: i64,
    rss: i64,
    state: usize,
    raw: usize,
}

pub fn main() {
    let rows = report::rows(1_000_000, 20_000) as i64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointedStore::open(&dir.path().join("d")).unwrap());
        let engine = Engine::open(store.clone()).await.unwrap();
        let s = engine.session();
        s.execute_sql(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, amount BIGINT, status TEXT); \
             CREATE TABLE order_extension (order_id BIGINT PRIMARY KEY, channel TEXT)",
        )
        .await
        .unwrap();
        let (o, e) = (common::table(&engine, "orders"), common::table(&engine, "order_extension"));
        let ids: Vec<i64> = (0..rows).collect();
        let mut steps = Vec::new();
        let mut rss = report::rss_bytes() as i64;
        let mut grew = |now: u64| {
            let d = now as i64 - rss;
            rss = now as i64;
            d
        };
        grew(report::rss_bytes());

        for chunk in ids.chunks(100_000) {
            let co = ChangeBatch::uniform(orders(chunk), 1);
            engine.dataflow().commit(&[(o.as_ref(), &co)], WriteBatch::default()).unwrap();
        }
        store.checkpoint().unwrap();
        let raw_orders = raw_bytes(rows, orders);
        steps.push(Step {
            what: "table `orders` (BIGINT ×3, TEXT)".into(),
            rows,
            rss: grew(report::rss_bytes()),
            state: o.memory_bytes(),
            raw: raw_orders,
        });
        for chunk in ids.chunks(100_000) {
            let ce = ChangeBatch::uniform(common::extension(chunk), 1);
            engine.dataflow().commit(&[(e.as_ref(), &ce)], WriteBatch::default()).unwrap();
        }
        store.checkpoint().unwrap();
        let raw_ext = raw_bytes(rows, common::extension);
        steps.push(Step {
            what: "table `order_extension` (BIGINT, TEXT)".into(),
            rows,
            rss: grew(report::rss_bytes()),
            state: e.memory_bytes(),
            raw: raw_ext,
        });

        let views = [
            (
                "order_full",
                "join view `order_full` (orders ⋈ order_extension on the key, 5 columns)",
                "SELECT o.id, o.customer_id, o.amount, o.status, e.channel FROM orders o JOIN order_extension e ON e.order_id = o.id",
                raw_orders + raw_ext,
            ),
            (
                "per_customer",
                "aggregate view `per_customer` (count, sum, min, max by customer)",
                "SELECT customer_id, count(*) AS n, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi FROM orders GROUP BY customer_id",
                raw_orders,
            ),
        ];
        for (name, what, sql, raw) in views {
            s.execute_sql(&format!("CREATE MATERIALIZED VIEW {name} AS {sql}")).await.unwrap();
            store.checkpoint().unwrap();
            let id = engine.catalog().get(Namespace::Relation, name).unwrap().entry.id;
            let info = engine.dataflow().view_info(id).unwrap();
            steps.push(Step {
                what: format!("{what}: operators + {} result rows", info.rows),
                rows,
                rss: grew(report::rss_bytes()),
                state: info.state_bytes + info.result_bytes,
                raw,
            });
        }

        let mut body = format!(
            "## Memory: {rows} rows in a table, a join view and an aggregate view\n\n\
             Resident memory growth of the process at each step (after a checkpoint to the embedded store, \
             so no write is waiting in memory), the state the engine accounts for, and the raw size of the \
             input rows as Arrow arrays. Per row = per input row. Reproduce with `scripts/bench.sh memory` \
             (`HEADWATER_BENCH_ROWS` changes the size). Machine: {}.\n\n\
             | step | RSS growth (MB) | RSS bytes/row | state bytes/row | raw Arrow bytes/row | state vs raw |\n\
             |---|---|---|---|---|---|\n",
            report::machine()
        );
        for s in &steps {
            body += &format!(
                "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2}× |\n",
                s.what,
                s.rss as f64 / 1e6,
                s.rss as f64 / s.rows as f64,
                s.state as f64 / s.rows as f64,
                s.raw as f64 / s.rows as f64,
                s.state as f64 / s.raw as f64,
            );
        }
        println!("{body}");
        report::write_section("memory", &body);
    });
}
