//! View maintenance against recomputation, in the same run on the same data:
//! a join + aggregate materialized view (DESIGN.md's `order_totals`) over `orders` and
//! `order_extension` with `HEADWATER_BENCH_ROWS` rows each (default 1M); deltas of 1,000
//! updated orders (2,000 weighted rows: −old +new) are committed through the dataflow, and
//! each commit is timed; the baseline recomputes the same query with DataFusion over the same
//! rows held as in-memory Arrow batches (DataFusion at its best: no conversion, no I/O). The
//! second baseline is the same dataflow written directly in differential-dataflow (one timely
//! worker, like Headwater's single commit path), fed the same deltas: the engine-level reference.
//!
//! Run: `scripts/bench.sh views` (release). Results go to `docs/benchmarks.md`.

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
use headwater::sql::Engine;
use headwater::state::{CheckpointedStore, MemoryStore, WriteBatch};
use report::Stats;

const VIEW: &str = "SELECT o.customer_id, count(*) AS n, sum(o.amount) AS total \
                    FROM orders o JOIN order_extension e ON e.order_id = o.id \
                    WHERE e.channel = 'web' GROUP BY o.customer_id";
const CUSTOMERS: i64 = 10_000;
const DELTA: usize = 1_000;
/// Enough rounds that the 1M-row table's recent changes are merged into its run at least
/// once (every ~60 rounds), so the figures include that amortised cost.
const ROUNDS: usize = 200;

/// Rounds of deltas: `HEADWATER_BENCH_VIEW_ROUNDS` (to profile the incremental phase under
/// `perf`), else [`ROUNDS`] (a few in a quick run).
fn rounds() -> usize {
    std::env::var("HEADWATER_BENCH_VIEW_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(report::runs(ROUNDS, 10))
}

/// The ids each round updates, and the salt that gives them a new customer and amount.
fn picked(round: usize, rows: i64) -> Vec<i64> {
    (0..DELTA as i64).map(|i| (i * 104_729 + round as i64 * 7_777) % rows).collect()
}

fn orders(ids: &[i64], salt: i64) -> RecordBatch {
    orders_salted(ids, |_| salt)
}

/// Orders `ids`, each with its own salt.
fn orders_salted(ids: &[i64], salt: impl Fn(i64) -> i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
    ]));
    let customer: Vec<i64> = ids.iter().map(|&i| (i * 7919 + salt(i)) % CUSTOMERS).collect();
    let amount: Vec<i64> = ids.iter().map(|&i| (i * 31 + salt(i)) % 1000).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(customer)),
        Arc::new(Int64Array::from(amount)),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

