//! Upstream DDL, upstream restarts and DROP SOURCE, against a real MariaDB.

use crate::common;

use common::mariadb::MariaDb;
use common::{joined_rows as rows, wait_for_rows as wait_for, TestServer};
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_restarts_and_drop_source() {
    let mut db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE d; CREATE TABLE d.a (id INT PRIMARY KEY, v INT); CREATE TABLE d.b (id INT PRIMARY KEY, v INT); \
         INSERT INTO d.a VALUES (1, 1); INSERT INTO d.b VALUES (1, 1), (2, 2)",
    )
    .await
    .unwrap();
    let server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();
    hw.batch_execute("CREATE SOURCE s FROM MYSQL CONNECTION up FOR SCHEMAS (d)").await.unwrap();
    wait_for(&hw, "SELECT table_name, state FROM hw_catalog.source_tables ORDER BY 1", &["a|streaming", "b|streaming"])
        .await;

    // ALTER TABLE on `a`: `a` stops in a visible error state, `b` keeps streaming.
    my.query_drop(
        "ALTER TABLE d.a ADD COLUMN extra TEXT; INSERT INTO d.a VALUES (2, 2, 'x'); INSERT INTO d.b VALUES (3, 3)",
    )
    .await
    .unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    assert_eq!(rows(&hw, "SELECT id FROM b ORDER BY id").await, vec!["1", "2", "3"]);
    assert_eq!(rows(&hw, "SELECT id FROM a ORDER BY id").await, vec!["1"], "no mis-decoded row of `a`");
    let a = rows(&hw, "SELECT state, last_error FROM hw_catalog.source_tables WHERE table_name = 'a'").await;
    assert!(a[0].starts_with("error|") && a[0].contains("recreate the source"), "{a:?}");

    // TRUNCATE empties the captured table.
    my.query_drop("TRUNCATE TABLE d.b; INSERT INTO d.b VALUES (10, 10)").await.unwrap();
    assert_eq!(rows(&hw, "SELECT id FROM b").await, vec!["10"]);

    // The upstream server goes down: queries that do not read the source still answer at
    // once under real_time_recency; those that do time out with 57014 and say why.
    db.stop();
    hw.batch_execute("SET real_time_recency_timeout = '1s'; CREATE TABLE local (x INT)").await.unwrap();
    assert_eq!(rows(&hw, "SELECT 1").await, vec!["1"]);
    assert!(rows(&hw, "SELECT * FROM local").await.is_empty());
    let err = hw.batch_execute("SELECT * FROM b").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err:?}");
    // It comes back: the source reconnects and nothing is lost.
    db.spawn().await;
    let mut my = db.root().await;
    my.query_drop("INSERT INTO d.b VALUES (11, 11)").await.unwrap();
    hw.batch_execute("SET real_time_recency = off").await.unwrap();
    wait_for(&hw, "SELECT id FROM b ORDER BY id", &["10", "11"]).await;
    wait_for(&hw, "SELECT state FROM hw_catalog.sources", &["streaming"]).await;

    // DROP SOURCE refuses while a view reads its tables; CASCADE drops everything.
    hw.batch_execute("CREATE VIEW big_b AS SELECT id FROM b WHERE v > 5").await.unwrap();
    let err = hw.batch_execute("DROP SOURCE s").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("2BP01"), "{err:?}");
    hw.batch_execute("DROP SOURCE s CASCADE").await.unwrap();
    assert_eq!(rows(&hw, "SHOW TABLES").await, vec!["local"]);
    assert!(rows(&hw, "SHOW VIEWS").await.is_empty());
    assert!(rows(&hw, "SELECT * FROM hw_catalog.sources").await.is_empty());
    // The name can be reused.
    hw.batch_execute("CREATE SOURCE s FROM MYSQL CONNECTION up FOR TABLES (d.b)").await.unwrap();
    wait_for(&hw, "SELECT id FROM b ORDER BY id", &["10", "11"]).await;
}
