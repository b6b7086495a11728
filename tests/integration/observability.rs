//! What an operator watches: `hw_catalog.relations` (rows and state size per table and
//! materialized view) and the Prometheus endpoint (`--metrics-listen`, `GET /metrics`).

use crate::common;

use common::TestServer;

/// The value of the sample that starts with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> f64 {
    let line = metrics.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in\n{metrics}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no value in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_and_metrics_show_rows_and_state() {
    let server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, customer TEXT, amount INT); \
         INSERT INTO orders SELECT i, 'c' || (i % 7), i AS amount FROM generate_series(1, 1000) AS s(i); \
         CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS n, sum(amount) AS total \
           FROM orders GROUP BY customer",
    )
    .await
    .unwrap();

    let rows = common::text_rows(
        &hw,
        "SELECT name, type, coalesce(source, '-'), rows::text, (memory_bytes > 0)::text, (operator_bytes > 0)::text \
         FROM hw_catalog.relations ORDER BY name",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            vec!["orders", "table", "-", "1000", "true", "false"],
            vec!["per_customer", "materialized view", "-", "7", "true", "true"],
        ]
    );

    // psql's `\dt+` and BI tools read the same figure through Postgres's size functions.
    let sizes = common::text_rows(
        &hw,
        "SELECT (pg_total_relation_size('orders') = memory_bytes)::text, pg_size_pretty(pg_table_size('orders')) \
         FROM hw_catalog.relations WHERE name = 'orders'",
    )
    .await;
    assert_eq!(sizes[0][0], "true");
    assert!(sizes[0][1].ends_with("kB"), "{sizes:?}");

    let (status, metrics) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&metrics, "headwater_relation_rows{relation=\"orders\",type=\"table\"}"), 1000.0);
    let view = "{relation=\"per_customer\",type=\"materialized view\"}";
    assert_eq!(sample(&metrics, &format!("headwater_relation_rows{view}")), 7.0);
    assert!(sample(&metrics, &format!("headwater_relation_operator_bytes{view}")) > 0.0);
    // Local DML is durable when it returns: at least one checkpoint is written.
    assert!(sample(&metrics, "headwater_checkpoints_total") >= 1.0);
    assert_eq!(sample(&metrics, "headwater_checkpoint_failing"), 0.0);
    assert!(metrics.contains("# TYPE headwater_relation_memory_bytes gauge"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // The figures follow the data.
    hw.batch_execute("DELETE FROM orders WHERE id > 10").await.unwrap();
    let (_, metrics) = server.http_get("/metrics").await;
    assert_eq!(sample(&metrics, "headwater_relation_rows{relation=\"orders\",type=\"table\"}"), 10.0);

    let (status, body) = server.http_get("/other").await;
    assert_eq!(status, 404, "{body}");
}
