//! TPC-H as materialized views over tables captured from MariaDB: the 22 queries created as
//! written, each equal to MariaDB's answer to the same query after the snapshot, after each
//! refresh function (RF1 inserts new orders with their line items, RF2 deletes old ones) and
//! after updates in place.
//!
//! Scale: `HEADWATER_TPCH_SCALE` (default 0.01: 60k line items, so the debug build of the test
//! command stays in its budget; the benchmark runs larger scales on a release build).

use crate::common;

use common::mariadb::{my_rows, MariaDb};
use common::tpch;
use mysql_async::prelude::Queryable;

fn scale() -> f64 {
    std::env::var("HEADWATER_TPCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(0.01)
}

/// Every view equals MariaDB's answer to its query.
/// Returns the number of rows of each view.
async fn check(
    hw: &tokio_postgres::Client,
    my: &mut mysql_async::Conn,
    queries: &[(&str, String)],
    when: &str,
) -> Vec<usize> {
    // Reads wait for the source to reach MariaDB's current position (real_time_recency).
    let mut sizes = Vec::new();
    for (name, query) in queries {
        let mut got = common::joined_rows(hw, &format!("SELECT * FROM {name}")).await;
        got.sort();
        let want = my_rows(my, query).await;
        if let Some(difference) = tpch::compare(&got, &want) {
            panic!("{name} {when}: {difference}");
        }
        sizes.push(got.len());
    }
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_views_equal_mariadb_through_refreshes() {
    let scale = scale();
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop("CREATE DATABASE tpch").await.unwrap();
    tpch::load(&mut my, "tpch", scale).await;
    let (_server, hw) = common::with_source(
        &db,
        "CREATE SOURCE tpch FROM MYSQL CONNECTION up FOR SCHEMAS (tpch) WITH (SERVER_ID = 4242)",
    )
    .await;
    hw.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '300s'").await.unwrap();
    let streaming = vec!["streaming"; 8];
    common::wait_for_rows(&hw, "SELECT state FROM hw_catalog.source_tables", &streaming).await;

    let queries = tpch::queries(scale);
    for (name, query) in &queries {
        hw.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE MATERIALIZED VIEW {name}: {e:?}"));
    }
    let sizes = check(&hw, &mut my, &queries, "after the snapshot").await;
    eprintln!("TPC-H at scale {scale}: rows per view {sizes:?}");
    // An oracle of empty results would prove nothing.
    assert!(sizes.iter().filter(|&&n| n > 0).count() >= 20, "too few views have rows: {sizes:?}");

    // Each refresh pair moves about 0.1% of the orders, as the specification's do.
    let orders = ((1500.0 * scale) as u32).max(5);
    for round in 0..2 {
        my.query_drop(tpch::refresh_insert(round, orders)).await.unwrap();
        check(&hw, &mut my, &queries, &format!("after RF1 round {round}")).await;
        my.query_drop(tpch::refresh_delete(orders)).await.unwrap();
        check(&hw, &mut my, &queries, &format!("after RF2 round {round}")).await;
    }
    my.query_drop(tpch::REFRESH_UPDATE).await.unwrap();
    check(&hw, &mut my, &queries, "after the updates").await;

    let states = common::joined_rows(&hw, "SELECT DISTINCT state FROM hw_catalog.views").await;
    assert_eq!(states, vec!["running"], "every view runs without errors");
}
