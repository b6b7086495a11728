//! The server over the wire with tokio-postgres: SQLSTATEs and messages, parameters in the
//! extended protocol, many sessions at once, and restarts.

use crate::common;

use common::TestServer;
use tokio_postgres::error::SqlState;

async fn expect_error(client: &tokio_postgres::Client, sql: &str, state: &SqlState, message: &str) {
    let err = client.batch_execute(sql).await.expect_err(sql);
    let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: not a server error: {err:?}"));
    assert_eq!(db.code(), state, "{sql}: {}", db.message());
    assert!(db.message().contains(message), "{sql}: message {:?} lacks {message:?}", db.message());
}

#[tokio::test]
async fn errors_carry_sqlstate_message_and_hint() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, name TEXT)").await.unwrap();
    c.batch_execute("INSERT INTO t VALUES (1, 'a')").await.unwrap();
    expect_error(&c, "SELECT * FROM nope", &SqlState::UNDEFINED_TABLE, "relation \"nope\" does not exist").await;
    expect_error(&c, "SELEC 1", &SqlState::SYNTAX_ERROR, "syntax error").await;
    expect_error(
        &c,
        "INSERT INTO t VALUES (true, 'x')",
        &SqlState::DATATYPE_MISMATCH,
        "column \"id\" is of type integer",
    )
    .await;
    expect_error(&c, "SELECT missing FROM t", &SqlState::UNDEFINED_COLUMN, "column \"missing\" does not exist").await;
    let err = c.batch_execute("INSERT INTO t VALUES (1, 'b')").await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::UNIQUE_VIOLATION);
    assert_eq!(db.hint(), Some("Key (id)=(1) already exists."));
    // The session is still usable after errors.
    let row = c.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn extended_protocol_binds_typed_parameters() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute("CREATE TABLE p (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION)").await.unwrap();
    let insert = c.prepare("INSERT INTO p VALUES ($1, $2, $3)").await.unwrap();
    for i in 0..20i64 {
        let n = c.execute(&insert, &[&i, &format!("n{i}"), &(i as f64 / 2.0)]).await.unwrap();
        assert_eq!(n, 1);
    }
    let rows = c.query("SELECT name, score FROM p WHERE id >= $1 ORDER BY id", &[&18i64]).await.unwrap();
    let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("n18".to_string(), 9.0), ("n19".to_string(), 9.5)]);
    let n = c.execute("UPDATE p SET score = $1 WHERE id < $2", &[&100.0f64, &5i64]).await.unwrap();
    assert_eq!(n, 5);
    let n = c.execute("DELETE FROM p WHERE name = $1", &[&"n7"]).await.unwrap();
    assert_eq!(n, 1);
    let total: i64 = c.query_one("SELECT count(*) FROM p WHERE score = 100", &[]).await.unwrap().get(0);
    assert_eq!(total, 5);
    // Duplicate key through a prepared statement.
    let err = c.execute(&insert, &[&1i64, &"dup", &0.0f64]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
}

#[tokio::test]
async fn many_sessions_write_and_read_concurrently() {
    let server = TestServer::start().await;
    let setup = server.client().await;
    setup.batch_execute("CREATE TABLE hits (session INT, n INT, PRIMARY KEY (session, n))").await.unwrap();
    let mut tasks = Vec::new();
    for s in 0..8i32 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            for n in 0..25i32 {
                client.execute("INSERT INTO hits VALUES ($1, $2)", &[&s, &n]).await.unwrap();
            }
            // Each session reads its own writes.
            let mine: i64 =
                client.query_one("SELECT count(*) FROM hits WHERE session = $1", &[&s]).await.unwrap().get(0);
            assert_eq!(mine, 25);
            // A bad statement in one session does not disturb the others.
            assert!(client.batch_execute("SELECT * FROM no_such_table").await.is_err());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total: i64 = setup.query_one("SELECT count(*) FROM hits", &[]).await.unwrap().get(0);
    assert_eq!(total, 200);
}

/// Concurrent read-modify-write statements on one row: none is lost (a statement whose row
/// changed under it is run again), none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_are_all_counted() {
    let server = TestServer::start().await;
    let setup = server.client().await;
    setup
        .batch_execute("CREATE TABLE counter (id INT PRIMARY KEY, n INT); INSERT INTO counter VALUES (1, 0)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                client.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: i32 = setup.query_one("SELECT n FROM counter WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 100);
}