pub fn main() {
    let rows = report::rows(1_000_000, 20_000) as i64;
    let (dd_load_s, dd, dd_total) = differential(rows);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = Arc::new(CheckpointedStore::new(Arc::new(MemoryStore::default())));
        let engine = Engine::open(store.clone()).await.unwrap();
        // Checkpoints every second, as the server's default `--checkpoint-interval` does: the
        // staged writes the commits add are drained as they would be in production.
        let checkpoints = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    ticker.tick().await;
                    let s = store.clone();
                    tokio::task::spawn_blocking(move || s.checkpoint()).await.unwrap().unwrap();
                }
            })
        };
        let s = engine.session();
        s.execute_sql(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, amount BIGINT); \
             CREATE TABLE order_extension (order_id BIGINT PRIMARY KEY, channel TEXT)",
        )
        .await
        .unwrap();
        let (o, e) = (common::table(&engine, "orders"), common::table(&engine, "order_extension"));
        let ids: Vec<i64> = (0..rows).collect();
        for chunk in ids.chunks(100_000) {
            let co = ChangeBatch::uniform(orders(chunk, 0), 1);
            let ce = ChangeBatch::uniform(common::extension(chunk), 1);
            engine.dataflow().commit(&[(o.as_ref(), &co), (e.as_ref(), &ce)], WriteBatch::default()).unwrap();
        }
        let started = Instant::now();
        s.execute_sql(&format!("CREATE MATERIALIZED VIEW order_totals AS {VIEW}")).await.unwrap();
        let create_s = started.elapsed().as_secs_f64();
        let view_id = engine.catalog().get(Namespace::Relation, "order_totals").unwrap().entry.id;

        // Incremental: each round updates DELTA random-ish orders (new customer and amount).
        let mut current_salt = vec![0i64; rows as usize];
        let mut incremental = Vec::new();
        let phase = Instant::now();
        for round in 0..rounds() {
            let picked = picked(round, rows);
            let old = orders_salted(&picked, |id| current_salt[id as usize]);
            let salt = round as i64 + 1;
            let new = orders(&picked, salt);
            for &id in &picked {
                current_salt[id as usize] = salt;
            }
            let data = datafusion::arrow::compute::concat_batches(&old.schema(), [&old, &new]).unwrap();
            let weights = std::iter::repeat_n(-1, DELTA).chain(std::iter::repeat_n(1, DELTA)).collect();
            let change = ChangeBatch { data, weights, mode: Default::default() };
            let t = Instant::now();
            engine.dataflow().commit(&[(o.as_ref(), &change)], WriteBatch::default()).unwrap();
            incremental.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        eprintln!("incremental phase: {:.1} s", phase.elapsed().as_secs_f64());
        checkpoints.abort();

        // Baseline: DataFusion recomputing the view over the same rows as Arrow batches.
        let ctx = SessionContext::new();
        let ob = o.snapshot().unwrap();
        let eb = e.snapshot().unwrap();
        ctx.register_table("orders", Arc::new(MemTable::try_new(ob.schema(), vec![vec![ob]]).unwrap())).unwrap();
        ctx.register_table("order_extension", Arc::new(MemTable::try_new(eb.schema(), vec![vec![eb]]).unwrap()))
            .unwrap();
        let mut recompute = Vec::new();
        let mut fresh = Vec::new();
        for run in 0..=report::runs(5, 2) {
            let t = Instant::now();
            fresh = ctx.sql(VIEW).await.unwrap().collect().await.unwrap();
            if run > 0 {
                recompute.push(t.elapsed().as_secs_f64() * 1000.0); // run 0 warms up
            }
        }
        // The view must equal the recomputation (a benchmark of a wrong answer is worthless).
        let groups: usize = fresh.iter().map(|b| b.num_rows()).sum();
        let view_rows = s.execute_sql("SELECT count(*) FROM order_totals").await.unwrap();
        drop(view_rows);
        let info = engine.dataflow().view_info(view_id).unwrap();
        assert_eq!(info.rows as usize, groups, "view and recomputation disagree on the number of groups");
        let check = ctx.sql(&format!("SELECT sum(total), sum(n) FROM ({VIEW})")).await.unwrap().collect().await.unwrap();
        let expected = datafusion::arrow::util::pretty::pretty_format_batches(&check).unwrap().to_string();
        let ours = {
            let mut out = String::new();
            for r in s.execute_sql("SELECT sum(total), sum(n) FROM order_totals").await.unwrap() {
                if let headwater::sql::QueryResult::Rows { stream, .. } = r {
                    use futures::TryStreamExt;
                    let b: Vec<RecordBatch> = stream.try_collect().await.unwrap();
                    out = datafusion::arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string();
                }
            }
            out
        };
        let digits = |t: &str| t.chars().filter(|c| c.is_ascii_digit() || *c == '|').collect::<String>();
        assert_eq!(digits(&ours), digits(&expected), "view totals differ from recomputation");

        let inc = Stats::of(&incremental);
        let p99 = Stats::quantile(&incremental, 0.99);
        let base = Stats::of(&recompute);
        let dd_stats = Stats::of(&dd);
        let digits_only = |t: &str| t.chars().filter(|c| c.is_ascii_digit()).collect::<String>();
        assert!(
            digits_only(&ours).contains(&dd_total.to_string()),
            "differential-dataflow's total {dd_total} differs from the view's {ours}"
        );
        let input_rows = 2 * rows;
        let body = format!(
            "## View maintenance: join + aggregate over {rows} + {rows} rows\n\n\
             `{VIEW}` ({groups} groups). Reproduce with `scripts/bench.sh views` \
             (`HEADWATER_BENCH_ROWS` changes the size). Machine: {}.\n\n\
             | what | ms per delta, median (min–max) | Headwater vs this |\n|---|---|---|\n\
             | baseline: DataFusion recomputing the view from in-memory Arrow batches ({} runs) | {base:.2} | {:.1}× faster |\n\
             | baseline: the same dataflow in differential-dataflow 0.26, one worker, same deltas ({} rounds) | {dd_stats:.2} | {:.2}× its time |\n\
             | Headwater: commit of {DELTA} updated orders (2,000 weighted rows) through the dataflow — base table + view ({} rounds) | {inc:.2} | |\n\
             | Headwater: same, p99 | {p99:.2} | |\n\n\
             Creating the view over the loaded tables took {create_s:.2} s (differential-dataflow: {dd_load_s:.2} s \
             to load both inputs and compute the first result). State: {} bytes in the operators \
             ({:.0} bytes per input row: the `order_extension` side indexes its rows with channel 'web' by key; \
             the `orders` side joins on its table's primary key, so it probes the table's rows and keeps none) \
             plus {} bytes for the {} result rows. The base tables hold their rows in a row index: a sorted \
             run of Arrow-row-format bytes plus recent changes, merged into the run when they reach an eighth of \
             it, on a background thread (for the 1M-row `orders` about every 60 rounds; commits meanwhile add \
             levels above the ones being merged, and only the install takes the table's lock).\n",
            report::machine(),
            base.runs,
            base.median / inc.median,
            dd_stats.runs,
            inc.median / dd_stats.median,
            inc.runs,
            info.state_bytes,
            info.state_bytes as f64 / input_rows as f64,
            info.result_bytes,
            info.rows,
        );
        println!("{body}");
        report::write_section("views", &body);
    });
}

