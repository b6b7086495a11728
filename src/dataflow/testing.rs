//! The operators' own randomized tests (dbsp's habit): each operator, compiled from a query
//! by [`super::compile`], is stepped through random deltas of many sizes, and after every
//! step the sum of its output deltas must equal the query recomputed from scratch by
//! DataFusion over the tables' current rows. The engine-level oracle
//! (`tests/integration/views_oracle.rs`) checks whole views through the server; these check
//! one operator at a time, without a server, over hundreds of steps.
//!
//! The tables: `t(k INT PRIMARY KEY, g INT, v INT)` and `u(k INT PRIMARY KEY, g INT, v INT)`,
//! `g` from a few groups and `v` nullable, so groups, join keys and NULLs collide often.
//! Each step inserts, deletes and updates up to a random number of rows (1, 3, 10, 40 or
//! 150) in one or both tables, as local DML would; tables stay around 200 rows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, Int32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::{ColumnarValue, Expr, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::compile::{compile, ScanResolver};
use super::errors::ErrorDelta;
use super::operator::Deltas;
use crate::change::{ApplyMode, ChangeBatch};
use crate::state::TableState;

/// A table whose rows are a [`TableState`], for planning only (the operators read the
/// state; the reference reads a copy of its rows).
#[derive(Debug)]
struct StateTable(Arc<TableState>);

#[async_trait]
impl TableProvider for StateTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let rows = self.0.snapshot().map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        MemTable::try_new(self.schema(), vec![vec![rows]])?.scan(state, projection, filters, limit).await
    }
}

struct Resolver;

impl ScanResolver for Resolver {
    fn table_state(&self, provider: &dyn TableProvider) -> Option<Arc<TableState>> {
        provider.downcast_ref::<StateTable>().map(|t| t.0.clone())
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, false),
        Field::new("g", DataType::Int32, true),
        Field::new("v", DataType::Int32, true),
    ]))
}

/// A deterministic generator (xorshift), so a failure names a seed that replays it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One table's rows as the test models them: key → (g, v).
type Model = BTreeMap<i32, (Option<i32>, Option<i32>)>;

/// A random change of up to `size` rows to `model`: inserts of new keys, deletes and
/// updates of live ones, as a Z-set delta (an update is −old +new).
fn random_change(rng: &mut Rng, model: &mut Model, size: usize, next_key: &mut i32) -> ChangeBatch {
    let mut rows: Vec<(i32, Option<i32>, Option<i32>, i64)> = Vec::new();
    let mut touched = std::collections::HashSet::new();
    let value = |rng: &mut Rng| if rng.below(8) == 0 { None } else { Some(rng.below(10) as i32) };
    for _ in 0..size {
        let live: Vec<i32> = model.keys().copied().filter(|k| !touched.contains(k)).collect();
        // Past 200 rows, changes lean to deletes, so tables (and join outputs) stay small
        // enough to recompute at every step.
        let removes = if model.len() > 200 { 3 } else { 2 };
        match rng.below(4) {
            n if n < removes && !live.is_empty() => {
                let k = live[rng.below(live.len() as u64) as usize];
                touched.insert(k);
                let (g, v) = model.remove(&k).expect("live");
                rows.push((k, g, v, -1));
                if rng.below(2) == 0 {
                    // An update: the same key with new values.
                    let new = (Some(rng.below(4) as i32), value(rng));
                    rows.push((k, new.0, new.1, 1));
                    model.insert(k, new);
                }
            }
            _ => {
                let k = *next_key;
                *next_key += 1;
                touched.insert(k);
                let row = (if rng.below(10) == 0 { None } else { Some(rng.below(4) as i32) }, value(rng));
                rows.push((k, row.0, row.1, 1));
                model.insert(k, row);
            }
        }
    }
    let data = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int32Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(Int32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(Int32Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .expect("batch");
    ChangeBatch { data, weights: rows.iter().map(|r| r.3).collect(), mode: ApplyMode::Delta }
}

/// Each row of `batch` as text, with its weight added to `into`; zero weights vanish.
fn add_rows(into: &mut BTreeMap<String, i64>, batch: &RecordBatch, weights: impl Iterator<Item = i64>) {
    for (i, w) in weights.enumerate() {
        let row: Vec<String> = batch
            .columns()
            .iter()
            .map(|c| if c.is_null(i) { "NULL".into() } else { array_value_to_string(c, i).expect("display") })
            .collect();
        *into.entry(row.join("|")).or_default() += w;
    }
    into.retain(|_, w| *w != 0);
}

/// Steps the operator compiled from `sql` (over `t` and `u`) through `steps` random commits
/// and checks its accumulated output against DataFusion's answer after each one.
pub(crate) async fn check(sql: &str, seed: u64, steps: usize) {
    run(sql, seed, steps, None).await
}

/// [`check`] for a query whose filter reads `mz_now()` ([`super::temporal`]): between
/// commits the engine clock moves on by 0 to 3 minutes (some steps change no table, only
/// the time), and the reference reads the same clock.
pub(crate) async fn check_over_time(sql: &str, seed: u64, steps: usize) {
    run(sql, seed, steps, Some(Arc::new(AtomicI64::new(0)))).await
}

/// `mz_now()` reading `clock` (microseconds), as the reference query sees it.
fn clock_udf(clock: Arc<AtomicI64>) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::create_udf(
        super::temporal::MZ_NOW,
        vec![],
        DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
        Volatility::Volatile,
        Arc::new(move |_| {
            let ns = clock.load(Ordering::Relaxed) * 1000;
            Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(ns), Some("+00:00".into()))))
        }),
    )
}

