//! Window-function view maintenance against recomputation: `lag` and a running `sum OVER`
//! partitioned into groups of ~100 rows over a table of `HEADWATER_BENCH_ROWS` rows (default
//! 1M); each round commits 1,000 updated rows (2,000 weighted rows: −old +new) through the
//! dataflow and is timed; the baseline runs the same query with DataFusion over the same rows
//! as in-memory Arrow batches. The headline is the first round in this fresh process (cold),
//! with the warm median beside it; the baseline's cold run likewise.
//!
//! Run: `scripts/bench.sh windows` (release). Results go to `docs/benchmarks.md`.

use crate::common;
use crate::report;

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use headwater::catalog::Namespace;
use headwater::change::ChangeBatch;
use headwater::sql::{Engine, QueryResult};
use headwater::state::{CheckpointedStore, MemoryStore, WriteBatch};
use report::Stats;

const VIEW: &str = "SELECT id, grp, v, lag(v) OVER (PARTITION BY grp ORDER BY id) AS prev, \
                    sum(v) OVER (PARTITION BY grp ORDER BY id) AS running FROM readings";
const PARTITION_ROWS: i64 = 100;
const DELTA: usize = 1_000;
const ROUNDS: usize = 50;

fn readings(ids: &[i64], partitions: i64, salt: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("grp", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(ids.iter().map(|i| i % partitions).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 31 + salt) % 1000).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

/// One number summarising a result: the sum of `running` and of `prev`.
async fn checksum(s: &headwater::sql::Session, sql: &str) -> String {
    use futures::TryStreamExt;
    let mut out = String::new();
    for r in s.execute_sql(sql).await.unwrap() {
        if let QueryResult::Rows { stream, .. } = r {
            let b: Vec<RecordBatch> = stream.try_collect().await.unwrap();
            out = datafusion::arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string();
        }
    }
    out
}

pub fn main() {
    let rows = report::rows(1_000_000, 20_000) as i64;
    let partitions = (rows / PARTITION_ROWS).max(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = Arc::new(CheckpointedStore::new(Arc::new(MemoryStore::default())));
        let engine = Engine::open(store.clone()).await.unwrap();
        let s = engine.session();
        s.execute_sql("CREATE TABLE readings (id BIGINT PRIMARY KEY, grp BIGINT, v BIGINT)").await.unwrap();
        let table = common::table(&engine, "readings");
        let ids: Vec<i64> = (0..rows).collect();
        for chunk in ids.chunks(100_000) {
            let change = ChangeBatch::uniform(readings(chunk, partitions, 0), 1);
            engine.dataflow().commit(&[(table.as_ref(), &change)], WriteBatch::default()).unwrap();
        }
        let started = Instant::now();
        s.execute_sql(&format!("CREATE MATERIALIZED VIEW lagged AS {VIEW}")).await.unwrap();
        let create_s = started.elapsed().as_secs_f64();
        let view_id = engine.catalog().get(Namespace::Relation, "lagged").unwrap().entry.id;

        let mut salt = vec![0i64; rows as usize];
        let mut incremental = Vec::new();
        for round in 0..report::runs(ROUNDS, 5) {
            let picked: Vec<i64> = (0..DELTA as i64).map(|i| (i * 104_729 + round as i64 * 7_777) % rows).collect();
            let old: Vec<RecordBatch> =
                picked.iter().map(|&id| readings(&[id], partitions, salt[id as usize])).collect();
            let new_salt = round as i64 + 1;
            for &id in &picked {
                salt[id as usize] = new_salt;
            }
            let new = readings(&picked, partitions, new_salt);
            let mut parts = old;
            parts.push(new);
            let data = datafusion::arrow::compute::concat_batches(&parts[0].schema(), &parts).unwrap();
            let weights = std::iter::repeat_n(-1, DELTA).chain(std::iter::repeat_n(1, DELTA)).collect();
            let change = ChangeBatch { data, weights, mode: Default::default() };
            let t = Instant::now();
            engine.dataflow().commit(&[(table.as_ref(), &change)], WriteBatch::default()).unwrap();
            incremental.push(t.elapsed().as_secs_f64() * 1000.0);
        }

        // Baseline: DataFusion computing the query from scratch over the same rows.
        let ctx = SessionContext::new();
        let batch = table.snapshot().unwrap();
        ctx.register_table("readings", Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap()))
            .unwrap();
        let mut recompute = Vec::new();
        for _ in 0..report::runs(5, 2) {
            let t = Instant::now();
            let out = ctx.sql(VIEW).await.unwrap().collect().await.unwrap();
            recompute.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>() as i64, rows);
        }
        // The view must equal the recomputation (a benchmark of a wrong answer is worthless).
        let totals = "SELECT sum(running) AS r, sum(prev) AS p, count(*) AS n FROM";
        let expected = {
            let b = ctx.sql(&format!("{totals} ({VIEW})")).await.unwrap().collect().await.unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string()
        };
        let ours = checksum(&s, &format!("{totals} lagged")).await;
        let digits = |t: &str| t.chars().filter(|c| c.is_ascii_digit() || *c == '|').collect::<String>();
        assert_eq!(digits(&ours), digits(&expected), "the view differs from recomputation");

        let info = engine.dataflow().view_info(view_id).unwrap();
        let cold = incremental[0];
        let warm = Stats::of(&incremental[1..]);
        let base_cold = recompute[0];
        let base_warm = Stats::of(&recompute[1..]);
        let body = format!(
            "## Window functions: lag + running sum over {rows} rows in partitions of ~{PARTITION_ROWS}\n\n\
             `{VIEW}`. Reproduce with `scripts/bench.sh windows` (`HEADWATER_BENCH_ROWS` changes the size). \
             Machine: {}.\n\n\
             | what | cold: first run in a fresh process, ms | warm, ms: median (min–max) | its time ÷ Headwater's (cold, warm) |\n\
             |---|---|---|---|\n\
             | baseline: DataFusion computing the query from in-memory Arrow batches | {base_cold:.1} | {base_warm:.1} | {:.1}×, {:.1}× |\n\
             | Headwater: commit of {DELTA} updated rows (2,000 weighted rows) through the dataflow — table + view ({} rounds) | {cold:.1} | {warm:.2} | |\n\n\
             A change evaluates only the partitions it touches (here ≤ {DELTA} of {partitions}, ~{PARTITION_ROWS} rows \
             each, before and after the change) and emits the rows whose values moved. Creating the view over the \
             loaded table took {create_s:.2} s. State: {} bytes in the operators ({:.0} per input row: the rows by \
             partition in ORDER BY order) plus {} bytes for the {} result rows.\n",
            report::machine(),
            base_cold / cold,
            base_warm.median / warm.median,
            incremental.len(),
            info.state_bytes,
            info.state_bytes as f64 / rows as f64,
            info.result_bytes,
            info.rows,
        );
        println!("{body}");
        report::write_section("windows", &body);
    });
}
