//! Temporal filters on the live engine clock of a real server: rows enter and leave views as
//! wall time passes, with no write to trigger it (the dataflow's clock ticks), and the
//! scheduled changes survive a restart. The views oracle covers the delta rule on a clock the
//! test moves; this covers the ticking.

use crate::common;

use common::TestServer;

/// A `TIMESTAMP` literal `seconds` from now (UTC, as the engine clock compares).
fn in_seconds(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds)).format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_enter_and_leave_views_as_time_passes_across_a_restart() {
    let mut server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(
        "CREATE TABLE events (id INT PRIMARY KEY, at TIMESTAMP); \
         CREATE MATERIALIZED VIEW upcoming AS SELECT id FROM events WHERE at > now(); \
         CREATE MATERIALIZED VIEW started AS SELECT id FROM events WHERE at <= now(); \
         CREATE MATERIALIZED VIEW started_count AS SELECT count(*) AS n FROM started",
    )
    .await
    .unwrap();
    hw.batch_execute(&format!(
        "INSERT INTO events VALUES (1, '{}'), (2, '{}'), (3, '{}')",
        in_seconds(2),
        in_seconds(3600),
        in_seconds(-3600)
    ))
    .await
    .unwrap();
    // An hour away and an hour ago: where they are now cannot depend on the machine's speed.
    let upcoming = common::joined_rows(&hw, "SELECT id FROM upcoming WHERE id <> 1").await;
    assert_eq!(upcoming, vec!["2"]);
    let started = common::joined_rows(&hw, "SELECT id FROM started WHERE id <> 1").await;
    assert_eq!(started, vec!["3"]);
    // Row 1's time passes: it moves from one view to the other with nothing written.
    common::wait_for_rows(&hw, "SELECT id FROM started ORDER BY id", &["1", "3"]).await;
    common::wait_for_rows(&hw, "SELECT id FROM upcoming", &["2"]).await;
    common::wait_for_rows(&hw, "SELECT n FROM started_count", &["2"]).await;

    // A change scheduled before a restart happens after it.
    hw.batch_execute(&format!("INSERT INTO events VALUES (4, '{}')", in_seconds(3))).await.unwrap();
    drop(hw);
    server.restart().await;
    let hw = server.client().await;
    common::wait_for_rows(&hw, "SELECT id FROM started ORDER BY id", &["1", "3", "4"]).await;
    common::wait_for_rows(&hw, "SELECT id FROM upcoming", &["2"]).await;
    common::wait_for_rows(&hw, "SELECT n FROM started_count", &["3"]).await;
    // Deleting a row deletes what was scheduled for it.
    hw.batch_execute("DELETE FROM events WHERE id = 2").await.unwrap();
    common::wait_for_rows(&hw, "SELECT count(*) FROM upcoming", &["0"]).await;
    let explain = common::joined_rows(&hw, "EXPLAIN MATERIALIZED VIEW upcoming").await.join("\n");
    assert!(explain.contains("TemporalFilter") && explain.contains("0 scheduled changes"), "{explain}");
}
