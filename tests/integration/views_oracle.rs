//! Materialized views against recomputation: random tables, random INSERT/UPDATE/DELETE
//! sequences (NULL keys, duplicate rows, emptied groups, key updates), and after every
//! statement each view must equal its query run from scratch by DataFusion over the same
//! tables. The views cover every operator: inner/left/right/full joins with residual
//! predicates, semi/anti joins from IN/EXISTS, null-aware anti joins from NOT IN, top-k (ORDER BY ... LIMIT/OFFSET, and per group: row_number() OVER (PARTITION BY ...) <= n), window functions, grouped, ordered and global aggregates, DISTINCT,
//! UNION [ALL], INTERSECT, EXCEPT, scalar subqueries, cross joins, projections with CASE/casts/functions, WITH RECURSIVE, and views on views.
//!
//! Views whose expressions fail on some rows ([`ERROR_VIEWS`]) must fail to read exactly when
//! their query fails from scratch, and equal it otherwise.
//!
//! `HEADWATER_VIEW_CASES` sets the number of random cases (default 5, each ~30 s in a debug
//! build; `scripts/soak.sh` runs 60).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use headwater::sql::{Engine, QueryResult, Session};
use headwater::state::{CheckpointedStore, MemoryStore};
use proptest::prelude::*;

/// (name, query): each becomes a materialized view and is also recomputed from scratch.
const VIEWS: &[(&str, &str)] = &[
    ("v_inner", "SELECT a.id, a.k, a.v, b.id AS bid, b.w FROM a JOIN b ON a.k = b.k AND a.v < b.w"),
    ("v_left", "SELECT a.id, a.k, b.id AS bid, b.w FROM a LEFT JOIN b ON a.k = b.k"),
    ("v_left_residual", "SELECT a.id, b.id AS bid FROM a LEFT JOIN b ON a.k = b.k AND b.w > a.v"),
    ("v_right", "SELECT a.id, b.id AS bid, b.k FROM a RIGHT JOIN b ON a.k = b.k"),
    ("v_full", "SELECT a.id, b.id AS bid FROM a FULL JOIN b ON a.k = b.k AND a.v <> b.w"),
    ("v_semi", "SELECT id, k FROM a WHERE k IN (SELECT k FROM b WHERE w > 2)"),
    ("v_anti", "SELECT id, k, v FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k)"),
    ("v_semi_residual", "SELECT id, v FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.k AND b.w > a.v)"),
    ("v_anti_residual", "SELECT id FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k AND b.w = a.v)"),
    // EXISTS / IN under OR: mark joins.
    ("v_exists_or", "SELECT id FROM a WHERE v > 3 OR EXISTS (SELECT 1 FROM b WHERE b.k = a.k)"),
    ("v_in_or", "SELECT id, k FROM a WHERE v < 1 OR k IN (SELECT k FROM b WHERE w > 2)"),
    ("v_not_in", "SELECT id, k FROM a WHERE k NOT IN (SELECT k FROM b)"),
    ("v_not_in_filtered", "SELECT id, v FROM a WHERE v NOT IN (SELECT w FROM b WHERE k > 1)"),
    (
        "v_agg",
        "SELECT k, count(*) AS n, count(v) AS nv, sum(v) AS s, min(v) AS lo, max(v) AS hi, avg(v) AS mean, \
         count(DISTINCT v) AS dv, bool_and(v > 2) AS all_big, bool_or(v > 4) AS any_big, \
         string_agg(CAST(v AS TEXT), ',' ORDER BY CAST(v AS TEXT)) AS vs \
         FROM a GROUP BY k HAVING count(*) > 1",
    ),
    // ROLLUP beside a plain GROUP BY column: one aggregate per set (`compile::grouping`).
    ("v_rollup_mixed", "SELECT k, v, count(*) AS n, sum(id) AS s, grouping(v) AS gv FROM a GROUP BY k, ROLLUP (v)"),
    ("v_global", "SELECT count(*) AS n, sum(v) AS s, max(v) AS hi, min(k) AS lo FROM a"),
    ("v_distinct", "SELECT DISTINCT k, v FROM a"),
    ("v_union_all", "SELECT k FROM a UNION ALL SELECT k FROM b"),
    ("v_union", "SELECT k FROM a UNION SELECT k FROM b"),
    ("v_intersect", "SELECT k FROM a INTERSECT SELECT k FROM b"),
    ("v_except", "SELECT k FROM a EXCEPT SELECT k FROM b"),
    ("v_scalar", "SELECT id FROM a WHERE v > (SELECT min(w) FROM b WHERE b.k = a.k)"),
    // Uncorrelated scalar subqueries (`dataflow::scalar_subquery`): in WHERE, HAVING, the select
    // list; over an empty table (NULL), under HAVING (no row: NULL).
    ("v_scalar_where", "SELECT id, v FROM a WHERE v > (SELECT avg(w) FROM b)"),
    ("v_scalar_having", "SELECT k, sum(v) AS s FROM a GROUP BY k HAVING sum(v) > (SELECT sum(w) / 4 FROM b)"),
    ("v_scalar_select", "SELECT id, (SELECT max(w) FROM b) AS top, (SELECT count(*) FROM b WHERE w > 2) AS n FROM a"),
    ("v_scalar_empty", "SELECT id, (SELECT max(w) FROM b HAVING count(*) > 3) AS top FROM a"),
    ("v_cross", "SELECT a.id, b.id AS bid FROM a CROSS JOIN b WHERE a.k > 2 AND b.k < 1"),
    ("v_join_agg", "SELECT a.k, count(*) AS n, sum(b.w) AS total FROM a JOIN b ON a.k = b.k GROUP BY a.k"),
    (
        "v_project",
        "SELECT id, CASE WHEN v > 3 THEN 'hi' ELSE 'lo' END AS band, coalesce(k, -1) * 2 AS k2, \
         CAST(v AS TEXT) || '!' AS t FROM a WHERE v IS NOT NULL",
    ),
    ("v_topk", "SELECT id, k, v FROM a ORDER BY v DESC NULLS LAST, id LIMIT 3"),
    ("v_topk_offset", "SELECT k, v FROM a ORDER BY k NULLS FIRST, v, id LIMIT 2 OFFSET 2"),
    ("v_topk_agg", "SELECT k, count(*) AS n FROM b GROUP BY k ORDER BY count(*) DESC, k LIMIT 2"),
    (
        "v_rank",
        "SELECT id, k, v, rn FROM (SELECT id, k, v, row_number() OVER (PARTITION BY k ORDER BY v DESC NULLS LAST, id) AS rn \
         FROM a) t WHERE rn <= 2",
    ),
    (
        "v_rank_first",
        "SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY k ORDER BY v NULLS FIRST, id) AS rn FROM a) t WHERE rn = 1",
    ),
    // DISTINCT ON: the first row of each group by the ORDER BY (a top-1 per partition).
    ("v_distinct_on", "SELECT DISTINCT ON (k) k, id, v FROM a ORDER BY k, v DESC NULLS LAST, id"),
    ("v_unnest", "SELECT id, unnest(ARRAY[k, v, k + v]) AS e FROM a WHERE v IS NOT NULL"),
    ("v_unnest_agg", "SELECT e, count(*) AS n FROM (SELECT unnest(ARRAY[k, w]) AS e FROM b) t GROUP BY e"),
    ("v_distinct_on_expr", "SELECT DISTINCT ON (k % 2) id, w FROM b ORDER BY k % 2, w NULLS FIRST, id DESC"),
    ("v_rank_global", "SELECT id, rn FROM (SELECT id, row_number() OVER (ORDER BY id DESC) AS rn FROM b) t WHERE rn < 3"),
    // Window functions (`dataflow::window`): every partition a change touches is evaluated
    // again. Orders are total (ending in the key `id`) where the function sees row order;
    // rank-like functions and RANGE frames give peers equal values, so ties need no tie-break.
    (
        "w_rank",
        "SELECT id, k, v, rank() OVER (PARTITION BY k ORDER BY v NULLS FIRST) AS r, \
         dense_rank() OVER (PARTITION BY k ORDER BY v NULLS FIRST) AS dr, \
         percent_rank() OVER (PARTITION BY k ORDER BY v NULLS FIRST) AS pr, \
         cume_dist() OVER (PARTITION BY k ORDER BY v NULLS FIRST) AS cd FROM a",
    ),
    (
        "w_lag",
        "SELECT id, lag(v) OVER (PARTITION BY k ORDER BY id) AS prev, \
         lead(v, 2, -1) OVER (PARTITION BY k ORDER BY id) AS next2, \
         row_number() OVER (PARTITION BY k ORDER BY id DESC) AS rn FROM a",
    ),
    (
        "w_frames",
        "SELECT id, sum(v) OVER (PARTITION BY k ORDER BY id) AS running, sum(v) OVER (PARTITION BY k) AS total, \
         count(v) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS near, \
         max(v) OVER (PARTITION BY k ORDER BY v RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) AS top FROM a",
    ),
    (
        "w_values",
        "SELECT id, first_value(w) OVER (ORDER BY id) AS f, \
         last_value(w) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS l, \
         nth_value(w, 2) OVER (ORDER BY id) AS second, ntile(3) OVER (ORDER BY id) AS third FROM b",
    ),
    // Two windows with different partitions (two operators), and a filter on a rank.
    (
        "w_mixed",
        "SELECT id, count(*) OVER (PARTITION BY k) AS in_k, avg(w) OVER (PARTITION BY w > 2 ORDER BY id) AS m FROM b",
    ),
    (
        "w_top_rank",
        "SELECT id, k, r FROM (SELECT id, k, rank() OVER (PARTITION BY k ORDER BY v DESC NULLS LAST) AS r FROM a) t \
         WHERE r <= 2",
    ),
    ("w_over_agg", "SELECT k, count(*) AS n, sum(count(*)) OVER (ORDER BY k NULLS FIRST) AS cum FROM b GROUP BY k"),
    // Grouping sets: a union of one aggregate per set, the grand total a global aggregate
    // (one row over an empty table), duplicate sets told apart by the grouping id.
    (
        "g_rollup",
        "SELECT k, v % 2 AS parity, count(*) AS n, sum(v) AS s, grouping(k) AS gk FROM a GROUP BY ROLLUP(k, v % 2)",
    ),
    ("g_cube", "SELECT k, w, count(*) AS n FROM b GROUP BY CUBE(k, w)"),
    ("g_sets", "SELECT k, w, max(id) AS top FROM b GROUP BY GROUPING SETS ((k), (w), (k), ())"),
    // Ordered aggregates: the ORDER BY is kept beside the arguments.
    (
        "v_ordered_agg",
        "SELECT k, string_agg(CAST(id AS TEXT), ',' ORDER BY v DESC NULLS LAST, id) AS ids, \
         array_agg(v ORDER BY id) AS vs, percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS med FROM a GROUP BY k",
    ),
    // Joins on a primary key: those sides probe the table's own rows (no index of their own).
    ("v_pk_inner", "SELECT a.id, a.v, b.w FROM a JOIN b ON b.id = a.id"),
    ("v_pk_left", "SELECT a.id, a.k, b.w FROM a LEFT JOIN b ON a.id = b.id"),
    ("v_pk_full_residual", "SELECT a.id, a.v, b.id AS bid, b.w FROM a FULL JOIN b ON a.id = b.id AND a.v < b.w"),
    ("v_pk_one_side", "SELECT a.id, b.id AS bid, b.w FROM a JOIN b ON a.k = b.id"),
    ("v_pk_semi", "SELECT id, v FROM a WHERE id IN (SELECT id FROM b WHERE w > 1)"),
    ("v_pk_anti", "SELECT id, k FROM b WHERE NOT EXISTS (SELECT 1 FROM a WHERE a.id = b.id)"),
    ("v_pk_self", "SELECT x.id, x.v, y.k FROM a x JOIN a y ON x.id = y.id WHERE y.k IS NOT NULL"),
    ("v_pk_agg", "SELECT a.k, count(*) AS n, sum(b.w) AS total FROM a JOIN b ON a.id = b.id GROUP BY a.k"),
    ("v_on_view", "SELECT k, sum(w) AS sw, count(bid) AS nb FROM v_left GROUP BY k"),
    ("v_on_view_key", "SELECT g.k, g.n, a.id FROM v_pk_agg g JOIN a ON a.id = g.k"),
    ("v_on_agg", "SELECT k FROM v_agg WHERE s > 5"),
];