#[tokio::test]
async fn startup_parameters_and_version() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let v: String = c.query_one("SELECT version()", &[]).await.unwrap().get(0);
    assert!(v.starts_with("PostgreSQL 16."), "{v}");
    assert!(v.contains("Headwater"), "{v}");
    let rows = c.simple_query("SHOW server_version").await.unwrap();
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("16.6"));
}

#[tokio::test]
async fn restart_keeps_catalog_and_rows() {
    let mut server = TestServer::start().await;
    {
        let c = server.client().await;
        c.batch_execute(
            "CREATE TABLE acct (id INT PRIMARY KEY, balance NUMERIC(12,2));
             INSERT INTO acct VALUES (1, 10.50), (2, 20.00);
             UPDATE acct SET balance = balance + 1 WHERE id = 2;
             CREATE VIEW rich AS SELECT id FROM acct WHERE balance > 15;",
        )
        .await
        .unwrap();
    }
    server.restart().await;
    let c = server.client().await;
    let rows = c.query("SELECT id, CAST(balance AS TEXT) FROM acct ORDER BY id", &[]).await.unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "10.50".to_string()), (2, "21.00".to_string())]);
    let rich: i32 = c.query_one("SELECT id FROM rich", &[]).await.unwrap().get(0);
    assert_eq!(rich, 2);
}

