//! Sharded upstream tables merged into one (Ctrip's `orders_0 … orders_N`), against a real
//! MariaDB: `FOR TABLES (db.orders_[0-9]+ AS orders INCLUDE TABLE NAME AS shard)`.

use crate::common;

use common::mariadb::{my_rows, MariaDb};
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
    // A captured table follows its upstream table only.
    let refused = hw.batch_execute("DELETE FROM archive").await.unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42809"), "{refused:?}");
    assert_eq!(rows(&hw, "SELECT count(*) FROM archive").await, vec!["1"]);
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

/// Ctrip-style shard DDL: `ALTER TABLE ... ADD COLUMN` reaches the shards one after another.
/// The first altered shard gives the merged table the column (the rows of shards not altered
/// yet get the ALTER's value), each later shard altered alike joins it, a shard altered
/// differently stops alone, and a shard created later with the new shape joins; a restart
/// keeps every shard's shape. At each step the merged table equals the shards in MariaDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_follow_alter_table_one_by_one() {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    let mut setup = String::from("CREATE DATABASE s; ");
    for i in 0..3 {
        setup += &format!(
            "CREATE TABLE s.orders_{i} (id INT PRIMARY KEY, amount INT); \
             INSERT INTO s.orders_{i} VALUES (1, {i}), (2, {});",
            10 + i
        );
    }
    // Keys unique across shards, merged without the table-name column.
    setup += "CREATE TABLE s.items_0 (id INT PRIMARY KEY, v INT); CREATE TABLE s.items_1 (id INT PRIMARY KEY, v INT); \
              INSERT INTO s.items_0 VALUES (1, 1); INSERT INTO s.items_1 VALUES (2, 2);";
    my.query_drop(setup).await.unwrap();
    let server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();
    hw.batch_execute(
        "CREATE SOURCE src FROM MYSQL CONNECTION up \
         FOR TABLES (s.orders_[0-9]+ AS orders INCLUDE TABLE NAME AS shard, s.items_[0-9]+ AS items)",
    )
    .await
    .unwrap();
    hw.batch_execute(
        "SET real_time_recency = on; \
         CREATE MATERIALIZED VIEW per_shard AS SELECT shard, count(*) AS n, sum(amount) AS total FROM orders GROUP BY shard",
    )
    .await
    .unwrap();
    let all_streaming = |n: usize| vec!["streaming".to_string(); n];
    let states = "SELECT state FROM hw_catalog.source_tables ORDER BY upstream_table";

    // The first shard gains a column; the others keep being written in their old shape.
    my.query_drop(
        "ALTER TABLE s.orders_0 ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'none'; \
         INSERT INTO s.orders_0 VALUES (3, 30, 'new'); UPDATE s.orders_0 SET note = 'upd' WHERE id = 1; \
         INSERT INTO s.orders_1 VALUES (3, 31); UPDATE s.orders_2 SET amount = 99 WHERE id = 2; \
         ALTER TABLE s.items_1 ADD COLUMN w INT DEFAULT 7; INSERT INTO s.items_1 VALUES (3, 3, 8); \
         INSERT INTO s.items_0 VALUES (4, 4)",
    )
    .await
    .unwrap();
    let merged = "SELECT shard, id, amount, note FROM orders ORDER BY shard, id";
    let got = rows(&hw, merged).await;
    let status = rows(&hw, "SELECT upstream_table, state, last_error FROM hw_catalog.source_tables").await;
    assert_eq!(
        got,
        vec![
            "orders_0|1|0|upd",
            "orders_0|2|10|none",
            "orders_0|3|30|new",
            "orders_1|1|1|none",
            "orders_1|2|11|none",
            "orders_1|3|31|none",
            "orders_2|1|2|none",
            "orders_2|2|99|none"
        ],
        "{status:?}"
    );
    assert_eq!(rows(&hw, "SELECT id, v, w FROM items ORDER BY id").await, vec!["1|1|7", "2|2|7", "3|3|8", "4|4|7"]);
    assert_eq!(rows(&hw, states).await, all_streaming(5), "{status:?}");
    assert_eq!(
        rows(
            &hw,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position"
        )
        .await,
        vec!["id", "amount", "shard", "note"]
    );

    // The other shards follow alike (one with the column in another place), a new shard with
    // the new shape joins, and one shard gets another default: it alone stops.
    my.query_drop(
        "ALTER TABLE s.orders_1 ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'none' FIRST; \
         INSERT INTO s.orders_1 (id, amount, note) VALUES (4, 41, 'one'); \
         CREATE TABLE s.orders_3 LIKE s.orders_0; INSERT INTO s.orders_3 VALUES (1, 3, 'three'); \
         ALTER TABLE s.orders_2 ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'other'; \
         INSERT INTO s.orders_2 VALUES (5, 5, 'lost'); \
         ALTER TABLE s.items_0 ADD COLUMN w INT DEFAULT 7; UPDATE s.items_0 SET w = 9 WHERE id = 1",
    )
    .await
    .unwrap();
    let upstream = "SELECT 'orders_0', id, amount, note FROM s.orders_0 UNION ALL \
                    SELECT 'orders_1', id, amount, note FROM s.orders_1 UNION ALL \
                    SELECT 'orders_3', id, amount, note FROM s.orders_3 ORDER BY 1, 2";
    let want = my_rows(&mut my, upstream).await;
    let healthy = "SELECT shard, id, amount, note FROM orders WHERE shard <> 'orders_2' ORDER BY shard, id";
    assert_eq!(rows(&hw, healthy).await, want);
    let items_want = my_rows(&mut my, "SELECT id, v, w FROM s.items_0 UNION ALL SELECT id, v, w FROM s.items_1").await;
    let mut items_want = items_want;
    items_want.sort();
    assert_eq!(rows(&hw, "SELECT id, v, w FROM items ORDER BY id").await, items_want);
    let states_by_table = "SELECT upstream_table, state FROM hw_catalog.source_tables ORDER BY upstream_table";
    assert_eq!(
        rows(&hw, states_by_table).await,
        vec![
            "s.items_0|streaming",
            "s.items_1|streaming",
            "s.orders_0|streaming",
            "s.orders_1|streaming",
            "s.orders_2|error",
            "s.orders_3|streaming"
        ]
    );
    let error = rows(&hw, "SELECT last_error FROM hw_catalog.source_tables WHERE upstream_table = 's.orders_2'").await;
    assert!(error[0].contains("same default") && error[0].contains("'other'"), "{error:?}");
    let per_shard = "SELECT shard, n, total FROM per_shard WHERE shard <> 'orders_2' ORDER BY shard";
    let per_shard_want = my_rows(
        &mut my,
        "SELECT 'orders_0', count(*), sum(amount) FROM s.orders_0 UNION ALL \
         SELECT 'orders_1', count(*), sum(amount) FROM s.orders_1 UNION ALL \
         SELECT 'orders_3', count(*), sum(amount) FROM s.orders_3",
    )
    .await;
    assert_eq!(rows(&hw, per_shard).await, per_shard_want);

    // Every shard's shape survives a restart; the lagging and the moved column keep decoding.
    drop(hw);
    let mut server = server;
    server.restart().await;
    let hw = server.client().await;
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    my.query_drop(
        "INSERT INTO s.orders_1 (id, amount, note) VALUES (5, 51, 'after'); UPDATE s.orders_0 SET amount = 1 WHERE id = 1; \
         INSERT INTO s.orders_3 VALUES (2, 32, 'x'); INSERT INTO s.items_0 VALUES (5, 5, 5)",
    )
    .await
    .unwrap();
    let want = my_rows(&mut my, upstream).await;
    assert_eq!(rows(&hw, healthy).await, want);
    assert_eq!(rows(&hw, per_shard).await.len(), 3);
    assert_eq!(rows(&hw, "SELECT count(*) FROM items WHERE w IS NOT NULL").await, vec!["5"]);
    assert_eq!(
        rows(&hw, "SELECT state FROM hw_catalog.source_tables WHERE upstream_table = 's.orders_2'").await,
        vec!["error"]
    );
}