/// Views whose expressions fail on some rows (a zero divisor: the values are 0..5 or NULL).
/// Created on the empty tables; after every statement, a view must fail to read exactly when
/// its query fails from scratch (with the same SQLSTATE), else equal it: errors come and go
/// with the rows that cause them (`dataflow::errors`). (A join key that fails is an error
/// whatever the other side holds, where DataFusion skips probing an empty side: not compared.)
const ERROR_VIEWS: &[(&str, &str)] = &[
    ("e_project", "SELECT id, 10 / v AS q FROM a"),
    ("e_filter", "SELECT id, k FROM a WHERE 10 / v > 2"),
    ("e_agg", "SELECT k, count(*) AS n, sum(100 / w) AS s FROM b GROUP BY k"),
    ("e_group_key", "SELECT 10 / w AS g, count(*) AS n FROM b GROUP BY 10 / w"),
    ("e_join_residual", "SELECT a.id, b.id AS bid FROM a JOIN b ON a.k = b.k AND a.v / b.w > 0"),
    ("e_left_residual", "SELECT a.id, b.id AS bid FROM a LEFT JOIN b ON a.k = b.k AND 10 / b.w > a.v"),
    // WITH RECURSIVE (`dataflow::recursive`): reachability with cycles (a set), and paths
    // bounded by depth (a bag).
    (
        "v_recursive",
        "WITH RECURSIVE r(n) AS (SELECT k FROM a UNION SELECT b.w FROM r JOIN b ON r.n = b.k) SELECT * FROM r",
    ),
    (
        "v_recursive_paths",
        "WITH RECURSIVE r(n, d) AS (SELECT k, 0 FROM a UNION ALL SELECT b.w, r.d + 1 FROM r JOIN b ON r.n = b.k \
         WHERE r.d < 3) SELECT n, d FROM r",
    ),
    ("e_topk", "SELECT id, v FROM a ORDER BY 10 / v, id LIMIT 3"),
    ("e_window", "SELECT id, sum(10 / v) OVER (PARTITION BY k ORDER BY id) AS s FROM a"),
    ("e_window_key", "SELECT id, rank() OVER (PARTITION BY 10 / v ORDER BY id) AS r FROM a"),
    ("e_on_view", "SELECT count(*) AS n, sum(q) AS s FROM e_project"),
];

