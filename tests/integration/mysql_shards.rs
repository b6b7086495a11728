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
