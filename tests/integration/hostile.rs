//! Hostile statements against the real binary (its own runtime and thread stacks): each is
//! answered or refused with a SQLSTATE, and the server keeps serving everyone.

use crate::common;

use common::process::HwProcess;

/// The SQLSTATE a statement fails with, or "ok".
async fn outcome(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => e.as_db_error().map_or_else(|| format!("not a server error: {e}"), |d| d.code().code().to_string()),
    }
}

/// Deep statements (issue 30: a 4 KB `1+1+...+1` aborted the process with a stack overflow):
/// up to the limit they are answered, past it refused with 54001 and a hint, in both
/// protocols, however long the text; the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_statements_are_answered_or_refused_and_the_server_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let hw = HwProcess::start(&tmp.path().join("data"), &tmp.path().join("log"), &[]).await;
    let c = hw.client().await;
    let sum = |n: usize| format!("SELECT {}", vec!["1"; n].join(" + "));
    let rows = c.simple_query(&sum(500)).await.expect("a 500-term sum is answered");
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("500"));

    let err = c.simple_query(&sum(2000)).await.expect_err("a 2,000-term sum is too deep");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "54001", "{}", db.message());
    assert!(db.hint().is_some(), "54001 comes with a hint");
    let ors = format!("SELECT 1 WHERE {}", vec!["1 = 1"; 3000].join(" OR "));
    assert_eq!(outcome(&c, &ors).await, "54001");
    let ands = format!("SELECT 1 WHERE {}", vec!["1 = 1"; 3000].join(" AND "));
    assert_eq!(outcome(&c, &ands).await, "54001");
    let concat = format!("SELECT {}", vec!["'x'"; 3000].join(" || "));
    assert_eq!(outcome(&c, &concat).await, "54001");
    assert_eq!(outcome(&c, &format!("EXPLAIN {}", sum(3000))).await, "54001");
    // 200,000 terms: refused from the tokens, before a tree is built.
    assert_eq!(outcome(&c, &sum(200_000)).await, "54001");
    // The extended protocol's Parse goes through the same checks.
    let params = format!("SELECT {}", vec!["$1::int"; 3000].join(" + "));
    let err = c.prepare(&params).await.expect_err("too deep to prepare");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("54001"));
    // A long UNION ALL chain is a list, not a deep expression: answered.
    let union = vec!["SELECT 1 AS x"; 300].join(" UNION ALL ");
    let n = c.simple_query(&format!("SELECT count(*) FROM ({union}) t")).await.expect("300 UNION ALLs");
    assert!(n.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("300"))));

    // Everyone is still served, on this connection and on a new one.
    assert_eq!(outcome(&c, "SELECT 1").await, "ok");
    let other = hw.client().await;
    assert_eq!(outcome(&other, "SELECT 1").await, "ok");
}

/// `statement_timeout` bounds a statement (issue 30: it was accepted and ignored): a query
/// that would run for hours stops with 57014 and a hint, in both protocols, while rows
/// stream and before; the limit is per session, and 0 lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_stops_long_statements() {
    let tmp = tempfile::tempdir().unwrap();
    let hw = HwProcess::start(&tmp.path().join("data"), &tmp.path().join("log"), &[]).await;
    let c = hw.client().await;
    let endless = "SELECT count(*) FROM generate_series(1, 100000000000)";
    c.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
    let started = std::time::Instant::now();
    let err = c.simple_query(endless).await.expect_err("stopped by the timeout");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "57014", "{}", db.message());
    assert!(db.message().contains("statement timeout"), "{}", db.message());
    assert!(db.hint().is_some());
    // Stopped, not finished: counting 1e11 rows takes hours.
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    // The extended protocol too.
    let err = c.query(endless, &[]).await.expect_err("stopped by the timeout");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("57014"));
    // Statements within the limit run; another session has no limit; SHOW and bad values.
    assert_eq!(outcome(&c, "SELECT 1").await, "ok");
    let shown = c.simple_query("SHOW statement_timeout").await.unwrap();
    assert!(shown.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("300ms"))));
    assert_eq!(outcome(&c, "SET statement_timeout = 'soon'").await, "22023");
    let other = hw.client().await;
    assert_eq!(outcome(&other, "SELECT count(*) FROM generate_series(1, 1000)").await, "ok");
    c.batch_execute("SET statement_timeout = 0").await.unwrap();
    assert_eq!(outcome(&c, "SELECT count(*) FROM generate_series(1, 1000)").await, "ok");
}
