//! Materialized views across a restart, in the same run: views over `orders`
//! (`HEADWATER_BENCH_ROWS` rows, default 1M) in a real data directory (fjall + images, what
//! new data directories get), restarted (a) loading each view's saved result and operator
//! state (`dataflow::durable`), and (b) the baseline, recomputing every view from its inputs
//! (what a restart did before views were saved, and still does for a view whose plan
//! changed: forced here by deleting the saved plans). Both restarts load the same tables.
//! Also the checkpoint cost of view state: the first checkpoint after CREATE (the whole
//! state) against later ones after 1,000 changed orders (what changed only).
//!
//! Views: DESIGN.md's `order_totals` (a join of two primary keys, so neither side keeps an
//! index, under a 10k-group aggregate), `order_regions` (orders joined to 10k customers on
//! `customer_id`: the orders side indexes every order by customer, rebuilt from `orders` at
//! start-up rather than saved; 1M result rows), `top_amounts` (`max` per customer: a
//! multiset of values per group, saved).
//!
//! Run: `scripts/bench.sh recovery` (release), which runs this after the table figures.

use crate::common;
use crate::report;

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use headwater::change::ChangeBatch;
use headwater::sql::{Engine, QueryResult};
use headwater::state::fjall_store::FjallStore;
use headwater::state::{keys, CheckpointedStore, StateStore, WriteBatch};
use report::Stats;

const CUSTOMERS: i64 = 10_000;
const DELTA: usize = 1_000;

const VIEWS: &[(&str, &str)] = &[
    (
        "order_totals",
        "SELECT o.customer_id, count(*) AS n, sum(o.amount) AS total FROM orders o \
         JOIN order_extension e ON e.order_id = o.id WHERE e.channel = 'web' GROUP BY o.customer_id",
    ),
    ("order_regions", "SELECT o.id, o.amount, c.region FROM orders o JOIN customers c ON c.id = o.customer_id"),
    ("top_amounts", "SELECT customer_id, max(amount) AS top FROM orders GROUP BY customer_id"),
];

fn orders(ids: &[i64], salt: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 7919 + salt) % CUSTOMERS).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 31 + salt) % 1000).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn customers(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, true),
    ]));
    let region: Vec<String> = ids.iter().map(|i| format!("region-{}", i % 17)).collect();
    let columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(region))];
    RecordBatch::try_new(schema, columns).unwrap()
}

async fn open(dir: &std::path::Path) -> (Arc<CheckpointedStore>, Arc<Engine>) {
    let store = Arc::new(CheckpointedStore::open(dir).unwrap());
    let engine = Engine::open(store.clone()).await.unwrap();
    (store, engine)
}

/// Per view, a query summing its rows (equal after both kinds of restart).
const DIGESTS: &[&str] = &[
    "SELECT count(*), sum(n), sum(total) FROM order_totals",
    "SELECT count(*), sum(amount), count(DISTINCT region) FROM order_regions",
    "SELECT count(*), sum(top) FROM top_amounts",
];

/// The [`DIGESTS`] of the views.
async fn digest(engine: &Arc<Engine>) -> Vec<String> {
    use futures::TryStreamExt;
    let s = engine.session();
    let mut out = Vec::new();
    for sql in DIGESTS {
        for r in s.execute_sql(sql).await.unwrap() {
            if let QueryResult::Rows { stream, .. } = r {
                let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
                out.push(datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string());
            }
        }
    }
    out
}

