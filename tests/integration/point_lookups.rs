//! Point lookups by key (`sql::point`) answer exactly what the general planner answers: the
//! same random queries, prepared and simple, once in the fast form (`WHERE key = $1`) and once
//! forced through DataFusion (`... AND true`), over a keyed table, a keyless table and a
//! materialized view, with NULLs, misses, inexact constants, and a table dropped and
//! re-created under a prepared statement.

use crate::common;

use common::TestServer;
use tokio_postgres::types::ToSql;
use tokio_postgres::SimpleQueryMessage;

/// A small deterministic generator (the test must not depend on luck, only on the seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

async fn simple_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut rows: Vec<String> = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect::<Vec<_>>().join("|"))
            }
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}

async fn prepared_rows(c: &tokio_postgres::Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<String> {
    let stmt = c.prepare(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows: Vec<String> = c
        .query(&stmt, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    let t = r.columns()[i].type_().name().to_string();
                    match t.as_str() {
                        "int4" => r.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                        "int8" => r.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                        _ => r.get::<_, Option<String>>(i),
                    }
                    .unwrap_or_else(|| "NULL".into())
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn point_lookups_equal_the_general_path() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE t (a INT, b TEXT, c BIGINT, PRIMARY KEY (a, b)); \
         CREATE TABLE bag (x INT, y INT); \
         CREATE MATERIALIZED VIEW by_a AS SELECT a, count(*) AS n, max(c) AS top FROM t GROUP BY a",
    )
    .await
    .unwrap();
    let mut rng = Lcg(42);
    for _ in 0..200 {
        let (a, b) = (rng.next(20), rng.next(5));
        let c_value = if rng.next(4) == 0 { "NULL".to_string() } else { rng.next(1000).to_string() };
        c.batch_execute(&format!(
            "DELETE FROM t WHERE a = {a} AND b = 'k{b}'; INSERT INTO t VALUES ({a}, 'k{b}', {c_value}); \
             INSERT INTO bag VALUES ({}, {})",
            rng.next(10),
            rng.next(3)
        ))
        .await
        .unwrap();
    }
    for _ in 0..60 {
        let (a, b, x) = (rng.next(25) as i32, format!("k{}", rng.next(7)), rng.next(12) as i32);
        // Prepared, parameters bound: the fast form against the forced general form.
        for (fast, params) in [
            ("SELECT * FROM t WHERE a = $1", vec![&a as &(dyn ToSql + Sync)]),
            ("SELECT c, b FROM t WHERE b = $2 AND a = $1", vec![&a as &(dyn ToSql + Sync), &b]),
            ("SELECT * FROM bag WHERE x = $1", vec![&x as &(dyn ToSql + Sync)]),
            ("SELECT a, n, top FROM by_a WHERE a = $1", vec![&a as &(dyn ToSql + Sync)]),
        ] {
            let general = format!("{fast} AND true");
            let want = prepared_rows(&c, &general, &params).await;
            assert_eq!(prepared_rows(&c, fast, &params).await, want, "{fast} with {a} {b} {x}");
        }
        // Simple protocol, constants.
        for fast in [
            format!("SELECT * FROM t WHERE a = {a}"),
            format!("SELECT c AS total FROM t AS u WHERE u.a = {a} AND u.b = '{b}'"),
            format!("SELECT * FROM bag WHERE x = {x}"),
            format!("SELECT * FROM by_a WHERE a = {a}"),
        ] {
            let want = simple_rows(&c, &format!("{fast} AND true")).await;
            assert_eq!(simple_rows(&c, &fast).await, want, "{fast}");
        }
    }
    // Constants that do not convert exactly, and NULL keys, find nothing.
    assert!(simple_rows(&c, "SELECT * FROM t WHERE a = 1.5").await.is_empty());
    assert_eq!(simple_rows(&c, "SELECT count(*) FROM t WHERE a = 1").await.len(), 1);
    let none: Option<i32> = None;
    assert!(prepared_rows(&c, "SELECT * FROM t WHERE a = $1", &[&none]).await.is_empty());

    // A prepared lookup keeps answering after its table is dropped and re-created.
    let stmt = c.prepare("SELECT c FROM t WHERE a = $1 AND b = $2").await.unwrap();
    let before: Vec<i64> = c.query(&stmt, &[&1i32, &"z"]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert!(before.is_empty());
    c.batch_execute(
        "DROP TABLE t CASCADE; CREATE TABLE t (a INT, b TEXT, c BIGINT, PRIMARY KEY (a, b)); \
         INSERT INTO t VALUES (1, 'z', 99)",
    )
    .await
    .unwrap();
    let after: Vec<i64> = c.query(&stmt, &[&1i32, &"z"]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(after, vec![99]);
    // And sees writes at once.
    c.batch_execute("UPDATE t SET c = 100 WHERE a = 1").await.unwrap();
    let updated: i64 = c.query_one(&stmt, &[&1i32, &"z"]).await.unwrap().get(0);
    assert_eq!(updated, 100);
}