/// Views whose query leaves which rows come out unspecified, each with the query that says
/// which rows the view keeps (`LIMIT` without `ORDER BY`: the first by all columns, ascending,
/// NULLs first): created with the [`VIEWS`], compared with that query.
const DETERMINED_VIEWS: &[(&str, &str, &str)] = &[
    ("d_limit", "SELECT k, v FROM a LIMIT 3", "SELECT k, v FROM a ORDER BY k NULLS FIRST, v NULLS FIRST LIMIT 3"),
    // The limit sits under the projection: the rows are ordered by the columns it reads, in the
    // table's order (k, w), whatever the select list's order.
    (
        "d_limit_offset",
        "SELECT w, k FROM b LIMIT 2 OFFSET 1",
        "SELECT w, k FROM b ORDER BY k NULLS FIRST, w NULLS FIRST LIMIT 2 OFFSET 1",
    ),
];

/// Temporal filters (`dataflow::temporal`), on an engine clock the test moves in minutes from
/// the epoch ([`Op::Tick`]): each compared with its query where `now()` is the clock's time.
const TEMPORAL_VIEWS: &[(&str, &str)] = &[
    ("t_recent", "SELECT id, k FROM a WHERE to_timestamp(id * 60) > now() - INTERVAL '10 minutes'"),
    (
        "t_window",
        "SELECT k, count(*) AS n FROM b WHERE to_timestamp(id * 60) <= mz_now() \
         AND to_timestamp((id + 5) * 60) >= current_timestamp AND w IS NOT NULL GROUP BY k",
    ),
];