/// The view in differential-dataflow: `orders` semijoined with the ids of web orders, then
/// count and sum by customer. Loads `rows` orders and extensions, then applies the same
/// rounds of deltas as Headwater; returns the load time (s), ms per round, and the final
/// sum of the totals (checked against the view).
fn differential(rows: i64) -> (f64, Vec<f64>, i64) {
    use std::cell::Cell;
    use std::rc::Rc;

    use differential_dataflow::input::Input;

    timely::execute_directly(move |worker| {
        let total = Rc::new(Cell::new(0i64));
        let seen = total.clone();
        let (mut orders, mut web, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (orders, o) = scope.new_collection::<(i64, (i64, i64)), isize>();
            let (web, w) = scope.new_collection::<i64, isize>();
            let (probe, _) = o
                .semijoin(w)
                .map(|(_id, (customer, amount))| (customer, amount))
                .reduce(|_customer, input: &[(&i64, isize)], output: &mut Vec<((i64, i64), isize)>| {
                    let n: isize = input.iter().map(|(_, w)| *w).sum();
                    let sum: i64 = input.iter().map(|(a, w)| **a * *w as i64).sum();
                    output.push(((n as i64, sum), 1));
                })
                .inspect(move |((_c, (_n, sum)), _t, diff)| seen.set(seen.get() + sum * *diff as i64))
                .probe();
            (orders, web, probe)
        });
        let order = |id: i64, salt: i64| (id, ((id * 7919 + salt) % CUSTOMERS, (id * 31 + salt) % 1000));
        let started = Instant::now();
        for id in 0..rows {
            orders.insert(order(id, 0));
            if id % 3 == 0 {
                web.insert(id);
            }
        }
        orders.advance_to(1);
        web.advance_to(1);
        orders.flush();
        web.flush();
        worker.step_while(|| probe.less_than(orders.time()));
        let load_s = started.elapsed().as_secs_f64();

        let mut salt = vec![0i64; rows as usize];
        let mut times = Vec::new();
        for round in 0..rounds() {
            let t = Instant::now();
            for id in picked(round, rows) {
                orders.remove(order(id, salt[id as usize]));
                salt[id as usize] = round as i64 + 1;
                orders.insert(order(id, salt[id as usize]));
            }
            let next = round as u64 + 2;
            orders.advance_to(next);
            web.advance_to(next);
            orders.flush();
            web.flush();
            worker.step_while(|| probe.less_than(orders.time()));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        (load_s, times, total.get())
    })
}