#[tokio::test]
async fn materialized_view_refusals_name_the_construct() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, at TIMESTAMP, d INT)").await.unwrap();
    let unsupported = &SqlState::FEATURE_NOT_SUPPORTED;
    expect_error(&c, "CREATE MATERIALIZED VIEW m AS SELECT id, now() FROM t", unsupported, "now()").await;
    expect_error(&c, "CREATE MATERIALIZED VIEW m AS SELECT id FROM t WHERE at = now()", unsupported, "now()").await;
    expect_error(&c, "CREATE MATERIALIZED VIEW m AS SELECT random() FROM t", unsupported, "random()").await;
    expect_error(
        &c,
        "CREATE MATERIALIZED VIEW m AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT max(n) + 1 FROM r HAVING max(n) < 3) \
         SELECT n FROM r",
        unsupported,
        "recursive reference is under Aggregate",
    )
    .await;
    // unnest in FROM reading a column of another FROM item (LATERAL): DataFusion plans no such
    // query; the refusal says how to write it.
    c.batch_execute("CREATE TABLE tagged (id INT PRIMARY KEY, tags TEXT[])").await.unwrap();
    for sql in
        ["SELECT * FROM tagged, unnest(tagged.tags)", "SELECT * FROM tagged CROSS JOIN LATERAL unnest(tags) AS u(x)"]
    {
        expect_error(&c, sql, unsupported, "in the select list").await;
    }
    // NOT IN (subquery) where DataFusion would drop SQL's NULL rule (`sql::null_in`).
    expect_error(&c, "SELECT id FROM t WHERE d < 1 OR id NOT IN (SELECT d FROM t)", unsupported, "NOT EXISTS").await;
    expect_error(
        &c,
        "SELECT id FROM t WHERE id NOT IN (SELECT d FROM t t2 WHERE t2.id > t.d)",
        unsupported,
        "NOT EXISTS",
    )
    .await;
    // A linear recursion is maintained: it counts to 3.
    c.batch_execute(
        "CREATE MATERIALIZED VIEW counted AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
         SELECT n FROM r",
    )
    .await
    .unwrap();
    let n: Vec<i64> =
        c.query("SELECT n FROM counted ORDER BY n", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(n, vec![1, 2, 3]);
    expect_error(
        &c,
        "CREATE MATERIALIZED VIEW m AS SELECT id FROM t WHERE id NOT IN (SELECT d FROM t t2 WHERE t2.d > t.id)",
        unsupported,
        "NOT EXISTS",
    )
    .await;
    expect_error(&c, "CREATE MATERIALIZED VIEW m AS SELECT name FROM hw_catalog.sources", unsupported, "system table")
        .await;
    // A write the view's query fails on succeeds (a view is not a constraint); reads of the
    // view report the error, naming the view, the expression and the row, in both protocols;
    // the hint says what to do. Fixing the row clears it.
    c.batch_execute("CREATE MATERIALIZED VIEW inv AS SELECT 100 / d AS q FROM t").await.unwrap();
    c.batch_execute("INSERT INTO t VALUES (1, NULL, 0)").await.unwrap();
    let simple = c.batch_execute("SELECT q FROM inv").await.unwrap_err();
    let extended = c.query("SELECT q FROM inv", &[]).await.unwrap_err();
    for err in [simple, extended] {
        let db = err.as_db_error().unwrap();
        assert_eq!(db.code(), &SqlState::DIVISION_BY_ZERO);
        assert!(db.message().contains("materialized view \"inv\""), "{}", db.message());
        // The row as the failing expression saw it (the columns the view reads).
        assert!(db.message().contains("on the row (d = 0)"), "{}", db.message());
        assert!(db.hint().is_some_and(|h| h.contains("DROP MATERIALIZED VIEW inv")), "{:?}", db.hint());
    }
    c.batch_execute("UPDATE t SET d = 4 WHERE id = 1").await.unwrap();
    let row = c.query_one("SELECT q FROM inv", &[]).await.unwrap();
    // `100 / d` of an `integer` column is an `integer`, as in Postgres.
    assert_eq!(row.get::<_, i32>(0), 25);
    // EXPLAIN MATERIALIZED VIEW shows the operators and the state sizes.
    let lines: Vec<String> =
        c.query("EXPLAIN MATERIALIZED VIEW inv", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert!(lines.iter().any(|l| l.contains("Scan t")), "{lines:?}");
    assert!(lines.iter().any(|l| l == "Start-up: computed from its inputs"), "{lines:?}");
    assert!(lines.last().is_some_and(|l| l.contains("bytes per result row")), "{lines:?}");
}

#[tokio::test]
async fn binary_results_of_every_type() {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE every (id BIGINT PRIMARY KEY, i2 SMALLINT, i4 INT, f4 REAL, f8 DOUBLE PRECISION, t TEXT, \
         b BOOLEAN, d DATE, tm TIME, ts TIMESTAMP, tz TIMESTAMPTZ, by BYTEA, n NUMERIC(10,2));
         INSERT INTO every VALUES (1, -2, 3, 'Infinity', 'NaN', 'ü', true, '2024-02-29', '12:34:56.5', \
         '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '\\xdeadbeef'::bytea, 1.5), \
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    // tokio-postgres asks for binary results; prepared with a parameter.
    let row = c.query_one("SELECT * FROM every WHERE id = $1", &[&1i64]).await.unwrap();
    assert_eq!(row.get::<_, i16>("i2"), -2);
    assert_eq!(row.get::<_, i32>("i4"), 3);
    assert_eq!(row.get::<_, f32>("f4"), f32::INFINITY);
    assert!(row.get::<_, f64>("f8").is_nan());
    assert_eq!(row.get::<_, String>("t"), "ü");
    assert!(row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, NaiveDate>("d"), NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
    assert_eq!(row.get::<_, NaiveTime>("tm"), NaiveTime::from_hms_milli_opt(12, 34, 56, 500).unwrap());
    let ts: NaiveDateTime = row.get("ts");
    assert_eq!(ts.to_string(), "2024-01-02 03:04:05.123456");
    let tz: chrono::DateTime<Utc> = row.get("tz");
    assert_eq!(tz, Utc.with_ymd_and_hms(2024, 1, 2, 1, 4, 5).unwrap());
    assert_eq!(row.get::<_, Vec<u8>>("by"), vec![0xde, 0xad, 0xbe, 0xef]);
    // numeric in text, as tokio-postgres has no numeric type without an extra crate.
    let n: String = c.query_one("SELECT n::text FROM every WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(n, "1.50");
    let nulls = c.query_one("SELECT i2, tz, by FROM every WHERE id = 2", &[]).await.unwrap();
    assert_eq!(nulls.get::<_, Option<i16>>(0), None);
    assert_eq!(nulls.get::<_, Option<chrono::DateTime<Utc>>>(1), None);
    assert_eq!(nulls.get::<_, Option<Vec<u8>>>(2), None);
    let arrays = c.query_one("SELECT ARRAY[1, 2]::BIGINT[] AS a, ARRAY['x', 'y'] AS t", &[]).await.unwrap();
    assert_eq!(arrays.get::<_, Vec<i64>>("a"), vec![1, 2]);
    assert_eq!(arrays.get::<_, Vec<String>>("t"), vec!["x", "y"]);
}

#[tokio::test]
async fn time_zone_setting_shapes_timestamptz_text() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE z (id INT PRIMARY KEY, at TIMESTAMPTZ); INSERT INTO z VALUES (1, '2024-01-02 03:04:05+00')",
    )
    .await
    .unwrap();
    let text = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(text(c.simple_query("SELECT at FROM z").await.unwrap()), ["2024-01-02 03:04:05+00"]);
    c.batch_execute("SET TIME ZONE 'Asia/Kolkata'").await.unwrap();
    assert_eq!(text(c.simple_query("SELECT at FROM z").await.unwrap()), ["2024-01-02 08:34:05+05:30"]);
    assert_eq!(text(c.simple_query("SHOW TimeZone").await.unwrap()), ["Asia/Kolkata"]);
    let err = c.batch_execute("SET TIME ZONE 'Mars/Base'").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code(), &SqlState::INVALID_PARAMETER_VALUE);
    c.batch_execute("SET TIME ZONE LOCAL").await.unwrap();
    assert_eq!(text(c.simple_query("SELECT at FROM z").await.unwrap()), ["2024-01-02 03:04:05+00"]);
}

#[tokio::test]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let token = c.cancel_token();
    let query = tokio::spawn(async move {
        let r = c.query("SELECT count(*) FROM generate_series(1, 100000000000)", &[]).await;
        (r.map(|_| ()), c)
    });
    // A cancel that arrives before the query runs is lost, as in Postgres: repeat it until the
    // query ends (it would run for hours otherwise).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !query.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the query was not cancelled within 60 s");
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (result, c) = query.await.unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code(), &SqlState::QUERY_CANCELED);
    assert_eq!(c.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);
}