/// A temporal view's query at clock time `minutes`.
fn at_time(query: &str, minutes: i64) -> String {
    let t = format!("to_timestamp({})", minutes * 60);
    query.replace("mz_now()", &t).replace("now()", &t).replace("current_timestamp", &t)
}

/// Moves the engine's clock to `minutes` after the epoch.
fn set_clock(engine: &Engine, minutes: i64) {
    engine.dataflow().clock().freeze(Some(minutes * 60_000_000));
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        table: bool,
        rows: Vec<(i32, Option<i32>, Option<i32>)>,
    },
    UpdateValue {
        table: bool,
        k: Option<i32>,
        value: Option<i32>,
    },
    UpdateKeyColumn {
        table: bool,
        id: i32,
        k: Option<i32>,
    },
    MoveId {
        table: bool,
        id: i32,
    },
    Delete {
        table: bool,
        k: Option<i32>,
    },
    DeleteId {
        table: bool,
        id: i32,
    },
    /// One transaction changing both tables: both sides of a join change in one commit.
    Both {
        id: i32,
        value: Option<i32>,
        insert: bool,
    },
    /// The engine stops and a new one opens the same store: views are loaded from their saved
    /// state (`dataflow::durable`), and `whole` makes every operator save itself whole at the
    /// cuts before (as after a bulk change) instead of entry by entry.
    Restart {
        whole: bool,
    },
    /// The engine clock moves forward by `minutes` and the dataflow ticks.
    Tick {
        minutes: i64,
    },
}

fn lit(v: Option<i32>) -> String {
    v.map_or("NULL".into(), |v| v.to_string())
}

fn eq(col: &str, v: Option<i32>) -> String {
    v.map_or(format!("{col} IS NULL"), |v| format!("{col} = {v}"))
}

impl Op {
    fn sql(&self) -> String {
        let t = |b: &bool| if *b { "a" } else { "b" };
        let vcol = |b: &bool| if *b { "v" } else { "w" };
        match self {
            Op::Insert { table, rows } => {
                let values: Vec<String> =
                    rows.iter().map(|(id, k, v)| format!("({id}, {}, {})", lit(*k), lit(*v))).collect();
                format!("INSERT INTO {} VALUES {}", t(table), values.join(", "))
            }
            Op::UpdateValue { table, k, value } => {
                format!("UPDATE {} SET {} = {} WHERE {}", t(table), vcol(table), lit(*value), eq("k", *k))
            }
            Op::UpdateKeyColumn { table, id, k } => format!("UPDATE {} SET k = {} WHERE id = {id}", t(table), lit(*k)),
            Op::MoveId { table, id } => format!("UPDATE {} SET id = id + 1000 WHERE id = {id}", t(table)),
            Op::Delete { table, k } => format!("DELETE FROM {} WHERE {}", t(table), eq("k", *k)),
            Op::DeleteId { table, id } => format!("DELETE FROM {} WHERE id = {id}", t(table)),
            Op::Both { id, value, insert: true } => format!(
                "BEGIN; INSERT INTO a VALUES ({id}, {v}, {v}); INSERT INTO b VALUES ({id}, {v}, {v}); COMMIT",
                v = lit(*value)
            ),
            Op::Restart { .. } => "-- restart".into(),
            Op::Tick { minutes } => format!("-- {minutes} minutes pass"),
            Op::Both { id, value, insert: false } => format!(
                "BEGIN; UPDATE a SET v = {v} WHERE id = {id}; DELETE FROM b WHERE id = {id} + 1; \
                 UPDATE b SET w = {v}, id = {id} + 1 WHERE id = {id}; COMMIT",
                v = lit(*value)
            ),
        }
    }
}

