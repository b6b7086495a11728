//! Freshness: a steady upstream load of single-row transactions on MariaDB (5,000/s by
//! default), captured by a MySQL source into a table with two materialized views over it; the
//! latency of each transaction from the moment the client issues it on MariaDB to the moment
//! its row is in the view (p50 / p99 / max).
//!
//! The end of the interval is observed with a tap on the view: the dataflow calls it for
//! every commit that changes the view, after the commit is durable and just before it is
//! published to queries (microseconds later). The start is taken before the autocommit
//! INSERT is sent, so the figure includes MariaDB's own commit (an upper bound).
//!
//! Run: `scripts/bench.sh freshness` (release). `HEADWATER_BENCH_TPS` changes the rate.

use crate::common;
use crate::mariadb;
use crate::report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headwater::catalog::{Namespace, Relation};
use headwater::{Config, Server};
use mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use report::Stats;

const WRITERS: u64 = 8;

use common::LatencyClock as Clock;

/// One paced load of `total` transactions at `tps`, ids `first..first + total`; returns the
/// achieved rate and the latencies in milliseconds once every row is visible.
async fn load(db: &MariaDb, clock: &Arc<Clock>, seen: &AtomicU64, first: u64, total: u64, tps: u64) -> (f64, Vec<f64>) {
    let seen_before = seen.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut conn = db.root().await;
        let clock = clock.clone();
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while i < total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / tps);
                tokio::time::sleep_until(due.into()).await;
                let id = first + i;
                clock.sent[id as usize].store(clock.now(), Ordering::Relaxed);
                conn.query_drop(format!("INSERT INTO bench.events VALUES ({id}, {}, {})", id % 100, id % 997))
                    .await
                    .unwrap();
                i += WRITERS;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.load(Ordering::Relaxed) < seen_before + total {
        assert!(Instant::now() < deadline, "not every transaction reached the view within 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let latencies = (first..first + total)
        .map(|id| {
            let (s, v) =
                (clock.sent[id as usize].load(Ordering::Relaxed), clock.visible[id as usize].load(Ordering::Relaxed));
            v.saturating_sub(s) as f64 / 1e6
        })
        .collect();
    (achieved, latencies)
}

pub fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let tps: u64 = std::env::var("HEADWATER_BENCH_TPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if report::quick() { 500 } else { 5_000 });
    let seconds: u64 = if report::quick() { 2 } else { 10 };
    let runs = report::runs(3, 1);
    let per_run = tps * seconds;

    let db = MariaDb::start().await;
    let mut my = db.root().await;
    // The point is Headwater's latency, not MariaDB's fsync: commits are not flushed per
    // transaction upstream (so MariaDB can sustain the rate on this machine).
    my.query_drop(
        "SET GLOBAL innodb_flush_log_at_trx_commit = 2; SET GLOBAL sync_binlog = 0; CREATE DATABASE bench; \
         CREATE TABLE bench.events (id BIGINT PRIMARY KEY, k INT, v INT)",
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&Config::new("127.0.0.1:0", dir.path().join("d"))).await.unwrap();
    let c = common::client(server.local_addr().port()).await;
    c.batch_execute(&db.connection_sql("up")).await.unwrap();
    c.batch_execute(
        "CREATE SOURCE s FROM MYSQL CONNECTION up FOR TABLES (bench.events) WITH (SERVER_ID = 77); \
         CREATE MATERIALIZED VIEW fresh_events AS SELECT id, k, v FROM events WHERE v >= 0; \
         CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n, sum(v) AS total FROM events GROUP BY k",
    )
    .await
    .unwrap();

    let engine = server.engine().clone();
    let (view, state) = match engine.catalog().get(Namespace::Relation, "fresh_events") {
        Some(o) => match o.relation {
            Some(Relation::Table { state, .. }) => (o.entry.id, state),
            _ => panic!("fresh_events is not materialized"),
        },
        None => panic!("fresh_events missing"),
    };
    let total = per_run * (runs as u64 + 1);
    let clock = Arc::new(Clock::new(total));
    let seen = Arc::new(AtomicU64::new(0));
    let tap = common::SequenceTap::new(view, 0, clock.clone(), seen.clone());
    engine.dataflow().add_tap(u64::MAX - 7, Box::new(tap), &state).unwrap();

    // A warm-up run (discarded), then the measured runs.
    let (_, _) = load(&db, &clock, &seen, 0, per_run, tps).await;
    let (mut p50, mut p99, mut max, mut rates) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs as u64 {
        let (rate, lat) = load(&db, &clock, &seen, per_run * (r + 1), per_run, tps).await;
        let (a, b, m) = (Stats::quantile(&lat, 0.5), Stats::quantile(&lat, 0.99), Stats::quantile(&lat, 1.0));
        println!("run {r}: {rate:.0} txn/s, p50 {a:.2} ms, p99 {b:.2} ms, max {m:.2} ms");
        p50.push(a);
        p99.push(b);
        max.push(m);
        rates.push(rate);
    }
    engine.dataflow().remove_tap(u64::MAX - 7);

    // The views must hold every row (a fast wrong answer is worthless).
    let count: i64 = c.query_one("SELECT sum(n)::BIGINT FROM per_k", &[]).await.unwrap().get(0);
    assert_eq!(count as u64, total, "per_k misses rows");

    let body = format!(
        "## Freshness: MariaDB commit to visible in a view\n\n\
         {WRITERS} MariaDB connections issue single-row autocommit INSERTs paced to {tps} transactions/s \
         for {seconds} s per run (after a discarded warm-up run) into a table captured by a MySQL source, \
         with two materialized views over it (a filter/projection and a GROUP BY aggregate). Latency of each \
         transaction from the moment its INSERT is sent to MariaDB to the commit that puts its row in the view \
         (so it includes MariaDB's own commit); {runs} runs, median (min–max) of each run's quantile. \
         MariaDB runs with `innodb_flush_log_at_trx_commit = 2` and `sync_binlog = 0` so it sustains the \
         rate here. Reproduce with `scripts/bench.sh freshness` (`HEADWATER_BENCH_TPS` changes the rate). \
         Machine: {}.\n\n\
         | what | value | target |\n|---|---|---|\n\
         | achieved upstream rate (transactions/s) | {} | {tps} |\n\
         | p50 latency (ms) | {:.2} | |\n\
         | p99 latency (ms) | {:.2} | ≤ 50 |\n\
         | max latency (ms) | {:.2} | |\n",
        report::machine(),
        Stats::of(&rates),
        Stats::of(&p50),
        Stats::of(&p99),
        Stats::of(&max),
    );
    println!("{body}");
    report::write_section("freshness", &body);
    server.shutdown().await.unwrap();
}
