//! Upstream DDL, upstream restarts and DROP SOURCE, against a real MariaDB.

use crate::common;

use common::mariadb::{my_rows, MariaDb};
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
    let (hw, notices) = server.client_with_notices().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();
    hw.batch_execute("CREATE SOURCE s FROM MYSQL CONNECTION up FOR SCHEMAS (d)").await.unwrap();
    wait_for(&hw, "SELECT table_name, state FROM hw_catalog.source_tables ORDER BY 1", &["a|streaming", "b|streaming"])
        .await;

    // A column type change on `a`: `a` stops in a visible error state with the fix, `b`
    // keeps streaming.
    my.query_drop("ALTER TABLE d.a MODIFY v BIGINT; INSERT INTO d.a VALUES (2, 2); INSERT INTO d.b VALUES (3, 3)")
        .await
        .unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    assert_eq!(rows(&hw, "SELECT id FROM b ORDER BY id").await, vec!["1", "2", "3"]);
    // `a` is stale: under real_time_recency a read of it fails and says why (issue 30: it
    // answered stale rows without a word); without, it answers with a WARNING.
    let err = hw.batch_execute("SELECT id FROM a").await.unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code().code(), "55000", "{err:?}");
    assert!(db_err.message().contains("table \"a\" is stale") && db_err.message().contains("changed type"), "{err:?}");
    hw.batch_execute("SET real_time_recency = off").await.unwrap();
    notices.lock().unwrap().clear();
    assert_eq!(rows(&hw, "SELECT id FROM a ORDER BY id").await, vec!["1"], "no mis-decoded row of `a`");
    {
        let seen = notices.lock().unwrap();
        assert!(
            seen.iter().any(|n| n.severity() == "WARNING" && n.message().contains("table \"a\" is stale")),
            "{seen:?}"
        );
    }
    hw.batch_execute("CREATE MATERIALIZED VIEW a_count AS SELECT count(*) AS n FROM a").await.unwrap();
    notices.lock().unwrap().clear();
    assert_eq!(rows(&hw, "SELECT n FROM a_count").await, vec!["1"]);
    assert!(notices.lock().unwrap().iter().any(|n| n.message().contains("\"a\" is stale")), "through a view too");
    hw.batch_execute("DROP MATERIALIZED VIEW a_count").await.unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    let a = rows(&hw, "SELECT state, last_error FROM hw_catalog.source_tables WHERE table_name = 'a'").await;
    assert!(a[0].starts_with("error|") && a[0].contains("changed type") && a[0].contains("DROP TABLE"), "{a:?}");

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
    // The stopped table stays stopped across the reconnect (the binlog is past its ALTER).
    let a = rows(&hw, "SELECT state, last_error FROM hw_catalog.source_tables WHERE table_name = 'a'").await;
    assert!(a[0].starts_with("error|") && a[0].contains("changed type"), "{a:?}");
    my.query_drop("INSERT INTO d.a VALUES (3, 3000000000)").await.unwrap();
    my.query_drop("INSERT INTO d.b VALUES (12, 12)").await.unwrap();
    wait_for(&hw, "SELECT id FROM b ORDER BY id", &["10", "11", "12"]).await;
    hw.batch_execute("SET real_time_recency = off").await.unwrap();
    assert_eq!(rows(&hw, "SELECT id FROM a ORDER BY id").await, vec!["1"], "no row of `a` with the old type");

    // DROP SOURCE refuses while a view reads its tables; CASCADE drops everything.
    hw.batch_execute("CREATE VIEW big_b AS SELECT id FROM b WHERE v > 5").await.unwrap();
    let err = hw.batch_execute("DROP SOURCE s").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("2BP01"), "{err:?}");
    notices.lock().unwrap().clear();
    hw.batch_execute("DROP SOURCE s CASCADE").await.unwrap();
    {
        // Postgres's NOTICE for what CASCADE took along, one line per object.
        let seen = notices.lock().unwrap();
        let cascade = seen.iter().find(|n| n.message() == "drop cascades to 3 other objects").expect("a NOTICE");
        let detail = cascade.detail().unwrap_or_default();
        for line in ["drop cascades to view big_b", "drop cascades to table a", "drop cascades to table b"] {
            assert!(detail.contains(line), "{detail}");
        }
    }
    assert_eq!(rows(&hw, "SHOW TABLES").await, vec!["local"]);
    assert!(rows(&hw, "SHOW VIEWS").await.is_empty());
    assert!(rows(&hw, "SELECT * FROM hw_catalog.sources").await.is_empty());
    // The name can be reused.
    hw.batch_execute("CREATE SOURCE s FROM MYSQL CONNECTION up FOR TABLES (d.b)").await.unwrap();
    wait_for(&hw, "SELECT id FROM b ORDER BY id", &["10", "11", "12"]).await;
}

/// `ALTER TABLE ... ADD COLUMN` upstream: the captured table gains the column, earlier rows
/// hold what MariaDB gave them (the default, a NOT NULL column's implicit value), later rows
/// their values, views over the table keep working, and all of it survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_is_followed() {
    add_column_case("").await;
}

/// The same where snapshots take watermarks (MySQL): the new snapshot a non-constant default
/// needs is taken that way too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_is_followed_with_watermark_snapshots() {
    add_column_case(" WITH (SNAPSHOT_POSITION = 'watermark')").await;
}