async fn run(sql: &str, seed: u64, steps: usize, clock: Option<Arc<AtomicI64>>) {
    let t = Arc::new(TableState::new(1, "t", schema(), Some(vec![0])).expect("t"));
    let u = Arc::new(TableState::new(2, "u", schema(), Some(vec![0])).expect("u"));
    let ctx = SessionContext::new();
    if let Some(clock) = &clock {
        ctx.register_udf(clock_udf(clock.clone()));
    }
    ctx.register_table("t", Arc::new(StateTable(t.clone()))).expect("register t");
    ctx.register_table("u", Arc::new(StateTable(u.clone()))).expect("register u");
    let plan = ctx.sql(sql).await.expect("plan").into_optimized_plan().expect("optimize");
    let (mut root, _) = compile(&plan, &Resolver).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rng = Rng(seed | 1);
    let mut models = [Model::new(), Model::new()];
    let mut next_key = 0;
    let mut view: BTreeMap<String, i64> = BTreeMap::new();
    for step in 0..steps {
        if let Some(clock) = &clock {
            clock.fetch_add(rng.below(4) as i64 * 60_000_000, Ordering::Relaxed);
        }
        let now = clock.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        let mut deltas = Deltas::at(now);
        // With a clock, a quarter of the steps change no table: only the time passes.
        let which = if clock.is_some() { rng.below(4) } else { rng.below(3) };
        for (i, table) in [&t, &u].into_iter().enumerate() {
            if which == 2 || which as usize == i {
                let size = [1, 3, 10, 40, 150][rng.below(5) as usize];
                let change = random_change(&mut rng, &mut models[i], size, &mut next_key);
                deltas.insert(table.id(), change);
            }
        }
        let mut errors = ErrorDelta::default();
        // Operators step before the tables change, as in a commit: an operator reading its
        // input's rows sees them as of before the delta.
        let out = root.step(&deltas, &mut errors).unwrap_or_else(|e| panic!("{sql}, seed {seed}, step {step}: {e}"));
        for table in [&t, &u] {
            if let Some(change) = deltas.get(&table.id()) {
                let planned = table.plan_change(change).expect("plan change");
                table.apply_planned(planned);
            }
        }
        if let Some(out) = out {
            add_rows(&mut view, &out.data, out.weights.iter().copied());
        }
        assert!(view.values().all(|w| *w > 0), "{sql}, seed {seed}, step {step}: negative multiplicity {view:?}");
        let want = ctx.sql(sql).await.expect("reference").collect().await.expect("reference rows");
        let mut expected = BTreeMap::new();
        for batch in &want {
            add_rows(&mut expected, batch, std::iter::repeat_n(1, batch.num_rows()));
        }
        assert_eq!(view, expected, "{sql}, seed {seed}, after step {step}");
    }
}

/// How many steps each query runs: enough to reach every delta size many times.
pub(crate) const STEPS: usize = 120;