/// Postgres's output names, repeated ones included, in both protocols' row descriptions.
#[tokio::test]
async fn output_names_follow_postgres_and_may_repeat() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 2)").await.unwrap();
    let sql = "SELECT id, id, count(*), count(*), 1, 1 AS a, 2 AS a FROM t GROUP BY id";
    let want = ["id", "id", "count", "count", "?column?", "a", "a"];
    // Extended protocol: the prepared statement's description.
    let stmt = client.prepare(sql).await.unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, want);
    let row = client.query_one(&stmt, &[]).await.unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1), row.get::<_, i64>(3)), (1, 1, 1));
    // Simple protocol: the row description of the result.
    let messages = client.simple_query(sql).await.unwrap();
    let Some(tokio_postgres::SimpleQueryMessage::RowDescription(columns)) = messages.first() else {
        panic!("no row description: {messages:?}")
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, want);
    // A wildcard next to a column it also brings (`__alias_id` before), and DBeaver's
    // `SELECT n.oid, n.*` over the catalog.
    for (sql, first) in [("SELECT *, id FROM t", ["id", "v", "id"]), ("SELECT v, t.* FROM t", ["v", "id", "v"])] {
        let stmt = client.prepare(sql).await.unwrap();
        assert_eq!(stmt.columns().iter().map(|c| c.name()).collect::<Vec<_>>(), first, "{sql}");
    }
    let stmt = client.prepare("SELECT n.oid, n.* FROM pg_catalog.pg_namespace n").await.unwrap();
    assert_eq!(stmt.columns()[..3].iter().map(|c| c.name()).collect::<Vec<_>>(), ["oid", "oid", "nspname"]);
    // Special registers are named after themselves (they are rewritten to DataFusion's
    // functions, whose names used to show: `session_user` for `current_user`).
    let stmt =
        client.prepare("SELECT current_user, session_user, user, current_catalog, current_user AS me").await.unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["current_user", "session_user", "user", "current_catalog", "me"]);
    // pg_tables lists tables, not views or materialized views.
    client
        .batch_execute("CREATE VIEW tv AS SELECT * FROM t; CREATE MATERIALIZED VIEW tm AS SELECT count(*) AS n FROM t")
        .await
        .unwrap();
    let rows = client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["t"]);
    // ... and pg_views / pg_matviews list the views, with their queries.
    let rows =
        client.query("SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'", &[]).await.unwrap();
    let views: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(views, [("tv".to_string(), "SELECT * FROM t".to_string())]);
    let rows = client.query("SELECT matviewname, ispopulated FROM pg_matviews", &[]).await.unwrap();
    let views: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(views, [("tm".to_string(), true)]);
}