async fn add_column_case(options: &str) {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v INT); CREATE TABLE d.m (a INT); \
         INSERT INTO d.t VALUES (1, 10), (2, 20); INSERT INTO d.m VALUES (1), (1), (2)",
    )
    .await
    .unwrap();
    let create = format!("CREATE SOURCE s FROM MYSQL CONNECTION up FOR SCHEMAS (d){options}");
    let (mut server, hw) = common::with_source(&db, &create).await;
    wait_for(&hw, "SELECT table_name, state FROM hw_catalog.source_tables ORDER BY 1", &["m|streaming", "t|streaming"])
        .await;
    hw.batch_execute(
        "CREATE MATERIALIZED VIEW totals AS SELECT sum(v) AS s, count(*) AS n FROM t; \
         CREATE MATERIALIZED VIEW everything AS SELECT * FROM t; \
         CREATE VIEW doubled AS SELECT * FROM t UNION ALL SELECT id, v FROM t",
    )
    .await
    .unwrap();

    // Two columns, one placed in the middle upstream (appended locally), in one ALTER;
    // indexes (nothing to follow); a NOT NULL column without a default on a multiset.
    my.query_drop(
        "ALTER TABLE d.t ADD COLUMN qty INT NOT NULL DEFAULT 5, ADD COLUMN note VARCHAR(20) AFTER id; \
         INSERT INTO d.t (id, note, v, qty) VALUES (3, 'new', 30, 7); UPDATE d.t SET note = 'upd' WHERE id = 1; \
         ALTER TABLE d.t ADD INDEX by_v (v); CREATE INDEX by_qty ON d.t (qty); INSERT INTO d.t (id, v) VALUES (4, 40); \
         ALTER TABLE d.m ADD COLUMN b INT NOT NULL; INSERT INTO d.m VALUES (3, 9)",
    )
    .await
    .unwrap();
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    let t_sql = "SELECT id, v, note, qty FROM t ORDER BY id";
    let want = my_rows(&mut my, "SELECT id, v, IFNULL(note, 'NULL'), qty FROM d.t").await;
    assert_eq!(rows(&hw, t_sql).await, want);
    assert_eq!(want, vec!["1|10|upd|5", "2|20|NULL|5", "3|30|new|7", "4|40|NULL|5"]);
    assert_eq!(rows(&hw, "SELECT a, b FROM m ORDER BY a").await, my_rows(&mut my, "SELECT a, b FROM d.m").await);
    assert_eq!(rows(&hw, "SELECT s, n FROM totals").await, vec!["100|4"], "the view keeps following the table");
    wait_for(&hw, "SELECT table_name, state FROM hw_catalog.source_tables ORDER BY 1", &["m|streaming", "t|streaming"])
        .await;
    assert_eq!(
        rows(
            &hw,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY ordinal_position"
        )
        .await,
        vec!["id", "v", "note", "qty"]
    );

    // The new shape survives a restart, and streaming goes on.
    drop(hw);
    server.restart().await;
    let hw = server.client().await;
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    my.query_drop("INSERT INTO d.t VALUES (5, 'five', 50, 8)").await.unwrap();
    let want = my_rows(&mut my, "SELECT id, v, IFNULL(note, 'NULL'), qty FROM d.t").await;
    assert_eq!(rows(&hw, t_sql).await, want);
    assert_eq!(rows(&hw, "SELECT s, n FROM totals").await, vec!["150|5"]);
    // Views defined with `*` keep the columns they were created with, across the restart.
    assert_eq!(rows(&hw, "SELECT * FROM everything WHERE id = 5").await, vec!["5|50"]);
    assert_eq!(rows(&hw, "SELECT count(*) FROM doubled").await, vec!["10"]);

    // A default that is not a constant: only a new snapshot knows what each row got.
    my.query_drop("ALTER TABLE d.t ADD COLUMN added DATETIME DEFAULT CURRENT_TIMESTAMP").await.unwrap();
    let want = my_rows(&mut my, "SELECT id, v, DATE_FORMAT(added, '%Y-%m-%d %H:%i:%s') FROM d.t").await;
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_for(&hw, "SELECT id, v, added FROM t ORDER BY id", &want).await;
    wait_for(&hw, "SELECT table_name, state FROM hw_catalog.source_tables ORDER BY 1", &["m|streaming", "t|streaming"])
        .await;
    assert_eq!(rows(&hw, "SELECT s, n FROM totals").await, vec!["150|5"]);
}

/// `ADD COLUMN` on a table whose snapshot has not finished (it waits behind a bigger table,
/// one snapshot at a time): the table is snapshotted with its new columns and ends equal to
/// MariaDB. (Whichever phase the table is in when the ALTER is read, the result must match.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_during_snapshot() {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE d; CREATE TABLE d.big (id INT PRIMARY KEY, v INT); CREATE TABLE d.t (id INT PRIMARY KEY, v INT); \
         USE d; INSERT INTO d.big SELECT seq, seq FROM seq_1_to_20000; INSERT INTO d.t SELECT seq, seq FROM seq_1_to_20000",
    )
    .await
    .unwrap();
    let (_server, hw) = common::with_source(
        &db,
        "CREATE SOURCE s FROM MYSQL CONNECTION up FOR TABLES (d.big, d.t) WITH (SNAPSHOT_PARALLELISM = 1, CHUNK_SIZE = 100)",
    )
    .await;
    my.query_drop(
        "UPDATE d.t SET v = v + 1 WHERE id <= 10; ALTER TABLE d.t ADD COLUMN w INT DEFAULT 3; \
         UPDATE d.t SET w = 4 WHERE id > 19990; DELETE FROM d.t WHERE id = 50",
    )
    .await
    .unwrap();
    wait_for(
        &hw,
        "SELECT table_name, state FROM hw_catalog.source_tables ORDER BY 1",
        &["big|streaming", "t|streaming"],
    )
    .await;
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    let want = my_rows(&mut my, "SELECT id, v, w FROM d.t").await;
    let mut got = rows(&hw, "SELECT id, v, w FROM t").await;
    got.sort();
    assert_eq!(got, want);
    assert_eq!(rows(&hw, "SELECT count(*) FROM big").await, vec!["20000"]);
}