fn small() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![1 => Just(None), 6 => (0..5i32).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let table = any::<bool>();
    prop_oneof![
        5 => (table, prop::collection::vec((0..40i32, small(), small()), 1..6))
            .prop_map(|(table, rows)| Op::Insert { table, rows }),
        2 => (table, small(), small()).prop_map(|(table, k, value)| Op::UpdateValue { table, k, value }),
        2 => (table, 0..40i32, small()).prop_map(|(table, id, k)| Op::UpdateKeyColumn { table, id, k }),
        1 => (table, 0..40i32).prop_map(|(table, id)| Op::MoveId { table, id }),
        2 => (table, small()).prop_map(|(table, k)| Op::Delete { table, k }),
        2 => (table, 0..40i32).prop_map(|(table, id)| Op::DeleteId { table, id }),
        2 => (0..40i32, small(), any::<bool>()).prop_map(|(id, value, insert)| Op::Both { id, value, insert }),
        1 => any::<bool>().prop_map(|whole| Op::Restart { whole }),
        2 => (0..8i64).prop_map(|minutes| Op::Tick { minutes }),
    ]
}

async fn rows(session: &Session, sql: &str) -> Vec<String> {
    try_rows(session, sql).await.unwrap_or_else(|sqlstate| panic!("{sql}: failed with {sqlstate}"))
}

/// An engine over `store` (in memory), opened as at start-up.
async fn open(store: &Arc<MemoryStore>) -> Arc<Engine> {
    Engine::open(Arc::new(CheckpointedStore::new(store.clone()))).await.expect("engine opens")
}

/// An in-memory engine with the tables `a` and `b`, and `fill` (SQL) run on them.
async fn engine_with_tables(fill: &str) -> Arc<Engine> {
    engine_in(&Arc::new(MemoryStore::default()), fill).await
}

/// [`engine_with_tables`] over `store`.
async fn engine_in(store: &Arc<MemoryStore>, fill: &str) -> Arc<Engine> {
    let engine = open(store).await;
    engine
        .session()
        .execute_sql(&format!(
            "CREATE TABLE a (id INT PRIMARY KEY, k INT, v INT); CREATE TABLE b (id INT PRIMARY KEY, k INT, w INT); {fill}"
        ))
        .await
        .unwrap();
    engine
}