/// The section body.
pub fn measure() -> String {
    let rows = report::rows(1_000_000, 20_000) as i64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (store, engine) = open(&dir).await;
        let s = engine.session();
        s.execute_sql(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, amount BIGINT); \
             CREATE TABLE order_extension (order_id BIGINT PRIMARY KEY, channel TEXT); \
             CREATE TABLE customers (id BIGINT PRIMARY KEY, region TEXT)",
        )
        .await
        .unwrap();
        let (o, e, c) =
            (common::table(&engine, "orders"), common::table(&engine, "order_extension"), common::table(&engine, "customers"));
        let cids: Vec<i64> = (0..CUSTOMERS).collect();
        engine.dataflow().commit(&[(c.as_ref(), &ChangeBatch::uniform(customers(&cids), 1))], WriteBatch::default()).unwrap();
        let ids: Vec<i64> = (0..rows).collect();
        for chunk in ids.chunks(100_000) {
            let co = ChangeBatch::uniform(orders(chunk, 0), 1);
            let ce = ChangeBatch::uniform(common::extension(chunk), 1);
            engine.dataflow().commit(&[(o.as_ref(), &co), (e.as_ref(), &ce)], WriteBatch::default()).unwrap();
        }
        store.checkpoint().unwrap();
        // DDL makes itself durable before it returns: the checkpoint CREATE runs is the view's
        // first, which saves its whole state and result.
        let mut create_s = 0.0;
        let mut first_ms = 0.0;
        let mut first_bytes = 0;
        for (name, sql) in VIEWS {
            let t = Instant::now();
            s.execute_sql(&format!("CREATE MATERIALIZED VIEW {name} AS {sql}")).await.unwrap();
            create_s += t.elapsed().as_secs_f64();
            let stats = store.stats();
            first_ms += stats.last_duration.as_secs_f64() * 1000.0;
            first_bytes += stats.last_bytes;
        }
        println!("views created in {create_s:.2} s; their first checkpoints {first_ms:.0} ms, {first_bytes} bytes");
        // Incremental: 1,000 orders move to another customer and amount per round.
        let mut incremental = Vec::new();
        let mut bytes = 0;
        let mut salt_of = vec![0i64; rows as usize];
        for round in 0..7i64 {
            let picked: Vec<i64> = (0..DELTA as i64).map(|i| (i * 104_729 + round * 7_777) % rows).collect();
            let mut old = Vec::new();
            for &id in &picked {
                old.push(orders(&[id], salt_of[id as usize]));
                salt_of[id as usize] = round + 1;
            }
            let mut batches = old;
            batches.push(orders(&picked, round + 1));
            let data = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
            let weights = std::iter::repeat_n(-1, DELTA).chain(std::iter::repeat_n(1, DELTA)).collect();
            let change = ChangeBatch { data, weights, mode: Default::default() };
            engine.dataflow().commit(&[(o.as_ref(), &change)], WriteBatch::default()).unwrap();
            let t = Instant::now();
            store.checkpoint().unwrap();
            incremental.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = store.stats().last_bytes;
        }
        let incremental = Stats::of(&incremental);
        println!("checkpoint after {DELTA} changed orders: {incremental:.2} ms, {bytes} bytes");
        let want = digest(&engine).await;
        drop((s, o, e, c, engine, store));

        let runs = report::runs(3, 1);
        let mut loaded = Vec::new();
        let mut recomputed = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let (store, engine) = open(&dir).await;
            loaded.push(t.elapsed().as_secs_f64());
            assert!(engine.dataflow().views().iter().all(|v| v.loaded), "a view was recomputed");
            assert_eq!(digest(&engine).await, want, "loaded views differ");
            drop((engine, store));
            // Baseline: no saved plans, so every view is recomputed.
            {
                let store = FjallStore::open(&dir).unwrap();
                let mut batch = WriteBatch::default();
                batch.delete_prefix(&store, keys::VIEW_STATE).unwrap();
                store.apply(batch).unwrap();
                store.flush().unwrap();
            }
            let t = Instant::now();
            let (store, engine) = open(&dir).await;
            recomputed.push(t.elapsed().as_secs_f64());
            assert!(engine.dataflow().views().iter().all(|v| !v.loaded), "a view was loaded without its state");
            assert_eq!(digest(&engine).await, want, "recomputed views differ");
            // Saved again, for the next loaded restart.
            store.checkpoint().unwrap();
            drop((engine, store));
        }
        let (loaded, recomputed) = (Stats::of(&loaded), Stats::of(&recomputed));
        println!("restart loading the views {loaded:.2} s; recomputing them {recomputed:.2} s");
        format!(
            "## Views across a restart\n\n\
             `scripts/bench.sh recovery` (release; `HEADWATER_BENCH_ROWS`, default 1M). Tables `orders` ({rows} rows), \
             `order_extension` ({rows}), `customers` ({CUSTOMERS}) in a fjall data directory with images; three views: \
             `order_totals` (join on two primary keys under a 10k-group aggregate), `order_regions` (orders joined to \
             customers on `customer_id`: an index of {rows} orders by customer, rebuilt from `orders` at start-up \
             rather than saved; {rows} result rows), `top_amounts` (`max` \
             per customer: a multiset of values per group). {runs} restarts of each kind, median (min–max); both load \
             the same tables, and the views' rows are checked equal after each.\n\n\
             | restart (open + load tables and views) | views loaded from their saved state | baseline: views recomputed \
             from their inputs | ratio |\n|---|---|---|---|\n\
             | {rows}-row tables, 3 views | {loaded:.2} s | {recomputed:.2} s | {:.1}× |\n\n\
             | checkpoint | time | bytes written |\n|---|---|---|\n\
             | first after CREATE, one per view (each view's whole state and result; the time includes the cut, where the view \
             stages its state while commits wait) | {first_ms:.0} ms in all | {first_bytes} |\n\
             | after {DELTA} orders changed (tables, results, operator state: what changed) | {incremental:.2} ms | {bytes} |\n",
            recomputed.median / loaded.median
        )
    })
}
