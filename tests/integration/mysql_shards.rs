//! Sharded upstream tables merged into one (Ctrip's `orders_0 … orders_N`), against a real
//! MariaDB: `FOR TABLES (db.orders_[0-9]+ AS orders INCLUDE TABLE NAME AS shard)`.

use crate::common;

use common::mariadb::MariaDb;
use common::{joined_rows as rows, TestServer};
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merge_into_one_table() {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    let mut setup = String::from("CREATE DATABASE s; ");
    for i in 0..3 {
        setup += &format!(
            "CREATE TABLE s.orders_{i} (id INT PRIMARY KEY, amount INT); INSERT INTO s.orders_{i} VALUES (1, {i}), (2, {});",
            10 + i
        );
    }
    setup +=
        "CREATE TABLE s.orders_archive (id INT PRIMARY KEY, amount INT); INSERT INTO s.orders_archive VALUES (1, 99);";
    my.query_drop(setup).await.unwrap();
    let server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();
    hw.batch_execute(
        "CREATE SOURCE src FROM MYSQL CONNECTION up \
         FOR TABLES (s.orders_[0-9]+ AS orders INCLUDE TABLE NAME AS shard, s.orders_archive AS archive)",
    )
    .await
    .unwrap();
    my.query_drop(
        "INSERT INTO s.orders_1 VALUES (3, 13); UPDATE s.orders_2 SET amount = 100 WHERE id = 1; \
         DELETE FROM s.orders_0 WHERE id = 2; TRUNCATE TABLE s.orders_2; INSERT INTO s.orders_2 VALUES (7, 7)",
    )
    .await
    .unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    let got = rows(&hw, "SELECT shard, id, amount FROM orders ORDER BY shard, id").await;
    let status = rows(&hw, "SELECT state, last_error FROM hw_catalog.sources").await;
    assert_eq!(got.len(), 5, "{got:?} {status:?}");
    assert_eq!(got, vec!["orders_0|1|0", "orders_1|1|1", "orders_1|2|11", "orders_1|3|13", "orders_2|7|7"]);
    assert_eq!(rows(&hw, "SELECT id, amount FROM archive").await, vec!["1|99"]);
    let units = rows(&hw, "SELECT table_name, upstream_table, state FROM hw_catalog.source_tables ORDER BY 2").await;
    assert_eq!(
        units,
        vec![
            "orders|s.orders_0|streaming",
            "orders|s.orders_1|streaming",
            "orders|s.orders_2|streaming",
            "archive|s.orders_archive|streaming"
        ]
    );
    // The source definition round-trips through a restart.
    drop(hw);
    let mut server = server;
    server.restart().await;
    let hw = server.client().await;
    my.query_drop("INSERT INTO s.orders_0 VALUES (5, 5)").await.unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    assert_eq!(rows(&hw, "SELECT count(*) FROM orders").await, vec!["6"]);
    let shown = rows(&hw, "SHOW CREATE SOURCE src").await;
    assert!(shown[0].contains("orders_[0-9]+ AS \"orders\" INCLUDE TABLE NAME AS \"shard\""), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_created_later_join_the_table() {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE s; CREATE TABLE s.orders_202610 (id INT PRIMARY KEY, amount INT); \
         INSERT INTO s.orders_202610 VALUES (1, 10)",
    )
    .await
    .unwrap();
    let server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();
    hw.batch_execute(
        "CREATE SOURCE src FROM MYSQL CONNECTION up FOR TABLES (s.orders_[0-9]+ AS orders INCLUDE TABLE NAME AS shard)",
    )
    .await
    .unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    assert_eq!(rows(&hw, "SELECT count(*) FROM orders").await, vec!["1"]);

    // A new month's shard is created and written at once; one with other columns is not merged.
    my.query_drop(
        "CREATE TABLE s.orders_202611 (id INT PRIMARY KEY, amount INT); \
         INSERT INTO s.orders_202611 VALUES (1, 11), (2, 12); \
         CREATE TABLE s.orders_202612 (id INT PRIMARY KEY, note TEXT); INSERT INTO s.orders_202612 VALUES (1, 'x'); \
         UPDATE s.orders_202611 SET amount = 13 WHERE id = 2; INSERT INTO s.orders_202610 VALUES (2, 20)",
    )
    .await
    .unwrap();
    let got = rows(&hw, "SELECT shard, id, amount FROM orders ORDER BY shard, id").await;
    assert_eq!(got, vec!["orders_202610|1|10", "orders_202610|2|20", "orders_202611|1|11", "orders_202611|2|13"]);
    let units = rows(&hw, "SELECT upstream_table, state FROM hw_catalog.source_tables ORDER BY 1").await;
    assert_eq!(units, vec!["s.orders_202610|streaming", "s.orders_202611|streaming", "s.orders_202612|error"]);
    let error =
        rows(&hw, "SELECT last_error FROM hw_catalog.source_tables WHERE upstream_table = 's.orders_202612'").await;
    assert!(error[0].contains("columns or key differ"), "{error:?}");

    // The new shard stays part of the table across a restart.
    drop(hw);
    let mut server = server;
    server.restart().await;
    let hw = server.client().await;
    my.query_drop("INSERT INTO s.orders_202611 VALUES (3, 30)").await.unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    assert_eq!(rows(&hw, "SELECT count(*) FROM orders WHERE shard = 'orders_202611'").await, vec!["3"]);
    let units = rows(&hw, "SELECT upstream_table, state FROM hw_catalog.source_tables ORDER BY 1").await;
    assert_eq!(units, vec!["s.orders_202610|streaming", "s.orders_202611|streaming", "s.orders_202612|error"]);
}
