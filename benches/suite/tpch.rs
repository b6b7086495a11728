//! TPC-H: the 22 queries as materialized views over the eight tables captured from MariaDB
//! (`HEADWATER_TPCH_SCALE`, default 0.1; 0.01 in a quick run). Measured: creating each view
//! over the snapshot; a refresh round (the specification's RF1 inserting 0.1% new orders with
//! their line items, then RF2 deleting as many old ones, committed as one MariaDB transaction)
//! from sending the COMMIT to the moment every view shows it (a read with
//! `real_time_recency`, which waits until the source has applied everything MariaDB had
//! committed when the read began); against the baseline of computing the 22 queries from
//! scratch over the same captured tables (DataFusion, in the same server). The first round
//! and the first recomputation are the cold figures (this process had run neither before);
//! the warm medians are beside them. At the end every view must equal its query run from
//! scratch.
//!
//! Run: `scripts/bench.sh tpch` (release). Results go to `docs/benchmarks.md`.

use crate::common;
use crate::mariadb;
use crate::report;
use crate::tpch_data as tpch;

use std::time::Instant;

use headwater::{Config, Server};
use mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use report::Stats;

const ROUNDS: usize = 5;

fn scale() -> f64 {
    let default = if report::quick() { 0.01 } else { 0.1 };
    std::env::var("HEADWATER_TPCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

async fn sorted_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL")).collect::<Vec<_>>().join("|"))
            }
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}

pub fn main() {
    let scale = scale();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let db = MariaDb::start().await;
        let mut my = db.root().await;
        my.query_drop("CREATE DATABASE tpch").await.unwrap();
        let started = Instant::now();
        tpch::load(&mut my, "tpch", scale).await;
        let load_s = started.elapsed().as_secs_f64();

        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&Config::new("127.0.0.1:0", dir.path().join("d"))).await.unwrap();
        let hw = common::client(server.local_addr().port()).await;
        hw.batch_execute(&db.connection_sql("up")).await.unwrap();
        let started = Instant::now();
        hw.batch_execute("CREATE SOURCE tpch FROM MYSQL CONNECTION up FOR SCHEMAS (tpch) WITH (SERVER_ID = 4243)")
            .await
            .unwrap();
        loop {
            let states = sorted_rows(&hw, "SELECT DISTINCT state FROM hw_catalog.source_tables").await;
            if states == ["streaming"] {
                break;
            }
            assert!(started.elapsed().as_secs() < 3600, "the snapshot did not finish: {states:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let snapshot_s = started.elapsed().as_secs_f64();
        hw.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '600s'").await.unwrap();

        let queries = tpch::queries(scale);
        let mut create_ms = Vec::new();
        for (name, query) in &queries {
            let t = Instant::now();
            hw.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
            create_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }

        // Refresh rounds: RF1 + RF2 in one upstream transaction, so that all of Headwater's
        // work on them starts at its COMMIT; timed from sending the COMMIT to the moment every
        // view shows the transaction (MariaDB's commit itself included).
        let orders = ((1500.0 * scale) as u32).max(5);
        let mut refresh_ms = Vec::new();
        let mut upstream_ms = Vec::new();
        for round in 0..report::runs(ROUNDS, 2) {
            let t = Instant::now();
            my.query_drop(format!(
                "START TRANSACTION; {}; {}",
                tpch::new_sales(round as u32, orders),
                tpch::old_sales_removed(orders)
            ))
            .await
            .unwrap();
            upstream_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let commit = Instant::now();
            my.query_drop("COMMIT").await.unwrap();
            // One commit updates every view with its tables: one read that waits for the
            // source's position sees all of them.
            sorted_rows(&hw, "SELECT count(*) FROM q1").await;
            refresh_ms.push(commit.elapsed().as_secs_f64() * 1000.0);
        }

        // Baseline: the 22 queries computed from scratch over the same tables.
        let mut recompute_ms = Vec::new();
        let mut fresh = Vec::new();
        for _ in 0..report::runs(5, 2) {
            let t = Instant::now();
            fresh.clear();
            for (_, query) in &queries {
                fresh.push(sorted_rows(&hw, query).await);
            }
            recompute_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let mut per_query = String::from("| query | CREATE MATERIALIZED VIEW, ms | rows | equal to its query |\n|---|---|---|---|\n");
        for (((name, _), want), ms) in queries.iter().zip(&fresh).zip(&create_ms) {
            let got = sorted_rows(&hw, &format!("SELECT * FROM {name}")).await;
            if let Some(difference) = tpch::compare(&got, want) {
                panic!("view {name} differs from its query: {difference}");
            }
            per_query.push_str(&format!("| {name} | {ms:.0} | {} | yes |\n", got.len()));
        }
        let lineitems = sorted_rows(&hw, "SELECT count(*) FROM lineitem").await;
        server.shutdown().await.unwrap();

        let (cold, warm) = (refresh_ms[0], Stats::of(&refresh_ms[1..]));
        let (base_cold, base_warm) = (recompute_ms[0], Stats::of(&recompute_ms[1..]));
        let create_total: f64 = create_ms.iter().sum();
        let slowest = create_ms
            .iter()
            .zip(&queries)
            .max_by(|a, b| a.0.partial_cmp(b.0).unwrap())
            .map(|(ms, (name, _))| format!("{name}, {ms:.0} ms"))
            .unwrap_or_default();
        let body = format!(
            "## TPC-H: the 22 queries as materialized views over MariaDB (scale {scale})\n\n\
             Tables captured from MariaDB 10.11 by a MySQL source ({} line items after the rounds; data from \
             `tpchgen` 4, loaded in {load_s:.1} s; snapshot {snapshot_s:.1} s); the 22 queries \
             (`tests/common/tpch.rs`) created as written, each equal to its query from scratch at the end (and to \
             MariaDB's answer in the test command). Reproduce with `scripts/bench.sh tpch` \
             (`HEADWATER_TPCH_SCALE` changes the scale). Machine: {}.\n\n\
             | what | cold: first run in a fresh process, ms | warm, ms: median (min–max) | its time ÷ Headwater's (cold, warm) |\n\
             |---|---|---|---|\n\
             | baseline: the 22 queries computed from scratch over the captured tables (DataFusion in the same server) | {base_cold:.0} | {base_warm:.0} | {:.1}×, {:.1}× |\n\
             | Headwater: refresh round (RF1 {orders} new orders with their line items + RF2 {orders} orders deleted with theirs, one MariaDB transaction), from sending its COMMIT to visible in all 22 views ({} rounds) | {cold:.0} | {warm:.0} | |\n\n\
             MariaDB itself took {:.0} ms (median) to execute each round's statements before the COMMIT. \
             Creating the 22 views over the snapshot took {:.1} s in all (slowest: {slowest}).\n\n{per_query}",
            lineitems.first().cloned().unwrap_or_default(),
            report::machine(),
            base_cold / cold,
            base_warm.median / warm.median,
            refresh_ms.len(),
            Stats::of(&upstream_ms).median,
            create_total / 1000.0,
        );
        println!("{body}");
        report::write_section("tpch", &body);
    });
}