/// Creates the [`VIEWS`] named `names`.
async fn create_views(s: &Session, names: &[&str]) {
    for (name, query) in VIEWS.iter().filter(|(n, _)| names.contains(n)) {
        s.execute_sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
}

/// Held by the tests that set or depend on how views save their state
/// (`set_min_recorded_for_tests` is process-wide; the tests of this binary run in parallel).
static SAVE_MODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The rows of `sql` (sorted), or the SQLSTATE it fails with.
async fn try_rows(session: &Session, sql: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for result in session.execute_sql(sql).await.map_err(|e| e.sqlstate().to_string())? {
        if let QueryResult::Rows { stream, .. } = result {
            let batches: Vec<RecordBatch> =
                stream.try_collect().await.map_err(|e| headwater::error::Error::from(e).sqlstate().to_string())?;
            for b in batches {
                let options = FormatOptions::default().with_null("NULL");
                let formatters: Vec<ArrayFormatter> =
                    b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
                for r in 0..b.num_rows() {
                    out.push(formatters.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join("|"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Each of [`ERROR_VIEWS`] fails to read exactly when its query does, else equals it.
async fn check_error_views(s: &Session, context: &str) {
    for (name, query) in ERROR_VIEWS {
        let view = try_rows(s, &format!("SELECT * FROM {name}")).await;
        let fresh = try_rows(s, query).await;
        assert_eq!(view, fresh, "view {name} {context}");
    }
}

/// Each of [`TEMPORAL_VIEWS`] equals its query at clock time `minutes`.
async fn check_temporal_views(s: &Session, minutes: i64, context: &str) {
    for (name, query) in TEMPORAL_VIEWS {
        let view = rows(s, &format!("SELECT * FROM {name}")).await;
        let fresh = rows(s, &at_time(query, minutes)).await;
        assert_eq!(view, fresh, "view {name} at minute {minutes}, {context}");
    }
}

async fn run_case(ops: Vec<Op>, create_views_after: usize) {
    let _save_mode = SAVE_MODE.lock().await;
    let store = Arc::new(MemoryStore::default());
    let mut engine = engine_in(&store, "").await;
    let mut minutes = 0;
    set_clock(&engine, minutes);
    let mut s = engine.session();
    for (name, query) in ERROR_VIEWS {
        s.execute_sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    let mut created = false;
    for (step, op) in ops.iter().enumerate() {
        if let Op::Restart { whole } = op {
            headwater::dataflow::durable::set_min_recorded_for_tests(if *whole { 0 } else { usize::MAX });
            // Every statement was made durable before it returned; the old engine is idle.
            drop(s);
            drop(engine);
            engine = open(&store).await;
            set_clock(&engine, minutes);
            // The server's clock task ticks at once when it starts (`Dataflow::start_clock`):
            // events that fell due while the engine was down (or whose tick was not yet
            // checkpointed) happen before the views are read.
            engine.dataflow().tick().expect("the first tick commits");
            s = engine.session();
            for view in engine.dataflow().views() {
                assert!(view.loaded, "view {} was recomputed at a restart, not loaded\nops: {ops:#?}", view.name);
            }
            check_error_views(&s, &format!("after the restart at step {step}\nops: {ops:#?}")).await;
            if created {
                check_temporal_views(&s, minutes, &format!("after the restart at step {step}\nops: {ops:#?}")).await;
            }
            continue;
        }
        if let Op::Tick { minutes: passing } = op {
            minutes += passing;
            set_clock(&engine, minutes);
            engine.dataflow().tick().expect("a tick commits");
        }
        if step == create_views_after.min(ops.len() - 1) && !created {
            // Views created over tables that already have rows: initialised from them.
            for (name, query) in VIEWS
                .iter()
                .chain(DETERMINED_VIEWS.iter().map(|(n, q, _)| (*n, *q)).collect::<Vec<_>>().iter())
                .chain(TEMPORAL_VIEWS)
            {
                s.execute_sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
            }
            created = true;
        }
        // Statements may fail (duplicate key): then nothing may change, views included.
        if s.execute_sql(&op.sql()).await.is_err() {
            // A failed statement inside a transaction block leaves it aborted.
            let _ = s.execute_sql("ROLLBACK").await;
        }
        if created {
            for (name, query) in VIEWS {
                let view = rows(&s, &format!("SELECT * FROM {name}")).await;
                let fresh = rows(&s, query).await;
                assert_eq!(view, fresh, "view {name} after step {step} ({})\nops: {ops:#?}", op.sql());
            }
            check_temporal_views(&s, minutes, &format!("after step {step} ({})\nops: {ops:#?}", op.sql())).await;
            for (name, _, reference) in DETERMINED_VIEWS {
                let view = rows(&s, &format!("SELECT * FROM {name}")).await;
                let fresh = rows(&s, reference).await;
                assert_eq!(view, fresh, "view {name} after step {step} ({})\nops: {ops:#?}", op.sql());
            }
        }
        check_error_views(&s, &format!("after step {step} ({})\nops: {ops:#?}", op.sql())).await;
    }
}

fn cases() -> u32 {
    std::env::var("HEADWATER_VIEW_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn views_equal_recomputation(ops in prop::collection::vec(op(), 4..30), create_after in 0..6usize) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(run_case(ops, create_after));
    }
}

/// A case the random search found: a temporal view whose row entered the window at a tick
/// (minute 5), then a restart, then a statement that changes nothing.
#[test]
fn temporal_view_keeps_rows_across_a_restart_after_a_tick() {
    let ops = vec![
        Op::Tick { minutes: 4 },
        Op::Insert { table: false, rows: vec![(5, None, Some(0))] },
        Op::Tick { minutes: 1 },
        Op::Restart { whole: false },
        Op::UpdateValue { table: false, k: Some(1), value: None },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(run_case(ops, 0));
}

/// Joins on a primary key probe the tables' rows (EXPLAIN says so, and the join keeps no
/// bytes of its own for that side), and a transaction changing both tables reaches both.
#[tokio::test]
async fn primary_key_join_sides_read_the_tables_rows() {
    let engine =
        engine_with_tables("INSERT INTO a VALUES (1, 1, 10), (2, 1, 20); INSERT INTO b VALUES (1, 2, 5)").await;
    let s = engine.session();
    create_views(&s, &["v_pk_inner", "v_pk_one_side"]).await;
    let explain = rows(&s, "EXPLAIN MATERIALIZED VIEW v_pk_inner").await.join("\n");
    assert!(explain.contains("left the rows of a, right the rows of b, 0 bytes"), "{explain}");
    let explain = rows(&s, "EXPLAIN MATERIALIZED VIEW v_pk_one_side").await.join("\n");
    assert!(explain.contains("right the rows of b"), "{explain}");
    assert!(!explain.contains("left the rows of a"), "a.k is not a's key: {explain}");
    s.execute_sql("BEGIN; INSERT INTO a VALUES (3, 1, 30); INSERT INTO b VALUES (3, 1, 31); UPDATE b SET w = 6 WHERE id = 1; COMMIT")
        .await
        .unwrap();
    assert_eq!(rows(&s, "SELECT * FROM v_pk_inner ORDER BY id").await, vec!["1|10|6", "3|30|31"]);
    assert_eq!(rows(&s, "SELECT * FROM v_pk_one_side ORDER BY id").await, vec!["1|1|6", "2|1|6", "3|1|6"]);
}

/// Views created while another session keeps committing to their tables (the commits made
/// during a view's first fill are queued and replayed, with the tables' rows after each) equal
/// the recomputation once the writer stops: primary-key sides included, which read replayed
/// commits from those rows rather than from the tables, which have moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_created_under_writes_equal_recomputation() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let engine = engine_with_tables(
        "INSERT INTO a SELECT i, i % 7, i % 11 FROM generate_series(1, 20000) AS t(i); \
         INSERT INTO b SELECT i, i % 5, i % 13 FROM generate_series(1, 20000, 2) AS t(i)",
    )
    .await;
    let s = engine.session();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (w, stop) = (engine.session(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let id = (n * 7919) % 20000 + 1;
                let sql = match n % 3 {
                    0 => format!("UPDATE a SET v = v + 1, k = {} WHERE id = {id}", n % 7),
                    1 => format!("BEGIN; DELETE FROM b WHERE id = {id}; UPDATE a SET v = {n} WHERE id = {id}; COMMIT"),
                    _ => format!("INSERT INTO b VALUES ({id}, {}, {n}) ON CONFLICT (id) DO UPDATE SET w = {n}", n % 5),
                };
                if w.execute_sql(&sql).await.is_err() {
                    let _ = w.execute_sql("ROLLBACK").await;
                }
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    // (No join on `k` alone: over these rows it would be nearly a cross join.)
    let names =
        ["v_pk_inner", "v_pk_left", "v_pk_full_residual", "v_pk_one_side", "v_pk_semi", "v_pk_agg", "v_pk_self"];
    create_views(&s, &names).await;
    stop.store(true, Ordering::Relaxed);
    let commits = writer.await.unwrap();
    assert!(commits > 0, "the writer committed nothing");
    for (name, query) in VIEWS.iter().filter(|(n, _)| names.contains(n)) {
        let view = rows(&s, &format!("SELECT * FROM {name}")).await;
        let fresh = rows(&s, query).await;
        assert_eq!(view.len(), fresh.len(), "view {name}: row count after {commits} concurrent commits");
        assert!(view == fresh, "view {name} differs from its recomputation after {commits} concurrent commits");
    }
}

/// A view's checkpoints write what changed: its whole state once after CREATE, then for one
/// changed row a few keys per view (the row; each view's result rows, groups and multiset
/// values it moved: 17 here, against 5,012 for the views whole), and nothing at all while
/// nothing changes. After a restart the view is loaded, not recomputed,
/// and keeps being maintained.
#[tokio::test]
async fn view_checkpoints_write_what_changed() {
    let _save_mode = SAVE_MODE.lock().await;
    headwater::dataflow::durable::set_min_recorded_for_tests(usize::MAX);
    let store = Arc::new(MemoryStore::default());
    let checkpoints = Arc::new(CheckpointedStore::new(store.clone()));
    let engine = Engine::open(checkpoints.clone()).await.unwrap();
    let s = engine.session();
    s.execute_sql(
        "SET synchronous_commit = off; CREATE TABLE a (id INT PRIMARY KEY, k INT, v INT); \
         INSERT INTO a SELECT i, i % 100, i % 7 FROM generate_series(1, 20000) AS t(i)",
    )
    .await
    .unwrap();
    checkpoints.checkpoint().unwrap();
    let before = checkpoints.stats().total_keys;
    create_views(&s, &["v_agg", "v_distinct", "v_rank"]).await;
    // CREATE made itself durable: those checkpoints saved the views whole (v_rank's top-k is
    // rebuilt from `a` at start-up, so only its result is saved).
    let whole = checkpoints.stats().total_keys - before;
    assert!(whole > 2000, "the first checkpoint after CREATE wrote only {whole} keys");
    assert_eq!(checkpoints.checkpoint().unwrap(), 0, "an idle checkpoint wrote something");
    s.execute_sql("UPDATE a SET v = 3 WHERE id = 1").await.unwrap();
    let changed = checkpoints.checkpoint().unwrap();
    assert!(changed <= 40, "one changed row made the checkpoint write {changed} keys (the views whole: {whole})");
    assert_eq!(checkpoints.checkpoint().unwrap(), 0, "an idle checkpoint wrote something");
    drop((s, engine, checkpoints));
    let engine = open(&store).await;
    let s = engine.session();
    for view in engine.dataflow().views() {
        assert!(view.loaded, "view {} was recomputed at the restart", view.name);
    }
    s.execute_sql("DELETE FROM a WHERE k = 5; UPDATE a SET v = v + 1 WHERE k = 6").await.unwrap();
    for (name, query) in VIEWS.iter().filter(|(n, _)| ["v_agg", "v_distinct", "v_rank"].contains(n)) {
        assert_eq!(rows(&s, &format!("SELECT * FROM {name}")).await, rows(&s, query).await, "view {name}");
    }
}

/// Views, their names and whether each was loaded at start-up.
fn loaded(engine: &Engine) -> std::collections::BTreeMap<String, bool> {
    engine.dataflow().views().into_iter().map(|v| (v.name, v.loaded)).collect()
}

/// A view whose saved state does not decode is recomputed at start-up (the state is derived
/// data: the server starts, and the log says so), and so is every view that reads it (its own
/// state matches the rows that view had); views beside them load. All keep being maintained,
/// and the next restart loads them all again.
#[tokio::test]
async fn views_over_unusable_state_are_recomputed() {
    use headwater::state::{keys, StateStore, WriteBatch};
    let store = Arc::new(MemoryStore::default());
    let engine = engine_in(&store, "INSERT INTO a SELECT i, i % 10, i FROM generate_series(1, 1000) AS t(i)").await;
    let s = engine.session();
    let views = [
        ("sums", "SELECT k, sum(v) AS total, count(*) AS n FROM a GROUP BY k"),
        ("big", "SELECT k, total FROM sums WHERE n > 95"),
        ("tops", "SELECT k, max(v) AS top FROM a GROUP BY k"),
    ];
    for (name, query) in views {
        s.execute_sql(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
    }
    let sums = engine.dataflow().views().into_iter().find(|v| v.name == "sums").unwrap().id;
    drop((s, engine));
    let mut batch = WriteBatch::default();
    batch.put([keys::operator_state(sums, 0), b"Z?".to_vec()].concat(), vec![1, 2, 3]);
    store.apply(batch).unwrap();

    let engine = open(&store).await;
    let expected = [("big", false), ("sums", false), ("tops", true)].map(|(n, l)| (n.to_string(), l));
    assert_eq!(loaded(&engine), expected.into_iter().collect());
    let s = engine.session();
    s.execute_sql("UPDATE a SET v = v + 1 WHERE k = 3; DELETE FROM a WHERE id < 100").await.unwrap();
    for (name, query) in views {
        assert_eq!(rows(&s, &format!("SELECT * FROM {name}")).await, rows(&s, query).await, "view {name}");
    }
    drop((s, engine));
    let engine = open(&store).await;
    assert!(loaded(&engine).values().all(|l| *l), "not every view loaded: {:?}", loaded(&engine));
    let s = engine.session();
    for (name, query) in views {
        assert_eq!(rows(&s, &format!("SELECT * FROM {name}")).await, rows(&s, query).await, "view {name}");
    }
}

/// DROP MATERIALIZED VIEW deletes the view's result rows and operator state from the store,
/// while writes go on.
#[tokio::test]
async fn dropped_views_leave_nothing_stored() {
    use headwater::state::{keys, StateStore};
    let store = Arc::new(MemoryStore::default());
    let engine = engine_in(&store, "INSERT INTO a SELECT i, i % 10, i FROM generate_series(1, 1000) AS t(i)").await;
    let s = engine.session();
    s.execute_sql("CREATE MATERIALIZED VIEW sums AS SELECT k, sum(v) AS total FROM a GROUP BY k").await.unwrap();
    s.execute_sql("CREATE MATERIALIZED VIEW top_sums AS SELECT * FROM sums ORDER BY total DESC LIMIT 3").await.unwrap();
    let ids: Vec<u64> = engine.dataflow().views().into_iter().map(|v| v.id).collect();
    let count = |prefix: Vec<u8>| {
        let mut n = 0;
        store
            .scan_prefix_each(&prefix, &mut |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
        n
    };
    assert!(ids.iter().all(|id| count(keys::view_state(*id)) > 0), "views saved no state");
    let writer = engine.session();
    let writes = async {
        for i in 0..50 {
            writer.execute_sql(&format!("UPDATE a SET v = v + 1 WHERE id = {}", i + 1)).await.unwrap();
        }
    };
    let dropping = async { s.execute_sql("DROP MATERIALIZED VIEW sums CASCADE").await.unwrap() };
    tokio::join!(writes, dropping);
    assert!(engine.dataflow().views().is_empty());
    drop((s, writer, engine));
    for id in ids {
        assert_eq!(count(keys::view_state(id)), 0, "view {id} left operator state");
        assert_eq!(count(keys::table_rows(id)), 0, "view {id} left result rows");
    }
}
